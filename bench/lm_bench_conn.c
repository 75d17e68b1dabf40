/* SPDX-License-Identifier: MIT */
/* lm-bench: the libmessage transport cases, lm_conn ping-pong and fan-out through the reactor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmessage/reactor.h>
#include <libmessage/transport.h>

#include "lm_bench.h"

/*
 * The transport layer is built in parallel with this tool: its functions are
 * referenced weakly (and the whole library archive is linked), so a binary
 * built before they land reports the cases as not available instead of
 * failing to link.
 */
#pragma weak lm_listener_new
#pragma weak lm_listener_free
#pragma weak lm_conn_connect
#pragma weak lm_conn_set_callbacks
#pragma weak lm_conn_free
#pragma weak lm_conn_send
#pragma weak lm_conn_sendv_many
#pragma weak lm_conn_queued

int bench_conn_available(char *why, size_t size)
{
	if (lm_listener_new && lm_listener_free && lm_conn_connect && lm_conn_set_callbacks &&
	    lm_conn_free && lm_conn_send && lm_conn_sendv_many && lm_conn_queued)
		return 0;
	snprintf(why, size, "transport layer (lm_conn_*) not built yet");
	return -ENOSYS;
}

/* The library's own error lines would break the table; the reason of a
 * failure reaches the table through bench_fail(). */
static void quiet_log(enum lm_log_level level, const char *msg, void *userdata)
{
}

static int new_reactor(struct bench_ctx *x, lm_reactor **ret)
{
	lm_set_log_handler(quiet_log, NULL);
	struct lm_reactor_options ro = {.backend = (enum lm_backend)x->c->backend};
	int r = lm_reactor_new(ret, &ro);
	if (r < 0)
		bench_fail(x->shm, 1, "%s reactor: %s", bench_backend_name(x->c->backend),
			   strerror(-r));
	return r;
}

/* ---- server ---- */

struct srv {
	struct bench_ctx *x;
	lm_reactor *r;
	lm_conn **conns;
	int *res; /* lm_conn_sendv_many's, one per conn */
	struct iovec emit_iov;
	struct bench_emit emit;
	int nconns;
	int stops;
	uint64_t cpu0, t0, msgs;
	bool done;
};

static void srv_finish(struct srv *s)
{
	s->done = true;
	if (s->t0) {
		bench_add_cpu(s->x->shm, bench_cpu_ns() - s->cpu0);
		if (s->x->c->mode == MODE_THROUGHPUT) {
			bench_add_window(s->x->shm, s->t0, bench_now());
			__atomic_fetch_add(&s->x->shm->msgs, s->msgs, __ATOMIC_RELAXED);
		}
	}
	lm_reactor_stop(s->r, 0);
}

static void srv_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	struct srv *s = userdata;
	struct bench_hdr h;
	if (len < sizeof(h)) {
		bench_fail(s->x->shm, 2, "server got a short message (%zu bytes)", len);
		lm_reactor_stop(s->r, 1);
		return;
	}
	memcpy(&h, data, sizeof(h));
	if (h.kind == BENCH_DATA && !s->t0) {
		s->cpu0 = bench_cpu_ns();
		s->t0 = bench_now();
	}
	if (h.kind == BENCH_STOP) {
		if (++s->stops == s->x->c->peers)
			srv_finish(s);
		return;
	}
	if (s->x->c->mode == MODE_CALL) {
		int r = lm_conn_send(c, data, len);
		if (r < 0) {
			bench_fail(s->x->shm, 2, "server lm_conn_send: %s", strerror(-r));
			lm_reactor_stop(s->r, 1);
		}
	} else if (h.kind == BENCH_DATA) {
		s->msgs++;
	}
}

static void srv_closed(lm_conn *c, int reason, void *userdata)
{
	struct srv *s = userdata;
	for (int i = 0; i < s->nconns; i++)
		if (s->conns[i] == c)
			s->conns[i] = NULL;
	lm_conn_free(c);
	if (!s->done && s->x->c->mode != MODE_IDLE) {
		bench_fail(s->x->shm, 2, "server: a connection closed early: %s",
			   strerror(-reason));
		lm_reactor_stop(s->r, 1);
	}
}

