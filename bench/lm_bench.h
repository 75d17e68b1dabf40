/* SPDX-License-Identifier: MIT */
/* lm-bench: shared declarations of the latency tool (options, cases, roles, report). */
#ifndef LM_BENCH_H
#define LM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libmessage/reactor.h>

#include "hist.h"

enum bench_mode { MODE_CALL, MODE_SIGNAL, MODE_THROUGHPUT, MODE_IDLE, MODE_COUNT };
enum bench_tp { TP_UNIX, TP_FIFO, TP_MQ, TP_COUNT };
enum bench_cpu { CPU_SAME, CPU_SPLIT, CPU_ANY, CPU_COUNT };
/* What carries the messages: the bare kernel, or libmessage at some layer. */
enum bench_impl {
	IMPL_FLOOR,       /* bare blocking kernel objects */
	IMPL_CONN,        /* transport.h connections through the reactor */
	IMPL_SERVICE,     /* service.h: calls, emit, pipelined calls */
	IMPL_EMIT,        /* service.h, throughput only: pipelined lm_server_emit */
	IMPL_LOOP,        /* call and signal only: the floor's messages, each receive
			   * after a readiness wait (epoll or io_uring poll) */
	IMPL_SYNC,        /* call only: service.h, lm_client_call_sync() */
	IMPL_FLOOR_BATCH, /* signal only, unix and fifo: the floor's writes to the
			   * subscribers in one io_uring submission, no library */
};
/* Whether the floor cases (no library) are impl. */
#define BENCH_IMPL_BARE(impl) \
	((impl) == IMPL_FLOOR || (impl) == IMPL_LOOP || (impl) == IMPL_FLOOR_BATCH)
/* The most writes per io_uring submission of floor-batch, as libmessage's
 * fan-out makes them (LM__FANOUT_MAX in reactor/hooks-internal.h). */
#define BENCH_BATCH_MAX 64

#define BENCH_MAX_PEERS 1000
#define BENCH_MIN_SIZE  16 /* the message header below */
#define BENCH_MAX_SIZE  (1u << 20)

struct bench_opts {
	unsigned modes;      /* bit per enum bench_mode */
	unsigned transports; /* bit per enum bench_tp */
	unsigned backends;   /* bit 1: epoll, bit 2: uring (enum lm_backend values) */
	unsigned cpus;       /* bit per enum bench_cpu */
	size_t size;
	uint64_t count;  /* measured messages per case; 0: use duration */
	double duration; /* seconds, when count is 0; idle: length of the idle window */
	uint64_t warmup;
	int clients;      /* call, throughput */
	int subscribers;  /* signal, idle */
	int idle_clients; /* call, libmessage cases: idle connections of one more process */
	bool json;
	bool floor_only; /* skip libmessage cases (tests, quick checks) */
	bool emit_in_cb; /* signal, libmessage cases: emit from a reactor callback */
	const char *plot;
};

/* One message's first bytes; the rest is filler up to --size. */
struct bench_hdr {
	uint32_t kind; /* BENCH_WARMUP, BENCH_DATA, BENCH_STOP */
	uint32_t from;
	uint64_t t0;
};
enum { BENCH_WARMUP = 1, BENCH_DATA = 2, BENCH_STOP = 3, BENCH_PROBE = 4 /* ignored */ };

struct bench_case {
	enum bench_mode mode;
	enum bench_tp tp;
	enum bench_impl impl;
	int backend; /* enum lm_backend; 0 for the floor */
	enum bench_cpu cpu;
	int peers; /* clients or subscribers */
};

/*
 * State shared by the processes of one case (MAP_SHARED, set up before
 * fork): the merged histogram and the counters each side adds to.
 */
struct bench_shm {
	struct hist hist;
	uint64_t msgs;    /* measured messages (round trips, emissions, one-way) */
	uint64_t cpu_ns;  /* user+system CPU of every process over its measured part */
	uint64_t t_first; /* wall window of the measured part */
	uint64_t t_last;
	uint64_t progress; /* messages so far, for the progress line and the watchdog */
	uint32_t fan_ack;  /* signal: subscribers that got the current emission (futex) */
	uint32_t pad;
	uint64_t fan_last;    /* signal: the latest receipt time of the current emission;
			       * emit throughput: messages received */
	uint64_t accepted;    /* connections the server has taken (idle clients) */
	uint32_t crowd_ready; /* the idle clients are all connected */
	int failed;           /* 1: not available here, 2: failed while running */
	char why[160];
};

struct bench_result {
	struct bench_case c;
	int status; /* 0 ok, 1 not available, 2 failed */
	char why[160];
	struct hist *hist; /* NULL when the mode has no latencies */
	uint64_t msgs;
	double msgs_per_s;
	double cpu_us_per_msg;
	double wake_per_s; /* idle: wake-ups per second of the server; < 0 otherwise */
	const struct bench_result *floor;
	char cpu[24]; /* the placement with the CPUs used */
	int idle_clients;
	double rss_per_idle_client; /* bytes of server RSS per idle client; < 0: unknown */
};

