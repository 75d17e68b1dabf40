/* SPDX-License-Identifier: MIT */
/* The generic connection layer: registry, endpoints, listeners, output queue, callbacks. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "log-internal.h"
#include "transport-internal.h"

_Static_assert(LM__RECV_MAX == LM_TRANSPORT_DATAGRAM_MAX,
	       "the backends receive the datagrams take() is promised");
_Static_assert(LM_FLAT_MAX == LM_TRANSPORT_FLAT_MAX, "the one-call messages ops->flat speaks of");

/* ---- registry ---- */

#define LM_MAX_TRANSPORTS 16
#define EDGE_READS        16 /* receive()s per report, edge-triggered, before others' turn */

static const struct lm_transport_ops *transports[LM_MAX_TRANSPORTS] = {
    &lm__transport_unix,
    &lm__transport_fifo,
    &lm__transport_mq,
};

static bool ops_complete(const struct lm_transport_ops *o)
{
	return o->scheme && o->listen && o->listen_fd && o->accept && o->listen_close &&
	       o->connect && o->fds && o->send && o->receive && o->peer_cred && o->close && o->free;
}

static const struct lm_transport_ops *transport_find(const char *scheme, size_t len)
{
	for (size_t i = 0; i < LM_MAX_TRANSPORTS && transports[i]; i++)
		if (strlen(transports[i]->scheme) == len &&
		    !memcmp(transports[i]->scheme, scheme, len))
			return transports[i];
	return NULL;
}

LM_EXPORT int lm_transport_register(const struct lm_transport_ops *ops)
{
	size_t i, n;

	if (!ops || !ops_complete(ops))
		return -EINVAL;
	n = strlen(ops->scheme);
	if (n == 0 || n > 15 || strspn(ops->scheme, "abcdefghijklmnopqrstuvwxyz0123456789") != n)
		return -EINVAL;
	if (transport_find(ops->scheme, n))
		return -EEXIST;
	for (i = 0; i < LM_MAX_TRANSPORTS && transports[i]; i++)
		;
	if (i == LM_MAX_TRANSPORTS)
		return -ENOSPC;
	transports[i] = ops;
	return 0;
}

/* "scheme:name" or a bare name with $LM_TRANSPORT or "unix". */
static int endpoint_parse(const char *endpoint, const struct lm_transport_ops **ops,
			  const char **name)
{
	const char *colon, *scheme, *why;
	size_t slen;

	if (!endpoint)
		return -EINVAL;
	colon = strchr(endpoint, ':');
	if (colon) {
		scheme = endpoint;
		slen = (size_t)(colon - endpoint);
		*name = colon + 1;
	} else {
		scheme = getenv("LM_TRANSPORT");
		if (!scheme || !*scheme)
			scheme = "unix";
		slen = strlen(scheme);
		*name = endpoint;
	}
	*ops = transport_find(scheme, slen);
	if (!*ops) {
		if (colon)
			lm_log_error("endpoint %s: unknown transport '%.*s' (unix, fifo or mq)",
				     endpoint, (int)slen, scheme);
		else
			lm_log_error("endpoint %s: LM_TRANSPORT=%s: unknown transport (unix, fifo "
				     "or mq)",
				     endpoint, scheme);
		return -EPROTONOSUPPORT;
	}
	why = lm__name_problem(*name);
	if (why) {
		size_t n = strlen(*name);

		if (n > LM_NAME_MAX)
			lm_log_error("endpoint %.*s...: bad name: %s (%zu bytes, at most %d)",
				     (int)(*name - endpoint) + 32, endpoint, why, n,
				     (int)LM_NAME_MAX);
		else
			lm_log_error("endpoint %s: bad name: %s", endpoint, why);
		return -EINVAL;
	}
	return 0;
}

int lm__endpoint_check(const char *endpoint)
{
	const struct lm_transport_ops *ops;
	const char *name;

	return endpoint_parse(endpoint, &ops, &name);
}

static int options_check(const struct lm_transport_ops *ops, const struct lm_transport_options *in,
			 struct lm_transport_options *out)
{
	size_t limit = ops->max_message ? ops->max_message : LM_LIMIT_MAX_MESSAGE;

	out->max_message = in && in->max_message ? in->max_message : LM_DEFAULT_MAX_MESSAGE;
	out->max_queue = in && in->max_queue ? in->max_queue : LM_DEFAULT_MAX_QUEUE;
	out->partial_timeout_ns =
	    in && in->partial_timeout_ns ? in->partial_timeout_ns : LM_DEFAULT_PARTIAL_TIMEOUT_NS;
	if (out->max_message > LM_LIMIT_MAX_MESSAGE || out->max_message > limit ||
	    out->partial_timeout_ns < 0 || out->partial_timeout_ns > LM_LIMIT_PARTIAL_TIMEOUT_NS)
		return -EINVAL;
	return 0;
}

/* ---- connections ---- */

static void conn_io_cb(lm_source *s, int fd, uint32_t events, void *userdata);
static void conn_hup_cb(lm_source *s, int fd, uint32_t events, void *userdata);

/* Forget the output buffer (an idle connection holds no memory for it). */
static void obuf_drop(lm_conn *c)
{
	if (c->obuf != c->ibuf)
		free(c->obuf);
	c->obuf = NULL;
	c->olen = c->ocap = c->ohead = c->oprog = 0;
	c->queued = 0;
}

static void conn_lone_off(lm_conn *c)
{
	if (c->lone) {
		lm__reactor_lone_remove(c->r, c->lone);
		free(c->lone);
		c->lone = NULL;
	}
}

/* Close the connection's fds in a child after fork(), leaving what the
 * parent still uses (files, queues, the peer) alone. */
static void conn_abandon(lm_conn *c)
{
	const struct lm_transport_fds *f = &c->fds;

	if (c->ops->abandon) {
		c->ops->abandon(c->tp);
		return;
	}
	if (f->rfd >= 0)
		close(f->rfd);
	if (f->wfd >= 0 && f->wfd != f->rfd)
		close(f->wfd);
	if (f->hupfd >= 0)
		close(f->hupfd);
	if (f->closefd >= 0)
		close(f->closefd);
}

