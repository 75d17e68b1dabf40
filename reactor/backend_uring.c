/* SPDX-License-Identifier: MIT */
/* The io_uring backend: level-triggered readiness from one-shot polls re-armed in batches,
 * edge-triggered from multishot polls where asked for, datagrams received into provided
 * buffers by multishot receives where asked for. */
#include <bsd/sys/queue.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#ifndef MQUEUE_MAGIC
#define MQUEUE_MAGIC 0x19800202 /* include/uapi/linux/magic.h of newer kernels */
#endif
#include <unistd.h>

#include "backend.h"
#include "libmessage/reactor.h"

/*
 * How level-triggered, persistent readiness is obtained.
 *
 * A multishot IORING_OP_POLL_ADD posts a completion only on a new wake-up of
 * the fd's wait queue: an fd that stays readable because the callback did
 * not drain it is never reported again, which is edge-triggered behaviour.
 * Re-reporting the last mask without asking the kernel would report fds the
 * callback did drain. So each registration keeps exactly one one-shot poll in
 * flight, and after its completion has been reported the poll is queued
 * again (an SQE, no syscall). The next wait() submits it in the same
 * io_uring_enter() that waits: the kernel checks readiness at arming time and
 * completes the poll at once if the fd is still ready. That is epoll's level
 * triggering, for one SQE per report and no extra syscall.
 *
 * Edge triggering (LM__IO_EDGE, see backend.h) is that multishot poll: armed
 * once, it stays in the fd's wait queue and completes on every wake-up (the
 * kernel folds wake-ups that come before its completion runs into one). No
 * SQE, no poll request made and torn down, no wait-queue entry added and
 * removed per report, so less time per wake-up than the one-shot re-arm
 * (docs/bench.md). It is for
 * callers that read until the fd is empty; again() puts a rec back on the
 * ready list for one that stopped before. A multishot poll the kernel ends
 * (a completion without IORING_CQE_F_MORE: cancelled, or the CQ overflowed)
 * is armed again like a one-shot one.
 *
 * Lifetime of a registration ("rec"): user_data is the rec's address. A rec is
 * freed only when no request naming it can still complete (its poll's
 * completion was reaped, or its poll never reached the kernel), so a
 * completion always finds its rec; a removed rec is marked dead and its late
 * completions are dropped. The address therefore works as the generation:
 * it cannot be reused while the kernel may still name it.
 *
 * del() must leave nothing in the kernel that holds the file: a poll that
 * was never submitted is turned into a NOP in place; a submitted one is
 * cancelled with IORING_OP_POLL_REMOVE, submitted before del() returns (the
 * only syscall outside wait(), besides the fstat() of add()).
 *
 * Task work: where the kernel allows it (6.1), the ring is set up with
 * IORING_SETUP_DEFER_TASKRUN: completions are run only when we enter to wait
 * (or ask for events), never by interrupting us elsewhere, which costs least
 * per wake-up (docs/bench.md). Two consequences are
 * handled below: nothing completes until we enter with GETEVENTS, so del()
 * asks for events after its POLL_REMOVE (the cancelled poll lets its file go
 * before del() returns) and a wait that must not block asks for events too;
 * and DEFER_TASKRUN needs IORING_SETUP_SINGLE_ISSUER, one thread entering the
 * ring. A reactor belongs to the thread that runs it, not to the one that
 * made it: the ring is created disabled (R_DISABLED) and enabled by the first
 * entry, so that thread owns it; if another thread enters later (the kernel
 * says -EEXIST), the ring is rebuilt for it: the old one is closed, which
 * cancels every poll, and every live registration is armed again. Older
 * kernels get IORING_SETUP_COOP_TASKRUN, or nothing. LM_URING_DEFER=0 in the
 * environment (read by init) skips DEFER_TASKRUN, for tests and A/B runs.
 *
 * LM_URING_MULTISHOT=0 (environment, read by init) makes edge recs use
 * one-shot polls, as a kernel without multishot polls (before 5.13) does:
 * for tests.
 *
 * Receiving (LM__IO_RECV, see backend.h): the rec's LM_IO_IN is a multishot
 * IORING_OP_RECV (a socket) or IORING_OP_READ_MULTISHOT (a FIFO, whose
 * reads then each give what the pipe held) selecting buffers from one ring
 * of RECV_BUFS provided buffers (group RECV_BGID) that the backend registers
 * when the first such rec comes. A datagram then costs its wake-up and one io_uring_enter(),
 * which returns it received: no poll completion followed by a recv()
 * syscall, and no poll request made and torn down per message
 * (docs/bench.md has the A/B). Each datagram's completion holds its
 * buffer, queued in arrival order (q) until report() hands it out as an
 * event with data, and the reactor gives it back with recycle() after its
 * callback; so the queue never holds more than RECV_BUFS. A receive the
 * kernel ends (no buffer left: -ENOBUFS, or the CQ overflowed) is armed
 * again by report(), after that round's buffers came back. A read of 0
 * bytes (the end, or an empty datagram: the receive cannot tell them apart,
 * and ends) is handed over like a datagram, of length 0 (data recv_empty,
 * never recycled), after the datagrams before it, and the receive is armed
 * again (an end reads 0 again: level-triggered); errors are reported as
 * LM_IO_IN | LM_IO_ERR without data, for the caller to read itself. LM_IO_OUT of such a rec is a
 * one-shot poll of its own, whose user_data is the rec's address + OUT_PART. A kernel that refuses
 * (no buffer rings before 5.19, no multishot receive before 6.0, no multishot read before 6.7:
 * -EINVAL, or not in its probe) gets polls, as does every rec when LM_URING_RECV=0 is in the
 * environment (read by init; for tests and A/B runs).
 *
 * LM_URING_ENTRIES (environment, read by init): the submission queue size
 * (default 256, the completion queue is twice that). Only for tests that
 * force SQ exhaustion and CQ overflow with a tiny ring.
 */

