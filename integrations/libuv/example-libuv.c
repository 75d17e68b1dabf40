/* SPDX-License-Identifier: MIT */
/* libuv: srvtime's server and a client on one libmessage reactor, run by a uv_loop_t. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libmessage/libmessage.h>
#include <uv.h>

#include "lm-uv.h"

struct app {
	uv_loop_t *loop;
	uv_timer_t ask, guard;
	struct lm_uv reactor;
	lm_client *client;
	int replies, dates, status;
};

static void stop(struct app *a)
{
	uv_timer_stop(&a->ask);
	uv_timer_stop(&a->guard);
	uv_stop(a->loop);
}

static void maybe_done(struct app *a)
{
	if (a->replies >= 3 && a->dates >= 3)
		stop(a);
}

/* libmessage callbacks run from the uv_poll_t's callback, on libuv's thread. */
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

/* libuv's own timer calls into libmessage: the call leaves at once. */
static void ask(uv_timer_t *t)
{
	struct app *a = t->data;

	lm_srvtime_getdate_async(a->client, -1, on_getdate, a);
}

static void too_long(uv_timer_t *t)
{
	struct app *a = t->data;

	fprintf(stderr, "no answer in 10 s\n");
	a->status = 1;
	stop(a);
}

int main(void)
{
	struct app a = {.loop = uv_default_loop()};
	lm_srvtime_server *srv;
	char endpoint[64];
	lm_reactor *r;
	int err;

	snprintf(endpoint, sizeof(endpoint), "unix:libuv-example-%d", (int)getpid());
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

	/* The reactor joins the libuv loop: that is all the glue. */
	err = lm_uv_start(&a.reactor, a.loop, r);
	if (err < 0) {
		fprintf(stderr, "lm_uv_start: %s\n", strerror(-err));
		return 1;
	}
	a.ask.data = a.guard.data = &a;
	uv_timer_init(a.loop, &a.ask);
	uv_timer_init(a.loop, &a.guard);
	uv_timer_start(&a.ask, ask, 150, 150);
	uv_timer_start(&a.guard, too_long, 10000, 0);
	uv_run(a.loop, UV_RUN_DEFAULT);
	printf("%s: %d replies and %d date signals through a libuv loop\n",
	       lm_reactor_backend_name(r), a.replies, a.dates);

	/* Close the handles, let libuv finish with them, then free the rest. */
	lm_uv_close(&a.reactor, NULL);
	uv_close((uv_handle_t *)&a.ask, NULL);
	uv_close((uv_handle_t *)&a.guard, NULL);
	uv_run(a.loop, UV_RUN_DEFAULT);
	uv_loop_close(a.loop);
	lm_srvtime_unwatch(a.client);
	lm_client_free(a.client);
	lm_srvtime_server_free(srv);
	lm_reactor_free(r);
	return a.status;
}
