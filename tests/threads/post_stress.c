/* SPDX-License-Identifier: MIT */
/* Threaded post scenarios: many posting threads; posting while the reactor is freed. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "post_stress.h"

#define MAX_THREADS 64

struct shared {
	lm_reactor *r;
	long next[MAX_THREADS]; /* next sequence number expected per thread */
	long delivered;
	bool order_broken;
};

struct msg {
	struct shared *sh;
	int thread;
	long seq;
};

struct poster {
	struct shared *sh;
	int id;
	long posts;
	struct msg *msgs;
};

static int open_reactor(enum lm_backend b, lm_reactor **r, char *msg, size_t len)
{
	struct lm_reactor_options o = {.backend = b};
	int err = lm_reactor_new(r, &o);

	if (err == 0)
		return 0;
	snprintf(msg, len, "reactor on backend %d refused: %s", (int)b, strerror(-err));
	return b == LM_BACKEND_URING ? 77 : 1;
}

static void on_post(void *userdata)
{
	struct msg *m = userdata;
	struct shared *sh = m->sh;

	if (sh->next[m->thread] != m->seq)
		sh->order_broken = true;
	sh->next[m->thread] = m->seq + 1;
	sh->delivered++;
}

static void *post_thread(void *arg)
{
	struct poster *p = arg;

	for (long i = 0; i < p->posts; i++) {
		p->msgs[i] = (struct msg){p->sh, p->id, i};
		while (lm_reactor_post(p->sh->r, on_post, &p->msgs[i]) == -ENOMEM)
			;
	}
	return NULL;
}

int lm_post_stress_order(enum lm_backend b, int threads, long posts, char *msg, size_t len)
{
	struct shared sh = {0};
	struct poster p[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	long total = threads * posts, wakeups = 0;
	int ret = open_reactor(b, &sh.r, msg, len);

	if (ret)
		return ret;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	for (int i = 0; i < threads; i++) {
		p[i] = (struct poster){&sh, i, posts, calloc((size_t)posts, sizeof(struct msg))};
		if (!p[i].msgs || pthread_create(&t[i], NULL, post_thread, &p[i]) != 0)
			abort();
	}
	while (sh.delivered < total) {
		/* 5 s without a single callback means a post was lost. */
		if (lm_reactor_run_once(sh.r, 5000000000) <= 0) {
			snprintf(msg, len, "a post was lost: %ld of %ld delivered", sh.delivered,
				 total);
			ret = 1;
			break;
		}
		wakeups++;
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		free(p[i].msgs);
	}
	if (!ret && sh.order_broken) {
		snprintf(msg, len, "posts of one thread ran out of order");
		ret = 1;
	}
	if (!ret && wakeups >= total) {
		snprintf(msg, len, "not batched: %ld wake-ups for %ld posts", wakeups, total);
		ret = 1;
	}
	if (!ret && lm_reactor_run_once(sh.r, 0) != 0) {
		snprintf(msg, len, "a post ran twice or late");
		ret = 1;
	}
	lm_reactor_free(sh.r);
	return ret;
}

struct late {
	lm_reactor *r;
	int last_err;
	long ok;
};

static void nop(void *userdata)
{
}

static void *late_poster(void *arg)
{
	struct late *l = arg;
	int err;

	/* Posts until the reactor is freed, then gets -ESHUTDOWN. */
	while ((err = lm_reactor_post(l->r, nop, NULL)) == 0 || err == -ENOMEM)
		__atomic_add_fetch(&l->ok, 1, __ATOMIC_RELAXED);
	l->last_err = err;
	lm_reactor_unref(l->r);
	return NULL;
}

int lm_post_stress_shutdown(enum lm_backend b, char *msg, size_t len)
{
	struct late l = {0};
	pthread_t t;
	int ret = open_reactor(b, &l.r, msg, len);

	if (ret)
		return ret;
	lm_reactor_ref(l.r); /* the poster's reference */
	if (pthread_create(&t, NULL, late_poster, &l) != 0)
		abort();
	while (__atomic_load_n(&l.ok, __ATOMIC_RELAXED) < 1000)
		lm_reactor_run_once(l.r, 1000000);
	lm_reactor_free(l.r);
	pthread_join(t, NULL);
	if (l.last_err != -ESHUTDOWN) {
		snprintf(msg, len, "post after free returned %d, not -ESHUTDOWN", l.last_err);
		return 1;
	}
	return 0;
}
