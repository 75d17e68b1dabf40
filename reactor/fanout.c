/* SPDX-License-Identifier: MIT */
/* Many small writes in one io_uring submission: a fan-out of one message to many connections. */
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "hooks-internal.h"
#include "reactor-internal.h"

/*
 * Why a ring of its own, and on either backend: a signal to N subscribers
 * is N writes to N fds, N syscalls where one io_uring_enter() can make them
 * all (each write non-blocking, so all complete inline before it returns).
 * The emitter then wakes its N readers in one go instead of being switched
 * out after each write that woke one (docs/bench.md has what it saves).
 * Writes are never handed to io_uring's worker threads, nor waited for: a
 * send is MSG_DONTWAIT, a write goes to an O_NONBLOCK fd, which io_uring
 * writes inline, and one that found no room (a full FIFO: io_uring then
 * polls for room) is taken back with IORING_OP_ASYNC_CANCEL before the
 * call returns, to be queued by the caller like any full kernel.
 * The ring is private (not the io_uring backend's): it holds no poll, so
 * nothing else completes on it, a submission's completions are all reaped
 * before returning, and no backend, thread handover or task-work mode has a
 * say in it. It is made on the first fan-out and lives as long as the
 * reactor; a kernel that refuses io_uring (or LM_FANOUT_URING=0 in the
 * environment) leaves every write to the caller.
 *
 * Its writes come from lm_conn_sendv_many() outside callbacks, and from the
 * staged list: at the end of a round, connections whose gathered output is
 * one small message stage their write (lm__reactor_stage), and
 * lm__fanout_run(), after the round's flushes, makes them together.
 */

struct lm__fanout {
	struct io_uring ring;
};

#define CANCEL_UDATA UINT64_MAX /* the completions of fanout_cancel()'s SQEs */
_Static_assert(LM__FANOUT_MAX <= 64, "fanout_reap() keeps one bit per write");

static struct io_uring *fanout_ring(lm_reactor *r)
{
	struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL};
	const char *v;
	int err;

	if (r->fanout)
		return &r->fanout->ring;
	if (r->fanout_off)
		return NULL;
	v = getenv("LM_FANOUT_URING");
	if (v && !strcmp(v, "0")) {
		r->fanout_off = true;
		return NULL;
	}
	r->fanout = calloc(1, sizeof(*r->fanout));
	if (!r->fanout)
		return NULL; /* the caller writes; tried again next time */
	err = io_uring_queue_init_params(LM__FANOUT_MAX, &r->fanout->ring, &p);
	if (err == -EINVAL) { /* before 5.18: no SUBMIT_ALL */
		p = (struct io_uring_params){0};
		err = io_uring_queue_init_params(LM__FANOUT_MAX, &r->fanout->ring, &p);
	}
	if (err < 0) {
		/* Refused (ENOSYS, EPERM: seccomp, io_uring_disabled), or no
		 * locked memory for it (ENOMEM on kernels before 5.12): asking
		 * again at every fan-out would cost a syscall each time. */
		free(r->fanout);
		r->fanout = NULL;
		r->fanout_off = true;
		return NULL;
	}
	return &r->fanout->ring;
}

void lm__fanout_free(lm_reactor *r)
{
	if (!r->fanout)
		return;
	io_uring_queue_exit(&r->fanout->ring);
	free(r->fanout);
	r->fanout = NULL;
}

/* Take back the writes of w[0, took) not completed (not in got): each then
 * completes, cancelled (-ECANCELED: not written) or written just before.
 * 0, or -EIO if the kernel did not take every cancel (then some write may
 * never complete). */
static int fanout_cancel(struct io_uring *ring, uint64_t got, unsigned took)
{
	int n = 0;

	for (unsigned i = 0; i < took; i++) {
		struct io_uring_sqe *sqe;

		if (got & (UINT64_C(1) << i))
			continue;
		sqe = io_uring_get_sqe(ring); /* the SQ is empty: room for all */
		io_uring_prep_cancel64(sqe, i, 0);
		sqe->user_data = CANCEL_UDATA;
		n++;
	}
	return io_uring_submit(ring) == n ? 0 : -EIO;
}

