/* SPDX-License-Identifier: MIT */
/* io_uring backend tests: fallback under seccomp, cancellation, CQ overflow, level triggering,
 * datagrams received into provided buffers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "hooks-internal.h"
#include "lm_test.h"

#define MS 1000000ull

/* ---- (a) seccomp: io_uring_setup refused, AUTO falls back to epoll ---- */

/* Exit codes of the child, for the parent's message. */
enum {
	CHILD_OK = 0,
	CHILD_SECCOMP = 10,
	CHILD_AUTO_FAILED,
	CHILD_AUTO_NOT_EPOLL,
	CHILD_TIMER,
	CHILD_URING_NOT_EPERM,
};

static void stop_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(s), 42);
}

static int seccomp_child(void)
{
	struct lm_reactor_options uring = {.backend = LM_BACKEND_URING};
	lm_reactor *r;

	if (lm_test_refuse_syscall(__NR_io_uring_setup) < 0)
		return CHILD_SECCOMP;
	unsetenv("LM_BACKEND");
	if (lm_reactor_new(&r, NULL) < 0)
		return CHILD_AUTO_FAILED;
	if (strcmp(lm_reactor_backend_name(r), "epoll") != 0)
		return CHILD_AUTO_NOT_EPOLL;
	if (lm_reactor_add_timer(r, NULL, 1 * MS, 0, stop_cb, NULL) < 0 || lm_reactor_run(r) != 42)
		return CHILD_TIMER;
	lm_reactor_free(r);
	r = NULL;
	if (lm_reactor_new(&r, &uring) != -EPERM)
		return CHILD_URING_NOT_EPERM;
	return CHILD_OK;
}

Test(uring, seccomp_refusal_falls_back_to_epoll, .timeout = 10)
{
	int status;
	pid_t pid = lm_test_fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(seccomp_child());
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child died: status %#x", status);
	cr_assert_neq(WEXITSTATUS(status), CHILD_SECCOMP, "could not install the seccomp filter");
	cr_assert_neq(WEXITSTATUS(status), CHILD_AUTO_FAILED,
		      "AUTO failed instead of falling back");
	cr_assert_neq(WEXITSTATUS(status), CHILD_AUTO_NOT_EPOLL, "AUTO did not pick epoll");
	cr_assert_neq(WEXITSTATUS(status), CHILD_TIMER, "a timer did not run on the fallback");
	cr_assert_neq(WEXITSTATUS(status), CHILD_URING_NOT_EPERM, "URING did not give -EPERM");
	cr_assert_eq(WEXITSTATUS(status), CHILD_OK);
}

/* ---- (b) cancellation of a ready fd, number reused in the same callback ---- */

struct reuse_state {
	lm_source *old, *fresh;
	int old_pipe[2], new_pipe[2];
	int old_calls_after_free;
	int fresh_calls;
	uint32_t fresh_events;
	bool freed;
};

static void old_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct reuse_state *st = userdata;

	if (st->freed)
		st->old_calls_after_free++;
}

static void fresh_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct reuse_state *st = userdata;

	st->fresh_calls++;
	st->fresh_events |= events;
}

/* The trigger makes the old fd ready (its poll is in the kernel), then frees
 * it, closes it, and puts a new empty pipe on the same number. */
static void trigger_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct reuse_state *st = userdata;
	int num = st->old_pipe[0];
	char c;

	cr_assert_eq(read(fd, &c, 1), 1);
	if (st->freed)
		return;
	cr_assert_eq(write(st->old_pipe[1], "x", 1), 1);
	lm_source_free(st->old);
	st->freed = true;
	close(st->old_pipe[0]);
	close(st->old_pipe[1]);
	cr_assert_eq(pipe2(st->new_pipe, O_NONBLOCK | O_CLOEXEC), 0);
	if (st->new_pipe[0] != num) {
		cr_assert_eq(dup3(st->new_pipe[0], num, O_CLOEXEC), num);
		close(st->new_pipe[0]);
		st->new_pipe[0] = num;
	}
	cr_assert_eq(
	    lm_reactor_add_io(lm_source_get_reactor(s), &st->fresh, num, LM_IO_IN, fresh_cb, st),
	    0);
}

