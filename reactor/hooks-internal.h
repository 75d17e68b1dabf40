/* What the reactor offers the library's other layers, not its users. */
#ifndef LM_HOOKS_INTERNAL_H
#define LM_HOOKS_INTERNAL_H

#include <bsd/sys/queue.h>
#include <stdbool.h>
#include <stddef.h>

#include "libmessage/reactor.h"

/*
 * A flush: work to do once before the reactor next sleeps, e.g. writing the
 * messages a connection gathered during dispatch. Queued flushes run at the
 * end of each dispatch round (after the defers) and at the start of each
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

#endif
