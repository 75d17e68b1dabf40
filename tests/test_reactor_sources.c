/* SPDX-License-Identifier: MIT */
/* Reactor sources beyond io and timers: prepare, keepalive (run until idle), child processes,
 * timers on other clocks; each body runs on both backends. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lm_test.h"
#include "reactor-internal.h"

#define MS 1000000ull

/* ---- prepare ---- */

struct prep {
	int calls;
	int defers;
	lm_source *self, *other;
	bool free_self, free_other, add_defer;
};

static void defer_count_cb(lm_source *s, void *userdata)
{
	(void)s;
	((struct prep *)userdata)->defers++;
}

static void prep_cb(lm_source *s, void *userdata)
{
	struct prep *p = userdata;

	p->calls++;
	if (p->add_defer) {
		p->add_defer = false;
		cr_assert_eq(
		    lm_reactor_add_defer(lm_source_get_reactor(s), NULL, defer_count_cb, p), 0);
	}
	if (p->free_other && p->other) {
		lm_source_free(p->other);
		p->other = NULL;
	}
	if (p->free_self) {
		lm_source_free(s);
		p->self = NULL;
	}
}

/* Once before every wait: N iterations are N + 1 runs (the first before
 * the first wait, then one at the end of each round); they are not counted
 * as callbacks. */
LM_BACKEND_TEST(prepare, runs_once_before_every_wait)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct prep p = {0};
	lm_source *s;

	cr_assert_eq(lm_reactor_add_prepare(r, &s, prep_cb, &p), 0);
	cr_assert_eq(p.calls, 0);
	cr_assert_eq(lm_test_spin(r, 10), 0);
	cr_assert_eq(p.calls, 11);
	cr_assert_eq(lm_source_set_enabled(s, false), 0);
	cr_assert_eq(lm_test_spin(r, 3), 0);
	cr_assert_eq(p.calls, 11);
	cr_assert_eq(lm_source_set_enabled(s, true), 0);
	cr_assert_eq(lm_test_spin(r, 1), 0);
	cr_assert_eq(p.calls, 13);
	lm_source_free(s);
	lm_reactor_free(r);
}

/* Work a prepare callback makes is seen before the reactor sleeps: a
 * defer it adds runs at the next iteration, which does not block. */
LM_BACKEND_TEST(prepare, work_it_adds_does_not_wait, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct prep p = {.add_defer = true};
	lm_source *s;

	cr_assert_eq(lm_reactor_add_prepare(r, &s, prep_cb, &p), 0);
	cr_assert_eq(lm_reactor_run_once(r, -1), 1); /* would hang otherwise */
	cr_assert_eq(p.defers, 1);
	lm_source_free(s);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(prepare, frees_itself_and_another_from_its_callback)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct prep a = {.free_self = true, .free_other = true}, b = {0};

	cr_assert_eq(lm_reactor_add_prepare(r, &a.self, prep_cb, &a), 0);
	cr_assert_eq(lm_reactor_add_prepare(r, &b.self, prep_cb, &b), 0);
	a.other = b.self;
	cr_assert_eq(lm_test_spin(r, 5), 0);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(b.calls, 0, "a prepare freed earlier in the same run ran");
	cr_assert_null(a.self);
	/* A floating one that frees itself. */
	a = (struct prep){.free_self = true};
	cr_assert_eq(lm_reactor_add_prepare(r, NULL, prep_cb, &a), 0);
	cr_assert_eq(lm_test_spin(r, 3), 0);
	cr_assert_eq(a.calls, 1);
	lm_reactor_free(r);
}

/* ---- keepalive: lm_reactor_run() until idle ---- */

static void exit_count_cb(lm_source *s, void *userdata)
{
	(void)s;
	(*(int *)userdata)++;
}

static void timer_count_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(void)s;
	(void)expirations;
	(*(int *)userdata)++;
}

static void post_count_cb(void *userdata)
{
	(*(int *)userdata)++;
}

static void io_never_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	(void)s;
	(void)fd;
	(void)events;
	(void)userdata;
	cr_assert_fail("an io source that should not be ready ran");
}

static void sig_never_cb(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	(void)s;
	(void)si;
	(void)userdata;
}

/* The reactor's own fds keep nothing alive: a fresh reactor's run() ends
 * at once with 0, after the posts already queued and the exit sources. */