#define URING_DEFAULT_ENTRIES 256
#define URING_MAX_ENTRIES     32768
#define UDATA_IGNORE          0  /* completions of NOPs and POLL_REMOVEs */
#define OUT_PART              1  /* in user_data: the LM_IO_OUT poll of a receiving rec */
#define RECV_BUFS             16 /* provided buffers (one bit each in held) */
#define RECV_BGID             0
#define RECV_BUFLEN           (LM__RECV_MAX + 1) /* one more: a longer datagram shows */
#define RECV_STRIDE           (LM__RECV_MAX + 4096)
/* IORING_OP_READ_MULTISHOT (Linux 6.7), which liburing 2.3's headers do not name. */
#define OP_READ_MULTISHOT 49

struct uring_rec {
	int fd;
	uint32_t events; /* LM_IO_IN | LM_IO_OUT */
	uint64_t tag;
	bool dead;                /* del()'d or replaced by mod(): completions are dropped */
	bool in_flight;           /* a poll naming this rec is queued or in the kernel */
	bool listed;              /* on the ready list */
	bool failed;              /* the poll failed: reported once, not re-armed */
	bool edge;                /* multishot poll (LM__IO_EDGE) */
	bool recv;                /* LM_IO_IN by a multishot receive (LM__IO_RECV) */
	bool out_flight;          /* recv: the LM_IO_OUT poll is queued or in the kernel */
	bool out_stop;            /* recv: that poll saw a hang-up or an error: not re-armed */
	unsigned queued;          /* recv: its datagrams in the backend's queue */
	bool eof;                 /* recv: a read of 0 bytes to hand over, after them */
	bool stream;              /* recv: a FIFO, read by a multishot read, not recv */
	uint32_t ready;           /* LM_IO_* seen by the last completion, not yet reported */
	uint32_t last;            /* what was reported last (for again()) */
	struct io_uring_sqe *sqe; /* the queued poll, valid while sqe_seq is current */
	uint64_t sqe_seq;
	struct io_uring_sqe *osqe; /* recv: the queued LM_IO_OUT poll, as sqe */
	uint64_t osqe_seq;
	LIST_ENTRY(uring_rec) all_link;
	TAILQ_ENTRY(uring_rec) ready_link;
};

/* One per watched fd, so per connection: 104 bytes is a 112-byte malloc
 * chunk, 8 more would be 128 (16 B per idle client, measured). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct uring_rec) <= 104,
	       "struct uring_rec: fill a padding hole rather than grow");

struct uring_backend {
	struct io_uring ring;
	struct uring_rec **byfd; /* the live rec of each fd */
	size_t nfd;
	LIST_HEAD(, uring_rec) all;
	TAILQ_HEAD(, uring_rec) ready;
	uint64_t submit_seq; /* bumped before every submit: older SQEs are the kernel's */
	int event_fd;        /* registered on the first fd() call, -1 before */
	unsigned entries;
	int err;           /* the ring is gone (a rebuild failed): what every call says */
	unsigned mode;     /* index in ring_modes[] of the mode the ring was made in */
	bool live;         /* ring is set up (io_uring_queue_exit() not called) */
	bool defer;        /* IORING_SETUP_DEFER_TASKRUN */
	bool no_defer;     /* LM_URING_DEFER=0, or embedded (fd() was asked) */
	bool enabled;      /* R_DISABLED lifted: a thread owns the ring */
	bool no_multishot; /* the kernel refused one: edge recs use one-shot polls */
	bool no_recv;      /* LM_URING_RECV=0, or the kernel refused: recv recs poll */
	bool no_read;      /* the kernel has no multishot read (before 6.7): FIFOs poll */
	/* Receiving: the provided buffers, which of them the kernel handed
	 * over (queued or with the caller), and the datagrams not reported. */
	struct io_uring_buf_ring *br;
	unsigned char *bufs;
	uint64_t held;
	struct recv_item {
		struct uring_rec *rec;
		uint32_t len;
		uint16_t bid;
	} q[RECV_BUFS];
	unsigned qhead, qlen;
};

static uint32_t to_poll(uint32_t events)
{
	return (events & LM_IO_IN ? POLLIN : 0u) | (events & LM_IO_OUT ? POLLOUT : 0u);
}