/* The completions of the took writes just submitted, each into its res. */
static void fanout_reap(lm_reactor *r, struct io_uring *ring, struct lm__write *w, unsigned took)
{
	uint64_t got = 0;
	unsigned seen = 0;
	bool cancelled = false;

	while (seen < took) {
		struct io_uring_cqe *cqe;
		unsigned head, k = 0;
		int err = 0;

		/* What did not complete inline waits for room (a FIFO that is
		 * full): taken back, never waited for. */
		if (!io_uring_cq_ready(ring) && !cancelled) {
			err = fanout_cancel(ring, got, took);
			cancelled = true;
		}
		if (err == 0)
			err = io_uring_wait_cqe(ring, &cqe); /* no syscall when one is there */
		if (err == -EINTR)
			continue;
		if (err < 0) {
			/* Not seen on a sound ring. What the kernel did with the
			 * rest is unknown: neither sent (a second copy could go)
			 * nor not (it could be lost), so it is an error. */
			for (unsigned i = 0; i < took; i++)
				if (!(got & (UINT64_C(1) << i)))
					w[i].res = -EIO;
			lm__fanout_free(r);
			return;
		}
		io_uring_for_each_cqe(ring, head, cqe)
		{
			k++;
			if (cqe->user_data >= took || (got & (UINT64_C(1) << cqe->user_data)))
				continue; /* a cancel's, or not ours (a ring shared by fork()) */
			got |= UINT64_C(1) << cqe->user_data;
			w[cqe->user_data].res = cqe->res;
			r->fanout_writes += cqe->res >= 0;
			/* The op unknown (a kernel before 5.6): never again on
			 * this reactor. (A file that cannot write without
			 * blocking says -EOPNOTSUPP: that one is the caller's
			 * to remember.) Nothing was written either way. */
			if (cqe->res == -EINVAL)
				r->fanout_off = true;
			seen++;
		}
		io_uring_cq_advance(ring, k);
	}
}

int lm__reactor_write_many(lm_reactor *r, struct lm__write *w, size_t n)
{
	struct io_uring *ring;

	if (lm__forked(r))
		return -ECHILD; /* the connections are the parent's */
	ring = fanout_ring(r);
	if (!ring)
		return -EOPNOTSUPP;
	for (size_t i = 0; i < n; i++)
		w[i].res = -ECANCELED;
	while (n && !r->fanout_off) {
		unsigned k = n < LM__FANOUT_MAX ? (unsigned)n : LM__FANOUT_MAX;
		int took;

		for (unsigned i = 0; i < k; i++) {
			/* The ring is empty between calls: an SQE is always there. */
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (w[i].send) {
				io_uring_prep_send(sqe, w[i].fd, w[i].buf, w[i].len,
						   MSG_NOSIGNAL | MSG_DONTWAIT);
			} else {
				/* Not RWF_NOWAIT, which a named FIFO refuses: its fd is
				 * O_NONBLOCK, which io_uring takes as the same (a
				 * write, inline; if the pipe is full, a poll for room,
				 * which fanout_reap() takes back). */
				io_uring_prep_write(sqe, w[i].fd, w[i].buf, (unsigned)w[i].len,
						    (__u64)-1);
			}
			sqe->user_data = i;
		}
		took = io_uring_submit(ring);
		if (took < 0)
			took = 0;
		fanout_reap(r, ring, w, (unsigned)took);
		if (!r->fanout)
			return 0; /* the ring failed: the rest is the caller's */
		if ((unsigned)took < k) {
			/* The kernel did not take them all (out of memory): the
			 * rest must never go, so the ring goes with them; the
			 * caller writes them (res -ECANCELED). */
			lm__fanout_free(r);
			return 0;
		}
		w += k;
		n -= k;
	}
	return 0;
}

uint64_t lm__reactor_fanout_writes(const lm_reactor *r)
{
	return r->fanout_writes;
}

void lm__reactor_stage(lm_reactor *r, struct lm__staged *st)
{
	if (st->queued)
		return;
	st->queued = true;
	st->written = false;
	TAILQ_INSERT_TAIL(&r->staged, st, link);
}

void lm__reactor_unstage(lm_reactor *r, struct lm__staged *st)
{
	if (!st->queued)
		return;
	TAILQ_REMOVE(&r->staged, st, link);
	st->queued = false;
}

void lm__fanout_run(lm_reactor *r)
{
	struct lm__write w[LM__FANOUT_MAX];
	struct lm__staged *st;

	while (!TAILQ_EMPTY(&r->staged)) {
		size_t n = 0, i = 0;

		TAILQ_FOREACH(st, &r->staged, link)
		{
			if (n == LM__FANOUT_MAX)
				break;
			w[n++] = st->w;
		}
		if (n < LM__FANOUT_MIN || lm__reactor_write_many(r, w, n) < 0)
			for (i = 0; i < n; i++)
				w[i].res = -ECANCELED;
		i = 0;
		TAILQ_FOREACH(st, &r->staged, link)
		{
			if (i == n)
				break;
			st->w.res = w[i++].res;
			st->written = true;
		}
		/* done() may unstage others (taking their results over). */
		while ((st = TAILQ_FIRST(&r->staged)) && st->written) {
			lm__reactor_unstage(r, st);
			st->done(st);
		}
	}
}