static void conn_release(lm_conn *c)
{
	/* Before ops->close(): a post from another thread may be kicking it. */
	conn_lone_off(c);
	lm_source_free(c->rsrc);
	lm_source_free(c->wsrc);
	lm_source_free(c->hsrc);
	lm_source_free(c->csrc);
	lm_source_free(c->ptimer);
	c->rsrc = c->wsrc = c->hsrc = c->csrc = c->ptimer = NULL;
	if (!c->tp_closed && c->tp) {
		if (lm_reactor_forked(c->r))
			conn_abandon(c);
		else
			c->ops->close(c->tp);
		c->tp_closed = true;
	}
	lm__reactor_flush_cancel(c->r, &c->flush);
	lm__reactor_unstage(c->r, &c->stage); /* its buffer goes */
	obuf_drop(c);
}

static void conn_destroy(lm_conn *c)
{
	conn_release(c);
	lm_source_free(c->defer);
	if (c->tp)
		c->ops->free(c->tp);
	free(c);
}

/* End of our own dispatch: release the memory of a connection freed in it. */
static void conn_unbusy(lm_conn *c)
{
	if (--c->busy == 0 && c->freed)
		conn_destroy(c);
}

/* The connection broke: release it and tell the user once. */
static void conn_fail(lm_conn *c, int reason)
{
	if (c->closed)
		return;
	c->closed = true;
	conn_release(c);
	if (c->notified || c->freed)
		return;
	c->notified = true;
	if (c->cb.closed)
		c->cb.closed(c, reason, c->userdata);
}

static void conn_defer_cb(lm_source *s, void *userdata)
{
	lm_conn *c = userdata;

	c->busy++;
	if (!c->notified && !c->freed) {
		c->notified = true;
		if (c->cb.closed)
			c->cb.closed(c, c->reason, c->userdata);
	}
	conn_unbusy(c);
}

/* A send found the connection broken: sends fail from now on, the closed
 * callback runs from the reactor, not inside the caller's send. */
static void conn_fail_later(lm_conn *c, int reason)
{
	if (c->closed)
		return;
	c->closed = true;
	c->reason = reason;
	conn_release(c);
	if (!c->defer && lm_reactor_add_defer(c->r, &c->defer, conn_defer_cb, c) < 0) {
		c->notified = true;
		return;
	}
	lm_source_set_enabled(c->defer, true);
}

/* Watch for writability only while something is queued. */
static int conn_want_out(lm_conn *c, bool on)
{
	int err;

	if (c->want_out == on || c->closed)
		return 0;
	if (c->fds.wfd == c->fds.rfd) {
		err = lm_io_set_events(c->rsrc, LM_IO_IN | (on ? LM_IO_OUT : 0));
	} else if (!c->wsrc) {
		err = on ? lm_reactor_add_io(c->r, &c->wsrc, c->fds.wfd, LM_IO_OUT, conn_io_cb, c)
			 : 0;
	} else {
		err = lm_source_set_enabled(c->wsrc, on);
	}
	if (err < 0)
		return err;
	c->want_out = on;
	return 0;
}

static size_t frame_len(const unsigned char *p)
{
	uint32_t len;

	memcpy(&len, p, sizeof(len));
	return len;
}

/* Forget the messages before obuf[ohead + oprog] the kernel took whole. */
static void obuf_consume(lm_conn *c)
{
	while (c->ohead < c->olen) {
		size_t len = frame_len(c->obuf + c->ohead), n = sizeof(uint32_t) + len;

		if (c->oprog < n)
			break;
		c->ohead += n;
		c->oprog -= n;
		c->queued -= len;
	}
}

/*
 * The end of the round's write of c's output, when it is one message of
 * one flat call (ops->flat): staged on the reactor, which makes it with the
 * others of the round in one io_uring submission (a signal emitted from a
 * callback to its subscribers).
 */
static bool stage_fits(const lm_conn *c)
{
	size_t n;

	if (c->ops->flat == LM_TRANSPORT_FLAT_NONE || c->no_flat || c->oprog || c->ohead >= c->olen)
		return false;
	n = sizeof(uint32_t) + frame_len(c->obuf + c->ohead);
	return n == c->olen - c->ohead && n <= LM_FLAT_MAX;
}

/* The ring's write of buf[0, len) to c as ops->flat says to make it. */
static struct lm__write flat_write(const lm_conn *c, const void *buf, size_t len)
{
	return (struct lm__write){.fd = c->fds.wfd,
				  .send = c->ops->flat == LM_TRANSPORT_FLAT_SEND,
				  .buf = buf,
				  .len = len};
}

/* flat_outcome(): the write was not made (or not by this means): ops->send. */
#define FLAT_NOT_WRITTEN 2

/*
 * What one ops->flat call of total bytes made for c by the fan-out ring,
 * which returned res, did, as ops->send counts it: 1, the kernel took the
 * whole message; 0, it was full and took *progress bytes (a short write,
 * or none); -ECONNRESET (EPIPE, ECONNRESET) or -EIO (the ring itself
 * failed: whether it was written is not known, and neither a second copy
 * nor a silent loss will do), the connection broke; FLAT_NOT_WRITTEN,
 * nothing was written: the transport's own send must, and from now on
 * always when the file refuses the ring's writes (-EOPNOTSUPP).
 */
static int flat_outcome(lm_conn *c, int res, size_t total, size_t *progress)
{
	bool send = c->ops->flat == LM_TRANSPORT_FLAT_SEND;

	*progress = 0;
	if (res >= 0) {
		*progress = send ? total : (size_t)res; /* a datagram goes whole */
		return *progress == total;
	}
	if (res == -EAGAIN || (res == -ENOBUFS && send))
		return 0;
	if (res == -EPIPE || res == -ECONNRESET)
		return -ECONNRESET;
	if (res == -EIO)
		return -EIO;
	if (res == -EOPNOTSUPP)
		c->no_flat = true;
	return FLAT_NOT_WRITTEN;
}

/*
 * Take over the result of c's staged write: 1 when it was made (the kernel
 * took the message or part of it, or refused it for now: c's output is as
 * conn_push() would leave it), 0 when it was not (the output is untouched,
 * for conn_push()), -errno when the connection broke.
 */
static int stage_result(lm_conn *c, int res)
{
	size_t progress;
	int ret = flat_outcome(c, res, c->olen - c->ohead, &progress);

	if (ret == FLAT_NOT_WRITTEN)
		return 0;
	if (ret < 0)
		return ret;
	c->oprog = progress;
	obuf_consume(c);
	if (c->ohead == c->olen) {
		obuf_drop(c);
		return 1;
	}
	ret = conn_want_out(c, true); /* the rest when there is room */
	return ret < 0 ? ret : 1;
}

