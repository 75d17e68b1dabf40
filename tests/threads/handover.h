/* SPDX-License-Identifier: MIT */
/* A reactor made and run in one thread, then run by others in turn. */
#ifndef LM_HANDOVER_H
#define LM_HANDOVER_H

#include <libmessage/reactor.h>
#include <stddef.h>

/* 0, 77 when the backend is refused here (msg says why), or 1 with what
 * went wrong in msg. */
int lm_thread_handover(enum lm_backend b, char *msg, size_t len);
/* The same with the reactor embedded: its fd polled by a foreign loop in
 * the second thread. */
int lm_thread_handover_embedded(enum lm_backend b, char *msg, size_t len);

#endif
