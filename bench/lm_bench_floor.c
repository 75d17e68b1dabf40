/* SPDX-License-Identifier: MIT */
/* lm-bench: the floor, the same messages over bare blocking sockets, FIFOs or POSIX queues. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <mqueue.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lm_bench.h"

/*
 * The readiness loop (case "loop"): the floor's messages and fds, but each
 * receive waits first for readiness the way an event loop must, then reads
 * what is there: epoll_wait() (level-triggered), or a one-shot io_uring poll
 * per fd, re-armed after each report and submitted with the next wait (how
 * libmessage's io_uring backend gets level triggering; the ring set up with
 * DEFER_TASKRUN where the kernel has it, as there). No library: the
 * lowest an epoll- or io_uring-driven library can reach, so that a
 * libmessage case's distance to it is the library's own cost, and the
 * loop's distance to the floor that of readiness-based I/O.
 */
#define LOOP_BATCH 64
static struct loop {
	int backend; /* 0: none (the floor), else enum lm_backend: 1 epoll, 2 io_uring */
	int ep;
	struct io_uring ring;
	int *fds; /* by index */
	int nfds;
	int ready[LOOP_BATCH];
	int nready, pos;
} loop;

static int loop_init(struct bench_ctx *x, int nfds)
{
	int err;

	if (x->c->impl != IMPL_LOOP)
		return 0;
	loop.backend = x->c->backend;
	loop.fds = calloc((size_t)nfds, sizeof(*loop.fds));
	if (!loop.fds)
		return -ENOMEM;
	if (loop.backend == 1) {
		loop.ep = epoll_create1(EPOLL_CLOEXEC);
		err = loop.ep < 0 ? -errno : 0;
	} else {
		/* The best mode the kernel has, as libmessage's backend. */
		struct io_uring_params p = {.flags = IORING_SETUP_DEFER_TASKRUN |
						     IORING_SETUP_SINGLE_ISSUER};
		err = io_uring_queue_init_params(LOOP_BATCH * 2, &loop.ring, &p);
		if (err == -EINVAL) {
			p = (struct io_uring_params){.flags = IORING_SETUP_COOP_TASKRUN};
			err = io_uring_queue_init_params(LOOP_BATCH * 2, &loop.ring, &p);
		}
		if (err == -EINVAL)
			err = io_uring_queue_init(LOOP_BATCH * 2, &loop.ring, 0);
	}
	if (err < 0)
		bench_fail(x->shm, 1, "%s: %s", loop.backend == 1 ? "epoll" : "io_uring",
			   strerror(-err));
	return err;
}

static int loop_arm(int idx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop.ring);

	if (!sqe) {
		io_uring_submit(&loop.ring);
		sqe = io_uring_get_sqe(&loop.ring);
	}
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, loop.fds[idx], POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)idx);
	return 0;
}

static int loop_add(int fd, int idx)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};

	loop.fds[idx] = fd;
	if (loop.backend == 1)
		return epoll_ctl(loop.ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
	return loop_arm(idx);
}

/* The index of the next readable fd, waiting as long as it takes. */
static long loop_next(void)
{
	while (loop.pos == loop.nready) {
		loop.pos = loop.nready = 0;
		if (loop.backend == 1) {
			struct epoll_event ev[LOOP_BATCH];
			int n = epoll_wait(loop.ep, ev, LOOP_BATCH, -1);
			if (n < 0 && errno != EINTR)
				return -errno;
			for (int i = 0; i < n; i++)
				loop.ready[loop.nready++] = (int)ev[i].data.u32;
		} else {
			struct io_uring_cqe *cqe;
			unsigned head, k = 0;
			int r = io_uring_submit_and_wait(&loop.ring, 1);
			if (r < 0 && r != -EINTR)
				return r;
			io_uring_for_each_cqe(&loop.ring, head, cqe)
			{
				if (cqe->res < 0)
					return cqe->res;
				if (loop.nready < LOOP_BATCH)
					loop.ready[loop.nready++] = (int)cqe->user_data;
				k++;
			}
			io_uring_cq_advance(&loop.ring, k);
		}
	}
	int idx = loop.ready[loop.pos++];
	/* Re-armed now, submitted by the next wait, after this fd's read. */
	if (loop.backend == 2 && loop_arm(idx) < 0)
		return -EBUSY;
	return idx;
}

/* One client's two directions; for unix both are the same socket, for mq the
 * fds are mqd_t (descriptors on Linux, so poll() works). */
struct link {
	enum bench_tp tp;
	int rfd;
	int wfd;
	size_t size;
};