LM_BACKEND_TEST(uring, removed_ready_fd_number_reused_in_callback)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct reuse_state st = {0};
	lm_source *trigger;
	int tp[2];

	cr_assert_eq(pipe2(st.old_pipe, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(pipe2(tp, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, &st.old, st.old_pipe[0], LM_IO_IN, old_cb, &st), 0);
	cr_assert_eq(lm_reactor_add_io(r, &trigger, tp[0], LM_IO_IN, trigger_cb, &st), 0);
	/* Both polls reach the kernel, nothing is ready. */
	cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	cr_assert_eq(write(tp[1], "t", 1), 1);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert(st.freed);
	for (int i = 0; i < 5; i++)
		lm_reactor_run_once(r, i == 0 ? 10 * MS : 0);
	cr_assert_eq(st.old_calls_after_free, 0, "the freed source was called");
	cr_assert_eq(st.fresh_calls, 0, "the new source got the old fd's readiness");
	cr_assert_eq(write(st.new_pipe[1], "n", 1), 1);
	cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), 1);
	cr_assert_eq(st.fresh_calls, 1, "the new source misses its own event");
	cr_assert_eq(st.fresh_events, LM_IO_IN);
	lm_source_free(st.fresh);
	lm_source_free(trigger);
	close(st.new_pipe[0]);
	close(st.new_pipe[1]);
	close(tp[0]);
	close(tp[1]);
	lm_reactor_free(r);
}

/* ---- (c) a removed and closed read end really goes: the writer gets EPIPE ---- */

static void never_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	cr_assert_fail("a source removed before anything was ready was called");
}

/* iterations: how many run_once before the removal (0: the poll was only
 * queued, 1: it is in the kernel). */
static void check_epipe(enum lm_backend backend, int iterations)
{
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *s;
	int p[2];

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, never_cb, NULL), 0);
	for (int i = 0; i < iterations; i++)
		cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	lm_source_free(s);
	close(p[0]);
	errno = 0;
	cr_assert_eq(write(p[1], "x", 1), -1, "the pipe still has a reader");
	cr_assert_eq(errno, EPIPE, "write: %s", strerror(errno));
	cr_assert_eq(lm_reactor_run_once(r, 0), 0);
	close(p[1]);
	lm_reactor_free(r);
}

LM_BACKEND_TEST(uring, writer_gets_epipe_after_armed_reader_removed)
{
	check_epipe(backend, 1);
}

LM_BACKEND_TEST(uring, writer_gets_epipe_after_queued_reader_removed)
{
	check_epipe(backend, 0);
}

/* ---- (d) CQ overflow: a 4-entry ring, 64 ready fds ---- */

#define NREADY 64

struct ready_state {
	int fds[NREADY];
	int calls[NREADY];
};

static void count_ready_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct ready_state *st = userdata;

	for (int i = 0; i < NREADY; i++)
		if (st->fds[i] == fd)
			st->calls[i]++;
}

Test(uring, tiny_ring_overflow_delivers_every_event, .timeout = 10)
{
	struct ready_state st = {0};
	lm_source *src[NREADY];
	lm_reactor *r;

	setenv("LM_URING_ENTRIES", "4", 1);
	r = lm_test_reactor(LM_BACKEND_URING);
	for (int i = 0; i < NREADY; i++) {
		st.fds[i] = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
		cr_assert_geq(st.fds[i], 0);
		cr_assert_eq(
		    lm_reactor_add_io(r, &src[i], st.fds[i], LM_IO_IN, count_ready_cb, &st), 0);
	}
	/* Level-triggered, never drained: every fd in every iteration. */
	for (int round = 1; round <= 3; round++) {
		cr_assert_eq(lm_reactor_run_once(r, 1000 * MS), NREADY, "round %d", round);
		for (int i = 0; i < NREADY; i++)
			cr_assert_eq(st.calls[i], round, "fd #%d: %d reports after %d rounds", i,
				     st.calls[i], round);
	}
	for (int i = 0; i < NREADY; i++) {
		lm_source_free(src[i]);
		close(st.fds[i]);
	}
	lm_reactor_free(r);
}

/* ---- (e) level-triggered: an undrained pipe, three iterations ---- */

static void undrained_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	cr_assert_eq(events, LM_IO_IN);
	(*(int *)userdata)++;
}

LM_BACKEND_TEST(uring, undrained_pipe_reported_every_iteration)
{
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *s;
	int p[2], calls = 0;

	cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	cr_assert_eq(lm_reactor_add_io(r, &s, p[0], LM_IO_IN, undrained_cb, &calls), 0);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(lm_reactor_run_once(r, 0), 1, "iteration %d", i);
		cr_assert_eq(calls, i);
	}
	lm_source_free(s);
	close(p[0]);
	close(p[1]);
	lm_reactor_free(r);
}

/* ---- (f) datagrams received for the source (lm__reactor_add_io_recv) ---- */

#define NREC 512   /* datagrams one test records at most */
#define BIG  70000 /* longer than LM__RECV_MAX */
#define SEC  1000000000ull

/* What a receiving source's callback saw, in order. No assertion in the
 * callback: the handover test runs it in another thread. */
