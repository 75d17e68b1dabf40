/* SPDX-License-Identifier: MIT */
/* The runtime directory, endpoint names, and helpers the transports share. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log-internal.h"
#include "transport-internal.h"

static int runtime_dir_path(char *buf, size_t size)
{
	const char *env = getenv("LM_RUNTIME_DIR");
	int n;

	if (env && *env)
		n = snprintf(buf, size, "%s", env);
	else if ((env = getenv("XDG_RUNTIME_DIR")) && *env)
		n = snprintf(buf, size, "%s/libmessage", env);
	else
		n = snprintf(buf, size, "/tmp/libmessage-%u", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return n;
}

int lm__runtime_dir_open(char *path, size_t size)
{
	char buf[4096];
	struct stat st;
	int fd, n;

	n = runtime_dir_path(buf, sizeof(buf));
	if (n < 0)
		return n;
	/* mkdir never follows a symlink at the last component: it fails. */
	if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
		lm_log_error("runtime directory %s: cannot create: %s", buf, strerror(errno));
		return -errno;
	}
	fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;

		if (err == ELOOP || err == ENOTDIR) {
			lm_log_error("runtime directory %s: refused: a symlink or not a directory",
				     buf);
			return -EPERM;
		}
		lm_log_error("runtime directory %s: %s", buf, strerror(err));
		return -err;
	}
	if (fstat(fd, &st) < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		lm_log_error("runtime directory %s: refused: %s", buf,
			     st.st_uid != geteuid() ? "not owned by us"
						    : "group- or world-writable");
		close(fd);
		return -EPERM;
	}
	if (path) {
		if ((size_t)n >= size) {
			close(fd);
			return -ENAMETOOLONG;
		}
		memcpy(path, buf, (size_t)n + 1);
	}
	return fd;
}

LM_EXPORT int lm_runtime_dir(char *buf, size_t size)
{
	char path[4096];
	int fd;

	if (!buf || !size)
		return -EINVAL;
	fd = lm__runtime_dir_open(path, sizeof(path));
	if (fd < 0)
		return fd;
	close(fd);
	if (strlen(path) >= size)
		return -ENAMETOOLONG;
	strcpy(buf, path);
	return (int)strlen(path);
}

int lm__name_check(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > LM_NAME_MAX || strchr(name, '/') || strstr(name, ".."))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return -EINVAL;
	return 0;
}

ssize_t lm__writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
	static const struct timespec zero = {0, 0};
	sigset_t pipe_set, old, pending;
	bool was_pending;
	ssize_t n;
	int err;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	n = writev(fd, iov, iovcnt);
	err = errno;
	/* Our EPIPE raised a SIGPIPE (thread-directed): take it back, unless one
	 * was pending before, which belongs to the application. */
	if (n < 0 && err == EPIPE && !was_pending)
		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return n;
}

int lm__pidfd_open(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

pid_t lm__server_pid(int dirfd, const char *name, const char *scheme)
{
	char file[LM_NAME_MAX + 32], buf[32];
	ssize_t n;
	int fd;

	snprintf(file, sizeof(file), "%s.%s.lock", name, scheme);
	fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return (pid_t)atoi(buf);
}