static void floor_path(const struct bench_ctx *x, char *buf, size_t n, const char *what, int i)
{
	if (x->c->tp == TP_MQ)
		snprintf(buf, n, "/lm-bench-%u-%s-%d", x->tag, what, i);
	else if (i < 0)
		snprintf(buf, n, "%s/%s", x->dir, what);
	else
		snprintf(buf, n, "%s/%s.%d", x->dir, what, i);
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static long read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return got ? -EPROTO : 0;
		got += (size_t)n;
	}
	return (long)got;
}

static int link_send(void *p, const void *buf, size_t len)
{
	struct link *l = p;
	switch (l->tp) {
	case TP_UNIX:
		if (send(l->wfd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
			return -errno;
		return 0;
	case TP_FIFO:
		return write_full(l->wfd, buf, len);
	default:
		return mq_send(l->wfd, buf, len, 0) < 0 ? -errno : 0;
	}
}

static long link_recv(void *p, void *buf, size_t cap)
{
	struct link *l = p;
	ssize_t n;
	if (loop.backend && loop.nfds == 1) {
		long r = loop_next();
		if (r < 0)
			return r;
	}
	switch (l->tp) {
	case TP_UNIX:
		n = recv(l->rfd, buf, cap, 0);
		break;
	case TP_FIFO:
		/* Every message is exactly --size bytes: that is the framing. */
		return read_full(l->rfd, buf, l->size);
	default:
		n = mq_receive(l->rfd, buf, cap, NULL);
		break;
	}
	return n < 0 ? -errno : n;
}

static int link_flush(void *p)
{
	return 0;
}

static int set_bufs(int fd, size_t size)
{
	int want = (int)(size * 4 + 4096);
	if (size > 32768) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	}
	return 0;
}

static int mq_create(const char *name, size_t size, int flags)
{
	struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = (long)size};
	mqd_t q = mq_open(name, flags | O_CREAT | O_EXCL, 0600, &a);
	return q < 0 ? -errno : q;
}

/* Server side: create what clients open, then say ready, then open/accept. */
static int floor_serve(struct bench_ctx *x, struct link *links, int n)
{
	char path[256], path2[256];
	int lfd = -1;

	if (x->c->tp == TP_UNIX) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		floor_path(x, sa.sun_path, sizeof(sa.sun_path), "floor.sock", -1);
		lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(lfd, n) < 0) {
			bench_fail(x->shm, 1, "floor unix socket: %s", strerror(errno));
			return -1;
		}
	}
	for (int i = 0; i < n; i++) {
		links[i] = (struct link){.tp = x->c->tp, .rfd = -1, .wfd = -1, .size = x->o->size};
		if (x->c->tp == TP_FIFO) {
			floor_path(x, path, sizeof(path), "c2s", i);
			floor_path(x, path2, sizeof(path2), "s2c", i);
			if (mkfifo(path, 0600) < 0 || mkfifo(path2, 0600) < 0) {
				bench_fail(x->shm, 1, "mkfifo: %s", strerror(errno));
				return -1;
			}
		} else if (x->c->tp == TP_MQ) {
			floor_path(x, path, sizeof(path), "c2s", i);
			floor_path(x, path2, sizeof(path2), "s2c", i);
			links[i].rfd = mq_create(path, x->o->size, O_RDONLY);
			links[i].wfd =
			    links[i].rfd < 0 ? -1 : mq_create(path2, x->o->size, O_WRONLY);
			if (links[i].rfd < 0 || links[i].wfd < 0) {
				bench_fail(x->shm, 1, "mq_open (queue %d of %d): %s", i + 1, 2 * n,
					   strerror(errno));
				return -1;
			}
		}
	}
	if (write(x->ready_fd, "R", 1) != 1)
		return -1;
	for (int i = 0; i < n; i++) {
		if (x->c->tp == TP_UNIX) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				bench_fail(x->shm, 2, "accept: %s", strerror(errno));
				return -1;
			}
			set_bufs(fd, x->o->size);
			links[i].rfd = links[i].wfd = fd;
		} else if (x->c->tp == TP_FIFO) {
			floor_path(x, path, sizeof(path), "c2s", i);
			floor_path(x, path2, sizeof(path2), "s2c", i);
			links[i].rfd = open(path, O_RDONLY | O_CLOEXEC);
			links[i].wfd = open(path2, O_WRONLY | O_CLOEXEC);
			if (links[i].rfd < 0 || links[i].wfd < 0) {
				bench_fail(x->shm, 2, "open fifo: %s", strerror(errno));
				return -1;
			}
		}
	}
	if (lfd >= 0)
		close(lfd);
	return 0;
}

