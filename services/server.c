/* SPDX-License-Identifier: MIT */
/* The service server: accepts clients, dispatches calls, fans signals out. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cbor.h>

#include <bsd/sys/queue.h>

#include "libmessage/service.h"
#include "libmessage/types.h"
#include "log-internal.h"
#include "protocol.h"

/* Calls kept for reuse, so a call costs no malloc on the hot path. */
#define CALL_CACHE_MAX 256

/* A signal up to this size (header and name included) is laid out once in
 * one buffer on the stack: each subscriber's send is then one segment, not
 * three, which is what a fan-out pays for per subscriber. */
#define EMIT_FLAT_MAX 2048

struct method_entry {
	const char *name;
	size_t name_len;
	lm_method_cb handler;
	void *userdata;
	lm_type *args, *result; /* declared types, NULL: untyped */
};

struct signal_entry {
	char *name;
	size_t name_len;
	enum lm_overflow policy;
	lm_type *type;      /* declared type, NULL: untyped */
	struct peer **subs; /* subscribers, unordered */
	size_t nsubs, cap;
};

/* Per peer and signal: where the peer stands on it. */
struct peer_signal {
	bool subscribed;
	uint64_t dropped; /* signals dropped since the last one sent */
	void *held;       /* the newest signal that did not fit (whole message) */
	size_t held_len;
};

/* One per client, kept small: a server may have thousands. */
struct peer {
	/* What lm_server_emit looks at for each subscriber, first. */
	lm_conn *conn;
	bool backlog; /* some peer_signal holds a signal (never false if one does) */
	bool ready;
	bool over;               /* its uid has max_connections_per_uid connections already */
	bool dead;               /* detached, freed when the server is no longer busy */
	uint32_t nsig;           /* entries in sig */
	struct peer_signal *sig; /* indexed like s->signals, from the first SUBSCRIBE */
	lm_server *s;
	LIST_ENTRY(peer) link;
	lm_source *hs_timer; /* while in handshake */
	struct peer *kill_next;
	LIST_HEAD(, lm_call) calls; /* calls not replied to yet */
	unsigned ncalls;            /* in calls */
	struct uid_count *uc;       /* the uid's count, if another than the server's */
};

/* Connections of one uid other than the server's own. */
struct uid_count {
	uid_t uid;
	unsigned n;
};

struct lm_call {
	LIST_ENTRY(lm_call) link;
	lm_server *s;
	struct peer *p; /* NULL once the client left */
	uint32_t serial;
	bool in_abandon, done;
	bool no_reply; /* the CALL had NO_REPLY: answers are dropped */
	const struct method_entry *m;
	lm_call_abandoned_cb abandoned;
	void *abandoned_ud;
};

struct lm_server {
	lm_reactor *r;
	lm_listener *l;
	char *name;
	size_t max_message;
	int64_t hs_timeout;
	unsigned max_hs, n_hs;
	unsigned max_calls, max_per_uid;
	struct uid_count *uids; /* one per allowed uid (s->allow), in that order */
	uid_t uid;
	uid_t *allow;
	size_t nallow;
	struct method_entry *methods;
	size_t nmethods;
	struct signal_entry *signals;
	size_t nsignals;
	struct method_entry introspect; /* lm.Introspect: built-in or lm_server_set_introspect */
	struct method_entry stats;      /* lm.Stats, built-in */
	LIST_HEAD(, peer) peers;
	size_t npeers;
	LIST_HEAD(, peer) dead;
	LIST_HEAD(, lm_call) orphans;
	LIST_HEAD(, lm_call) cache;
	unsigned ncache;
	unsigned busy;
	struct timespec started; /* CLOCK_MONOTONIC, for lm.Stats */
	/* What lm.Stats reports (docs/protocol.md). */
	uint64_t n_calls, n_calls_refused, n_emitted, n_dropped, n_overflow_kills;
	uint64_t n_conn_refused, n_stalled;
};

static void peer_kill(struct peer *p, int reason);

/* ---- small helpers ---- */

static int send_msg(lm_conn *c, uint8_t kind, uint32_t serial, const char *name, size_t nl,
		    const void *payload, size_t len, size_t max)
{
	uint8_t hdr[LM_PROTO_HEADER_SIZE];
	struct iovec iov[3];
	int n = 0, err;

	err = lm__proto_encode_header(hdr, kind, serial, name, nl, len, max);
	if (err < 0)
		return err;
	iov[n++] = (struct iovec){hdr, sizeof(hdr)};
	if (nl)
		iov[n++] = (struct iovec){(void *)name, nl};
	if (len)
		iov[n++] = (struct iovec){(void *)payload, len};
	return lm_conn_sendv(c, iov, n);
}

static int send_error(struct peer *p, uint32_t serial, const char *name, const char *message)
{
	return send_msg(p->conn, LM_PROTO_ERROR, serial, name, strlen(name), message,
			message ? strlen(message) : 0, p->s->max_message);
}

static void server_enter(lm_server *s)
{
	s->busy++;
}

static void server_leave(lm_server *s)
{
	struct peer *p;

	if (--s->busy)
		return;
	while ((p = LIST_FIRST(&s->dead))) {
		LIST_REMOVE(p, link);
		free(p);
	}
}