struct rx {
	lm_source *s;
	int n; /* datagrams recorded */
	unsigned char *data[NREC];
	size_t len[NREC];
	bool given[NREC]; /* came with lm__source_data() */
	bool more[NREC];  /* lm__source_data() said another one follows */
	int given_count;
	int calls;
	int eof;      /* empty reads handed over, or read here (recv() gave 0) */
	int n_at_eof; /* datagrams before the first of them */
	int late;     /* datagrams after the end */
	int empty;    /* reports without data whose recv() found nothing */
	int errors;   /* other recv() errors, data without LM_IO_IN, too many */
	int outs;     /* reports with LM_IO_OUT */
	/* Run at the end of each callback (set by the test). */
	void (*hook)(struct rx *rx, uint32_t events);
	bool freed;     /* the hook freed the source */
	int after_free; /* callbacks after that */
	int phase;      /* the hook's own state */
	int n_switch;   /* datagrams when it switched */
	int outs_asked, outs_unasked;
	int set_err;
};

/* Where the callback reads itself: a whole BIG datagram fits. */
static unsigned char rbuf[128 * 1024];

/* The one place that knows lm__source_data()'s signature. */
static const void *source_data(lm_source *s, size_t *len, bool *more)
{
	return lm__source_data(s, len, more);
}

static void rx_record(struct rx *rx, const void *p, size_t len, bool given, bool more)
{
	if (rx->n >= NREC) {
		rx->errors++;
		return;
	}
	if (rx->eof)
		rx->late++;
	rx->data[rx->n] = malloc(len ? len : 1);
	if (!rx->data[rx->n]) {
		rx->errors++;
		return;
	}
	memcpy(rx->data[rx->n], p, len);
	rx->len[rx->n] = len;
	rx->given[rx->n] = given;
	rx->more[rx->n] = more;
	rx->given_count += given;
	rx->n++;
}

/* A datagram with data is recorded; a report without data is read here,
 * one recv() per report, as the hooks-internal.h contract asks. */
static void rx_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct rx *rx = userdata;
	bool more = false;
	size_t len = 0;
	const void *p = source_data(s, &len, &more);

	rx->calls++;
	if (rx->freed) {
		rx->after_free++;
		return;
	}
	if (events & LM_IO_OUT)
		rx->outs++;
	if (p && len == 0) {
		/* A read of 0 bytes handed over: the end. */
		if (!(events & LM_IO_IN))
			rx->errors++;
		if (!rx->eof++)
			rx->n_at_eof = rx->n;
	} else if (p) {
		if (!(events & LM_IO_IN))
			rx->errors++;
		rx_record(rx, p, len, true, more);
	} else if (events & (LM_IO_IN | LM_IO_HUP)) {
		ssize_t k = read(fd, rbuf, sizeof(rbuf)); /* a socket or a FIFO, O_NONBLOCK */

		if (k > 0) {
			rx_record(rx, rbuf, (size_t)k, false, false);
		} else if (k == 0) {
			if (!rx->eof++)
				rx->n_at_eof = rx->n;
		} else if (errno == EAGAIN) {
			rx->empty++;
		} else {
			rx->errors++;
		}
	}
	if (rx->hook)
		rx->hook(rx, events);
}

static void rx_free(struct rx *rx)
{
	for (int i = 0; i < rx->n; i++)
		free(rx->data[i]);
	rx->n = 0;
}

/* The end of a test: the source, both ends of its pair, the reactor and
 * what was recorded. */
static void rx_done(lm_reactor *r, struct rx *rx, const int sv[2])
{
	lm_source_free(rx->s);
	close(sv[0]);
	close(sv[1]);
	lm_reactor_free(r);
	rx_free(rx);
}

/* The end of a test with two pairs whose sources are freed already: the
 * pairs, the reactor and what was recorded. */
static void rx_pair_done(lm_reactor *r, struct rx *rx, struct rx *rx2, const int sv[2],
			 const int sv2[2])
{
	close(sv[0]);
	close(sv[1]);
	close(sv2[0]);
	close(sv2[1]);
	lm_reactor_free(r);
	rx_free(rx);
	rx_free(rx2);
}

/* Datagram i: its number, then bytes that depend on it and on the offset;
 * 4 to 100 bytes long. */
static size_t dgram_len(int i)
{
	return 4 + (size_t)(i * 37 % 97);
}

static void dgram_fill(int i, unsigned char *buf, size_t len)
{
	uint32_t num = (uint32_t)i;

	memcpy(buf, &num, sizeof(num));
	for (size_t k = sizeof(num); k < len; k++)
		buf[k] = (unsigned char)(i * 7 + k * 13);
}

