/* SPDX-License-Identifier: MIT */
/* libmessage-systemd and srvtime-server under systemd's protocols, without a running systemd. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/libmessage.h>
#include <libmessage/systemd.h>

#include "lm_test.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A unix socket of type bound at dir/file (listening if asked). */
static int bound_socket(const char *dir, const char *file, int type, bool listening)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, file);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", sa.sun_path,
		     strerror(errno));
	if (listening)
		cr_assert_eq(listen(fd, 16), 0);
	return fd;
}

/* The test's own NOTIFY_SOCKET: a datagram socket at dir/notify, its path
 * in NOTIFY_SOCKET. */
static int notify_socket(const char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/notify", dir);
	setenv("NOTIFY_SOCKET", path, 1);
	return bound_socket(dir, "notify", SOCK_DGRAM, false);
}

/* The next notification within timeout_s into buf (NUL-terminated): its
 * length, or 0 when none came. */
static int notify_next(int fd, char *buf, size_t size, double timeout_s)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (poll(&p, 1, (int)(timeout_s * 1000)) <= 0)
		return 0;
	n = recv(fd, buf, size - 1, MSG_DONTWAIT);
	cr_assert_geq(n, 0, "recv: %s", strerror(errno));
	buf[n] = 0;
	return (int)n;
}

/* Wait up to timeout_s for a notification equal to what; the WATCHDOG=1
 * ones seen on the way are counted in *feeds (if not NULL). */
static bool notify_wait(int fd, const char *what, double timeout_s, int *feeds)
{
	double end = now_s() + timeout_s;
	char buf[256];

	while (now_s() < end) {
		if (!notify_next(fd, buf, sizeof(buf), end - now_s()))
			break;
		if (strcmp(buf, what) == 0)
			return true;
		if (feeds && strcmp(buf, "WATCHDOG=1") == 0)
			(*feeds)++;
	}
	return false;
}

/* WATCHDOG=1 notifications over window_s; anything else fails the test. */
static int notify_count_feeds(int fd, double window_s)
{
	double end = now_s() + window_s;
	char buf[256];
	int feeds = 0;

	while (now_s() < end) {
		double left = end - now_s();

		if (!notify_next(fd, buf, sizeof(buf), left > 0 ? left : 0))
			continue;
		cr_assert_str_eq(buf, "WATCHDOG=1");
		feeds++;
	}
	return feeds;
}

/* ---- socket activation ---- */

/* In a child: fds[i] becomes fd 3 + i and the LISTEN_* environment says so
 * (names: LISTEN_FDNAMES or NULL; pid_delta: LISTEN_PID is this pid plus
 * it), then lm_systemd_listen_fd(name) runs. Returns its result, and *fd. */
static int listen_fd_in_child(const int *fds, int n, const char *names, int pid_delta,
			      const char *name, int *fd)
{
	int p[2], out[2] = {-99, -1}, st;
	pid_t pid;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char v[32];
		int moved[8];

		/* Out of the way of 3..3+n first, then into place (no CLOEXEC). */
		for (int i = 0; i < n; i++)
			moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 20);
		for (int i = 0; i < n; i++)
			dup2(moved[i], 3 + i);
		snprintf(v, sizeof(v), "%d", n);
		setenv("LISTEN_FDS", v, 1);
		snprintf(v, sizeof(v), "%d", (int)getpid() + pid_delta);
		setenv("LISTEN_PID", v, 1);
		if (names)
			setenv("LISTEN_FDNAMES", names, 1);
		else
			unsetenv("LISTEN_FDNAMES");
		out[0] = lm_systemd_listen_fd(name, &out[1]);
		/* A second call gives the same answer: the environment stays. */
		if (lm_systemd_listen_fd(name, &st) != out[0])
			out[0] = -1000;
		_exit(write(p[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], out, sizeof(out)), (ssize_t)sizeof(out));
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	*fd = out[1];
	return out[0];
}

