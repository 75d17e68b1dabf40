/* SPDX-License-Identifier: MIT */
/* Reactor tests: every body runs once per backend (epoll, io_uring). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lm_test.h"
#include "reactor-internal.h"

#define MS 1000000ull

static void run_until(lm_reactor *r, bool *done, int max_iterations)
{
	for (int i = 0; i < max_iterations && !*done; i++)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	cr_assert(*done, "condition not reached in %d iterations", max_iterations);
}

/* ---- the iteration's clock ---- */

static uint64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct now_state {
	uint64_t first, second, before;
	int runs;
};

static void now_defer_cb(lm_source *s, void *userdata)
{
	struct now_state *st = userdata;

	st->first = lm_reactor_now(lm_source_get_reactor(s));
	st->second = lm_reactor_now(lm_source_get_reactor(s));
	st->runs++;
}

/* lm_reactor_now(): the clock of the iteration, read after its wait, the
 * same for every call in the iteration, moving on with the next. */
LM_BACKEND_TEST(reactor, now_is_read_once_per_iteration)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct now_state st = {0};
	uint64_t prev;
	lm_source *d;

	cr_assert_eq(lm_reactor_add_defer(r, &d, now_defer_cb, &st), 0);
	for (int i = 0; i < 3; i++) {
		prev = st.first;
		st.before = mono_now();
		lm_source_set_enabled(d, true);
		cr_assert_geq(lm_reactor_run_once(r, 0), 1);
		cr_assert_eq(st.runs, i + 1);
		cr_assert_geq(st.first, st.before, "the time predates the iteration");
		cr_assert_leq(st.first, mono_now());
		cr_assert_eq(st.first, st.second, "two values in one iteration");
		cr_assert_gt(st.first, prev, "the time did not move on");
	}
	/* Outside an iteration it is the last one's. */
	cr_assert_eq(lm_reactor_now(r), st.first);
	lm_source_free(d);
	lm_reactor_free(r);
}

/* ---- timers ---- */

struct order_state {
	uint64_t last_deadline;
	uint64_t last_seq;
	int fired;
	int want;
	bool done;
};

static void order_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct order_state *st = userdata;

	cr_assert_eq(expirations, 1);
	cr_assert_geq(s->timer.deadline, st->last_deadline, "timer fired out of order");
	if (s->timer.deadline == st->last_deadline)
		cr_assert_gt(s->timer.seq, st->last_seq, "equal deadlines out of set order");
	st->last_deadline = s->timer.deadline;
	st->last_seq = s->timer.seq;
	if (++st->fired == st->want)
		st->done = true;
}

LM_BACKEND_TEST(timer, order_100000_random, .timeout = 30)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct order_state st = {.want = 100000};

	srand(42);
	for (int i = 0; i < st.want; i++)
		cr_assert_eq(lm_reactor_add_timer(r, NULL, (uint64_t)(rand() % 20000) * 1000, 0,
						  order_cb, &st),
			     0);
	run_until(r, &st.done, 100000);
	cr_assert_eq(st.fired, st.want);
	cr_assert_eq(r->heap_len, 0, "floating one-shot timers are freed after firing");
	lm_reactor_free(r);
}

LM_BACKEND_TEST(timer, equal_deadlines_fire_in_set_order)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct order_state st = {.want = 16};
	lm_source *t[16];
	uint64_t when = lm__now_ns() + 5 * MS;

	for (int i = 0; i < 16; i++) {
		cr_assert_eq(lm_reactor_add_timer(r, &t[i], 0, 0, order_cb, &st), 0);
		lm__heap_remove(r, t[i]);
		t[i]->timer.deadline = when;
		cr_assert_eq(lm__heap_push(r, t[i]), 0);
	}
	run_until(r, &st.done, 100);
	for (int i = 0; i < 16; i++)
		lm_source_free(t[i]);
	lm_reactor_free(r);
}

struct periodic_state {
	uint64_t first_deadline;
	uint64_t period;
	uint64_t total;
	uint64_t stall_ns;
	uint64_t max_expirations;
	int calls;
	bool done;
};

static void periodic_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct periodic_state *st = userdata;

	st->total += expirations;
	st->calls++;
	if (expirations > st->max_expirations)
		st->max_expirations = expirations;
	/* The next deadline stays on the grid: first + n * period, no drift. */
	cr_assert_eq(s->timer.deadline, st->first_deadline + st->total * st->period);
	if (st->stall_ns && st->calls == 1) {
		struct timespec ts = {0, (long)st->stall_ns};

		nanosleep(&ts, NULL);
	}
	if (st->total >= 50)
		st->done = true;
}