/* Send datagrams from..to-1; false (errno set) if one did not go whole. */
static bool send_range(int fd, int from, int to)
{
	unsigned char buf[128];

	for (int i = from; i < to; i++) {
		size_t len = dgram_len(i);

		dgram_fill(i, buf, len);
		if (send(fd, buf, len, MSG_DONTWAIT) != (ssize_t)len)
			return false;
	}
	return true;
}

/* Recorded datagram j is datagram i of len bytes (maybe cut to got). */
static bool dgram_is(const struct rx *rx, int j, int i, size_t len, size_t got)
{
	static unsigned char want[BIG];

	dgram_fill(i, want, len);
	return rx->len[j] == got && memcmp(rx->data[j], want, got) == 0;
}

static void check_range(const struct rx *rx, int from, int to)
{
	cr_assert_geq(rx->n, to, "%d datagrams, not %d", rx->n, to);
	for (int j = from; j < to; j++)
		cr_assert(dgram_is(rx, j, j, dgram_len(j), dgram_len(j)),
			  "datagram #%d of %d: %zu bytes, number %u: lost, reordered or damaged", j,
			  rx->n, rx->len[j], rx->len[j] >= 4 ? *(uint32_t *)rx->data[j] : 0u);
}

/* "Another follows" is true only when one did: the next came with data. */
static void check_more(const struct rx *rx)
{
	for (int j = 0; j < rx->n; j++)
		cr_assert(!rx->more[j] || (j + 1 < rx->n && rx->given[j + 1]),
			  "datagram #%d said another follows; none came with data", j);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* Run r until rx has want datagrams (and the end, if asked), at most 5 s
 * and 5000 rounds; then three rounds that must bring no datagram more.
 * Negative on a run_once error, else 0. */
static int run_until(lm_reactor *r, struct rx *rx, int want, bool eof)
{
	uint64_t end = mono_ns() + 5 * SEC;

	for (int i = 0; i < 5000 && (rx->n < want || (eof && !rx->eof)) && mono_ns() < end; i++) {
		int k = lm_reactor_run_once(r, 100 * MS);

		if (k < 0)
			return k;
	}
	for (int i = 0; i < 3; i++) {
		int k = lm_reactor_run_once(r, 10 * MS);

		if (k < 0)
			return k;
	}
	return 0;
}

/* A SEQPACKET pair: sv[0] is watched, sv[1] sends (room for BIG and for
 * 200 small datagrams queued at once). */
static void seqpacket_pair(int sv[2])
{
	int size = 1 << 20;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0,
		     "socketpair: %s", strerror(errno));
	cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
}

static void check_no_trouble(const struct rx *rx)
{
	cr_assert_eq(rx->errors, 0, "recv() errors or data without LM_IO_IN: %d", rx->errors);
	cr_assert_eq(rx->late, 0, "%d datagrams came after the end", rx->late);
}

#define NMANY 200 /* more than the provided buffers: they run out, the receive is armed again */

/* NMANY datagrams queued before the first run all arrive, in order, none
 * twice; where the backend receives, every one comes with data (a report
 * without data would mean the receive fell back to polls), elsewhere none. */
static void many_in_order(enum lm_backend backend, bool data)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct rx rx = {0};
	int sv[2];

	seqpacket_pair(sv);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, NMANY), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx, NMANY, false), 0);
	cr_assert_eq(rx.n, NMANY, "%d datagrams of %d", rx.n, NMANY);
	check_range(&rx, 0, NMANY);
	check_no_trouble(&rx);
	cr_assert_eq(rx.eof, 0);
	if (data)
		cr_assert_eq(rx.given_count, NMANY, "only %d of %d came with data", rx.given_count,
			     NMANY);
	else
		cr_assert_eq(rx.given_count, 0, "%d came with data", rx.given_count);
	check_more(&rx);
	cr_assert_not(rx.more[NMANY - 1], "the last one said another follows");
	rx_done(r, &rx, sv);
}

LM_BACKEND_TEST(uring_recv, many_datagrams_in_order, .timeout = 20)
{
	many_in_order(backend, lm_test_uring_receives(backend));
}

/* LM_URING_RECV=0 (read when the reactor is made): io_uring polls, the
 * callback reads every datagram itself and none is lost. */
Test(uring_recv, env_off_polls_and_callback_reads, .timeout = 20)
{
	setenv("LM_URING_RECV", "0", 1);
	many_in_order(LM_BACKEND_URING, false);
}

/* A named FIFO: fd[0] its reading end, fd[1] its writing end, both
 * O_NONBLOCK; the name is gone already. */
