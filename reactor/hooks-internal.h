/* SPDX-License-Identifier: MIT */
/* What the reactor offers the library's other layers, not its users. */
#ifndef LM_HOOKS_INTERNAL_H
#define LM_HOOKS_INTERNAL_H

#include <bsd/sys/queue.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libmessage/reactor.h"

/*
 * A flush: work to do once before the reactor next sleeps, e.g. writing the
 * messages a connection gathered during dispatch. Queued flushes run at the
 * end of each dispatch round (after the defers and the public prepare
 * sources: they are the last step of the reactor's before-sleep hook, so
 * they write what prepare callbacks sent too) and at the start of each
 * lm_reactor_run_once(), so none waits while the reactor blocks or while a
 * foreign loop holds it. fn runs on the reactor's thread, once per queueing;
 * it may queue flushes again (they run in the same round).
 */
struct lm__flush {
	TAILQ_ENTRY(lm__flush) link;
	void (*fn)(struct lm__flush *f);
	bool queued;
};
TAILQ_HEAD(lm__flush_list, lm__flush);

void lm__reactor_flush_queue(lm_reactor *r, struct lm__flush *f);
void lm__reactor_flush_cancel(lm_reactor *r, struct lm__flush *f);
/* True while callbacks of r run (a flush is then certain to follow). */
bool lm__reactor_dispatching(const lm_reactor *r);

/*
 * One receive buffer per reactor, shared by every connection on it: a
 * connection keeps no buffer of its own between messages. Take it for one
 * receive and give it back before returning to the reactor. size bytes at
 * least; NULL when out of memory. If it is taken already (a receive nested in
 * a callback), a private buffer is handed out instead: give it back the same.
 */
unsigned char *lm__reactor_scratch_take(lm_reactor *r, size_t size);
void lm__reactor_scratch_give(lm_reactor *r, unsigned char *buf);

/*
 * Small non-blocking writes to many fds at once (a signal fanned out to its
 * subscribers), made by one io_uring submission where the kernel allows
 * (fanout.c), on either backend: one syscall, not one per write. Each entry:
 * fd (for a write, O_NONBLOCK), and buf[0, len) to write(2) it, or to
 * send(2) it with MSG_NOSIGNAL | MSG_DONTWAIT (send). Every buf must stay
 * valid until the call returns (no write is left in flight: one io_uring
 * would wait for, on a full FIFO, is taken back: -ECANCELED). Returns -EOPNOTSUPP when it
 * cannot (io_uring refused, LM_FANOUT_URING=0 in the environment) and wrote
 * nothing; else 0, each res set to what the write(2) or send(2) would have
 * returned (bytes taken, or -errno), or -ECANCELED: not written, the caller
 * writes it itself, or -EIO: the ring failed after taking it, written or
 * not is unknown. A write is never queued to a kernel worker: -EOPNOTSUPP
 * is a file that refuses this write, nothing written; the caller should
 * write to that fd itself from then on. -ECHILD in a child after fork()
 * (lm_reactor_forked()), nothing written. Not thread-safe: the thread that
 * runs r.
 */
struct lm__write {
	int fd;
	bool send;
	const void *buf;
	size_t len;
	int res;
};
int lm__reactor_write_many(lm_reactor *r, struct lm__write *w, size_t n);
/* Fewer writes than this go one syscall each: a submission costs more. */
#define LM__FANOUT_MIN 4
/* Writes per submission (the ring's size): callers gather at most as many. */
#define LM__FANOUT_MAX 64

/*
 * A write staged for the end of the round: output gathered during dispatch
 * that is one small write per connection (a signal emitted from a callback
 * to its subscribers). After the round's flushes have run, the staged
 * writes are made by lm__reactor_write_many() together (LM__FANOUT_MIN of
 * them or more; else each res is -ECANCELED, nothing written), each res is
 * set, and done() is called for each in staging order; done() may run
 * callbacks, stage and queue flushes again (they run in the same round).
 * w.buf must stay as it is until the write is made: lm__reactor_unstage()
 * first whatever would move or free it. After the writes, written is true
 * until done() runs: unstaging then is taking the result (w.res) over.
 */
struct lm__staged {
	struct lm__write w;
	void (*done)(struct lm__staged *st);
	TAILQ_ENTRY(lm__staged) link;
	bool queued;
	bool written;
};
TAILQ_HEAD(lm__staged_list, lm__staged);
void lm__reactor_stage(lm_reactor *r, struct lm__staged *st);
void lm__reactor_unstage(lm_reactor *r, struct lm__staged *st);
/* How many of lm__reactor_write_many()'s writes succeeded, for tests. */
uint64_t lm__reactor_fanout_writes(const lm_reactor *r);