LM_BACKEND_TEST(timer, periodic_keeps_phase_over_50_periods, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct periodic_state st = {.period = 2 * MS};
	lm_source *t;

	cr_assert_eq(lm_reactor_add_timer(r, &t, 1 * MS, st.period, periodic_cb, &st), 0);
	st.first_deadline = t->timer.deadline;
	run_until(r, &st.done, 1000);
	cr_assert_geq(st.total, 50);
	lm_source_free(t);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(timer, overrun_counts_missed_periods, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct periodic_state st = {.period = 1 * MS, .stall_ns = 12 * MS};
	lm_source *t;

	cr_assert_eq(lm_reactor_add_timer(r, &t, 1 * MS, st.period, periodic_cb, &st), 0);
	st.first_deadline = t->timer.deadline;
	run_until(r, &st.done, 1000);
	/* A 12 ms stall of a 1 ms timer: the call after it reports >= 10. */
	cr_assert_geq(st.max_expirations, 10, "max expirations %llu",
		      (unsigned long long)st.max_expirations);
	lm_source_free(t);
	lm_reactor_free(r);
}

static void count_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(*(int *)userdata)++;
}

LM_BACKEND_TEST(timer, disable_rearm_and_oneshot)
{
	lm_reactor *r = lm_test_reactor(backend);
	int n = 0;
	lm_source *t;

	cr_assert_eq(lm_reactor_add_timer(r, &t, 2 * MS, 0, count_cb, &n), 0);
	cr_assert_eq(lm_source_set_enabled(t, false), 0);
	cr_assert_eq(lm_reactor_run_once(r, 10 * MS), 0, "a disabled timer fired");
	cr_assert_eq(n, 0);
	cr_assert_eq(lm_timer_set(t, 1 * MS, 0), 0);
	cr_assert(lm_source_get_enabled(t));
	for (int i = 0; i < 20 && n == 0; i++)
		lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(n, 1);
	cr_assert_not(lm_source_get_enabled(t), "a one-shot timer is disabled after firing");
	cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0, "a one-shot timer fired twice");
	lm_source_free(t);
	lm_reactor_free(r);
}

/* ---- io ---- */

struct io_state {
	int calls;
	uint32_t last;
	lm_source *other;
	lm_source *self;
};

static void io_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct io_state *st = userdata;

	st->calls++;
	st->last = events;
}

LM_BACKEND_TEST(io, pipe_readiness_is_level_triggered)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_state st = {0};
	lm_source *s;
	int p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, io_cb, &st), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 0, "an empty pipe reported readable");
	cr_assert_eq(write(p[1], "x", 1), 1);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
		cr_assert_eq(st.calls, i, "undrained pipe not reported again");
		cr_assert(st.last & LM_IO_IN);
	}
	lm_source_free(s);
	close(p[0]);
	close(p[1]);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(io, set_events_switches_in_and_out)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_state st = {0};
	lm_source *s;
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	cr_assert_eq(lm_reactor_add_io(r, &s, sv[0], LM_IO_IN, io_cb, &st), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	cr_assert_eq(lm_io_set_events(s, LM_IO_OUT), 0);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(st.last, LM_IO_OUT);
	cr_assert_eq(lm_io_set_events(s, LM_IO_IN), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 0, "OUT reported after switching to IN");
	cr_assert_eq(send(sv[1], "y", 1, 0), 1);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(st.last, LM_IO_IN);
	cr_assert_eq(lm_io_set_events(s, 0), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 0, "events 0 still reported");
	lm_source_free(s);
	close(sv[0]);
	close(sv[1]);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(io, hangup_is_reported)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_state st = {0};
	lm_source *s;
	int p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, io_cb, &st), 0);
	close(p[1]);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert(st.last & LM_IO_HUP, "events %#x", st.last);
	lm_source_free(s);
	close(p[0]);
	lm_reactor_free(r);
}

/* ---- edge-triggered io sources (the library's own, reactor/hooks-internal.h) ---- */

struct edge_state {
	int calls;
	bool again;
	bool drain; /* read until empty, not one byte */
	char got[16];
	int ngot;
};

/* Reads one byte per report, or all; asks to be reported again when told to. */
static void edge_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct edge_state *st = userdata;
	char c;

	st->calls++;
	while ((events & LM_IO_IN) && read(fd, &c, 1) == 1 && st->ngot < (int)sizeof(st->got)) {
		st->got[st->ngot++] = c;
		if (!st->drain)
			break;
	}
	if (st->again)
		lm__source_again(s);
}