static uint32_t from_poll(uint32_t e)
{
	return (e & (POLLIN | POLLPRI) ? LM_IO_IN : 0u) | (e & POLLOUT ? LM_IO_OUT : 0u) |
	       (e & (POLLERR | POLLNVAL) ? LM_IO_ERR : 0u) |
	       (e & (POLLHUP | POLLRDHUP) ? LM_IO_HUP : 0u);
}

static void rec_free(struct uring_rec *rec)
{
	LIST_REMOVE(rec, all_link);
	free(rec);
}

/* The data of an empty read (LM__IO_RECV): a length of 0 needs an address. */
static const unsigned char recv_empty[1];

/* A dead rec goes once nothing names it: no request, no queued datagram. */
static void rec_gone(struct uring_rec *rec)
{
	if (rec->dead && !rec->in_flight && !rec->out_flight && !rec->queued)
		rec_free(rec);
}

static void list(struct uring_backend *b, struct uring_rec *rec)
{
	if (!rec->listed)
		TAILQ_INSERT_TAIL(&b->ready, rec, ready_link);
	rec->listed = true;
}

static unsigned char *buf_addr(const struct uring_backend *b, unsigned bid)
{
	return b->bufs + (size_t)bid * RECV_STRIDE;
}

/* Hand a buffer back to the kernel. */
static void buf_give(struct uring_backend *b, unsigned bid)
{
	b->held &= ~(UINT64_C(1) << bid);
	io_uring_buf_ring_add(b->br, buf_addr(b, bid), RECV_BUFLEN, (unsigned short)bid,
			      io_uring_buf_ring_mask(RECV_BUFS), 0);
	io_uring_buf_ring_advance(b->br, 1);
}

/* A completion of a receiving rec's multishot receive. */
static void recv_complete(struct uring_backend *b, struct uring_rec *rec,
			  const struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;

	if (!more)
		rec->in_flight = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		b->held |= UINT64_C(1) << bid;
		if (rec->dead || cqe->res <= 0 || bid >= RECV_BUFS) {
			buf_give(b, bid);
		} else {
			b->q[(b->qhead + b->qlen) % RECV_BUFS] =
			    (struct recv_item){rec, (uint32_t)cqe->res, (uint16_t)bid};
			b->qlen++;
			rec->queued++;
		}
	}
	if (rec->dead) {
		rec_gone(rec);
		return;
	}
	if (more)
		return;
	if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP) {
		/* Refused (a kernel without multishot receives, or reads): a
		 * poll from now on, armed by report(), for every such rec. */
		if (rec->stream)
			b->no_read = true;
		else
			b->no_recv = true;
		rec->recv = false;
	} else if (cqe->res == 0) {
		rec->eof = true; /* handed over as an empty read, after the data */
	} else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
		rec->ready |= LM_IO_IN | LM_IO_ERR;
		rec->failed = true;
	}
	/* Else (out of buffers, the CQ overflowed, cancelled by the kernel)
	 * it is only armed again. */
	list(b, rec);
}

/* A completion of a receiving rec's LM_IO_OUT poll. */
static void out_complete(struct uring_backend *b, struct uring_rec *rec,
			 const struct io_uring_cqe *cqe)
{
	uint32_t ev;

	rec->out_flight = false;
	if (rec->dead || !rec->recv) {
		rec_gone(rec); /* the rec polls for both now */
		return;
	}
	if (cqe->res != -ECANCELED) {
		ev = cqe->res < 0 ? LM_IO_ERR : from_poll((uint32_t)cqe->res);
		/* Only ever LM_IO_OUT: an error is the writer's to find by
		 * writing; reported as LM_IO_ERR, it would make the caller read
		 * the socket while the receive may still take from it. The end
		 * and errors reach the caller from the receive, after the data.
		 * Either would complete this poll at every wait: not re-armed. */
		if (ev & (LM_IO_OUT | LM_IO_ERR))
			rec->ready |= LM_IO_OUT;
		if (ev & (LM_IO_ERR | LM_IO_HUP))
			rec->out_stop = true;
	}
	list(b, rec);
}

static void unlist(struct uring_backend *b, struct uring_rec *rec)
{
	if (rec->listed)
		TAILQ_REMOVE(&b->ready, rec, ready_link);
	rec->listed = false;
}