Test(systemd, listen_fd_by_name)
{
	const char *dir = lm_test_runtime_dir();
	int fds[2] = {bound_socket(dir, "a", SOCK_SEQPACKET, true),
		      bound_socket(dir, "b", SOCK_SEQPACKET, true)};
	int fd = -1;

	cr_assert_eq(listen_fd_in_child(fds, 2, "first:second", 0, "second", &fd), 1);
	cr_assert_eq(fd, 4);
	cr_assert_eq(listen_fd_in_child(fds, 2, "first:second", 0, "first", &fd), 1);
	cr_assert_eq(fd, 3);
	fd = -1;
	cr_assert_eq(listen_fd_in_child(fds, 2, "first:second", 0, "third", &fd), -ENOENT);
	cr_assert_eq(fd, -1, "not written on failure");
	/* One fd under another name (a unit without FileDescriptorName=), or
	 * none at all: the only one. */
	cr_assert_eq(listen_fd_in_child(fds, 1, "srvtime.socket", 0, "srvtime", &fd), 1);
	cr_assert_eq(fd, 3);
	cr_assert_eq(listen_fd_in_child(fds, 1, NULL, 0, "srvtime", &fd), 1);
	cr_assert_eq(fd, 3);
	/* For another process (LISTEN_PID): nothing passed to us. */
	cr_assert_eq(listen_fd_in_child(fds, 1, "srvtime", 1, "srvtime", &fd), 0);
	close(fds[0]);
	close(fds[1]);
}

Test(systemd, listen_fd_refuses)
{
	int fd = -1;

	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	cr_assert_eq(lm_systemd_listen_fd("srvtime", &fd), 0, "not activated");
	cr_assert_eq(lm_systemd_listen_fd(NULL, &fd), -EINVAL);
	cr_assert_eq(lm_systemd_listen_fd("", &fd), -EINVAL);
	cr_assert_eq(lm_systemd_listen_fd("srvtime", NULL), -EINVAL);
	setenv("LISTEN_PID", "me", 1);
	setenv("LISTEN_FDS", "1", 1);
	cr_assert_lt(lm_systemd_listen_fd("srvtime", &fd), 0, "a malformed LISTEN_PID");
	cr_assert_eq(fd, -1);
}

/* ---- notify ---- */

Test(systemd, notify_ready_stopping)
{
	const char *dir = lm_test_runtime_dir();
	char buf[256];
	int ns;

	unsetenv("NOTIFY_SOCKET");
	cr_assert_eq(lm_systemd_ready(), 0, "no NOTIFY_SOCKET: nothing to do");
	ns = notify_socket(dir);
	cr_assert_gt(lm_systemd_ready(), 0);
	cr_assert_gt(notify_next(ns, buf, sizeof(buf), 5), 0);
	cr_assert_str_eq(buf, "READY=1");
	cr_assert_gt(lm_systemd_notify("STATUS=serving\nREADY=1"), 0);
	cr_assert_gt(notify_next(ns, buf, sizeof(buf), 5), 0);
	cr_assert_str_eq(buf, "STATUS=serving\nREADY=1");
	cr_assert_gt(lm_systemd_stopping(), 0);
	cr_assert_gt(notify_next(ns, buf, sizeof(buf), 5), 0);
	cr_assert_str_eq(buf, "STOPPING=1");
	cr_assert_eq(lm_systemd_notify(NULL), -EINVAL);
	cr_assert_eq(lm_systemd_notify(""), -EINVAL);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	cr_assert_lt(lm_systemd_ready(), 0, "a NOTIFY_SOCKET that is no socket address");
	close(ns);
}

/* ---- watchdog ---- */

/* Run r for window_s, then count the WATCHDOG=1 that came. */
static int run_and_count_feeds(lm_reactor *r, int ns, double window_s)
{
	double end = now_s() + window_s;
	char buf[64];
	int feeds = 0;

	while (now_s() < end)
		cr_assert_geq(lm_reactor_run_once(r, 20 * 1000 * 1000), 0);
	while (notify_next(ns, buf, sizeof(buf), 0) > 0) {
		cr_assert_str_eq(buf, "WATCHDOG=1");
		feeds++;
	}
	return feeds;
}

/* WATCHDOG_USEC=200 ms: a feed every 100 ms, from the reactor's timer. Over
 * a 1 s window: about 10; never more than the window holds half-intervals
 * (the timer keeps its grid), and some even on a loaded machine. */
