/* SPDX-License-Identifier: MIT */
/* The service client: calls, subscriptions, reconnection with backoff. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bsd/sys/queue.h>

#include "libmessage/service.h"
#include "log-internal.h"
#include "protocol.h"
#include "transport-internal.h"

/* One slot per pending call; serial = generation << 16 | (slot + 1). */
struct pending {
	uint32_t serial; /* 0: free */
	lm_reply_cb cb;
	void *userdata;
	uint64_t deadline; /* monotonic ns, 0: none */
};

/* One allocation per subscription, its name inside: a signal that arrives
 * touches this and nothing else of the client but its first fields. */
struct sub {
	TAILQ_ENTRY(sub) link;
	lm_signal_msg_cb cb;
	void *userdata;
	uint64_t dropped;
	size_t name_len;
	char name[]; /* NUL-terminated */
};

struct lm_client {
	/* What every message that arrives looks at, together. */
	lm_conn *conn;
	size_t max_message;
	enum lm_client_state state;
	unsigned busy;
	bool doomed;
	TAILQ_HEAD(, sub) subs;

	lm_reactor *r;
	char *endpoint;
	char *name;
	struct lm_transport_options topts;
	int64_t call_timeout, hs_timeout, rc_min, rc_max, backoff;
	lm_source *hs_timer, *rc_timer, *to_timer;
	uint64_t to_deadline; /* when to_timer is due, 0: not armed */
	/* Allocated by the first call: a client that only subscribes (or
	 * never calls) does not carry max_pending slots. */
	struct pending *pend;
	uint16_t *free_slots;
	unsigned max_pending, npending, nfree;
	uint16_t gen;
	uint32_t rnd;
	lm_client_state_cb state_cb;
	void *state_ud;
	int reason;         /* of the last DISCONNECTED */
	int refused;        /* a permanent refusal (-EACCES, -EPROTONOSUPPORT): no retry */
	bool is_sync;       /* the private connection of another client */
	bool corked;        /* lm_client_cork(): kept across reconnections */
	lm_reactor *sync_r; /* private reactor of sync calls */
	lm_client *sync;    /* private client on it */
	uint64_t looked;    /* private client: when its reactor last ran (mono ns) */
};

static void client_destroy(lm_client *c);

/* A fresh clock: lm_reactor_now() is the last iteration's, stale outside
 * dispatch (a call made from the program's own loop) and after a lone wait. */
static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static void schedule_reconnect(lm_client *c);

static void client_enter(lm_client *c)
{
	c->busy++;
}

/* Returns false if c is gone. */
static bool client_leave(lm_client *c)
{
	if (--c->busy == 0 && c->doomed) {
		client_destroy(c);
		return false;
	}
	return !c->doomed;
}

static void set_state(lm_client *c, enum lm_client_state st, int reason)
{
	c->state = st;
	c->reason = reason;
	if (c->state_cb)
		c->state_cb(c, st, reason, c->state_ud);
}

static int send_msg_flags(lm_client *c, uint8_t kind, uint16_t flags, uint32_t serial,
			  const char *name, size_t nl, const void *payload, size_t len)
{
	uint8_t hdr[LM_PROTO_HEADER_SIZE];
	struct iovec iov[3];
	int n = 0, err;

	err = lm__proto_encode_header(hdr, kind, serial, name, nl, len, c->max_message);
	if (err < 0)
		return err;
	lm__proto_set_flags(hdr, flags);
	iov[n++] = (struct iovec){hdr, sizeof(hdr)};
	if (nl)
		iov[n++] = (struct iovec){(void *)name, nl};
	if (len)
		iov[n++] = (struct iovec){(void *)payload, len};
	return lm_conn_sendv(c->conn, iov, n);
}

static int send_msg(lm_client *c, uint8_t kind, uint32_t serial, const char *name, size_t nl,
		    const void *payload, size_t len)
{
	return send_msg_flags(c, kind, 0, serial, name, nl, payload, len);
}

/* ---- pending calls ---- */

static struct pending *pending_find(lm_client *c, uint32_t serial)
{
	unsigned slot = (serial & 0xffff) - 1;

