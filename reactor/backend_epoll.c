/* SPDX-License-Identifier: MIT */
/* The epoll backend: level-triggered epoll, ns timeouts through epoll_pwait2. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "log-internal.h"
#include "libmessage/reactor.h"

struct epoll_backend {
	int fd;
	bool no_pwait2; /* kernel older than 5.11: fall back to ms timeouts */
	struct epoll_event ev[256];
};

static uint32_t to_epoll(uint32_t events)
{
	return (events & LM_IO_IN ? EPOLLIN : 0u) | (events & LM_IO_OUT ? EPOLLOUT : 0u);
}

static uint32_t from_epoll(uint32_t e)
{
	return (e & (EPOLLIN | EPOLLPRI) ? LM_IO_IN : 0u) | (e & EPOLLOUT ? LM_IO_OUT : 0u) |
	       (e & EPOLLERR ? LM_IO_ERR : 0u) | (e & (EPOLLHUP | EPOLLRDHUP) ? LM_IO_HUP : 0u);
}

static int epoll_init(void **ret)
{
	struct epoll_backend *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->fd = epoll_create1(EPOLL_CLOEXEC);
	if (b->fd < 0) {
		int err = -errno;

		free(b);
		return err;
	}
	*ret = b;
	return 0;
}

static void epoll_fini(void *p)
{
	struct epoll_backend *b = p;

	if (!b)
		return;
	close(b->fd);
	free(b);
}

static int ctl(struct epoll_backend *b, int op, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.u64 = tag};

	return epoll_ctl(b->fd, op, fd, &ev) < 0 ? -errno : 0;
}

static int epoll_add(void *b, int fd, uint32_t events, uint64_t tag)
{
	return ctl(b, EPOLL_CTL_ADD, fd, events, tag);
}

static int epoll_mod(void *b, int fd, uint32_t events, uint64_t tag)
{
	return ctl(b, EPOLL_CTL_MOD, fd, events, tag);
}

/* The file registered under number fd, if there is one, is file m of ours:
 * 0 same, > 0 another, < 0 -errno (-ENOENT: no registration under fd). */
static int registered_as(struct epoll_backend *b, int m, int fd)
{
	struct kcmp_epoll_slot slot = {.efd = (__u32)b->fd, .tfd = (__u32)fd, .toff = 0};
	pid_t pid = getpid();
	long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, m, &slot);

	return r < 0 ? -errno : (int)r;
}

/*
 * fd was closed before its del() (misuse): epoll forgets a registration
 * only when its file is closed for good, so one that a dup keeps open
 * outlives the number. It is keyed by (file, number), and EPOLL_CTL_DEL
 * needs both: find a descriptor of that file among ours (kcmp), put a
 * copy of it at the number again if the number is still free, delete,
 * close the copy. The reactor drops whatever a registration left here
 * reports (its handle is stale), but a level-triggered one would wake
 * every wait.
 */
static void orphan_take_back(struct epoll_backend *b, int fd)
{
	DIR *d;
	struct dirent *e;
	int found = -1, copy;

	/* The common case, a file closed for good: nothing registered. */
	if (registered_as(b, b->fd, fd) < 0)
		return;
	d = opendir("/proc/self/fd");
	if (!d)
		return;
	while (found < 0 && (e = readdir(d))) {
		int m = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || m == dirfd(d) || m == b->fd)
			continue;
		if (registered_as(b, m, fd) == 0)
			found = m;
	}
	closedir(d);
	if (found < 0)
		return;
	copy = fcntl(found, F_DUPFD_CLOEXEC, fd);
	if (copy == fd)
		(void)epoll_ctl(b->fd, EPOLL_CTL_DEL, fd, NULL);
	else
		lm_log_warn("fd %d was closed and its number reused before its source was freed: "
			    "epoll keeps the old file's registration until that file is closed",
			    fd);
	if (copy >= 0)
		close(copy);
}

static void epoll_del(void *p, int fd, uint64_t tag)
{
	struct epoll_backend *b = p;

	/* The reactor calls this only for the source that holds the number.
	 * EBADF: the number was closed; ENOENT: it was closed and reused by a
	 * file not watched. Either way a dup may keep the old registration. */
	int err = ctl(b, EPOLL_CTL_DEL, fd, 0, tag);

	if (err == -EBADF || err == -ENOENT)
		orphan_take_back(b, fd);
}

static int epoll_wait_ns(void *p, struct lm_backend_event *out, int max, int64_t timeout_ns)
{
	struct epoll_backend *b = p;
	int n;

	if (max > 256)
		max = 256;
	if (!b->no_pwait2) {
		struct timespec ts = {.tv_sec = timeout_ns / 1000000000,
				      .tv_nsec = timeout_ns % 1000000000};

		n = epoll_pwait2(b->fd, b->ev, max, timeout_ns < 0 ? NULL : &ts, NULL);
		if (n < 0 && errno == ENOSYS)
			b->no_pwait2 = true;
	}
	if (b->no_pwait2) {
		/* Round up so a short timeout never becomes a busy poll. */
		int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);

		n = epoll_wait(b->fd, b->ev, max, ms);
	}
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		out[i].tag = b->ev[i].data.u64;
		out[i].events = from_epoll(b->ev[i].events);
		out[i].len = 0;
		out[i].data = NULL;
	}
	return n;
}

static int epoll_fd(void *p)
{
	return ((struct epoll_backend *)p)->fd;
}

const struct lm_backend_ops lm__backend_epoll = {
    .name = "epoll",
    .init = epoll_init,
    .fini = epoll_fini,
    .add = epoll_add,
    .mod = epoll_mod,
    .del = epoll_del,
    .wait = epoll_wait_ns,
    .fd = epoll_fd,
};
