/* SPDX-License-Identifier: MIT */
/* Child process sources: a pidfd each, its status taken by waitid(P_PIDFD). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log-internal.h"
#include "reactor-internal.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* waitid(2) since Linux 5.4; glibc names it from 2.36 */
#endif

static int pidfd_open_(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : (int)fd;
}

/* The pid a pidfd names (its fdinfo), 0 if unknown. */
static pid_t pidfd_pid(int pidfd)
{
	char path[64], line[128];
	pid_t pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid > 0 ? pid : 0;
}

int lm__child_watch(struct lm_source *s)
{
	if (s->enabled && !s->child.reported)
		return lm__reactor_watch_fd(s->r, s, s->child.pidfd, &s->child.registered);
	lm__reactor_unwatch_fd(s->r, s, s->child.pidfd, &s->child.registered);
	return 0;
}

/* Takes pidfd (closed on failure). */
static int add_child(lm_reactor *r, lm_source **ret, int pidfd, pid_t pid, unsigned flags,
		     lm_child_cb cb, void *userdata)
{
	siginfo_t si;
	struct lm_source *s;
	int err;

	/* Ours to wait for? WNOWAIT leaves an ended child to the source. */
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
		err = -errno;
		close(pidfd);
		return err;
	}
	s = lm__source_new_watchable(r, LM__SRC_CHILD, userdata, !ret);
	if (!s) {
		close(pidfd);
		return -ENOMEM;
	}
	s->child.pidfd = pidfd;
	s->child.pid = pid;
	s->child.flags = flags;
	s->child.cb = cb;
	return lm__source_added(s, ret, lm__child_watch(s));
}

int lm_reactor_add_child(lm_reactor *r, lm_source **ret, pid_t pid, unsigned flags, lm_child_cb cb,
			 void *userdata)
{
	int fd;

	if (!r || !cb || pid <= 0 || (flags & ~(unsigned)LM_CHILD_KILL_ON_FREE))
		return -EINVAL;
	if (lm__forked(r))
		return -ECHILD;
	fd = pidfd_open_(pid);
	if (fd < 0)
		return fd;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		fd = -errno;
		return fd;
	}
	return add_child(r, ret, fd, pid, flags, cb, userdata);
}

int lm_reactor_add_child_pidfd(lm_reactor *r, lm_source **ret, int pidfd, unsigned flags,
			       lm_child_cb cb, void *userdata)
{
	int fd;

	if (!r || !cb || pidfd < 0 || (flags & ~(unsigned)LM_CHILD_KILL_ON_FREE))
		return -EINVAL;
	if (lm__forked(r))
		return -ECHILD;
	fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	return add_child(r, ret, fd, pidfd_pid(fd), flags, cb, userdata);
}

pid_t lm_child_get_pid(const lm_source *s)
{
	if (!s || s->type != LM__SRC_CHILD)
		return -EINVAL;
	return s->child.pid;
}

int lm__child_dispatch(lm_reactor *r, struct lm_source *s)
{
	siginfo_t si;

	(void)r;
	if (!s->enabled || s->child.reported)
		return 0;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)s->child.pidfd, &si, WEXITED | WNOHANG) < 0) {
		if (errno != ECHILD) {
			lm_log_warn("waitid for child %d: %m", (int)s->child.pid);
			return 0;
		}
		/* Ended, but reaped by someone else: no status to give. */
		memset(&si, 0, sizeof(si));
		si.si_signo = SIGCHLD;
		si.si_pid = s->child.pid;
	} else if (si.si_pid == 0) {
		return 0; /* still running */
	}
	if (!s->child.pid)
		s->child.pid = si.si_pid;
	s->child.reported = true;
	s->enabled = false;
	lm__child_watch(s);
	lm__source_alive_sync(s);
	s->child.cb(s, &si, s->userdata);
	if (!s->dead && s->floating)
		lm_source_free(s);
	return 1;
}

void lm__child_detach(struct lm_source *s)
{
	siginfo_t si;

	if (s->child.pidfd < 0)
		return;
	lm__reactor_unwatch_fd(s->r, s, s->child.pidfd, &s->child.registered);
	if ((s->child.flags & LM_CHILD_KILL_ON_FREE) && !s->child.reported) {
		/* SIGKILL cannot be caught: the wait is short. */
		if (syscall(SYS_pidfd_send_signal, s->child.pidfd, SIGKILL, NULL, 0) == 0 ||
		    errno == ESRCH)
			while (waitid(P_PIDFD, (id_t)s->child.pidfd, &si, WEXITED) < 0 &&
			       errno == EINTR)
				;
	}
	close(s->child.pidfd);
	s->child.pidfd = -1;
}