	if (!c->pend || slot >= c->max_pending || c->pend[slot].serial != serial || serial == 0)
		return NULL;
	return &c->pend[slot];
}

/* The slots, at the first call. 0 or -ENOMEM. */
static int pending_alloc(lm_client *c)
{
	struct pending *pend = calloc(c->max_pending, sizeof(*pend));
	uint16_t *free_slots = malloc(c->max_pending * sizeof(*free_slots));

	if (!pend || !free_slots) {
		free(pend);
		free(free_slots);
		return -ENOMEM;
	}
	c->pend = pend;
	c->free_slots = free_slots;
	for (unsigned i = 0; i < c->max_pending; i++)
		c->free_slots[c->nfree++] = (uint16_t)(c->max_pending - 1 - i);
	return 0;
}

static void pending_release(lm_client *c, struct pending *pd)
{
	pd->serial = 0;
	c->free_slots[c->nfree++] = (uint16_t)(pd - c->pend);
	c->npending--;
}

/* Complete one call; the slot is free before the callback runs. */
static void pending_complete(lm_client *c, struct pending *pd, const struct lm_reply *reply)
{
	lm_reply_cb cb = pd->cb;
	void *ud = pd->userdata;

	pending_release(c, pd);
	cb(c, reply, ud);
}

static void fail_all(lm_client *c, int status)
{
	struct lm_reply reply = {.status = status};

	for (unsigned i = 0; i < c->max_pending && c->npending; i++)
		if (c->pend[i].serial)
			pending_complete(c, &c->pend[i], &reply);
}

static void arm_timeout(lm_client *c, uint64_t deadline)
{
	uint64_t now = mono_ns();

	c->to_deadline = deadline;
	lm_timer_set(c->to_timer, deadline > now ? deadline - now : 1, 0);
}

static void on_timeout(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_client *c = userdata;
	struct lm_reply reply = {.status = -ETIMEDOUT};
	uint64_t now = mono_ns(), next = 0;

	c->to_deadline = 0;
	client_enter(c);
	for (unsigned i = 0; c->pend && i < c->max_pending; i++) {
		struct pending *pd = &c->pend[i];

		if (!pd->serial || !pd->deadline)
			continue;
		if (pd->deadline <= now)
			pending_complete(c, pd, &reply);
		else if (!next || pd->deadline < next)
			next = pd->deadline;
	}
	/* Callbacks may have added calls with earlier deadlines meanwhile. */
	if (next && (!c->to_deadline || next < c->to_deadline) && !c->doomed)
		arm_timeout(c, next);
	client_leave(c);
}

/* ---- connection ---- */

static void disconnect(lm_client *c, int reason)
{
	lm_log_debug("client %s: disconnected (%s)", c->endpoint, strerror(-reason));
	lm_conn_free(c->conn);
	c->conn = NULL;
	lm_source_set_enabled(c->hs_timer, false);
	c->state = LM_CLIENT_DISCONNECTED;
	fail_all(c, c->refused ? c->refused : -ECONNRESET);
	if (c->doomed)
		return;
	if (c->refused)
		lm_log_warn("client %s: not retrying: %s", c->endpoint, strerror(-c->refused));
	else
		schedule_reconnect(c);
	set_state(c, LM_CLIENT_DISCONNECTED, reason);
}

