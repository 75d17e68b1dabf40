/* libmessage transports: whole-message connections over unix, fifo or mq. */
#ifndef LIBMESSAGE_TRANSPORT_H
#define LIBMESSAGE_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An endpoint is "scheme:name" ("unix:srvtime", "fifo:srvtime",
 * "mq:srvtime") or a bare name, which uses $LM_TRANSPORT or "unix". Names
 * live in the runtime directory: $LM_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/libmessage, else /tmp/libmessage-$UID; created 0700 and
 * refused (-EPERM) if it is a symlink, not a directory, not ours, or group-
 * or world-writable. A name that is empty, longer than 100 bytes, or holds
 * '/', "..", or control characters is -EINVAL.
 *
 * Every connection carries whole messages, in order, of 0 bytes up to
 * max_message, never blocks, queues what the kernel does not take (bounded by
 * max_queue), reports the peer's death once, and never raises SIGPIPE.
 */

/* ---- types ---- */

typedef struct lm_conn lm_conn;
typedef struct lm_listener lm_listener;

#define LM_DEFAULT_MAX_MESSAGE (1u << 20) /* 1 MiB */
#define LM_LIMIT_MAX_MESSAGE (64u << 20)  /* the largest max_message allowed */
#define LM_DEFAULT_MAX_QUEUE (4u << 20)   /* 4 MiB of queued output per connection */

struct lm_transport_options {
	size_t max_message; /* 0: LM_DEFAULT_MAX_MESSAGE; above LM_LIMIT_MAX_MESSAGE: -EINVAL */
	size_t max_queue;   /* 0: LM_DEFAULT_MAX_QUEUE */
};

struct lm_peer_cred {
	pid_t pid; /* 0 where the transport cannot tell */
	uid_t uid;
	gid_t gid;
};

/* ---- callbacks ---- */

/* One whole message arrived; data is valid only during the call. */
typedef void (*lm_conn_message_cb)(lm_conn *c, const void *data, size_t len, void *userdata);
/* The connection is over: reason is -ECONNRESET (peer gone), -EPROTO
 * (malformed frame), -EMSGSIZE (peer announced more than max_message), or
 * another -errno. Called once; the connection may be freed inside. */
typedef void (*lm_conn_closed_cb)(lm_conn *c, int reason, void *userdata);
/* The output queue became empty again (optional). */
typedef void (*lm_conn_drained_cb)(lm_conn *c, void *userdata);

struct lm_conn_callbacks {
	lm_conn_message_cb message;
	lm_conn_closed_cb closed;
	lm_conn_drained_cb drained; /* may be NULL */
};

/* A new connection was accepted: the callee owns it, and must call
 * lm_conn_set_callbacks() before returning to receive anything. */
typedef void (*lm_accept_cb)(lm_listener *l, lm_conn *c, void *userdata);

/* ---- lifetime ---- */

/*
 * Serve endpoint on r. -EADDRINUSE if a live process serves it already (a
 * leftover from a dead server is replaced); -EPERM for a hostile runtime
 * directory; -EEXIST for a foreign file at the name. opts may be NULL.
 */
LM_EXPORT int lm_listener_new(lm_listener **ret, lm_reactor *r, const char *endpoint,
			      const struct lm_transport_options *opts, lm_accept_cb cb,
			      void *userdata);
/* Stop serving, remove the endpoint's files. Accepted connections live on.
 * Safe from callbacks. NULL-safe. */
LM_EXPORT void lm_listener_free(lm_listener *l);

/*
 * Connect to endpoint on r. -ENOENT or -ECONNREFUSED when nobody serves it.
 * The connection is usable at once (sends are queued until it is up).
 */
LM_EXPORT int lm_conn_connect(lm_conn **ret, lm_reactor *r, const char *endpoint,
			      const struct lm_transport_options *opts,
			      const struct lm_conn_callbacks *cb, void *userdata);
LM_EXPORT void lm_conn_set_callbacks(lm_conn *c, const struct lm_conn_callbacks *cb,
				     void *userdata);
/* Close and free; no callback runs after this. Safe from its own callbacks.
 * NULL-safe. */
LM_EXPORT void lm_conn_free(lm_conn *c);

/* ---- operations ---- */

/*
 * Send one message (the iovecs concatenated). 0: sent or queued whole.
 * -EMSGSIZE over max_message, -ENOBUFS if the queue would pass max_queue,
 * -ECONNRESET once closed; on error nothing was sent or queued.
 */
LM_EXPORT int lm_conn_sendv(lm_conn *c, const struct iovec *iov, int iovcnt);
LM_EXPORT int lm_conn_send(lm_conn *c, const void *data, size_t len);
/* Bytes waiting in the output queue. */
LM_EXPORT size_t lm_conn_queued(const lm_conn *c);
LM_EXPORT size_t lm_conn_max_message(const lm_conn *c);
/* Who is on the other side. -ENOTCONN before the connection is up. */
LM_EXPORT int lm_conn_peer_cred(const lm_conn *c, struct lm_peer_cred *ret);
/* The transport's scheme: "unix", "fifo", "mq". */
LM_EXPORT const char *lm_conn_scheme(const lm_conn *c);

/*
 * The runtime directory path (created and checked as above) into buf.
 * Returns its length or -errno.
 */
LM_EXPORT int lm_runtime_dir(char *buf, size_t size);

/* ---- writing a transport ----
 * struct lm_transport_ops (in transport-ops.h below) is what a transport
 * implements; lm_transport_register() adds one to the table. */

#ifdef __cplusplus
}
#endif

#endif