LM_BACKEND_TEST(io, edge_source_reports_wakeups_and_again)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct edge_state st = {.again = true};
	bool edge;
	lm_source *s;
	int p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm__reactor_add_io_edge(r, &s, p[0], LM_IO_IN, edge_cb, &st, &edge), 0);
	cr_assert_eq(edge, backend == LM_BACKEND_URING,
		     "edge triggering only where io_uring gives it");
	/* Without multishot polls (kernels before 5.13, LM_URING_MULTISHOT=0)
	 * io_uring watches it level-triggered after all. */
	edge = edge && lm_test_uring_multishot();
	/* A callback that stops early and says so is reported again, with no
	 * new data. */
	cr_assert_eq(write(p[1], "ab", 2), 2);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(lm_reactor_run_once(r, 0), 1, "again(): reported at the next iteration");
	cr_assert_eq(st.ngot, 2);
	/* One that does not say so: edge triggering reports the byte left only
	 * on the next wake-up; level triggering at once. */
	st.again = false;
	cr_assert_eq(write(p[1], "cd", 2), 2);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(lm_reactor_run_once(r, 0), edge ? 0 : 1);
	cr_assert_eq(write(p[1], "e", 1), 1);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(st.ngot, edge ? 4 : 5);
	/* Re-enabled or re-armed with data that came while it was not
	 * watched: reported (the multishot poll finds the fd ready when armed). */
	st.drain = true;
	cr_assert_eq(lm_source_set_enabled(s, false), 0);
	cr_assert_eq(write(p[1], "f", 1), 1);
	cr_assert_eq(lm_source_set_enabled(s, true), 0);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(lm_io_set_events(s, 0), 0);
	cr_assert_eq(write(p[1], "g", 1), 1);
	cr_assert_eq(lm_io_set_events(s, LM_IO_IN), 0);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(st.ngot, 7);
	cr_assert_eq(memcmp(st.got, "abcdefg", 7), 0, "got %.*s", st.ngot, st.got);
	/* Still edge-triggered after lm_io_set_events(): empty now, so a
	 * non-blocking iteration reports nothing. */
	cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	/* The end of the writer is a wake-up too. */
	close(p[1]);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	lm_source_free(s);
	close(p[0]);
	lm_reactor_free(r);
}

/* ---- signals ---- */

struct sig_state {
	int calls;
	struct signalfd_siginfo si;
};

static void sig_cb(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct sig_state *st = userdata;

	st->calls++;
	st->si = *si;
}

LM_BACKEND_TEST(signal, raise_reaches_callback_with_siginfo)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct sig_state st = {0};
	lm_source *s;
	sigset_t cur;

	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGUSR1, sig_cb, &st), 0);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	cr_assert(sigismember(&cur, SIGUSR1), "the signal is blocked in the calling thread");
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	for (int i = 0; i < 10 && !st.calls; i++)
		lm_reactor_run_once(r, 100 * MS);
	cr_assert_eq(st.calls, 1);
	cr_assert_eq(st.si.ssi_signo, (uint32_t)SIGUSR1);
	cr_assert_eq(st.si.ssi_pid, (uint32_t)getpid());
	cr_assert_eq(st.si.ssi_uid, (uint32_t)getuid());
	lm_source_free(s);
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	cr_assert_not(sigismember(&cur, SIGUSR1), "removal restores the previous mask");
	lm_reactor_free(r);
}

LM_BACKEND_TEST(signal, two_standard_signals_coalesce)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct sig_state st = {0};
	lm_source *s;

	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGUSR2, sig_cb, &st), 0);
	kill(getpid(), SIGUSR2);
	kill(getpid(), SIGUSR2);
	for (int i = 0; i < 5; i++)
		lm_reactor_run_once(r, 20 * MS);
	/* The kernel keeps one pending instance of a standard signal. */
	cr_assert_eq(st.calls, 1);
	lm_source_free(s);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(signal, disabled_signal_waits_pending)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct sig_state st = {0};
	lm_source *s;

	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGUSR1, sig_cb, &st), 0);
	cr_assert_eq(lm_source_set_enabled(s, false), 0);
	kill(getpid(), SIGUSR1);
	lm_reactor_run_once(r, 20 * MS);
	cr_assert_eq(st.calls, 0);
	cr_assert_eq(lm_source_set_enabled(s, true), 0);
	for (int i = 0; i < 10 && !st.calls; i++)
		lm_reactor_run_once(r, 100 * MS);
	cr_assert_eq(st.calls, 1, "the signal was lost while disabled");
	lm_source_free(s);
	lm_reactor_free(r);
}

