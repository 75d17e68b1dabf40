/* SPDX-License-Identifier: MIT */
/* The README's embedding example: a timer and a signal on one reactor. */
#include <signal.h>
#include <stdio.h>

#include <libmessage/reactor.h>

static void on_tick(lm_source *s, uint64_t expirations, void *userdata)
{
	int *left = userdata;

	printf("tick (%llu)\n", (unsigned long long)expirations);
	if (--*left == 0)
		lm_reactor_stop(lm_source_get_reactor(s), 0);
}

static void on_sigint(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(s), 130);
}

int main(void)
{
	lm_reactor *r;
	int left = 3, err = lm_reactor_new(&r, NULL);

	if (err < 0)
		return 1;
	lm_reactor_add_timer(r, NULL, 0, 100 * 1000 * 1000, on_tick, &left); /* every 100 ms */
	lm_reactor_add_signal(r, NULL, SIGINT, on_sigint, NULL);             /* Ctrl-C stops */
	err = lm_reactor_run(r);
	lm_reactor_free(r);
	return err;
}