LM_BACKEND_TEST(systemd, watchdog_feeds_at_half_the_interval, .timeout = 30)
{
	const char *dir = lm_test_runtime_dir();
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *t = NULL;
	int ns = notify_socket(dir), feeds;

	setenv("WATCHDOG_USEC", "200000", 1);
	unsetenv("WATCHDOG_PID");
	cr_assert_eq(lm_systemd_watchdog_start(r, &t), 1);
	cr_assert_not_null(t);
	feeds = run_and_count_feeds(r, ns, 1.0);
	cr_assert_geq(feeds, 3, "%d feeds in 1 s", feeds);
	cr_assert_leq(feeds, 11, "%d feeds in 1 s: faster than every 100 ms", feeds);
	/* Freed, it feeds no more. */
	lm_source_free(t);
	cr_assert_eq(run_and_count_feeds(r, ns, 0.3), 0);
	lm_reactor_free(r);
	close(ns);
}

/* The watchdog is another process's (WATCHDOG_PID), or not asked for: no
 * timer, no feed. */
LM_BACKEND_TEST(systemd, watchdog_not_ours, .timeout = 30)
{
	const char *dir = lm_test_runtime_dir();
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *t = (lm_source *)1;
	char pid[32];
	int ns = notify_socket(dir);

	setenv("WATCHDOG_USEC", "100000", 1);
	snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	cr_assert_eq(lm_systemd_watchdog_start(r, &t), 0);
	cr_assert_null(t);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	cr_assert_eq(lm_systemd_watchdog_start(r, NULL), 0);
	cr_assert_eq(run_and_count_feeds(r, ns, 0.3), 0);
	setenv("WATCHDOG_USEC", "soon", 1);
	cr_assert_eq(lm_systemd_watchdog_start(r, &t), -EINVAL);
	cr_assert_eq(lm_systemd_watchdog_start(NULL, &t), -EINVAL);
	lm_reactor_free(r);
	close(ns);
}

/* ---- journal ---- */

static void journal_stream_is_stderr(bool yes)
{
	struct stat st;
	char v[64];

	cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + !yes);
	setenv("JOURNAL_STREAM", v, 1);
}

Test(systemd, journal_installed_when_stderr_is_the_journal)
{
	journal_stream_is_stderr(true);
	cr_assert_eq(lm_systemd_journal_install(), 1);
	lm_set_log_handler(NULL, NULL);
}

Test(systemd, journal_not_installed_for_another_stream)
{
	journal_stream_is_stderr(false);
	cr_assert_eq(lm_systemd_journal_install(), 0);
}

/* In a child with its own mount namespace and a tmpfs on /run/systemd,
 * the test's datagram socket is journald's: what lm_systemd_journal_log()
 * sends arrives there. Exit codes: 0 right, 77 no namespace here, else the
 * check that failed. */
static int journal_child(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[4096];
	ssize_t n;
	int fd;

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") < 0)
		return 77;
	if (mkdir("/run/systemd/journal", 0755) < 0)
		return 2;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/run/systemd/journal/socket");
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return 3;
	lm_systemd_journal_log(LM_LOG_WARN, "a warning", NULL);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	if (n <= 0)
		return 4;
	buf[n] = 0;
	if (!strstr(buf, "MESSAGE=libmessage: warning: a warning\n"))
		return 5;
	if (!strstr(buf, "PRIORITY=4\n") || !strstr(buf, "LM_LEVEL=warning\n"))
		return 6;
	if (!strstr(buf, "SYSLOG_IDENTIFIER="))
		return 7;
	return 0;
}

Test(systemd, journal_native_fields)
{
	pid_t pid = lm_test_fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(journal_child());
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "status %#x", st);
	if (WEXITSTATUS(st) == 77)
		cr_skip_test("no private mount namespace here to stand for journald's socket");
	cr_assert_eq(WEXITSTATUS(st), 0, "check %d failed (journal_child)", WEXITSTATUS(st));
}

/* ---- srvtime-server under systemd's protocol ---- */

/* srvtime-server started as systemd starts it for srvtime.socket: the
 * listening socket as fd 3 (LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES),
 * NOTIFY_SOCKET, WATCHDOG_USEC (and WATCHDOG_PID: watchdog_pid_delta 0 is
 * its own pid). Returns its pid. */