static void fifo_pair(int fd[2])
{
	char path[512];

	snprintf(path, sizeof(path), "%s/rx.fifo", lm_test_runtime_dir());
	cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo: %s", strerror(errno));
	fd[0] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	fd[1] = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	unlink(path);
	cr_assert(fd[0] >= 0 && fd[1] >= 0, "open: %s", strerror(errno));
}

#define STREAM (300u * 1024) /* more than the pipe holds, and than the buffers */

static unsigned char stream_byte(size_t i)
{
	return (unsigned char)(i * 131 + (i >> 9));
}

/* A FIFO written in pieces of 1 to 8191 bytes, 300 KiB in all, each time
 * the pipe is full the reactor runs: every byte comes once, in order, and
 * then the end (the writer closed), nothing after it. Where io_uring reads
 * FIFOs (Linux 6.7), every read comes with data (a multishot read; a
 * report without data would be a poll), elsewhere none. */
LM_BACKEND_TEST(uring_recv, fifo_stream_whole_in_order_then_end, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_reads_fifos(backend);
	static unsigned char piece[8192];
	struct rx rx = {0};
	size_t sent = 0, got = 0, n = 1;
	uint64_t end = mono_ns() + 10 * SEC;
	int fd[2];

	fifo_pair(fd);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, fd[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	while (sent < STREAM && mono_ns() < end) {
		size_t k = n < STREAM - sent ? n : STREAM - sent;
		ssize_t w;

		for (size_t i = 0; i < k; i++)
			piece[i] = stream_byte(sent + i);
		w = write(fd[1], piece, k);
		if (w > 0) {
			sent += (size_t)w;
			n = n * 7 % 8191 + 1;
			continue;
		}
		cr_assert(w < 0 && errno == EAGAIN, "write: %s", strerror(errno));
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	}
	cr_assert_eq(sent, STREAM, "%zu of %u bytes written in 10 s", sent, STREAM);
	close(fd[1]);
	while (!rx.eof && mono_ns() < end)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	cr_assert_geq(rx.eof, 1, "the end was not reported");
	cr_assert_eq(rx.n_at_eof, rx.n, "%d reads came after the end", rx.n - rx.n_at_eof);
	for (int j = 0; j < rx.n; j++) {
		for (size_t i = 0; i < rx.len[j]; i++)
			cr_assert_eq(rx.data[j][i], stream_byte(got + i),
				     "byte %zu (read %d of %d) lost, reordered or damaged", got + i,
				     j, rx.n);
		got += rx.len[j];
	}
	cr_assert_eq(got, STREAM, "%zu of %u bytes came", got, STREAM);
	cr_assert_eq(rx.given_count, data ? rx.n : 0, "%d of %d reads came with data",
		     rx.given_count, rx.n);
	cr_assert_eq(rx.errors, 0);
	check_more(&rx);
	lm_source_free(rx.s);
	close(fd[0]);
	lm_reactor_free(r);
	rx_free(&rx);
}

/* A datagram longer than LM__RECV_MAX comes cut to LM__RECV_MAX + 1 bytes
 * (so a reader sees it was too long), with its first bytes right; the next
 * one is whole. Read by the callback, it comes whole. */
LM_BACKEND_TEST(uring_recv, long_datagram_cut_next_intact, .timeout = 10)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	static unsigned char big[BIG];
	struct rx rx = {0};
	int sv[2];

	seqpacket_pair(sv);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	dgram_fill(0, big, BIG);
	cr_assert_eq(send(sv[1], big, BIG, MSG_DONTWAIT), BIG, "send: %s", strerror(errno));
	cr_assert(send_range(sv[1], 1, 2), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx, 2, false), 0);
	cr_assert_eq(rx.n, 2, "%d datagrams of 2", rx.n);
	cr_assert(dgram_is(&rx, 0, 0, BIG, data ? LM__RECV_MAX + 1 : BIG),
		  "the long one: %zu bytes (%s)", rx.len[0], data ? "with data" : "read");
	cr_assert(dgram_is(&rx, 1, 1, dgram_len(1), dgram_len(1)), "the next one: %zu bytes",
		  rx.len[1]);
	cr_assert_eq(rx.given_count, data ? 2 : 0);
	check_no_trouble(&rx);
	rx_done(r, &rx, sv);
}

/* The peer sends count datagrams and closes: they all come first (with
 * data where the backend receives), then the end: an empty read handed
 * over, or (polls) a report whose own recv() gives 0; nothing after it. */
