/* SPDX-License-Identifier: MIT */
/* A libuv handle that runs a libmessage reactor inside a uv_loop_t (example glue; copy it). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lm-uv.h"

static void lm_uv_ready(uv_poll_t *poll, int status, int events)
{
	struct lm_uv *h = (struct lm_uv *)poll;
	static int warned;
	int n;

	/* status < 0 (the fd in error) still means: let the reactor look. */
	n = lm_reactor_run_once(h->r, 0);
	h->dispatches++;
	if (n == 0)
		h->empty++;
	/* -EINTR: a signal handler ran, the work waits for the next wake-up.
	 * Anything else (-EBUSY: run from one of r's own callbacks) is a
	 * misuse: said once. */
	if (n < 0 && n != -EINTR && !warned++)
		fprintf(stderr, "lm_uv: lm_reactor_run_once: %s\n", strerror(-n));
}

int lm_uv_start(struct lm_uv *h, uv_loop_t *loop, lm_reactor *r)
{
	int fd = lm_reactor_fd(r), err;

	if (fd < 0)
		return fd;
	h->r = r;
	h->dispatches = h->empty = 0;
	err = uv_poll_init(loop, &h->poll, fd);
	if (err < 0)
		return err;
	err = uv_poll_start(&h->poll, UV_READABLE, lm_uv_ready);
	if (err < 0)
		uv_close((uv_handle_t *)&h->poll, NULL);
	return err;
}

void lm_uv_close(struct lm_uv *h, uv_close_cb close_cb)
{
	uv_poll_stop(&h->poll);
	uv_close((uv_handle_t *)&h->poll, close_cb);
}