/* The next message from any client: blocking recv on one, poll() for many. */
static long recv_any(struct link *links, int n, struct pollfd *pfds, int *from, void *buf,
		     size_t cap)
{
	static int next;
	if (n == 1) {
		*from = 0;
		return link_recv(&links[0], buf, cap);
	}
	if (loop.backend) {
		long r = loop_next();
		if (r < 0)
			return r;
		*from = (int)r;
		return link_recv(&links[r], buf, cap);
	}
	for (;;) {
		/* Round robin over the ready ones, so no client starves. */
		for (int k = 0; k < n; k++) {
			int i = (next + k) % n;
			if (pfds[i].revents) {
				pfds[i].revents = 0;
				next = i + 1;
				*from = i;
				return link_recv(&links[i], buf, cap);
			}
		}
		if (poll(pfds, (nfds_t)n, -1) < 0 && errno != EINTR)
			return -errno;
	}
}

/* floor-batch: the ring its writes go through. */
static struct io_uring batch_ring;

static int batch_init(struct bench_ctx *x)
{
	struct io_uring_params p = {.flags =
					IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
	int err = io_uring_queue_init_params(BENCH_BATCH_MAX, &batch_ring, &p);

	if (err == -EINVAL)
		err = io_uring_queue_init(BENCH_BATCH_MAX, &batch_ring, 0);
	if (err < 0)
		bench_fail(x->shm, 1, "io_uring: %s", strerror(-err));
	return err;
}

/*
 * The same writes as link_send() makes to each of links[0, n), in one
 * io_uring submission per BENCH_BATCH_MAX of them (send(2) with MSG_NOSIGNAL
 * on unix, write(2) on fifo), waiting for their completions: the floor of a
 * fan-out made as libmessage makes it, with no library.
 */
static int batch_send(struct link *links, int n, const void *buf, size_t len)
{
	for (int i = 0; i < n; i += BENCH_BATCH_MAX) {
		int k = n - i < BENCH_BATCH_MAX ? n - i : BENCH_BATCH_MAX, err = 0;
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		for (int j = 0; j < k; j++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&batch_ring);

			if (links[i + j].tp == TP_UNIX)
				io_uring_prep_send(sqe, links[i + j].wfd, buf, len, MSG_NOSIGNAL);
			else
				io_uring_prep_write(sqe, links[i + j].wfd, buf, (unsigned)len, 0);
		}
		int r = io_uring_submit_and_wait(&batch_ring, (unsigned)k);
		if (r < 0)
			return r;
		while ((int)seen < k) {
			unsigned got = 0;

			io_uring_for_each_cqe(&batch_ring, head, cqe)
			{
				if (cqe->res != (int)len && !err)
					err = cqe->res < 0 ? cqe->res : -EIO;
				got++;
			}
			io_uring_cq_advance(&batch_ring, got);
			seen += got;
			if ((int)seen < k && (r = io_uring_wait_cqe(&batch_ring, &cqe)) < 0)
				return r;
		}
		if (err)
			return err;
	}
	return 0;
}

static int floor_emit(struct bench_ctx *x, struct link *links, int n, void *buf, uint32_t kind)
{
	struct bench_hdr *h = buf;
	h->kind = kind;
	__atomic_store_n(&x->shm->fan_ack, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&x->shm->fan_last, 0, __ATOMIC_RELAXED);
	h->t0 = bench_now();
	if (x->c->impl == IMPL_FLOOR_BATCH) {
		int r = batch_send(links, n, buf, x->o->size);
		if (r < 0) {
			bench_fail(x->shm, 2, "io_uring send: %s", strerror(-r));
			return r;
		}
	}
	for (int i = 0; i < n && x->c->impl != IMPL_FLOOR_BATCH; i++) {
		int r = link_send(&links[i], buf, x->o->size);
		if (r < 0) {
			bench_fail(x->shm, 2, "send: %s", strerror(-r));
			return r;
		}
	}
	if (kind == BENCH_STOP)
		return 0;
	uint32_t v;
	while ((v = __atomic_load_n(&x->shm->fan_ack, __ATOMIC_ACQUIRE)) < (uint32_t)n)
		bench_futex_wait(&x->shm->fan_ack, v);
	return 0;
}