static void handle_reply(lm_client *c, const struct lm_proto_msg *m)
{
	struct pending *pd = pending_find(c, m->serial);
	struct lm_reply reply = {0};
	char ename[LM_PROTO_MAX_NAME + 1];
	char *emsg = NULL;

	if (m->kind == LM_PROTO_ERROR && m->serial == 0) {
		/* Not tied to a call: a refusal in handshake, or an unknown signal. */
		if (c->state == LM_CLIENT_CONNECTING) {
			bool denied =
			    m->name_len == 15 && memcmp(m->name, "lm.AccessDenied", 15) == 0;
			bool full =
			    m->name_len == 17 && memcmp(m->name, "lm.LimitsExceeded", 17) == 0;
			lm_log_warn("client %s: server refused the connection (%.*s)", c->endpoint,
				    (int)m->name_len, m->name);
			/* Access and the protocol version do not change by
			 * retrying; a full server may have room later. */
			if (!full)
				c->refused = denied ? -EACCES : -EPROTONOSUPPORT;
			disconnect(c, denied ? -EACCES : full ? -EUSERS : -EPROTONOSUPPORT);
		} else {
			lm_log_debug("client %s: %.*s: %.*s", c->endpoint, (int)m->name_len,
				     m->name, (int)m->payload_len, (const char *)m->payload);
		}
		return;
	}
	if (!pd)
		return; /* timed out already, or a SUBSCRIBE answer */
	if (m->kind == LM_PROTO_REPLY) {
		reply.payload = m->payload;
		reply.len = m->payload_len;
		pending_complete(c, pd, &reply);
		return;
	}
	memcpy(ename, m->name, m->name_len);
	ename[m->name_len] = 0;
	emsg = malloc(m->payload_len + 1);
	if (emsg) {
		memcpy(emsg, m->payload, m->payload_len);
		emsg[m->payload_len] = 0;
	}
	reply.status = -EREMOTEIO;
	reply.error_name = ename;
	reply.error_message = emsg ? emsg : "";
	pending_complete(c, pd, &reply);
	free(emsg);
}

/* Names are short: compared here, not through a libc call on another page. */
static inline bool name_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static struct sub *sub_find(lm_client *c, const char *name, size_t nl)
{
	struct sub *sb;

	TAILQ_FOREACH(sb, &c->subs, link)
	if (sb->name_len == nl && name_eq(sb->name, name, nl))
		return sb;
	return NULL;
}

static void handle_signal(lm_client *c, const struct lm_proto_msg *m)
{
	struct sub *sb = sub_find(c, m->name, m->name_len);
	uint64_t dropped;

	if (!sb)
		return; /* unsubscribed while it was on its way */
	if (m->kind == LM_PROTO_DROPPED) {
		const uint8_t *p = m->payload;
		uint64_t n = 0;

		for (int b = 0; b < 8; b++)
			n |= (uint64_t)p[b] << (8 * b);
		sb->dropped += n;
		return;
	}
	dropped = sb->dropped;
	sb->dropped = 0;
	sb->cb(c, sb->name, m->payload, m->payload_len, dropped, sb->userdata);
}

LM_PROTO_HOT static void conn_message(lm_conn *conn, const void *data, size_t len, void *userdata)
{
	lm_client *c = userdata;
	struct lm_proto_msg m;
	int err = lm__proto_decode(&m, data, len, c->max_message);

	client_enter(c);
	if (err < 0) {
		disconnect(c, err);
	} else {
		switch (m.kind) {
		case LM_PROTO_REPLY:
		case LM_PROTO_ERROR:
			handle_reply(c, &m);
			break;
		case LM_PROTO_SIGNAL:
		case LM_PROTO_DROPPED:
			handle_signal(c, &m);
			break;
		case LM_PROTO_WELCOME:
			if (c->state == LM_CLIENT_CONNECTING) {
				lm_source_set_enabled(c->hs_timer, false);
				c->backoff = c->rc_min;
				set_state(c, LM_CLIENT_CONNECTED, 0);
			}
			break;
		case LM_PROTO_BYE:
			disconnect(c, -ECONNRESET);
			break;
		default:
			disconnect(c, -EPROTO);
			break;
		}
	}
	client_leave(c);
}

static void conn_closed(lm_conn *conn, int reason, void *userdata)
{
	lm_client *c = userdata;

	client_enter(c);
	disconnect(c, reason);
	client_leave(c);
}

static const struct lm_conn_callbacks conn_callbacks = {
    .message = conn_message,
    .closed = conn_closed,
};

static void on_hs_timeout(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_client *c = userdata;

	client_enter(c);
	disconnect(c, -ETIMEDOUT);
	client_leave(c);
}