/* ---- defer and exit ---- */

struct trace {
	char buf[64];
	size_t len;
};

static void trace_cb(lm_source *s, void *userdata)
{
	struct trace *t = userdata;
	const char *tag = s->type == LM__SRC_EXIT ? "X" : "D";

	t->len += (size_t)snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s", tag);
}

static void stop_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct trace *t = userdata;

	t->len += (size_t)snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "T");
	lm_reactor_stop(lm_source_get_reactor(s), 42);
}

LM_BACKEND_TEST(defer, defer_then_timer_then_exit_in_order)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct trace t = {0};
	lm_source *d;

	cr_assert_eq(lm_reactor_add_exit(r, NULL, trace_cb, &t), 0);
	cr_assert_eq(lm_reactor_add_defer(r, &d, trace_cb, &t), 0);
	cr_assert_eq(lm_reactor_add_defer(r, NULL, trace_cb, &t), 0);
	cr_assert_eq(lm_reactor_add_exit(r, NULL, trace_cb, &t), 0);
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 5 * MS, 0, stop_cb, &t), 0);
	cr_assert_eq(lm_reactor_run(r), 42);
	cr_assert_str_eq(t.buf, "DDTXX");
	/* A defer runs once; enabling it again runs it once more. */
	cr_assert_not(lm_source_get_enabled(d));
	cr_assert_eq(lm_source_set_enabled(d, true), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 1);
	cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	cr_assert_str_eq(t.buf, "DDTXXD");
	lm_source_free(d);
	lm_reactor_free(r);
}

/* ---- removal from callbacks ---- */

static void free_self_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	(*(int *)userdata)++;
	lm_source_free(s);
}

LM_BACKEND_TEST(removal, io_frees_itself)
{
	lm_reactor *r = lm_test_reactor(backend);
	int calls = 0, p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, NULL, p[0], LM_IO_IN, free_self_cb, &calls), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	lm_reactor_run_once(r, 1000 * MS);
	lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(calls, 1);
	close(p[0]);
	close(p[1]);
	lm_reactor_free(r);
}

struct pair_state {
	lm_source *src[2];
	int fds[2][2];
	int calls[2];
	lm_source *reused; /* a new source on the number of a closed fd */
	int reused_calls;
	int reuse_pipe[2];
};

static void reused_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	((struct pair_state *)userdata)->reused_calls++;
}

/* Whichever of the two ready sources runs first frees the other, closes
 * its fd, and opens a new pipe that takes the same number. */
static void pair_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct pair_state *st = userdata;
	int me = s == st->src[0] ? 0 : 1, other = !me;
	int old_fd = st->fds[other][0];

	st->calls[me]++;
	if (!st->src[other])
		return;
	lm_source_free(st->src[other]);
	st->src[other] = NULL;
	close(st->fds[other][0]);
	close(st->fds[other][1]);
	cr_assert_eq(pipe2(st->reuse_pipe, O_NONBLOCK | O_CLOEXEC), 0);
	if (st->reuse_pipe[0] != old_fd) {
		cr_assert_eq(dup2(st->reuse_pipe[0], old_fd), old_fd);
		close(st->reuse_pipe[0]);
		st->reuse_pipe[0] = old_fd;
	}
	cr_assert_eq(lm_reactor_add_io(lm_source_get_reactor(s), &st->reused, old_fd, LM_IO_IN,
				       reused_cb, st),
		     0);
}

LM_BACKEND_TEST(removal, other_ready_source_and_fd_reuse)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct pair_state st = {0};

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(pipe2(st.fds[i], O_NONBLOCK | O_CLOEXEC), 0);
		cr_assert_eq(write(st.fds[i][1], "x", 1), 1);
		cr_assert_eq(lm_reactor_add_io(r, &st.src[i], st.fds[i][0], LM_IO_IN, pair_cb, &st),
			     0);
	}
	lm_reactor_run_once(r, 1000 * MS);
	cr_assert_eq(st.calls[0] + st.calls[1], 1, "a freed source got its stale event");
	cr_assert_eq(st.reused_calls, 0, "the new source got the old fd's event");
	/* The survivor is still readable; the new pipe is empty. */
	lm_reactor_run_once(r, 0);
	cr_assert_eq(st.reused_calls, 0);
	cr_assert_eq(write(st.reuse_pipe[1], "z", 1), 1);
	lm_reactor_run_once(r, 1000 * MS);
	cr_assert_eq(st.reused_calls, 1, "the new source misses its own event");
	for (int i = 0; i < 2; i++) {
		if (st.src[i]) {
			lm_source_free(st.src[i]);
			close(st.fds[i][0]);
			close(st.fds[i][1]);
		}
	}
	lm_source_free(st.reused);
	close(st.reuse_pipe[0]);
	close(st.reuse_pipe[1]);
	lm_reactor_free(r);
}