/* Everything a role needs: the case, the options, where to meet. */
struct bench_ctx {
	const struct bench_case *c;
	const struct bench_opts *o;
	struct bench_shm *shm;
	const char *dir; /* the private runtime directory */
	unsigned tag;    /* unique per case: mq names */
	int index;       /* client/subscriber index; -2: the idle clients' process */
	int ready_fd;    /* server: write one byte when it serves */
	int ctl_fd;      /* server: becomes readable (EOF) when an idle case ends */
};

/* lm_bench_args.c: 0 ok, 1 --help printed, 2 bad arguments (message on err). */
int bench_parse_args(struct bench_opts *o, int argc, char **argv, FILE *err);
void bench_usage(FILE *f);
const char *bench_mode_name(enum bench_mode m);
const char *bench_tp_name(enum bench_tp t);
const char *bench_cpu_name(enum bench_cpu c);
const char *bench_backend_name(int backend);

/* lm_bench.c: helpers the roles share. */
uint64_t bench_now(void);
uint64_t bench_cpu_ns(void);
void bench_fail(struct bench_shm *shm, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Client x could not connect to ep (err): "n/a" where a kernel limit of this
 * machine refused it (mq: RLIMIT_MSGQUEUE), else a failure. */
void bench_connect_failed(const struct bench_ctx *x, const char *ep, int err);
/* The libmessage endpoint of x's case ("<transport>:bench-<tag>" for lm_conn,
 * "...:svc-<tag>" for the services layer). */
void bench_endpoint(const struct bench_ctx *x, char *buf, size_t n);
/* After a libmessage mq case: remove what a killed server left in the
 * system's queue namespace (its listener queue, its clients' queues). */
void bench_reclaim_mq(const struct bench_ctx *x);
void bench_futex_wait(uint32_t *addr, uint32_t val);
/* The same, for at most ns nanoseconds (ns < 0: no limit). */
void bench_futex_wait_for(uint32_t *addr, uint32_t val, long ns);
void bench_futex_wake(uint32_t *addr);
/* The number of measured messages wanted, or the end time when by duration. */
bool bench_more(const struct bench_ctx *x, uint64_t done, uint64_t t_start);
/* Subscriber side of the fan-out measurement. */
void bench_fan_received(struct bench_ctx *x);

/* A client's way to move messages: blocking send and receive of one whole
 * message, and flush (wait until everything sent has left). */
struct bench_io {
	int (*send)(void *p, const void *buf, size_t len);
	long (*recv)(void *p, void *buf, size_t cap); /* length, or -errno */
	int (*flush)(void *p);
	void *p;
};
/* The client side of every mode, the same for the floor and libmessage:
 * call (round trips), throughput (one-way), signal and idle (subscriber). */
int bench_client_run(struct bench_ctx *x, const struct bench_io *io);
/* Server-side accounting shared by the implementations. */
void bench_add_cpu(struct bench_shm *shm, uint64_t cpu_ns);
void bench_add_window(struct bench_shm *shm, uint64_t t_first, uint64_t t_last);

/* lm_bench_floor.c and lm_bench_conn.c: the two sides of each case. Return
 * the process exit code. */
int bench_floor_server(struct bench_ctx *x);
int bench_floor_client(struct bench_ctx *x);
int bench_conn_available(char *why, size_t size);
int bench_conn_server(struct bench_ctx *x);
int bench_conn_client(struct bench_ctx *x);
int bench_service_available(char *why, size_t size);
int bench_service_server(struct bench_ctx *x);
int bench_service_client(struct bench_ctx *x);
/* An emission: run now, or (--emit-from callback) from a defer source of
 * the emitter's reactor, run by lm_reactor_run_once(), so that what it
 * sends is gathered and written when the round ends (lm_bench_conn.c). */
struct bench_emit {
	lm_source *src; /* the defer, made on first use; the reactor frees it */
	int (*fn)(void *arg);
	void *arg;
	int ret;
	bool done;
};
int bench_emit_run(const struct bench_ctx *x, lm_reactor *r, struct bench_emit *e);

/* Hold o->idle_clients idle connections until the server goes away. */
int bench_conn_crowd(struct bench_ctx *x);
int bench_service_crowd(struct bench_ctx *x);

/* lm_bench_report.c */
void bench_print_header(FILE *f);
void bench_print_row(FILE *f, const struct bench_result *r);
void bench_print_json(FILE *f, const struct bench_result *r, const struct bench_opts *o);
int bench_write_plot(const char *path, struct bench_result *rs, int n);

#endif
