/* SPDX-License-Identifier: MIT */
/* The runtime directory, endpoint names, and helpers the transports share. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

/*
 * A runtime directory error, logged once: a client retrying its connection
 * meets the same one at every attempt, so the same line again goes to the
 * debug level, until the directory is opened fine once.
 */
static pthread_mutex_t dir_error_lock = PTHREAD_MUTEX_INITIALIZER;
static char dir_error_last[256];

__attribute__((format(printf, 1, 2))) static void runtime_dir_error(const char *fmt, ...)
{
	char msg[sizeof(dir_error_last)];
	bool again;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&dir_error_lock);
	again = strcmp(msg, dir_error_last) == 0;
	if (!again)
		memcpy(dir_error_last, msg, sizeof(msg));
	pthread_mutex_unlock(&dir_error_lock);
	if (again)
		lm_log_debug("%s (again)", msg);
	else
		lm_log_error("%s", msg);
}

static void runtime_dir_ok(void)
{
	pthread_mutex_lock(&dir_error_lock);
	dir_error_last[0] = 0;
	pthread_mutex_unlock(&dir_error_lock);
}

/* $LM_RUNTIME_DIR (absolute, else -EINVAL), else $XDG_RUNTIME_DIR/libmessage
 * (a relative one is ignored, as the XDG spec says), else
 * /tmp/libmessage-UID. */
static int runtime_dir_path(char *buf, size_t size)
{
	const char *env = getenv("LM_RUNTIME_DIR");
	int n;

	if (env && *env && *env != '/') {
		runtime_dir_error("LM_RUNTIME_DIR=%s: refused: not an absolute path", env);
		return -EINVAL;
	}
	if (env && *env)
		n = snprintf(buf, size, "%s", env);
	else if ((env = getenv("XDG_RUNTIME_DIR")) && *env == '/')
		n = snprintf(buf, size, "%s/libmessage", env);
	else
		n = snprintf(buf, size, "/tmp/libmessage-%u", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= size) {
		runtime_dir_error("runtime directory %.64s...: refused: longer than %zu bytes", buf,
				  size - 1);
		return -ENAMETOOLONG;
	}
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
		int err = errno;

		if (err == ENOENT)
			runtime_dir_error("runtime directory %s: cannot create it: its parent "
					  "directory does not exist",
					  buf);
		else
			runtime_dir_error("runtime directory %s: cannot create it: %s", buf,
					  strerror(err));
		return -err;
	}
	fd = open(buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;

		if (err == ELOOP || err == ENOTDIR) {
			runtime_dir_error(
			    "runtime directory %s: refused: a symlink or not a directory", buf);
			return -EPERM;
		}
		runtime_dir_error("runtime directory %s: %s", buf, strerror(err));
		return -err;
	}
	if (fstat(fd, &st) < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		runtime_dir_error("runtime directory %s: refused: %s", buf,
				  st.st_uid != geteuid() ? "not owned by us"
							 : "group- or world-writable");
		close(fd);
		return -EPERM;
	}
	runtime_dir_ok();
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

const char *lm__name_problem(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0)
		return "the name is empty";
	if (n > LM_NAME_MAX)
		return "the name is too long";
	if (strchr(name, '/'))
		return "a name may not contain '/'";
	if (strstr(name, ".."))
		return "a name may not contain '..'";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return "a name may not contain control characters";
	return NULL;
}

int lm__name_check(const char *name)
{
	return lm__name_problem(name) ? -EINVAL : 0;
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