struct timer_pair {
	lm_source *t[2];
	int calls[2];
};

static void timer_pair_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct timer_pair *tp = userdata;
	int me = s == tp->t[0] ? 0 : 1;

	tp->calls[me]++;
	if (tp->t[!me]) {
		lm_source_free(tp->t[!me]);
		tp->t[!me] = NULL;
	}
}

LM_BACKEND_TEST(removal, due_timer_freed_never_fires)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct timer_pair tp = {0};

	cr_assert_eq(lm_reactor_add_timer(r, &tp.t[0], 1 * MS, 0, timer_pair_cb, &tp), 0);
	cr_assert_eq(lm_reactor_add_timer(r, &tp.t[1], 1 * MS, 0, timer_pair_cb, &tp), 0);
	usleep(5000); /* both are due before the next wait */
	lm_reactor_run_once(r, 1000 * MS);
	lm_reactor_run_once(r, 20 * MS);
	cr_assert_eq(tp.calls[0], 1);
	cr_assert_eq(tp.calls[1], 0, "a freed timer fired");
	lm_source_free(tp.t[0]);
	lm_reactor_free(r);
}

static void free_from_defer_cb(lm_source *s, void *userdata)
{
	lm_source **victim = userdata;

	lm_source_free(*victim);
	*victim = NULL;
	lm_source_free(s);
}

LM_BACKEND_TEST(removal, defer_frees_itself_and_a_pending_defer)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct trace t = {0};
	lm_source *victim, *killer;

	cr_assert_eq(lm_reactor_add_defer(r, &killer, free_from_defer_cb, &victim), 0);
	cr_assert_eq(lm_reactor_add_defer(r, &victim, trace_cb, &t), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 1);
	cr_assert_eq(t.len, 0, "a freed defer ran");
	cr_assert_null(victim);
	lm_reactor_free(r);
}

/* ---- embedding ---- */

static void embed_post(void *userdata)
{
	(*(int *)userdata) += 100;
}

static void embed_defer(lm_source *s, void *userdata)
{
	(*(int *)userdata) += 10;
}

LM_BACKEND_TEST(embed, poll_loop_drives_the_reactor)
{
	lm_reactor *r = lm_test_reactor(backend);
	int fd = lm_reactor_fd(r), n = 0, guard = 0;
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	cr_assert_geq(fd, 0);
	cr_assert_eq(poll(&pfd, 1, 0), 0, "an idle reactor's fd is readable");
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 2 * MS, 0, count_cb, &n), 0);
	cr_assert_eq(lm_reactor_add_defer(r, NULL, embed_defer, &n), 0);
	cr_assert_eq(lm_reactor_post(r, embed_post, &n), 0);
	while (n != 111 && guard++ < 100) {
		cr_assert_geq(poll(&pfd, 1, 1000), 1, "the fd never became readable (n=%d)", n);
		cr_assert_geq(lm_reactor_run_once(r, 0), 0);
	}
	cr_assert_eq(n, 111, "timer, defer and post all ran from the foreign loop");
	lm_reactor_free(r);
}

/* One byte read per callback: a level-triggered source is called again
 * while bytes are left, and never for an empty fd. */
struct embed_io {
	int reads, empty;
};

static void embed_read_one(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct embed_io *st = userdata;
	char c;

	if (read(fd, &c, 1) == 1)
		st->reads++;
	else
		st->empty++;
}

/* The foreign loop: poll() the reactor's fd alone, run_once(r, 0) when it
 * says so, until want reads (bounded). */
static void embed_drive(lm_reactor *r, struct embed_io *st, int want)
{
	struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};

	for (int guard = 0; st->reads < want && guard < 10 * want + 10; guard++) {
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "the fd is not readable with %d of %d read",
			     st->reads, want);
		cr_assert_geq(lm_reactor_run_once(r, 0), 0);
	}
	cr_assert_eq(st->reads, want);
}