/* One completion: note the readiness on its rec, or let a dead rec go. */
static void complete(struct uring_backend *b, const struct io_uring_cqe *cqe)
{
	struct uring_rec *rec = (struct uring_rec *)(uintptr_t)(cqe->user_data & ~(__u64)OUT_PART);

	if (cqe->user_data == UDATA_IGNORE || cqe->user_data == LIBURING_UDATA_TIMEOUT)
		return;
	if (cqe->user_data & OUT_PART) {
		out_complete(b, rec, cqe);
		return;
	}
	if (rec->recv) {
		recv_complete(b, rec, cqe);
		return;
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		rec->in_flight = false;
	if (rec->dead) {
		rec_gone(rec);
		return;
	}
	if (cqe->res == -EINVAL && rec->edge) {
		/* A kernel before 5.13, without multishot polls: one-shot ones
		 * (level triggering), armed again by report(). */
		b->no_multishot = true;
	}
	if (cqe->res == -ECANCELED || (cqe->res == -EINVAL && rec->edge)) {
		/* Not by us (a removed rec is dead): the kernel cancelled the
		 * poll, as it does when the thread that submitted it exits.
		 * report() arms it again, reporting nothing. */
		list(b, rec);
		return;
	}
	/* Any other error (the fd was closed before the poll reached the
	 * kernel, ...) is reported once as LM_IO_ERR and not re-armed. */
	if (cqe->res < 0)
		rec->failed = true;
	rec->ready |= cqe->res < 0 ? LM_IO_ERR : from_poll((uint32_t)cqe->res);
	if (rec->ready)
		list(b, rec);
}

/* Move every completion into the recs, flushing a CQ overflow (the kernel
 * keeps what did not fit and hands it over on the next GETEVENTS enter). */
static void reap(struct uring_backend *b)
{
	if (!b->live)
		return;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_for_each_cqe(&b->ring, head, cqe)
		{
			complete(b, cqe);
			n++;
		}
		io_uring_cq_advance(&b->ring, n);
		if (!(IO_URING_READ_ONCE(*b->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW))
			return;
		if (io_uring_get_events(&b->ring) < 0 && n == 0)
			return;
	}
}

static int ring_rebuild(struct uring_backend *b);

/* Before any entry: the first thread to enter owns a single-issuer ring. */
static int ring_enable(struct uring_backend *b)
{
	int err;

	if (b->enabled)
		return 0;
	/* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
	err = io_uring_register(b->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	if (err < 0 && err != -EBADFD)
		return err;
	b->enabled = true;
	return 0;
}

/* Submit what is queued, waiting as asked (events: with DEFER_TASKRUN, run
 * the completions even when not waiting); -EBUSY (completions the kernel
 * cannot post) is answered by reaping and trying again, -EEXIST (another
 * thread's ring) by a ring of our own. */
static int submit_ex(struct uring_backend *b, unsigned wait_nr, struct __kernel_timespec *ts,
		     bool events)
{
	bool rebuilt = false;

	for (;;) {
		struct io_uring_cqe *cqe;
		int ret = b->live ? ring_enable(b) : b->err;

		if (ret < 0)
			return ret;
		b->submit_seq++;
		if (wait_nr && !ts)
			/* One io_uring_enter() that submits and waits; liburing's
			 * _timeout variant loops over its own CQE peeking and
			 * costs ~100 instructions more per wait. */
			ret = io_uring_submit_and_wait(&b->ring, wait_nr);
		else if (wait_nr)
			ret = io_uring_submit_and_wait_timeout(&b->ring, &cqe, wait_nr, ts, NULL);
		else if (events && b->defer)
			ret = io_uring_submit_and_get_events(&b->ring);
		else
			ret = io_uring_submit(&b->ring);
		if (ret == -EEXIST && b->defer && !rebuilt) {
			ret = ring_rebuild(b);
			if (ret < 0)
				return ret;
			rebuilt = true;
			continue;
		}
		if (ret != -EBUSY)
			return ret;
		reap(b);
		wait_nr = 0; /* what was reaped is what we waited for */
	}
}

static int submit(struct uring_backend *b, unsigned wait_nr, struct __kernel_timespec *ts)
{
	return submit_ex(b, wait_nr, ts, false);
}

/* A free SQE; a full submission queue is submitted first. */
static struct io_uring_sqe *get_sqe(struct uring_backend *b)
{
	struct io_uring_sqe *sqe;

	if (!b->live)
		return NULL;
	while (!(sqe = io_uring_get_sqe(&b->ring))) {
		int ret = submit(b, 0, NULL);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN)
			return NULL;
	}
	return sqe;
}

static int arm(struct uring_backend *b, struct uring_rec *rec)
{
	struct io_uring_sqe *sqe = get_sqe(b);

	if (!sqe)
		return -ENOMEM;
	if (rec->edge && b->no_multishot)
		rec->edge = false;
	if (rec->recv && (rec->stream ? b->no_read : b->no_recv))
		rec->recv = false; /* its LM_IO_OUT poll, if any, ends unheeded */
	if (rec->recv) {
		if (rec->stream)
			io_uring_prep_rw(OP_READ_MULTISHOT, sqe, rec->fd, NULL, 0, 0);
		else
			io_uring_prep_recv_multishot(sqe, rec->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = RECV_BGID;
	} else if (rec->edge) {
		io_uring_prep_poll_multishot(sqe, rec->fd, to_poll(rec->events));
	} else {
		io_uring_prep_poll_add(sqe, rec->fd, to_poll(rec->events));
	}
	io_uring_sqe_set_data(sqe, rec);
	rec->sqe = sqe;
	rec->sqe_seq = b->submit_seq;
	rec->in_flight = true;
	return 0;
}

/* The LM_IO_OUT poll of a receiving rec, when it is asked for. */
static int arm_out(struct uring_backend *b, struct uring_rec *rec)
{
	struct io_uring_sqe *sqe;

	if (!rec->recv || !(rec->events & LM_IO_OUT) || rec->out_flight || rec->out_stop)
		return 0;
	sqe = get_sqe(b);
	if (!sqe)
		return -ENOMEM;
	io_uring_prep_poll_add(sqe, rec->fd, POLLOUT);
	io_uring_sqe_set_data64(sqe, (__u64)(uintptr_t)rec | OUT_PART);
	rec->osqe = sqe;
	rec->osqe_seq = b->submit_seq;
	rec->out_flight = true;
	return 0;
}

/* Take back a request of rec: true if the kernel must be told now. */
static bool cancel(struct uring_backend *b, struct uring_rec *rec, bool out)
{
	struct io_uring_sqe *queued = out ? rec->osqe : rec->sqe, *sqe;
	__u64 udata = (__u64)(uintptr_t)rec | (out ? OUT_PART : 0);

	if ((out ? rec->osqe_seq : rec->sqe_seq) == b->submit_seq) {
		/* Still in our half of the SQ: the kernel never sees it. */
		io_uring_prep_nop(queued);
		io_uring_sqe_set_data64(queued, UDATA_IGNORE);
		if (out)
			rec->out_flight = false;
		else
			rec->in_flight = false;
		return false;
	}
	sqe = get_sqe(b);
	if (!sqe)
		return false; /* cannot happen short of a dead ring */
	if (!out && rec->recv)
		io_uring_prep_cancel64(sqe, udata, 0);
	else
		io_uring_prep_poll_remove(sqe, udata);
	io_uring_sqe_set_data64(sqe, UDATA_IGNORE);
	return true;
}

/* Stop a rec: after this nothing in the kernel holds its file. */
static void rec_kill(struct uring_backend *b, struct uring_rec *rec)
{
	bool tell = false;

	unlist(b, rec);
	rec->dead = true;
	if (b->byfd[rec->fd] == rec)
		b->byfd[rec->fd] = NULL;
	if (rec->in_flight)
		tell |= cancel(b, rec, false);
	if (rec->out_flight)
		tell |= cancel(b, rec, true);
	if (!tell) {
		rec_gone(rec);
		return;
	}
	/* Now, so that the caller may close the fd and the file really goes
	 * (a pipe's writer must see EPIPE); with DEFER_TASKRUN the cancelled
	 * request lets its file go only when its completion runs: ask for it.
	 * Its completion may free rec. */
	(void)submit_ex(b, 0, NULL, true);
}

/* The provided buffers, registered with the ring (again, for a rebuilt
 * one): those the kernel has not handed over. */
static int recv_register(struct uring_backend *b)
{
	struct io_uring_buf_reg reg = {
	    .ring_addr = (__u64)(uintptr_t)b->br, .ring_entries = RECV_BUFS, .bgid = RECV_BGID};
	int err, k = 0;

	io_uring_buf_ring_init(b->br);
	err = io_uring_register_buf_ring(&b->ring, &reg, 0);
	if (err < 0)
		return err;
	for (unsigned i = 0; i < RECV_BUFS; i++)
		if (!(b->held & (UINT64_C(1) << i)))
			io_uring_buf_ring_add(b->br, buf_addr(b, i), RECV_BUFLEN, (unsigned short)i,
					      io_uring_buf_ring_mask(RECV_BUFS), k++);
	io_uring_buf_ring_advance(b->br, k);
	return 0;
}

static size_t br_size(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (RECV_BUFS * sizeof(struct io_uring_buf) + page - 1) / page * page;
}

static void recv_unmap(struct uring_backend *b)
{
	if (b->br)
		munmap(b->br, br_size());
	if (b->bufs)
		munmap(b->bufs, (size_t)RECV_BUFS * RECV_STRIDE);
	b->br = NULL;
	b->bufs = NULL;
}

/* Whether recs can receive: the buffers are made on first use (only pages
 * written are ever resident: about one per buffer for small messages). */
static bool recv_ready(struct uring_backend *b)
{
	struct io_uring_probe *probe;
	void *p;
	int err;

	if (b->no_recv || b->br || !b->live)
		return !b->no_recv && b->live;
	probe = io_uring_get_probe_ring(&b->ring);
	b->no_recv = !probe || !io_uring_opcode_supported(probe, IORING_OP_RECV) ||
		     !io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
	b->no_read = b->no_read || !probe || !io_uring_opcode_supported(probe, OP_READ_MULTISHOT);
	io_uring_free_probe(probe);
	if (b->no_recv)
		return false;
	p = mmap(NULL, br_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b->br = p == MAP_FAILED ? NULL : p;
	p = mmap(NULL, (size_t)RECV_BUFS * RECV_STRIDE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	b->bufs = p == MAP_FAILED ? NULL : p;
	err = b->br && b->bufs ? recv_register(b) : -ENOMEM;
	if (err < 0) {
		/* Refused (before 5.19) or no memory: polls, as before. */
		recv_unmap(b);
		b->no_recv = true;
	}
	return !b->no_recv;
}

/* The task-work modes, best first (see the top). */
static const unsigned ring_modes[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
	IORING_SETUP_R_DISABLED,
    /* 5.19: no DEFER_TASKRUN */
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    /* older: none of these */
    0,
};

/*
 * Make the ring in the best mode from ring_modes[first] on that the kernel
 * takes. What the mode is, is kept as its index: never read back from
 * ring.flags, where liburing adds flags of its own (IORING_SETUP_NO_SQARRAY
 * since 2.6).
 */
static int ring_setup(struct uring_backend *b, unsigned first)
{
	int err = -EINVAL;

	for (unsigned i = first; i < sizeof(ring_modes) / sizeof(ring_modes[0]); i++) {
		struct io_uring_params p = {.flags = ring_modes[i]};

		if ((ring_modes[i] & IORING_SETUP_DEFER_TASKRUN) && b->no_defer)
			continue;
		err = io_uring_queue_init_params(b->entries, &b->ring, &p);
		if (err == 0) {
			b->mode = i;
			b->live = true;
			b->defer = ring_modes[i] & IORING_SETUP_DEFER_TASKRUN;
			b->enabled = !(ring_modes[i] & IORING_SETUP_R_DISABLED);
			return 0;
		}
		if (err != -EINVAL)
			break;
	}
	return err;
}

/* Close the ring, once. */
static void ring_exit(struct uring_backend *b)
{
	if (b->live)
		io_uring_queue_exit(&b->ring);
	b->live = false;
}

static int uring_init(void **ret)
{
	struct io_uring_probe *probe;
	const char *env = getenv("LM_URING_ENTRIES");
	struct uring_backend *b;
	int err;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->entries = URING_DEFAULT_ENTRIES;
	if (env && *env) {
		long v = strtol(env, NULL, 10);

		if (v >= 1 && v <= URING_MAX_ENTRIES)
			b->entries = (unsigned)v;
	}
	env = getenv("LM_URING_DEFER");
	b->no_defer = env && !strcmp(env, "0");
	env = getenv("LM_URING_MULTISHOT");
	b->no_multishot = env && !strcmp(env, "0");
	env = getenv("LM_URING_RECV");
	b->no_recv = env && !strcmp(env, "0");
	b->event_fd = -1;
	LIST_INIT(&b->all);
	TAILQ_INIT(&b->ready);
	err = ring_setup(b, 0);
	if (err < 0) {
		free(b);
		return err;
	}
	probe = io_uring_get_probe_ring(&b->ring);
	if (!probe || !io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) ||
	    !io_uring_opcode_supported(probe, IORING_OP_POLL_REMOVE) ||
	    !io_uring_opcode_supported(probe, IORING_OP_NOP))
		err = -ENOSYS;
	io_uring_free_probe(probe);
	if (err < 0) {
		ring_exit(b);
		free(b);
		return err;
	}
	*ret = b;
	return 0;
}

/* Another thread runs the reactor now, or a foreign loop embeds it (no
 * DEFER_TASKRUN from then on): close the ring (which cancels every poll) and
 * make one this thread owns, in the same mode or the next one the kernel
 * takes, with every live registration armed again. If that fails the
 * backend is unusable: every later call says why (b->err), and the ring is
 * never closed twice. */
static int ring_rebuild(struct uring_backend *b)
{
	struct uring_rec *rec, *next;
	int err;

	/* Datagrams the kernel posted are ours: taken before the ring goes. */
	reap(b);
	ring_exit(b);
	b->submit_seq++; /* queued SQEs went with the ring */
	for (rec = LIST_FIRST(&b->all); rec; rec = next) {
		next = LIST_NEXT(rec, all_link);
		rec->in_flight = rec->out_flight = false;
		rec_gone(rec);
	}
	err = ring_setup(b, b->mode);
	if (err < 0)
		goto fail;
	if (b->event_fd >= 0 && (err = io_uring_register_eventfd(&b->ring, b->event_fd)) < 0)
		goto fail;
	if (b->br && (err = recv_register(b)) < 0)
		goto fail;
	LIST_FOREACH(rec, &b->all, all_link)
	{
		if (rec->dead || rec->listed)
			continue;
		if (!rec->failed && (err = arm(b, rec)) < 0)
			goto fail;
		if ((err = arm_out(b, rec)) < 0)
			goto fail;
	}
	return 0;
fail:
	ring_exit(b);
	b->submit_seq++;
	b->err = err;
	return err;
}

static void uring_fini(void *p)
{
	struct uring_backend *b = p;
	struct uring_rec *rec;

	if (!b)
		return;
	/* Tearing the ring down cancels every poll; the recs are ours again.
	 * In a child after fork() this closes only the child's copy of the
	 * ring: the parent's polls stay. */
	ring_exit(b);
	while ((rec = LIST_FIRST(&b->all)))
		rec_free(rec);
	if (b->event_fd >= 0)
		close(b->event_fd);
	recv_unmap(b);
	free(b->byfd);
	free(b);
}

static int fd_room(struct uring_backend *b, int fd)
{
	size_t n = b->nfd ? b->nfd : 64;
	struct uring_rec **t;

	if ((size_t)fd < b->nfd)
		return 0;
	while (n <= (size_t)fd)
		n *= 2;
	t = realloc(b->byfd, n * sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = b->nfd; i < n; i++)
		t[i] = NULL;
	b->byfd = t;
	b->nfd = n;
	return 0;
}

/* epoll refuses fds without a poll method (regular files, directories) and
 * closed fds at once; io_uring would accept them and fail or report later.
 * One fstat() keeps the two backends' add() errors the same. */
static int check_pollable(int fd, bool *fifo)
{
	struct stat st;
	struct statfs fs;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
		return -EPERM;
	/* A POSIX message queue is a regular file of the mqueue filesystem,
	 * and it can be polled: only there does a regular file cost a second
	 * syscall. */
	if (S_ISREG(st.st_mode) && (fstatfs(fd, &fs) < 0 || fs.f_type != MQUEUE_MAGIC))
		return -EPERM;
	*fifo = S_ISFIFO(st.st_mode);
	return 0;
}

static int rec_new(struct uring_backend *b, int fd, uint32_t events, uint64_t tag, bool fifo)
{
	struct uring_rec *rec = calloc(1, sizeof(*rec));
	int err;

	if (!rec)
		return -ENOMEM;
	rec->fd = fd;
	rec->events = events;
	rec->edge = (events & LM__IO_EDGE) && (events & (LM_IO_IN | LM_IO_OUT));
	rec->recv = (events & LM__IO_RECV) && (events & LM_IO_IN) && recv_ready(b);
	rec->stream = fifo;
	rec->tag = tag;
	LIST_INSERT_HEAD(&b->all, rec, all_link);
	err = arm(b, rec);
	if (err == 0)
		err = arm_out(b, rec);
	if (err < 0) {
		rec->dead = true;
		if (rec->in_flight)
			(void)cancel(b, rec, false); /* queued just now: a NOP */
		rec_gone(rec);
		return err;
	}
	b->byfd[fd] = rec;
	/* Embedded, run_once() is only called when event_fd says so: the poll
	 * must reach the kernel now for its readiness to signal it. */
	if (b->event_fd >= 0)
		(void)submit(b, 0, NULL);
	return 0;
}

static int uring_add(void *p, int fd, uint32_t events, uint64_t tag)
{
	struct uring_backend *b = p;
	bool fifo = false;
	int err;

	if (!b->live)
		return b->err;
	if (fd < 0)
		return -EBADF;
	err = fd_room(b, fd);
	if (err < 0)
		return err;
	if (b->byfd[fd])
		return -EEXIST;
	err = check_pollable(fd, &fifo);
	if (err < 0)
		return err;
	return rec_new(b, fd, events, tag, fifo);
}

static int uring_mod(void *p, int fd, uint32_t events, uint64_t tag)
{
	struct uring_backend *b = p;
	struct uring_rec *rec = fd >= 0 && (size_t)fd < b->nfd ? b->byfd[fd] : NULL;
	bool fifo;

	if (!b->live)
		return b->err;
	if (!rec)
		return -ENOENT;
	if (events == rec->events) {
		rec->tag = tag;
		return 0;
	}
	if (rec->recv && (events & LM__IO_RECV) && (events & LM_IO_IN)) {
		/* Only LM_IO_OUT changes: the receive, and what it queued,
		 * carry on. A poll taken back goes to the kernel with the next
		 * wait (the fd stays; a late LM_IO_OUT is not asked for, and the
		 * reactor drops it). */
		rec->tag = tag;
		rec->events = events;
		rec->out_stop = false;
		if (!(events & LM_IO_OUT) && rec->out_flight)
			(void)cancel(b, rec, true);
		return arm_out(b, rec);
	}
	/* A new mask: a fresh rec with its own poll; the old one is cancelled
	 * (no syscall if its poll was not submitted yet). */
	fifo = rec->stream;
	rec_kill(b, rec);
	return rec_new(b, fd, events, tag, fifo);
}

static void uring_del(void *p, int fd, uint64_t tag)
{
	struct uring_backend *b = p;
	struct uring_rec *rec = fd >= 0 && (size_t)fd < b->nfd ? b->byfd[fd] : NULL;

	/* Requests are taken back by their user_data, not by the fd number:
	 * an fd closed before this leaves nothing behind. */
	if (rec && rec->tag == tag)
		rec_kill(b, rec);
}

/* Hand out what the recs hold, queueing each reported poll again:
 * datagrams first, in the order they came, then readiness (of a rec with
 * datagrams still queued only after them: its end comes after its data). */
static int report(struct uring_backend *b, struct lm_backend_event *out, int max)
{
	struct uring_rec *rec, *next;
	int n = 0;

	while (n < max && b->qlen) {
		struct recv_item it = b->q[b->qhead];

		b->qhead = (b->qhead + 1) % RECV_BUFS;
		b->qlen--;
		it.rec->queued--;
		if (it.rec->dead) {
			buf_give(b, it.bid);
			rec_gone(it.rec);
			continue;
		}
		out[n++] = (struct lm_backend_event){.tag = it.rec->tag,
						     .events = LM_IO_IN |
							       (it.rec->queued ? LM__IO_MORE : 0),
						     .len = it.len,
						     .data = buf_addr(b, it.bid)};
	}
	for (rec = TAILQ_FIRST(&b->ready); n < max && rec; rec = next) {
		uint32_t events = rec->ready;
		bool eof = rec->eof;

		next = TAILQ_NEXT(rec, ready_link);
		if (rec->queued)
			continue;
		unlist(b, rec);
		rec->ready = 0;
		rec->eof = false;
		/* Keep it ready rather than lose it silently. */
		if (!rec->failed && !rec->in_flight && arm(b, rec) < 0)
			events |= LM_IO_ERR;
		if (!rec->failed && arm_out(b, rec) < 0)
			events |= LM_IO_ERR;
		if (eof)
			out[n++] = (struct lm_backend_event){
			    .tag = rec->tag, .events = LM_IO_IN, .len = 0, .data = recv_empty};
		if (!events)
			continue; /* only re-armed (a poll the kernel cancelled) */
		if (n == max) {
			rec->ready = events; /* the next wait's */
			list(b, rec);
			break;
		}
		rec->last = events;
		out[n].tag = rec->tag;
		out[n].events = events;
		out[n].len = 0;
		out[n].data = NULL;
		n++;
	}
	return n;
}

static int uring_wait(void *p, struct lm_backend_event *out, int max, int64_t timeout_ns)
{
	struct uring_backend *b = p;
	struct __kernel_timespec ts;
	int ret = 0;

	if (!b->live)
		return b->err;
	if (b->event_fd >= 0) {
		uint64_t v;

		/* Before reaping: a completion posted after this re-arms it. */
		if (read(b->event_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			return -errno;
	}
	reap(b);
	if (!TAILQ_EMPTY(&b->ready) || b->qlen)
		timeout_ns = 0;
	if (timeout_ns == 0) {
		/* With DEFER_TASKRUN, completions only run when asked for. */
		if (io_uring_sq_ready(&b->ring) || b->defer)
			ret = submit_ex(b, 0, NULL, true);
	} else if (timeout_ns < 0) {
		ret = submit(b, 1, NULL);
	} else {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		ret = submit(b, 1, &ts);
	}
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN)
		return ret;
	reap(b);
	/* The re-arms report() queues go to the kernel with the next wait,
	 * or, embedded, with flush() after the callbacks: not before they
	 * ran, or a poll would find the fd still ready with what they are
	 * about to read, and report it a second time. */
	return report(b, out, max);
}

/* Embedded (fd() was asked), after the callbacks of a wait's reports ran:
 * the re-arms they left queued go to the kernel now, so that an fd that
 * becomes ready (or still is) signals event_fd; what is left to report
 * signals it at once. */
static void uring_flush(void *p)
{
	struct uring_backend *b = p;

	if (!b->live || b->event_fd < 0)
		return;
	if (io_uring_sq_ready(&b->ring))
		(void)submit(b, 0, NULL);
	if (!TAILQ_EMPTY(&b->ready) || b->qlen || io_uring_cq_ready(&b->ring))
		(void)eventfd_write(b->event_fd, 1);
}

static void uring_again(void *p, int fd)
{
	struct uring_backend *b = p;
	struct uring_rec *rec = fd >= 0 && (size_t)fd < b->nfd ? b->byfd[fd] : NULL;

	if (!rec || !rec->edge || rec->recv || !rec->last)
		return;
	rec->ready |= rec->last;
	if (!rec->listed)
		TAILQ_INSERT_TAIL(&b->ready, rec, ready_link);
	rec->listed = true;
	if (b->event_fd >= 0)
		(void)eventfd_write(b->event_fd, 1);
}

/*
 * The eventfd a foreign loop polls. Under DEFER_TASKRUN a completion is
 * posted, and the eventfd signalled, only when the thread enters the ring
 * to ask for it, or late (the kernel signals such an eventfd from an RCU
 * callback): the loop would see readiness milliseconds after it came. So an
 * embedded reactor's ring is rebuilt without DEFER_TASKRUN (COOP_TASKRUN:
 * the completion's task work runs as soon as the thread sleeping in the
 * loop's poll() is woken, and posting it signals the eventfd).
 */
static int uring_fd(void *p)
{
	struct uring_backend *b = p;
	int fd, err;

	if (!b->live)
		return b->err;
	if (b->event_fd >= 0)
		return b->event_fd;
	if (b->defer) {
		b->no_defer = true;
		/* What completed is taken first (with DEFER_TASKRUN, its
		 * completion run now); the rebuild arms the rest again. */
		if (b->enabled)
			(void)submit_ex(b, 0, NULL, true);
		err = ring_rebuild(b);
		if (err < 0)
			return err;
	}
	/* Registered only now: without an embedding loop nobody reads it, and
	 * every completion would signal it for nothing. */
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = io_uring_register_eventfd(&b->ring, fd);
	if (err < 0) {
		close(fd);
		return err;
	}
	b->event_fd = fd;
	/* Polls queued before go to the kernel now, so that their readiness
	 * signals the eventfd; what completed before is signalled by hand. */
	uring_flush(b);
	return fd;
}

static void uring_recycle(void *p, const void *data)
{
	struct uring_backend *b = p;

	if (data == recv_empty)
		return;
	buf_give(b, (unsigned)(((const unsigned char *)data - b->bufs) / RECV_STRIDE));
}

const struct lm_backend_ops lm__backend_uring = {
    .name = "io_uring",
    .init = uring_init,
    .fini = uring_fini,
    .add = uring_add,
    .mod = uring_mod,
    .del = uring_del,
    .wait = uring_wait,
    .fd = uring_fd,
    .flush = uring_flush,
    .again = uring_again,
    .recycle = uring_recycle,
};