/* ---- calls ---- */

static lm_call *call_get(lm_server *s)
{
	lm_call *call = LIST_FIRST(&s->cache);

	if (call) {
		LIST_REMOVE(call, link);
		s->ncache--;
		memset(call, 0, sizeof(*call));
		return call;
	}
	return calloc(1, sizeof(*call));
}

static void call_put(lm_call *call)
{
	lm_server *s = call->s;

	if (call->p)
		call->p->ncalls--;
	LIST_REMOVE(call, link);
	if (s->ncache < CALL_CACHE_MAX) {
		LIST_INSERT_HEAD(&s->cache, call, link);
		s->ncache++;
	} else {
		free(call);
	}
}

/* Shared tail of lm_call_reply / lm_call_error: 0 if the call may be
 * answered, else the error to return (and the call is freed if it must be). */
static int call_check(lm_call *call)
{
	if (call->p)
		return 0;
	if (call->in_abandon)
		call->done = true;
	else
		call_put(call);
	return -ECONNRESET;
}

static int call_finish(lm_call *call, int err)
{
	struct peer *p = call->p;

	call_put(call);
	if (err == -ENOBUFS) {
		/* The client does not read its replies: disconnect it. */
		lm_log_debug("server %s: client queue full, disconnecting", p->s->name);
		p->s->n_overflow_kills++;
		peer_kill(p, -ENOBUFS);
	}
	return err;
}

/* A NO_REPLY call is answered by freeing it: nothing goes out. */
static bool call_drop_answer(lm_call *call)
{
	if (!call->no_reply)
		return false;
	call_put(call);
	return true;
}

LM_EXPORT int lm_call_reply(lm_call *call, const void *payload, size_t len)
{
	int err;

	if (!call || (!payload && len))
		return -EINVAL;
	if (lm_reactor_forked(call->s->r))
		return -ECHILD;
	err = call_check(call);
	if (err < 0)
		return err;
	if (call_drop_answer(call))
		return 0;
	err = send_msg(call->p->conn, LM_PROTO_REPLY, call->serial, NULL, 0, payload, len,
		       call->s->max_message);
	if (err == -EMSGSIZE) {
		send_error(call->p, call->serial, "lm.Failed", "reply larger than max_message");
		return call_finish(call, -EMSGSIZE);
	}
	return call_finish(call, err);
}

LM_EXPORT int lm_call_error(lm_call *call, const char *error_name, const char *message)
{
	int err;

	if (!call || !error_name || !lm__proto_name_ok(error_name, strlen(error_name)))
		return -EINVAL;
	if (lm_reactor_forked(call->s->r))
		return -ECHILD;
	err = call_check(call);
	if (err < 0)
		return err;
	if (call_drop_answer(call))
		return 0;
	err = send_error(call->p, call->serial, error_name, message);
	if (err == -EMSGSIZE)
		err = send_error(call->p, call->serial, error_name, NULL);
	return call_finish(call, err);
}

LM_EXPORT bool lm_call_no_reply(const lm_call *call)
{
	return call && call->no_reply;
}

LM_EXPORT const char *lm_call_method(const lm_call *call)
{
	return call && call->m ? call->m->name : NULL;
}

LM_EXPORT int lm_call_peer_cred(const lm_call *call, struct lm_peer_cred *ret)
{
	if (!call || !ret)
		return -EINVAL;
	if (!call->p)
		return -ECONNRESET;
	return lm_conn_peer_cred(call->p->conn, ret);
}

LM_EXPORT void lm_call_set_abandoned_cb(lm_call *call, lm_call_abandoned_cb cb, void *userdata)
{
	if (!call)
		return;
	call->abandoned = cb;
	call->abandoned_ud = userdata;
}

/* The client of these calls left: tell whoever holds them, or keep them as
 * orphans until they are answered or the server is freed. */
static void calls_abandon(struct peer *p)
{
	lm_server *s = p->s;
	lm_call *call;

	while ((call = LIST_FIRST(&p->calls))) {
		LIST_REMOVE(call, link);
		LIST_INSERT_HEAD(&s->orphans, call, link);
		call->p = NULL;
		p->ncalls--;
		if (call->abandoned) {
			call->in_abandon = true;
			call->abandoned(call, call->abandoned_ud);
			call_put(call);
		}
	}
}

/* ---- peers ---- */

static void sub_remove(struct signal_entry *sig, struct peer *p)
{
	for (size_t i = 0; i < sig->nsubs; i++) {
		if (sig->subs[i] == p) {
			sig->subs[i] = sig->subs[--sig->nsubs];
			return;
		}
	}
}

/* One connection fewer in handshake: below max_handshakes, take new ones
 * again (on_accept stopped the listener at the cap). */
static void handshake_done(lm_server *s)
{
	if (s->n_hs-- == s->max_hs && s->l)
		lm_listener_pause(s->l, false);
}

/* Detach p from everything at once; its memory goes when the server is not
 * in the middle of a callback that may still look at it. */
