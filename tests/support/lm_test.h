/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests: backend parameters, private runtime dirs. */
#ifndef LM_TEST_H
#define LM_TEST_H

#include <stdbool.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <libmessage/reactor.h>

/* The backends every reactor-level test body runs on. */
extern enum lm_backend lm_test_backends[2];

/* A reactor on backend b, or the test is skipped with the kernel's reason
 * when b is io_uring and io_uring is refused here. */
lm_reactor *lm_test_reactor(enum lm_backend b);

/* Name of a backend for messages. */
const char *lm_test_backend_name(enum lm_backend b);

/* Create a fresh private runtime directory, set LM_RUNTIME_DIR to it and
 * return its path (removed by lm_test_runtime_cleanup, registered atexit). */
const char *lm_test_runtime_dir(void);

/* fork() for test peers: the child gets SIGKILL if the test process dies. */
pid_t lm_test_fork(void);

/* Runs n non-blocking iterations of r (each must succeed) and returns how
 * many callbacks they ran: a count over a window, not a timed check. */
int lm_test_spin(lm_reactor *r, int n);

/* Number of open fds of this process. */
int lm_test_fd_count(void);

/* The uid and gid lm_test_as_other_uid() runs as (nobody, nogroup). */
#define LM_TEST_OTHER_UID 65534
/*
 * Run argv (argv[0] a path) as another uid, LM_TEST_OTHER_UID, with no
 * supplementary groups, or those of groups (a comma list, NULL: none),
 * through setpriv; its stdout (first line) into out. Returns its exit
 * status. Skips the test where that cannot be done (not root, no setpriv).
 */
int lm_test_as_other_uid(char *out, size_t size, const char *groups, const char *const argv[]);

/* False when LM_URING_MULTISHOT=0 (the *_older_kernel runs): io_uring
 * watches edge-triggered sources with one-shot polls, level-triggered. */
bool lm_test_uring_multishot(void);

/* Whether the backend receives for unix connections and hands their
 * datagrams over (LM__IO_RECV): io_uring on Linux 6.0 or later, unless
 * LM_URING_RECV=0 (the *_older_kernel runs). */
bool lm_test_uring_receives(enum lm_backend backend);
/* The same for FIFOs: and the kernel has multishot reads (Linux 6.7). */
bool lm_test_uring_reads_fifos(enum lm_backend backend);
/* From now on, syscall nr fails with EPERM in this process and its children
 * (a seccomp filter, as a container's profile refuses io_uring); x86-64
 * only, other architectures are left alone. 0 or -errno. */
int lm_test_refuse_syscall(long nr);

/* Whether a fan-out to four or more unix connections is written by the
 * reactor's io_uring (io_uring allowed here, LM_FANOUT_URING not 0). */
bool lm_test_fanout_ring(void);

/*
 * A test body that runs once per backend:
 *   LM_BACKEND_TEST(suite, name, .timeout = 10) { ... uses `backend` ... }
 * With io_uring refused, its run skips with the reason.
 */
#define LM_BACKEND_TEST(suite, name, ...)                                         \
	static void suite##_##name##_body(enum lm_backend backend);               \
	ParameterizedTestParameters(suite, name)                                  \
	{                                                                         \
		return cr_make_param_array(enum lm_backend, lm_test_backends, 2); \
	}                                                                         \
	ParameterizedTest(enum lm_backend *bp, suite, name, ##__VA_ARGS__)        \
	{                                                                         \
		suite##_##name##_body(*bp);                                       \
	}                                                                         \
	static void suite##_##name##_body(enum lm_backend backend)

#endif