/* Connect, send HELLO and the subscriptions. 0 or -errno (nothing kept). */
static int try_connect(lm_client *c)
{
	struct sub *sb;
	int err;

	err = lm_conn_connect(&c->conn, c->r, c->endpoint, &c->topts, &conn_callbacks, c);
	if (err < 0)
		return err;
	if (c->corked)
		lm_conn_cork(c->conn, true);
	err = send_msg(c, LM_PROTO_HELLO, 0, c->name, c->name ? strlen(c->name) : 0, NULL, 0);
	TAILQ_FOREACH(sb, &c->subs, link)
	{
		sb->dropped = 0;
		if (err == 0)
			err = send_msg(c, LM_PROTO_SUBSCRIBE, 0, sb->name, sb->name_len, NULL, 0);
	}
	if (err < 0) {
		lm_conn_free(c->conn);
		c->conn = NULL;
		return err;
	}
	c->state = LM_CLIENT_CONNECTING;
	lm_timer_set(c->hs_timer, (uint64_t)c->hs_timeout, 0);
	return 0;
}

static uint32_t rnd_next(lm_client *c)
{
	/* xorshift32: jitter only, not security. */
	c->rnd ^= c->rnd << 13;
	c->rnd ^= c->rnd >> 17;
	c->rnd ^= c->rnd << 5;
	return c->rnd;
}

static void schedule_reconnect(lm_client *c)
{
	/* The delay is backoff +- 25 %, then backoff doubles up to its bound. */
	int64_t delay =
	    c->backoff - c->backoff / 4 + (int64_t)(rnd_next(c) % (uint32_t)(c->backoff / 2 + 1));

	lm_timer_set(c->rc_timer, (uint64_t)delay, 0);
	c->backoff = c->backoff * 2 > c->rc_max ? c->rc_max : c->backoff * 2;
}

static void on_reconnect(lm_source *s, uint64_t expirations, void *userdata)
{
	lm_client *c = userdata;
	int err;

	if (c->conn)
		return;
	err = try_connect(c);
	if (err < 0) {
		schedule_reconnect(c);
		/* Each failed attempt is told, with its reason. */
		client_enter(c);
		set_state(c, LM_CLIENT_DISCONNECTED, err);
		client_leave(c);
		return;
	}
	client_enter(c);
	set_state(c, LM_CLIENT_CONNECTING, 0);
	client_leave(c);
}

/* ---- lifetime ---- */

static int client_create(lm_client **ret, lm_reactor *r, const char *endpoint,
			 const struct lm_client_options *opts, bool is_sync)
{
	static const struct lm_client_options defaults;
	lm_client *c;
	int err = -ENOMEM;

	if (!ret || !r || !endpoint)
		return -EINVAL;
	if (lm_reactor_forked(r))
		return -ECHILD;
	if (!opts)
		opts = &defaults;
	if (opts->max_pending > LM_LIMIT_MAX_PENDING || opts->call_timeout_ns < 0 ||
	    opts->handshake_timeout_ns < 0 || opts->reconnect_min_ns < 0 ||
	    opts->reconnect_max_ns < 0 || opts->transport.max_message > LM_LIMIT_MAX_MESSAGE ||
	    (opts->name && !lm__proto_name_ok(opts->name, strlen(opts->name))))
		return -EINVAL;
	/* What no retry can mend fails here, said once (the library logs why):
	 * a malformed endpoint, an unknown transport, a runtime directory that
	 * cannot be used. */
	err = lm__endpoint_check(endpoint);
	if (err < 0)
		return err;
	err = lm__runtime_dir_open(NULL, 0);
	if (err < 0)
		return err;
	close(err);
	err = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->is_sync = is_sync;
	TAILQ_INIT(&c->subs);
	c->topts = opts->transport;
	c->max_message =
	    opts->transport.max_message ? opts->transport.max_message : LM_DEFAULT_MAX_MESSAGE;
	c->call_timeout =
	    opts->call_timeout_ns ? opts->call_timeout_ns : LM_DEFAULT_CALL_TIMEOUT_NS;
	c->hs_timeout = opts->handshake_timeout_ns ? opts->handshake_timeout_ns
						   : LM_DEFAULT_HANDSHAKE_TIMEOUT_NS;
	c->rc_min = opts->reconnect_min_ns ? opts->reconnect_min_ns : LM_DEFAULT_RECONNECT_MIN_NS;
	c->rc_max = opts->reconnect_max_ns ? opts->reconnect_max_ns : LM_DEFAULT_RECONNECT_MAX_NS;
	if (c->rc_max < c->rc_min)
		c->rc_max = c->rc_min;
	c->backoff = c->rc_min;
	c->max_pending = opts->max_pending ? opts->max_pending : LM_DEFAULT_MAX_PENDING;
	c->rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)(uintptr_t)c ^ (uint32_t)time(NULL);
	if (!c->rnd)
		c->rnd = 1;
	c->gen = (uint16_t)c->rnd;
	c->endpoint = strdup(endpoint);
	c->name = opts->name ? strdup(opts->name) : NULL;
	if (!c->endpoint || (opts->name && !c->name))
		goto fail;
	if ((err = lm_reactor_add_timer(r, &c->hs_timer, 0, 0, on_hs_timeout, c)) < 0 ||
	    (err = lm_reactor_add_timer(r, &c->rc_timer, 0, 0, on_reconnect, c)) < 0 ||
	    (err = lm_reactor_add_timer(r, &c->to_timer, 0, 0, on_timeout, c)) < 0)
		goto fail;
	lm_source_set_enabled(c->hs_timer, false);
	lm_source_set_enabled(c->rc_timer, false);
	lm_source_set_enabled(c->to_timer, false);
	err = try_connect(c);
	if (err < 0) {
		lm_log_debug("client %s: not connected yet (%s)", endpoint, strerror(-err));
		c->state = LM_CLIENT_DISCONNECTED;
		c->reason = err;
		if (!is_sync)
			schedule_reconnect(c);
	}
	*ret = c;
	return 0;
