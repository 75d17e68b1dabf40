/* SPDX-License-Identifier: MIT */
/* Embedding: a plain poll() loop drives a libmessage reactor through its fd. */
#include <poll.h>
#include <stdio.h>

#include <libmessage/reactor.h>

static void tick(lm_source *s, uint64_t expirations, void *userdata)
{
	int *ticks = userdata;

	printf("tick %d\n", ++*ticks);
	if (*ticks == 3)
		lm_reactor_stop(lm_source_get_reactor(s), 0);
}

int main(void)
{
	lm_reactor *r;
	int ticks = 0;

	if (lm_reactor_new(&r, NULL) < 0)
		return 1;
	/* A 10 ms periodic timer. */
	lm_reactor_add_timer(r, NULL, 10000000, 10000000, tick, &ticks);
	struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};
	while (ticks < 3) {
		/* The foreign loop sleeps; the reactor runs only when its fd says so. */
		if (poll(&pfd, 1, 1000) < 0)
			break;
		if (pfd.revents & POLLIN)
			lm_reactor_run_once(r, 0);
	}
	printf("%s: %d ticks from a poll() loop\n", lm_reactor_backend_name(r), ticks);
	lm_reactor_free(r);
	return ticks == 3 ? 0 : 1;
}
