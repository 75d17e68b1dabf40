/* SPDX-License-Identifier: MIT */
/* lm-bench: the libmessage service cases, lm_client_call, lm_server_emit and pipelined calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lm_bench.h"

#if __has_include(<libmessage/service.h>)
#include <libmessage/reactor.h>
#include <libmessage/service.h>

/* Weak, like the transport functions in lm_bench_conn.c: the services layer
 * is built in parallel; a binary built before it lands says "n/a". */
#pragma weak lm_server_new
#pragma weak lm_server_free
#pragma weak lm_server_add_methods
#pragma weak lm_server_add_signal
#pragma weak lm_server_emit
#pragma weak lm_call_reply
#pragma weak lm_client_new
#pragma weak lm_client_free
#pragma weak lm_client_get_state
#pragma weak lm_client_call
#pragma weak lm_client_call_sync
#pragma weak lm_reply_free
#pragma weak lm_client_subscribe
#pragma weak lm_client_pending
#pragma weak lm_server_client_count
#pragma weak lm_client_set_state_cb

#define SIGNAL_NAME "Tick"

int bench_service_available(char *why, size_t size)
{
	if (lm_server_new && lm_server_free && lm_server_add_methods && lm_server_add_signal &&
	    lm_server_emit && lm_call_reply && lm_client_new && lm_client_free &&
	    lm_client_get_state && lm_client_call && lm_client_call_sync && lm_reply_free &&
	    lm_client_subscribe && lm_client_pending && lm_server_client_count &&
	    lm_client_set_state_cb)
		return 0;
	snprintf(why, size, "services layer (lm_server_*, lm_client_*) not built yet");
	return -ENOSYS;
}

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
	lm_server *s;
	int stops;
	uint64_t cpu0, t0, msgs;
	char *emit_buf;
	struct bench_emit emit;
};

static void srv_finish(struct srv *s)
{
	if (s->t0) {
		bench_add_cpu(s->x->shm, bench_cpu_ns() - s->cpu0);
		if (s->x->c->mode == MODE_THROUGHPUT) {
			bench_add_window(s->x->shm, s->t0, bench_now());
			__atomic_fetch_add(&s->x->shm->msgs, s->msgs, __ATOMIC_RELAXED);
		}
	}
	lm_reactor_stop(s->r, 0);
}

/* Echo: call mode replies with the payload; throughput replies empty. */
static void srv_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	struct srv *s = userdata;
	struct bench_hdr h = {0};
	memcpy(&h, payload, len < sizeof(h) ? len : sizeof(h));
	if (h.kind == BENCH_DATA && !s->t0) {
		s->cpu0 = bench_cpu_ns();
		s->t0 = bench_now();
	}
	bool echo = s->x->c->mode == MODE_CALL && h.kind != BENCH_STOP;
	int r = lm_call_reply(call, echo ? payload : NULL, echo ? len : 0);
	if (r < 0 && r != -ECONNRESET) {
		bench_fail(s->x->shm, 2, "lm_call_reply: %s", strerror(-r));
		lm_reactor_stop(s->r, 1);
	}
	if (h.kind == BENCH_DATA)
		s->msgs++;
	if (h.kind == BENCH_STOP && ++s->stops == s->x->c->peers)
		srv_finish(s);
}

static const struct lm_method srv_methods[] = {{"Echo", srv_echo}};

/* Room for a --size payload and the service's own framing around it: the
 * default max_message (1 MiB) is the largest --size itself. 0: the default. */
static size_t svc_max_message(const struct bench_ctx *x)
{
	size_t want = x->o->size + 4096;

	return want > LM_DEFAULT_MAX_MESSAGE ? want : 0;
}

static int srv_emit_now(void *arg)
{
	struct srv *s = arg;

	return lm_server_emit(s->s, SIGNAL_NAME, s->emit_buf, s->x->o->size);
}