fail:
	client_destroy(c);
	return err;
}

LM_EXPORT int lm_client_new(lm_client **ret, lm_reactor *r, const char *endpoint,
			    const struct lm_client_options *opts)
{
	return client_create(ret, r, endpoint, opts, false);
}

static void client_destroy(lm_client *c)
{
	struct sub *sb;

	/* Not from a child after fork(): the connection is the parent's. */
	if (c->conn && !lm_reactor_forked(c->r))
		send_msg(c, LM_PROTO_BYE, 0, NULL, 0, NULL, 0);
	lm_conn_free(c->conn);
	c->conn = NULL;
	c->busy++; /* callbacks may call lm_client_free() again */
	fail_all(c, -ECANCELED);
	lm_source_free(c->hs_timer);
	lm_source_free(c->rc_timer);
	lm_source_free(c->to_timer);
	while ((sb = TAILQ_FIRST(&c->subs))) {
		TAILQ_REMOVE(&c->subs, sb, link);
		free(sb);
	}
	if (c->sync) {
		client_destroy(c->sync);
		lm_reactor_free(c->sync_r);
	}
	free(c->pend);
	free(c->free_slots);
	free(c->endpoint);
	free(c->name);
	free(c);
}

LM_EXPORT void lm_client_free(lm_client *c)
{
	if (!c || c->doomed)
		return;
	if (c->busy) {
		/* Inside one of its callbacks: go when it returns. */
		c->doomed = true;
		return;
	}
	client_destroy(c);
}

/* ---- operations ---- */

LM_EXPORT void lm_client_set_state_cb(lm_client *c, lm_client_state_cb cb, void *userdata)
{
	if (!c)
		return;
	c->state_cb = cb;
	c->state_ud = userdata;
	/* The state now, so that no transition is missed (a client made a
	 * moment ago is CONNECTING already, or DISCONNECTED). */
	if (cb && !c->doomed) {
		client_enter(c);
		cb(c, c->state, c->state == LM_CLIENT_DISCONNECTED ? c->reason : 0, userdata);
		client_leave(c);
	}
}

LM_EXPORT enum lm_client_state lm_client_get_state(const lm_client *c)
{
	return c ? c->state : LM_CLIENT_DISCONNECTED;
}

LM_EXPORT lm_reactor *lm_client_get_reactor(const lm_client *c)
{
	return c ? c->r : NULL;
}

LM_EXPORT size_t lm_client_pending(const lm_client *c)
{
	return c ? c->npending : 0;
}

