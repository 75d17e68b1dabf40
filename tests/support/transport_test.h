/* SPDX-License-Identifier: MIT */
/* Helpers of the transport conformance suite: parameters, peers, loops. */
#ifndef LM_TRANSPORT_TEST_H
#define LM_TRANSPORT_TEST_H

#include <libmessage/transport.h>
#include <stdbool.h>
#include <sys/types.h>

#include "lm_test.h"

/* No pointers: criterion may run each test in a fresh exec of the binary. */
struct lm_tt_param {
	char scheme[8];
	enum lm_backend backend;
};

extern struct lm_tt_param lm_tt_params[];
extern const size_t lm_tt_nparams;

/*
 * A conformance test body, run once per transport and backend:
 *   LM_TRANSPORT_TEST(suite, name, .timeout = 10) { ... `scheme`, `backend` ... }
 */
#define LM_TRANSPORT_TEST(suite, name, ...)                                                      \
	static void suite##_##name##_body(const char *scheme, enum lm_backend backend);          \
	ParameterizedTestParameters(suite, name)                                                 \
	{                                                                                        \
		return cr_make_param_array(struct lm_tt_param, lm_tt_params, lm_tt_nparams);     \
	}                                                                                        \
	ParameterizedTest(struct lm_tt_param *p, suite, name, .fini = lm_tt_fini, ##__VA_ARGS__) \
	{                                                                                        \
		suite##_##name##_body(p->scheme, p->backend);                                    \
	}                                                                                        \
	static void suite##_##name##_body(const char *scheme, enum lm_backend backend)

/* Message queues are global, not in the runtime directory: remember the
 * listener queue of name (in the current runtime directory) so that
 * lm_tt_fini(), run after every conformance test whatever its outcome,
 * removes it. */
void lm_tt_forget_queue_at_end(const char *name);
void lm_tt_fini(void);

/* One side of a connection as the tests see it. */
struct lm_tt_peer {
	lm_conn *c;
	size_t received; /* messages */
	size_t bytes;
	size_t last_len;
	unsigned char *last; /* copy of the last message */
	int closed;          /* times the closed callback ran */
	int reason;
	int drained;
	bool echo;      /* send back every message */
	size_t burst;   /* at the first message: send this many sequence numbers */
	bool check_seq; /* messages are 8-byte sequence numbers from 0 */
	bool seq_error;
	bool free_on_close;
};

/* Callbacks that fill a struct lm_tt_peer given as userdata. */
extern const struct lm_conn_callbacks lm_tt_callbacks;

/* A server: accepts into peers[], echoing when echo is set. */
struct lm_tt_server {
	lm_listener *l;
	struct lm_tt_peer peers[128];
	int n;
	bool echo;
	size_t burst; /* given to each peer */
};
void lm_tt_accept(lm_listener *l, lm_conn *c, void *userdata);
/* Free a peer's connection and buffer; a server's listener and peers. */
void lm_tt_peer_clear(struct lm_tt_peer *p);
void lm_tt_server_free(struct lm_tt_server *s);

#define LM_TT_RUN_UNTIL(r, expr, secs)                              \
	({                                                          \
		double lm_tt_end_ = lm_tt_now() + (secs);           \
		while (!(expr) && lm_tt_now() < lm_tt_end_)         \
			lm_reactor_run_once((r), 10 * 1000 * 1000); \
		(bool)(expr);                                       \
	})
double lm_tt_now(void);

/* Fill buf with a pattern that depends on len and seed. */
void lm_tt_pattern(unsigned char *buf, size_t len, unsigned seed);

/* Put a foreign object (regular file, FIFO, or queue) at the name where
 * scheme's listener would create its endpoint; 0 or -errno. */
int lm_tt_foreign_at_name(const char *scheme, const char *name);
/* Remove what lm_tt_foreign_at_name() made. */
void lm_tt_foreign_remove(const char *scheme, const char *name);

/* Fork a process that serves endpoint (echo) on its own reactor and writes
 * one byte to the returned pipe fd when ready; *pid gets it. */
int lm_tt_fork_server(const char *endpoint, pid_t *pid);
/* The same, but at its first client's first message the server sends it
 * n 8-byte sequence numbers (0, 1, ...) and, once they are all in the
 * kernel, exits at once with the connection open (exit status 0; 1 if
 * that client went first). */
int lm_tt_fork_burster(const char *endpoint, size_t n, pid_t *pid);

/* Fork a raw client of scheme's listener at name that sends bytes (for mq:
 * as one unit) and then idles. */
pid_t lm_tt_fork_garbage(const char *scheme, const char *name, const void *bytes, size_t n);

/* mq: a client that asks for a connection with something else than a FIFO
 * of its own at its close FIFO's name (kind 1: a regular file, 2: a symlink
 * to a FIFO, 3: nothing), then idles until killed. Its pid, or -1. */
pid_t lm_tt_fork_mq_bad_close(const char *name, int kind);
/* mq: a client that makes its two queues, asks the listener at name for a
 * connection and dies at once (SIGKILL), before anyone took the request.
 * c2s gets the name of one of its queues. The child's exit status (77:
 * RLIMIT_MSGQUEUE is used up), or -errno. */
int lm_tt_mq_request_and_die(const char *name, char *c2s, size_t size);
/* The same, dying between making its queues and sending the request: no
 * request names them. */
int lm_tt_mq_queues_and_die(const char *name, char *c2s, size_t size);

#endif
