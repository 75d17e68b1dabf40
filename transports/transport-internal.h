/* SPDX-License-Identifier: MIT */
/* Private structures of the transport layer, shared by its files. */
#ifndef LM_TRANSPORT_INTERNAL_H
#define LM_TRANSPORT_INTERNAL_H

#include <bsd/sys/queue.h>
#include <stdbool.h>
#include <stdint.h>

#include "hooks-internal.h"
#include "libmessage/transport.h"

#define LM_NAME_MAX    100  /* longest endpoint name */
#define LM_MAX_IOV     1000 /* iovecs per message, leaving room for a header */
#define LM_MAX_ALLOWED 16

/* Sends gathered this long go out at once, whatever else is going on. */
#define LM_GATHER_MAX (64u * 1024)
/* A message this big goes straight to the kernel when nothing waits before
 * it, rather than being copied. */
#define LM_DIRECT_MIN (16u * 1024)
/* Output this small is gathered inside the connection, without malloc (a
 * reply or two). */
#define LM_INLINE_OUT 256u

struct lm_conn {
	const struct lm_transport_ops *ops;
	void *tp; /* the transport's state */
	lm_reactor *r;
	struct lm_conn_callbacks cb;
	void *userdata;
	size_t max_message;
	size_t max_queue;
	struct lm_transport_fds fds;
	lm_source *rsrc;   /* rfd (and wfd when equal) */
	lm_source *wsrc;   /* wfd when it differs from rfd; created on demand */
	lm_source *hsrc;   /* hupfd */
	lm_source *csrc;   /* closefd */
	lm_source *defer;  /* delivers a close found while sending */
	lm_source *ptimer; /* a message begun must be whole by then (ops->partial) */
	/* Output not in the kernel yet: whole messages, each a 4-byte little-
	 * endian length and the payload, back to back. [ohead, olen) is unsent;
	 * oprog is the progress through it: bytes of it for ops->send_batch, the
	 * transport's own count within the first message for ops->send. */
	unsigned char *obuf; /* NULL, ibuf, or malloc'd */
	size_t olen, ocap, ohead, oprog;
	size_t queued;          /* payload bytes in obuf, for max_queue */
	struct lm__flush flush; /* queued on the reactor while gathering */
	int busy;               /* depth of our own dispatch: release memory after it */
	int reason;             /* why it closed, for the deferred callback */
	uint32_t partial_ms;    /* partial_timeout_ns of the options, in ms */
	bool tp_closed;         /* ops->close() ran */
	bool closed;            /* broken: sends get -ECONNRESET */
	bool notified;          /* the closed callback ran (or will not) */
	bool freed;             /* lm_conn_free() was called */
	bool want_out;
	bool edge;             /* rsrc is edge-triggered: read until empty (ops->edge) */
	bool direct;           /* in lm__transport_deliver_last(): the next send goes out now */
	bool corked;           /* lm_conn_cork(): gather outside dispatch too */
	bool no_wait;          /* ops->receive_wait() said it cannot, for this one */
	bool fanning;          /* in a lm_conn_sendv_many() chunk not written yet */
	bool no_flat;          /* the fan-out ring cannot write wfd: sendv always */
	bool progress;         /* a message was delivered since conn_partial_check() */
	bool refused;          /* a send got -ENOBUFS: drained() is owed once the output is out */
	struct lm__lone *lone; /* registered with r as its lone waiter, or NULL */
	unsigned char ibuf[LM_INLINE_OUT];
	/* The end of the round's write, when it is one small message: after
	 * the fields every send and receive reads. */
	struct lm__staged stage;
};

/*
 * Wait up to timeout_ns (> 0) for input on c alone, outside the reactor,
 * in the transport's blocking receive (ops->receive_wait), delivering what
 * comes. 1 or 2: something was delivered; 0: nothing came in time (or a
 * wake-up); -EINTR: a signal handler ran; -EOPNOTSUPP: the transport
 * cannot, or output waits for room
 * (let the reactor wait); -ECANCELED: the callback closed or freed c; else
 * c broke (its closed callback ran). From then on the reactor does not
 * read c (it still sees the peer die) until lm__conn_watch(c).
 */
int lm__conn_wait(lm_conn *c, int64_t timeout_ns);
void lm__conn_watch(lm_conn *c);
/* c is up, read by lm__conn_wait() alone, and has no output waiting. */
bool lm__conn_waits_alone(const lm_conn *c);
/* c is up and has no output waiting. */
bool lm__conn_idle(const lm_conn *c);

struct lm_listener {
	const struct lm_transport_ops *ops;
	void *tp;
	lm_reactor *r;
	lm_source *src;
	lm_accept_cb cb;
	void *userdata;
	struct lm_transport_options opts;
	int lockfd;
	int dirfd;
	char lockname[LM_NAME_MAX + 32];
	uid_t allowed[LM_MAX_ALLOWED];
	int nallowed;
	int busy;
	bool freed;
	bool paused;           /* lm_listener_pause() */
	bool waiting;          /* out of fds even with the spare: the retry timer is armed */
	bool starved;          /* out of fds since the last connection taken */
	int spare;             /* an fd held back for refusing connections when out of fds */
	lm_source *retry;      /* the timer that watches again after waiting */
	unsigned long refused; /* connections refused while starved */
};