LM_EXPORT int lm_client_cork(lm_client *c, bool on)
{
	if (!c || c->is_sync)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	c->corked = on;
	return c->conn ? lm_conn_cork(c->conn, on) : 0;
}

LM_EXPORT int lm_client_flush(lm_client *c)
{
	if (!c || c->is_sync)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	return c->conn ? lm_conn_flush(c->conn) : -ENOTCONN;
}

LM_EXPORT int lm_client_call(lm_client *c, const char *method, const void *payload, size_t len,
			     int64_t timeout_ns, lm_reply_cb cb, void *userdata)
{
	struct pending *pd;
	size_t nl;
	uint32_t serial;
	int err;

	if (!c || !method || !cb || (!payload && len) || c->doomed)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	nl = strlen(method);
	if (!lm__proto_name_ok(method, nl))
		return -EINVAL;
	if (!c->conn)
		return c->refused ? c->refused : -ENOTCONN;
	if (!c->pend && (err = pending_alloc(c)) < 0)
		return err;
	if (!c->nfree)
		return -ENOBUFS;
	pd = &c->pend[c->free_slots[c->nfree - 1]];
	if (++c->gen == 0)
		c->gen = 1;
	serial = (uint32_t)c->gen << 16 | (uint32_t)(pd - c->pend + 1);
	err = send_msg(c, LM_PROTO_CALL, serial, method, nl, payload, len);
	if (err < 0)
		return err;
	c->nfree--;
	c->npending++;
	pd->serial = serial;
	pd->cb = cb;
	pd->userdata = userdata;
	if (timeout_ns < 0)
		timeout_ns = c->call_timeout;
	pd->deadline = timeout_ns ? mono_ns() + (uint64_t)timeout_ns : 0;
	/* One timer for the earliest deadline; usually already due earlier. */
	if (pd->deadline && (!c->to_deadline || pd->deadline < c->to_deadline))
		arm_timeout(c, pd->deadline);
	return 0;
}

LM_EXPORT int lm_client_call_no_reply(lm_client *c, const char *method, const void *payload,
				      size_t len)
{
	size_t nl;

	if (!c || !method || (!payload && len) || c->doomed)
		return -EINVAL;
	nl = strlen(method);
	if (!lm__proto_name_ok(method, nl))
		return -EINVAL;
	if (!c->conn)
		return -ENOTCONN;
	return send_msg_flags(c, LM_PROTO_CALL, LM_PROTO_FLAG_NO_REPLY, LM_PROTO_NO_REPLY_SERIAL,
			      method, nl, payload, len);
}

struct sync_wait {
	bool done;
	int status;
	struct lm_reply *reply;
};

static void sync_done(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct sync_wait *w = userdata;
	size_t nl = reply->error_name ? strlen(reply->error_name) + 1 : 0;
	size_t ml = reply->error_message ? strlen(reply->error_message) + 1 : 0;
	struct lm_reply *copy;
	char *p;

	w->done = true;
	w->status = reply->status;
	if (reply->status != 0 && reply->status != -EREMOTEIO)
		return;
	copy = malloc(sizeof(*copy) + reply->len + nl + ml + 1);
	if (!copy) {
		w->status = -ENOMEM;
		return;
	}
	p = (char *)(copy + 1);
	*copy = (struct lm_reply){.status = reply->status, .len = reply->len};
	if (reply->len)
		memcpy(p, reply->payload, reply->len);
	p[reply->len] = 0; /* so text payloads can be printed */
	copy->payload = p;
	p += reply->len + 1;
	if (nl) {
		memcpy(p, reply->error_name, nl);
		copy->error_name = p;
		p += nl;
	}
	if (ml) {
		memcpy(p, reply->error_message, ml);
		copy->error_message = p;
	}
	if (reply->status)
		copy->payload = NULL;
	w->reply = copy;
}