static void peer_kill(struct peer *p, int reason)
{
	lm_server *s = p->s;

	if (p->dead)
		return;
	lm_log_debug("server %s: client gone (%s)", s->name, strerror(-reason));
	p->dead = true;
	LIST_REMOVE(p, link);
	s->npeers--;
	if (p->uc)
		p->uc->n--;
	if (!p->ready)
		handshake_done(s);
	lm_source_free(p->hs_timer);
	p->hs_timer = NULL;
	lm_conn_free(p->conn);
	p->conn = NULL;
	for (size_t i = 0; i < p->nsig; i++) {
		if (p->sig[i].subscribed)
			sub_remove(&s->signals[i], p);
		free(p->sig[i].held);
	}
	free(p->sig);
	p->sig = NULL;
	p->nsig = 0;
	calls_abandon(p);
	if (s->busy) {
		LIST_INSERT_HEAD(&s->dead, p, link);
	} else {
		free(p);
	}
}

static int peer_sig_grow(struct peer *p, size_t n)
{
	struct peer_signal *v;

	if (n <= p->nsig)
		return 0;
	v = realloc(p->sig, n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(v + p->nsig, 0, (n - p->nsig) * sizeof(*v));
	p->sig = v;
	p->nsig = (uint32_t)n;
	return 0;
}

static bool uid_allowed(lm_server *s, uid_t uid)
{
	if (uid == s->uid)
		return true;
	for (size_t i = 0; i < s->nallow; i++)
		if (s->allow[i] == uid)
			return true;
	return false;
}

static void handle_hello(struct peer *p, const struct lm_proto_msg *m)
{
	lm_server *s = p->s;
	struct lm_peer_cred cred;

	if (m->kind != LM_PROTO_HELLO) {
		peer_kill(p, -EPROTO);
		return;
	}
	if (lm_conn_peer_cred(p->conn, &cred) < 0 || !uid_allowed(s, cred.uid)) {
		lm_log_info("server %s: refusing uid %u", s->name, (unsigned)cred.uid);
		send_error(p, 0, "lm.AccessDenied", "this uid may not use the service");
		peer_kill(p, -EACCES);
		return;
	}
	if (p->over) {
		lm_log_info("server %s: uid %u has %u connections already: refusing one more",
			    s->name, (unsigned)cred.uid, s->max_per_uid);
		s->n_conn_refused++;
		send_error(p, 0, "lm.LimitsExceeded", "too many connections for this uid");
		peer_kill(p, -EUSERS);
		return;
	}
	if (send_msg(p->conn, LM_PROTO_WELCOME, 0, s->name, strlen(s->name), NULL, 0,
		     s->max_message) < 0) {
		peer_kill(p, -ECONNRESET);
		return;
	}
	p->ready = true;
	handshake_done(s);
	lm_source_free(p->hs_timer);
	p->hs_timer = NULL;
}

static struct signal_entry *signal_find(lm_server *s, const char *name, size_t nl, size_t *idx)
{
	for (size_t i = 0; i < s->nsignals; i++) {
		if (s->signals[i].name_len == nl && memcmp(s->signals[i].name, name, nl) == 0) {
			*idx = i;
			return &s->signals[i];
		}
	}
	return NULL;
}

static void handle_subscribe(struct peer *p, const struct lm_proto_msg *m)
{
	lm_server *s = p->s;
	struct signal_entry *sig;
	size_t idx;
	char name[LM_PROTO_MAX_NAME + 1];

	sig = signal_find(s, m->name, m->name_len, &idx);
	if (m->kind == LM_PROTO_UNSUBSCRIBE) {
		if (sig && idx < p->nsig && p->sig[idx].subscribed) {
			p->sig[idx].subscribed = false;
			sub_remove(sig, p);
		}
		return;
	}
	if (!sig) {
		memcpy(name, m->name, m->name_len);
		name[m->name_len] = 0;
		send_error(p, m->serial, "lm.UnknownSignal", name);
		return;
	}
	if (peer_sig_grow(p, s->nsignals) < 0) {
		send_error(p, m->serial, "lm.Failed", "out of memory");
		return;
	}
	if (!p->sig[idx].subscribed) {
		if (sig->nsubs == sig->cap) {
			size_t cap = sig->cap ? sig->cap * 2 : 8;
			struct peer **v = realloc(sig->subs, cap * sizeof(*v));
			if (!v) {
				send_error(p, m->serial, "lm.Failed", "out of memory");
				return;
			}
			sig->subs = v;
			sig->cap = cap;
		}
		sig->subs[sig->nsubs++] = p;
		p->sig[idx].subscribed = true;
	}
	if (m->serial)
		send_msg(p->conn, LM_PROTO_REPLY, m->serial, NULL, 0, NULL, 0, s->max_message);
}

/* A declared type's text in an introspection line: "-" when untyped. */
static void put_type(FILE *f, const lm_type *t)
{
	char buf[512], *big;
	size_t n;

	if (!t) {
		fputs("-", f);
		return;
	}
	n = lm_type_format(t, buf, sizeof(buf));
	if (n < sizeof(buf)) {
		fputs(buf, f);
	} else if ((big = malloc(n + 1))) {
		lm_type_format(t, big, n + 1);
		fputs(big, f);
		free(big);
	}
}

/*
 * lm.Introspect: version 1 (empty arguments, what older clients send) is
 * one line per member without types; a client that reads version 2 sends
 * "2" and gets the types too, after an "introspect 2" first line. A client
 * knows which one it got from that first line (docs/protocol.md).
 */
static void introspect(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_server *s = userdata;
	bool v2 =
	    len >= 1 && ((const char *)payload)[0] >= '2' && ((const char *)payload)[0] <= '9';
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	if (!f) {
		lm_call_error(call, "lm.Failed", "out of memory");
		return;
	}
	if (v2)
		fputs("introspect 2\n", f);
	fprintf(f, "server %s\n", s->name);
	for (size_t i = 0; i < s->nmethods; i++) {
		const struct method_entry *m = &s->methods[i];

		fprintf(f, "method %s", m->name);
		if (v2 && (m->args || m->result)) {
			fputc(' ', f);
			put_type(f, m->args);
			fputs(" -> ", f);
			put_type(f, m->result);
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < s->nsignals; i++) {
		fprintf(f, "signal %s %s", s->signals[i].name,
			s->signals[i].policy == LM_OVERFLOW_DISCONNECT ? "disconnect"
								       : "drop-oldest");
		if (v2 && s->signals[i].type) {
			fputc(' ', f);
			put_type(f, s->signals[i].type);
		}
		fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(buf);
		lm_call_error(call, "lm.Failed", "out of memory");
		return;
	}
	lm_call_reply(call, buf, size);
	free(buf);
}

/* The type of lm.Stats' reply, as docs/protocol.md gives it. */
#define STATS_TYPE                                                                        \
	"{name: text, uptime_ns: uint, clients: uint, calls: uint, calls_refused: uint, " \
	"signals_emitted: uint, signals_dropped: uint, overflow_disconnects: uint, "      \
	"connections_refused: uint, stalled_disconnects: uint, "                          \
	"signals: [{name: text, subscribers: uint}]}"

static bool map_put(cbor_item_t *map, const char *key, cbor_item_t *value)
{
	cbor_item_t *k = cbor_build_string(key);
	bool ok = k && value && cbor_map_add(map, (struct cbor_pair){k, value});

	if (k)
		cbor_decref(&k);
	if (value)
		cbor_decref(&value);
	return ok;
}

static uint64_t elapsed_ns(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)(now.tv_sec - since->tv_sec) * 1000000000u +
	       (uint64_t)(now.tv_nsec - since->tv_nsec);
}

/* lm.Stats: what the server says about itself, one CBOR map of STATS_TYPE. */
static void stats(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_server *s = userdata;
	cbor_item_t *map = cbor_new_definite_map(11), *sigs = cbor_new_definite_array(s->nsignals);
	unsigned char *buf = NULL;
	size_t size = 0, n = 0;
	bool ok = map && sigs;

	for (size_t i = 0; ok && i < s->nsignals; i++) {
		cbor_item_t *e = cbor_new_definite_map(2);

		ok = e && map_put(e, "name", cbor_build_string(s->signals[i].name)) &&
		     map_put(e, "subscribers", cbor_build_uint64(s->signals[i].nsubs)) &&
		     cbor_array_push(sigs, e);
		if (e)
			cbor_decref(&e);
	}
	ok = ok && map_put(map, "name", cbor_build_string(s->name)) &&
	     map_put(map, "uptime_ns", cbor_build_uint64(elapsed_ns(&s->started))) &&
	     map_put(map, "clients", cbor_build_uint64(s->npeers)) &&
	     map_put(map, "calls", cbor_build_uint64(s->n_calls)) &&
	     map_put(map, "calls_refused", cbor_build_uint64(s->n_calls_refused)) &&
	     map_put(map, "signals_emitted", cbor_build_uint64(s->n_emitted)) &&
	     map_put(map, "signals_dropped", cbor_build_uint64(s->n_dropped)) &&
	     map_put(map, "overflow_disconnects", cbor_build_uint64(s->n_overflow_kills)) &&
	     map_put(map, "connections_refused", cbor_build_uint64(s->n_conn_refused)) &&
	     map_put(map, "stalled_disconnects", cbor_build_uint64(s->n_stalled)) &&
	     map_put(map, "signals", cbor_incref(sigs));
	if (ok)
		n = cbor_serialize_alloc(map, &buf, &size);
	if (map)
		cbor_decref(&map);
	if (sigs)
		cbor_decref(&sigs);
	if (n == 0) {
		free(buf);
		lm_call_error(call, "lm.Failed", "out of memory");
		return;
	}
	lm_call_reply(call, buf, n);
	free(buf);
}

static const struct method_entry *method_find(lm_server *s, const char *name, size_t nl)
{
	for (size_t i = 0; i < s->nmethods; i++)
		if (s->methods[i].name_len == nl && memcmp(s->methods[i].name, name, nl) == 0)
			return &s->methods[i];
	if (nl == s->introspect.name_len && memcmp(name, s->introspect.name, nl) == 0)
		return &s->introspect;
	if (nl == s->stats.name_len && memcmp(name, s->stats.name, nl) == 0)
		return &s->stats;
	return NULL;
}

/* A typed method's arguments do not match: lm.InvalidArgs says where. */
static bool args_refused(struct peer *p, const struct lm_proto_msg *m,
			 const struct method_entry *me, bool no_reply)
{
	char why[300], type[200], msg[600];
	int err = lm_type_check(me->args, m->payload, m->payload_len, why, sizeof(why));

	if (err == 0)
		return false;
	p->s->n_calls_refused++;
	if (no_reply)
		return true;
	if (err == -ENOMEM) {
		send_error(p, m->serial, "lm.Failed", "out of memory");
		return true;
	}
	if (lm_type_format(me->args, type, sizeof(type)) >= sizeof(type))
		strcpy(type + sizeof(type) - 4, "...");
	snprintf(msg, sizeof(msg), "%s: arguments do not match %s: %s", me->name, type, why);
	send_error(p, m->serial, "lm.InvalidArgs", msg);
	return true;
}

static void handle_call(struct peer *p, const struct lm_proto_msg *m)
{
	lm_server *s = p->s;
	const struct method_entry *me;
	lm_call *call;
	bool no_reply = m->flags & LM_PROTO_FLAG_NO_REPLY;
	char name[LM_PROTO_MAX_NAME + 1];

	if (m->serial == 0) {
		peer_kill(p, -EPROTO);
		return;
	}
	me = method_find(s, m->name, m->name_len);
	if (!me) {
		memcpy(name, m->name, m->name_len);
		name[m->name_len] = 0;
		s->n_calls_refused++;
		if (!no_reply)
			send_error(p, m->serial, "lm.UnknownMethod", name);
		return;
	}
	if (p->ncalls >= s->max_calls) {
		lm_log_debug("server %s: %u calls await a reply on one connection: refusing more",
			     s->name, p->ncalls);
		s->n_calls_refused++;
		if (!no_reply)
			send_error(p, m->serial, "lm.LimitsExceeded",
				   "too many calls await a reply on this connection");
		return;
	}
	if (me->args && args_refused(p, m, me, no_reply))
		return;
	s->n_calls++;
	call = call_get(s);
	if (!call) {
		if (!no_reply)
			send_error(p, m->serial, "lm.Failed", "out of memory");
		return;
	}
	call->s = s;
	call->p = p;
	call->serial = m->serial;
	call->m = me;
	call->no_reply = no_reply;
	LIST_INSERT_HEAD(&p->calls, call, link);
	p->ncalls++;
	me->handler(call, m->payload, m->payload_len, me->userdata);
}

static void peer_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	struct peer *p = userdata;
	lm_server *s = p->s;
	struct lm_proto_msg m;
	int err;

	err = lm__proto_decode(&m, data, len, s->max_message);
	if (err < 0) {
		if (err == -EPROTONOSUPPORT && !p->ready)
			send_error(p, 0, "lm.VersionMismatch",
				   "this server speaks protocol version 1");
		peer_kill(p, err);
		return;
	}
	server_enter(s);
	if (!p->ready) {
		handle_hello(p, &m);
	} else {
		switch (m.kind) {
		case LM_PROTO_CALL:
			handle_call(p, &m);
			break;
		case LM_PROTO_SUBSCRIBE:
		case LM_PROTO_UNSUBSCRIBE:
			handle_subscribe(p, &m);
			break;
		case LM_PROTO_BYE:
			peer_kill(p, -ECONNRESET);
			break;
		default:
			peer_kill(p, -EPROTO);
			break;
		}
	}
	server_leave(s);
}