/*
 * An io source watched edge-triggered where the backend can (io_uring: one
 * multishot poll, no re-arm per report; see reactor/backend.h), for a
 * caller that reads until the fd is empty each time it is told the fd is
 * ready. *edge says whether it is; if not, the source is level-triggered
 * like any other (reading until empty is then still correct, only not
 * needed). A callback that stops before the fd is empty (a budget spent)
 * calls lm__source_again(): the source is reported at the next iteration
 * once more, as if it were still ready.
 */
int lm__reactor_add_io_edge(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
			    void *userdata, bool *edge);
void lm__source_again(lm_source *s);

/*
 * An io source (LM_IO_IN, maybe LM_IO_OUT) on a socket whose every read
 * returns one datagram (SOCK_SEQPACKET), or on a FIFO, that the backend
 * receives for where it can (io_uring: one multishot receive, or read, into
 * provided buffers; see LM__IO_RECV in reactor/backend.h). Its callback is
 * then called with LM_IO_IN once per datagram (of a FIFO: per read, which
 * gives what the pipe held, at most LM__RECV_MAX + 1 bytes), in order, and
 * lm__source_data() gives it, valid until the callback returns; a datagram longer than
 * LM__RECV_MAX (64 KiB) comes cut, as LM__RECV_MAX + 1 bytes; *more says
 * that another datagram of the source has come after it. A read of 0 bytes
 * (the end of the connection, or an empty datagram) comes as a datagram of
 * length 0, after the data before it. A report without data
 * (lm__source_data() is NULL) asks the callback to read itself, as for any
 * io source: an error, or a backend that does not receive. The callback must not read the fd while
 * lm__source_data() gives data, nor at other times while it may have data
 * not reported yet: it reads only when a report without data tells it to.
 * Disabling or freeing the source drops what the backend received for it
 * and has not reported yet, as closing a socket drops what is in it: a
 * caller that only pauses must not disable it (connections never do).
 * edge: NULL, or where the backend does not receive (a refusing kernel), a
 * caller that reads until the fd is empty asks for edge triggering as
 * lm__reactor_add_io_edge() does, and *edge says whether it may get it.
 */
int lm__reactor_add_io_recv(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
			    void *userdata, bool *edge);
const void *lm__source_data(const lm_source *s, size_t *len, bool *more);
/* Whether r's backend may receive for lm__reactor_add_io_recv() sources
 * (io_uring), so that one is worth making in place of a plain one. */
bool lm__reactor_receives(const lm_reactor *r);

/*
 * A lone waiter: the owner of some io sources (an mq client connection)
 * that can wait for its input in a blocking receive of its own, which is
 * cheaper than the backend's wait: the sender hands the message to a
 * receiver already blocked, with no poll machinery and one syscall where
 * the backend needs two (a wait, then a read).
 *
 * lm_reactor_run_once() waits there instead of in its backend when it
 * would block and nothing else can wake it: the waiter is the reactor's
 * only one, its sources are all the reactor watches (no other fd, no
 * signal source, no deferred work, no foreign loop polling
 * lm_reactor_fd()). The wait lasts until input, the next timer, the
 * caller's timeout or LM__LONE_NS, whichever is first; if nothing came,
 * the waiter's fd is watched again and the backend waits for the rest (so
 * a process with nothing to do makes no wake-ups). The sources it keeps
 * watched (a peer's pidfd) are seen once the lone wait ends: at most
 * LM__LONE_NS late.
 *
 *  wait:    wait up to timeout_ns, delivering what comes (callbacks run as
 *           in dispatch); > 0: something was delivered; 0: nothing (a
 *           timeout, or kick); -EINTR: a signal handler ran; other < 0:
 *           cannot now. Leaves the fd unwatched.
 *  watch:   watch the fd again.
 *  sources: how many of the owner's io sources the reactor watches.
 *  kick:    make a wait in progress return; any thread, called under the
 *           reactor's post lock (lm_reactor_post() from another thread).
 */
#define LM__LONE_NS 10000000 /* past a 4 ms tick: see docs/reactor.md */

struct lm__lone;
struct lm__lone_ops {
	int (*wait)(struct lm__lone *l, int64_t timeout_ns);
	void (*watch)(struct lm__lone *l);
	unsigned (*sources)(const struct lm__lone *l);
	void (*kick)(struct lm__lone *l);
};
struct lm__lone {
	const struct lm__lone_ops *ops;
	LIST_ENTRY(lm__lone) link;
};
LIST_HEAD(lm__lone_list, lm__lone);

void lm__reactor_lone_add(lm_reactor *r, struct lm__lone *l);
void lm__reactor_lone_remove(lm_reactor *r, struct lm__lone *l);
/* s is an io source registered with the backend. */
bool lm__source_watched(const lm_source *s);

#endif
