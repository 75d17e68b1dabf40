/* SPDX-License-Identifier: MIT */
/* libmessage services: methods and signals between processes. */
#ifndef LIBMESSAGE_SERVICE_H
#define LIBMESSAGE_SERVICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reactor.h"
#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A server offers methods and signals on an endpoint ("unix:srvtime", ...);
 * a client calls its methods and subscribes to its signals. Everything runs
 * on the reactor's thread; many servers and clients may share one reactor;
 * nothing here starts a thread. The wire format is docs/protocol.md.
 *
 * Errors a user sees (negative errno):
 *   -EINVAL        a bad argument (NULL, a name that is not 1..255 of
 *                  [A-Za-z0-9_.-], an option out of range)
 *   -EMSGSIZE      the message would pass max_message; nothing was sent
 *   -ENOBUFS       a client: max_pending calls already wait
 *   -ENOTCONN      a client not connected (server absent; it keeps trying;
 *                  a sync call waits for it within its timeout first)
 *   -ECONNRESET    the connection broke while the call was pending
 *   -ETIMEDOUT     no reply within the call's timeout
 *   -EREMOTEIO     the server replied with an ERROR (see struct lm_reply)
 *   -EACCES        the server refused this uid (not retried)
 *   -EEXIST        a method or signal of that name is already registered
 *   -ENOENT        no such signal (emit) or subscription (unsubscribe)
 *   -EADDRINUSE    a live server already serves the endpoint
 *   -EALREADY      a call was already replied to
 *   -EUSERS        the server has max_connections_per_uid connections of
 *                  this uid already (the client retries with its backoff)
 *
 * Errors a server sends (ERROR names, docs/protocol.md): lm.UnknownMethod,
 * lm.UnknownSignal, lm.InvalidArgs (a typed method's arguments do not match
 * its declared type), lm.AccessDenied, lm.VersionMismatch, lm.LimitsExceeded,
 * lm.Failed.
 */

/* ---- types ---- */

typedef struct lm_server lm_server;
typedef struct lm_client lm_client;
typedef struct lm_call lm_call;

#define LM_DEFAULT_CALL_TIMEOUT_NS         (25ll * 1000 * 1000 * 1000)
#define LM_DEFAULT_MAX_PENDING             128
#define LM_LIMIT_MAX_PENDING               65535
#define LM_DEFAULT_HANDSHAKE_TIMEOUT_NS    (5ll * 1000 * 1000 * 1000)
#define LM_DEFAULT_MAX_HANDSHAKES          64
#define LM_DEFAULT_MAX_CALLS               1024
#define LM_DEFAULT_MAX_CONNECTIONS_PER_UID 256
#define LM_DEFAULT_RECONNECT_MIN_NS        (100ll * 1000 * 1000)
#define LM_DEFAULT_RECONNECT_MAX_NS        (5ll * 1000 * 1000 * 1000)

/* What happens to a subscriber whose output queue is full. */
enum lm_overflow {
	/* Drop the signals that do not fit (keeping the newest) and send the
	 * subscriber DROPPED(n) before the next one it gets. */
	LM_OVERFLOW_DROP_OLDEST = 0,
	/* Disconnect the subscriber. */
	LM_OVERFLOW_DISCONNECT = 1,
};

struct lm_server_options {
	const char *name; /* sent in WELCOME and lm.Introspect; NULL: the endpoint */
	struct lm_transport_options transport; /* max_message, max_queue per peer */
	int64_t handshake_timeout_ns;          /* 0: 5 s */
	/* 0: 64 connections in handshake at once; while that many are, the
	 * server takes no new one (they wait in the kernel's backlog, or their
	 * requests in the listener's FIFO or queue) */
	unsigned max_handshakes;
	const uid_t *allow_uids; /* besides the server's own uid (copied) */
	size_t n_allow_uids;
	/* 0: LM_DEFAULT_MAX_CALLS calls awaiting a reply (deferred) per
	 * connection; a call past it is answered at once with the ERROR
	 * lm.LimitsExceeded, its handler not called */
	unsigned max_calls;
	/* 0: LM_DEFAULT_MAX_CONNECTIONS_PER_UID connections at once per uid
	 * other than the server's own (which may stop the server anyway); one
	 * past it gets the ERROR lm.LimitsExceeded and is closed (its client
	 * sees -EUSERS and retries with its backoff) */
	unsigned max_connections_per_uid;
};

struct lm_client_options {
	const char *name; /* sent in HELLO; may be NULL */
	struct lm_transport_options transport;
	int64_t call_timeout_ns;      /* default timeout (timeout_ns < 0 in a call); 0: 25 s */
	unsigned max_pending;         /* 0: 128; at most LM_LIMIT_MAX_PENDING */
	int64_t handshake_timeout_ns; /* 0: 5 s */
	int64_t reconnect_min_ns;     /* 0: 100 ms */
	int64_t reconnect_max_ns;     /* 0: 5 s */
};