static void peer_closed(lm_conn *c, int reason, void *userdata)
{
	struct peer *p = userdata;

	/* A message begun and not whole in time (partial_timeout_ns). */
	if (reason == -ETIMEDOUT)
		p->s->n_stalled++;
	peer_kill(p, reason);
}

/* The queue emptied: send what DROP_OLDEST held back, DROPPED notice first. */
static void peer_drained(lm_conn *c, void *userdata)
{
	struct peer *p = userdata;
	lm_server *s = p->s;

	if (!p->backlog)
		return;
	p->backlog = false;
	server_enter(s);
	for (size_t i = 0; i < p->nsig && !p->dead; i++) {
		struct peer_signal *ps = &p->sig[i];
		struct signal_entry *sig = &s->signals[i];
		uint8_t count[8];
		int err = 0;

		if (!ps->held)
			continue;
		if (ps->dropped) {
			for (int b = 0; b < 8; b++)
				count[b] = (uint8_t)(ps->dropped >> (8 * b));
			err = send_msg(p->conn, LM_PROTO_DROPPED, 0, sig->name, sig->name_len,
				       count, sizeof(count), s->max_message);
			if (err == 0)
				ps->dropped = 0; /* told: not again if the signal waits on */
		}
		if (err == 0)
			err = lm_conn_send(p->conn, ps->held, ps->held_len);
		if (err == -ENOBUFS) {
			p->backlog = true; /* try again at the next drain */
			break;
		}
		free(ps->held);
		ps->held = NULL;
		ps->dropped = 0;
		if (err < 0) {
			peer_kill(p, err);
			break;
		}
	}
	server_leave(s);
}