static pid_t start_activated(int lsock, enum lm_backend backend, int watchdog_pid_delta)
{
	pid_t pid = lm_test_fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char v[32];
		int fd = fcntl(lsock, F_DUPFD_CLOEXEC, 20);

		dup2(fd, 3);
		setenv("LISTEN_FDS", "1", 1);
		snprintf(v, sizeof(v), "%d", (int)getpid());
		setenv("LISTEN_PID", v, 1);
		setenv("LISTEN_FDNAMES", "srvtime", 1);
		setenv("WATCHDOG_USEC", "200000", 1);
		snprintf(v, sizeof(v), "%d", (int)getpid() + watchdog_pid_delta);
		setenv("WATCHDOG_PID", v, 1);
		setenv("LM_BACKEND", backend == LM_BACKEND_URING ? "uring" : "epoll", 1);
		execl(LM_TEST_SRVTIME_SERVER, "srvtime-server", "--period-ms", "100", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void stop_activated(pid_t pid, int ns)
{
	int st;

	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert(notify_wait(ns, "STOPPING=1", 20, NULL), "STOPPING=1 on the way out");
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "srvtime-server: status %#x", st);
}

LM_BACKEND_TEST(systemd, srvtime_server_socket_activated, .timeout = 60)
{
	const char *dir = lm_test_runtime_dir();
	lm_reactor *r = lm_test_reactor(backend);
	int ns = notify_socket(dir);
	int lsock = bound_socket(dir, "srvtime.unix", SOCK_SEQPACKET, true);
	struct lm_srvtime t;
	lm_client *c;
	char path[512];
	struct stat st;
	pid_t pid;
	int feeds;

	pid = start_activated(lsock, backend, 0);
	close(lsock);
	cr_assert(notify_wait(ns, "READY=1", 20, NULL), "READY=1 from srvtime-server");
	/* It serves on the passed socket, at its name. */
	cr_assert_eq(lm_client_new(&c, r, "unix:srvtime", NULL), 0);
	cr_assert_eq(lm_srvtime_getdate(c, 10ll * 1000 * 1000 * 1000, &t), 0);
	cr_assert_gt(t.sec, 1600000000);
	lm_client_free(c);
	snprintf(path, sizeof(path), "%s/srvtime.unix.lock", dir);
	cr_assert_eq(stat(path, &st), -1, "no lock file: the socket is systemd's");
	/* The watchdog, fed every 100 ms: counted over 1 s. */
	feeds = notify_count_feeds(ns, 1.0);
	cr_assert_geq(feeds, 3, "%d feeds in 1 s", feeds);
	cr_assert_leq(feeds, 11, "%d feeds in 1 s: faster than every 100 ms", feeds);
	stop_activated(pid, ns);
	snprintf(path, sizeof(path), "%s/srvtime.unix", dir);
	cr_assert_eq(stat(path, &st), 0, "the socket's file is left to systemd");
	cr_assert(S_ISSOCK(st.st_mode));
	lm_reactor_free(r);
	close(ns);
}

/* WATCHDOG_PID names another process: srvtime-server is ready and serves,
 * and never feeds. */
LM_BACKEND_TEST(systemd, srvtime_server_watchdog_of_another_pid, .timeout = 60)
{
	const char *dir = lm_test_runtime_dir();
	lm_reactor *r = lm_test_reactor(backend);
	int ns = notify_socket(dir);
	int lsock = bound_socket(dir, "srvtime.unix", SOCK_SEQPACKET, true);
	pid_t pid;

	lm_reactor_free(r); /* only to skip where io_uring is refused */
	pid = start_activated(lsock, backend, 1);
	close(lsock);
	cr_assert(notify_wait(ns, "READY=1", 20, NULL), "READY=1 from srvtime-server");
	cr_assert_eq(notify_count_feeds(ns, 0.5), 0);
	stop_activated(pid, ns);
	close(ns);
}

/* Not activated: srvtime-server makes its own socket, and a passed fd that
 * is no unix seqpacket listener is refused with a clear message. */
Test(systemd, srvtime_server_refuses_a_bad_passed_fd, .timeout = 60)
{
	const char *dir = lm_test_runtime_dir();
	int ns = notify_socket(dir);
	int dgram = bound_socket(dir, "srvtime.unix", SOCK_DGRAM, false);
	pid_t pid = start_activated(dgram, LM_BACKEND_EPOLL, 0);
	int st;

	close(dgram);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
	cr_assert_eq(notify_next(ns, (char[64]){0}, 64, 0.1), 0, "never ready");
	close(ns);
}