/*
 * Where the transport has a blocking receive (mq: lm__conn_wait), a sync
 * call waits in it, on the private connection alone: one syscall where the
 * reactor needs two. The reactor, which also sees the server die (its
 * pidfd) or say BYE, then runs only
 *  - when the blocking wait found no reply within SYNC_BLOCK_NS (or the
 *    call's own timeout): it waits for the rest (on unix and fifo, which
 *    have no such wait, it always waits);
 *  - before a call, when it last ran SYNC_LOOK_NS ago or more: a server
 *    that died or left since is then seen before the call is sent, and
 *    the call goes to a fresh connection. (On unix and fifo a send to a
 *    closed peer fails at once, and the call goes to a fresh one anyway.)
 * So a server that dies less than SYNC_LOOK_NS before a call is seen as one
 * that dies while the call waits: -ECONNRESET, at most SYNC_BLOCK_NS late.
 * That race exists anyway; the window is what a syscall per call buys.
 * Both exceed a 4 ms tick, so the blocking wait's timer is not the CPU's
 * next one (reprogramming that costs a VM exit on KVM: measured p99 26 µs
 * with 1 ms).
 */
#define SYNC_BLOCK_NS 10000000
#define SYNC_LOOK_NS  10000000

/* The first part of a sync call's wait: in the kernel's blocking receive,
 * on the private connection alone, until the reply, SYNC_BLOCK_NS or the
 * call's own timeout (what the reactor handles from then on). */
static void sync_wait_blocking(lm_client *s, const struct sync_wait *w, int64_t timeout_ns,
			       uint64_t now)
{
	uint64_t end;

	if (timeout_ns < 0)
		timeout_ns = s->call_timeout;
	end =
	    now + (timeout_ns && timeout_ns < SYNC_BLOCK_NS ? (uint64_t)timeout_ns : SYNC_BLOCK_NS);
	while (!w->done && s->conn && now < end) {
		int err = lm__conn_wait(s->conn, (int64_t)(end - now));

		if (err == -EOPNOTSUPP || err == -ECANCELED || (err < 0 && !s->conn))
			return;
		if (w->done)
			return;
		/* Something other than the reply (a handshake): what it
		 * started (timers, deferred work) runs before waiting again.
		 * Nothing, before the time is up: a wake-up (the server closed:
		 * see ops->receive_wake) or a signal; the reactor looks. */
		lm_reactor_run_once(s->r, 0);
		now = mono_ns();
	}
}

/*
 * Connect the private client of sync calls, waiting for a server that is
 * not there yet (as sd-bus does) within the call's timeout, which is then
 * reduced by the time spent. A server absent for the whole timeout:
 * -ENOTCONN. Other errors at once.
 */
static int sync_connect(lm_client *s, int64_t *timeout_ns)
{
	int64_t t = *timeout_ns < 0 ? s->call_timeout : *timeout_ns;
	uint64_t start = mono_ns(), end = t ? start + (uint64_t)t : UINT64_MAX, now;
	int64_t step = s->rc_min;

	for (;;) {
		int err = try_connect(s);

		now = mono_ns();
		if (err == 0)
			break;
		if (err != -ENOENT && err != -ECONNREFUSED && err != -EAGAIN)
			return err;
		if (now >= end)
			return -ENOTCONN;
		if ((uint64_t)step > end - now)
			step = (int64_t)(end - now);
		nanosleep(&(struct timespec){step / 1000000000, step % 1000000000}, NULL);
		step = step * 2 > s->rc_max ? s->rc_max : step * 2;
	}
	if (t)
		*timeout_ns = now >= end ? 1 : (int64_t)(end - now);
	return 0;
}

