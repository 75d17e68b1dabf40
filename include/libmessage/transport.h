/* SPDX-License-Identifier: MIT */
/* libmessage transports: whole-message connections over unix, fifo or mq. */
#ifndef LIBMESSAGE_TRANSPORT_H
#define LIBMESSAGE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

#define LM_DEFAULT_MAX_MESSAGE        (1u << 20)  /* 1 MiB */
#define LM_LIMIT_MAX_MESSAGE          (64u << 20) /* the largest max_message allowed */
#define LM_DEFAULT_MAX_QUEUE          (4u << 20)  /* 4 MiB of queued output per connection */
#define LM_DEFAULT_PARTIAL_TIMEOUT_NS (30ll * 1000 * 1000 * 1000)   /* 30 s */
#define LM_LIMIT_PARTIAL_TIMEOUT_NS   (3600ll * 1000 * 1000 * 1000) /* 1 hour */

struct lm_transport_options {
	size_t max_message; /* 0: LM_DEFAULT_MAX_MESSAGE; above LM_LIMIT_MAX_MESSAGE: -EINVAL */
	size_t max_queue;   /* 0: LM_DEFAULT_MAX_QUEUE */
	/* A message whose first part came must be whole within this, else the
	 * connection closes (-ETIMEDOUT) and the part held is freed: a peer
	 * that starts a big message and stalls holds nothing for long. 0:
	 * LM_DEFAULT_PARTIAL_TIMEOUT_NS; negative or above
	 * LM_LIMIT_PARTIAL_TIMEOUT_NS: -EINVAL. Counted in whole ms. */
	int64_t partial_timeout_ns;
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
 * (malformed frame), -EMSGSIZE (peer announced more than max_message),
 * -ETIMEDOUT (a message not whole within partial_timeout_ns), or another
 * -errno. Called once; the connection may be freed inside. */
typedef void (*lm_conn_closed_cb)(lm_conn *c, int reason, void *userdata);
/* The output queue became empty again (optional): after the kernel pushed
 * back, or after a send was refused with -ENOBUFS, once what waited is out. */
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
/*
 * Serve on fd, a listening socket someone else made and bound (systemd's
 * socket activation: lm_systemd_listen_fd() in libmessage-systemd; or any
 * supervisor that passes one), with the transport of scheme ("unix": an
 * AF_UNIX SOCK_SEQPACKET socket on which listen() was called). On success
 * the listener owns fd (made non-blocking and close-on-exec; closed by
 * lm_listener_free(), which removes no file: the socket's name is its
 * maker's) and no lock file is taken (the maker keeps the name). On failure
 * fd is left as it was. -EINVAL (NULL argument, negative fd, or a socket not
 * listening), -EPROTONOSUPPORT (unknown scheme), -EOPNOTSUPP (the transport
 * cannot serve on a passed fd: fifo, mq; docs/systemd.md says why),
 * -ENOTSOCK, -EBADF, -EPROTOTYPE (a socket of another family or type).
 * Only the built-in unix transport serves on a passed fd.
 */
LM_EXPORT int lm_listener_new_fd(lm_listener **ret, lm_reactor *r, const char *scheme, int fd,
				 const struct lm_transport_options *opts, lm_accept_cb cb,
				 void *userdata);
/* Stop serving, remove the endpoint's files. Accepted connections live on.
 * Safe from callbacks. NULL-safe. In a child after fork() (reactor.h, "After
 * fork()"), the frees here close the child's fd copies only: no file
 * removed, nothing sent; the other calls that act return -ECHILD. */
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
 *
 * When it leaves: a send made in one of the reactor's callbacks is gathered
 * with the others of the same dispatch round and written when the round ends,
 * before the reactor sleeps or returns, in as few syscalls as the transport
 * allows (unix packs several messages in one datagram, fifo writes them in
 * one write(); mq takes one mq_send per message; four or more connections
 * with one small message each: one io_uring submission for all, see
 * lm_conn_sendv_many). A send made outside
 * dispatch goes to the kernel at once, unless the connection is corked or
 * messages wait before it. Either way, 64 KiB gathered go out at once, and
 * lm_conn_free() writes what waits before closing (without blocking).
 */
LM_EXPORT int lm_conn_sendv(lm_conn *c, const struct iovec *iov, int iovcnt);
LM_EXPORT int lm_conn_send(lm_conn *c, const void *data, size_t len);
/*
 * Send one message to each of conns[0, n): results[i] is what
 * lm_conn_sendv(conns[i], iov, iovcnt) would have returned (-EINVAL for a
 * NULL entry), and the return value the number of zeros among them; -EINVAL
 * (and nothing sent) when conns or results is NULL with n > 0, or iov is
 * malformed. Where the messages go to the kernel at once (outside dispatch,
 * not corked, nothing waiting before them) on a transport that says how
 * (lm_transport_ops.flat: unix and fifo, for a message of at most 508
 * bytes), four or more of them, all on one reactor, go in one io_uring
 * submission instead of a syscall each, on either backend, where the kernel
 * allows io_uring (LM_FANOUT_URING=0 in the environment: never). The others
 * go as lm_conn_sendv() sends them. Sent in a callback, they are gathered
 * as lm_conn_sendv() gathers them; when the round ends, the connections
 * whose gathered output is one such message are written in one submission
 * too (and so are those of separate lm_conn_sendv() calls).
 */
LM_EXPORT int lm_conn_sendv_many(lm_conn *const *conns, size_t n, const struct iovec *iov,
				 int iovcnt, int *results);
/*
 * Corked (on), sends made outside dispatch are gathered too, until
 * lm_conn_flush(), lm_conn_cork(c, false), 64 KiB gathered, or the reactor's
 * next iteration (which writes them before it waits). For bursts of small
 * messages from outside the reactor: one syscall for many. 0 or -EINVAL.
 */
LM_EXPORT int lm_conn_cork(lm_conn *c, bool on);
/* Write what was gathered, now. 0: all of it is in the kernel; -EAGAIN: the
 * kernel is full, the rest leaves when it can; -ECONNRESET once closed. */
LM_EXPORT int lm_conn_flush(lm_conn *c);
/* Payload bytes not in the kernel yet (gathered or waiting for room). */
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

/*
 * Who may connect to l: the server's own uid always; add others here. A
 * client whose uid is not allowed is closed at accept time (-EACCES is
 * logged), before the accept callback. -ENOSPC past 16 entries.
 */
LM_EXPORT int lm_listener_allow_uid(lm_listener *l, uid_t uid);

/*
 * Stop (on) or resume taking new connections on l. While paused, clients
 * wait where the kernel keeps them: in the socket's backlog (unix; a client
 * finds it full with -EAGAIN), or their requests in the listener's FIFO or
 * queue (fifo, mq). Safe from callbacks, the accept callback included (no
 * further connection is taken in that batch). 0, or -EINVAL.
 *
 * Out of fds (EMFILE, ENFILE), a listener refuses clients rather than spin:
 * it keeps one spare fd, which it gives back to take each waiting
 * connection and close it at once; where that fails too (fifo and mq need
 * several fds, and leave the request queued until they can have them) it
 * stops watching for 100 ms. It logs one warning when the shortage starts and one line when
 * it takes a connection again.
 */
LM_EXPORT int lm_listener_pause(lm_listener *l, bool on);

/* ---- writing a transport ----
 *
 * A transport is a const struct lm_transport_ops under a scheme name,
 * added with lm_transport_register(). The generic layer (endpoints, the
 * runtime directory, the output queue, the reactor sources, callbacks and
 * deferred release) is shared; a transport only moves bytes between its
 * fds and the kernel. Every function returns >= 0 or -errno. The generic
 * layer calls them only from the reactor's thread, never re-entrantly for
 * one connection, and never after close() (except free()).
 *
 * State: listen() returns an opaque per-listener state, released by
 * listen_close(); connect() and accept() return an opaque per-connection
 * state that the transport allocates; the generic layer holds it from then
 * on, hands it back to every call, and calls close() once (release kernel
 * resources) then free() once (release memory).
 */
struct lm_transport_fds {
	int rfd;   /* readable: receive() has work (or the peer is gone) */
	int wfd;   /* writable: send() may make progress; may equal rfd */
	int hupfd; /* -1, or readable when the peer died (e.g. a pidfd) */
	/* -1 (what the generic layer sets before fds()), or one that polls hung
	 * up or in error once the peer closed the connection or died, for a
	 * transport whose rfd has no end of file (mq: a FIFO nobody writes) */
	int closefd;
	/* rfd has no end of file until its first bytes came: before, the
	 * peer may not have opened its end yet (fifo: the client's FIFO from
	 * the server). hupfd, if any, is then needed only till those bytes:
	 * from then on the peer's death shows as the end of file on rfd. The
	 * generic layer then stops watching hupfd, and uses take() only from
	 * then on. */
	bool late_eof;
};

/* How a transport writes a small message (lm_transport_ops.flat). */
enum lm_transport_flat {
	LM_TRANSPORT_FLAT_NONE = 0, /* only send() knows */
	LM_TRANSPORT_FLAT_WRITE,    /* one write(2) to wfd; a short write is progress */
	LM_TRANSPORT_FLAT_SEND,     /* one send(2) to wfd, whole or not at all */
};
/* The longest encoded message (4-byte length and payload) flat applies to. */
#define LM_TRANSPORT_FLAT_MAX 512u

struct lm_transport_ops {
	/* Scheme of endpoints ("unix"): [a-z0-9]+, at most 15 bytes. Required. */
	const char *scheme;
	/* Largest message this transport can carry; 0: LM_LIMIT_MAX_MESSAGE.
	 * Options asking for more get -EINVAL. */
	size_t max_message;

