/* SPDX-License-Identifier: MIT */
/* A libmessage reactor inside a libuv loop: calls, signals, timers, no spinning. */
#include "embed_scenario.h"
#include "lm-uv.h"
#include "lm_test.h"

/* The foreign loop's own timer and io watch (embed_scenario.h). */
static void foreign_tick(uv_timer_t *t)
{
	if (lm_es_foreign_tick(t->data))
		uv_stop(t->loop);
}

static void foreign_io(uv_poll_t *p, int status, int events)
{
	lm_es_foreign_io(p->data);
}

static void quit_after(uv_timer_t *t)
{
	struct lm_es *e = t->data;

	e->timed_out = true;
	uv_stop(t->loop);
}

/* Runs once per loop iteration, after the poll: counts them. */
static void count_iteration(uv_check_t *c)
{
	struct lm_es *e = c->data;

	e->iterations++;
}

LM_BACKEND_TEST(libuv, calls_signals_timers_no_spinning, .timeout = 60)
{
	static struct lm_es e;
	static uv_loop_t loop;
	static struct lm_uv reactor;
	static uv_timer_t tick, window;
	static uv_poll_t io;
	static uv_check_t check;
	struct lm_es_idle idle;

	/* The exchange: calls from libuv's timer every 10 ms, the server's
	 * signal every 20 ms from a reactor timer, libuv's own io. */
	lm_es_start(&e, backend, 20);
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(lm_uv_start(&reactor, &loop, e.r), 0);
	tick.data = window.data = io.data = check.data = &e;
	cr_assert_eq(uv_poll_init(&loop, &io, e.pipefd[0]), 0);
	cr_assert_eq(uv_poll_start(&io, UV_READABLE, foreign_io), 0);
	cr_assert_eq(uv_check_init(&loop, &check), 0);
	cr_assert_eq(uv_check_start(&check, count_iteration), 0);
	uv_timer_init(&loop, &tick);
	uv_timer_init(&loop, &window);
	uv_timer_start(&tick, foreign_tick, 10, 10);
	uv_timer_start(&window, quit_after, 30000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	lm_es_check_exchange(&e, backend);

	/* Idle: the server ticks every 100 ms, libuv's timer too, for 1 s.
	 * Spinning would show as thousands of iterations and the CPU time. */
	uv_timer_start(&tick, foreign_tick, 100, 100);
	lm_es_idle_begin(&e, &idle, reactor.dispatches, reactor.empty);
	uv_timer_start(&window, quit_after, 1000, 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	lm_es_idle_end(&e, &idle, reactor.dispatches, reactor.empty, backend);

	lm_uv_close(&reactor, NULL);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_close((uv_handle_t *)&window, NULL);
	uv_close((uv_handle_t *)&io, NULL);
	uv_close((uv_handle_t *)&check, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
	lm_es_free(&e);
}