static const struct lm_conn_callbacks srv_cbs = {.message = srv_message, .closed = srv_closed};

static void srv_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	struct srv *s = userdata;
	__atomic_fetch_add(&s->x->shm->accepted, 1, __ATOMIC_RELAXED);
	if (s->nconns == s->x->c->peers + s->x->o->idle_clients) {
		lm_conn_free(c);
		return;
	}
	s->conns[s->nconns++] = c;
	lm_conn_set_callbacks(c, &srv_cbs, s);
}

static int srv_flush(struct srv *s)
{
	for (int i = 0; i < s->nconns; i++)
		while (s->conns[i] && lm_conn_queued(s->conns[i]) > 0) {
			int r = lm_reactor_run_once(s->r, -1);
			if (r < 0)
				return r;
		}
	return 0;
}

static void emit_cb(lm_source *src, void *userdata)
{
	struct bench_emit *e = userdata;

	e->ret = e->fn(e->arg);
	e->done = true;
}

int bench_emit_run(const struct bench_ctx *x, lm_reactor *r, struct bench_emit *e)
{
	int err;

	if (!x->o->emit_in_cb)
		return e->fn(e->arg);
	if (!e->src && (err = lm_reactor_add_defer(r, &e->src, emit_cb, e)) < 0)
		return err;
	e->done = false;
	lm_source_set_enabled(e->src, true);
	while (!e->done)
		if ((err = lm_reactor_run_once(r, 0)) < 0)
			return err;
	return e->ret;
}

/* One message to every subscriber: one io_uring submission for all (unix,
 * fifo) where the kernel allows, see lm_conn_sendv_many. */
static int srv_send_all(void *arg)
{
	struct srv *s = arg;
	int n = lm_conn_sendv_many(s->conns, (size_t)s->nconns, &s->emit_iov, 1, s->res);

	for (int i = 0; n >= 0 && i < s->nconns; i++)
		if (s->res[i] < 0)
			n = s->conns[i] ? s->res[i] : -ECONNRESET;
	return n;
}

static int srv_emit(struct srv *s, char *buf, uint32_t kind)
{
	struct bench_hdr *h = (struct bench_hdr *)buf;
	struct bench_shm *shm = s->x->shm;
	h->kind = kind;
	__atomic_store_n(&shm->fan_ack, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&shm->fan_last, 0, __ATOMIC_RELAXED);
	h->t0 = bench_now();
	s->emit_iov = (struct iovec){buf, s->x->o->size};
	int n = bench_emit_run(s->x, s->r, &s->emit);
	if (n < 0) {
		bench_fail(shm, 2, "emit: lm_conn_sendv_many: %s", strerror(-n));
		return n;
	}
	int r = srv_flush(s);
	if (r < 0 || kind == BENCH_STOP)
		return r;
	uint32_t v;
	while ((v = __atomic_load_n(&shm->fan_ack, __ATOMIC_ACQUIRE)) < (uint32_t)s->nconns)
		bench_futex_wait(&shm->fan_ack, v);
	return 0;
}

static int srv_signal(struct srv *s)
{
	struct bench_ctx *x = s->x;
	char *buf = calloc(1, x->o->size);
	struct hist *hist = malloc(sizeof(*hist));
	if (!buf || !hist)
		return -ENOMEM;
	memset(buf, 'x', x->o->size);
	hist_init(hist);
	while (s->nconns < x->c->peers && !x->shm->failed)
		if (lm_reactor_run_once(s->r, 1000000000) < 0)
			return -EIO;
	for (uint64_t i = 0; i < x->o->warmup; i++)
		if (srv_emit(s, buf, BENCH_WARMUP) < 0)
			return -EIO;
	uint64_t msgs = 0, cpu0 = bench_cpu_ns(), t0 = bench_now();
	while (bench_more(x, msgs, t0)) {
		if (srv_emit(s, buf, BENCH_DATA) < 0)
			return -EIO;
		hist_record(hist, x->shm->fan_last - ((struct bench_hdr *)buf)->t0);
		msgs++;
		__atomic_fetch_add(&x->shm->progress, 1, __ATOMIC_RELAXED);
	}
	bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
	bench_add_window(x->shm, t0, bench_now());
	__atomic_fetch_add(&x->shm->msgs, msgs, __ATOMIC_RELAXED);
	hist_merge(&x->shm->hist, hist);
	s->done = true;
	return srv_emit(s, buf, BENCH_STOP);
}

