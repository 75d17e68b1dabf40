/* io_uring backend tests: fallback under seccomp, cancellation, CQ overflow, level triggering. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int refuse_io_uring_setup(void)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another arch: leave it */
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		return -errno;
	return 0;
}

static void stop_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(s), 42);
}

static int seccomp_child(void)
{
	struct lm_reactor_options uring = {.backend = LM_BACKEND_URING};
	lm_reactor *r;

	if (refuse_io_uring_setup() < 0)
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
