/* SPDX-License-Identifier: MIT */
/* Services across processes: calls, signals, peer death, limits; per transport and backend. */
#include <dirent.h>
#include <errno.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/libmessage.h>

#include "hooks-internal.h"
#include "lm_test.h"

#define MS  (1000ll * 1000)
#define SEC (1000 * MS)

struct combo {
	enum lm_backend backend;
	char scheme[8]; /* inline: criterion copies params into another process */
};

static struct combo combos[] = {
    {LM_BACKEND_EPOLL, "unix"}, {LM_BACKEND_URING, "unix"}, {LM_BACKEND_EPOLL, "fifo"},
    {LM_BACKEND_URING, "fifo"}, {LM_BACKEND_EPOLL, "mq"},   {LM_BACKEND_URING, "mq"},
};

/*
 * Per combination: honour $LM_TEST_TRANSPORTS (a list of schemes to run),
 * and give mq room. Each mq connection is two queues charged to the uid's
 * RLIMIT_MSGQUEUE (800 KiB by default: about 4 connections), too little for
 * a test with several clients (a client that makes sync calls has two
 * connections); it is raised for this process where allowed, else mq skips.
 */
static void svc_setup(const struct combo *k)
{
	const char *only = getenv("LM_TEST_TRANSPORTS");
	const char *maxmsg = getenv("LM_MQ_MAXMSG"), *msgsize = getenv("LM_MQ_MSGSIZE");
	/* Up to 8 connections at once, two queues each of the shape the
	 * transport makes (10 x 2 KiB unless the environment says otherwise;
	 * the kernel counts ~100 bytes more per message), plus the listener. */
	const rlim_t slots = maxmsg && *maxmsg ? strtoul(maxmsg, NULL, 10) : 10;
	const rlim_t unit = msgsize && *msgsize ? strtoul(msgsize, NULL, 10) : 2048;
	const rlim_t need = 8 * 2 * slots * (unit + 128) + (16 << 10);
	struct rlimit rl;

	if (only && !strstr(only, k->scheme))
		cr_skip_test("transport %s not in $LM_TEST_TRANSPORTS", k->scheme);
	if (strcmp(k->scheme, "mq") != 0)
		return;
	cr_assert_eq(getrlimit(RLIMIT_MSGQUEUE, &rl), 0);
	if (rl.rlim_cur < need && rl.rlim_max >= need) {
		rl.rlim_cur = need;
		setrlimit(RLIMIT_MSGQUEUE, &rl);
	}
	if (rl.rlim_cur < need && setrlimit(RLIMIT_MSGQUEUE, &(struct rlimit){need, need}) < 0)
		cr_skip_test(
		    "mq: RLIMIT_MSGQUEUE (ulimit -q) is %lu KiB, shared by every process of "
		    "this uid, and cannot be raised here; these tests need %lu KiB",
		    (unsigned long)(rl.rlim_cur >> 10), (unsigned long)(need >> 10));
}

/* A test body run once per transport and backend, with `k` the combination. */
static void svc_fini(void);