/* Before c's output changes (or goes) outside the reactor's run of the
 * staged writes: a write not made yet is forgotten (the output stays, for
 * a push), a write made is taken over. */
static void stage_settle(lm_conn *c)
{
	int ret;

	if (!c->stage.queued)
		return;
	lm__reactor_unstage(c->r, &c->stage);
	if (!c->stage.written)
		return;
	ret = stage_result(c, c->stage.w.res);
	if (ret < 0)
		conn_fail_later(c, ret);
}

/*
 * Push the output to the kernel: 1 when all of it went (an allocated buffer
 * is released: an idle connection keeps only its inline one), 0 when the
 * kernel is full (we then watch for room), -errno when the connection broke.
 */
static int conn_push(lm_conn *c)
{
	int ret = 1;

	stage_settle(c);
	if (c->closed)
		return -ECONNRESET;

	while (c->ohead < c->olen) {
		if (c->ops->send_batch) {
			ret = c->ops->send_batch(c->tp, c->obuf + c->ohead, c->olen - c->ohead,
						 &c->oprog);
			obuf_consume(c);
		} else {
			size_t len = frame_len(c->obuf + c->ohead);
			struct iovec iov = {c->obuf + c->ohead + sizeof(uint32_t), len};

			ret = c->ops->send(c->tp, &iov, 1, len, &c->oprog);
			if (ret > 0) {
				c->ohead += sizeof(uint32_t) + len;
				c->oprog = 0;
				c->queued -= len;
			}
		}
		if (ret <= 0)
			break;
	}
	if (ret < 0)
		return ret;
	if (ret == 0) {
		ret = conn_want_out(c, true);
		return ret < 0 ? ret : 0;
	}
	obuf_drop(c);
	return 1;
}

/* Writable again after the kernel pushed back. */
static int conn_drain(lm_conn *c)
{
	int ret = conn_push(c);

	if (ret <= 0)
		return ret;
	ret = conn_want_out(c, false);
	if (ret < 0)
		return ret;
	c->refused = false;
	if (c->cb.drained)
		c->cb.drained(c, c->userdata);
	return 0;
}

/*
 * All the output went at the end of a round (ret: conn_push's 1): a send
 * that was refused (-ENOBUFS) while it was gathered is owed drained() too,
 * or a user waiting for it (a DROP_OLDEST subscriber's held signal) would
 * wait for a writability event that never comes. Called with c busy.
 */
static void conn_out_done(lm_conn *c, int ret)
{
	if (ret != 1 || !c->refused || c->closed)
		return;
	c->refused = false;
	if (c->cb.drained)
		c->cb.drained(c, c->userdata);
}

/* The reactor's staged write of c's output was made (or not). */
static void conn_stage_done(struct lm__staged *st)
{
	lm_conn *c = (lm_conn *)((char *)st - offsetof(lm_conn, stage));
	int ret;

	if (c->closed)
		return;
	c->busy++;
	ret = stage_result(c, st->w.res);
	if (ret == 0)
		ret = conn_push(c);
	if (ret < 0)
		conn_fail(c, ret);
	else
		conn_out_done(c, ret);
	conn_unbusy(c);
}

/* The reactor's flush: the end of the round in which messages were gathered. */
static void conn_flush_cb(struct lm__flush *f)
{
	lm_conn *c = (lm_conn *)((char *)f - offsetof(lm_conn, flush));
	int ret;

	if (c->closed || c->want_out)
		return; /* broken, or the writability watch carries on */
	if (!c->stage.queued && stage_fits(c)) {
		c->stage.w = flat_write(c, c->obuf + c->ohead, c->olen - c->ohead);
		lm__reactor_stage(c->r, &c->stage);
		return;
	}
	c->busy++;
	ret = conn_push(c);
	if (ret < 0)
		conn_fail(c, ret);
	else
		conn_out_done(c, ret);
	conn_unbusy(c);
}

static void conn_io_cb(lm_source *s, int fd, uint32_t events, void *userdata);

/* Whether the backend may receive for c (take()): see lm_transport_ops. */
static bool conn_takes(const lm_conn *c)
{
	return c->ops->take && !c->ops->receive_wait && c->fds.hupfd < 0 && c->fds.closefd < 0 &&
	       !c->fds.late_eof;
}

/* The peer opened its end (its first bytes came) of a connection whose rfd
 * had no end of file before (late_eof): stop watching hupfd, and let the
 * backend receive for c from now on where it can. What rfd holds stays
 * there for the new source. */
static int conn_opened(lm_conn *c)
{
	lm_source_free(c->hsrc);
	c->hsrc = NULL;
	c->fds.hupfd = -1;
	c->fds.late_eof = false;
	if (!conn_takes(c) || !lm__reactor_receives(c->r))
		return 0;
	lm_source_free(c->rsrc);
	c->rsrc = NULL;
	return lm__reactor_add_io_recv(
	    c->r, &c->rsrc, c->fds.rfd,
	    LM_IO_IN | (c->want_out && c->fds.wfd == c->fds.rfd ? LM_IO_OUT : 0u), conn_io_cb, c,
	    c->ops->edge ? &c->edge : NULL);
}

static void conn_partial_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_conn *c = userdata;

	if (c->closed || c->freed || !c->ops->partial(c->tp))
		return;
	lm_log_info("%s connection: a message began %u ms ago and is still not whole: closing",
		    c->ops->scheme, c->partial_ms);
	c->busy++;
	conn_fail(c, -ETIMEDOUT);
	conn_unbusy(c);
}

/*
 * After a receive: a message that began must be whole within partial_ms
 * (lm_transport_options.partial_timeout_ns), or the connection closes. The
 * stream is ordered, so while one message waits for its rest no other is
 * delivered: a delivery means the message now waiting (if any) is a new
 * one, and its time starts again.
 */
static void conn_partial_check(lm_conn *c)
{
	bool partial, armed;

	if (!c->ops->partial || c->closed || c->freed)
		return;
	partial = c->ops->partial(c->tp);
	armed = c->ptimer && lm_source_get_enabled(c->ptimer);
	if (!partial) {
		if (armed)
			lm_source_set_enabled(c->ptimer, false);
	} else if (!armed || c->progress) {
		uint64_t ns = (uint64_t)c->partial_ms * 1000000u;

		if (c->ptimer)
			lm_timer_set(c->ptimer, ns, 0);
		else
			lm_reactor_add_timer(c->r, &c->ptimer, ns, 0, conn_partial_cb, c);
	}
	c->progress = false;
}