/* A reply as the client sees it. */
struct lm_reply {
	int status;          /* 0 REPLY; -EREMOTEIO ERROR; or -ECONNRESET, -ETIMEDOUT, ... */
	const void *payload; /* REPLY: the result; otherwise NULL */
	size_t len;
	const char *error_name;    /* -EREMOTEIO: the error's name; else NULL */
	const char *error_message; /* -EREMOTEIO: its message (may be ""); else NULL */
};

/* Client connection states, reported through lm_client_state_cb. */
enum lm_client_state {
	LM_CLIENT_DISCONNECTED = 0, /* waiting to reconnect (reason < 0 says why) */
	LM_CLIENT_CONNECTING = 1,   /* connected, handshake under way */
	LM_CLIENT_CONNECTED = 2,    /* WELCOME received, subscriptions re-sent */
};

/* ---- callbacks ---- */

/* A CALL arrived. The handler owns call until it replies (lm_call_reply or
 * lm_call_error), now or later. payload is valid only during the handler. */
typedef void (*lm_method_cb)(lm_call *call, const void *payload, size_t len, void *userdata);

/* The client of a deferred call went away: call is freed after this returns
 * (unless lm_call_reply/lm_call_error is called inside, which returns
 * -ECONNRESET and frees it). */
typedef void (*lm_call_abandoned_cb)(lm_call *call, void *userdata);

/* A call completed. reply and what it points to are valid only during the
 * callback. Called exactly once per successful lm_client_call(), never from
 * inside lm_client_call() itself. */
typedef void (*lm_reply_cb)(lm_client *c, const struct lm_reply *reply, void *userdata);

/* A signal arrived. dropped > 0: that many signals of this name were lost
 * before this one (the server's DROPPED notice). */
typedef void (*lm_signal_msg_cb)(lm_client *c, const char *signal, const void *payload, size_t len,
				 uint64_t dropped, void *userdata);

typedef void (*lm_client_state_cb)(lm_client *c, enum lm_client_state state, int reason,
				   void *userdata);

struct lm_method {
	const char *name;
	lm_method_cb handler;
};

/* ---- lifetime ---- */

/*
 * Serve endpoint on r. opts may be NULL. Errors of lm_listener_new()
 * (-EADDRINUSE, -EPERM, ...), -EINVAL, -ENOMEM.
 */
LM_EXPORT int lm_server_new(lm_server **ret, lm_reactor *r, const char *endpoint,
			    const struct lm_server_options *opts);
/*
 * Serve on fd, a listening socket passed by systemd or another supervisor,
 * with the transport of scheme ("unix"): see lm_listener_new_fd(), whose
 * errors it returns, for what fd must be and who owns it (the server, on
 * success). The server's name (WELCOME, lm.Introspect) is opts->name, else
 * the scheme.
 */
LM_EXPORT int lm_server_new_fd(lm_server **ret, lm_reactor *r, const char *scheme, int fd,
			       const struct lm_server_options *opts);
/* Disconnect every client (BYE), free every call, subscription and timer,
 * remove the endpoint. Not from inside one of the server's own handlers
 * (stop the reactor, then free). Calls still held are freed: their handles
 * become invalid. NULL-safe. */
LM_EXPORT void lm_server_free(lm_server *s);

/*
 * Connect to endpoint on r. The client connects at once if it can, else it
 * keeps trying with backoff (so a client may start before its server); either
 * way 0 is returned. opts may be NULL. What no retry can mend fails at once,
 * with one log line saying why: -EINVAL (a bad argument or endpoint name, a
 * relative LM_RUNTIME_DIR), -EPROTONOSUPPORT (an unknown transport), the
 * runtime directory's errors (-ENOENT: its parent is missing; -EPERM: it is
 * refused); -ENOMEM.
 */
LM_EXPORT int lm_client_new(lm_client **ret, lm_reactor *r, const char *endpoint,
			    const struct lm_client_options *opts);
/* Every pending call completes with -ECANCELED, then the client is freed.
 * Must not be called from its own callbacks during a sync call. NULL-safe.
 * In a child after fork() (reactor.h, "After fork()"), this and
 * lm_server_free() send no BYE and remove nothing: they free memory and close
 * the child's fd copies; the other calls that act return -ECHILD. */
LM_EXPORT void lm_client_free(lm_client *c);

/* ---- server operations ---- */

