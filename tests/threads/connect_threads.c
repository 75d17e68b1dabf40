/* SPDX-License-Identifier: MIT */
/* Connections made from four threads at once, to one listener. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "connect_threads.h"
#include "libmessage/transport.h"

#define NTHREADS 4

struct shared {
	enum lm_backend b;
	char ep[64];
	int stop;     /* atomic: the server thread ends */
	int accepted; /* atomic */
};

struct worker {
	struct shared *x;
	pthread_t t;
	int err;       /* the first connect error, 0 */
	int connected; /* connects that returned 0 */
};

static void srv_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	struct shared *x = userdata;

	__atomic_add_fetch(&x->accepted, 1, __ATOMIC_RELAXED);
	lm_conn_free(c);
}

struct server {
	struct shared *x;
	lm_reactor *r;
};

static void *server_thread(void *p)
{
	struct server *s = p;

	while (!__atomic_load_n(&s->x->stop, __ATOMIC_ACQUIRE))
		lm_reactor_run_once(s->r, 20000000);
	return NULL;
}

static const struct lm_conn_callbacks cli_cbs = {0};

static void *client_thread(void *p)
{
	struct worker *w = p;
	struct lm_reactor_options o = {.backend = w->x->b};
	lm_reactor *r;
	int err = lm_reactor_new(&r, &o);

	if (err < 0) {
		w->err = err;
		return NULL;
	}
	for (int i = 0; i < CONNECT_THREADS_EACH; i++) {
		lm_conn *c = NULL;

		/* A full backlog (-EAGAIN) is the server's pace, not a name clash. */
		for (int tries = 0; tries < 200; tries++) {
			err = lm_conn_connect(&c, r, w->x->ep, NULL, &cli_cbs, NULL);
			if (err != -EAGAIN)
				break;
			nanosleep(&(struct timespec){0, 5000000}, NULL);
		}
		if (err < 0) {
			if (!w->err)
				w->err = err;
			continue;
		}
		w->connected++;
		lm_reactor_run_once(r, 0);
		lm_conn_free(c);
	}
	lm_reactor_free(r);
	return NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int lm_connect_threads(enum lm_backend b, const char *scheme, char *msg, size_t len)
{
	struct lm_reactor_options o = {.backend = b};
	char dir[] = "/tmp/lm-connthr-XXXXXX";
	struct shared x = {.b = b};
	struct worker w[NTHREADS] = {{0}};
	struct server srv = {&x, NULL};
	lm_listener *l = NULL;
	pthread_t st;
	bool srv_running = false;
	int err, ret = 0;

	if (!mkdtemp(dir)) {
		snprintf(msg, len, "mkdtemp: %s", strerror(errno));
		return 1;
	}
	setenv("LM_RUNTIME_DIR", dir, 1);
	snprintf(x.ep, sizeof(x.ep), "%s:thr%d", scheme, (int)getpid());
	err = lm_reactor_new(&srv.r, &o);
	if (err < 0) {
		snprintf(msg, len, "reactor on backend %d refused: %s", (int)b, strerror(-err));
		ret = 77;
		goto out;
	}
	err = lm_listener_new(&l, srv.r, x.ep, NULL, srv_accept, &x);
	if (err == -EMFILE || err == -ENOSYS || (err == -EPERM && b == LM_BACKEND_URING)) {
		snprintf(msg, len, "%s refused here: %s", scheme, strerror(-err));
		ret = 77;
		goto out;
	}
	if (err < 0) {
		snprintf(msg, len, "listen %s: %s", x.ep, strerror(-err));
		ret = 1;
		goto out;
	}
	if (pthread_create(&st, NULL, server_thread, &srv) != 0) {
		snprintf(msg, len, "pthread_create");
		ret = 1;
		goto out;
	}
	srv_running = true;
	for (int i = 0; i < NTHREADS; i++) {
		w[i].x = &x;
		if (pthread_create(&w[i].t, NULL, client_thread, &w[i]) != 0)
			w[i].t = 0, w[i].err = -EAGAIN;
	}
	for (int i = 0; i < NTHREADS; i++)
		if (w[i].t)
			pthread_join(w[i].t, NULL);
	for (int i = 0; i < NTHREADS && !ret; i++) {
		if (w[i].err == -EMFILE && !strcmp(scheme, "mq")) {
			snprintf(msg, len, "mq: RLIMIT_MSGQUEUE too small here");
			ret = 77;
		} else if (w[i].err || w[i].connected != CONNECT_THREADS_EACH) {
			snprintf(msg, len, "%s thread %d: %d of %d connects, first error %s",
				 scheme, i, w[i].connected, CONNECT_THREADS_EACH,
				 strerror(-w[i].err));
			ret = 1;
		}
	}
out:
	if (srv_running) {
		__atomic_store_n(&x.stop, 1, __ATOMIC_RELEASE);
		pthread_join(st, NULL);
	}
	lm_listener_free(l);
	lm_reactor_free(srv.r);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return ret;
}