static int srv_emit(struct srv *s, char *buf, uint32_t kind)
{
	struct bench_hdr *h = (struct bench_hdr *)buf;
	struct bench_shm *shm = s->x->shm;
	h->kind = kind;
	__atomic_store_n(&shm->fan_ack, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&shm->fan_last, 0, __ATOMIC_RELAXED);
	h->t0 = bench_now();
	s->emit_buf = buf;
	int r = bench_emit_run(s->x, s->r, &s->emit);
	if (r < 0) {
		bench_fail(shm, 2, "lm_server_emit: %s", strerror(-r));
		return r;
	}
	if (kind != BENCH_DATA && kind != BENCH_WARMUP)
		return r;
	if (r != s->x->c->peers) {
		bench_fail(shm, 2, "lm_server_emit reached %d of %d subscribers", r,
			   s->x->c->peers);
		return -EIO;
	}
	/* Straight to the futex, as the floor's emitter: the kernel took the
	 * emission (lm_server_emit writes at once outside callbacks). What it
	 * did not take goes out when the reactor sees room, and the futex alone
	 * would wait for an ack that cannot come: that happens while the
	 * subscribers' queues still hold probes they have not read, so during
	 * the warm-up the reactor runs once after each millisecond without
	 * every ack. Measured emissions find the queues empty (each waited for
	 * every ack of the one before) and wait on the futex without a timeout,
	 * as the floor does: a timed wait arms a timer, which on this VM costs a
	 * reprogramming of the host's clock event that shows in the latency. */
	uint32_t v;
	while ((v = __atomic_load_n(&shm->fan_ack, __ATOMIC_ACQUIRE)) < (uint32_t)r) {
		if (kind == BENCH_DATA) {
			bench_futex_wait(&shm->fan_ack, v);
			continue;
		}
		bench_futex_wait_for(&shm->fan_ack, v, 1000000);
		if (__atomic_load_n(&shm->fan_ack, __ATOMIC_ACQUIRE) < (uint32_t)r)
			lm_reactor_run_once(s->r, 0);
	}
	return r;
}

/* Wait until every subscriber has subscribed: probes (ignored by them) tell
 * how many an emission reaches. */
static int srv_wait_subscribers(struct srv *s, char *buf)
{
	uint64_t t0 = bench_now();
	for (;;) {
		int n = srv_emit(s, buf, BENCH_PROBE);
		if (n < 0)
			return n;
		if (n == s->x->c->peers)
			return 0;
		if (bench_now() - t0 > 30000000000ull || s->x->shm->failed) {
			bench_fail(s->x->shm, 2, "only %d of %d subscribed after 30 s", n,
				   s->x->c->peers);
			return -ETIMEDOUT;
		}
		lm_reactor_run_once(s->r, 10000000);
	}
}

static int srv_signal(struct srv *s)
{
	struct bench_ctx *x = s->x;
	char *buf = calloc(1, x->o->size);
	struct hist *hist = malloc(sizeof(*hist));
	if (!buf || !hist)
		return -ENOMEM;
	memset(buf + sizeof(struct bench_hdr), 'x', x->o->size - sizeof(struct bench_hdr));
	hist_init(hist);
	if (srv_wait_subscribers(s, buf) < 0)
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
	return srv_emit(s, buf, BENCH_STOP);
}

static void srv_ctl(lm_source *src, int fd, uint32_t events, void *userdata)
{
	struct srv *s = userdata;
	lm_source_set_enabled(src, false);
	lm_reactor_stop(s->r, 0);
}

/* Let the last replies and signals leave before the server says BYE. */
static void srv_drain(struct srv *s)
{
	uint64_t t0 = bench_now();
	while (bench_now() - t0 < 200000000ull && lm_reactor_run_once(s->r, 20000000) > 0)
		;
}

/* Pipelined one-way signals to the subscribers, as fast as they read: at most
 * EMIT_WINDOW emissions ahead of the slowest count of received messages (in
 * shared memory), and at most half a subscriber's queue bound of bytes (more
 * would pass LM_DEFAULT_MAX_QUEUE, and the DISCONNECT policy would end the
 * run: big messages); the rest of the flow control is the transport's queue. */