LM_BACKEND_TEST(keepalive, empty_reactor_runs_posts_and_exits, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	int posts = 0, exits = 0, prepares = 0;

	cr_assert_eq(lm_reactor_post(r, post_count_cb, &posts), 0);
	cr_assert_eq(lm_reactor_add_exit(r, NULL, exit_count_cb, &exits), 0);
	cr_assert_eq(lm_reactor_add_prepare(r, NULL, exit_count_cb, &prepares), 0);
	cr_assert_eq(lm_reactor_run(r), 0);
	cr_assert_geq(prepares, 1);
	cr_assert_eq(posts, 1);
	cr_assert_eq(exits, 1);
	cr_assert_eq(r->alive, 0);
	lm_reactor_free(r);
}

/* "Until done": a one-shot timer keeps it going until it fired; an io
 * source and a signal source told not to keep it alive do not. */
LM_BACKEND_TEST(keepalive, run_until_done, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	int fired = 0, periodic = 0;
	lm_source *io, *sig, *t, *p;
	int pfd[2];

	cr_assert_eq(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	cr_assert_eq(lm_reactor_add_io(r, &io, pfd[0], LM_IO_IN, io_never_cb, NULL), 0);
	cr_assert_eq(lm_reactor_add_signal(r, &sig, SIGUSR2, sig_never_cb, NULL), 0);
	cr_assert(lm_source_get_keepalive(io));
	cr_assert_eq(lm_source_set_keepalive(io, false), 0);
	cr_assert_eq(lm_source_set_keepalive(sig, false), 0);
	cr_assert_not(lm_source_get_keepalive(io));
	cr_assert_eq(lm_reactor_add_timer(r, &t, 2 * MS, 0, timer_count_cb, &fired), 0);
	/* A periodic timer keeps it alive until it is disabled. */
	cr_assert_eq(lm_reactor_add_timer(r, &p, 1 * MS, 1 * MS, timer_count_cb, &periodic), 0);
	cr_assert_eq(lm_source_set_keepalive(p, false), 0);
	cr_assert_eq(lm_reactor_run(r), 0);
	cr_assert_eq(fired, 1);
	cr_assert_eq(r->alive, 0);
	/* Enabled again, it keeps the loop alive again. */
	cr_assert_eq(lm_timer_set(t, 1 * MS, 0), 0);
	cr_assert_eq(r->alive, 1);
	cr_assert_eq(lm_reactor_run(r), 0);
	cr_assert_eq(fired, 2);
	/* A source that keeps it alive, disabled, does not. */
	cr_assert_eq(lm_source_set_keepalive(io, true), 0);
	cr_assert_eq(r->alive, 1);
	cr_assert_eq(lm_source_set_enabled(io, false), 0);
	cr_assert_eq(r->alive, 0);
	cr_assert_eq(lm_reactor_run(r), 0);
	lm_source_free(io);
	lm_source_free(sig);
	lm_source_free(t);
	lm_source_free(p);
	cr_assert_eq(r->alive, 0);
	close(pfd[0]);
	close(pfd[1]);
	lm_reactor_free(r);
}

static void stop_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(void)expirations;
	(void)userdata;
	lm_reactor_stop(lm_source_get_reactor(s), 42);
}

/* A floating one-shot timer freed after it fired, a pending defer: both
 * keep it alive until they ran; stop still wins with its code. */
LM_BACKEND_TEST(keepalive, floating_sources_and_stop, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	int n = 0, d = 0;

	cr_assert_eq(lm_reactor_add_timer(r, NULL, 1 * MS, 0, timer_count_cb, &n), 0);
	cr_assert_eq(lm_reactor_add_defer(r, NULL, exit_count_cb, &d), 0);
	cr_assert_eq(lm_reactor_run(r), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(d, 1);
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 1 * MS, 0, stop_cb, NULL), 0);
	cr_assert_eq(lm_reactor_add_timer(r, NULL, 1000 * MS, 0, timer_count_cb, &n), 0);
	cr_assert_eq(lm_reactor_run(r), 42);
	lm_reactor_free(r);
}

/* ---- child processes ---- */

struct child_state {
	int calls;
	siginfo_t si;
	bool free_self;
	lm_source *self;
};

static void child_cb(lm_source *s, const siginfo_t *si, void *userdata)
{
	struct child_state *c = userdata;

	c->calls++;
	c->si = *si;
	if (c->free_self) {
		lm_source_free(s);
		c->self = NULL;
	}
}