static void end_after(enum lm_backend backend, int count, uint32_t events)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	struct rx rx = {0};
	int sv[2];

	seqpacket_pair(sv);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], events, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, count), "send: %s", strerror(errno));
	close(sv[1]);
	cr_assert_eq(run_until(r, &rx, count, true), 0);
	cr_assert_geq(rx.eof, 1, "the end was not reported (%d datagrams)", rx.n);
	cr_assert_eq(rx.n_at_eof, count, "the end came after %d datagrams, not %d", rx.n_at_eof,
		     count);
	cr_assert_eq(rx.n, count);
	check_range(&rx, 0, count);
	cr_assert_eq(rx.given_count, data ? count : 0);
	cr_assert_eq(rx.empty, 0, "a report without data found nothing to read");
	if (events & LM_IO_OUT)
		cr_assert_geq(rx.outs, 1, "LM_IO_OUT asked for, never reported");
	check_more(&rx);
	check_no_trouble(&rx);
	lm_source_free(rx.s);
	close(sv[0]);
	lm_reactor_free(r);
	rx_free(&rx);
}

LM_BACKEND_TEST(uring_recv, end_after_all_datagrams, .timeout = 10)
{
	end_after(backend, 3, LM_IO_IN);
}

/* The same with more datagrams than buffers (the end comes after receives
 * armed again) and LM_IO_OUT asked for all along (its poll sees the end
 * too: the end is still reported once, after the data, by the receive). */
LM_BACKEND_TEST(uring_recv, end_after_many_datagrams_with_out, .timeout = 20)
{
	end_after(backend, NMANY, LM_IO_IN | LM_IO_OUT);
}

/* After the first datagram: ask for LM_IO_OUT too; at the first LM_IO_OUT,
 * back to LM_IO_IN alone. */
static void out_switch_hook(struct rx *rx, uint32_t events)
{
	if (rx->phase == 1 && (events & LM_IO_OUT))
		rx->outs_asked++;
	if (rx->phase != 1 && (events & LM_IO_OUT))
		rx->outs_unasked++;
	if (rx->phase == 0 && rx->n == 1) {
		rx->set_err |= lm_io_set_events(rx->s, LM_IO_IN | LM_IO_OUT);
		rx->phase = 1;
	} else if (rx->phase == 1 && (events & LM_IO_OUT)) {
		rx->set_err |= lm_io_set_events(rx->s, LM_IO_IN);
		rx->phase = 2;
		rx->n_switch = rx->n;
	}
}

/* Asking for LM_IO_OUT and back while datagrams wait keeps the receive
 * going: every datagram, before and after, in order and (where the backend
 * receives) with data; LM_IO_OUT reported while asked, never after. */
LM_BACKEND_TEST(uring_recv, out_interest_toggled_keeps_datagrams, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	struct rx rx = {.hook = out_switch_hook};
	int sv[2];

	seqpacket_pair(sv);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, NMANY), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx, NMANY, false), 0);
	cr_assert_eq(rx.set_err, 0, "lm_io_set_events failed");
	cr_assert_eq(rx.phase, 2, "LM_IO_OUT was never reported while asked");
	cr_assert_geq(rx.outs_asked, 1);
	cr_assert_eq(rx.outs_unasked, 0, "LM_IO_OUT reported while not asked");
	cr_assert_lt(rx.n_switch, NMANY, "back to LM_IO_IN only after the last datagram");
	/* More after the switch back. */
	cr_assert(send_range(sv[1], NMANY, NMANY + 5), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx, NMANY + 5, false), 0);
	cr_assert_eq(rx.n, NMANY + 5, "%d datagrams of %d", rx.n, NMANY + 5);
	check_range(&rx, 0, NMANY + 5);
	cr_assert_eq(rx.given_count, data ? NMANY + 5 : 0, "%d came with data", rx.given_count);
	cr_assert_eq(rx.outs_unasked, 0, "LM_IO_OUT reported while not asked");
	check_more(&rx);
	check_no_trouble(&rx);
	rx_done(r, &rx, sv);
}

static void free_hook(struct rx *rx, uint32_t events)
{
	if (rx->n == 1 && !rx->freed) {
		lm_source_free(rx->s);
		rx->s = NULL;
		rx->freed = true;
	}
}

/* A source freed in its callback at the first of many datagrams is never
 * called again (what the backend held for it is dropped: ASan and LSan
 * see no use after free, no leak); the reactor then receives for a new
 * source as before. */