LM_EXPORT int lm_client_call_sync(lm_client *c, const char *method, const void *payload, size_t len,
				  int64_t timeout_ns, struct lm_reply **ret)
{
	struct sync_wait w = {0};
	struct lm_client_options o = {0};
	uint64_t now;
	int err;

	if (!c || !method || !ret || c->is_sync)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	if (!c->sync) {
		struct lm_reactor_options ro = {0};

		ro.backend = strcmp(lm_reactor_backend_name(c->r), "epoll") == 0 ? LM_BACKEND_EPOLL
										 : LM_BACKEND_URING;
		err = lm_reactor_new(&c->sync_r, &ro);
		if (err < 0)
			return err;
		o.name = c->name;
		o.transport = c->topts;
		o.call_timeout_ns = c->call_timeout;
		o.max_pending = 1;
		o.handshake_timeout_ns = c->hs_timeout;
		err = client_create(&c->sync, c->sync_r, c->endpoint, &o, true);
		if (err < 0) {
			lm_reactor_free(c->sync_r);
			c->sync_r = NULL;
			return err;
		}
	}
	/* The private reactor only runs here: first take in what happened to
	 * its connection meanwhile (a server that went away; see SYNC_LOOK_NS). */
	now = mono_ns();
	if (!c->sync->conn || !lm__conn_idle(c->sync->conn) ||
	    now - c->sync->looked >= SYNC_LOOK_NS) {
		if (c->sync->conn)
			lm__conn_watch(c->sync->conn);
		lm_reactor_run_once(c->sync_r, 0);
		c->sync->looked = now;
	}
	if (c->refused)
		return c->refused;
	for (int attempt = 0;; attempt++) {
		if (!c->sync->conn) {
			err = sync_connect(c->sync, &timeout_ns);
			if (err < 0)
				return err;
		}
		err = lm_client_call(c->sync, method, payload, len, timeout_ns, sync_done, &w);
		if (err != -ECONNRESET || attempt)
			break;
		/* Broken before anything was sent: one fresh connection. */
		lm_conn_free(c->sync->conn);
		c->sync->conn = NULL;
	}
	if (err < 0)
		return err;
	sync_wait_blocking(c->sync, &w, timeout_ns, now);
	if (!w.done && c->sync->conn)
		lm__conn_watch(c->sync->conn);
	while (!w.done) {
		err = lm_reactor_run_once(c->sync_r, -1);
		if (err < 0 && err != -EINTR) {
			/* Cannot wait: give up on the call (its callback sees it). */
			lm_conn_free(c->sync->conn);
			c->sync->conn = NULL;
			fail_all(c->sync, err);
		}
		c->sync->looked = mono_ns();
	}
	if (c->sync->conn == NULL)
		lm_source_set_enabled(c->sync->rc_timer, false);
	if (w.status == 0 || w.status == -EREMOTEIO) {
		if (!w.reply)
			return -ENOMEM;
		*ret = w.reply;
	}
	return w.status;
}

LM_EXPORT void lm_reply_free(struct lm_reply *reply)
{
	free(reply);
}

LM_EXPORT int lm_client_subscribe(lm_client *c, const char *signal, lm_signal_msg_cb cb,
				  void *userdata)
{
	struct sub *sb;
	size_t nl;

	if (!c || !signal || !cb)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	nl = strlen(signal);
	if (!lm__proto_name_ok(signal, nl))
		return -EINVAL;
	if (sub_find(c, signal, nl))
		return -EEXIST;
	sb = calloc(1, sizeof(*sb) + nl + 1);
	if (!sb)
		return -ENOMEM;
	memcpy(sb->name, signal, nl + 1);
	sb->name_len = nl;
	sb->cb = cb;
	sb->userdata = userdata;
	TAILQ_INSERT_TAIL(&c->subs, sb, link);
	/* Not connected: sent on connection. A failed send breaks the
	 * connection, and the reconnection sends it. */
	if (c->conn)
		send_msg(c, LM_PROTO_SUBSCRIBE, 0, signal, nl, NULL, 0);
	return 0;
}

/* The userdata of a subscription (for wrappers that own it), or NULL. */
void *lm__client_sub_userdata(lm_client *c, const char *signal)
{
	struct sub *sb = c && signal ? sub_find(c, signal, strlen(signal)) : NULL;

	return sb ? sb->userdata : NULL;
}

LM_EXPORT int lm_client_unsubscribe(lm_client *c, const char *signal)
{
	struct sub *sb;

	if (!c || !signal)
		return -EINVAL;
	if (lm_reactor_forked(c->r))
		return -ECHILD;
	sb = sub_find(c, signal, strlen(signal));
	if (!sb)
		return -ENOENT;
	if (c->conn)
		send_msg(c, LM_PROTO_UNSUBSCRIBE, 0, sb->name, sb->name_len, NULL, 0);
	TAILQ_REMOVE(&c->subs, sb, link);
	free(sb);
	return 0;
}