static void conn_io_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	lm_conn *c = userdata;
	int ret;

	c->busy++;
	if (fd == c->fds.wfd && (events & (LM_IO_OUT | LM_IO_ERR)) && c->want_out) {
		ret = conn_drain(c);
		if (ret < 0)
			conn_fail(c, ret);
	}
	if (fd == c->fds.rfd && (events & (LM_IO_IN | LM_IO_HUP | LM_IO_ERR)) && !c->closed &&
	    !c->freed) {
		int budget = c->edge ? EDGE_READS : 1;
		size_t len;
		bool more;
		const void *data = lm__source_data(s, &len, &more);

		if (data) {
			/* A datagram the backend received for us. */
			ret = c->ops->take(c, c->tp, data, len, !more);
			if (ret < 0 && ret != -ECANCELED)
				conn_fail(c, ret);
			conn_partial_check(c);
			conn_unbusy(c);
			return;
		}

		/* Edge-triggered: this report may be the only one for what is
		 * there, so read until the fd is empty (2: the transport knows it
		 * is; then one more read finds the end of a hung-up peer). */
		bool got = false;

		do {
			ret = c->ops->receive(c, c->tp);
			got |= ret > 0;
		} while (c->edge &&
			 (ret == 1 || (ret == 2 && (events & (LM_IO_HUP | LM_IO_ERR)))) &&
			 --budget > 0 && !c->closed && !c->freed);
		if (c->edge && budget == 0 && !c->closed && !c->freed)
			lm__source_again(c->rsrc); /* not empty yet: the rest next round */
		if (ret < 0 && ret != -ECANCELED)
			conn_fail(c, ret);
		else if (ret == 0 && (events & (LM_IO_HUP | LM_IO_ERR)) && !c->closed && !c->freed)
			conn_fail(c, -ECONNRESET);
		else if (got && c->fds.late_eof && !c->closed && !c->freed &&
			 (ret = conn_opened(c)) < 0)
			conn_fail(c, ret);
		conn_partial_check(c);
	}
	conn_unbusy(c);
}

/* The peer process died: take what it sent before, then close. */
static void conn_hup_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	lm_conn *c = userdata;
	int ret = 1;

	c->busy++;
	while (ret > 0 && !c->closed && !c->freed)
		ret = c->ops->receive(c, c->tp);
	if (ret != -ECANCELED)
		conn_fail(c, ret < 0 ? ret : -ECONNRESET);
	conn_unbusy(c);
}

/* The connection as the reactor's lone waiter (hooks-internal.h), made
 * only for a transport that can (its memory is not in every connection). */
struct conn_lone {
	struct lm__lone l; /* first */
	lm_conn *c;
};
#define lone_conn(l) (((const struct conn_lone *)(l))->c)

static int conn_lone_wait(struct lm__lone *l, int64_t timeout_ns)
{
	lm_conn *c = lone_conn(l);
	int ret = lm__conn_wait(c, timeout_ns);

	if (ret == -EOPNOTSUPP) {
		if (c->no_wait)
			conn_lone_off(c); /* never: the reactor always waits */
		return -1;
	}
	if (ret == -EINTR)
		return ret;
	/* Else delivered, or closed (its callback ran): dispatched. */
	return ret == 0 ? 0 : 1;
}

static void conn_lone_watch(struct lm__lone *l)
{
	lm__conn_watch(lone_conn(l));
}

static unsigned conn_lone_sources(const struct lm__lone *l)
{
	const lm_conn *c = lone_conn(l);

	if (c->no_wait || !lm__conn_idle(c))
		return UINT_MAX; /* cannot wait alone now: never all there is */
	return (unsigned)lm__source_watched(c->rsrc) + lm__source_watched(c->wsrc) +
	       lm__source_watched(c->hsrc) + lm__source_watched(c->csrc);
}

static void conn_lone_kick(struct lm__lone *l)
{
	lm_conn *c = lone_conn(l);

	c->ops->receive_wake(c->tp);
}

static const struct lm__lone_ops conn_lone_ops = {
    .wait = conn_lone_wait,
    .watch = conn_lone_watch,
    .sources = conn_lone_sources,
    .kick = conn_lone_kick,
};

static int conn_new(lm_conn **ret, lm_reactor *r, const struct lm_transport_ops *ops, void *tp,
		    const struct lm_transport_options *opts)
{
	lm_conn *c = calloc(1, sizeof(*c));
	int err;

	if (!c) {
		ops->close(tp);
		ops->free(tp);
		return -ENOMEM;
	}
	c->ops = ops;
	c->tp = tp;
	c->r = r;
	c->max_message = opts->max_message;
	c->max_queue = opts->max_queue;
	c->partial_ms = (uint32_t)((opts->partial_timeout_ns + 999999) / 1000000);
	c->flush.fn = conn_flush_cb;
	c->stage.done = conn_stage_done;
	c->fds.closefd = -1;
	err = ops->fds(tp, &c->fds);
	if (err < 0)
		goto fail;
	/* A connection with a peer watch of its own reads in conn_hup_cb: its
	 * data must then all be in the kernel, not some in the backend. */
	if (conn_takes(c))
		err = lm__reactor_add_io_recv(r, &c->rsrc, c->fds.rfd, LM_IO_IN, conn_io_cb, c,
					      ops->edge ? &c->edge : NULL);
	else if (ops->edge)
		err = lm__reactor_add_io_edge(r, &c->rsrc, c->fds.rfd, LM_IO_IN, conn_io_cb, c,
					      &c->edge);
	else
		err = lm_reactor_add_io(r, &c->rsrc, c->fds.rfd, LM_IO_IN, conn_io_cb, c);
	if (err < 0)
		goto fail;
	if (c->fds.hupfd >= 0) {
		err = lm_reactor_add_io(r, &c->hsrc, c->fds.hupfd, LM_IO_IN, conn_hup_cb, c);
		if (err < 0)
			goto fail;
	}
	if (c->fds.closefd >= 0) {
		err = lm_reactor_add_io(r, &c->csrc, c->fds.closefd, LM_IO_IN, conn_hup_cb, c);
		if (err < 0)
			goto fail;
	}
	*ret = c;
	return 0;
fail:
	conn_destroy(c);
	return err;
}

