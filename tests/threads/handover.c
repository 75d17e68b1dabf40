/* SPDX-License-Identifier: MIT */
/* A reactor belongs to the thread that runs it: made and run in one thread,
 * then run by another (which adds and removes sources), then by the first
 * again, it reports every event (io_uring: the ring changes owner). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "handover.h"

struct handover {
	lm_reactor *r;
	int a[2], b[2];
	int got_a, got_b;
	char err[200];
};

static void on_readable(lm_source *s, int fd, uint32_t events, void *userdata)
{
	int *got = userdata;
	char c;

	if (read(fd, &c, 1) == 1)
		(*got)++;
}

/* Write a byte to fd and run until *got reaches want (at most 50 rounds of
 * 100 ms). */
static int poke(struct handover *h, int fd, int *got, int want, const char *who)
{
	if (write(fd, "x", 1) != 1) {
		snprintf(h->err, sizeof(h->err), "%s: write: %s", who, strerror(errno));
		return -1;
	}
	for (int i = 0; i < 50 && *got < want; i++) {
		int n = lm_reactor_run_once(h->r, 100000000);

		if (n < 0) {
			snprintf(h->err, sizeof(h->err), "%s: run_once: %s", who, strerror(-n));
			return -1;
		}
	}
	if (*got < want) {
		snprintf(h->err, sizeof(h->err), "%s: event not reported (%d of %d)", who, *got,
			 want);
		return -1;
	}
	return 0;
}

static void *second_thread(void *p)
{
	struct handover *h = p;
	lm_source *sb = NULL;
	int err;

	if (poke(h, h->a[1], &h->got_a, 2, "second thread, first pipe") < 0)
		return NULL;
	err = lm_reactor_add_io(h->r, &sb, h->b[0], LM_IO_IN, on_readable, &h->got_b);
	if (err < 0) {
		snprintf(h->err, sizeof(h->err), "second thread: add_io: %s", strerror(-err));
		return NULL;
	}
	if (poke(h, h->b[1], &h->got_b, 1, "second thread, second pipe") < 0)
		return NULL;
	lm_source_free(sb);
	return NULL;
}

/* A reactor on backend b: 0, or the return value of the scenario (77 when
 * io_uring is refused here) with msg set. */
static int make_reactor(lm_reactor **r, enum lm_backend b, char *msg, size_t len)
{
	struct lm_reactor_options o = {.backend = b};
	int err = lm_reactor_new(r, &o);

	if (err == 0)
		return 0;
	snprintf(msg, len, "lm_reactor_new: %s", strerror(-err));
	return b == LM_BACKEND_URING ? 77 : 1;
}

int lm_thread_handover(enum lm_backend b, char *msg, size_t len)
{
	struct handover h = {.a = {-1, -1}, .b = {-1, -1}};
	lm_source *sa = NULL;
	pthread_t t;
	int err, ret = make_reactor(&h.r, b, msg, len);

	if (ret)
		return ret;
	ret = 1;
	if (pipe2(h.a, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(h.b, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(msg, len, "pipe2: %s", strerror(errno));
		goto out;
	}
	err = lm_reactor_add_io(h.r, &sa, h.a[0], LM_IO_IN, on_readable, &h.got_a);
	if (err < 0) {
		snprintf(msg, len, "add_io: %s", strerror(-err));
		goto out;
	}
	if (poke(&h, h.a[1], &h.got_a, 1, "first thread") < 0)
		goto fail;
	if (pthread_create(&t, NULL, second_thread, &h) != 0) {
		snprintf(msg, len, "pthread_create failed");
		goto out;
	}
	pthread_join(t, NULL);
	if (h.err[0])
		goto fail;
	if (poke(&h, h.a[1], &h.got_a, 3, "first thread again") < 0)
		goto fail;
	ret = 0;
	goto out;
fail:
	snprintf(msg, len, "%s", h.err);
out:
	lm_source_free(sa);
	lm_reactor_free(h.r);
	for (int i = 0; i < 2; i++) {
		if (h.a[i] >= 0)
			close(h.a[i]);
		if (h.b[i] >= 0)
			close(h.b[i]);
	}
	return ret;
}

/* Embedded: the reactor's fd, asked for in the first thread, is polled by a
 * foreign loop in the second, which runs the reactor only when it is
 * readable (io_uring: the rebuilt ring must signal the same eventfd). */
struct embed {
	lm_reactor *r;
	int fd, p[2], got;
	char err[200];
};

/* Like a foreign loop: run the reactor only when its fd is readable; two
 * events, the second after the ring may have been rebuilt by the first. */
static void *embed_thread(void *arg)
{
	struct embed *e = arg;

	for (int want = 1; want <= 2; want++) {
		struct pollfd idle = {.fd = e->fd, .events = POLLIN};

		/* Quiet first: whatever signalled the fd before is consumed,
		 * so the next wake-up can only come from this event. */
		for (int i = 0; i < 100 && poll(&idle, 1, 50) > 0; i++)
			if (lm_reactor_run_once(e->r, 0) < 0)
				break;
		if (write(e->p[1], "x", 1) != 1) {
			snprintf(e->err, sizeof(e->err), "write: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < 20 && e->got < want; i++) {
			struct pollfd pfd = {.fd = e->fd, .events = POLLIN};
			int n = poll(&pfd, 1, 100);

			if (n < 0) {
				snprintf(e->err, sizeof(e->err), "poll: %s", strerror(errno));
				return NULL;
			}
			if (n == 0)
				continue;
			n = lm_reactor_run_once(e->r, 0);
			if (n < 0) {
				snprintf(e->err, sizeof(e->err), "run_once: %s", strerror(-n));
				return NULL;
			}
		}
		if (e->got < want) {
			snprintf(e->err, sizeof(e->err),
				 "event %d: the reactor's fd never became readable", want);
			return NULL;
		}
	}
	return NULL;
}

int lm_thread_handover_embedded(enum lm_backend b, char *msg, size_t len)
{
	struct embed e = {.p = {-1, -1}};
	lm_source *s = NULL;
	pthread_t t;
	int err, ret = make_reactor(&e.r, b, msg, len);

	if (ret)
		return ret;
	ret = 1;
	if (pipe2(e.p, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(msg, len, "pipe2: %s", strerror(errno));
		goto out;
	}
	err = lm_reactor_add_io(e.r, &s, e.p[0], LM_IO_IN, on_readable, &e.got);
	if (err >= 0)
		err = e.fd = lm_reactor_fd(e.r);
	if (err < 0) {
		snprintf(msg, len, "setup: %s", strerror(-err));
		goto out;
	}
	if (pthread_create(&t, NULL, embed_thread, &e) != 0) {
		snprintf(msg, len, "pthread_create failed");
		goto out;
	}
	pthread_join(t, NULL);
	if (e.err[0]) {
		snprintf(msg, len, "%s", e.err);
		goto out;
	}
	ret = 0;
out:
	lm_source_free(s);
	lm_reactor_free(e.r);
	for (int i = 0; i < 2; i++)
		if (e.p[i] >= 0)
			close(e.p[i]);
	return ret;
}
