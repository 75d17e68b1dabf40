/* SPDX-License-Identifier: MIT */
/* The libmessage side of the GLib and libuv loop tests: a server and a client on one reactor. */
#ifndef LM_EMBED_SCENARIO_H
#define LM_EMBED_SCENARIO_H

#include <libmessage/libmessage.h>
#include <stdbool.h>

/*
 * A server with method "echo" and signal "tick", emitted by a reactor timer;
 * a client of it on the same reactor, subscribed to "tick". The foreign loop
 * under test drives the reactor through lm_reactor_fd() and makes the calls
 * from its own timer (lm_es_call()).
 */
struct lm_es {
	lm_reactor *r;
	lm_server *srv;
	lm_client *cl;
	lm_source *tick; /* the server's timer */
	unsigned calls, replies, bad_replies, signals, ticks;
	/* The foreign loop's side, counted by the test's callbacks. */
	int pipefd[2];       /* its own io: written by its timer, read by its io watch */
	bool calling;        /* its timer makes calls */
	bool timed_out;      /* its guard timer fired */
	unsigned ftick, fio; /* its timer's and io watch's callbacks */
	unsigned iterations; /* its loop's iterations */
};

/* Set it up on backend (skips where io_uring is refused) in a fresh
 * private runtime directory; the server ticks every tick_ms. */
void lm_es_start(struct lm_es *e, enum lm_backend backend, unsigned tick_ms);
/* The foreign loop's timer callback: while calling, an async echo call
 * (carrying its number, checked in the reply) until 20 replies came; every
 * fourth time a byte to its pipe. True when the loop may quit: calling, 20
 * replies and 10 signals, every reply right, 5 pipe reads. */
bool lm_es_foreign_tick(struct lm_es *e);
/* The foreign loop's io watch callback on pipefd[0]. */
void lm_es_foreign_io(struct lm_es *e);
/* After the loop quit: the exchange was done in time. */
void lm_es_check_exchange(const struct lm_es *e, enum lm_backend backend);
void lm_es_free(struct lm_es *e);

/* What a foreign loop does over an idle second (the server ticking every
 * 100 ms, the loop's own timer too, no calls). */
struct lm_es_idle {
	uint64_t dispatches; /* lm_reactor_run_once() calls by the glue */
	uint64_t empty;      /* of those, the ones that found no work */
	unsigned signals;    /* tick signals the client got */
	double cpu;          /* this process's CPU time, in seconds */
};
/* Begin the idle second: no calls, the server's tick at 100 ms, the
 * iterations counted from 0; dispatches and empty are the glue's counts. */
void lm_es_idle_begin(struct lm_es *e, struct lm_es_idle *m, uint64_t dispatches, uint64_t empty);
/* End it (the glue's counts now) and check it: signals on time, no
 * spinning (iterations, dispatches, CPU), no wasted wake-ups. */
void lm_es_idle_end(struct lm_es *e, struct lm_es_idle *m, uint64_t dispatches, uint64_t empty,
		    enum lm_backend backend);

#endif