	/* Start serving name (already validated) relative to dirfd, the checked
	 * runtime directory (valid only during the call; dup it to keep it).
	 * The generic layer already holds the name's lock. leftover: a dead
	 * server's lock file was found, so files at the name of the right type
	 * and ours are its leftovers, to replace; otherwise, or for a file of
	 * another type or owner, -EEXIST and nothing is touched. On success
	 * *lstate is the transport's. Required. */
	int (*listen)(int dirfd, const char *name, bool leftover, void **lstate);
	/* The fd that becomes readable when accept() has work. Required. */
	int (*listen_fd)(void *lstate);
	/* Take one pending connection: 1 and *cstate set, 0 when nothing is
	 * pending, -errno on a failure of this one request (the listener goes
	 * on). Required. */
	int (*accept)(void *lstate, void **cstate);
	/* Stop serving: close the fds, remove the name's files and free lstate
	 * (called once; accepted connections live on). Required. */
	void (*listen_close)(void *lstate);

	/* Connect to name relative to dirfd (as for listen()). Never blocks:
	 * -ENOENT when nothing is at the name, -ECONNREFUSED when nobody serves
	 * it, -EAGAIN when the server's backlog is full. Required. */
	int (*connect)(int dirfd, const char *name, void **cstate);
	/* The fds the generic layer polls for this connection. Required. */
	int (*fds)(void *cstate, struct lm_transport_fds *ret);
	/*
	 * Write one message (iov, iovcnt, len bytes in all) without blocking.
	 * *progress is the transport's own count (0 at first) of what the
	 * kernel already took of this message; advance it. Return 1 when the
	 * whole message is in the kernel, 0 when the kernel is full (called
	 * again with the same message and *progress on writability), -errno
	 * when the connection is broken (-ECONNRESET for a dead peer). iov is
	 * the caller's: copy nothing that must outlive the call. Never raises
	 * SIGPIPE. Required.
	 */
	int (*send)(void *cstate, const struct iovec *iov, int iovcnt, size_t len,
		    size_t *progress);
	/*
	 * Read what is ready (ideally one syscall) and hand each whole message
	 * to lm_transport_deliver(c, ...), stopping at once if it returns < 0.
	 * Never allocate more than lm_conn_max_message(c) for a message.
	 * Return 1 if something was read, 2 if something was read and the fd
	 * is known to be empty now (a short read of a byte stream), 0 if
	 * nothing was ready, -ECONNRESET at end of file, -EPROTO for a
	 * malformed frame, -EMSGSIZE for a message announced over the limit.
	 * Required.
	 */
	int (*receive)(lm_conn *c, void *cstate);
	/* Who the peer is; -ENOTCONN when not known yet. Required. */
	int (*peer_cred)(void *cstate, struct lm_peer_cred *ret);
	/* Release kernel resources (fds, files, queues). Required. */
	void (*close)(void *cstate);
	/* Free the state's memory (after close()). Required. */
	void (*free)(void *cstate);
	/*
	 * Optional: write several messages with as few syscalls as the
	 * transport can. buf[0, len) holds whole messages, each a 4-byte
	 * little-endian length and the payload, back to back; *progress counts
	 * the bytes of buf the kernel took (0 at first). Returns as send().
	 * A transport that has it must count send()'s *progress the same way,
	 * in bytes of that encoding of the one message, since a message begun
	 * by one may be finished by the other. NULL: send() per message.
	 */
	int (*send_batch)(void *cstate, const unsigned char *buf, size_t len, size_t *progress);
	/*
	 * Optional: true to have rfd watched edge-triggered where the reactor's
	 * backend can (io_uring: one multishot poll per connection, not a poll
	 * armed again after every wake-up). Each time rfd is reported, the
	 * generic layer then calls receive() until it returns 0 or 2 (or 16
	 * times, and again next round), so it suits a transport whose empty
	 * read is cheap or rare: one that can return 2, or where the re-arm
	 * saved costs more than the read that finds nothing. false: level-
	 * triggered, one receive() per report.
	 */
	bool edge;
	/*
	 * Optional: wait for input in the kernel's own timed blocking receive,
	 * at most timeout_ns (> 0), then take it as receive() does, for a
	 * caller that waits on this connection alone (lm_client_call_sync()'s
	 * private connection; a reactor with nothing else to watch, see
	 * receive_wake): one syscall where the reactor needs a wait and a
	 * read. Returns as receive(), and 0 also when the time ran out or
	 * receive_wake() ended it; -EINTR when a signal handler ran (the
	 * connection is fine: lm_reactor_run_once() returns, as it does when a
	 * signal interrupts its backend's wait); -EOPNOTSUPP when this
	 * connection cannot (the generic layer then waits with the reactor).
	 * It need not see the peer's death (hupfd, closefd): the caller
	 * bounds the wait and then asks the reactor.
	 * NULL: the reactor always waits.
	 */
	int (*receive_wait)(lm_conn *c, void *cstate, int64_t timeout_ns);
	/*
	 * Optional, with receive_wait: make a receive_wait() in progress (or
	 * the next one) return soon, 0 if nothing else came; called from any
	 * thread while the connection is up, and must not block. With it, a
	 * reactor whose only watched sources are this connection's waits for
	 * its input in receive_wait() (docs/reactor.md, "Lone waits"), and a
	 * post from another thread calls it to wake that wait. NULL: only sync
	 * calls use receive_wait().
	 */
	void (*receive_wake)(void *cstate);
	/*
	 * Optional, for a transport whose rfd is a socket that keeps message
	 * boundaries (SOCK_SEQPACKET), each datagram at most
	 * LM_TRANSPORT_DATAGRAM_MAX bytes, or a FIFO, and without receive_wait
	 * (used only for connections without closefd, and without hupfd nor
	 * late_eof, or once data came with late_eof): take what one read of rfd
	 * returned, which the reactor's backend made for the connection.
	 * Where the backend can (io_uring with provided-buffer rings: one
	 * multishot receive per socket, Linux 6.0, or multishot read per FIFO,
	 * Linux 6.7; so a message costs no poll and no read of its own), the
	 * generic layer calls take() for each read in the order they came, and
	 * receive() only when rfd is reported without data (an error, or a
	 * backend that does not receive: epoll, LM_URING_RECV=0, an older
	 * kernel). data is valid during the call only. Of a socket it is one
	 * datagram; one longer than LM_TRANSPORT_DATAGRAM_MAX comes cut, as
	 * LM_TRANSPORT_DATAGRAM_MAX + 1 bytes. Of a FIFO it is the next bytes
	 * of the stream, what the pipe held, at most
	 * LM_TRANSPORT_DATAGRAM_MAX + 1 (fewer, and last: the pipe was empty
	 * then). len 0 is what a read of 0 bytes returned: the end of the
	 * connection, or an empty datagram (one receive cannot tell them
	 * apart; a transport whose datagrams are never empty takes it for the
	 * end, as its receive() would). last: no other read of the
	 * connection has come after it yet (what is sent in answer to its
	 * last message then goes out at once, not gathered till the end of
	 * the round). Returns as receive().
	 * NULL: receive() for everything.
	 */
	int (*take)(lm_conn *c, void *cstate, const void *data, size_t len, bool last);
	/*
	 * Optional: what send() does, with *progress 0, with a message whose
	 * encoding (its 4-byte little-endian length and the payload, as for
	 * send_batch) is at most LM_TRANSPORT_FLAT_MAX bytes, when that is one
	 * non-blocking call on wfd with the encoding whole:
	 * LM_TRANSPORT_FLAT_WRITE, write(2) (wfd is O_NONBLOCK, and never
	 * raises SIGPIPE); LM_TRANSPORT_FLAT_SEND, send(2) with MSG_NOSIGNAL |
	 * MSG_DONTWAIT, which takes it whole or not at all (a datagram). The
	 * generic layer may then make that call itself, for many connections
	 * in one io_uring submission (lm_conn_sendv_many()), and go on as
	 * send() would have: the bytes taken are *progress, EAGAIN (and ENOBUFS
	 * for a send; and a write io_uring would have waited for, on a full
	 * FIFO, which it takes back) is a full kernel, EPIPE, ECONNRESET and
	 * EIO a broken connection; after any other error it calls send()
	 * instead.
	 * LM_TRANSPORT_FLAT_NONE: always send().
	 */
	enum lm_transport_flat flat;
	/* Optional: whether part of a message was received and the rest is
	 * awaited (a reassembly buffer, or a frame a read cut, is held). The
	 * generic layer asks after each receive, and closes a connection whose
	 * message is not whole within partial_timeout_ns
	 * (lm_transport_options). NULL: never. */
	bool (*partial)(void *cstate);
	/*
	 * Optional, for a child after fork() (lm_reactor_forked() of the
	 * connection's or listener's reactor), in place of close() or
	 * listen_close(): close this process's copies of the fds, and nothing
	 * else (the parent still uses the connection: remove no file or
	 * queue, send nothing); listen_abandon() also frees lstate, free() is
	 * called after abandon(). NULL: the generic layer closes the fds that
	 * fds() or listen_fd() gave, and a listener's lstate is left (its other
	 * fds, if any, stay open in the child).
	 */
	void (*abandon)(void *cstate);
	void (*listen_abandon)(void *lstate);
};

/* The longest datagram take() is given whole (64 KiB). */
#define LM_TRANSPORT_DATAGRAM_MAX (64u * 1024)

/* Add a transport. -EINVAL if a required member is missing or the scheme is
 * malformed, -EEXIST if the scheme is taken, -ENOSPC when the table is full.
 * ops must outlive the process's use of it. Not thread-safe. */
LM_EXPORT int lm_transport_register(const struct lm_transport_ops *ops);

/* For transports: deliver one whole message of c to its user. Returns 0,
 * or -ECANCELED when the user closed or freed c in the callback: the
 * transport must then return at once without touching c. */
LM_EXPORT int lm_transport_deliver(lm_conn *c, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