static const struct lm_conn_callbacks peer_callbacks = {
    .message = peer_message,
    .closed = peer_closed,
    .drained = peer_drained,
};

static void peer_hs_timeout(lm_source *src, uint64_t expirations, void *userdata)
{
	struct peer *p = userdata;

	lm_log_debug("server %s: handshake timeout", p->s->name);
	server_enter(p->s);
	peer_kill(p, -ETIMEDOUT);
	server_leave(p->s);
}

/* The count of c's uid, NULL for the server's own uid (or one the
 * listener let in without our knowing, which cannot happen: it refuses the
 * uids we did not allow it). */
static struct uid_count *uid_count_of(lm_server *s, lm_conn *c)
{
	struct lm_peer_cred cred;

	if (lm_conn_peer_cred(c, &cred) < 0 || cred.uid == s->uid)
		return NULL;
	for (size_t i = 0; i < s->nallow; i++)
		if (s->uids[i].uid == cred.uid)
			return &s->uids[i];
	return NULL;
}

static void on_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	lm_server *s = userdata;
	struct uid_count *uc = uid_count_of(s, c);
	struct peer *p;

	if (s->n_hs >= s->max_hs) {
		/* Not reached: the listener is paused at the cap. */
		lm_conn_free(c);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		lm_conn_free(c);
		return;
	}
	p->s = s;
	p->conn = c;
	LIST_INIT(&p->calls);
	if (lm_reactor_add_timer(s->r, &p->hs_timer, (uint64_t)s->hs_timeout, 0, peer_hs_timeout,
				 p) < 0) {
		lm_conn_free(c);
		free(p);
		return;
	}
	LIST_INSERT_HEAD(&s->peers, p, link);
	s->npeers++;
	/* One over the cap is refused at its HELLO (handle_hello): closed with
	 * its HELLO unread, it would see a reset and not the ERROR. */
	if (uc && uc->n >= s->max_per_uid)
		p->over = true;
	else if ((p->uc = uc))
		uc->n++;
	/* At the cap, take no more until one is through: the others wait in
	 * the kernel (backlog, FIFO, queue) rather than be closed. */
	if (++s->n_hs == s->max_hs)
		lm_listener_pause(l, true);
	lm_conn_set_callbacks(c, &peer_callbacks, p);
}