#define SVC_TEST(name, ...)                                                             \
	static void svc_##name##_body(const struct combo *k);                           \
	ParameterizedTestParameters(svc, name)                                          \
	{                                                                               \
		return cr_make_param_array(struct combo, combos,                        \
					   sizeof(combos) / sizeof(combos[0]));         \
	}                                                                               \
	ParameterizedTest(struct combo *kp, svc, name, .timeout = 60, .fini = svc_fini, \
			  ##__VA_ARGS__)                                                \
	{                                                                               \
		svc_setup(kp);                                                          \
		svc_##name##_body(kp);                                                  \
	}                                                                               \
	static void svc_##name##_body(const struct combo *k)

/* ---- the server process ---- */

struct srv {
	lm_reactor *r;
	lm_server *s;
	int64_t base_fds;
	unsigned abandoned;
	bool stop;
	lm_call *out_call; /* emit_out: emit outside callbacks, then answer it */
	uint32_t out_count;
};

static void m_echo(lm_call *call, const void *p, size_t len, void *ud)
{
	lm_call_reply(call, p, len);
}

static void deferred_fire(lm_source *src, uint64_t exp, void *ud)
{
	lm_call *call = ud;

	lm_call_reply(call, "later", 5);
	lm_source_free(src);
}

static void m_defer(lm_call *call, const void *p, size_t len, void *ud)
{
	struct srv *v = ud;

	cr_assert_eq(lm_reactor_add_timer(v->r, NULL, 50 * MS, 0, deferred_fire, call), 0);
}

static void m_blob(lm_call *call, const void *p, size_t len, void *ud)
{
	static char blob[60 << 10];

	lm_call_reply(call, blob, sizeof(blob));
}

static void m_fail(lm_call *call, const void *p, size_t len, void *ud)
{
	lm_call_error(call, "test.Failed", "it failed on purpose");
}

static void on_abandoned(lm_call *call, void *ud)
{
	struct srv *v = ud;

	v->abandoned++;
}

/* Never replies; the call is freed when its client goes. */
static void m_hang(lm_call *call, const void *p, size_t len, void *ud)
{
	lm_call_set_abandoned_cb(call, on_abandoned, ud);
}

/* Emit payload-given count of "tick" signals, each carrying its number. */
static void m_emit(lm_call *call, const void *p, size_t len, void *ud)
{
	struct srv *v = ud;
	uint32_t n = 0, seq;
	int reached = 0;

	memcpy(&n, p, len < 4 ? len : 4);
	for (seq = 0; seq < n; seq++)
		reached = lm_server_emit(v->s, "tick", &seq, sizeof(seq));
	lm_call_reply(call, &reached, sizeof(reached));
}

/* Emit payload-given count of "tick" signals from the server's loop, outside
 * any callback (where a fan-out is written at once, not gathered). */
static void m_emit_out(lm_call *call, const void *p, size_t len, void *ud)
{
	struct srv *v = ud;

	v->out_count = 0;
	memcpy(&v->out_count, p, len < 4 ? len : 4);
	v->out_call = call;
}

/* The emissions m_emit_out asked for. The answer: the subscribers reached,
 * summed over them, and how many writes the fan-out ring made. */
static void emit_outside(struct srv *v)
{
	uint64_t w0 = lm__reactor_fanout_writes(v->r);
	int64_t out[2] = {0, 0};

	for (uint32_t seq = 0; seq < v->out_count; seq++)
		out[0] += lm_server_emit(v->s, "tick", &seq, sizeof(seq));
	out[1] = (int64_t)(lm__reactor_fanout_writes(v->r) - w0);
	lm_call_reply(v->out_call, out, sizeof(out));
	v->out_call = NULL;
}

/* A flood of signals from a timer, a batch per millisecond; the call is
 * answered when all are out. Payload: u32 count, u32 batch, signal name. */
struct flood {
	struct srv *v;
	lm_call *call;
	uint32_t next, count, batch;
	char signal[16];
};

static void flood_tick(lm_source *src, uint64_t exp, void *ud)
{
	struct flood *f = ud;

	for (uint32_t i = 0; i < f->batch && f->next < f->count; i++, f->next++)
		lm_server_emit(f->v->s, f->signal, &f->next, sizeof(f->next));
	if (f->next == f->count) {
		lm_call_reply(f->call, NULL, 0);
		lm_source_free(src);
		free(f);
	}
}

static void m_flood(lm_call *call, const void *p, size_t len, void *ud)
{
	struct flood *f = calloc(1, sizeof(*f));

	cr_assert(len > 8 && len < 8 + sizeof(f->signal));
	f->v = ud;
	f->call = call;
	memcpy(&f->count, p, 4);
	memcpy(&f->batch, (const char *)p + 4, 4);
	memcpy(f->signal, (const char *)p + 8, len - 8);
	cr_assert_eq(lm_reactor_add_timer(f->v->r, NULL, MS, MS, flood_tick, f), 0);
}

static int64_t rss_kib(void)
{
	char line[256];
	long long kib = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* Clients, fds over the baseline, calls abandoned, RSS in KiB. */
static void m_stats(lm_call *call, const void *p, size_t len, void *ud)
{
	struct srv *v = ud;
	int64_t st[4] = {(int64_t)lm_server_client_count(v->s), lm_test_fd_count() - v->base_fds,
			 v->abandoned, rss_kib()};

	lm_call_reply(call, st, sizeof(st));
}

/* Counts the calls that arrive with NO_REPLY ([0]) and without ([1]); a
 * call with payload "get" answers the two counts. */
static void m_note(lm_call *call, const void *p, size_t len, void *ud)
{
	static int64_t seen[2];

	if (len == 3 && memcmp(p, "get", 3) == 0) {
		lm_call_reply(call, seen, sizeof(seen));
		return;
	}
	seen[lm_call_no_reply(call) ? 0 : 1]++;
	cr_assert_eq(lm_call_reply(call, "ok", 2), 0, "answering a NO_REPLY call frees it");
}

static const struct lm_method test_methods[] = {
    {"echo", m_echo},         {"defer", m_defer}, {"fail", m_fail},   {"hang", m_hang},
    {"emit", m_emit},         {"stats", m_stats}, {"flood", m_flood}, {"blob", m_blob},
    {"emit_out", m_emit_out}, {"note", m_note},
};

static void on_term(lm_source *src, const struct signalfd_siginfo *si, void *ud)
{
	struct srv *v = ud;

	v->stop = true;
	lm_reactor_stop(lm_source_get_reactor(src), 0);
}

/* The endpoint name is unique per test process: mq queue names are global,
 * not inside the private runtime directory. Set before any fork. */
static char ep_name[32];

static void endpoint_of(char *buf, size_t size, const struct combo *k)
{
	if (!ep_name[0])
		snprintf(ep_name, sizeof(ep_name), "svctest%d", (int)getpid());
	snprintf(buf, size, "%s:%s", k->scheme, ep_name);
}

/* After every test, whatever its outcome: message queues are global, and a
 * test that failed before stop_server() leaves its server's listener queue
 * (and maybe connection queues) behind. Their names carry ep_name. */
static void svc_fini(void)
{
	struct dirent *e;
	DIR *d;

	if (!ep_name[0] || !(d = opendir("/dev/mqueue")))
		return;
	while ((e = readdir(d))) {
		const char *at = strstr(e->d_name, ep_name);
		char path[300];

		/* svctest12 must not match svctest123: the name ends there or
		 * goes on with a '.'. */
		if (!at || (at[strlen(ep_name)] && at[strlen(ep_name)] != '.'))
			continue;
		snprintf(path, sizeof(path), "/%s", e->d_name);
		mq_unlink(path);
	}
	closedir(d);
}

/* Run a test server in a child; returns its pid once it serves. Skips the
 * test if the transport is not available here. */
static pid_t start_server(const struct combo *k, const struct lm_server_options *opts)
{
	int pfd[2];
	pid_t pid;
	char ep[64], status = 0;

	endpoint_of(ep, sizeof(ep), k);
	cr_assert_eq(pipe(pfd), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct srv v = {0};
		struct lm_reactor_options ro = {.backend = k->backend};
		int err;

		close(pfd[0]);
		if (lm_reactor_new(&v.r, &ro) < 0)
			_exit(2);
		lm_reactor_add_signal(v.r, NULL, SIGTERM, on_term, &v);
		v.base_fds = lm_test_fd_count();
		err = lm_server_new(&v.s, v.r, ep, opts);
		if (err < 0) {
			status = (char)-err;
			if (write(pfd[1], &status, 1) != 1)
				_exit(3);
			_exit(1);
		}
		v.base_fds = lm_test_fd_count();
		lm_server_add_methods(v.s, test_methods,
				      sizeof(test_methods) / sizeof(test_methods[0]), &v);
		lm_server_add_signal(v.s, "tick", LM_OVERFLOW_DROP_OLDEST);
		lm_server_add_signal(v.s, "strict", LM_OVERFLOW_DISCONNECT);
		if (write(pfd[1], &status, 1) != 1)
			_exit(3);
		close(pfd[1]);
		/* lm_reactor_run(), with room between iterations for emit_out
		 * (and, like it, going on after a signal handler ran). */
		while (!v.stop) {
			int ret = lm_reactor_run_once(v.r, -1);

			if (ret < 0 && ret != -EINTR)
				_exit(4);
			if (v.out_call)
				emit_outside(&v);
		}
		lm_server_free(v.s);
		lm_reactor_free(v.r);
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &status, 1), 1, "server child died");
	close(pfd[0]);
	if (status) {
		waitpid(pid, NULL, 0);
		if (status == EPERM && !strcmp(k->scheme, "mq") && k->backend == LM_BACKEND_URING)
			cr_skip_test("the io_uring backend cannot watch message queue fds here: %s",
				     strerror(status));
		if (status == EPROTONOSUPPORT || status == ENOENT || status == ENOSYS ||
		    status == EAFNOSUPPORT)
			cr_skip_test("transport %s not available: %s", k->scheme, strerror(status));
		cr_assert_fail("lm_server_new(%s): %s", ep, strerror(status));
	}
	return pid;
}

static void stop_server(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
}

/* ---- the client side ---- */

static lm_reactor *reactor_for(const struct combo *k)
{
	return lm_test_reactor(k->backend);
}

static lm_client *client_for(const struct combo *k, lm_reactor *r,
			     const struct lm_client_options *opts)
{
	lm_client *c = NULL;
	char ep[64];

	endpoint_of(ep, sizeof(ep), k);
	cr_assert_eq(lm_client_new(&c, r, ep, opts), 0);
	return c;
}

/* Run r until *flag or the deadline; false on timeout. */
static bool run_until(lm_reactor *r, const bool *flag, int64_t timeout_ns)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!*flag) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * SEC + (t.tv_nsec - t0.tv_nsec) > timeout_ns)
			return false;
		lm_reactor_run_once(r, 20 * MS);
	}
	return true;
}

static void on_state(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	bool *connected = ud;

	*connected = st == LM_CLIENT_CONNECTED;
}

static void wait_connected(lm_reactor *r, lm_client *c)
{
	bool connected = lm_client_get_state(c) == LM_CLIENT_CONNECTED;

	lm_client_set_state_cb(c, on_state, &connected);
	cr_assert(run_until(r, &connected, 5 * SEC), "client never connected");
	lm_client_set_state_cb(c, NULL, NULL);
}

struct result {
	bool done;
	int status;
	char payload[64];
	size_t len;
	char error_name[64];
	int order;
};

static int completions;

static void on_reply(lm_client *c, const struct lm_reply *reply, void *ud)
{
	struct result *res = ud;

	cr_assert_not(res->done, "reply callback ran twice");
	res->done = true;
	res->status = reply->status;
	res->order = ++completions;
	if (reply->status == 0) {
		res->len = reply->len;
		memcpy(res->payload, reply->payload, reply->len < 64 ? reply->len : 64);
	}
	if (reply->error_name)
		snprintf(res->error_name, sizeof(res->error_name), "%s", reply->error_name);
}

static void stats(lm_client *c, int64_t st[4])
{
	struct lm_reply *reply;

	cr_assert_eq(lm_client_call_sync(c, "stats", NULL, 0, 5 * SEC, &reply), 0);
	cr_assert_eq(reply->len, 4 * sizeof(int64_t));
	memcpy(st, reply->payload, 4 * sizeof(int64_t));
	lm_reply_free(reply);
}

/* ---- the tests ---- */