/*
 * Add methods (the table is not copied: keep it alive, e.g. static const).
 * userdata goes to each handler. -EEXIST if a name is taken (nothing added),
 * -EINVAL for a bad name or a NULL handler.
 */
LM_EXPORT int lm_server_add_methods(lm_server *s, const struct lm_method *methods, size_t n,
				    void *userdata);

/*
 * Answer lm.Introspect with cb instead of the built-in description (NULL
 * restores it). For a proxy that stands for another service (lm-bridge's
 * imports): it replies with that service's own description, as it gave it.
 * 0 or -EINVAL.
 */
LM_EXPORT int lm_server_set_introspect(lm_server *s, lm_method_cb cb, void *userdata);

/* Declare a signal and its overflow policy. -EEXIST, -EINVAL. */
LM_EXPORT int lm_server_add_signal(lm_server *s, const char *name, enum lm_overflow policy);

/*
 * Declared types (optional; the payload stays any bytes for members that
 * declare none). A type is a text of the language in <libmessage/types.h>
 * and docs/protocol.md ("{sec: int, iso: text}", "()" for no payload); a
 * typed payload is one CBOR item of that type. lm.Introspect reports the
 * types to tools (lmctl).
 *
 * lm_server_set_method_type: the types of an added method's arguments and
 * result (either may be NULL: untyped). The server then checks each call's
 * arguments before the handler runs and answers one that does not match
 * with ERROR lm.InvalidArgs (the message says what is wrong and where); the
 * handler never sees it. The result is not checked: the handler must send
 * what it declares. -ENOENT: no such method; -EINVAL: a malformed type.
 *
 * lm_server_add_typed_signal: lm_server_add_signal with the type of the
 * signal's payload (NULL: untyped). lm_server_emit does not check payloads.
 *
 * These are separate calls, not new members of struct lm_method, so that
 * existing method tables keep their size (the ABI) and their positional
 * initialisers (no -Wmissing-field-initializers).
 */
LM_EXPORT int lm_server_set_method_type(lm_server *s, const char *method, const char *args,
					const char *result);
LM_EXPORT int lm_server_add_typed_signal(lm_server *s, const char *name, enum lm_overflow policy,
					 const char *type);

/*
 * Send a signal to every subscriber, encoding it once. Returns the number of
 * subscribers it was sent or queued to (a subscriber over its queue bound
 * gets the DROP_OLDEST or DISCONNECT treatment and is not counted).
 * -ENOENT for an undeclared signal, -EMSGSIZE. A small signal to four or
 * more subscribers goes out in one io_uring submission where the transport
 * and kernel allow (lm_conn_sendv_many() in transport.h): at once outside
 * the reactor's callbacks; from a callback it is gathered, as any send, and
 * written with the round's other single messages when the round ends.
 */
LM_EXPORT int lm_server_emit(lm_server *s, const char *signal, const void *payload, size_t len);

/* Number of clients connected (handshake included). */
LM_EXPORT size_t lm_server_client_count(const lm_server *s);

/*
 * Reply to a call, now (inside the handler) or later (a deferred reply).
 * Frees call in every case. 0: sent or queued; -ECONNRESET: the client left
 * (nothing sent); -EMSGSIZE: too large, an ERROR lm.Failed is sent instead.
 * A client whose queue is full is disconnected (-ENOBUFS).
 */
LM_EXPORT int lm_call_reply(lm_call *call, const void *payload, size_t len);
/* Reply with an error: error_name as lm_server_add_signal names, message may
 * be NULL. Frees call. */
LM_EXPORT int lm_call_error(lm_call *call, const char *error_name, const char *message);
/* Whether the caller wants no answer (lm_client_call_no_reply): replying is
 * still how the handler frees the call, and sends nothing. */
LM_EXPORT bool lm_call_no_reply(const lm_call *call);
/* The method called, and the caller's credentials. */
LM_EXPORT const char *lm_call_method(const lm_call *call);
LM_EXPORT int lm_call_peer_cred(const lm_call *call, struct lm_peer_cred *ret);
/* Be told when a deferred call's client goes away (see lm_call_abandoned_cb).
 * Without this, an abandoned call stays allocated until it is replied to
 * (which then returns -ECONNRESET) or the server is freed. */
LM_EXPORT void lm_call_set_abandoned_cb(lm_call *call, lm_call_abandoned_cb cb, void *userdata);

/* ---- client operations ---- */

/* Be told of connection state changes (NULL to stop). cb runs at once,
 * from inside this call, with the current state (and, DISCONNECTED, the
 * last reason), so no state is missed; then at each change. DISCONNECTED
 * comes when a connection ends and again after each failed reconnection
 * attempt, its reason saying why (-ENOENT: no server; -EAGAIN: the server's
 * backlog is full; -EMFILE: out of fds or, on mq, of RLIMIT_MSGQUEUE; ...).
 * A permanent refusal, -EACCES (lm.AccessDenied) or -EPROTONOSUPPORT
 * (lm.VersionMismatch), is reported once and not retried: the client stays
 * DISCONNECTED and its calls return that error (free it, make a new one). */