LM_BACKEND_TEST(uring_recv, freed_in_callback_with_datagrams_waiting, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	struct rx rx = {.hook = free_hook}, rx2 = {0};
	int sv[2], sv2[2];

	seqpacket_pair(sv);
	seqpacket_pair(sv2);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, NMANY), "send: %s", strerror(errno));
	for (int i = 0; i < 100 && !rx.freed; i++)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	cr_assert(rx.freed, "the first datagram never came");
	for (int i = 0; i < 5; i++)
		cr_assert_geq(lm_reactor_run_once(r, i ? 0 : 10 * MS), 0);
	cr_assert_eq(rx.calls, 1, "called %d times", rx.calls);
	cr_assert_eq(rx.after_free, 0);
	cr_assert_eq(rx.n, 1);
	check_range(&rx, 0, 1);
	cr_assert_eq(rx.given_count, data ? 1 : 0);
	/* The reactor goes on: a new source gets its datagrams. */
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx2.s, sv2[0], LM_IO_IN, rx_cb, &rx2, NULL), 0);
	cr_assert(send_range(sv2[1], 0, 3), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx2, 3, false), 0);
	cr_assert_eq(rx2.n, 3, "%d datagrams of 3 on the new source", rx2.n);
	check_range(&rx2, 0, 3);
	cr_assert_eq(rx2.given_count, data ? 3 : 0);
	cr_assert_eq(rx.calls, 1, "the freed source was called again");
	check_no_trouble(&rx2);
	lm_source_free(rx2.s);
	rx_pair_done(r, &rx, &rx2, sv, sv2);
}

static void disable_hook(struct rx *rx, uint32_t events)
{
	if (rx->n == 1 && rx->phase == 0) {
		rx->set_err |= lm_source_set_enabled(rx->s, false);
		rx->phase = 1;
	}
}

static bool last_came(const struct rx *rx)
{
	return rx->n > 1 &&
	       dgram_is(rx, rx->n - 1, NMANY - 1, dgram_len(NMANY - 1), dgram_len(NMANY - 1));
}

/* Disabled in its callback at the first of many datagrams: no callback
 * while disabled; enabled again, what comes is in order, none twice, and
 * ends with the last one sent (what the backend held when disabled may be
 * dropped, as for a removed source). */
LM_BACKEND_TEST(uring_recv, disabled_in_callback_then_enabled, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct rx rx = {.hook = disable_hook};
	int sv[2], last = 0;
	uint64_t end;

	seqpacket_pair(sv);
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, NMANY), "send: %s", strerror(errno));
	for (int i = 0; i < 100 && !rx.phase; i++)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	cr_assert_eq(rx.phase, 1, "the first datagram never came");
	for (int i = 0; i < 5; i++)
		cr_assert_geq(lm_reactor_run_once(r, i ? 0 : 10 * MS), 0);
	cr_assert_eq(rx.calls, 1, "called %d times while disabled", rx.calls);
	cr_assert_eq(lm_source_set_enabled(rx.s, true), 0);
	/* Run until the last one sent has come (at most 5 s, 5000 rounds). */
	end = mono_ns() + 5 * SEC;
	for (int i = 0; i < 5000 && !last_came(&rx) && mono_ns() < end; i++)
		cr_assert_geq(lm_reactor_run_once(r, 100 * MS), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(rx.set_err, 0);
	check_range(&rx, 0, 1);
	for (int j = 1; j < rx.n; j++) {
		int num = rx.len[j] >= 4 ? (int)*(uint32_t *)rx.data[j] : -1;

		cr_assert(num > last && num < NMANY &&
			      dgram_is(&rx, j, num, dgram_len(num), dgram_len(num)),
			  "datagram #%d is number %d after %d: reordered, repeated or damaged", j,
			  num, last);
		last = num;
	}
	cr_assert_eq(last, NMANY - 1, "the last datagram sent never came");
	if (backend == LM_BACKEND_EPOLL)
		cr_assert_eq(rx.n, NMANY, "epoll drops nothing: %d of %d", rx.n, NMANY);
	check_no_trouble(&rx);
	rx_done(r, &rx, sv);
}

/* ---- (g) receiving across a handover to another thread ---- */

struct handover_rx {
	lm_reactor *r;
	struct rx *rx, *rx2;
	int fd, fd2;
	int want;
	char err[200];
};

/* The second thread: sends the last batch and runs until all came. */
static void *recv_thread(void *p)
{
	struct handover_rx *h = p;
	int err;

	if (!send_range(h->fd, h->want - 50, h->want)) {
		snprintf(h->err, sizeof(h->err), "send: %s", strerror(errno));
		return NULL;
	}
	err = run_until(h->r, h->rx, h->want, false);
	if (err < 0)
		snprintf(h->err, sizeof(h->err), "run_once: %s", strerror(-err));
	return NULL;
}

/* The second thread frees the source before running (its first entry
 * rebuilds the ring with completions of the freed source pending), then
 * receives on a new one. */