/* ---- the server ---- */

/* Serve endpoint, or when it is NULL, the listening fd with the transport
 * of scheme. */
static int server_new(lm_server **ret, lm_reactor *r, const char *endpoint, const char *scheme,
		      int fd, const struct lm_server_options *opts)
{
	static const struct lm_server_options defaults;
	lm_server *s;
	const char *name;
	int err;

	if (!ret || !r || (!endpoint && (!scheme || fd < 0)))
		return -EINVAL;
	if (lm_reactor_forked(r))
		return -ECHILD;
	if (!opts)
		opts = &defaults;
	if (opts->handshake_timeout_ns < 0 || (opts->n_allow_uids && !opts->allow_uids))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->r = r;
	LIST_INIT(&s->peers);
	LIST_INIT(&s->dead);
	LIST_INIT(&s->orphans);
	LIST_INIT(&s->cache);
	s->uid = geteuid();
	s->introspect = (struct method_entry){"lm.Introspect", 13, introspect, s, NULL, NULL};
	s->stats = (struct method_entry){"lm.Stats", 8, stats, s, NULL, NULL};
	clock_gettime(CLOCK_MONOTONIC, &s->started);
	s->max_message =
	    opts->transport.max_message ? opts->transport.max_message : LM_DEFAULT_MAX_MESSAGE;
	s->hs_timeout = opts->handshake_timeout_ns ? opts->handshake_timeout_ns
						   : LM_DEFAULT_HANDSHAKE_TIMEOUT_NS;
	s->max_hs = opts->max_handshakes ? opts->max_handshakes : LM_DEFAULT_MAX_HANDSHAKES;
	s->max_calls = opts->max_calls ? opts->max_calls : LM_DEFAULT_MAX_CALLS;
	s->max_per_uid = opts->max_connections_per_uid ? opts->max_connections_per_uid
						       : LM_DEFAULT_MAX_CONNECTIONS_PER_UID;
	name = opts->name ? opts->name : endpoint ? endpoint : scheme;
	if (strchr(name, ':'))
		name = strchr(name, ':') + 1;
	s->name = strdup(name);
	err = -ENOMEM;
	if (!s->name)
		goto fail;
	if (opts->n_allow_uids) {
		s->allow = malloc(opts->n_allow_uids * sizeof(uid_t));
		if (!s->allow)
			goto fail;
		memcpy(s->allow, opts->allow_uids, opts->n_allow_uids * sizeof(uid_t));
		s->uids = calloc(opts->n_allow_uids, sizeof(*s->uids));
		if (!s->uids)
			goto fail;
		for (size_t i = 0; i < opts->n_allow_uids; i++)
			s->uids[i].uid = opts->allow_uids[i];
		s->nallow = opts->n_allow_uids;
	}
	if (endpoint)
		err = lm_listener_new(&s->l, r, endpoint, &opts->transport, on_accept, s);
	else
		err = lm_listener_new_fd(&s->l, r, scheme, fd, &opts->transport, on_accept, s);
	if (err < 0)
		goto fail;
	/* The transport refuses other uids at accept already; widen it too. */
	for (size_t i = 0; i < s->nallow; i++)
		if ((err = lm_listener_allow_uid(s->l, s->allow[i])) < 0)
			goto fail;
	*ret = s;
	return 0;
fail:
	lm_server_free(s);
	return err;
}

