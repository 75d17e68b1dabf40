/* SPDX-License-Identifier: MIT */
/* A reactor waiting alone in an mq connection's receive, woken by others. */
#ifndef LM_LONE_POST_H
#define LM_LONE_POST_H

#include <libmessage/reactor.h>
#include <stddef.h>

/*
 * A client reactor whose only sources are one mq connection waits in the
 * connection's blocking receive (a lone wait, docs/reactor.md). A post
 * from another thread, and the server closing the connection (from its own
 * reactor, in another thread), must each end that wait. Lone waits last an
 * hour here (LM_LONE_NS), so a wake-up that does not come hangs the
 * scenario. 0, 77 when the backend or mq is refused here (msg says why),
 * or 1 with what went wrong in msg.
 */
int lm_lone_wait_woken(enum lm_backend b, char *msg, size_t len);

#endif
