/* SPDX-License-Identifier: MIT */
/* lm_reactor_post from many threads: nothing lost, per-thread order, safe teardown. */
#include "lm_test.h"
#include "connect_threads.h"
#include "handover.h"
#include "lone_post.h"
#include "post_stress.h"

static void check(int ret, const char *msg)
{
	if (ret == 77)
		cr_skip_test("%s", msg);
	cr_assert_eq(ret, 0, "%s", msg);
}

LM_BACKEND_TEST(post, eight_threads_100000_each_nothing_lost_order_kept, .timeout = 120)
{
	char msg[256] = "";

	check(lm_post_stress_order(backend, 8, 100000, msg, sizeof(msg)), msg);
}

LM_BACKEND_TEST(post, free_while_posting_gives_eshutdown, .timeout = 30)
{
	char msg[256] = "";

	check(lm_post_stress_shutdown(backend, msg, sizeof(msg)), msg);
}

/* Made and run in one thread, run by another, then by the first again. */
LM_BACKEND_TEST(post, reactor_handed_between_threads, .timeout = 30)
{
	char msg[256] = "";

	check(lm_thread_handover(backend, msg, sizeof(msg)), msg);
}

/* Its fd asked for in one thread, polled by a foreign loop in another. */
LM_BACKEND_TEST(post, embedded_reactor_handed_to_another_thread, .timeout = 30)
{
	char msg[256] = "";

	check(lm_thread_handover_embedded(backend, msg, sizeof(msg)), msg);
}

/* A reactor waiting alone in an mq connection's receive is woken by a post
 * from another thread and by the server's close. */
LM_BACKEND_TEST(post, lone_wait_woken_by_post_and_close, .timeout = 30)
{
	char msg[256] = "";

	check(lm_lone_wait_woken(backend, msg, sizeof(msg)), msg);
}

/* Clients on four threads connect at once to one listener, per transport:
 * the names each connection makes (fifo: a counter; mq: random bits) never
 * clash (-EEXIST), and under ThreadSanitizer (tsan_threads) nothing races. */
LM_BACKEND_TEST(post, connect_from_four_threads, .timeout = 120)
{
	static const char *const schemes[] = {"unix", "fifo", "mq"};
	char msg[256] = "";

	for (int i = 0; i < 3; i++) {
		int ret = lm_connect_threads(backend, schemes[i], msg, sizeof(msg));

		if (ret == 77 && i == 2)
			cr_skip_test("%s", msg);
		cr_assert_eq(ret, 0, "%s", msg);
	}
}