static void srv_ctl(lm_source *src, int fd, uint32_t events, void *userdata)
{
	struct srv *s = userdata;
	s->done = true;
	lm_source_set_enabled(src, false);
	lm_reactor_stop(s->r, 0);
}

int bench_conn_server(struct bench_ctx *x)
{
	struct srv s = {.x = x};
	s.emit = (struct bench_emit){.fn = srv_send_all, .arg = &s};
	lm_listener *l = NULL;
	char ep[128];
	int r;

	s.conns = calloc((size_t)(x->c->peers + x->o->idle_clients), sizeof(*s.conns));
	s.res = calloc((size_t)(x->c->peers + x->o->idle_clients), sizeof(*s.res));
	if (!s.conns || !s.res || new_reactor(x, &s.r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	r = lm_listener_new(&l, s.r, ep, NULL, srv_accept, &s);
	if (r < 0) {
		bench_fail(x->shm, 1, "lm_listener_new(%s): %s", ep, strerror(-r));
		return 1;
	}
	if (write(x->ready_fd, "R", 1) != 1)
		return 1;
	if (x->c->mode == MODE_SIGNAL) {
		r = srv_signal(&s);
	} else if (x->c->mode == MODE_IDLE) {
		r = lm_reactor_add_io(s.r, NULL, x->ctl_fd, LM_IO_IN, srv_ctl, &s);
		if (r >= 0)
			r = lm_reactor_run(s.r);
		if (r >= 0) {
			/* The STOP is a message of --size bytes, as every other. */
			char *buf = malloc(x->o->size);
			if (!buf) {
				r = -ENOMEM;
			} else {
				memset(buf, 'x', x->o->size);
				r = srv_emit(&s, buf, BENCH_STOP);
			}
			free(buf);
		}
	} else {
		r = lm_reactor_run(s.r);
		if (r >= 0)
			r = srv_flush(&s);
	}
	lm_listener_free(l);
	for (int i = 0; i < s.nconns; i++)
		lm_conn_free(s.conns[i]);
	free(s.conns);
	free(s.res);
	lm_reactor_free(s.r);
	if (r < 0 && !x->shm->failed)
		bench_fail(x->shm, 2, "server reactor: %s", strerror(-r));
	return r < 0 || x->shm->failed ? 1 : 0;
}

/* ---- client: blocking send/receive on top of the reactor ---- */

struct pending {
	struct pending *next;
	size_t len;
	char data[];
};

struct cli {
	lm_reactor *r;
	lm_conn *c;
	char *buf;
	size_t cap;
	long got; /* > 0: a message waits in buf */
	struct pending *head, **tail;
	int closed;
};

static void cli_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	struct cli *cl = userdata;
	if (len > cl->cap)
		len = cl->cap;
	if (cl->got == 0 && !cl->head) {
		memcpy(cl->buf, data, len);
		cl->got = (long)len;
		return;
	}
	/* More than one message in one dispatch: keep the order. */
	struct pending *p = malloc(sizeof(*p) + len);
	if (!p)
		return;
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	*cl->tail = p;
	cl->tail = &p->next;
}

static void cli_closed(lm_conn *c, int reason, void *userdata)
{
	struct cli *cl = userdata;
	cl->closed = reason < 0 ? reason : -ECONNRESET;
	lm_conn_free(c);
	cl->c = NULL;
}

static const struct lm_conn_callbacks cli_cbs = {.message = cli_message, .closed = cli_closed};

static int cli_send(void *p, const void *buf, size_t len)
{
	struct cli *cl = p;
	for (;;) {
		if (!cl->c)
			return cl->closed;
		int r = lm_conn_send(cl->c, buf, len);
		if (r != -ENOBUFS)
			return r;
		r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
}

static long cli_recv(void *p, void *buf, size_t cap)
{
	struct cli *cl = p;
	while (cl->got == 0) {
		if (cl->head) {
			struct pending *q = cl->head;
			cl->head = q->next;
			if (!cl->head)
				cl->tail = &cl->head;
			memcpy(cl->buf, q->data, q->len);
			cl->got = (long)q->len;
			free(q);
			break;
		}
		if (!cl->c)
			return cl->closed;
		int r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
	long n = cl->got;
	if (buf != cl->buf)
		memcpy(buf, cl->buf, (size_t)n < cap ? (size_t)n : cap);
	cl->got = 0;
	return n;
}

static int cli_flush(void *p)
{
	struct cli *cl = p;
	while (cl->c && lm_conn_queued(cl->c) > 0) {
		int r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
	return cl->c ? 0 : cl->closed;
}

int bench_conn_client(struct bench_ctx *x)
{
	struct cli cl = {.cap = x->o->size + 64};
	char ep[128];
	cl.tail = &cl.head;
	cl.buf = malloc(cl.cap);
	if (!cl.buf || new_reactor(x, &cl.r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	int r;
	/* -EAGAIN: the listener's backlog is full (many clients at once). */
	for (uint64_t t0 = bench_now();;) {
		r = lm_conn_connect(&cl.c, cl.r, ep, NULL, &cli_cbs, &cl);
		if (r != -EAGAIN || bench_now() - t0 > 20000000000ull)
			break;
		usleep(1000);
	}
	if (r < 0) {
		bench_connect_failed(x, ep, r);
		return 1;
	}
	/* One-way bursts from outside the reactor: gathered, one syscall for many. */
	if (x->c->mode == MODE_THROUGHPUT)
		lm_conn_cork(cl.c, true);
	struct bench_io io = {.send = cli_send, .recv = cli_recv, .flush = cli_flush, .p = &cl};
	int rc = bench_client_run(x, &io);
	lm_conn_free(cl.c);
	lm_reactor_free(cl.r);
	return rc;
}

/* ---- idle clients: connections that never send ---- */

struct crowd {
	int closed;
};

static void crowd_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
}

static void crowd_closed(lm_conn *c, int reason, void *userdata)
{
	struct crowd *cr = userdata;
	cr->closed++;
	lm_conn_free(c);
}

static const struct lm_conn_callbacks crowd_cbs = {.message = crowd_message,
						   .closed = crowd_closed};

int bench_conn_crowd(struct bench_ctx *x)
{
	struct crowd cr = {0};
	lm_reactor *r;
	char ep[128];
	int n = x->o->idle_clients;
	if (new_reactor(x, &r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	for (int i = 0; i < n; i++) {
		lm_conn *c;
		int e = lm_conn_connect(&c, r, ep, NULL, &crowd_cbs, &cr);
		if (e < 0) {
			bench_fail(x->shm, 1, "idle client %d: lm_conn_connect: %s", i,
				   strerror(-e));
			return 1;
		}
	}
	__atomic_store_n(&x->shm->crowd_ready, 1, __ATOMIC_RELEASE);
	/* Until the server goes away at the end of the case. */
	while (cr.closed < n)
		if (lm_reactor_run_once(r, -1) < 0)
			return 1;
	lm_reactor_free(r);
	return 0;
}

/*
 * POSIX queues are not in the runtime directory: a server killed with
 * requests waiting (a failed case) leaves its listener queue and the queues
 * of the clients it never took, charged to the user's RLIMIT_MSGQUEUE. A
 * listener made at the same name finds the dead server's queue and removes
 * all of that; freeing it removes its own.
 */
static void noop_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	lm_conn_free(c);
}

void bench_reclaim_mq(const struct bench_ctx *x)
{
	lm_reactor *r;
	lm_listener *l;
	char ep[128];

	if (lm_reactor_new(&r, NULL) < 0)
		return;
	bench_endpoint(x, ep, sizeof(ep));
	if (lm_listener_new(&l, r, ep, NULL, noop_accept, NULL) == 0)
		lm_listener_free(l);
	lm_reactor_free(r);
}