LM_EXPORT int lm_server_new(lm_server **ret, lm_reactor *r, const char *endpoint,
			    const struct lm_server_options *opts)
{
	if (!endpoint)
		return -EINVAL;
	return server_new(ret, r, endpoint, NULL, -1, opts);
}

LM_EXPORT int lm_server_new_fd(lm_server **ret, lm_reactor *r, const char *scheme, int fd,
			       const struct lm_server_options *opts)
{
	if (!scheme || fd < 0)
		return -EINVAL;
	return server_new(ret, r, NULL, scheme, fd, opts);
}

LM_EXPORT void lm_server_free(lm_server *s)
{
	struct peer *p;
	lm_call *call;

	if (!s)
		return;
	lm_listener_free(s->l);
	s->l = NULL;
	server_enter(s);
	while ((p = LIST_FIRST(&s->peers))) {
		/* Not from a child after fork(): the connections are the parent's. */
		if (!lm_reactor_forked(s->r))
			send_msg(p->conn, LM_PROTO_BYE, 0, NULL, 0, NULL, 0, s->max_message);
		peer_kill(p, -ESHUTDOWN);
	}
	server_leave(s);
	while ((call = LIST_FIRST(&s->orphans))) {
		LIST_REMOVE(call, link);
		free(call);
	}
	while ((call = LIST_FIRST(&s->cache))) {
		LIST_REMOVE(call, link);
		free(call);
	}
	for (size_t i = 0; i < s->nsignals; i++) {
		free(s->signals[i].name);
		free(s->signals[i].subs);
		lm_type_free(s->signals[i].type);
	}
	for (size_t i = 0; i < s->nmethods; i++) {
		lm_type_free(s->methods[i].args);
		lm_type_free(s->methods[i].result);
	}
	free(s->signals);
	free(s->methods);
	free(s->allow);
	free(s->uids);
	free(s->name);
	free(s);
}

LM_EXPORT int lm_server_add_methods(lm_server *s, const struct lm_method *methods, size_t n,
				    void *userdata)
{
	struct method_entry *v;

	if (!s || (n && !methods))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		size_t nl;

		if (!methods[i].name || !methods[i].handler)
			return -EINVAL;
		nl = strlen(methods[i].name);
		if (!lm__proto_name_ok(methods[i].name, nl))
			return -EINVAL;
		if (method_find(s, methods[i].name, nl))
			return -EEXIST;
		for (size_t j = 0; j < i; j++)
			if (strcmp(methods[i].name, methods[j].name) == 0)
				return -EEXIST;
	}
	v = realloc(s->methods, (s->nmethods + n) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->methods = v;
	for (size_t i = 0; i < n; i++)
		s->methods[s->nmethods++] = (struct method_entry){methods[i].name,
								  strlen(methods[i].name),
								  methods[i].handler,
								  userdata,
								  NULL,
								  NULL};
	return 0;
}

/* Parse an optional declared type: NULL stays NULL. */
static int type_parse_opt(lm_type **ret, const char *text)
{
	int err;

	*ret = NULL;
	if (!text)
		return 0;
	err = lm_type_parse(ret, text, NULL, 0);
	return err;
}

LM_EXPORT int lm_server_set_method_type(lm_server *s, const char *method, const char *args,
					const char *result)
{
	struct method_entry *me = NULL;
	lm_type *a, *r;
	int err;

	if (!s || !method)
		return -EINVAL;
	for (size_t i = 0; i < s->nmethods && !me; i++)
		if (strcmp(s->methods[i].name, method) == 0)
			me = &s->methods[i];
	if (!me)
		return -ENOENT;
	if ((err = type_parse_opt(&a, args)) < 0)
		return err;
	if ((err = type_parse_opt(&r, result)) < 0) {
		lm_type_free(a);
		return err;
	}
	lm_type_free(me->args);
	lm_type_free(me->result);
	me->args = a;
	me->result = r;
	return 0;
}

LM_EXPORT int lm_server_set_introspect(lm_server *s, lm_method_cb cb, void *userdata)
{
	if (!s)
		return -EINVAL;
	s->introspect.handler = cb ? cb : introspect;
	s->introspect.userdata = cb ? userdata : s;
	return 0;
}

LM_EXPORT int lm_server_add_signal(lm_server *s, const char *name, enum lm_overflow policy)
{
	return lm_server_add_typed_signal(s, name, policy, NULL);
}

LM_EXPORT int lm_server_add_typed_signal(lm_server *s, const char *name, enum lm_overflow policy,
					 const char *type)
{
	struct signal_entry *v;
	lm_type *t;
	size_t nl, idx;
	int err;

	if (!s || !name || (policy != LM_OVERFLOW_DROP_OLDEST && policy != LM_OVERFLOW_DISCONNECT))
		return -EINVAL;
	nl = strlen(name);
	if (!lm__proto_name_ok(name, nl))
		return -EINVAL;
	if (signal_find(s, name, nl, &idx))
		return -EEXIST;
	if ((err = type_parse_opt(&t, type)) < 0)
		return err;
	v = realloc(s->signals, (s->nsignals + 1) * sizeof(*v));
	if (!v) {
		lm_type_free(t);
		return -ENOMEM;
	}
	s->signals = v;
	v[s->nsignals] = (struct signal_entry){
	    .name = strdup(name), .name_len = nl, .policy = policy, .type = t};
	if (!v[s->nsignals].name) {
		lm_type_free(t);
		return -ENOMEM;
	}
	s->nsignals++;
	return 0;
}

