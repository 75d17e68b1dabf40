/* SPDX-License-Identifier: MIT */
/* ThreadSanitizer driver: Criterion's sandbox cannot run under TSan
 * (Criterion issue #274), so the threaded scenarios run from a plain main. */
#include <stdio.h>
#include <string.h>

#include "connect_threads.h"
#include "handover.h"
#include "lone_post.h"
#include "post_stress.h"

int main(void)
{
	static const enum lm_backend backends[] = {LM_BACKEND_EPOLL, LM_BACKEND_URING};
	int failed = 0, passed = 0, skipped = 0;
	char msg[256];

	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		const char *name = backends[i] == LM_BACKEND_URING ? "io_uring" : "epoll";
		int r[5];

		msg[0] = 0;
		r[0] = lm_post_stress_order(backends[i], 8, 100000, msg, sizeof(msg));
		if (r[0])
			printf("%s order: %s\n", name, msg);
		r[1] = lm_post_stress_shutdown(backends[i], msg, sizeof(msg));
		if (r[1])
			printf("%s shutdown: %s\n", name, msg);
		r[2] = lm_thread_handover(backends[i], msg, sizeof(msg));
		if (r[2])
			printf("%s handover: %s\n", name, msg);
		r[3] = lm_thread_handover_embedded(backends[i], msg, sizeof(msg));
		if (r[3])
			printf("%s embedded handover: %s\n", name, msg);
		r[4] = lm_lone_wait_woken(backends[i], msg, sizeof(msg));
		if (r[4])
			printf("%s lone wait woken: %s\n", name, msg);
		for (int k = 0; k < 5; k++)
			r[k] == 0 ? passed++ : r[k] == 77 ? skipped++ : failed++;
		/* The names are the transport's, whatever the backend: epoll only,
		 * as io_uring rings that threads map and unmap meanwhile may reuse
		 * an address, which ThreadSanitizer takes for a race. Not mq:
		 * ThreadSanitizer does not intercept mq_open(), so a queue fd that
		 * reuses the number of one another thread closed looks like a race
		 * on that fd. The other suites run every transport and backend
		 * from four threads (post::connect_from_four_threads). */
		for (int k = 0; k < 2 && backends[i] == LM_BACKEND_EPOLL; k++) {
			static const char *const schemes[] = {"unix", "fifo"};
			int rc = lm_connect_threads(backends[i], schemes[k], msg, sizeof(msg));

			if (rc)
				printf("%s connect from four threads (%s): %s\n", name, schemes[k],
				       msg);
			rc == 0 ? passed++ : rc == 77 ? skipped++ : failed++;
		}
	}
	printf("tsan: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
