/* SPDX-License-Identifier: MIT */
/* Threaded post scenarios, shared by the Criterion test and the TSan driver. */
#ifndef LM_POST_STRESS_H
#define LM_POST_STRESS_H

#include <libmessage/reactor.h>
#include <stddef.h>

/* Each returns 0, 77 when the backend is refused here (msg says why), or 1
 * with what went wrong in msg. */
int lm_post_stress_order(enum lm_backend b, int threads, long posts, char *msg, size_t len);
int lm_post_stress_shutdown(enum lm_backend b, char *msg, size_t len);

#endif
