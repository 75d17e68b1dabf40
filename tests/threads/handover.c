/* A reactor belongs to the thread that runs it: made and run in one thread,
 * then run by another (which adds and removes sources), then by the first
 * again, it reports every event (io_uring: the ring changes owner). */
#include <errno.h>
#include <fcntl.h>
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

int lm_thread_handover(enum lm_backend b, char *msg, size_t len)
{
	struct lm_reactor_options o = {.backend = b};
	struct handover h = {.a = {-1, -1}, .b = {-1, -1}};
	lm_source *sa = NULL;
	pthread_t t;
	int err, ret = 1;

	err = lm_reactor_new(&h.r, &o);
	if (err < 0) {
		snprintf(msg, len, "lm_reactor_new: %s", strerror(-err));
		return b == LM_BACKEND_URING ? 77 : 1;
	}
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
