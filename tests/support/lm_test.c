/* SPDX-License-Identifier: MIT */
/* Helpers shared by the tests. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <liburing.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lm_test.h"

enum lm_backend lm_test_backends[2] = {LM_BACKEND_EPOLL, LM_BACKEND_URING};

const char *lm_test_backend_name(enum lm_backend b)
{
	return b == LM_BACKEND_URING ? "io_uring" : b == LM_BACKEND_EPOLL ? "epoll" : "auto";
}

lm_reactor *lm_test_reactor(enum lm_backend b)
{
	struct lm_reactor_options o = {.backend = b};
	lm_reactor *r = NULL;
	int err = lm_reactor_new(&r, &o);

	if (err < 0 && b == LM_BACKEND_URING)
		cr_skip_test("io_uring refused on this machine: %s", strerror(-err));
	cr_assert_eq(err, 0, "lm_reactor_new(%s): %s", lm_test_backend_name(b), strerror(-err));
	cr_assert_str_eq(lm_reactor_backend_name(r), b == LM_BACKEND_URING ? "io_uring" : "epoll");
	return r;
}

static char runtime_dir[256];
static pid_t runtime_owner;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void runtime_cleanup(void)
{
	/* Only the process that made it removes it, not forked children. */
	if (runtime_dir[0] && getpid() == runtime_owner)
		nftw(runtime_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *lm_test_runtime_dir(void)
{
	char tmpl[] = "/tmp/lm-test-XXXXXX";
	char *d;

	/* A test that asks for a fresh one twice: the first goes now (only the
	 * last would go at exit). */
	runtime_cleanup();
	d = mkdtemp(tmpl);

	cr_assert_not_null(d, "mkdtemp: %s", strerror(errno));
	snprintf(runtime_dir, sizeof(runtime_dir), "%s", d);
	if (!runtime_owner)
		atexit(runtime_cleanup);
	runtime_owner = getpid();
	setenv("LM_RUNTIME_DIR", runtime_dir, 1);
	return runtime_dir;
}

int lm_test_spin(lm_reactor *r, int n)
{
	int total = 0;

	for (int i = 0; i < n; i++) {
		int c = lm_reactor_run_once(r, 0);

		cr_assert_geq(c, 0);
		total += c;
	}
	return total;
}

int lm_test_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

pid_t lm_test_fork(void)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	/* A peer never outlives its test: a killed or timed-out test would
	 * otherwise leave it holding queues, fds and the user's mq budget. */
	if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
		_exit(99);
	return pid;
}

bool lm_test_uring_multishot(void)
{
	const char *v = getenv("LM_URING_MULTISHOT");

	return !(v && !strcmp(v, "0"));
}

bool lm_test_uring_receives(enum lm_backend backend)
{
	const char *v = getenv("LM_URING_RECV");
	struct utsname u;
	int major = 0, minor = 0;

	if (backend != LM_BACKEND_URING || (v && !strcmp(v, "0")))
		return false;
	return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 && major >= 6;
}

bool lm_test_uring_reads_fifos(enum lm_backend backend)
{
	struct utsname u;
	int major = 0, minor = 0;

	return lm_test_uring_receives(backend) && uname(&u) == 0 &&
	       sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
	       (major > 6 || (major == 6 && minor >= 7));
}

bool lm_test_fanout_ring(void)
{
	const char *v = getenv("LM_FANOUT_URING");
	struct io_uring ring;

	if ((v && !strcmp(v, "0")) || io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	io_uring_queue_exit(&ring);
	return true;
}

int lm_test_refuse_syscall(long nr)
{
	struct sock_filter filter[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another arch: leave it */
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
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

int lm_test_as_other_uid(char *out, size_t size, const char *groups, const char *const argv[])
{
	char uid[32], gid[32], grp[128];
	const char *args[32];
	int pfd[2], st, n = 0;
	ssize_t got = 0, r;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("running as another uid needs root (setpriv --reuid)");
	if (access("/usr/bin/setpriv", X_OK) != 0)
		cr_skip_test("setpriv (util-linux) is not installed");
	snprintf(uid, sizeof(uid), "--reuid=%d", LM_TEST_OTHER_UID);
	snprintf(gid, sizeof(gid), "--regid=%d", LM_TEST_OTHER_UID);
	args[n++] = "/usr/bin/setpriv";
	args[n++] = uid;
	args[n++] = gid;
	if (groups) {
		snprintf(grp, sizeof(grp), "--groups=%s", groups);
		args[n++] = grp;
	} else {
		args[n++] = "--clear-groups";
	}
	for (int i = 0; argv[i] && n < 31; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execv(args[0], (char *const *)args);
		_exit(127);
	}
	close(pfd[1]);
	while (size > 1 && (r = read(pfd[0], out + got, size - 1 - (size_t)got)) > 0)
		got += r;
	close(pfd[0]);
	if (size) {
		out[got] = 0;
		out[strcspn(out, "\n")] = 0;
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "setpriv %s: killed by signal %d", argv[0], WTERMSIG(st));
	return WEXITSTATUS(st);
}