LM_EXPORT int lm_conn_connect(lm_conn **ret, lm_reactor *r, const char *endpoint,
			      const struct lm_transport_options *opts,
			      const struct lm_conn_callbacks *cb, void *userdata)
{
	const struct lm_transport_ops *ops;
	struct lm_transport_options o;
	const char *name;
	void *tp = NULL;
	lm_conn *c;
	int dirfd, err;

	if (!ret || !r)
		return -EINVAL;
	if (lm_reactor_forked(r))
		return -ECHILD;
	err = endpoint_parse(endpoint, &ops, &name);
	if (err < 0)
		return err;
	err = options_check(ops, opts, &o);
	if (err < 0)
		return err;
	dirfd = lm__runtime_dir_open(NULL, 0);
	if (dirfd < 0)
		return dirfd;
	err = ops->connect(dirfd, name, &tp);
	close(dirfd);
	if (err < 0)
		return err;
	err = conn_new(&c, r, ops, tp, &o);
	if (err < 0)
		return err;
	/* A client connection may be all its reactor watches: a lone waiter
	 * where the transport can (an accepted one never is: its listener). */
	if (ops->receive_wait && ops->receive_wake) {
		struct conn_lone *cl = malloc(sizeof(*cl));

		if (!cl) {
			lm_conn_free(c);
			return -ENOMEM;
		}
		cl->l.ops = &conn_lone_ops;
		cl->c = c;
		c->lone = &cl->l;
		lm__reactor_lone_add(r, c->lone);
	}
	if (cb)
		c->cb = *cb;
	c->userdata = userdata;
	*ret = c;
	return 0;
}

LM_EXPORT void lm_conn_set_callbacks(lm_conn *c, const struct lm_conn_callbacks *cb, void *userdata)
{
	if (!c)
		return;
	if (cb)
		c->cb = *cb;
	else
		memset(&c->cb, 0, sizeof(c->cb));
	c->userdata = userdata;
}

LM_EXPORT void lm_conn_free(lm_conn *c)
{
	if (!c || c->freed)
		return;
	c->freed = true;
	c->notified = true;
	/* What the user sent before freeing leaves if the kernel takes it (not
	 * from a child after fork(): the connection is the parent's). */
	if (!c->closed && c->ohead < c->olen && !lm_reactor_forked(c->r))
		conn_push(c);
	conn_release(c);
	if (c->busy == 0)
		conn_destroy(c);
}

LM_EXPORT int lm_transport_deliver(lm_conn *c, const void *data, size_t len)
{
	if (c->closed || c->freed)
		return -ECANCELED;
	c->progress = true;
	if (c->cb.message)
		c->cb.message(c, data, len, c->userdata);
	return c->closed || c->freed ? -ECANCELED : 0;
}

int lm__transport_deliver_last(lm_conn *c, const void *data, size_t len)
{
	int ret;

	c->direct = true;
	ret = lm_transport_deliver(c, data, len);
	c->direct = false; /* c's memory outlives our dispatch, even if freed */
	return ret;
}

int lm__conn_wait(lm_conn *c, int64_t timeout_ns)
{
	int ret;

	if (!c->ops->receive_wait || c->no_wait || c->closed || c->freed || c->ohead < c->olen)
		return -EOPNOTSUPP;
	/* The reactor stops watching rfd until lm__conn_watch(): each message
	 * would otherwise also wake its poll machinery for nothing. */
	if (c->rsrc && lm_source_get_enabled(c->rsrc))
		lm_source_set_enabled(c->rsrc, false);
	c->busy++;
	ret = c->ops->receive_wait(c, c->tp, timeout_ns);
	if (ret == -EOPNOTSUPP)
		c->no_wait = true; /* not asked again: the reactor always waits */
	else if (ret < 0 && ret != -ECANCELED && ret != -EINTR)
		conn_fail(c, ret);
	conn_partial_check(c);
	conn_unbusy(c);
	return ret;
}

bool lm__conn_idle(const lm_conn *c)
{
	return !c->closed && !c->freed && c->ohead == c->olen;
}

bool lm__conn_waits_alone(const lm_conn *c)
{
	return lm__conn_idle(c) && c->rsrc && !lm_source_get_enabled(c->rsrc);
}

void lm__conn_watch(lm_conn *c)
{
	if (c->rsrc && !c->closed && !c->freed)
		lm_source_set_enabled(c->rsrc, true);
}

/* Append one message to obuf, encoded as send_batch() takes it. */
static int obuf_append(lm_conn *c, const struct iovec *iov, int iovcnt, size_t len)
{
	size_t need;
	uint32_t hdr = (uint32_t)len;
	unsigned char *p;

	stage_settle(c); /* the buffer may move: no staged write may point in */
	need = c->olen + sizeof(uint32_t) + len;

	if (!c->obuf && need <= sizeof(c->ibuf)) {
		c->obuf = c->ibuf;
		c->ocap = sizeof(c->ibuf);
	}
	if (need > c->ocap) {
		size_t cap = c->ocap ? c->ocap : 256;

		/* Slide what the kernel took out first, when that makes room. */
		if (c->ohead && need - c->ohead <= c->ocap) {
			memmove(c->obuf, c->obuf + c->ohead, c->olen - c->ohead);
			c->olen -= c->ohead;
			c->ohead = 0;
			return obuf_append(c, iov, iovcnt, len);
		}
		while (cap < need)
			cap *= 2;
		if (c->obuf == c->ibuf) {
			p = malloc(cap);
			if (p)
				memcpy(p, c->ibuf, c->olen);
		} else {
			p = realloc(c->obuf, cap);
		}
		if (!p)
			return -ENOMEM;
		c->obuf = p;
		c->ocap = cap;
	}
	lm__frame_copy(c->obuf + c->olen, hdr, iov, iovcnt);
	c->olen = need;
	c->queued += len;
	return 0;
}

/* Copy a message the kernel took part of (progress, as ops->send counts it):
 * it goes first, the rest when there is room. */
static int queue_rest(lm_conn *c, const struct iovec *iov, int iovcnt, size_t len, size_t progress)
{
	int err = obuf_append(c, iov, iovcnt, len);

	if (err < 0 && progress == 0)
		return err;
	if (err < 0) {
		/* Half a message is in the kernel: the stream cannot go on. */
		conn_fail_later(c, err);
		return -ECONNRESET;
	}
	c->oprog = progress;
	err = conn_want_out(c, true);
	if (err < 0)
		conn_fail_later(c, err); /* cannot watch for room: cannot go on */
	return 0;
}