static void *free_thread(void *p)
{
	struct handover_rx *h = p;
	int err;

	lm_source_free(h->rx->s);
	h->rx->s = NULL;
	h->rx->freed = true;
	err = lm__reactor_add_io_recv(h->r, &h->rx2->s, h->fd2, LM_IO_IN, rx_cb, h->rx2, NULL);
	if (err < 0) {
		snprintf(h->err, sizeof(h->err), "add: %s", strerror(-err));
		return NULL;
	}
	if (!send_range(h->fd, 0, 3)) {
		snprintf(h->err, sizeof(h->err), "send: %s", strerror(errno));
		return NULL;
	}
	err = run_until(h->r, h->rx2, 3, false);
	if (err < 0)
		snprintf(h->err, sizeof(h->err), "run_once: %s", strerror(-err));
	lm_source_free(h->rx2->s);
	h->rx2->s = NULL;
	return NULL;
}

/* Freed in a new thread while the backend holds its datagrams: no callback
 * for it, no leak or use after free; the reactor receives for a new source
 * in that thread. */
LM_BACKEND_TEST(uring_recv, handover_then_free_with_datagrams_held, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	struct rx rx = {0}, rx2 = {0};
	struct handover_rx h = {.r = r, .rx = &rx, .rx2 = &rx2};
	pthread_t t;
	int sv[2], sv2[2], calls;

	seqpacket_pair(sv);
	seqpacket_pair(sv2);
	h.fd = sv2[1];
	h.fd2 = sv2[0];
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	cr_assert(send_range(sv[1], 0, 100), "send: %s", strerror(errno));
	cr_assert_geq(lm_reactor_run_once(r, 1000 * MS), 1);
	calls = rx.calls;
	cr_assert(send_range(sv[1], 100, 150), "send: %s", strerror(errno));
	cr_assert_geq(lm_reactor_fd(r), 0); /* io_uring receives some now */
	cr_assert_eq(pthread_create(&t, NULL, free_thread, &h), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_str_empty(h.err, "second thread: %s", h.err);
	cr_assert_eq(rx.calls, calls, "the freed source was called");
	check_range(&rx, 0, rx.n);
	cr_assert_eq(rx2.n, 3, "%d datagrams of 3 on the new source", rx2.n);
	check_range(&rx2, 0, 3);
	cr_assert_eq(rx2.given_count, data ? 3 : 0);
	check_no_trouble(&rx2);
	rx_pair_done(r, &rx, &rx2, sv, sv2);
}

/* Made and run in one thread, run by another (io_uring rebuilds the ring
 * for it), then by the first again: every datagram, in order, none twice,
 * including those the backend had received before the handover. */
LM_BACKEND_TEST(uring_recv, handover_keeps_received_datagrams, .timeout = 20)
{
	lm_reactor *r = lm_test_reactor(backend);
	bool data = lm_test_uring_receives(backend);
	struct rx rx = {0};
	struct handover_rx h = {.r = r, .rx = &rx};
	pthread_t t;
	int sv[2], before, queued, left;

	seqpacket_pair(sv);
	h.fd = sv[1];
	cr_assert_eq(lm__reactor_add_io_recv(r, &rx.s, sv[0], LM_IO_IN, rx_cb, &rx, NULL), 0);
	/* The first thread: one round over 100 queued datagrams. */
	cr_assert(send_range(sv[1], 0, 100), "send: %s", strerror(errno));
	cr_assert_geq(lm_reactor_run_once(r, 1000 * MS), 1);
	before = rx.n;
	cr_assert_geq(before, 1, "nothing came in the first thread");
	/* 50 more, and lm_reactor_fd(), which submits and runs completions
	 * without reporting them: io_uring receives some into its buffers
	 * here, before the handover. */
	cr_assert(send_range(sv[1], 100, 150), "send: %s", strerror(errno));
	cr_assert_eq(ioctl(sv[0], FIONREAD, &queued), 0);
	cr_assert_geq(lm_reactor_fd(r), 0);
	cr_assert_eq(ioctl(sv[0], FIONREAD, &left), 0);
	if (data)
		cr_assert_lt(left, queued, "io_uring received nothing before the handover");
	/* The second thread: 50 more and all of them. */
	h.want = 200;
	cr_assert_eq(pthread_create(&t, NULL, recv_thread, &h), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_str_empty(h.err, "second thread: %s", h.err);
	cr_assert_eq(rx.n, 200, "%d datagrams of 200 after the second thread", rx.n);
	/* The first thread again. */
	cr_assert(send_range(sv[1], 200, 220), "send: %s", strerror(errno));
	cr_assert_eq(run_until(r, &rx, 220, false), 0);
	cr_assert_eq(rx.n, 220, "%d datagrams of 220 back in the first thread", rx.n);
	check_range(&rx, 0, 220);
	cr_assert_eq(rx.given_count, data ? 220 : 0, "%d came with data", rx.given_count);
	check_more(&rx);
	check_no_trouble(&rx);
	rx_done(r, &rx, sv);
}