SVC_TEST(calls_sync_async_deferred_error_unknown)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	struct result a = {0}, d = {0}, f = {0}, u = {0};
	struct lm_reply *reply;

	wait_connected(r, c);
	/* sync */
	cr_assert_eq(lm_client_call_sync(c, "echo", "hello", 5, -1, &reply), 0);
	cr_assert_eq(reply->len, 5);
	cr_assert(memcmp(reply->payload, "hello", 5) == 0);
	lm_reply_free(reply);
	cr_assert_eq(lm_client_call_sync(c, "fail", NULL, 0, -1, &reply), -EREMOTEIO);
	cr_assert_str_eq(reply->error_name, "test.Failed");
	cr_assert_str_eq(reply->error_message, "it failed on purpose");
	lm_reply_free(reply);
	cr_assert_eq(lm_client_call_sync(c, "nope", NULL, 0, -1, &reply), -EREMOTEIO);
	cr_assert_str_eq(reply->error_name, "lm.UnknownMethod");
	lm_reply_free(reply);
	/* async: the deferred one completes last */
	completions = 0;
	cr_assert_eq(lm_client_call(c, "defer", NULL, 0, -1, on_reply, &d), 0);
	cr_assert_eq(lm_client_call(c, "echo", "x", 1, -1, on_reply, &a), 0);
	cr_assert_eq(lm_client_call(c, "fail", NULL, 0, -1, on_reply, &f), 0);
	cr_assert_eq(lm_client_call(c, "nope", NULL, 0, -1, on_reply, &u), 0);
	cr_assert_eq(lm_client_pending(c), 4);
	cr_assert(run_until(r, &d.done, 5 * SEC));
	cr_assert(a.done && f.done && u.done);
	cr_assert_eq(a.status, 0);
	cr_assert_eq(a.len, 1);
	cr_assert_eq(d.status, 0);
	cr_assert_eq(d.len, 5);
	cr_assert(memcmp(d.payload, "later", 5) == 0);
	cr_assert_eq(d.order, 4, "the deferred reply came after the others");
	cr_assert_eq(f.status, -EREMOTEIO);
	cr_assert_str_eq(f.error_name, "test.Failed");
	cr_assert_eq(u.status, -EREMOTEIO);
	cr_assert_str_eq(u.error_name, "lm.UnknownMethod");
	cr_assert_eq(lm_client_pending(c), 0);

	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

SVC_TEST(corked_calls_pipelined)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	static struct result res[50];
	char msg[16];

	cr_assert_eq(lm_client_cork(NULL, true), -EINVAL);
	cr_assert_eq(lm_client_flush(NULL), -EINVAL);
	cr_assert_eq(lm_client_cork(c, true), 0);
	wait_connected(r, c);
	completions = 0;
	memset(res, 0, sizeof(res));
	for (int i = 0; i < 50; i++) {
		snprintf(msg, sizeof(msg), "call %d", i);
		cr_assert_eq(lm_client_call(c, "echo", msg, strlen(msg), -1, on_reply, &res[i]), 0);
	}
	/* -EAGAIN: the kernel took what it had room for (mq's smallest queues
	 * hold two units), and the rest leaves as the server reads. */
	int fr = lm_client_flush(c);
	cr_assert(fr == 0 || fr == -EAGAIN, "flush: %d", fr);
	cr_assert(run_until(r, &res[49].done, 5 * SEC));
	for (int i = 0; i < 50; i++) {
		snprintf(msg, sizeof(msg), "call %d", i);
		cr_assert_eq(res[i].status, 0);
		cr_assert_eq(res[i].len, strlen(msg));
		cr_assert(!memcmp(res[i].payload, msg, res[i].len), "reply %d is wrong", i);
		cr_assert_eq(res[i].order, i + 1, "replies out of order");
	}
	/* Uncorking writes what was gathered; the reactor's next round would too. */
	cr_assert_eq(lm_client_call(c, "echo", "last", 4, -1, on_reply, &res[0]), 0);
	res[0].done = false;
	cr_assert_eq(lm_client_cork(c, false), 0);
	cr_assert(run_until(r, &res[0].done, 5 * SEC));
	cr_assert_eq(res[0].len, 4);
	/* No connection: nothing to flush. */
	stop_server(pid);
	for (int i = 0; i < 250 && lm_client_get_state(c) != LM_CLIENT_DISCONNECTED; i++)
		lm_reactor_run_once(r, 20 * MS);
	cr_assert_eq(lm_client_get_state(c), LM_CLIENT_DISCONNECTED);
	cr_assert_eq(lm_client_flush(c), -ENOTCONN);
	lm_client_free(c);
	lm_reactor_free(r);
}

SVC_TEST(introspect)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	struct lm_reply *reply;

	char want[512];

	cr_assert_eq(lm_client_call_sync(c, "lm.Introspect", NULL, 0, -1, &reply), 0);
	snprintf(want, sizeof(want), "server %s\n%s", ep_name,
		 (const char *)reply->payload + 8 + strlen(ep_name));
	cr_assert_str_eq(want, (const char *)reply->payload);
	cr_assert_str_eq(
	    (const char *)reply->payload + 8 + strlen(ep_name),
	    "method echo\nmethod defer\nmethod fail\nmethod hang\n"
	    "method emit\nmethod stats\nmethod flood\nmethod blob\nmethod emit_out\nmethod note\n"
	    "signal tick drop-oldest\n"
	    "signal strict disconnect\n");
	lm_reply_free(reply);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

SVC_TEST(timeout_and_pending_limit)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	static struct result res[129];
	struct result t = {0};
	struct timespec t0, t1;
	int64_t st[4];

	memset(res, 0, sizeof(res));
	wait_connected(r, c);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(lm_client_call(c, "hang", NULL, 0, 100 * MS, on_reply, &t), 0);
	cr_assert(run_until(r, &t.done, 5 * SEC));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(t.status, -ETIMEDOUT);
	int64_t el = (t1.tv_sec - t0.tv_sec) * SEC + (t1.tv_nsec - t0.tv_nsec);
	cr_assert(el >= 90 * MS && el < 2 * SEC, "timed out after %lld ns", (long long)el);

	for (int i = 0; i < 127; i++)
		cr_assert_eq(lm_client_call(c, "hang", NULL, 0, 0, on_reply, &res[i]), 0);
	/* Replies come in order on a connection: once this one is back, the
	 * server holds the 127 (an mq queue takes 10 units at a time, and what
	 * waits in the client when it is freed never reaches the server). */
	{
		struct result echo = {0};

		cr_assert_eq(lm_client_call(c, "echo", NULL, 0, 0, on_reply, &echo), 0);
		cr_assert(run_until(r, &echo.done, 5 * SEC));
		cr_assert_eq(echo.status, 0);
	}
	cr_assert_eq(lm_client_call(c, "hang", NULL, 0, 0, on_reply, &res[127]), 0);
	cr_assert_eq(lm_client_call(c, "hang", NULL, 0, 0, on_reply, &res[128]), -ENOBUFS);
	cr_assert_eq(lm_client_pending(c), 128);
	/* The server holds them; freeing the client frees them there too. */
	lm_client_free(c);
	for (int i = 0; i < 128; i++)
		cr_assert_eq(res[i].status, -ECANCELED);
	cr_assert_not(res[128].done);
	c = client_for(k, r, NULL);
	wait_connected(r, c);
	for (int tries = 0; tries < 100; tries++) {
		stats(c, st);
		if (st[0] == 2 && st[2] == 129)
			break;
		usleep(10000);
	}
	/* The new client's connection and the private one of its sync calls. */
	cr_assert_eq(st[0], 2, "clients on the server: %lld", (long long)st[0]);
	cr_assert_eq(st[2], 129, "calls abandoned: %lld", (long long)st[2]);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

static void on_attempt(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	cr_assert_eq(st, LM_CLIENT_DISCONNECTED);
	*(int *)ud = reason;
}