/* A subscriber's queue is full: keep the newest signal, count the one it
 * replaces. Returns false if the subscriber must go. */
static bool hold_signal(lm_server *s, struct peer_signal *ps, const struct iovec *iov, int niov,
			size_t total)
{
	void *msg = malloc(total);
	size_t off = 0;

	if (!msg)
		return false;
	for (int i = 0; i < niov; i++) {
		memcpy((char *)msg + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	if (ps->held) {
		free(ps->held);
		ps->dropped++;
		s->n_dropped++;
	}
	ps->held = msg;
	ps->held_len = total;
	return true;
}

/* Subscribers a signal goes to in one lm_conn_sendv_many(). */
#define EMIT_FAN 64
struct emit_fan {
	size_t n;
	struct peer *p[EMIT_FAN];
	lm_conn *c[EMIT_FAN];
	int res[EMIT_FAN];
};

/* Send the signal to the gathered subscribers (one io_uring submission for
 * them where it can, see lm_conn_sendv_many): a peer whose queue is full
 * holds it (LM_OVERFLOW_DROP_OLDEST) or goes on the kill list. Returns how
 * many it reached. */
static int emit_fan(struct emit_fan *f, const struct signal_entry *sig, size_t idx,
		    const struct iovec *iov, int niov, size_t total, struct peer **kill)
{
	int reached = 0, ret = lm_conn_sendv_many(f->c, f->n, iov, niov, f->res);

	for (size_t i = 0; ret < 0 && i < f->n; i++)
		f->res[i] = ret; /* not seen: the iovecs are ours */
	for (size_t i = 0; i < f->n; i++) {
		struct peer *p = f->p[i];
		int err = f->res[i];

		if (err == 0) {
			reached++;
		} else if (err == -ENOBUFS && sig->policy == LM_OVERFLOW_DROP_OLDEST &&
			   hold_signal(p->s, &p->sig[idx], iov, niov, total)) {
			p->backlog = true;
		} else {
			p->kill_next = *kill;
			*kill = p;
		}
	}
	f->n = 0;
	return reached;
}

LM_PROTO_HOT LM_EXPORT int lm_server_emit(lm_server *s, const char *signal, const void *payload,
					  size_t len)
{
	uint8_t hdr[LM_PROTO_HEADER_SIZE], flat[EMIT_FLAT_MAX];
	struct signal_entry *sig;
	struct peer *kill = NULL, *p;
	struct emit_fan fan;
	struct iovec iov[3];
	size_t idx, nl, total;
	int err, niov = 3, reached = 0;

	if (!s || !signal || (!payload && len))
		return -EINVAL;
	if (lm_reactor_forked(s->r))
		return -ECHILD;
	nl = strlen(signal);
	sig = signal_find(s, signal, nl, &idx);
	if (!sig)
		return -ENOENT;
	err = lm__proto_encode_header(hdr, LM_PROTO_SIGNAL, 0, signal, nl, len, s->max_message);
	if (err < 0)
		return err;
	iov[0] = (struct iovec){hdr, sizeof(hdr)};
	iov[1] = (struct iovec){(void *)signal, nl};
	iov[2] = (struct iovec){(void *)payload, len};
	total = sizeof(hdr) + nl + len;
	fan.n = 0;
	if (total <= sizeof(flat) && sig->nsubs) {
		memcpy(flat, hdr, sizeof(hdr));
		memcpy(flat + sizeof(hdr), signal, nl);
		if (len)
			memcpy(flat + sizeof(hdr) + nl, payload, len);
		iov[0] = (struct iovec){flat, total};
		niov = 1;
	}

	for (size_t i = 0; i < sig->nsubs; i++) {
		struct peer_signal *ps;

		p = sig->subs[i];
		/* Only a peer with a backlog can hold: the others' per-signal
		 * state is not even looked at. */
		ps = p->backlog ? &p->sig[idx] : NULL;
		if (ps && ps->held) {
			/* Still backed up: this one waits in place of the older. */
			if (!hold_signal(s, ps, iov, niov, total)) {
				p->kill_next = kill;
				kill = p;
			}
			continue;
		}
		fan.p[fan.n] = p;
		fan.c[fan.n++] = p->conn;
		if (fan.n == EMIT_FAN)
			reached += emit_fan(&fan, sig, idx, iov, niov, total, &kill);
	}
	if (fan.n)
		reached += emit_fan(&fan, sig, idx, iov, niov, total, &kill);
	s->n_emitted++;
	/* Killing edits sig->subs, so it waits until the loop is over. */
	server_enter(s);
	while ((p = kill)) {
		kill = p->kill_next;
		s->n_overflow_kills++;
		peer_kill(p, -ENOBUFS);
	}
	server_leave(s);
	return reached;
}

LM_EXPORT size_t lm_server_client_count(const lm_server *s)
{
	return s ? s->npeers : 0;
}