/* Readiness reaches the foreign loop at once and is reported once: a write
 * made in this thread makes the fd readable before write() returns, each
 * report finds a byte to read (never EAGAIN), and an fd drained by its
 * callback is not reported again. */
LM_BACKEND_TEST(embed, io_reported_at_once_and_only_while_ready)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};
	struct embed_io st = {0};
	int p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, NULL, p[0], LM_IO_IN, embed_read_one, &st), 0);
	pfd.fd = lm_reactor_fd(r);
	cr_assert_geq(pfd.fd, 0);
	/* Five bytes one at a time, the loop driven after each. */
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(write(p[1], "x", 1), 1);
		cr_assert_eq(poll(&pfd, 1, 0), 1, "write %d: the fd is not readable at once", i);
		embed_drive(r, &st, i + 1);
	}
	/* Five at once: five reports, one per byte, as long as one is left. */
	cr_assert_eq(write(p[1], "xxxxx", 5), 5);
	embed_drive(r, &st, 10);
	/* Nothing left: no callback however often the loop calls in. */
	for (int i = 0; i < 5; i++)
		cr_assert_geq(lm_reactor_run_once(r, 0), 0);
	cr_assert_eq(st.reads, 10);
	cr_assert_eq(st.empty, 0, "%d callbacks for an empty fd (a read gave EAGAIN)", st.empty);
	lm_reactor_free(r);
	close(p[0]);
	close(p[1]);
}

struct embed_tick {
	int calls;
	int late; /* callbacks that found more than one period elapsed */
};

static void embed_tick_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct embed_tick *t = userdata;

	t->calls++;
	if (expirations > 1)
		t->late++;
}

/* A timer seen through the foreign loop is not held back: a 5 ms periodic
 * timer, driven only by poll() on the fd, mostly finds one period elapsed
 * (a loop woken a period or more late would count overruns at every
 * callback). A count, not a timed assertion: a busy machine may delay a few. */
LM_BACKEND_TEST(embed, timer_not_held_back, .timeout = 30)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};
	struct embed_tick t = {0};
	int wakeups = 0;

	cr_assert_eq(lm_reactor_add_timer(r, NULL, 5 * MS, 5 * MS, embed_tick_cb, &t), 0);
	while (t.calls < 40 && wakeups++ < 400) {
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "the fd never became readable");
		cr_assert_geq(lm_reactor_run_once(r, 0), 0);
	}
	cr_assert_eq(t.calls, 40);
	cr_assert_leq(t.late, 10, "%d of 40 callbacks came a period or more late", t.late);
	cr_assert_leq(wakeups, 80, "%d wake-ups of the foreign loop for 40 ticks", wakeups);
	lm_reactor_free(r);
}

/* ---- idle ---- */

LM_BACKEND_TEST(idle, far_timer_sleeps_in_the_kernel, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct rusage before, after;
	int n = 0;

	cr_assert_eq(lm_reactor_add_timer(r, NULL, 3600000 * MS, 0, count_cb, &n), 0);
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 1500 * MS, 0, count_cb, &n), 0);
	getrusage(RUSAGE_SELF, &before);
	/* One wait until the 1.5 s timer: it is the only wake-up allowed. */
	while (n == 0)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	getrusage(RUSAGE_SELF, &after);
	cr_assert_leq(after.ru_nvcsw - before.ru_nvcsw, 2, "%ld wake-ups in 1.5 s idle",
		      after.ru_nvcsw - before.ru_nvcsw);
	lm_reactor_free(r);
}

/* ---- bad input ---- */

static void nop_io(lm_source *s, int fd, uint32_t events, void *userdata)
{
}

static void nop_signal(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
}

