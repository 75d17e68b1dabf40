/* SPDX-License-Identifier: MIT */
/* Clients connecting from four threads at once: every connection gets its own names. */
#ifndef LM_CONNECT_THREADS_H
#define LM_CONNECT_THREADS_H

#include <libmessage/reactor.h>
#include <stddef.h>

/*
 * Four threads, each with its own reactor, each connect CONNECT_THREADS_EACH
 * times to one listener of scheme ("unix", "fifo", "mq") served by a fifth
 * thread. The transports name a connection's files or queues from state
 * shared by every thread (a counter, random bits): every connect must
 * succeed (a duplicate name would be -EEXIST), and under ThreadSanitizer
 * nothing races. 0, 77 when the backend or transport is refused here (msg
 * says why), or 1 with what went wrong in msg.
 */
#define CONNECT_THREADS_EACH 40
int lm_connect_threads(enum lm_backend b, const char *scheme, char *msg, size_t len);

#endif
