/* SPDX-License-Identifier: MIT */
/* A libuv handle that runs a libmessage reactor inside a uv_loop_t (example glue; copy it). */
#ifndef LM_UV_H
#define LM_UV_H

#include <libmessage/reactor.h>
#include <uv.h>

/* The reactor's place in a libuv loop: a uv_poll_t on lm_reactor_fd(). */
struct lm_uv {
	uv_poll_t poll; /* first: a uv_handle_t * to it is a struct lm_uv * */
	lm_reactor *r;
	uint64_t dispatches; /* times lm_reactor_run_once() ran */
	uint64_t empty;      /* of those, the ones that found no work */
};

/*
 * Run r's work from loop whenever r has some: a uv_poll_t watches
 * lm_reactor_fd(r) (readable for ready fds, due timers, posts and defers)
 * and its callback calls lm_reactor_run_once(r, 0). No uv_timer_t is
 * needed: r's timers are behind that fd (a timerfd re-armed at the end of
 * every lm_reactor_run_once()), so the fd wakes libuv on time. h is the
 * caller's (it must stay put until closed); it does not own r. 0, or a
 * negative errno (lm_reactor_fd()'s, or libuv's UV_E*).
 */
int lm_uv_start(struct lm_uv *h, uv_loop_t *loop, lm_reactor *r);

/* Stop watching and close the handle; close_cb (may be NULL) runs when
 * libuv is done with h, and r may be freed from then on. */
void lm_uv_close(struct lm_uv *h, uv_close_cb close_cb);

#endif