SVC_TEST(call_while_server_gone)
{
	lm_test_runtime_dir();
	lm_reactor *r = reactor_for(k);
	struct lm_client_options o = {.reconnect_min_ns = 20 * MS, .reconnect_max_ns = 50 * MS};
	lm_client *c = client_for(k, r, &o);
	struct lm_reply *reply;
	struct result res = {0};
	int reason = 0;
	pid_t pid;

	cr_assert_eq(lm_client_get_state(c), LM_CLIENT_DISCONNECTED);
	/* Failed attempts are told, with why. */
	lm_client_set_state_cb(c, on_attempt, &reason);
	for (int i = 0; i < 100 && reason == 0; i++)
		lm_reactor_run_once(r, 20 * MS);
	cr_assert(reason == -ENOENT || reason == -ECONNREFUSED, "reason %d", reason);
	lm_client_set_state_cb(c, NULL, NULL);
	cr_assert_eq(lm_client_call(c, "echo", NULL, 0, -1, on_reply, &res), -ENOTCONN);
	/* A sync call waits for the server within its timeout; none comes. */
	cr_assert_eq(lm_client_call_sync(c, "echo", NULL, 0, 200 * MS, &reply), -ENOTCONN);
	cr_assert_not(res.done);
	/* The server appears: the client connects by itself. */
	pid = start_server(k, NULL);
	wait_connected(r, c);
	cr_assert_eq(lm_client_call_sync(c, "echo", "a", 1, -1, &reply), 0);
	lm_reply_free(reply);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

struct watcher {
	lm_client *c;
	unsigned got, subscribed_again;
	uint32_t last;
	uint64_t dropped;
	bool disconnected, reconnected;
	bool ok;
	bool disorder; /* a tick not one after the last */
};

static void on_tick(lm_client *c, const char *signal, const void *p, size_t len, uint64_t dropped,
		    void *ud)
{
	struct watcher *w = ud;
	uint32_t seq;

	cr_assert_str_eq(signal, "tick");
	cr_assert_eq(len, 4);
	memcpy(&seq, p, 4);
	if (w->got && seq != w->last + 1)
		w->disorder = true;
	w->got++;
	w->dropped += dropped;
	w->last = seq;
}

static void watcher_state(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	struct watcher *w = ud;

	if (st == LM_CLIENT_DISCONNECTED)
		w->disconnected = true;
	if (st == LM_CLIENT_CONNECTED && w->disconnected)
		w->reconnected = true;
}

/* An echo from each watcher's client, answered: what each sent before it on
 * its connection (a SUBSCRIBE) has reached the server. Async, on the
 * client's own connection: a sync call goes over another one. */
static void echo_each(lm_reactor *r, struct watcher *w, int n)
{
	for (int i = 0; i < n; i++) {
		struct result res = {0};

		cr_assert_eq(lm_client_call(w[i].c, "echo", NULL, 0, 5 * SEC, on_reply, &res), 0);
		cr_assert(run_until(r, &res.done, 5 * SEC), "echo %d", i);
		cr_assert_eq(res.status, 0, "echo %d: %s", i, strerror(-res.status));
	}
}

SVC_TEST(server_killed_pending_calls_reconnect_resubscribe)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	struct lm_client_options o = {.reconnect_min_ns = 20 * MS, .reconnect_max_ns = 100 * MS};
	struct watcher w[3] = {0};
	struct result res[3] = {0}, e = {0};
	struct timespec t0, t1;
	uint32_t one = 1;
	bool all;

	for (int i = 0; i < 3; i++) {
		w[i].c = client_for(k, r, &o);
		lm_client_set_state_cb(w[i].c, watcher_state, &w[i]);
		cr_assert_eq(lm_client_subscribe(w[i].c, "tick", on_tick, &w[i]), 0);
		wait_connected(r, w[i].c);
		lm_client_set_state_cb(w[i].c, watcher_state, &w[i]);
		cr_assert_eq(lm_client_call(w[i].c, "hang", NULL, 0, 20 * SEC, on_reply, &res[i]),
			     0);
	}
	/* The subscriptions are in once the server has answered a later call
	 * on the same connection (async: a sync call has its own). */
	echo_each(r, w, 3);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert(run_until(r, &res[2].done, 5 * SEC));
	cr_assert(run_until(r, &res[0].done, 1 * SEC) && run_until(r, &res[1].done, 1 * SEC));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(res[i].status, -ECONNRESET);
		cr_assert(w[i].disconnected);
	}
	cr_assert_lt((t1.tv_sec - t0.tv_sec) * SEC + (t1.tv_nsec - t0.tv_nsec), 2 * SEC,
		     "pending calls completed at once, not at their timeout");

	pid = start_server(k, NULL);
	for (int i = 0; i < 3; i++)
		cr_assert(run_until(r, &w[i].reconnected, 5 * SEC), "client %d did not reconnect",
			  i);
	/* Make sure each SUBSCRIBE reached the server: a call after it. */
	echo_each(r, w, 3);
	/* One emit reaches 3 subscribers, each exactly once. */
	cr_assert_eq(lm_client_call(w[0].c, "emit", &one, 4, -1, on_reply, &e), 0);
	cr_assert(run_until(r, &e.done, 5 * SEC));
	cr_assert_eq(e.status, 0);
	cr_assert_eq(*(int *)e.payload, 3, "subscribers reached: %d", *(int *)e.payload);
	for (int spin = 0; spin < 50; spin++) {
		all = w[0].got && w[1].got && w[2].got;
		if (all)
			break;
		lm_reactor_run_once(r, 20 * MS);
	}
	lm_reactor_run_once(r, 50 * MS);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(w[i].got, 1, "subscriber %d got %u signals", i, w[i].got);
		lm_client_free(w[i].c);
	}
	lm_reactor_free(r);
	stop_server(pid);
}

/* A signal emitted outside the server's callbacks reaches every subscriber,
 * in order; to these five unix subscribers it is written by the fan-out
 * ring (one io_uring submission each), never on mq, on fifo as the kernel
 * allows (a named FIFO refuses: none). */
SVC_TEST(signals_outside_callbacks_fan_out)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	struct watcher w[5] = {0};
	struct result e = {0};
	uint32_t count = 10;
	int64_t out[2];

	for (int i = 0; i < 5; i++) {
		w[i].c = client_for(k, r, NULL);
		cr_assert_eq(lm_client_subscribe(w[i].c, "tick", on_tick, &w[i]), 0);
		wait_connected(r, w[i].c);
	}
	/* The subscriptions are in once the server has answered a later call
	 * on the same connection (async: a sync call has its own). */
	echo_each(r, w, 5);
	cr_assert_eq(lm_client_call(w[0].c, "emit_out", &count, 4, 5 * SEC, on_reply, &e), 0);
	cr_assert(run_until(r, &e.done, 5 * SEC), "emit_out");
	cr_assert_eq(e.status, 0, "emit_out: %s", strerror(-e.status));
	cr_assert_eq(e.len, sizeof(out));
	memcpy(out, e.payload, sizeof(out));
	cr_assert_eq(out[0], 5 * count, "reached %d", (int)out[0]);
	if (!strcmp(k->scheme, "unix"))
		cr_assert_eq(out[1], lm_test_fanout_ring() ? 5 * count : 0, "%d ring writes",
			     (int)out[1]);
	else if (!strcmp(k->scheme, "mq"))
		cr_assert_eq(out[1], 0);
	else
		cr_assert(out[1] == 0 || out[1] == 5 * count, "%d ring writes", (int)out[1]);
	for (int i = 0; i < 5; i++) {
		for (int t = 0; t < 250 && w[i].got < count; t++)
			lm_reactor_run_once(r, 20 * MS);
		cr_assert_eq(w[i].got, count, "subscriber %d: %u of %u", i, w[i].got, count);
		cr_assert_eq(w[i].last, count - 1);
		cr_assert_not(w[i].disorder, "subscriber %d: out of order", i);
		cr_assert_eq(w[i].dropped, 0);
	}
	for (int i = 0; i < 5; i++)
		lm_client_free(w[i].c);
	lm_reactor_free(r);
	stop_server(pid);
}

