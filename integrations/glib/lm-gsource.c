/* SPDX-License-Identifier: MIT */
/* A GSource that runs a libmessage reactor inside a GMainLoop (example glue; copy it). */
#include <errno.h>

#include "lm-gsource.h"

struct lm_gsource {
	GSource base;
	lm_reactor *r;
	gpointer tag; /* lm_reactor_fd(r), watched for G_IO_IN */
	guint64 dispatches;
	guint64 empty; /* dispatches that found no work */
};

/*
 * prepare: no timeout of ours. The reactor's timers live behind its fd (a
 * timerfd it re-arms at the end of every lm_reactor_run_once()), so poll()
 * on that fd wakes GLib on time; a timeout here would only add wake-ups.
 */
static gboolean lm_gsource_prepare(GSource *source, gint *timeout)
{
	*timeout = -1;
	return FALSE;
}

/* check: dispatch only when the fd said the reactor has work. */
static gboolean lm_gsource_check(GSource *source)
{
	struct lm_gsource *s = (struct lm_gsource *)source;

	return (g_source_query_unix_fd(source, s->tag) & G_IO_IN) != 0;
}

/* dispatch: one non-blocking iteration of the reactor does all its work. */
static gboolean lm_gsource_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
	struct lm_gsource *s = (struct lm_gsource *)source;
	int n = lm_reactor_run_once(s->r, 0);

	s->dispatches++;
	if (n == 0)
		s->empty++;
	/* -EINTR: a signal handler ran, the work waits for the next wake-up.
	 * Anything else (-EBUSY: run from one of r's own callbacks) is a
	 * misuse: said once. */
	if (n < 0 && n != -EINTR)
		g_warning_once("lm_gsource: lm_reactor_run_once: %s", g_strerror(-n));
	return G_SOURCE_CONTINUE;
}

static GSourceFuncs lm_gsource_funcs = {
    .prepare = lm_gsource_prepare,
    .check = lm_gsource_check,
    .dispatch = lm_gsource_dispatch,
};

GSource *lm_gsource_new(lm_reactor *r)
{
	int fd = lm_reactor_fd(r);
	GSource *source;
	struct lm_gsource *s;

	if (fd < 0)
		return NULL;
	source = g_source_new(&lm_gsource_funcs, sizeof(struct lm_gsource));
	s = (struct lm_gsource *)source;
	s->r = r;
	s->tag = g_source_add_unix_fd(source, fd, G_IO_IN);
	g_source_set_name(source, "libmessage reactor");
	return source;
}

guint64 lm_gsource_dispatches(GSource *source, guint64 *empty)
{
	struct lm_gsource *s = (struct lm_gsource *)source;

	if (empty)
		*empty = s->empty;
	return s->dispatches;
}
