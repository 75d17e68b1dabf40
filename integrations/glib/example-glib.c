/* SPDX-License-Identifier: MIT */
/* GLib: srvtime's server and a client on one libmessage reactor, run by a GMainLoop. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <libmessage/libmessage.h>

#include "lm-gsource.h"

struct app {
	GMainLoop *loop;
	lm_client *client;
	int replies, dates, status;
};

static void maybe_done(struct app *a)
{
	if (a->replies >= 3 && a->dates >= 3)
		g_main_loop_quit(a->loop);
}

/* libmessage callbacks run from the GSource's dispatch, on GLib's thread. */
static void on_date(lm_client *c, const struct lm_srvtime *t, uint64_t dropped, void *userdata)
{
	struct app *a = userdata;

	printf("date signal: %s\n", t->iso);
	a->dates++;
	maybe_done(a);
}

static void on_getdate(lm_client *c, int status, const struct lm_srvtime *t, void *userdata)
{
	struct app *a = userdata;

	if (status < 0) {
		fprintf(stderr, "getdate: %s\n", strerror(-status));
		return;
	}
	printf("getdate reply: %s\n", t->iso);
	a->replies++;
	maybe_done(a);
}

/* GLib's own timer calls into libmessage: the call leaves at once. */
static gboolean ask(gpointer userdata)
{
	struct app *a = userdata;

	lm_srvtime_getdate_async(a->client, -1, on_getdate, a);
	return G_SOURCE_CONTINUE;
}

static gboolean too_long(gpointer userdata)
{
	struct app *a = userdata;

	fprintf(stderr, "no answer in 10 s\n");
	a->status = 1;
	g_main_loop_quit(a->loop);
	return G_SOURCE_REMOVE;
}

int main(void)
{
	struct app a = {0};
	lm_srvtime_server *srv;
	char endpoint[64];
	lm_reactor *r;
	GSource *source;
	int err;

	snprintf(endpoint, sizeof(endpoint), "unix:glib-example-%d", (int)getpid());
	err = lm_reactor_new(&r, NULL);
	if (err < 0) {
		fprintf(stderr, "lm_reactor_new: %s\n", strerror(-err));
		return 1;
	}
	/* A server that signals the date every 100 ms, and a client of it. */
	if ((err = lm_srvtime_server_new(&srv, r, endpoint, 100 * 1000 * 1000)) < 0 ||
	    (err = lm_client_new(&a.client, r, endpoint, NULL)) < 0 ||
	    (err = lm_srvtime_watch(a.client, on_date, &a)) < 0) {
		fprintf(stderr, "%s: %s\n", endpoint, strerror(-err));
		return 1;
	}

	/* The reactor joins GLib's default context: that is all the glue. */
	source = lm_gsource_new(r);
	g_source_attach(source, NULL);
	a.loop = g_main_loop_new(NULL, FALSE);
	g_timeout_add(150, ask, &a);
	g_timeout_add_seconds(10, too_long, &a);
	g_main_loop_run(a.loop);
	printf("%s: %d replies and %d date signals through a GMainLoop\n",
	       lm_reactor_backend_name(r), a.replies, a.dates);

	g_source_destroy(source);
	g_source_unref(source);
	g_main_loop_unref(a.loop);
	lm_srvtime_unwatch(a.client);
	lm_client_free(a.client);
	lm_srvtime_server_free(srv);
	lm_reactor_free(r);
	return a.status;
}