static pid_t spawn_exit(int code)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(code);
	return pid;
}

static pid_t spawn_sleeper(void)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

LM_BACKEND_TEST(child, exit_status_reported_once_then_idle, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct child_state c = {0};
	lm_source *s;
	pid_t pid = spawn_exit(7);

	cr_assert_eq(lm_reactor_add_child(r, &s, pid, 0, child_cb, &c), 0);
	cr_assert_eq(lm_child_get_pid(s), pid);
	cr_assert_eq(lm_reactor_run(r), 0, "run until the child was reported");
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.si.si_pid, pid);
	cr_assert_eq(c.si.si_code, CLD_EXITED);
	cr_assert_eq(c.si.si_status, 7);
	cr_assert_not(lm_source_get_enabled(s));
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1, "not reaped");
	cr_assert_eq(errno, ECHILD);
	cr_assert_eq(lm_source_set_enabled(s, true), 0);
	cr_assert_eq(lm_test_spin(r, 20), 0, "reported twice");
	lm_source_free(s);
	lm_reactor_free(r);
}

/* A killed child; its source freed from its own callback; a floating one. */
LM_BACKEND_TEST(child, killed_child_and_free_from_callback, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct child_state c = {.free_self = true}, f = {0};
	pid_t pid = spawn_sleeper(), pid2 = spawn_exit(3);

	cr_assert_eq(lm_reactor_add_child(r, &c.self, pid, 0, child_cb, &c), 0);
	cr_assert_eq(lm_reactor_add_child(r, NULL, pid2, 0, child_cb, &f), 0);
	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert_eq(lm_reactor_run(r), 0);
	cr_assert_eq(c.calls, 1);
	cr_assert_null(c.self);
	cr_assert_eq(c.si.si_code, CLD_KILLED);
	cr_assert_eq(c.si.si_status, SIGTERM);
	cr_assert_eq(f.calls, 1);
	cr_assert_eq(f.si.si_status, 3);
	lm_reactor_free(r);
}

/* Several reactors in one process, each with its children, none with a
 * SIGCHLD handler: each hears of its own only. */
LM_BACKEND_TEST(child, two_reactors_each_their_own, .timeout = 10)
{
	lm_reactor *a = lm_test_reactor(backend), *b = lm_test_reactor(backend);
	struct child_state ca = {0}, cb = {0};
	pid_t pa = spawn_exit(1), pb = spawn_exit(2);

	cr_assert_eq(lm_reactor_add_child(a, NULL, pa, 0, child_cb, &ca), 0);
	cr_assert_eq(lm_reactor_add_child(b, NULL, pb, 0, child_cb, &cb), 0);
	cr_assert_eq(lm_reactor_run(b), 0);
	cr_assert_eq(cb.calls, 1);
	cr_assert_eq(cb.si.si_pid, pb);
	cr_assert_eq(ca.calls, 0);
	cr_assert_eq(lm_reactor_run(a), 0);
	cr_assert_eq(ca.calls, 1);
	cr_assert_eq(ca.si.si_pid, pa);
	cr_assert_eq(ca.si.si_status, 1);
	lm_reactor_free(a);
	lm_reactor_free(b);
}

/* LM_CHILD_KILL_ON_FREE: the free kills and reaps a child still running;
 * from a pidfd the caller keeps. */
LM_BACKEND_TEST(child, kill_on_free_and_caller_pidfd, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct child_state c = {0};
	pid_t pid = spawn_sleeper();
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	lm_source *s;

	cr_assert_geq(pidfd, 0);
	cr_assert_eq(lm_reactor_add_child_pidfd(r, &s, pidfd, LM_CHILD_KILL_ON_FREE, child_cb, &c),
		     0);
	cr_assert_eq(lm_child_get_pid(s), pid);
	cr_assert_eq(lm_test_spin(r, 5), 0);
	lm_source_free(s);
	cr_assert_eq(c.calls, 0);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1, "the child was not reaped");
	cr_assert_eq(errno, ECHILD);
	cr_assert_eq(fcntl(pidfd, F_GETFD), FD_CLOEXEC, "the caller's pidfd was closed");
	close(pidfd);
	/* Without the flag, it is left alone. */
	pid = spawn_sleeper();
	cr_assert_eq(lm_reactor_add_child(r, &s, pid, 0, child_cb, &c), 0);
	lm_source_free(s);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "a child left alone was touched");
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	lm_reactor_free(r);
}