LM_BACKEND_TEST(bad_input, clear_errors_never_a_crash)
{
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *s = NULL, *io;
	int p[2];

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(NULL, &s, p[0], LM_IO_IN, nop_io, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_io(r, &s, -1, LM_IO_IN, nop_io, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], 0x100, nop_io, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, NULL, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_io(r, &s, 999, LM_IO_IN, nop_io, NULL), -EBADF);
	cr_assert_null(s, "ret written on failure");
	cr_assert_eq(lm_reactor_add_io(r, &io, p[0], LM_IO_IN, nop_io, NULL), 0);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, nop_io, NULL), -EEXIST);
	cr_assert_eq(lm_io_set_events(io, 0x80), -EINVAL);
	cr_assert_eq(lm_timer_set(io, 1, 0), -EINVAL);
	cr_assert_eq(lm_timer_set(NULL, 1, 0), -EINVAL);
	cr_assert_eq(lm_reactor_add_signal(r, &s, 0, nop_signal, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_signal(r, &s, _NSIG, nop_signal, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGKILL, nop_signal, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGSTOP, nop_signal, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_signal(r, &s, SIGUSR1, nop_signal, NULL), 0);
	cr_assert_eq(lm_reactor_add_signal(r, NULL, SIGUSR1, nop_signal, NULL), -EBUSY);
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 1, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_defer(NULL, NULL, trace_cb, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_post(r, NULL, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_run_once(NULL, 0), -EINVAL);
	cr_assert_eq(lm_source_set_enabled(NULL, true), -EINVAL);
	lm_source_free(NULL);
	lm_reactor_free(NULL);
	lm_source_free(s);
	lm_source_free(io);
	close(p[0]);
	close(p[1]);
	lm_reactor_free(r);
}

static void nested_run_cb(lm_source *s, void *userdata)
{
	lm_reactor *r = lm_source_get_reactor(s);

	*(int *)userdata = lm_reactor_run_once(r, 0) == -EBUSY && lm_reactor_run(r) == -EBUSY;
}

LM_BACKEND_TEST(bad_input, running_from_a_callback_is_ebusy)
{
	lm_reactor *r = lm_test_reactor(backend);
	int ok = 0;

	cr_assert_eq(lm_reactor_add_defer(r, NULL, nested_run_cb, &ok), 0);
	cr_assert_eq(lm_reactor_run_once(r, 0), 1);
	cr_assert(ok);
	lm_reactor_free(r);
}

/* ---- backend choice and logging ---- */

static char logged[512];

static void capture_log(enum lm_log_level level, const char *msg, void *userdata)
{
	if (level == LM_LOG_ERROR)
		snprintf(logged, sizeof(logged), "%s", msg);
}

Test(backend, bad_env_value_is_einval_and_logged)
{
	lm_reactor *r = NULL;

	lm_set_log_handler(capture_log, NULL);
	setenv("LM_BACKEND", "kqueue", 1);
	cr_assert_eq(lm_reactor_new(&r, NULL), -EINVAL);
	cr_assert_null(r);
	cr_assert(strstr(logged, "LM_BACKEND=kqueue"), "logged: %s", logged);
	setenv("LM_BACKEND", "epoll", 1);
	cr_assert_eq(lm_reactor_new(&r, NULL), 0);
	cr_assert_str_eq(lm_reactor_backend_name(r), "epoll");
	lm_reactor_free(r);
	lm_set_log_handler(NULL, NULL);
}

Test(backend, bad_options_are_einval)
{
	struct lm_reactor_options o = {.backend = (enum lm_backend)7};
	lm_reactor *r = NULL;

	cr_assert_eq(lm_reactor_new(&r, &o), -EINVAL);
	cr_assert_eq(lm_reactor_new(NULL, NULL), -EINVAL);
	cr_assert_null(r);
}

/* ---- after fork() ---- */

struct fork_seen {
	int io, timer, post, signal, defer;
};

static void fork_io_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	char buf[16];

	if (read(fd, buf, sizeof(buf)) > 0)
		((struct fork_seen *)userdata)->io++;
}

static void fork_timer_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	((struct fork_seen *)userdata)->timer++;
}

static void fork_post_cb(void *userdata)
{
	((struct fork_seen *)userdata)->post++;
}

static void fork_signal_cb(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	((struct fork_seen *)userdata)->signal++;
}

static void fork_defer_cb(lm_source *s, void *userdata)
{
	((struct fork_seen *)userdata)->defer++;
}

/* Everything once: a byte on the pipe, a post, SIGUSR1, the defer enabled;
 * the periodic timer comes by itself. */
static void fork_round(lm_reactor *r, struct fork_seen *seen, int wfd, lm_source *defer)
{
	*seen = (struct fork_seen){0};
	cr_assert_eq(write(wfd, "x", 1), 1);
	cr_assert_eq(lm_reactor_post(r, fork_post_cb, seen), 0);
	cr_assert_eq(lm_source_set_enabled(defer, true), 0);
	cr_assert_eq(kill(getpid(), SIGUSR1), 0);
	for (int i = 0;
	     i < 200 && !(seen->io && seen->timer && seen->post && seen->signal && seen->defer);
	     i++)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	cr_assert(seen->io && seen->timer && seen->post && seen->signal && seen->defer,
		  "io %d timer %d post %d signal %d defer %d", seen->io, seen->timer, seen->post,
		  seen->signal, seen->defer);
}