LM_EXPORT void lm_client_set_state_cb(lm_client *c, lm_client_state_cb cb, void *userdata);
LM_EXPORT enum lm_client_state lm_client_get_state(const lm_client *c);
LM_EXPORT lm_reactor *lm_client_get_reactor(const lm_client *c);

/*
 * Call method asynchronously. timeout_ns < 0: the client's default (25 s);
 * 0: no timeout. 0: the call is on its way and cb will run exactly once.
 * -ENOTCONN (not connected), -ENOBUFS (max_pending calls wait), -EMSGSIZE,
 * -EINVAL; on error cb never runs.
 */
LM_EXPORT int lm_client_call(lm_client *c, const char *method, const void *payload, size_t len,
			     int64_t timeout_ns, lm_reply_cb cb, void *userdata);

/*
 * Call method without wanting an answer (fire and forget): the CALL carries
 * the protocol's NO_REPLY flag, the handler runs as for any call, and the
 * server sends nothing back, not even an error (an unknown method, invalid
 * arguments). Nothing tells the caller whether it ran. 0: sent or queued;
 * -ENOTCONN, -EMSGSIZE, -EINVAL, or the connection's send error (-ENOBUFS:
 * its queue is full). Takes no pending slot and has no timeout.
 */
LM_EXPORT int lm_client_call_no_reply(lm_client *c, const char *method, const void *payload,
				      size_t len);

/*
 * Call method and wait for the reply. Returns 0 (REPLY), -EREMOTEIO (ERROR),
 * or another -errno (-ENOTCONN, -ETIMEDOUT, -ECONNRESET, -EACCES, ...). On 0
 * and on -EREMOTEIO *ret is a reply to free with lm_reply_free().
 *
 * A server that is not there yet is waited for (as sd-bus does), retrying
 * with the client's reconnection backoff, within the call's timeout (0: no
 * timeout, it waits until one comes); the time spent is taken from that
 * timeout. -ENOTCONN: no server came within it. A permanent refusal
 * (-EACCES, -EPROTONOSUPPORT) returns at once.
 *
 * What it does while it waits: it uses a second, private connection of this
 * client to the same endpoint, on a private reactor (both made on the first
 * sync call and kept), and runs only that reactor. So nothing else of the
 * caller's reactor runs meanwhile, no callback is dispatched re-entrantly,
 * and messages for the main connection wait in the kernel. Consequence: a
 * sync call is not ordered with the async calls of the same client. It may
 * be called from any callback of the caller's reactor. On mq it first waits
 * in the kernel's blocking receive on that connection alone, one syscall
 * (docs/transports.md); a server that dies less than 10 ms before the call
 * is then told as one that dies during it: -ECONNRESET.
 */
LM_EXPORT int lm_client_call_sync(lm_client *c, const char *method, const void *payload, size_t len,
				  int64_t timeout_ns, struct lm_reply **ret);
LM_EXPORT void lm_reply_free(struct lm_reply *reply);

/*
 * Subscribe to signal: cb runs for each one. Kept across reconnections (re-
 * sent once per connection). -EEXIST if already subscribed, -EINVAL. Works
 * while disconnected (sent on connection).
 */
LM_EXPORT int lm_client_subscribe(lm_client *c, const char *signal, lm_signal_msg_cb cb,
				  void *userdata);
/* -ENOENT if not subscribed. */
LM_EXPORT int lm_client_unsubscribe(lm_client *c, const char *signal);

/* Number of calls waiting for their reply. */
LM_EXPORT size_t lm_client_pending(const lm_client *c);

/*
 * Pipelining calls from outside the reactor's callbacks: each call is then
 * one syscall, unless the client is corked. Corked (on), calls are gathered
 * and written together (many per syscall) by lm_client_flush(), by
 * lm_client_cork(c, false), when 64 KiB are gathered, or by the reactor's
 * next iteration before it waits. Kept across reconnections. Calls made in
 * callbacks are gathered anyway. 0 or -EINVAL.
 */
LM_EXPORT int lm_client_cork(lm_client *c, bool on);
/* Write the gathered calls now: 0, -EAGAIN (the kernel is full: the rest
 * leaves when it can), -ENOTCONN (no connection), -ECONNRESET, -EINVAL. */
LM_EXPORT int lm_client_flush(lm_client *c);

#ifdef __cplusplus
}
#endif

#endif