#define EMIT_WINDOW 2048

static bool emit_window_open(struct srv *s, uint64_t sent)
{
	uint64_t peers = (uint64_t)s->x->c->peers;
	uint64_t window = LM_DEFAULT_MAX_QUEUE / 2 / ((uint64_t)s->x->o->size + 64);

	window = window < 1 ? 1 : window > EMIT_WINDOW ? EMIT_WINDOW : window;
	return (sent + 1) * peers <=
	       __atomic_load_n(&s->x->shm->fan_last, __ATOMIC_ACQUIRE) + window * peers;
}

/* Emissions are made from a reactor callback, as an application makes them:
 * those of one dispatch round leave together when it ends. */
struct emit_burst {
	struct srv *s;
	char *buf;
	uint64_t *sent;
	uint64_t n, done;
	int err;
};

static void emit_burst_cb(lm_source *src, void *userdata)
{
	struct emit_burst *b = userdata;
	struct srv *s = b->s;
	for (int i = 0; i < 256 && b->done < b->n && emit_window_open(s, *b->sent); i++) {
		int r = lm_server_emit(s->s, SIGNAL_NAME, b->buf, s->x->o->size);
		if (r < 0) {
			bench_fail(s->x->shm, 2, "lm_server_emit: %s", strerror(-r));
			b->err = r;
			return;
		}
		if (r != s->x->c->peers) {
			bench_fail(s->x->shm, 2, "lm_server_emit reached %d of %d subscribers", r,
				   s->x->c->peers);
			b->err = -EIO;
			return;
		}
		(*b->sent)++;
		b->done++;
	}
}

/* Emit n signals of kind, pipelined. */
static int srv_emit_stream(struct srv *s, char *buf, uint32_t kind, uint64_t *sent, uint64_t n)
{
	struct emit_burst b = {.s = s, .buf = buf, .sent = sent, .n = n};
	lm_source *d = NULL;
	((struct bench_hdr *)buf)->kind = kind;
	if (lm_reactor_add_defer(s->r, &d, emit_burst_cb, &b) < 0)
		return -EIO;
	while (b.done < n && !b.err) {
		bool open = emit_window_open(s, *sent);
		if (open)
			lm_source_set_enabled(d, true);
		if (lm_reactor_run_once(s->r, open ? 0 : 1000000) < 0) {
			b.err = -EIO;
			break;
		}
	}
	lm_source_free(d);
	return b.err;
}

static int srv_emit_throughput(struct srv *s)
{
	struct bench_ctx *x = s->x;
	char *buf = calloc(1, x->o->size);
	uint64_t sent = 0, msgs = 0;
	if (!buf)
		return -ENOMEM;
	if (srv_wait_subscribers(s, buf) < 0)
		return -EIO;
	if (srv_emit_stream(s, buf, BENCH_WARMUP, &sent, x->o->warmup) < 0)
		return -EIO;
	uint64_t cpu0 = bench_cpu_ns(), t0 = bench_now();
	while (bench_more(x, msgs, t0)) {
		uint64_t n = x->o->count && x->o->count - msgs < 256 ? x->o->count - msgs : 256;
		if (srv_emit_stream(s, buf, BENCH_DATA, &sent, n) < 0)
			return -EIO;
		msgs += n;
		__atomic_fetch_add(&x->shm->progress, n, __ATOMIC_RELAXED);
	}
	if (srv_emit_stream(s, buf, BENCH_STOP, &sent, 1) < 0)
		return -EIO;
	/* Until every subscriber has everything: the queue drains meanwhile. */
	while (__atomic_load_n(&x->shm->fan_last, __ATOMIC_ACQUIRE) < sent * (uint64_t)x->c->peers)
		if (lm_reactor_run_once(s->r, 1000000) < 0)
			return -EIO;
	bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
	return 0;
}