SVC_TEST(client_killed_server_back_to_baseline)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	int64_t before[4], after[4];
	int pfd[2];
	pid_t child;
	char b;

	wait_connected(r, c);
	stats(c, before);
	cr_assert_eq(pipe(pfd), 0);
	child = lm_test_fork();
	if (child == 0) {
		lm_reactor *r2;
		lm_client *c2;
		struct result res[10];
		struct lm_reactor_options ro = {.backend = k->backend};
		char ep[64];
		bool never = false;

		close(pfd[0]);
		endpoint_of(ep, sizeof(ep), k);
		if (lm_reactor_new(&r2, &ro) < 0 || lm_client_new(&c2, r2, ep, NULL) < 0)
			_exit(1);
		lm_client_subscribe(c2, "tick", on_tick, &(struct watcher){0});
		for (int i = 0; i < 10; i++)
			lm_client_call(c2, "hang", NULL, 0, 0, on_reply, &res[i]);
		struct lm_reply *reply;
		if (lm_client_call_sync(c2, "echo", NULL, 0, -1, &reply) != 0)
			_exit(1);
		/* The async calls went first on the other connection: wait a little. */
		run_until(r2, &never, 200 * MS);
		if (write(pfd[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &b, 1), 1);
	close(pfd[0]);
	stats(c, after);
	cr_assert_eq(after[0], before[0] + 2, "the child's two connections");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	for (int tries = 0; tries < 200; tries++) {
		stats(c, after);
		if (after[0] == before[0] && after[1] == before[1])
			break;
		usleep(10000);
	}
	cr_assert_eq(after[0], before[0], "clients: %lld then %lld", (long long)before[0],
		     (long long)after[0]);
	cr_assert_eq(after[1], before[1], "server fds: %lld then %lld", (long long)before[1],
		     (long long)after[1]);
	cr_assert_eq(after[2], before[2] + 10, "the dead client's 10 calls were abandoned");
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

struct seq_check {
	uint32_t next; /* the seq expected next */
	uint64_t got, dropped;
	bool in_order, done;
	uint32_t count;
};

static void on_seq(lm_client *c, const char *signal, const void *p, size_t len, uint64_t dropped,
		   void *ud)
{
	struct seq_check *q = ud;
	uint32_t seq;

	memcpy(&seq, p, 4);
	q->dropped += dropped;
	/* In order, and a gap only where a DROPPED notice says how long it is. */
	if (seq != q->next + dropped)
		q->in_order = false;
	q->next = seq + 1;
	q->got++;
	if (seq == q->count - 1)
		q->done = true;
}

static void flood(lm_client *c, lm_reactor *r, uint32_t count, const char *signal)
{
	char arg[24];
	struct result res = {0};

	memcpy(arg, &count, 4);
	memcpy(arg + 4, &(uint32_t){100}, 4); /* 100 per ms */
	memcpy(arg + 8, signal, strlen(signal));
	cr_assert_eq(lm_client_call(c, "flood", arg, 8 + strlen(signal), 60 * SEC, on_reply, &res),
		     0);
	cr_assert(run_until(r, &res.done, 50 * SEC), "flood did not finish");
	cr_assert_eq(res.status, 0);
}

/* A subscriber in a child that is stopped while signals flow. */
static pid_t slow_subscriber(const struct combo *k, const char *signal, uint32_t count, int *rfd)
{
	int ready[2], result[2];
	pid_t pid;
	char b;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(result), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct lm_reactor_options ro = {.backend = k->backend};
		struct seq_check q = {.in_order = true, .count = count};
		struct lm_reply *reply;
		lm_reactor *r;
		lm_client *c;
		char ep[64];

		endpoint_of(ep, sizeof(ep), k);
		if (lm_reactor_new(&r, &ro) < 0 || lm_client_new(&c, r, ep, NULL) < 0 ||
		    lm_client_subscribe(c, signal, on_seq, &q) < 0)
			_exit(1);
		while (lm_client_get_state(c) != LM_CLIENT_CONNECTED)
			lm_reactor_run_once(r, -1);
		/* The SUBSCRIBE is in once a later call on the connection is answered. */
		struct result res = {0};
		lm_client_call(c, "echo", NULL, 0, -1, on_reply, &res);
		while (!res.done)
			lm_reactor_run_once(r, -1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		while (!q.done && lm_client_get_state(c) == LM_CLIENT_CONNECTED)
			lm_reactor_run_once(r, 100 * MS);
		(void)reply;
		if (write(result[1], &q, sizeof(q)) != sizeof(q))
			_exit(1);
		_exit(0);
	}
	close(ready[1]);
	close(result[1]);
	cr_assert_eq(read(ready[0], &b, 1), 1);
	close(ready[0]);
	*rfd = result[0];
	return pid;
}

SVC_TEST(slow_subscriber_drop_oldest)
{
	lm_test_runtime_dir();
	struct lm_server_options so = {.transport.max_queue = 1 << 20};
	pid_t pid = start_server(k, &so);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	struct seq_check fast = {.in_order = true, .count = 100000}, slow;
	int64_t before[4], after[4];
	pid_t child;
	int rfd, st;

	cr_assert_eq(lm_client_subscribe(c, "tick", on_seq, &fast), 0);
	wait_connected(r, c);
	child = slow_subscriber(k, "tick", 100000, &rfd);
	stats(c, before);
	kill(child, SIGSTOP);
	flood(c, r, 100000, "tick");
	cr_assert(run_until(r, &fast.done, 20 * SEC), "fast subscriber got %llu",
		  (unsigned long long)fast.got);
	cr_assert_eq(fast.got, 100000);
	cr_assert_eq(fast.dropped, 0);
	cr_assert(fast.in_order);
	stats(c, after);
	/* The publisher holds at most its queue bound (1 MiB) per subscriber.
	 * (Not under ASan: its quarantine keeps freed memory resident.) */
#ifndef __SANITIZE_ADDRESS__
	cr_assert_lt(after[3] - before[3], 8 * 1024, "publisher RSS grew by %lld KiB",
		     (long long)(after[3] - before[3]));
#endif
	cr_assert_eq(after[0], before[0], "the slow subscriber stays connected");
	kill(child, SIGCONT);
	cr_assert_eq(read(rfd, &slow, sizeof(slow)), (ssize_t)sizeof(slow));
	close(rfd);
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(slow.done, "the slow subscriber saw the last signal");
	cr_assert(slow.in_order, "in order, gaps only where DROPPED said");
	cr_assert_gt(slow.dropped, 0, "the slow one was told it missed signals");
	cr_assert_eq(slow.got + slow.dropped, 100000, "got %llu + dropped %llu",
		     (unsigned long long)slow.got, (unsigned long long)slow.dropped);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

SVC_TEST(slow_subscriber_disconnect_policy)
{
	lm_test_runtime_dir();
	struct lm_server_options so = {.transport.max_queue = 64 << 10};
	pid_t pid = start_server(k, &so);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	int64_t before[4], after[4];
	pid_t child;
	int rfd;

	wait_connected(r, c);
	child = slow_subscriber(k, "strict", 20000, &rfd);
	stats(c, before);
	kill(child, SIGSTOP);
	flood(c, r, 20000, "strict");
	stats(c, after);
	cr_assert_eq(after[0], before[0] - 1, "the stopped subscriber was disconnected");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(rfd);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

/* ---- limits, through a raw connection that speaks the protocol by hand ---- */

#include "protocol.h"

struct raw {
	bool closed;
	int reason;
	unsigned messages;
};

static void raw_message(lm_conn *c, const void *data, size_t len, void *ud)
{
	((struct raw *)ud)->messages++;
}

static void raw_closed(lm_conn *c, int reason, void *ud)
{
	struct raw *w = ud;

	w->closed = true;
	w->reason = reason;
}

static const struct lm_conn_callbacks raw_callbacks = {raw_message, raw_closed, NULL};

static lm_conn *raw_connect(const struct combo *k, lm_reactor *r, struct raw *w)
{
	lm_conn *c = NULL;
	char ep[64];

	endpoint_of(ep, sizeof(ep), k);
	cr_assert_eq(lm_conn_connect(&c, r, ep, NULL, &raw_callbacks, w), 0);
	return c;
}

static void raw_send(lm_conn *c, uint8_t kind, uint32_t serial, const char *name, const void *p,
		     size_t len)
{
	static uint8_t buf[70000];
	int n = lm__proto_encode(buf, sizeof(buf), kind, serial, name, name ? strlen(name) : 0, p,
				 len, sizeof(buf));

	cr_assert_gt(n, 0);
	cr_assert_eq(lm_conn_send(c, buf, (size_t)n), 0);
}

SVC_TEST(handshake_timeout_and_limit)
{
	lm_test_runtime_dir();
	/* The timeout is well above the 200 ms the first checks take, so that a
	 * loaded machine does not time the silent ones out early. */
	struct lm_server_options so = {.handshake_timeout_ns = 600 * MS, .max_handshakes = 2};
	pid_t pid = start_server(k, &so);
	lm_reactor *r = reactor_for(k);
	struct raw w[3] = {0}, h = {0};
	lm_conn *c[3], *hello;
	bool never = false;

	/* Two silent connections fill the handshake slots: a third waits in the
	 * kernel (backlog, FIFO, queue), not closed. */
	c[0] = raw_connect(k, r, &w[0]);
	c[1] = raw_connect(k, r, &w[1]);
	run_until(r, &never, 50 * MS);
	c[2] = raw_connect(k, r, &w[2]);
	run_until(r, &never, 150 * MS);
	cr_assert_not(w[2].closed, "third handshake closed rather than left waiting");
	cr_assert_not(w[0].closed || w[1].closed);
	/* The silent ones go at the handshake timeout; the third is taken then,
	 * and goes at its own. */
	cr_assert(run_until(r, &w[0].closed, 2 * SEC) && run_until(r, &w[1].closed, 1 * SEC));
	cr_assert(run_until(r, &w[2].closed, 3 * SEC), "the waiting handshake was never taken");
	/* A peer that says HELLO is welcomed; a CALL with serial 0 is a protocol error. */
	hello = raw_connect(k, r, &h);
	raw_send(hello, LM_PROTO_HELLO, 0, "raw", NULL, 0);
	while (h.messages == 0 && !h.closed)
		lm_reactor_run_once(r, 100 * MS);
	cr_assert_eq(h.messages, 1, "WELCOME");
	run_until(r, &never, 800 * MS);
	cr_assert_not(h.closed, "a welcomed peer is not timed out");
	raw_send(hello, LM_PROTO_CALL, 0, "echo", NULL, 0);
	cr_assert(run_until(r, &h.closed, 2 * SEC));
	for (int i = 0; i < 3; i++)
		lm_conn_free(c[i]);
	lm_conn_free(hello);
	lm_reactor_free(r);
	stop_server(pid);
}

/* NO_REPLY: the handler runs, nothing comes back (not even an error for an
 * unknown method), and calls around it are answered as usual. */
SVC_TEST(fire_and_forget_calls)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	struct lm_reply *reply;
	struct raw h = {0};
	lm_conn *raw;
	uint8_t buf[64];
	int64_t seen[2];
	bool never = false;
	int n;

	wait_connected(r, c);
	cr_assert_eq(lm_client_call_no_reply(NULL, "note", NULL, 0), -EINVAL);
	cr_assert_eq(lm_client_call_no_reply(c, "bad name", NULL, 0), -EINVAL);
	cr_assert_eq(lm_client_call_no_reply(c, "note", NULL, 1), -EINVAL);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(lm_client_call_no_reply(c, "note", "x", 1), 0);
	cr_assert_eq(lm_client_call_no_reply(c, "nosuch", NULL, 0), 0);
	cr_assert_eq(lm_client_pending(c), 0, "a fire-and-forget call takes no slot");
	run_until(r, &never, 100 * MS);
	cr_assert_eq(lm_client_call_sync(c, "note", "get", 3, 5 * SEC, &reply), 0);
	memcpy(seen, reply->payload, sizeof(seen));
	lm_reply_free(reply);
	cr_assert_eq(seen[0], 5, "every NO_REPLY call ran its handler");

	/* On the wire: a raw peer sends NO_REPLY calls (a known and an unknown
	 * method) then one ordinary call: the only answers are WELCOME and
	 * that call's REPLY. */
	raw = raw_connect(k, r, &h);
	raw_send(raw, LM_PROTO_HELLO, 0, "raw", NULL, 0);
	for (int i = 0; i < 2; i++) {
		n = lm__proto_encode(buf, sizeof(buf), LM_PROTO_CALL, 9, i ? "nosuch" : "note",
				     i ? 6 : 4, NULL, 0, sizeof(buf));
		cr_assert_gt(n, 0);
		lm__proto_set_flags(buf, LM_PROTO_FLAG_NO_REPLY);
		cr_assert_eq(lm_conn_send(raw, buf, (size_t)n), 0);
	}
	raw_send(raw, LM_PROTO_CALL, 10, "echo", "e", 1);
	while (h.messages < 2 && !h.closed)
		lm_reactor_run_once(r, 100 * MS);
	run_until(r, &never, 200 * MS);
	cr_assert_not(h.closed);
	cr_assert_eq(h.messages, 2, "WELCOME and the echo's REPLY only, got %u", h.messages);
	lm_conn_free(raw);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

struct states {
	int n[3];   /* callbacks per state */
	int first;  /* the first state reported, -1: none */
	int reason; /* of the last DISCONNECTED */
};

static void count_states(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	struct states *s = ud;

	if (s->first < 0)
		s->first = (int)st;
	s->n[st]++;
	if (st == LM_CLIENT_DISCONNECTED)
		s->reason = reason;
}

/* The state callback is told the current state when it is set; a sync
 * call made before the server exists waits for it within its timeout. */
SVC_TEST(lifecycle_state_at_once_sync_waits_for_server)
{
	lm_test_runtime_dir();
	lm_reactor *r = reactor_for(k);
	struct lm_client_options co = {.reconnect_min_ns = 10 * MS, .reconnect_max_ns = 50 * MS};
	lm_client *c = client_for(k, r, &co), *c2;
	struct states st = {.first = -1};
	struct lm_reply *reply;
	pid_t pid, starter;

	lm_client_set_state_cb(c, count_states, &st);
	cr_assert_eq(st.first, LM_CLIENT_DISCONNECTED, "told the state when the callback is set");
	cr_assert(st.reason == -ENOENT || st.reason == -ECONNREFUSED, "and why: %d", st.reason);
	/* The server comes 300 ms after the call begins. */
	starter = lm_test_fork();
	cr_assert_geq(starter, 0);
	if (starter == 0) {
		sigset_t term;
		int signo;

		sigemptyset(&term);
		sigaddset(&term, SIGTERM);
		sigprocmask(SIG_BLOCK, &term, NULL);
		usleep(300000);
		pid = start_server(k, NULL);
		/* Serve until the test's client is done (its SIGTERM). */
		sigwait(&term, &signo);
		stop_server(pid);
		_exit(0);
	}
	cr_assert_eq(lm_client_call_sync(c, "echo", "w", 1, 10 * SEC, &reply), 0,
		     "the sync call waited for its server");
	cr_assert(reply->len == 1 && !memcmp(reply->payload, "w", 1));
	lm_reply_free(reply);
	/* A client made while the server runs is CONNECTING at once. */
	st = (struct states){.first = -1};
	c2 = client_for(k, r, NULL);
	lm_client_set_state_cb(c2, count_states, &st);
	cr_assert_eq(st.first, LM_CLIENT_CONNECTING);
	lm_client_free(c2);
	lm_client_free(c);
	lm_reactor_free(r);
	kill(starter, SIGTERM);
	waitpid(starter, NULL, 0);
}

/* A listener that refuses every HELLO as a server does a uid it does not
 * allow: ERROR lm.AccessDenied, then close. */
static void refuse_message(lm_conn *c, const void *data, size_t len, void *ud)
{
	uint8_t buf[64];
	int n = lm__proto_encode(buf, sizeof(buf), LM_PROTO_ERROR, 0, "lm.AccessDenied", 15, "no",
				 2, sizeof(buf));

	lm_conn_send(c, buf, (size_t)n);
	lm_conn_flush(c);
}

/* The refusing listener's connections: how many came, and the last one
 * (the test frees it; the client is expected to come only once). */
struct refused {
	int accepted;
	lm_conn *conn;
};

static void refuse_accept(lm_listener *l, lm_conn *c, void *ud)
{
	static const struct lm_conn_callbacks cbs = {.message = refuse_message};
	struct refused *rf = ud;

	rf->accepted++;
	lm_conn_free(rf->conn);
	rf->conn = c;
	lm_conn_set_callbacks(c, &cbs, NULL);
}

/* A permanent refusal (lm.AccessDenied) is reported and not retried: the
 * listener sees one connection over many reconnection periods, and calls
 * say -EACCES. */
SVC_TEST(refusal_is_not_retried)
{
	lm_test_runtime_dir();
	lm_reactor *r = reactor_for(k);
	struct lm_client_options co = {.reconnect_min_ns = 5 * MS, .reconnect_max_ns = 10 * MS};
	struct states st = {.first = -1};
	struct result res = {0};
	struct lm_reply *reply;
	lm_listener *l;
	lm_client *c;
	bool never = false;
	char ep[64];
	struct refused rf = {0};
	int err;

	endpoint_of(ep, sizeof(ep), k);
	err = lm_listener_new(&l, r, ep, NULL, refuse_accept, &rf);
	if (err == -EPERM && k->backend == LM_BACKEND_URING)
		cr_skip_test("io_uring cannot watch this transport's fds here");
	cr_assert_eq(err, 0);
	c = client_for(k, r, &co);
	lm_client_set_state_cb(c, count_states, &st);
	for (int i = 0; i < 200 && st.n[LM_CLIENT_DISCONNECTED] == 0; i++)
		lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(st.reason, -EACCES, "refused: %d", st.reason);
	/* 40 reconnection periods. */
	run_until(r, &never, 400 * MS);
	cr_assert_eq(rf.accepted, 1, "retried %d times", rf.accepted - 1);
	cr_assert_eq(st.n[LM_CLIENT_DISCONNECTED], 1);
	cr_assert_eq(lm_client_call(c, "echo", NULL, 0, -1, on_reply, &res), -EACCES);
	cr_assert_eq(lm_client_call_sync(c, "echo", NULL, 0, -1, &reply), -EACCES);
	lm_client_free(c);
	lm_conn_free(rf.conn);
	lm_listener_free(l);
	lm_reactor_free(r);
}

SVC_TEST(message_size_limit)
{
	lm_test_runtime_dir();
	struct lm_server_options so = {.transport.max_message = 4096};
	pid_t pid = start_server(k, &so);
	lm_reactor *r = reactor_for(k);
	struct lm_client_options co = {.transport.max_message = 4096};
	lm_client *c = client_for(k, r, &co);
	static char big[8192];
	struct lm_reply *reply;
	struct result res = {0};
	struct raw w = {0};
	lm_conn *raw;

	wait_connected(r, c);
	/* The sender gets -EMSGSIZE before anything is sent. */
	cr_assert_eq(lm_client_call(c, "echo", big, 4096, -1, on_reply, &res), -EMSGSIZE);
	cr_assert_eq(lm_client_pending(c), 0);
	cr_assert_eq(lm_client_call_sync(c, "echo", big, 4096 - 16 - 4, -1, &reply), 0);
	lm_reply_free(reply);
	/* A peer that sends more than the server's limit is disconnected. */
	raw = raw_connect(k, r, &w);
	raw_send(raw, LM_PROTO_HELLO, 0, NULL, NULL, 0);
	raw_send(raw, LM_PROTO_CALL, 1, "echo", big, 6000);
	cr_assert(run_until(r, &w.closed, 2 * SEC), "oversized message not refused");
	lm_conn_free(raw);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

SVC_TEST(client_not_reading_replies_is_disconnected)
{
	lm_test_runtime_dir();
	struct lm_server_options so = {.transport.max_queue = 64 << 10};
	pid_t pid = start_server(k, &so);
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, NULL);
	int64_t before[4], after[4];
	pid_t child;
	int pfd[2];
	char b;

	wait_connected(r, c);
	stats(c, before);
	cr_assert_eq(pipe(pfd), 0);
	child = lm_test_fork();
	if (child == 0) {
		struct lm_reactor_options ro = {.backend = k->backend};
		struct raw w = {0};
		lm_reactor *r2;
		lm_conn *raw;

		close(pfd[0]);
		if (lm_reactor_new(&r2, &ro) < 0)
			_exit(1);
		raw = raw_connect(k, r2, &w);
		raw_send(raw, LM_PROTO_HELLO, 0, NULL, NULL, 0);
		while (!w.messages && !w.closed)
			lm_reactor_run_once(r2, 100 * MS);
		/* 200 small calls with 60 KiB answers; the loop runs only until
		 * they are out, then never again: the answers are not read. */
		for (int i = 0; i < 200; i++) {
			uint8_t m[32];
			int n = lm__proto_encode(m, sizeof(m), LM_PROTO_CALL, (uint32_t)i + 1,
						 "blob", 4, NULL, 0, sizeof(m));
			/* Fails once the server has had enough: that is the point. */
			if (lm_conn_send(raw, m, (size_t)n) < 0)
				break;
		}
		while (lm_conn_queued(raw) && !w.closed)
			lm_reactor_run_once(r2, 10 * MS);
		if (write(pfd[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	cr_assert_eq(read(pfd[0], &b, 1), 1);
	close(pfd[0]);
	for (int tries = 0; tries < 200; tries++) {
		stats(c, after);
		if (after[0] == before[0])
			break;
		usleep(10000);
	}
	cr_assert_eq(after[0], before[0], "the client that does not read was disconnected");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	lm_client_free(c);
	lm_reactor_free(r);
	stop_server(pid);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int signo)
{
	alarms++;
}

/* Sync calls, whatever the waiting: on mq the first part of it is the
 * transport's blocking receive (lm__conn_wait), and the reactor takes over
 * after SYNC_BLOCK_NS (10 ms); unix and fifo always wait with the reactor.
 * Replies come whole and in order, a slow reply (50 ms) and a call timeout
 * shorter than that first part are handled, and a server that dies during
 * a call or between two is told, then replaced. */
SVC_TEST(sync_calls_blocking_wait)
{
	lm_test_runtime_dir();
	pid_t pid = start_server(k, NULL), killer;
	lm_reactor *r = reactor_for(k);
	lm_client *c = client_for(k, r, &(struct lm_client_options){.reconnect_min_ns = 10 * MS});
	struct lm_reply *reply;
	int err;

	wait_connected(r, c);
	for (uint32_t i = 0; i < 200; i++) {
		cr_assert_eq(lm_client_call_sync(c, "echo", &i, sizeof(i), -1, &reply), 0);
		cr_assert(reply->len == sizeof(i) && !memcmp(reply->payload, &i, sizeof(i)),
			  "reply %u", i);
		lm_reply_free(reply);
	}
	cr_assert_eq(lm_client_call_sync(c, "defer", NULL, 0, -1, &reply), 0);
	cr_assert(reply->len == 5 && !memcmp(reply->payload, "later", 5));
	lm_reply_free(reply);
	cr_assert_eq(lm_client_call_sync(c, "blob", NULL, 0, -1, &reply), 0);
	cr_assert_eq(reply->len, 60 << 10);
	lm_reply_free(reply);
	cr_assert_eq(lm_client_call_sync(c, "hang", NULL, 0, 3 * MS, &reply), -ETIMEDOUT);
	cr_assert_eq(lm_client_call_sync(c, "echo", "ok", 2, -1, &reply), 0);
	lm_reply_free(reply);
	/* Signals every 2 ms (no SA_RESTART) interrupt the waits: the call
	 * goes on to its reply. */
	{
		struct sigaction sa = {.sa_handler = on_alarm}, old;
		struct itimerval it = {.it_interval = {0, 2000}, .it_value = {0, 2000}};

		alarms = 0;
		cr_assert_eq(sigaction(SIGALRM, &sa, &old), 0);
		cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
		err = lm_client_call_sync(c, "defer", NULL, 0, -1, &reply);
		setitimer(ITIMER_REAL, &(struct itimerval){0}, NULL);
		sigaction(SIGALRM, &old, NULL);
		cr_assert_eq(err, 0, "interrupted: %d", err);
		cr_assert(reply->len == 5 && !memcmp(reply->payload, "later", 5));
		lm_reply_free(reply);
		cr_assert_gt(alarms, 5, "only %d signals came during the call", alarms);
	}

	/* The server dies while a call waits: -ECONNRESET, long before the
	 * call's own 20 s. */
	killer = lm_test_fork();
	cr_assert_geq(killer, 0);
	if (killer == 0) {
		usleep(50000);
		kill(pid, SIGKILL);
		_exit(0);
	}
	cr_assert_eq(lm_client_call_sync(c, "hang", NULL, 0, 20 * SEC, &reply), -ECONNRESET);
	cr_assert_eq(waitpid(killer, NULL, 0), killer);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	/* Gone between two calls: the next one is told, at once or after its
	 * blocking wait, and none waits for its timeout. */
	err = lm_client_call_sync(c, "echo", "x", 1, 20 * SEC, &reply);
	cr_assert(err == -ENOTCONN || err == -ECONNRESET, "call after the death: %d", err);
	cr_assert_eq(lm_client_call_sync(c, "echo", "x", 1, 300 * MS, &reply), -ENOTCONN);
	/* A new server: sync calls reach it. */
	pid = start_server(k, NULL);
	err = -ENOTCONN;
	for (int i = 0; i < 200 && err == -ENOTCONN; i++) {
		err = lm_client_call_sync(c, "echo", "y", 1, 5 * SEC, &reply);
		if (err == -ENOTCONN)
			usleep(10000);
	}
	cr_assert_eq(err, 0, "after the restart: %d", err);
	cr_assert(reply->len == 1 && !memcmp(reply->payload, "y", 1));
	lm_reply_free(reply);
	/* And one killed just after a reply: the next call does not hang. */
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	err = lm_client_call_sync(c, "echo", "z", 1, 20 * SEC, &reply);
	cr_assert(err == -ENOTCONN || err == -ECONNRESET, "call after the death: %d", err);
	lm_client_free(c);
	lm_reactor_free(r);
	/* A server that ends cleanly takes away what the killed one left. */
	stop_server(start_server(k, NULL));
}

/* ---- after fork() ---- */

struct fork_svc {
	int replies, signals, states;
};

static void fork_on_reply(lm_client *c, const struct lm_reply *reply, void *ud)
{
	if (reply->status == 0)
		((struct fork_svc *)ud)->replies++;
}

static void fork_on_bell(lm_client *c, const char *signal, const void *p, size_t len,
			 uint64_t dropped, void *ud)
{
	((struct fork_svc *)ud)->signals++;
}

static void fork_on_state(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	((struct fork_svc *)ud)->states++;
}

static bool fork_run_until(lm_reactor *r, const int *count, int want)
{
	for (int i = 0; i < 500 && *count < want; i++)
		lm_reactor_run_once(r, 20 * MS);
	return *count >= want;
}

/* The child's side: the calls that act say -ECHILD; then it frees the
 * client, the server and the reactor it inherited. 0, or the failed check. */
static int fork_svc_child(lm_reactor *r, lm_server *s, lm_client *c, const char *ep,
			  struct fork_svc *f)
{
	lm_client *c2 = NULL;
	lm_server *s2 = NULL;

	if (lm_client_call(c, "echo", "x", 1, -1, fork_on_reply, f) != -ECHILD)
		return 10;
	if (lm_server_emit(s, "bell", "x", 1) != -ECHILD)
		return 11;
	if (lm_client_new(&c2, r, ep, NULL) != -ECHILD || c2)
		return 12;
	if (lm_server_new(&s2, r, ep, NULL) != -ECHILD || s2)
		return 13;
	if (lm_client_subscribe(c, "other", fork_on_bell, f) != -ECHILD)
		return 14;
	lm_client_free(c);
	lm_server_free(s);
	lm_reactor_free(r);
	return 0;
}

/* A child frees the client, the server (its listener and the connection it
 * accepted) and the reactor it inherited, and exits: the parent's client
 * saw no BYE and no close (its state never changes), its calls and
 * signals go on, and the server still takes new clients. */
SVC_TEST(child_frees_inherited_parent_goes_on)
{
	lm_reactor *r = reactor_for(k);
	struct fork_svc f = {0};
	lm_client *c, *c2;
	lm_server *s;
	char ep[64];
	int status;
	pid_t pid;

	lm_test_runtime_dir();
	endpoint_of(ep, sizeof(ep), k);
	cr_assert_eq(lm_server_new(&s, r, ep, NULL), 0);
	cr_assert_eq(lm_server_add_methods(s, test_methods, 1, NULL), 0);
	cr_assert_eq(lm_server_add_signal(s, "bell", LM_OVERFLOW_DROP_OLDEST), 0);
	c = client_for(k, r, NULL);
	wait_connected(r, c);
	cr_assert_eq(lm_client_subscribe(c, "bell", fork_on_bell, &f), 0);
	/* The reply comes after the SUBSCRIBE sent before the call. */
	cr_assert_eq(lm_client_call(c, "echo", "x", 1, -1, fork_on_reply, &f), 0);
	cr_assert(fork_run_until(r, &f.replies, 1), "no reply before the fork");
	cr_assert_geq(lm_server_emit(s, "bell", "x", 1), 1);
	cr_assert(fork_run_until(r, &f.signals, 1), "no signal before the fork");
	lm_client_set_state_cb(c, fork_on_state, &f);
	f.states = 0; /* the state at once, when the callback is set */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fork_svc_child(r, s, c, ep, &f));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's check %d failed",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cr_assert_eq(lm_client_call(c, "echo", "y", 1, -1, fork_on_reply, &f), 0);
	cr_assert(fork_run_until(r, &f.replies, 2), "no reply after the fork");
	cr_assert_geq(lm_server_emit(s, "bell", "y", 1), 1);
	cr_assert(fork_run_until(r, &f.signals, 2), "no signal after the fork");
	cr_assert_eq(f.states, 0, "the client's state changed after the fork");
	cr_assert_eq(lm_client_get_state(c), LM_CLIENT_CONNECTED);
	/* The name is still served. */
	c2 = client_for(k, r, NULL);
	wait_connected(r, c2);
	lm_client_free(c2);
	lm_client_free(c);
	lm_server_free(s);
	lm_reactor_free(r);
}

/* ---- another uid ---- */

/* The machine-wide name of an mq listener at name, in the runtime directory
 * (transports/mq.c: from the directory's identity). */
static void mq_base(char *buf, size_t size, const char *name)
{
	struct statx stx;

	cr_assert_eq(statx(AT_FDCWD, getenv("LM_RUNTIME_DIR"), 0, STATX_INO | STATX_BTIME, &stx),
		     0);
	snprintf(buf, size, "/lm.%x.%x.%llx.%llx.%x.%s", stx.stx_dev_major, stx.stx_dev_minor,
		 (unsigned long long)stx.stx_ino, (unsigned long long)stx.stx_btime.tv_sec,
		 stx.stx_btime.tv_nsec, name);
}

/* Another uid creates the mq names a client would have used (the old
 * "<pid>.<n>" scheme) and a listener's name before its server starts. The
 * client connects at its first attempt all the same (its names are random);
 * the server whose listener name is taken fails with -EEXIST, as
 * docs/transports.md says (a listener name is public by design). */
Test(other_uid, mq_names_cannot_be_squatted, .timeout = 60, .fini = svc_fini)
{
	const struct combo k = {LM_BACKEND_EPOLL, "mq"};
	char base[300], sq[48], out[64], names[17][320], ep[64];
	const char *argv[20] = {LM_UID_HELPER, "mq-create"};
	lm_reactor *r;
	lm_client *c;
	lm_server *s;
	pid_t pid;

	svc_setup(&k);
	chmod(lm_test_runtime_dir(), 0755); /* the squatter knows where it is */
	endpoint_of(ep, sizeof(ep), &k);
	mq_base(base, sizeof(base), ep_name);
	for (int i = 0; i < 8; i++) {
		snprintf(names[2 * i], sizeof(names[0]), "%s.%d.%d.c2s", base, (int)getpid(), i);
		snprintf(names[2 * i + 1], sizeof(names[0]), "%s.%d.%d.s2c", base, (int)getpid(),
			 i);
	}
	snprintf(sq, sizeof(sq), "%ssq", ep_name);
	mq_base(names[16], sizeof(names[16]), sq);
	for (int i = 0; i < 17; i++)
		argv[2 + i] = names[i];
	cr_assert_eq(lm_test_as_other_uid(out, sizeof(out), NULL, argv), 0);
	cr_assert_str_eq(out, "17", "the other uid made its names");

	pid = start_server(&k, NULL);
	r = reactor_for(&k);
	c = client_for(&k, r, NULL);
	cr_assert_eq(lm_client_get_state(c), LM_CLIENT_CONNECTING,
		     "connected at the first attempt, names taken or not");
	wait_connected(r, c);
	lm_client_free(c);

	snprintf(ep, sizeof(ep), "mq:%s", sq);
	cr_assert_eq(lm_server_new(&s, r, ep, NULL), -EEXIST,
		     "a listener name taken by another uid");
	lm_reactor_free(r);
	stop_server(pid);
	for (int i = 0; i < 17; i++)
		mq_unlink(names[i]);
}