int bench_floor_server(struct bench_ctx *x)
{
	int n = x->c->peers;
	struct link *links = calloc((size_t)n, sizeof(*links));
	struct pollfd *pfds = calloc((size_t)n, sizeof(*pfds));
	size_t cap = x->o->size + 16;
	char *buf = calloc(1, cap);
	if (!links || !pfds || !buf || floor_serve(x, links, n) < 0)
		return 1;
	for (int i = 0; i < n; i++)
		pfds[i] = (struct pollfd){.fd = links[i].rfd, .events = POLLIN};
	if (loop_init(x, n) < 0)
		return 1;
	if (x->c->impl == IMPL_FLOOR_BATCH && batch_init(x) < 0)
		return 1;
	loop.nfds = n;
	for (int i = 0; loop.backend && x->c->mode == MODE_CALL && i < n; i++)
		if (loop_add(links[i].rfd, i) < 0)
			return 1;

	uint64_t cpu0 = 0, t0 = 0, msgs = 0;
	struct bench_hdr *h = (struct bench_hdr *)buf;
	if (x->c->mode == MODE_SIGNAL) {
		memset(buf, 'x', x->o->size);
		for (uint64_t i = 0; i < x->o->warmup; i++)
			if (floor_emit(x, links, n, buf, BENCH_WARMUP) < 0)
				return 1;
		struct hist *hist = malloc(sizeof(*hist));
		hist_init(hist);
		cpu0 = bench_cpu_ns();
		t0 = bench_now();
		while (bench_more(x, msgs, t0)) {
			if (floor_emit(x, links, n, buf, BENCH_DATA) < 0)
				return 1;
			hist_record(hist, x->shm->fan_last - h->t0);
			msgs++;
			__atomic_fetch_add(&x->shm->progress, 1, __ATOMIC_RELAXED);
		}
		uint64_t t1 = bench_now();
		bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
		bench_add_window(x->shm, t0, t1);
		__atomic_fetch_add(&x->shm->msgs, msgs, __ATOMIC_RELAXED);
		hist_merge(&x->shm->hist, hist);
		floor_emit(x, links, n, buf, BENCH_STOP);
		return 0;
	}
	if (x->c->mode == MODE_IDLE) {
		/* Blocked until the case ends: the floor of idle is no wake-up. */
		struct pollfd ctl = {.fd = x->ctl_fd, .events = POLLIN};
		while (poll(&ctl, 1, -1) < 0 && errno == EINTR)
			;
		memset(buf, 'x', x->o->size);
		h->kind = BENCH_STOP;
		for (int i = 0; i < n; i++)
			link_send(&links[i], buf, x->o->size);
		return 0;
	}
	/* call and throughput: serve until every client said STOP. */
	int stops = 0, from = 0;
	while (stops < n) {
		long len = recv_any(links, n, pfds, &from, buf, cap);
		if (len <= 0) {
			bench_fail(x->shm, 2, "floor server recv: %s",
				   len ? strerror((int)-len) : "peer closed");
			return 1;
		}
		if (h->kind == BENCH_DATA && !t0) {
			cpu0 = bench_cpu_ns();
			t0 = bench_now();
		}
		if (h->kind == BENCH_STOP) {
			stops++;
			continue;
		}
		if (x->c->mode == MODE_CALL) {
			if (link_send(&links[from], buf, (size_t)len) < 0) {
				bench_fail(x->shm, 2, "floor server send: %s", strerror(errno));
				return 1;
			}
		} else if (h->kind == BENCH_DATA) {
			msgs++;
		}
	}
	if (t0) {
		bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
		if (x->c->mode == MODE_THROUGHPUT) {
			bench_add_window(x->shm, t0, bench_now());
			__atomic_fetch_add(&x->shm->msgs, msgs, __ATOMIC_RELAXED);
		}
	}
	return 0;
}

int bench_floor_client(struct bench_ctx *x)
{
	char path[256], path2[256];
	struct link l = {.tp = x->c->tp, .rfd = -1, .wfd = -1, .size = x->o->size};

	if (x->c->tp == TP_UNIX) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		floor_path(x, sa.sun_path, sizeof(sa.sun_path), "floor.sock", -1);
		l.rfd = l.wfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (l.rfd < 0 || connect(l.rfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			bench_fail(x->shm, 2, "floor connect: %s", strerror(errno));
			return 1;
		}
		set_bufs(l.rfd, x->o->size);
	} else {
		floor_path(x, path, sizeof(path), "c2s", x->index);
		floor_path(x, path2, sizeof(path2), "s2c", x->index);
		if (x->c->tp == TP_FIFO) {
			l.wfd = open(path, O_WRONLY | O_CLOEXEC);
			l.rfd = l.wfd < 0 ? -1 : open(path2, O_RDONLY | O_CLOEXEC);
		} else {
			l.wfd = mq_open(path, O_WRONLY);
			l.rfd = l.wfd < 0 ? -1 : mq_open(path2, O_RDONLY);
		}
		if (l.rfd < 0 || l.wfd < 0) {
			bench_fail(x->shm, 2, "floor open %s: %s", path, strerror(errno));
			return 1;
		}
	}
	if (loop_init(x, 1) < 0)
		return 1;
	loop.nfds = 1;
	if (loop.backend && loop_add(l.rfd, 0) < 0) {
		bench_fail(x->shm, 2, "loop: %s", strerror(errno));
		return 1;
	}
	struct bench_io io = {.send = link_send, .recv = link_recv, .flush = link_flush, .p = &l};
	return bench_client_run(x, &io);
}
