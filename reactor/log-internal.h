/* SPDX-License-Identifier: MIT */
/* Internal logging used by every layer of the library. */
#ifndef LM_LOG_INTERNAL_H
#define LM_LOG_INTERNAL_H

#include "libmessage/reactor.h"

void lm__log(enum lm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool lm__log_enabled(enum lm_log_level level);

/* A number from the environment into *v (left alone if var is unset or
 * empty); -EINVAL, logged, if it is not one within [lo, hi]. */
int lm__env_long(const char *var, long lo, long hi, long *v);

#define lm_log_error(...) lm__log(LM_LOG_ERROR, __VA_ARGS__)
#define lm_log_warn(...)  lm__log(LM_LOG_WARN, __VA_ARGS__)
#define lm_log_info(...)  lm__log(LM_LOG_INFO, __VA_ARGS__)
#define lm_log_debug(...) lm__log(LM_LOG_DEBUG, __VA_ARGS__)

#endif
