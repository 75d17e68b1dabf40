/* SPDX-License-Identifier: MIT */
/* What the libFuzzer targets share: a connection that only delivers, and checks. */
#ifndef LM_FUZZ_H
#define LM_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond)                                                             \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                   \
		}                                                                  \
	} while (0)

/* One epoll reactor for the process: the transports borrow its scratch
 * buffer while they unframe. */
static inline lm_reactor *fz_reactor(void)
{
	static lm_reactor *r;
	struct lm_reactor_options o = {.backend = LM_BACKEND_EPOLL};

	if (!r && lm_reactor_new(&r, &o) < 0)
		abort();
	return r;
}

static size_t fz_delivered;

/* Every byte of a delivered message is read (so ASan sees an overrun) and
 * its length is within the connection's limit. */
static inline void fz_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	const volatile unsigned char *p = data;
	unsigned char x = 0;

	FZ_CHECK(len <= c->max_message);
	for (size_t i = 0; i < len; i++)
		x ^= p[i];
	(void)x;
	fz_delivered++;
}

/* A connection with no transport and no fds: what an unframer needs. */
static inline void fz_conn_init(lm_conn *c, size_t max_message)
{
	memset(c, 0, sizeof(*c));
	c->r = fz_reactor();
	c->max_message = max_message;
	c->max_queue = LM_DEFAULT_MAX_QUEUE;
	c->cb.message = fz_message;
}

/* The next n bytes of the input as a little-endian number (0 past the end). */
static inline size_t fz_take(const uint8_t **data, size_t *size, int n)
{
	size_t v = 0;

	for (int i = 0; i < n && *size; i++, (*data)++, (*size)--)
		v |= (size_t) * *data << (8 * i);
	return v;
}

#endif
