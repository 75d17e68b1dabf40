/* SPDX-License-Identifier: MIT */
/* The reactor's backend interface: one const ops table per kernel facility. */
#ifndef LM_REACTOR_BACKEND_H
#define LM_REACTOR_BACKEND_H

#include <stdint.h>

/* One readiness report. tag is what was given to add()/mod() (the reactor's
 * handle of the source, checked before any use: see reactor-internal.h); events is a
 * mask of LM_IO_* bits. data: NULL, or (LM__IO_RECV, see below) one datagram
 * of len bytes the backend received for the fd, which the caller hands back
 * with recycle() once it has taken it. */
struct lm_backend_event {
	uint64_t tag;
	uint32_t events;
	uint32_t len;
	const void *data;
};

/*
 * A backend watches fds for readiness. Semantics every backend must give,
 * so that the reactor above behaves the same on each:
 *  - level-triggered: a ready fd is reported at every wait() while it stays
 *    ready for what was asked;
 *  - persistent: interest stays until del(), no re-arming by the caller;
 *  - LM_IO_ERR and LM_IO_HUP are reported even if not asked for;
 *  - after del() returns, no event carrying that tag is ever reported again,
 *    and the caller may close the fd at once (and reuse the number).
 * Except where the caller asks for edge triggering with LM__IO_EDGE in
 * events, and the backend has again(): then the fd is reported when it
 * becomes ready (a wake-up of its wait queue), not at every wait while it
 * stays ready; a report may also find it empty (readiness that was consumed
 * before the report was read). The caller reads until the fd is empty, or
 * calls again(), which reports the fd at the next wait once more (with what
 * it reported last), as if it were still ready. A backend without again()
 * ignores the flag: level triggering is always correct.
 * A backend is used by one thread only.
 */
/* Edge triggering asked for (see above); not an LM_IO_* bit of the API. */
#define LM__IO_EDGE (1u << 31)
/*
 * Receiving asked for, with LM_IO_IN, on a socket whose reads each return
 * one datagram (SOCK_SEQPACKET), or on a FIFO: a backend with recycle() may
 * then receive for the caller (io_uring: one multishot receive, or read,
 * into provided buffers) and report each read's data (a datagram; of a
 * FIFO, what the pipe held, at most LM__RECV_MAX + 1 bytes) as an LM_IO_IN
 * event carrying it (data, len), in the order they came, before any report
 * of the fd without data. A datagram longer than LM__RECV_MAX arrives cut
 * to LM__RECV_MAX + 1 bytes.
 * A read of 0 bytes (the end of the connection, or an empty datagram: one
 * receive cannot tell them apart) comes the same way, with len 0, after
 * the data before it, and again at later waits while it lasts. Without
 * data, a report means what it always does: the caller reads itself (an
 * error, or a backend that does not receive, which ignores the flag). After del(), data not yet
 * reported is dropped, as data left in a closed socket is. With LM__IO_EDGE as well, the fd is
 * edge-triggered where the backend does not receive for it; again() does nothing while it does.
 */
#define LM__IO_RECV  (1u << 30)
#define LM__IO_FLAGS (LM__IO_EDGE | LM__IO_RECV)
/* In an event with data: another datagram of the same fd comes after it. */
#define LM__IO_MORE  (1u << 29)
#define LM__RECV_MAX (64u * 1024)
struct lm_backend_ops {
	/* What lm_reactor_backend_name() says: "epoll" or "io_uring". */
	const char *name;
	/* Create the state. 0 and *ret set, or -errno with nothing allocated
	 * (io_uring refused by the kernel gives its error here). */
	int (*init)(void **ret);
	/* Release the state; fds still watched stay open (they are the
	 * caller's). Tells the kernel nothing but the close of the backend's
	 * own fds, so that in a child after fork() it releases the child's
	 * copies and leaves the parent's registrations alone. */
	void (*fini)(void *b);
	/* Start watching fd for events (LM_IO_IN | LM_IO_OUT, maybe 0); -EEXIST
	 * if fd is watched already, -errno from the kernel otherwise. */
	int (*add)(void *b, int fd, uint32_t events, uint64_t tag);
	/* Change the interest (and tag) of a watched fd. */
	int (*mod)(void *b, int fd, uint32_t events, uint64_t tag);
	/* Stop watching fd, registered with tag; see the guarantee above. Never
	 * fails in a way the caller must handle. An fd closed before its del()
	 * is misuse the backend survives: what the kernel still holds for its
	 * file (epoll: the registration, while a dup of the file is open) is
	 * taken back where it can be; what it cannot take back reports tag,
	 * which the reactor finds stale and drops. */
	void (*del)(void *b, int fd, uint64_t tag);
	/* Push pending changes, wait at most timeout_ns (-1: no limit, 0: do
	 * not block) and write at most max events. Returns how many (0 on
	 * timeout or EINTR) or -errno. */
	int (*wait)(void *b, struct lm_backend_event *ev, int max, int64_t timeout_ns);
	/* An fd that is readable whenever wait() would report something, once
	 * flush() has run after the callbacks of the last wait's reports. */
	int (*fd)(void *b);
	/* Optional: push what the last wait left pending (re-arming) to the
	 * kernel; called after the callbacks of its reports ran, when fd() was
	 * asked (a foreign loop polls it). */
	void (*flush)(void *b);
	/* Optional (edge triggering, see above): report fd again at the next
	 * wait, which then does not block. */
	void (*again)(void *b, int fd);
	/* Optional (LM__IO_RECV, see above): give back an event's data, once
	 * the caller is done with it; also for an event it did not dispatch. */
	void (*recycle)(void *b, const void *data);
};

extern const struct lm_backend_ops lm__backend_epoll;
extern const struct lm_backend_ops lm__backend_uring;

#endif