/* A child of fork() that frees an inherited child source made with
 * LM_CHILD_KILL_ON_FREE kills nothing: the process it watches is the
 * parent's child. */
LM_BACKEND_TEST(child, kill_on_free_left_to_the_parent_after_fork, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct child_state c = {0};
	pid_t pid = spawn_sleeper(), forked;
	lm_source *s;
	int status;

	cr_assert_eq(lm_reactor_add_child(r, &s, pid, LM_CHILD_KILL_ON_FREE, child_cb, &c), 0);
	forked = fork();
	cr_assert_geq(forked, 0);
	if (forked == 0) {
		lm_source_free(s);
		lm_reactor_free(r);
		_exit(0);
	}
	cr_assert_eq(waitpid(forked, &status, 0), forked);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the forked child killed the parent's child");
	cr_assert_eq(lm_test_spin(r, 3), 0);
	lm_source_free(s);
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), -1);
	cr_assert_eq(errno, ECHILD);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(child, bad_input)
{
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *s;
	int fd = (int)syscall(SYS_pidfd_open, 1, 0);

	cr_assert_eq(lm_reactor_add_child(r, &s, 0, 0, child_cb, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_child(r, &s, 1, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_child(r, &s, 1, 1u << 7, child_cb, NULL), -EINVAL);
	cr_assert_eq(lm_reactor_add_child(r, &s, 1, 0, child_cb, NULL), -ECHILD);
	cr_assert_eq(lm_reactor_add_child(r, &s, getpid(), 0, child_cb, NULL), -ECHILD);
	if (fd >= 0)
		cr_assert_eq(lm_reactor_add_child_pidfd(r, &s, fd, 0, child_cb, NULL), -ECHILD);
	cr_assert_eq(lm_reactor_add_child_pidfd(r, &s, 0, 0, child_cb, NULL), -EBADF);
	cr_assert_eq(lm_reactor_add_child_pidfd(r, &s, -1, 0, child_cb, NULL), -EINVAL);
	cr_assert_eq(lm_child_get_pid(NULL), -EINVAL);
	if (fd >= 0)
		close(fd);
	cr_assert_eq(r->alive, 0);
	lm_reactor_free(r);
}

/* ---- timers on other clocks ---- */

/* calls: with expirations >= 1; sets: 0 (the wall clock was set, which
 * another test running at the same time may do). */
struct clk {
	int calls, sets;
	uint64_t last;
	bool free_self;
};

static void clk_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	struct clk *c = userdata;

	if (!expirations) {
		c->sets++;
		return;
	}
	c->calls++;
	c->last = expirations;
	if (c->free_self)
		lm_source_free(s);
}

static uint64_t now_on(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

LM_BACKEND_TEST(clock_timer, boottime_and_realtime_fire, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct clk b = {0}, w = {0}, p = {0};
	lm_source *bs, *ws, *ps;

	cr_assert_eq(lm_reactor_add_timer_clock(r, &bs, CLOCK_BOOTTIME, 1 * MS, 0, 0, clk_cb, &b),
		     0);
	cr_assert_eq(lm_reactor_add_timer_clock(r, &ws, CLOCK_REALTIME,
						now_on(CLOCK_REALTIME) + 2 * MS, 0,
						LM_TIMER_ABSOLUTE, clk_cb, &w),
		     0);
	cr_assert_eq(
	    lm_reactor_add_timer_clock(r, &ps, CLOCK_BOOTTIME, 1 * MS, 1 * MS, 0, clk_cb, &p), 0);
	cr_assert_eq(lm_source_set_keepalive(ps, false), 0);
	cr_assert_eq(lm_reactor_run(r), 0, "one-shot timers keep it alive until they fire");
	cr_assert_eq(b.calls, 1);
	cr_assert_eq(b.last, 1);
	cr_assert_eq(w.calls, 1);
	cr_assert_geq(w.last, 1);
	cr_assert_not(lm_source_get_enabled(bs));
	/* Re-armed relative on its clock; disabled, its deadline waits. */
	cr_assert_eq(lm_timer_set(bs, 1 * MS, 0), 0);
	cr_assert_eq(lm_source_set_enabled(bs, false), 0);
	nanosleep(&(struct timespec){0, 3 * MS}, NULL);
	cr_assert_eq(lm_source_set_enabled(bs, true), 0);
	for (int i = 0; i < 20 && b.calls == 1; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(b.calls, 2, "a deadline missed while disabled did not fire on enable");
	cr_assert_gt(p.calls, 0);
	lm_source_free(bs);
	lm_source_free(ws);
	lm_source_free(ps);
	cr_assert_eq(r->fd_watched, 0);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(clock_timer, freed_from_its_callback_and_limits, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct clk a = {.free_self = true}, h = {0}, m = {0};
	lm_source *hs, *ms;

	cr_assert_eq(lm_reactor_add_timer_clock(r, NULL, CLOCK_BOOTTIME, 0, 1 * MS, 0, clk_cb, &a),
		     0);
	cr_assert_eq(
	    lm_reactor_add_timer_clock(r, &hs, CLOCK_BOOTTIME, 0, UINT64_MAX, 0, clk_cb, &h), 0);
	cr_assert_eq(lm_reactor_add_timer_clock(r, &ms, CLOCK_MONOTONIC, lm__now_ns() + 1 * MS, 0,
						LM_TIMER_ABSOLUTE, clk_cb, &m),
		     0);
	for (int i = 0; i < 20 && (!a.calls || !h.calls || !m.calls); i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(h.calls, 1);
	cr_assert_eq(m.calls, 1);
	cr_assert_eq(lm_test_spin(r, 500), 0, "a huge period fired again");
	cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0);
	cr_assert(lm_source_get_enabled(hs));
	cr_assert_eq(r->alive, 0, "a timer that never comes keeps the loop alive");
	cr_assert_eq(
	    lm_reactor_add_timer_clock(r, NULL, CLOCK_PROCESS_CPUTIME_ID, 0, 0, 0, clk_cb, &a),
	    -EINVAL);
	cr_assert_eq(lm_reactor_add_timer_clock(r, NULL, CLOCK_BOOTTIME, 0, 0, 1u << 5, clk_cb, &a),
		     -EINVAL);
	cr_assert_eq(lm_reactor_add_timer_clock(r, NULL, CLOCK_BOOTTIME, 0, 0, 0, NULL, &a),
		     -EINVAL);
	lm_source_free(hs);
	lm_source_free(ms);
	lm_reactor_free(r);
}

/* The wall clock is set (to the time it has: a jump of a few microseconds
 * back, which is still a set): a CLOCK_REALTIME timer's callback runs with
 * expirations 0, and it still fires at its deadline. */
LM_BACKEND_TEST(clock_timer, realtime_told_when_the_clock_is_set, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct clk w = {0};
	struct timespec ts;
	lm_source *ws;

	cr_assert_eq(lm_reactor_add_timer_clock(r, &ws, CLOCK_REALTIME,
						now_on(CLOCK_REALTIME) + 200 * MS, 0,
						LM_TIMER_ABSOLUTE, clk_cb, &w),
		     0);
	clock_gettime(CLOCK_REALTIME, &ts);
	if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
		lm_source_free(ws);
		lm_reactor_free(r);
		cr_skip("cannot set the wall clock here: %s", strerror(errno));
	}
	for (int i = 0; i < 20 && !w.sets; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_geq(w.sets, 1, "the clock change was not told");
	cr_assert_eq(w.calls, 0);
	cr_assert(lm_source_get_enabled(ws));
	for (int i = 0; i < 100 && !w.calls; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(w.calls, 1);
	cr_assert_eq(w.last, 1);
	cr_assert_not(lm_source_get_enabled(ws));
	lm_source_free(ws);
	lm_reactor_free(r);
}

/* A thread that holds a reference may post: it keeps run() going. */
struct poster {
	lm_reactor *r;
};

static void stop_7(void *userdata)
{
	lm_reactor_stop(userdata, 7);
}

static void *poster_main(void *userdata)
{
	struct poster *p = userdata;

	nanosleep(&(struct timespec){0, 5 * MS}, NULL);
	cr_assert_eq(lm_reactor_post(p->r, stop_7, p->r), 0);
	lm_reactor_unref(p->r);
	return NULL;
}

LM_BACKEND_TEST(keepalive, a_reference_keeps_it_alive_for_posts, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct poster p = {.r = r};
	pthread_t t;

	lm_reactor_ref(r);
	cr_assert_eq(pthread_create(&t, NULL, poster_main, &p), 0);
	cr_assert_eq(lm_reactor_run(r), 7);
	pthread_join(t, NULL);
	cr_assert_eq(lm_reactor_run(r), 0);
	lm_reactor_free(r);
}