LM_EXPORT int lm_conn_sendv(lm_conn *c, const struct iovec *iov, int iovcnt)
{
	size_t len = 0, progress = 0;
	bool waiting, gather;
	int ret;

	if (!c || iovcnt < 0 || iovcnt > LM_MAX_IOV || (iovcnt && !iov) || c->freed)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len && !iov[i].iov_base)
			return -EINVAL;
		len += iov[i].iov_len;
		if (len > c->max_message)
			return -EMSGSIZE;
	}
	if (c->closed)
		return -ECONNRESET;
	if (c->queued + len > c->max_queue) {
		c->refused = true;
		return -ENOBUFS;
	}
	waiting = c->ohead < c->olen;
	gather = c->corked || (lm__reactor_dispatching(c->r) && !c->direct);
	if (waiting || (gather && len < LM_DIRECT_MIN)) {
		ret = obuf_append(c, iov, iovcnt, len);
		if (ret < 0)
			return ret;
		if (c->want_out)
			return 0; /* goes when there is room */
		if (c->olen - c->ohead >= LM_GATHER_MAX)
			lm_conn_flush(c); /* a break is told by the closed callback */
		else
			lm__reactor_flush_queue(c->r, &c->flush);
		return 0;
	}
	c->direct = false; /* one message straight out per delivery */
	ret = c->ops->send(c->tp, iov, iovcnt, len, &progress);
	if (ret > 0)
		return 0;
	if (ret == 0)
		return queue_rest(c, iov, iovcnt, len, progress);
	if (progress == 0 && ret != -ECONNRESET && ret != -EPIPE)
		return ret; /* nothing was sent, nothing broke: e.g. -ENOMEM */
	conn_fail_later(c, ret == -EPIPE ? -ECONNRESET : ret);
	return -ECONNRESET;
}

/* ---- one message to many connections ---- */

/* The flat writes of a lm_conn_sendv_many() not made yet. */
struct fan {
	lm_reactor *r;
	const struct iovec *iov;
	int iovcnt;
	size_t len;
	unsigned char flat[LM_FLAT_MAX]; /* the message, encoded: what each write writes */
	size_t total;                    /* its length; 0: too long for one write */
	size_t n;
	lm_conn *c[LM__FANOUT_MAX];
	size_t at[LM__FANOUT_MAX]; /* index in conns and results */
	struct lm__write w[LM__FANOUT_MAX];
};

/* c would go straight to the kernel in one call of ops->flat (see
 * lm_conn_sendv), and is not in the chunk already (its writes must stay
 * in order). */
static bool fan_fits(const struct fan *f, const lm_conn *c)
{
	return f->total && c && !c->freed && !c->closed && !c->fanning && !c->no_flat &&
	       c->r == f->r && c->ops->flat != LM_TRANSPORT_FLAT_NONE && f->len <= c->max_message &&
	       c->queued + f->len <= c->max_queue && c->ohead >= c->olen && !c->corked &&
	       !(lm__reactor_dispatching(c->r) && !c->direct);
}

/* What lm_conn_sendv would have returned, after ops->flat's call on c made
 * by the fan-out ring returned res. */
static int fan_result(const struct fan *f, lm_conn *c, int res)
{
	size_t progress;
	int ret = flat_outcome(c, res, f->total, &progress);

	c->direct = false; /* as sendv: one message straight out per delivery */
	if (ret == 1)
		return 0;
	if (ret == 0) /* full, or a short write: the rest waits for room */
		return queue_rest(c, f->iov, f->iovcnt, f->len, progress);
	if (ret == FLAT_NOT_WRITTEN)
		return lm_conn_sendv(c, f->iov, f->iovcnt);
	conn_fail_later(c, ret);
	return -ECONNRESET;
}

/* Write the chunk: in one submission when it is worth one and the kernel
 * takes it, else one lm_conn_sendv() each. */
static void fan_flush(struct fan *f, int *results)
{
	bool ring = f->n >= LM__FANOUT_MIN && lm__reactor_write_many(f->r, f->w, f->n) == 0;

	for (size_t i = 0; i < f->n; i++) {
		lm_conn *c = f->c[i];

		c->fanning = false;
		results[f->at[i]] =
		    ring ? fan_result(f, c, f->w[i].res) : lm_conn_sendv(c, f->iov, f->iovcnt);
	}
	f->n = 0;
}

LM_EXPORT int lm_conn_sendv_many(lm_conn *const *conns, size_t n, const struct iovec *iov,
				 int iovcnt, int *results)
{
	struct fan f; /* 3.6 KiB: set field by field, not zeroed */
	int sent = 0;

	if ((n && (!conns || !results)) || iovcnt < 0 || iovcnt > LM_MAX_IOV || (iovcnt && !iov))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (conns[i] && lm_reactor_forked(conns[i]->r))
			return -ECHILD;
	f.r = NULL;
	f.iov = iov;
	f.iovcnt = iovcnt;
	f.len = f.total = f.n = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len && !iov[i].iov_base)
			return -EINVAL;
		f.len += iov[i].iov_len;
		if (f.len > LM_LIMIT_MAX_MESSAGE)
			break; /* -EMSGSIZE from each lm_conn_sendv() */
	}
	if (f.len + sizeof(uint32_t) <= LM_FLAT_MAX)
		f.total = lm__frame_flat(f.flat, (uint32_t)f.len, iov, iovcnt);
	for (size_t i = 0; i < n; i++) {
		lm_conn *c = conns[i];

		if (c && !f.r && !c->freed)
			f.r = c->r; /* the reactor of the first: the others on it join */
		if (c && c->fanning)
			fan_flush(&f, results); /* twice in conns: the first goes first */
		if (!fan_fits(&f, c)) {
			results[i] = c ? lm_conn_sendv(c, iov, iovcnt) : -EINVAL;
			continue;
		}
		c->fanning = true;
		f.c[f.n] = c;
		f.at[f.n] = i;
		f.w[f.n] = flat_write(c, f.flat, f.total);
		if (++f.n == LM__FANOUT_MAX)
			fan_flush(&f, results);
	}
	fan_flush(&f, results);
	for (size_t i = 0; i < n; i++)
		sent += results[i] == 0;
	return sent;
}

