/* SPDX-License-Identifier: MIT */
/* The epoll backend: level-triggered epoll, ns timeouts through epoll_pwait2. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
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

static int ctl(struct epoll_backend *b, int op, int fd, uint32_t events, void *tag)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = tag};

	return epoll_ctl(b->fd, op, fd, &ev) < 0 ? -errno : 0;
}

static int epoll_add(void *b, int fd, uint32_t events, void *tag)
{
	return ctl(b, EPOLL_CTL_ADD, fd, events, tag);
}

static int epoll_mod(void *b, int fd, uint32_t events, void *tag)
{
	return ctl(b, EPOLL_CTL_MOD, fd, events, tag);
}

static void epoll_del(void *b, int fd, void *tag)
{
	/* EBADF/ENOENT: the fd was closed already, which removed it. */
	(void)ctl(b, EPOLL_CTL_DEL, fd, 0, tag);
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
		out[i].tag = b->ev[i].data.ptr;
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