/* Tell the parent how many clients are in, until the idle ones all are. */
static void srv_count(lm_source *src, uint64_t expirations, void *userdata)
{
	struct srv *s = userdata;
	size_t n = lm_server_client_count(s->s);
	__atomic_store_n(&s->x->shm->accepted, n, __ATOMIC_RELAXED);
	if (n >= (size_t)s->x->o->idle_clients)
		lm_source_free(src);
}

int bench_service_server(struct bench_ctx *x)
{
	struct srv s = {.x = x};
	s.emit = (struct bench_emit){.fn = srv_emit_now, .arg = &s};
	char ep[128];
	int r;

	if (new_reactor(x, &s.r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	struct lm_server_options so = {.transport.max_message = svc_max_message(x)};
	r = lm_server_new(&s.s, s.r, ep, &so);
	if (r >= 0)
		r = lm_server_add_methods(s.s, srv_methods, 1, &s);
	if (r >= 0)
		r = lm_server_add_signal(s.s, SIGNAL_NAME, LM_OVERFLOW_DISCONNECT);
	if (r < 0) {
		bench_fail(x->shm, 1, "lm_server_new(%s): %s", ep, strerror(-r));
		return 1;
	}
	if (write(x->ready_fd, "R", 1) != 1)
		return 1;
	if (x->c->impl == IMPL_EMIT) {
		r = srv_emit_throughput(&s);
	} else if (x->c->mode == MODE_SIGNAL) {
		r = srv_signal(&s);
	} else if (x->c->mode == MODE_IDLE) {
		/* Messages of --size bytes, as in every mode. */
		char *buf = calloc(1, x->o->size);
		r = buf ? srv_wait_subscribers(&s, buf) : -ENOMEM;
		if (r >= 0)
			__atomic_fetch_add(&x->shm->progress, 1, __ATOMIC_RELAXED);
		if (r >= 0)
			r = lm_reactor_add_io(s.r, NULL, x->ctl_fd, LM_IO_IN, srv_ctl, &s);
		if (r >= 0)
			r = lm_reactor_run(s.r);
		if (r >= 0)
			r = srv_emit(&s, buf, BENCH_STOP);
		free(buf);
	} else {
		if (x->o->idle_clients && x->c->mode == MODE_CALL)
			r = lm_reactor_add_timer(s.r, NULL, 5000000, 5000000, srv_count, &s);
		if (r >= 0)
			r = lm_reactor_run(s.r);
	}
	if (r >= 0)
		srv_drain(&s);
	lm_server_free(s.s);
	lm_reactor_free(s.r);
	if (r < 0 && !x->shm->failed)
		bench_fail(x->shm, 2, "service server: %s", strerror(-r));
	return r < 0 || x->shm->failed ? 1 : 0;
}

/* ---- client: calls and subscriptions behind the blocking bench_io ---- */

struct pending {
	struct pending *next;
	size_t len;
	char data[];
};

struct cli {
	struct bench_ctx *x;
	lm_reactor *r;
	lm_client *c;
	char *buf;
	size_t cap;
	long got; /* >= 0 and have: a message waits in buf */
	bool have;
	int err;
	int reason; /* why it last disconnected */
	struct pending *head, **tail;
};

static void cli_store(struct cli *cl, const void *data, size_t len)
{
	if (len > cl->cap)
		len = cl->cap;
	if (!cl->have && !cl->head) {
		memcpy(cl->buf, data, len);
		cl->got = (long)len;
		cl->have = true;
		return;
	}
	struct pending *p = malloc(sizeof(*p) + len);
	if (!p)
		return;
	p->next = NULL;
	p->len = len;
	memcpy(p->data, data, len);
	*cl->tail = p;
	cl->tail = &p->next;
}

static void cli_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct cli *cl = userdata;
	if (reply->status < 0) {
		cl->err = reply->status;
		return;
	}
	if (cl->x->c->mode == MODE_CALL)
		cli_store(cl, reply->payload, reply->len);
}

static void cli_signal(lm_client *c, const char *signal, const void *payload, size_t len,
		       uint64_t dropped, void *userdata)
{
	struct cli *cl = userdata;
	if (dropped)
		cl->err = -ENOBUFS;
	cli_store(cl, payload, len);
}

static int cli_send(void *p, const void *buf, size_t len)
{
	struct cli *cl = p;
	for (;;) {
		if (cl->err)
			return cl->err;
		int r = lm_client_call(cl->c, "Echo", buf, len, -1, cli_reply, cl);
		if (r != -ENOBUFS)
			return r;
		/* Pipelined: max_pending calls in flight, wait for a reply. */
		r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
}

static long cli_recv(void *p, void *buf, size_t cap)
{
	struct cli *cl = p;
	while (!cl->have) {
		if (cl->head) {
			struct pending *q = cl->head;
			cl->head = q->next;
			if (!cl->head)
				cl->tail = &cl->head;
			memcpy(cl->buf, q->data, q->len);
			cl->got = (long)q->len;
			cl->have = true;
			free(q);
			break;
		}
		if (cl->err)
			return cl->err;
		int r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
	long n = cl->got;
	if (buf != cl->buf)
		memcpy(buf, cl->buf, (size_t)n < cap ? (size_t)n : cap);
	cl->have = false;
	return n;
}

/* lm_sync: a round trip is one lm_client_call_sync(), so its reply is
 * taken in send and handed out by the recv that follows. */
static int sync_send(void *p, const void *buf, size_t len)
{
	struct cli *cl = p;
	struct lm_reply *reply = NULL;
	int r = lm_client_call_sync(cl->c, "Echo", buf, len, -1, &reply);
	if (r < 0)
		return r;
	cli_store(cl, reply->payload, reply->len);
	lm_reply_free(reply);
	return 0;
}

static int cli_flush(void *p)
{
	struct cli *cl = p;
	while (!cl->err && lm_client_pending(cl->c) > 0) {
		int r = lm_reactor_run_once(cl->r, -1);
		if (r < 0)
			return r;
	}
	return cl->err;
}

/* Receiving end of the emit throughput: count, and tell the emitter. */
static int cli_count(struct bench_ctx *x, const struct bench_io *io)
{
	struct cli *cl = io->p;
	uint64_t msgs = 0, cpu0 = 0, t0 = 0;
	struct bench_hdr h;
	for (;;) {
		long n = cli_recv(cl, cl->buf, cl->cap);
		if (n < (long)sizeof(h)) {
			bench_fail(x->shm, 2, "subscriber %d: %s", x->index,
				   n < 0 ? strerror((int)-n) : "short message");
			return 1;
		}
		memcpy(&h, cl->buf, sizeof(h));
		if (h.kind == BENCH_PROBE)
			continue;
		__atomic_fetch_add(&x->shm->fan_last, 1, __ATOMIC_RELEASE);
		if (h.kind == BENCH_DATA && !t0) {
			cpu0 = bench_cpu_ns();
			t0 = bench_now();
		}
		if (h.kind == BENCH_DATA)
			msgs++;
		if (h.kind == BENCH_STOP)
			break;
	}
	if (t0) {
		bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
		bench_add_window(x->shm, t0, bench_now());
		__atomic_fetch_add(&x->shm->msgs, msgs, __ATOMIC_RELAXED);
	}
	return 0;
}

static void cli_state(lm_client *c, enum lm_client_state st, int reason, void *userdata)
{
	struct cli *cl = userdata;

	if (st == LM_CLIENT_DISCONNECTED)
		cl->reason = reason;
}

int bench_service_client(struct bench_ctx *x)
{
	struct cli cl = {.x = x, .cap = x->o->size + 64};
	char ep[128];
	cl.tail = &cl.head;
	cl.buf = malloc(cl.cap);
	if (!cl.buf || new_reactor(x, &cl.r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	struct lm_client_options co = {.max_pending = 128,
				       .transport.max_message = svc_max_message(x)};
	int r = lm_client_new(&cl.c, cl.r, ep, &co);
	if (r >= 0 &&
	    (x->c->mode == MODE_SIGNAL || x->c->mode == MODE_IDLE || x->c->impl == IMPL_EMIT))
		r = lm_client_subscribe(cl.c, SIGNAL_NAME, cli_signal, &cl);
	if (r < 0) {
		bench_fail(x->shm, 2, "lm_client_new(%s): %s", ep, strerror(-r));
		return 1;
	}
	lm_client_set_state_cb(cl.c, cli_state, &cl);
	uint64_t t0 = bench_now();
	while (lm_client_get_state(cl.c) != LM_CLIENT_CONNECTED) {
		/* The client retries on its own; a kernel limit will not go away. */
		if (cl.reason == -EMFILE || bench_now() - t0 > 20000000000ull) {
			bench_connect_failed(x, ep, cl.reason ? cl.reason : -ETIMEDOUT);
			return 1;
		}
		lm_reactor_run_once(cl.r, 100000000);
	}
	/* Pipelined calls from outside the reactor: gathered, as lm_conn's are. */
	if (x->c->mode == MODE_THROUGHPUT)
		lm_client_cork(cl.c, true);
	struct bench_io io = {.send = x->c->impl == IMPL_SYNC ? sync_send : cli_send,
			      .recv = cli_recv,
			      .flush = cli_flush,
			      .p = &cl};
	int rc = x->c->impl == IMPL_EMIT ? cli_count(x, &io) : bench_client_run(x, &io);
	lm_client_free(cl.c);
	lm_reactor_free(cl.r);
	return rc;
}

/* ---- idle clients ---- */

struct crowd {
	int connected;
	int gone; /* disconnected after having been connected */
};

static void crowd_state(lm_client *c, enum lm_client_state state, int reason, void *userdata)
{
	struct crowd *cr = userdata;
	if (state == LM_CLIENT_CONNECTED)
		cr->connected++;
	else if (state == LM_CLIENT_DISCONNECTED)
		cr->gone++;
}

int bench_service_crowd(struct bench_ctx *x)
{
	struct crowd cr = {0};
	lm_reactor *r;
	char ep[128];
	int n = x->o->idle_clients;
	if (new_reactor(x, &r) < 0)
		return 1;
	bench_endpoint(x, ep, sizeof(ep));
	for (int i = 0; i < n; i++) {
		lm_client *c;
		int e = lm_client_new(&c, r, ep, NULL);
		if (e < 0) {
			bench_fail(x->shm, 1, "idle client %d: lm_client_new: %s", i, strerror(-e));
			return 1;
		}
		lm_client_set_state_cb(c, crowd_state, &cr);
		if (lm_client_get_state(c) == LM_CLIENT_CONNECTED)
			cr.connected++;
	}
	uint64_t t0 = bench_now();
	while (cr.connected < n) {
		if (bench_now() - t0 > 60000000000ull) {
			bench_fail(x->shm, 2, "idle clients: %d of %d connected after 60 s",
				   cr.connected, n);
			return 1;
		}
		if (lm_reactor_run_once(r, 100000000) < 0)
			return 1;
	}
	__atomic_store_n(&x->shm->crowd_ready, 1, __ATOMIC_RELEASE);
	/* Until the server goes away at the end of the case (the clients would
	 * reconnect forever: the process just ends). */
	while (cr.gone < n)
		if (lm_reactor_run_once(r, -1) < 0)
			return 1;
	_exit(0);
}

#else /* no service.h yet */

int bench_service_available(char *why, size_t size)
{
	snprintf(why, size, "services layer (service.h) not built yet");
	return -ENOSYS;
}

int bench_service_server(struct bench_ctx *x)
{
	return 1;
}

int bench_service_client(struct bench_ctx *x)
{
	return 1;
}

int bench_service_crowd(struct bench_ctx *x)
{
	return 1;
}

#endif
