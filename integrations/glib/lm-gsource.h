/* SPDX-License-Identifier: MIT */
/* A GSource that runs a libmessage reactor inside a GMainLoop (example glue; copy it). */
#ifndef LM_GSOURCE_H
#define LM_GSOURCE_H

#include <glib.h>
#include <libmessage/reactor.h>

/*
 * A GSource that runs r's work whenever r has some: it watches
 * lm_reactor_fd(r) (readable for ready fds, due timers, posts and defers)
 * and calls lm_reactor_run_once(r, 0) in dispatch. Attach it with
 * g_source_attach() to the GMainContext whose thread owns r, and
 * g_source_destroy() + g_source_unref() it before lm_reactor_free(r). The
 * source does not own r. GLib does not dispatch a source from inside its
 * own dispatch, so a nested main loop run from a libmessage callback is
 * safe. To quit the main loop when r is stopped (lm_reactor_stop()), add
 * an exit source to r (lm_reactor_add_exit()) that calls
 * g_main_loop_quit().
 * NULL when lm_reactor_fd(r) fails.
 */
GSource *lm_gsource_new(lm_reactor *r);

/* How many times the source's dispatch ran lm_reactor_run_once(); *empty
 * (if not NULL): how many of those found no work (the fd was readable for
 * nothing: a wake-up wasted). */
guint64 lm_gsource_dispatches(GSource *source, guint64 *empty);

#endif
