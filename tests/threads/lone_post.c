/* SPDX-License-Identifier: MIT */
/* A lone wait (an mq client's reactor in mq_timedreceive) ended by a post
 * from another thread and by the server's close. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libmessage/transport.h"
#include "lone_post.h"

struct lone {
	lm_reactor *sr, *cr; /* server's (its thread), client's (this one) */
	lm_listener *l;
	lm_conn *sc, *cc;   /* the server's side, the client's side */
	int accepted;       /* atomic: set in the server's thread */
	int received;       /* by the client */
	int posted;         /* set by the post, on the client's thread */
	int closed, reason; /* the client's side closed */
	int stop;           /* atomic: the server thread ends */
};

static void srv_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	lm_conn_send(c, data, len);
}

static const struct lm_conn_callbacks srv_cbs = {.message = srv_message};

static void srv_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	struct lone *x = userdata;

	x->sc = c;
	lm_conn_set_callbacks(c, &srv_cbs, x);
	__atomic_store_n(&x->accepted, 1, __ATOMIC_RELEASE);
}

static void *server_thread(void *p)
{
	struct lone *x = p;

	while (!__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE))
		lm_reactor_run_once(x->sr, 20000000);
	return NULL;
}

static void cli_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	((struct lone *)userdata)->received++;
}

static void cli_closed(lm_conn *c, int reason, void *userdata)
{
	struct lone *x = userdata;

	x->closed = 1;
	x->reason = reason;
}

static const struct lm_conn_callbacks cli_cbs = {.message = cli_message, .closed = cli_closed};

static void on_post(void *userdata)
{
	((struct lone *)userdata)->posted = 1;
}

/* Posted to the server's reactor: it closes its side of the connection. */
static void close_server_side(void *userdata)
{
	struct lone *x = userdata;

	lm_conn_free(x->sc);
	x->sc = NULL;
}

struct delayed {
	lm_reactor *r;
	lm_post_cb fn;
	void *arg;
};

/* Post fn to r from a thread of its own, 50 ms from now: the client's
 * reactor is then waiting alone. */
static void *post_later(void *p)
{
	struct delayed *d = p;

	nanosleep(&(struct timespec){0, 50000000}, NULL);
	lm_reactor_post(d->r, d->fn, d->arg);
	return NULL;
}

/* Have another thread post fn to r in 50 ms, and run the client's reactor
 * (waiting alone) until *flag is set. */
static int woken_by(struct lone *x, lm_reactor *r, lm_post_cb fn, const int *flag)
{
	struct delayed d = {r, fn, x};
	pthread_t t;
	int err = 0;

	if (pthread_create(&t, NULL, post_later, &d) != 0)
		return -EAGAIN;
	while (!*flag && err >= 0)
		err = lm_reactor_run_once(x->cr, -1);
	pthread_join(t, NULL);
	return err < 0 ? err : 0;
}

/* A round trip on the client's reactor, waiting alone. */
static int echo(struct lone *x)
{
	int want = x->received + 1, err = lm_conn_send(x->cc, "ping", 4);

	while (err >= 0 && x->received < want && !x->closed)
		err = lm_reactor_run_once(x->cr, -1);
	return err < 0 ? err : x->received == want ? 0 : -ECONNRESET;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

#define FAIL(...)                                \
	do {                                     \
		snprintf(msg, len, __VA_ARGS__); \
		ret = 1;                         \
		goto out;                        \
	} while (0)

int lm_lone_wait_woken(enum lm_backend b, char *msg, size_t len)
{
	struct lm_reactor_options o = {.backend = b};
	char dir[] = "/tmp/lm-lone-XXXXXX";
	struct lone x = {0};
	pthread_t srv;
	bool srv_running = false;
	int err, ret = 0;

	if (!mkdtemp(dir)) {
		snprintf(msg, len, "mkdtemp: %s", strerror(errno));
		return 1;
	}
	setenv("LM_RUNTIME_DIR", dir, 1);
	setenv("LM_LONE_NS", "3600000000000", 1);
	err = lm_reactor_new(&x.sr, &o);
	if (err == 0)
		err = lm_reactor_new(&x.cr, &o);
	if (err < 0) {
		snprintf(msg, len, "reactor on backend %d refused: %s", (int)b, strerror(-err));
		ret = 77;
		goto out;
	}
	err = lm_listener_new(&x.l, x.sr, "mq:lone", NULL, srv_accept, &x);
	if (err == 0)
		err = lm_conn_connect(&x.cc, x.cr, "mq:lone", NULL, &cli_cbs, &x);
	if (err == -EMFILE || err == -ENOSYS) {
		snprintf(msg, len, "mq refused here: %s", strerror(-err));
		ret = 77;
		goto out;
	}
	if (err < 0)
		FAIL("listen or connect: %s", strerror(-err));
	if (pthread_create(&srv, NULL, server_thread, &x) != 0)
		FAIL("pthread_create");
	srv_running = true;
	/* A round trip, through the lone wait. */
	if ((err = echo(&x)) < 0)
		FAIL("echo: %s", strerror(-err));

	/* A post from another thread ends the wait. */
	if ((err = woken_by(&x, x.cr, on_post, &x.posted)) < 0)
		FAIL("post: %s", strerror(-err));

	/* And the lone wait goes on: another round trip. */
	if ((err = echo(&x)) < 0)
		FAIL("second echo: %s", strerror(-err));

	/* The server closes its side: the client hears it now. */
	if ((err = woken_by(&x, x.sr, close_server_side, &x.closed)) < 0)
		FAIL("close: %s", strerror(-err));
	if (x.reason != -ECONNRESET)
		FAIL("closed with %d, not -ECONNRESET", x.reason);
out:
	if (srv_running) {
		__atomic_store_n(&x.stop, 1, __ATOMIC_RELEASE);
		pthread_join(srv, NULL);
	}
	lm_conn_free(x.cc);
	lm_conn_free(x.sc);
	lm_listener_free(x.l);
	lm_reactor_free(x.cr);
	lm_reactor_free(x.sr);
	unsetenv("LM_LONE_NS");
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return ret;
}