LM_EXPORT int lm_conn_flush(lm_conn *c)
{
	int ret;

	if (!c || c->freed)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	if (c->closed)
		return -ECONNRESET;
	if (c->want_out)
		return -EAGAIN; /* the writability watch pushes it */
	lm__reactor_flush_cancel(c->r, &c->flush);
	ret = conn_push(c);
	if (ret < 0) {
		conn_fail_later(c, ret == -EPIPE ? -ECONNRESET : ret);
		return -ECONNRESET;
	}
	return ret ? 0 : -EAGAIN;
}

LM_EXPORT int lm_conn_cork(lm_conn *c, bool on)
{
	if (!c || c->freed)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	c->corked = on;
	if (!on && c->ohead < c->olen && !c->closed)
		lm_conn_flush(c);
	return 0;
}

LM_EXPORT int lm_conn_send(lm_conn *c, const void *data, size_t len)
{
	struct iovec iov = {(void *)data, len};

	return lm_conn_sendv(c, &iov, 1);
}

LM_EXPORT size_t lm_conn_queued(const lm_conn *c)
{
	return c ? c->queued : 0;
}

LM_EXPORT size_t lm_conn_max_message(const lm_conn *c)
{
	return c ? c->max_message : 0;
}

LM_EXPORT int lm_conn_peer_cred(const lm_conn *c, struct lm_peer_cred *ret)
{
	if (!c || !ret)
		return -EINVAL;
	if (c->tp_closed)
		return -ENOTCONN;
	return c->ops->peer_cred(c->tp, ret);
}

LM_EXPORT const char *lm_conn_scheme(const lm_conn *c)
{
	return c ? c->ops->scheme : NULL;
}

/* ---- listeners ---- */

/*
 * Take the name's lock, "<name>.<scheme>.lock": held for the listener's life
 * (flock dies with the process, so a killed server's lock is free again).
 * -EADDRINUSE while a live process holds it. *leftover says whether a
 * previous server left the file (then files at the name may be replaced).
 */
static int lock_take(lm_listener *l, int dirfd, const char *name, bool *leftover)
{
	struct stat st;
	char pid[32];
	int fd, n;

	snprintf(l->lockname, sizeof(l->lockname), "%s.%s.lock", name, l->ops->scheme);
	*leftover = true;
	fd = openat(dirfd, l->lockname, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		*leftover = false;
		fd = openat(dirfd, l->lockname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
	}
	if (fd < 0) {
		n = -errno;
		lm_log_error("listener %s: lock file: %s", l->lockname, strerror(-n));
		return n == -ELOOP ? -EEXIST : n;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		lm_log_error("listener %s: refused: the lock file is not a regular file of ours",
			     l->lockname);
		close(fd);
		return -EEXIST;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
		if (n == -EADDRINUSE)
			lm_log_warn("listener %s: already served by a live process", name);
		close(fd);
		return n;
	}
	/* The pid, for transports whose clients watch the server's life. */
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		n = -errno;
		close(fd);
		return n;
	}
	l->lockfd = fd;
	return 0;
}

static void listener_destroy(lm_listener *l)
{
	/* A child after fork() closes its copies and leaves the parent's files
	 * (and its lock: held by the open file, which the parent keeps). */
	bool forked = lm_reactor_forked(l->r);

	lm_source_free(l->src);
	l->src = NULL;
	lm_source_free(l->retry);
	l->retry = NULL;
	if (l->spare >= 0)
		close(l->spare);
	l->spare = -1;
	if (l->tp && forked) {
		if (l->ops->listen_abandon)
			l->ops->listen_abandon(l->tp);
		else
			close(l->ops->listen_fd(l->tp));
		l->tp = NULL;
	} else if (l->tp) {
		l->ops->listen_close(l->tp);
		l->tp = NULL;
	}
	if (l->lockfd >= 0) {
		/* Still locked: nobody else can be using the name now. */
		if (!forked)
			unlinkat(l->dirfd, l->lockname, 0);
		close(l->lockfd);
		l->lockfd = -1;
	}
	if (l->dirfd >= 0)
		close(l->dirfd);
	l->dirfd = -1;
	if (l->busy == 0)
		free(l);
}

static bool uid_allowed(const lm_listener *l, uid_t uid)
{
	if (uid == geteuid())
		return true;
	for (int i = 0; i < l->nallowed; i++)
		if (l->allowed[i] == uid)
			return true;
	return false;
}

int lm__fds_available(int fd, int n)
{
	int fds[8], k, err = 0;

	for (k = 0; k < n && k < 8; k++) {
		fds[k] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (fds[k] < 0) {
			err = -errno;
			break;
		}
	}
	while (k > 0)
		close(fds[--k]);
	return err;
}

/* A listener out of fds even with its spare waits this long before trying
 * again (watching it meanwhile would report it ready again at once). */
#define LISTENER_RETRY_NS (100ull * 1000 * 1000)

static void listener_watch(lm_listener *l)
{
	bool on = !l->paused && !l->waiting;

	if (l->src && lm_source_get_enabled(l->src) != on)
		lm_source_set_enabled(l->src, on);
}

static void listener_retry_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_listener *l = userdata;

	l->waiting = false;
	listener_watch(l);
}

/* Stop watching l until the retry timer fires. */
static void listener_wait(lm_listener *l)
{
	if (!l->retry &&
	    lm_reactor_add_timer(l->r, &l->retry, LISTENER_RETRY_NS, 0, listener_retry_cb, l) < 0)
		return; /* no memory for a timer: go on watching */
	lm_timer_set(l->retry, LISTENER_RETRY_NS, 0);
	l->waiting = true;
	listener_watch(l);
}

/*
 * accept() found no fd (EMFILE, ENFILE): a level-triggered listener would
 * report the same waiting client again at once, for ever. Refuse it instead:
 * give the spare fd back, take the connection with it and close it (the
 * client sees its connection closed, and the queue empties), then take the
 * spare again. Where even that finds no fd (the spare is gone, or the
 * transport needs more than one), stop watching for LISTENER_RETRY_NS. One
 * warning per shortage, not per client. Returns accept()'s result.
 */