/* The runtime directory: open and check it (creating it 0700), return an
 * O_PATH|O_DIRECTORY fd or -errno; path (if not NULL) gets its name. */
int lm__runtime_dir_open(char *path, size_t size);
/* 0 if name is a valid endpoint name, else -EINVAL. */
int lm__name_check(const char *name);
/* NULL if name is a valid endpoint name, else the rule it breaks, as a
 * static string for an error message. */
const char *lm__name_problem(const char *name);
/* Check an endpoint ("scheme:name" or a bare name) as lm_conn_connect() and
 * lm_listener_new() will: 0, -EINVAL (a bad name) or -EPROTONOSUPPORT (an
 * unknown scheme), with an error log line saying what is wrong. */
int lm__endpoint_check(const char *endpoint);

/* Helpers for framed transports: the encoding of a message is a 4-byte
 * little-endian length followed by the payload. Fill out[] with the part
 * [off, off + n) of that encoding; returns the number of iovecs. */
int lm__frame_slice(struct iovec *out, const uint32_t *hdr, const struct iovec *iov, int iovcnt,
		    size_t off, size_t n);
/* A message up to this size is copied, with its length, into one buffer
 * and written with send()/write(): cheaper than the kernel gathering an
 * iovec (sendmsg/writev). */
#define LM_FLAT_MAX 512u
/* Copy the encoding of a message (hdr, then iov, hdr bytes in all) into out,
 * which has room: its size. lm__frame_flat: the same into out of LM_FLAT_MAX
 * bytes, or 0 when it does not fit. */
size_t lm__frame_copy(unsigned char *out, uint32_t hdr, const struct iovec *iov, int iovcnt);
size_t lm__frame_flat(unsigned char *out, uint32_t hdr, const struct iovec *iov, int iovcnt);

/* Packed framing over units (unix datagrams, mq messages; see frame.c).
 * lm__frame_size: the encoded size of the message at p. lm__frame_next: the
 * length of the unit of buf[0, len) that starts at off, *f being the start of
 * a message at or before off (moved to the one containing off). */
size_t lm__frame_size(const unsigned char *p);
size_t lm__frame_next(const unsigned char *buf, size_t len, size_t *f, size_t off, size_t unit);

/* Receiving side: a big message being reassembled. */
struct lm__unpack {
	unsigned char *buf; /* NULL: none */
	size_t total, fill;
};
/* Deliver the messages of one unit (keeping a big message's start):
 * 1, or -errno (-ECANCELED: c was closed or freed by its user). last: the
 * last unit this receive read (see lm__transport_deliver_last). */
int lm__unpack_unit(lm_conn *c, struct lm__unpack *u, const unsigned char *buf, size_t n,
		    size_t unit, bool last);
/*
 * lm_transport_deliver() for the last message a receive read: the first
 * message its callback sends on c goes straight out (one syscall, no copy
 * into the output buffer, no flush at the end of the round) when nothing
 * waits before it, as a send outside the reactor's callbacks does. Nothing
 * read after it in this round could have its reply gathered with that one.
 * What the callback sends after it is gathered as usual.
 */
int lm__transport_deliver_last(lm_conn *c, const void *data, size_t len);
/* The size the next fragment of u's message must have. */
size_t lm__unpack_want(const struct lm__unpack *u, size_t unit);
/* Add the next fragment (copied unless it was received in place, at
 * u->buf + u->fill); deliver the message when whole. Returns as above. */
int lm__unpack_fragment(lm_conn *c, struct lm__unpack *u, const unsigned char *buf, size_t n,
			size_t unit);

/* Write with SIGPIPE blocked in this thread and any SIGPIPE the write
 * raised consumed, leaving mask and pending signals as they were. */
ssize_t lm__writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt);

/* 0 if n more fds can be opened now, else -EMFILE or -ENFILE (fd: any open
 * fd, copied to try). An accept() that consumes its request before opening
 * the connection's fds asks first, so that out of fds the request stays
 * queued in the kernel for when fds are free, rather than lost. */
int lm__fds_available(int fd, int n);

/* The pid a live server wrote in the name's lock file, or 0. */
pid_t lm__server_pid(int dirfd, const char *name, const char *scheme);

/* An fd that becomes readable when process pid exits, or -errno. */
int lm__pidfd_open(pid_t pid);

extern const struct lm_transport_ops lm__transport_unix;
/* The unix transport's listen() on a listening socket someone else made
 * (lm_listener_new_fd()): check that fd is an AF_UNIX SOCK_SEQPACKET
 * listener (-EPROTOTYPE, -EINVAL, -ENOTSOCK, -EBADF otherwise), set
 * O_NONBLOCK and FD_CLOEXEC, and take it: listen_close() then closes it
 * but removes no file. On failure fd is left alone. (Not a member of
 * lm_transport_ops: that struct's size is part of the ABI.) */
int lm__unix_listen_adopt(int fd, void **lstate);
extern const struct lm_transport_ops lm__transport_fifo;
extern const struct lm_transport_ops lm__transport_mq;

#endif