/* The child's side, as an exit status: 0, or the number of the check that
 * failed. Every call that acts says -ECHILD; the frees only free. */
static int fork_child(lm_reactor *r, lm_source **src, size_t n, struct fork_seen *seen)
{
	lm_source *t = NULL;

	if (!lm_reactor_forked(r))
		return 10;
	if (lm_reactor_run(r) != -ECHILD)
		return 11;
	if (lm_reactor_run_once(r, 0) != -ECHILD)
		return 12;
	if (lm_reactor_post(r, fork_post_cb, seen) != -ECHILD)
		return 13;
	if (lm_reactor_add_timer(r, &t, MS, 0, fork_timer_cb, seen) != -ECHILD || t)
		return 14;
	if (lm_reactor_add_defer(r, NULL, fork_defer_cb, seen) != -ECHILD)
		return 15;
	if (lm_reactor_fd(r) != -ECHILD)
		return 16;
	if (lm_timer_set(src[1], MS, 0) != -ECHILD)
		return 17;
	if (lm_source_set_enabled(src[0], false) != -ECHILD)
		return 18;
	if (lm_io_set_events(src[0], LM_IO_OUT) != -ECHILD)
		return 19;
	lm_reactor_stop(r, 3); /* nothing */
	/* Half the sources one by one, the rest with the reactor. */
	for (size_t i = 0; i < n / 2; i++)
		lm_source_free(src[i]);
	lm_reactor_free(r);
	return seen->io || seen->timer || seen->post || seen->signal || seen->defer ? 20 : 0;
}

static void fork_body(enum lm_backend backend, bool embedded)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct fork_seen seen = {0};
	lm_source *src[4];
	int p[2], status;
	pid_t pid;

	cr_assert_not(lm_reactor_forked(r));
	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, &src[0], p[0], LM_IO_IN, fork_io_cb, &seen), 0);
	cr_assert_eq(lm_reactor_add_timer(r, &src[1], MS, 2 * MS, fork_timer_cb, &seen), 0);
	cr_assert_eq(lm_reactor_add_signal(r, &src[2], SIGUSR1, fork_signal_cb, &seen), 0);
	cr_assert_eq(lm_reactor_add_defer(r, &src[3], fork_defer_cb, &seen), 0);
	if (embedded)
		cr_assert_geq(lm_reactor_fd(r), 0);
	/* Every registration live (on io_uring: polls in the kernel, some
	 * just re-armed) when the child comes. */
	fork_round(r, &seen, p[1], src[3]);
	seen = (struct fork_seen){0};
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fork_child(r, src, 4, &seen));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's check %d failed",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	/* The parent goes on as if nothing happened, twice over. */
	fork_round(r, &seen, p[1], src[3]);
	fork_round(r, &seen, p[1], src[3]);
	if (embedded) {
		struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};

		cr_assert_eq(write(p[1], "x", 1), 1);
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "the embedded fd no longer wakes");
	}
	lm_reactor_free(r);
	close(p[0]);
	close(p[1]);
}

/* A child frees every source and the reactor it inherited, and its other
 * calls say -ECHILD; the parent's io, timers, posts, signals and defers go
 * on (epoll: the child's EPOLL_CTL_DEL removed the parent's registrations;
 * io_uring: its cancels and reaping acted on the shared ring). */
LM_BACKEND_TEST(fork, child_frees_inherited_parent_goes_on, .timeout = 20)
{
	fork_body(backend, false);
}

/* The same with the reactor embedded (its eventfd registered) before. */
LM_BACKEND_TEST(fork, child_frees_inherited_embedded_parent_goes_on, .timeout = 20)
{
	fork_body(backend, true);
}

/* A child that only exits, freeing nothing, changes nothing either; and a
 * reactor made in the child is the child's own. */
LM_BACKEND_TEST(fork, reactor_made_in_child_is_its_own, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	int status;
	pid_t pid;

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct lm_reactor_options o = {.backend = backend};
		lm_reactor *mine;
		int n = 0;

		if (lm_reactor_new(&mine, &o) < 0)
			_exit(1);
		if (lm_reactor_forked(mine) || !lm_reactor_forked(r))
			_exit(2);
		if (lm_reactor_add_timer(mine, NULL, MS, 0, count_cb, &n) < 0)
			_exit(3);
		while (n == 0)
			if (lm_reactor_run_once(mine, -1) < 0)
				_exit(4);
		lm_reactor_free(mine);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed at %d",
		  WEXITSTATUS(status));
	cr_assert_not(lm_reactor_forked(r));
	lm_reactor_free(r);
}