static int listener_refuse(lm_listener *l, int err)
{
	void *tp;
	int ret = err;

	if (!l->starved) {
		l->starved = true;
		l->refused = 0;
		lm_log_warn("listener %s: %s: refusing new connections until fds are freed",
			    l->lockname, strerror(-err));
	}
	if (l->spare >= 0) {
		close(l->spare);
		l->spare = -1;
		ret = l->ops->accept(l->tp, &tp);
		if (ret == 1) {
			l->ops->close(tp);
			l->ops->free(tp);
			l->refused++;
		}
		l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	if (ret < 0 && (l->spare < 0 || ret == -EMFILE || ret == -ENFILE || ret == -ENOMEM))
		listener_wait(l);
	return ret;
}

static void listener_io_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	lm_listener *l = userdata;
	struct lm_peer_cred cred;
	void *tp;
	lm_conn *c;
	int ret;

	l->busy++;
	/* A bounded batch per wake-up keeps the loop fair to the others. */
	for (int i = 0; i < 32 && !l->freed && !l->paused && !l->waiting; i++) {
		ret = l->ops->accept(l->tp, &tp);
		if (ret == 0)
			break;
		if (ret == -EMFILE || ret == -ENFILE || ret == -ENOMEM) {
			if (listener_refuse(l, ret) == 0)
				break;
			continue;
		}
		if (ret < 0) {
			lm_log_debug("listener %s: accept: %s", l->lockname, strerror(-ret));
			continue;
		}
		if (l->starved) {
			l->starved = false;
			lm_log_info("listener %s: accepting again (%lu connections refused while "
				    "out of fds)",
				    l->lockname, l->refused);
		}
		if (l->ops->peer_cred(tp, &cred) < 0 || !uid_allowed(l, cred.uid)) {
			lm_log_warn("listener %s: client uid %u refused (-EACCES)", l->lockname,
				    (unsigned)cred.uid);
			l->ops->close(tp);
			l->ops->free(tp);
			continue;
		}
		if (conn_new(&c, l->r, l->ops, tp, &l->opts) < 0)
			continue;
		l->cb(l, c, l->userdata);
	}
	if (--l->busy == 0 && l->freed)
		free(l);
}

/* A listener not yet serving: the fields every kind shares. */
static int listener_alloc(lm_listener **ret, lm_reactor *r, const struct lm_transport_ops *ops,
			  const struct lm_transport_options *opts, lm_accept_cb cb, void *userdata)
{
	lm_listener *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	l->ops = ops;
	l->r = r;
	l->cb = cb;
	l->userdata = userdata;
	l->lockfd = -1;
	l->dirfd = -1;
	/* Held back for refusing clients when out of fds (listener_refuse);
	 * none is no failure: then the listener only waits. */
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	err = options_check(ops, opts, &l->opts);
	if (err < 0) {
		listener_destroy(l);
		return err;
	}
	*ret = l;
	return 0;
}

LM_EXPORT int lm_listener_new(lm_listener **ret, lm_reactor *r, const char *endpoint,
			      const struct lm_transport_options *opts, lm_accept_cb cb,
			      void *userdata)
{
	const struct lm_transport_ops *ops;
	const char *name;
	lm_listener *l;
	bool leftover;
	int err;

	if (!ret || !r || !cb)
		return -EINVAL;
	if (lm_reactor_forked(r))
		return -ECHILD;
	err = endpoint_parse(endpoint, &ops, &name);
	if (err < 0)
		return err;
	err = listener_alloc(&l, r, ops, opts, cb, userdata);
	if (err < 0)
		return err;
	l->dirfd = lm__runtime_dir_open(NULL, 0);
	if (l->dirfd < 0) {
		err = l->dirfd;
		goto fail;
	}
	err = lock_take(l, l->dirfd, name, &leftover);
	if (err < 0)
		goto fail;
	err = ops->listen(l->dirfd, name, leftover, &l->tp);
	if (err < 0) {
		l->tp = NULL;
		/* Our lock file is not evidence of anything for the next one. */
		if (!leftover)
			unlinkat(l->dirfd, l->lockname, 0);
		close(l->lockfd);
		l->lockfd = -1;
		goto fail;
	}
	err = lm_reactor_add_io(r, &l->src, ops->listen_fd(l->tp), LM_IO_IN, listener_io_cb, l);
	if (err < 0)
		goto fail;
	*ret = l;
	return 0;
fail:
	listener_destroy(l);
	return err;
}

LM_EXPORT int lm_listener_new_fd(lm_listener **ret, lm_reactor *r, const char *scheme, int fd,
				 const struct lm_transport_options *opts, lm_accept_cb cb,
				 void *userdata)
{
	const struct lm_transport_ops *ops;
	lm_listener *l;
	int copy, err;

	if (!ret || !r || !cb || !scheme || fd < 0)
		return -EINVAL;
	if (lm_reactor_forked(r))
		return -ECHILD;
	ops = transport_find(scheme, strlen(scheme));
	if (!ops) {
		lm_log_error("listener on fd %d: unknown transport '%s'", fd, scheme);
		return -EPROTONOSUPPORT;
	}
	if (ops != &lm__transport_unix) {
		lm_log_error("listener on fd %d: the %s transport cannot serve on a passed fd", fd,
			     scheme);
		return -EOPNOTSUPP;
	}
	err = listener_alloc(&l, r, ops, opts, cb, userdata);
	if (err < 0)
		return err;
	/* No name and no lock of ours: the fd's maker keeps both. */
	snprintf(l->lockname, sizeof(l->lockname), "%s fd %d", scheme, fd);
	/* The transport takes a duplicate, so that a failure at any step
	 * leaves the caller's fd open; it is closed only on success. */
	copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (copy < 0) {
		err = -errno;
		goto fail;
	}
	err = lm__unix_listen_adopt(copy, &l->tp);
	if (err < 0) {
		close(copy);
		l->tp = NULL;
		goto fail;
	}
	err = lm_reactor_add_io(r, &l->src, ops->listen_fd(l->tp), LM_IO_IN, listener_io_cb, l);
	if (err < 0)
		goto fail;
	close(fd);
	*ret = l;
	return 0;
fail:
	lm_log_error("listener %s: %s", l->lockname, strerror(-err));
	listener_destroy(l);
	return err;
}

LM_EXPORT void lm_listener_free(lm_listener *l)
{
	if (!l || l->freed)
		return;
	l->freed = true;
	listener_destroy(l);
}

LM_EXPORT int lm_listener_pause(lm_listener *l, bool on)
{
	if (!l || l->freed)
		return -EINVAL;
	if (lm_reactor_forked(l->r))
		return -ECHILD;
	l->paused = on;
	listener_watch(l);
	return 0;
}

LM_EXPORT int lm_listener_allow_uid(lm_listener *l, uid_t uid)
{
	if (!l)
		return -EINVAL;
	if (l->nallowed == LM_MAX_ALLOWED)
		return -ENOSPC;
	l->allowed[l->nallowed++] = uid;
	return 0;
}
