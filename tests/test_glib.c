/* SPDX-License-Identifier: MIT */
/* A libmessage reactor inside a GMainLoop: calls, signals, timers, no spinning. */
#include <glib-unix.h>

#include "embed_scenario.h"
#include "lm-gsource.h"
#include "lm_test.h"

static GMainLoop *loop;

/* The foreign loop's own timer and io watch (embed_scenario.h). */
static gboolean foreign_tick(gpointer userdata)
{
	if (lm_es_foreign_tick(userdata))
		g_main_loop_quit(loop);
	return G_SOURCE_CONTINUE;
}

static gboolean foreign_io(gint fd, GIOCondition cond, gpointer userdata)
{
	lm_es_foreign_io(userdata);
	return G_SOURCE_CONTINUE;
}

static gboolean quit_after(gpointer userdata)
{
	struct lm_es *e = userdata;

	e->timed_out = true;
	g_main_loop_quit(loop);
	return G_SOURCE_REMOVE;
}

/* A source whose prepare runs once per main loop iteration: counts them. */
static gboolean count_prepare(GSource *source, gint *timeout)
{
	struct lm_es **e = (struct lm_es **)(source + 1);

	(*e)->iterations++;
	*timeout = -1;
	return FALSE;
}

static gboolean never(GSource *source)
{
	return FALSE;
}

static gboolean no_dispatch(GSource *source, GSourceFunc cb, gpointer userdata)
{
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs counter_funcs = {
    .prepare = count_prepare,
    .check = never,
    .dispatch = no_dispatch,
};

LM_BACKEND_TEST(glib, calls_signals_timers_no_spinning, .timeout = 60)
{
	static struct lm_es e;
	struct lm_es_idle idle;
	GSource *reactor, *counter;
	guint tick, guard, io;
	guint64 dispatches, empty;

	/* The exchange: calls from GLib's timer every 10 ms, the server's
	 * signal every 20 ms from a reactor timer, GLib's own io. */
	lm_es_start(&e, backend, 20);
	loop = g_main_loop_new(NULL, FALSE);
	reactor = lm_gsource_new(e.r);
	cr_assert_not_null(reactor);
	g_source_attach(reactor, NULL);
	counter = g_source_new(&counter_funcs, sizeof(GSource) + sizeof(void *));
	*(struct lm_es **)(counter + 1) = &e;
	g_source_attach(counter, NULL);
	io = g_unix_fd_add(e.pipefd[0], G_IO_IN, foreign_io, &e);
	tick = g_timeout_add(10, foreign_tick, &e);
	guard = g_timeout_add_seconds(30, quit_after, &e);
	g_main_loop_run(loop);
	lm_es_check_exchange(&e, backend);
	g_source_remove(guard);
	g_source_remove(tick);

	/* Idle: the server ticks every 100 ms, GLib's timer too, for 1 s.
	 * Spinning would show as thousands of iterations and the CPU time. */
	tick = g_timeout_add(100, foreign_tick, &e);
	dispatches = lm_gsource_dispatches(reactor, &empty);
	lm_es_idle_begin(&e, &idle, dispatches, empty);
	g_timeout_add(1000, quit_after, &e);
	g_main_loop_run(loop);
	dispatches = lm_gsource_dispatches(reactor, &empty);
	lm_es_idle_end(&e, &idle, dispatches, empty, backend);

	g_source_remove(tick);
	g_source_remove(io);
	g_source_destroy(counter);
	g_source_unref(counter);
	g_source_destroy(reactor);
	g_source_unref(reactor);
	g_main_loop_unref(loop);
	lm_es_free(&e);
}
