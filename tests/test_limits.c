/* SPDX-License-Identifier: MIT */
/* Holding under exhaustion and abuse: out of fds, and the caps on what one peer makes a server
 * hold. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cbor.h>

#include <libmessage/libmessage.h>
#include <libmessage/srvtime.h>
#include <libmessage/types.h>

#include "lm_test.h"
#include "protocol.h"

#define MS  (1000ll * 1000)
#define SEC (1000 * MS)

/* ---- helpers ---- */

static int64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * SEC + t.tv_nsec;
}

/* Run r until *flag or the deadline; false on timeout. */
static bool run_until(lm_reactor *r, const bool *flag, int64_t timeout_ns)
{
	int64_t end = now_ns() + timeout_ns;

	while (!*flag) {
		if (now_ns() > end)
			return false;
		lm_reactor_run_once(r, 20 * MS);
	}
	return true;
}

/* CPU seconds (user + system) process pid has used, from /proc. */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_not_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	/* Fields after the command (which may hold spaces): state is the 3rd,
	 * utime the 14th, stime the 15th. */
	p = strrchr(buf, ')');
	cr_assert_not_null(p);
	cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st),
		     2);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

struct reply_state {
	bool done;
	int status;
	char error_name[64];
};

static void on_reply(lm_client *c, const struct lm_reply *reply, void *ud)
{
	struct reply_state *rs = ud;

	rs->done = true;
	rs->status = reply->status;
	if (reply->error_name)
		snprintf(rs->error_name, sizeof(rs->error_name), "%s", reply->error_name);
}

/* One call of method on c, waited for on r (bounded). */
static struct reply_state call_once(lm_reactor *r, lm_client *c, const char *method)
{
	struct reply_state rs = {0};
	int err = lm_client_call(c, method, "x", 1, 10 * SEC, on_reply, &rs);

	cr_assert_eq(err, 0, "lm_client_call(%s): %s", method, strerror(-err));
	cr_assert(run_until(r, &rs.done, 15 * SEC), "no reply to %s", method);
	return rs;
}

static void m_echo(lm_call *call, const void *p, size_t len, void *ud)
{
	lm_call_reply(call, p, len);
}

static const struct lm_method methods[] = {{"echo", m_echo}};

struct stats_reply {
	bool done;
	int status;
	uint8_t buf[4096];
	size_t len;
};

static void on_stats(lm_client *c, const struct lm_reply *reply, void *ud)
{
	struct stats_reply *sr = ud;

	sr->done = true;
	sr->status = reply->status;
	if (reply->status == 0 && reply->len <= sizeof(sr->buf)) {
		memcpy(sr->buf, reply->payload, reply->len);
		sr->len = reply->len;
	}
}

/* Counter name of the server at ep, from lm.Stats (through a client on r). */
static uint64_t stat_of(lm_reactor *r, const char *ep, const char *name)
{
	struct stats_reply sr = {0};
	struct cbor_load_result lr;
	struct cbor_pair *pairs;
	cbor_item_t *it;
	uint64_t v = UINT64_MAX;
	lm_client *c;

	cr_assert_eq(lm_client_new(&c, r, ep, NULL), 0);
	for (int i = 0; i < 500 && lm_client_get_state(c) != LM_CLIENT_CONNECTED; i++)
		lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(lm_client_call(c, "lm.Stats", NULL, 0, 10 * SEC, on_stats, &sr), 0);
	cr_assert(run_until(r, &sr.done, 15 * SEC));
	cr_assert_eq(sr.status, 0);
	it = cbor_load(sr.buf, sr.len, &lr);
	cr_assert(it && cbor_isa_map(it));
	pairs = cbor_map_handle(it);
	for (size_t i = 0; i < cbor_map_size(it); i++)
		if (cbor_string_length(pairs[i].key) == strlen(name) &&
		    !memcmp(cbor_string_handle(pairs[i].key), name, strlen(name)))
			v = cbor_get_int(pairs[i].value);
	cbor_decref(&it);
	lm_client_free(c);
	cr_assert_neq(v, UINT64_MAX, "lm.Stats has no %s", name);
	return v;
}

/* ---- out of fds ---- */

/* The server child's side of exhaust_fds. */
struct starved {
	lm_reactor *r;
	int fds[1024];
	int nfds;
	unsigned warnings, resumed;
};

static void starved_log(enum lm_log_level level, const char *msg, void *ud)
{
	struct starved *v = ud;

	if (strstr(msg, "refusing new connections"))
		v->warnings++;
	if (strstr(msg, "accepting again"))
		v->resumed++;
}

static void starved_free_fds(lm_source *s, const struct signalfd_siginfo *si, void *ud)
{
	struct starved *v = ud;

	while (v->nfds)
		close(v->fds[--v->nfds]);
}

static void starved_stop(lm_source *s, const struct signalfd_siginfo *si, void *ud)
{
	lm_reactor_stop(lm_source_get_reactor(s), 0);
}

/* Serve ep with at most 64 fds, every one of them taken, until SIGUSR1
 * frees them; at SIGTERM, write the log counts to out. */
static void starved_server(enum lm_backend backend, const char *ep, int ready, int out)
{
	struct lm_reactor_options ro = {.backend = backend};
	struct rlimit rl = {64, 64};
	struct starved v = {0};
	lm_server *s;
	unsigned counts[2];
	int fd;

	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || lm_reactor_new(&v.r, &ro) < 0)
		_exit(2);
	lm_set_log_handler(starved_log, &v);
	lm_set_log_level(LM_LOG_INFO);
	if (lm_reactor_add_signal(v.r, NULL, SIGUSR1, starved_free_fds, &v) < 0 ||
	    lm_reactor_add_signal(v.r, NULL, SIGTERM, starved_stop, &v) < 0 ||
	    lm_server_new(&s, v.r, ep, NULL) < 0 || lm_server_add_methods(s, methods, 1, NULL) < 0)
		_exit(3);
	while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		v.fds[v.nfds++] = fd;
	if (errno != EMFILE || write(ready, "r", 1) != 1)
		_exit(4);
	if (lm_reactor_run(v.r) < 0)
		_exit(5);
	counts[0] = v.warnings;
	counts[1] = v.resumed;
	if (write(out, counts, sizeof(counts)) != sizeof(counts))
		_exit(6);
	lm_server_free(s);
	lm_reactor_free(v.r);
	_exit(0);
}

/* A raw client: connect (not waiting for the server to accept). */
static int raw_unix_connect(const char *dir, const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.unix", dir, name);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* The client was refused: its connection ends (end of file or reset) without a byte. */
static void expect_refused(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	char b[64];
	ssize_t n;

	cr_assert_eq(poll(&p, 1, 20000), 1, "a client waited 20 s without being refused");
	n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
	cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "recv: %zd (%s)", n,
		  n < 0 ? strerror(errno) : "data");
}

/*
 * A unix server with no fd left meets 200 clients. It refuses each (its
 * connection closed) rather than spin on the listener that stays readable:
 * its CPU time over the windows while they come stays near zero (spinning
 * burns all of a CPU's share). It warns once for the whole shortage, and
 * serves again once fds are free.
 */
LM_BACKEND_TEST(limits, out_of_fds_refuses_without_spinning, .timeout = 120)
{
	const char *dir = lm_test_runtime_dir();
	int ready[2], out[2], clients[200];
	unsigned counts[2];
	double cpu0, cpu;
	lm_reactor *r;
	lm_client *c;
	pid_t pid;
	char b;
	int st;

	r = lm_test_reactor(backend); /* skips where io_uring is refused */
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		starved_server(backend, "unix:fdhog", ready[1], out[1]);
	cr_assert_eq(read(ready[0], &b, 1), 1, "the server child did not start");

	cpu0 = cpu_seconds(pid);
	for (int wave = 0; wave < 2; wave++) {
		for (int i = 0; i < 100; i++)
			clients[wave * 100 + i] = raw_unix_connect(dir, "fdhog");
		usleep(1000 * 1000);
	}
	cpu = cpu_seconds(pid) - cpu0;
	/* Spinning, the server would have used most of the 2 s. */
	cr_assert_lt(cpu, 0.3, "the server used %.2f CPU s while out of fds", cpu);
	for (int i = 0; i < 200; i++) {
		expect_refused(clients[i]);
		close(clients[i]);
	}

	/* Free the server's fds: it serves again. */
	cr_assert_eq(kill(pid, SIGUSR1), 0);
	cr_assert_eq(lm_client_new(&c, r, "unix:fdhog", NULL), 0);
	for (int tries = 0;; tries++) {
		struct reply_state rs = {0};

		if (lm_client_call(c, "echo", "x", 1, 5 * SEC, on_reply, &rs) == 0 &&
		    run_until(r, &rs.done, 10 * SEC) && rs.status == 0)
			break;
		cr_assert_lt(tries, 100, "the server never served again");
		lm_reactor_run_once(r, 100 * MS);
	}
	lm_client_free(c);
	lm_reactor_free(r);

	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert_eq(read(out[0], counts, sizeof(counts)), (ssize_t)sizeof(counts));
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
	cr_assert_eq(counts[0], 1, "%u warnings for one shortage", counts[0]);
	cr_assert_eq(counts[1], 1, "%u lines for serving again", counts[1]);
}

/* ---- caps on what one peer makes a server hold ---- */

struct combo {
	enum lm_backend backend;
	char scheme[8]; /* inline: criterion copies params into another process */
};

static struct combo combos[] = {
    {LM_BACKEND_EPOLL, "unix"}, {LM_BACKEND_URING, "unix"}, {LM_BACKEND_EPOLL, "fifo"},
    {LM_BACKEND_URING, "fifo"}, {LM_BACKEND_EPOLL, "mq"},   {LM_BACKEND_URING, "mq"},
};

#define LIMITS_TEST(name, ...)                                                          \
	static void limits_##name##_body(const struct combo *k);                        \
	ParameterizedTestParameters(limits, name)                                       \
	{                                                                               \
		return cr_make_param_array(struct combo, combos,                        \
					   sizeof(combos) / sizeof(combos[0]));         \
	}                                                                               \
	ParameterizedTest(struct combo *kp, limits, name, .timeout = 90, ##__VA_ARGS__) \
	{                                                                               \
		limits_##name##_body(kp);                                               \
	}                                                                               \
	static void limits_##name##_body(const struct combo *k)

/* mq queue names are global: unique per test process. */
static void endpoint_of(char *buf, size_t size, const struct combo *k, const char *what)
{
	snprintf(buf, size, "%s:%s%d", k->scheme, what, (int)getpid());
}

/* A server on k's backend and transport, in this process; skips where the
 * transport cannot run here. */
static lm_server *server_for(const struct combo *k, lm_reactor *r, const char *ep,
			     const struct lm_server_options *opts)
{
	lm_server *s = NULL;
	int err = lm_server_new(&s, r, ep, opts);

	if (err == -EPERM && !strcmp(k->scheme, "mq") && k->backend == LM_BACKEND_URING)
		cr_skip_test("the io_uring backend cannot watch message queue fds here");
	if (err == -EMFILE && !strcmp(k->scheme, "mq"))
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted here");
	cr_assert_eq(err, 0, "lm_server_new(%s): %s", ep, strerror(-err));
	cr_assert_eq(lm_server_add_methods(s, methods, 1, NULL), 0);
	return s;
}

static unsigned stalls_logged;

static void count_stalls(enum lm_log_level level, const char *msg, void *ud)
{
	if (strstr(msg, "still not whole"))
		stalls_logged++;
}

struct raw_peer {
	bool welcomed, closed;
};

static void raw_message(lm_conn *c, const void *data, size_t len, void *ud)
{
	struct raw_peer *p = ud;
	struct lm_proto_msg m;

	if (lm__proto_decode(&m, data, len, 1u << 20) == 0 && m.kind == LM_PROTO_WELCOME)
		p->welcomed = true;
}

static void raw_closed(lm_conn *c, int reason, void *ud)
{
	((struct raw_peer *)ud)->closed = true;
}

static const struct lm_conn_callbacks raw_callbacks = {raw_message, raw_closed, NULL};

/* The stalling peer: handshake, then a 2 MiB call of which the kernel takes
 * only a part, then stop (SIGSTOP) for ever, holding the rest. */
static void stalling_peer(const char *ep)
{
	struct lm_transport_options to = {.max_message = 4u << 20};
	size_t big = 2u << 20;
	struct raw_peer p = {0};
	uint8_t hello[LM_PROTO_HEADER_SIZE], hdr[LM_PROTO_HEADER_SIZE];
	struct iovec iov[3];
	lm_reactor *r;
	lm_conn *c;
	char *payload = calloc(1, big);

	if (!payload || lm_reactor_new(&r, NULL) < 0 ||
	    lm_conn_connect(&c, r, ep, &to, &raw_callbacks, &p) < 0)
		_exit(2);
	if (lm__proto_encode(hello, sizeof(hello), LM_PROTO_HELLO, 0, NULL, 0, NULL, 0, 4096) < 0 ||
	    lm_conn_send(c, hello, sizeof(hello)) < 0)
		_exit(3);
	for (int i = 0; i < 1000 && !p.welcomed && !p.closed; i++)
		lm_reactor_run_once(r, 10 * MS);
	if (!p.welcomed)
		_exit(4);
	if (lm__proto_encode_header(hdr, LM_PROTO_CALL, 1, "echo", 4, big, 4u << 20) < 0)
		_exit(5);
	iov[0] = (struct iovec){hdr, sizeof(hdr)};
	iov[1] = (struct iovec){"echo", 4};
	iov[2] = (struct iovec){payload, big};
	if (lm_conn_sendv(c, iov, 3) < 0)
		_exit(6);
	raise(SIGSTOP);
	_exit(7);
}

/*
 * A peer that starts a big message and stalls: the server frees the part it
 * holds and disconnects the peer once partial_timeout_ns has passed since
 * the message began (on every transport's reassembly: unix units, fifo
 * frames, mq units), not at once and not never.
 */
LIMITS_TEST(half_sent_message_is_dropped)
{
	struct lm_server_options o = {
	    .transport = {.max_message = 4u << 20, .partial_timeout_ns = 300 * MS},
	    .handshake_timeout_ns = 60 * SEC,
	};
	lm_reactor *r;
	lm_server *s;
	char ep[64];
	pid_t pid;
	int st;

	lm_test_runtime_dir();
	endpoint_of(ep, sizeof(ep), k, "stall");
	r = lm_test_reactor(k->backend);
	s = server_for(k, r, ep, &o);
	lm_set_log_handler(count_stalls, NULL);
	lm_set_log_level(LM_LOG_INFO);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		stalling_peer(ep);
	/* Serve until the peer stopped with its message cut. */
	for (int i = 0;; i++) {
		pid_t w = waitpid(pid, &st, WNOHANG | WUNTRACED);

		cr_assert_neq(w, -1);
		if (w == pid) {
			cr_assert(WIFSTOPPED(st), "the peer ended: status %#x", st);
			break;
		}
		cr_assert_lt(i, 1000, "the peer never stopped");
		lm_reactor_run_once(r, 10 * MS);
	}
	cr_assert_eq(lm_server_client_count(s), 1);
	for (int i = 0; i < 1000 && lm_server_client_count(s) > 0; i++)
		lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(lm_server_client_count(s), 0, "the stalled peer is still connected");
	cr_assert_eq(stalls_logged, 1);
	cr_assert_eq(stat_of(r, ep, "stalled_disconnects"), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	lm_server_free(s);
	lm_reactor_free(r);
}

/* Calls held by m_hold, answered by the test. */
static lm_call *held[64];
static int nheld;

static void m_hold(lm_call *call, const void *p, size_t len, void *ud)
{
	cr_assert_lt(nheld, 64);
	held[nheld++] = call;
}

static const struct lm_method hold_methods[] = {{"hold", m_hold}};

/*
 * One connection may make the server hold max_calls calls awaiting a reply
 * (deferred), no more: a call past it is answered at once with
 * lm.LimitsExceeded, its handler never called; once replies go out, calls
 * are taken again.
 */
LIMITS_TEST(deferred_calls_capped_per_connection)
{
	struct lm_server_options o = {.max_calls = 8};
	struct reply_state rs[10] = {{0}}, more = {0};
	lm_reactor *r;
	lm_server *s;
	lm_client *c;
	char ep[64];
	int ok = 0, refused = 0;

	lm_test_runtime_dir();
	endpoint_of(ep, sizeof(ep), k, "calls");
	r = lm_test_reactor(k->backend);
	s = server_for(k, r, ep, &o);
	cr_assert_eq(lm_server_add_methods(s, hold_methods, 1, NULL), 0);
	cr_assert_eq(lm_client_new(&c, r, ep, NULL), 0);
	nheld = 0;
	for (int i = 0; i < 10; i++) {
		while (lm_client_call(c, "hold", "x", 1, 30 * SEC, on_reply, &rs[i]) == -ENOTCONN)
			lm_reactor_run_once(r, 10 * MS);
	}
	cr_assert(run_until(r, &rs[9].done, 10 * SEC), "the 10th call was not refused");
	cr_assert(rs[8].done);
	cr_assert_eq(nheld, 8, "%d calls reached the handler", nheld);
	for (int i = 8; i < 10; i++) {
		cr_assert_eq(rs[i].status, -EREMOTEIO);
		cr_assert_str_eq(rs[i].error_name, "lm.LimitsExceeded");
	}
	for (int i = 0; i < 8; i++)
		cr_assert_not(rs[i].done);
	/* Answered, they leave room. */
	for (int i = 0; i < nheld; i++)
		cr_assert_eq(lm_call_reply(held[i], "y", 1), 0);
	nheld = 0;
	cr_assert(run_until(r, &rs[7].done, 10 * SEC));
	for (int i = 0; i < 10; i++) {
		run_until(r, &rs[i].done, 5 * SEC);
		ok += rs[i].done && rs[i].status == 0;
		refused += rs[i].done && rs[i].status == -EREMOTEIO;
	}
	cr_assert_eq(ok, 8);
	cr_assert_eq(refused, 2);
	cr_assert_eq(lm_client_call(c, "hold", "x", 1, 30 * SEC, on_reply, &more), 0);
	for (int i = 0; i < 500 && nheld == 0; i++)
		lm_reactor_run_once(r, 10 * MS);
	cr_assert_eq(nheld, 1, "a call after the replies was not taken");
	cr_assert_eq(lm_call_reply(held[0], "y", 1), 0);
	cr_assert(run_until(r, &more.done, 10 * SEC));
	cr_assert_eq(more.status, 0);
	lm_client_free(c);
	lm_server_free(s);
	lm_reactor_free(r);
}

/* ---- connections per uid ---- */

struct uid_client {
	bool up, down;
	int reason;
};

static void uid_state(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	struct uid_client *u = ud;

	if (st == LM_CLIENT_CONNECTED)
		u->up = true;
	if (st == LM_CLIENT_DISCONNECTED && !u->up) {
		u->down = true;
		u->reason = reason;
	}
}

/* As uid 65534 in dir: four clients of unix:peruid. The fourth is refused
 * (-EUSERS) while three are in; once one goes it gets in. Exit 0 if so. */
static void other_uid_clients(const char *dir)
{
	struct uid_client u[4] = {{0}};
	lm_client *c[4];
	lm_reactor *r;

	if (setgid(65534) < 0 || setuid(65534) < 0)
		_exit(2);
	setenv("LM_RUNTIME_DIR", dir, 1);
	if (lm_reactor_new(&r, NULL) < 0)
		_exit(3);
	for (int i = 0; i < 4; i++) {
		if (lm_client_new(&c[i], r, "unix:peruid", NULL) < 0)
			_exit(4);
		lm_client_set_state_cb(c[i], uid_state, &u[i]);
		for (int t = 0; t < 1000 && !u[i].up && !u[i].down; t++)
			lm_reactor_run_once(r, 10 * MS);
		if (i < 3 && !u[i].up)
			_exit(10 + i);
	}
	if (!u[3].down || u[3].reason != -EUSERS)
		_exit(u[3].down ? 100 + (-u[3].reason & 0x7f) : 20);
	lm_client_free(c[0]);
	for (int t = 0; t < 2000 && !u[3].up; t++)
		lm_reactor_run_once(r, 10 * MS);
	if (!u[3].up)
		_exit(21);
	for (int i = 1; i < 4; i++)
		lm_client_free(c[i]);
	lm_reactor_free(r);
	_exit(0);
}

/*
 * A uid other than the server's own may hold max_connections_per_uid
 * connections at once: one more is refused with lm.LimitsExceeded (its
 * client sees -EUSERS and retries), and gets in once one of the others
 * left. The server's own uid is not counted. The other uid reaches the
 * server through its own runtime directory, holding a hard link to the
 * server's socket (as an administrator would expose a service to it).
 */
LM_BACKEND_TEST(limits, connections_capped_per_uid, .timeout = 90)
{
	uid_t other = 65534;
	struct lm_server_options o = {
	    .max_connections_per_uid = 3, .allow_uids = &other, .n_allow_uids = 1};
	char odir[] = "/tmp/lm-test-uid-XXXXXX", src[512], dst[512];
	lm_client *own[5];
	const char *dir;
	lm_reactor *r;
	lm_server *s;
	pid_t pid;
	int st = 0;

	if (geteuid() != 0)
		cr_skip_test("needs root to run clients as another uid");
	dir = lm_test_runtime_dir();
	r = lm_test_reactor(backend);
	cr_assert_eq(lm_server_new(&s, r, "unix:peruid", &o), 0);
	cr_assert_eq(lm_server_add_methods(s, methods, 1, NULL), 0);

	/* The server's own uid: not capped. */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(lm_client_new(&own[i], r, "unix:peruid", NULL), 0);
	for (int i = 0; i < 500 && lm_server_client_count(s) < 5; i++)
		lm_reactor_run_once(r, 10 * MS);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(call_once(r, own[i], "echo").status, 0);

	cr_assert_not_null(mkdtemp(odir));
	cr_assert_eq(chown(odir, other, other), 0);
	snprintf(src, sizeof(src), "%s/peruid.unix", dir);
	snprintf(dst, sizeof(dst), "%s/peruid.unix", odir);
	cr_assert_eq(chmod(src, 0666), 0);
	cr_assert_eq(link(src, dst), 0, "link: %s", strerror(errno));
	cr_assert_eq(chmod(dir, 0711), 0);

	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		other_uid_clients(odir);
	for (int i = 0; i < 6000; i++) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		cr_assert_neq(w, -1);
		if (w == pid)
			break;
		lm_reactor_run_once(r, 10 * MS);
	}
	unlink(dst);
	rmdir(odir);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the other uid's clients: status %#x", st);
	for (int i = 0; i < 5; i++)
		lm_client_free(own[i]);
	lm_server_free(s);
	lm_reactor_free(r);
}

/* ---- a burst of connections ---- */

/* A datagram of unix framing whose first message is a WELCOME. */
static bool is_welcome(const uint8_t *buf, ssize_t n)
{
	struct lm_proto_msg m;
	uint32_t len;

	if (n < 4)
		return false;
	memcpy(&len, buf, 4);
	return len <= (size_t)n - 4 && lm__proto_decode(&m, buf + 4, len, 4096) == 0 &&
	       m.kind == LM_PROTO_WELCOME;
}

/* Serve unix:burst on backend with the default options until SIGTERM. */
static void burst_server(enum lm_backend backend, int ready)
{
	struct lm_reactor_options ro = {.backend = backend};
	struct rlimit rl = {4096, 4096};
	lm_reactor *r;
	lm_server *s;

	if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || lm_reactor_new(&r, &ro) < 0 ||
	    lm_reactor_add_signal(r, NULL, SIGTERM, starved_stop, NULL) < 0 ||
	    lm_server_new(&s, r, "unix:burst", NULL) < 0 || write(ready, "r", 1) != 1)
		_exit(2);
	if (lm_reactor_run(r) < 0)
		_exit(3);
	lm_server_free(s);
	lm_reactor_free(r);
	_exit(0);
}

/*
 * 1000 peers connect and send HELLO at once: past the 64 connections in
 * handshake, the server takes no more until some are through, and the rest
 * wait in the kernel's backlog: every one gets its WELCOME, none is closed,
 * on either backend.
 */
LM_BACKEND_TEST(limits, connection_burst_queued_not_closed, .timeout = 120)
{
	enum { N = 1000 };
	static int fds[N];
	static struct pollfd pf[N];
	const char *dir = lm_test_runtime_dir();
	uint8_t hello[LM_PROTO_HEADER_SIZE];
	struct rlimit rl = {4096, 4096};
	int ready[2], welcomed = 0, closed = 0, left = N, st;
	lm_reactor *r = lm_test_reactor(backend);
	int64_t end;
	pid_t pid;
	char b;

	lm_reactor_free(r); /* only to skip where io_uring is refused */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		burst_server(backend, ready[1]);
	cr_assert_eq(read(ready[0], &b, 1), 1, "the server child did not start");

	/* Each frame: a 4-byte length then the message (unix framing). */
	cr_assert_eq(
	    lm__proto_encode(hello, sizeof(hello), LM_PROTO_HELLO, 0, NULL, 0, NULL, 0, 4096),
	    LM_PROTO_HEADER_SIZE);
	for (int i = 0; i < N; i++) {
		uint8_t frame[4 + LM_PROTO_HEADER_SIZE];
		uint32_t len = LM_PROTO_HEADER_SIZE;

		fds[i] = raw_unix_connect(dir, "burst");
		memcpy(frame, &len, 4);
		memcpy(frame + 4, hello, sizeof(hello));
		cr_assert_eq(send(fds[i], frame, sizeof(frame), MSG_NOSIGNAL),
			     (ssize_t)sizeof(frame));
		pf[i] = (struct pollfd){fds[i], POLLIN, 0};
	}
	end = now_ns() + 60 * SEC;
	while (left > 0 && now_ns() < end) {
		cr_assert_geq(poll(pf, N, 1000), 0);
		for (int i = 0; i < N; i++) {
			uint8_t buf[512];
			ssize_t n;

			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			n = recv(pf[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && errno == EAGAIN)
				continue;
			if (is_welcome(buf, n))
				welcomed++;
			else
				closed++;
			pf[i].fd = -1;
			left--;
		}
	}
	cr_assert_eq(closed, 0, "%d of %d peers closed before their WELCOME", closed, N);
	cr_assert_eq(welcomed, N, "%d of %d peers welcomed in 60 s", welcomed, N);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
}

static void count_drops(lm_client *c, enum lm_client_state st, int reason, void *ud)
{
	/* A request that was lost: its client's handshake timed out. (Others,
	 * e.g. RLIMIT_MSGQUEUE taken by tests running beside, just retry.) */
	if (st == LM_CLIENT_DISCONNECTED && reason == -ETIMEDOUT)
		++*(int *)ud;
}

/* Count the clients connected, among n. */
static int count_connected(lm_client **c, int n)
{
	int up = 0;

	for (int i = 0; i < n; i++)
		up += lm_client_get_state(c[i]) == LM_CLIENT_CONNECTED;
	return up;
}

/*
 * Out of fds on every transport: the server does not spin while clients
 * come (on fifo and mq their requests wait in the listener's FIFO or queue,
 * untouched, rather than be read and lost; on unix they are refused and
 * come back), warns once, and once fds are free every client gets in.
 */
LIMITS_TEST(out_of_fds_then_every_client_served)
{
	enum { N = 8 };
	lm_client *c[N];
	int ready[2], out[2], st, drops = 0;
	unsigned counts[2];
	double cpu0, cpu;
	int64_t end;
	lm_reactor *r;
	char ep[64], b;
	pid_t pid;

	lm_test_runtime_dir();
	endpoint_of(ep, sizeof(ep), k, "fdwait");
	r = lm_test_reactor(k->backend);
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		starved_server(k->backend, ep, ready[1], out[1]);
	if (read(ready[0], &b, 1) != 1) {
		waitpid(pid, &st, 0);
		if (!strcmp(k->scheme, "mq"))
			cr_skip_test("the mq server could not start here (status %#x)", st);
		cr_assert_fail("the server child did not start: status %#x", st);
	}

	cpu0 = cpu_seconds(pid);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(lm_client_new(&c[i], r, ep, NULL), 0);
		lm_client_set_state_cb(c[i], count_drops, &drops);
	}
	end = now_ns() + 2 * SEC;
	while (now_ns() < end)
		lm_reactor_run_once(r, 20 * MS);
	cpu = cpu_seconds(pid) - cpu0;
	cr_assert_lt(cpu, 0.3, "the server used %.2f CPU s while out of fds", cpu);
	cr_assert_eq(count_connected(c, N), 0, "a client got in while the server had no fd");

	cr_assert_eq(kill(pid, SIGUSR1), 0);
	end = now_ns() + 30 * SEC;
	while (count_connected(c, N) < N && now_ns() < end)
		lm_reactor_run_once(r, 20 * MS);
	cr_assert_eq(count_connected(c, N), N, "%d of %d clients got in once fds were free",
		     count_connected(c, N), N);
	/* fifo, mq: each request waited and was taken; none was lost (its
	 * client would have timed out, then tried again). */
	if (strcmp(k->scheme, "unix") != 0)
		cr_assert_eq(drops, 0, "%s/%s: %d handshakes timed out while their request waited",
			     k->scheme, lm_test_backend_name(k->backend), drops);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(call_once(r, c[i], "echo").status, 0);
		lm_client_free(c[i]);
	}
	lm_reactor_free(r);

	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert_eq(read(out[0], counts, sizeof(counts)), (ssize_t)sizeof(counts));
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %#x", st);
	cr_assert_eq(counts[0], 1, "%u warnings for one shortage", counts[0]);
	cr_assert_eq(counts[1], 1, "%u lines for serving again", counts[1]);
}

/* ---- declared types: what checking a payload may cost ---- */

/*
 * Found by fuzzing (tests/fuzz/corpus/types/regress_nested_huge_arrays):
 * 28 bytes of nested arrays, each announcing billions of items, made
 * lm_type_check() (and lm_srvtime_decode()) take 19 GB and minutes in
 * cbor_load(). Such a payload is refused before anything is allocated, and
 * so is one nesting deeper than LM_TYPE_CBOR_MAX_NEST; one at that depth
 * is still checked.
 */
Test(limits, cbor_payload_announcing_more_than_it_holds)
{
	static const uint8_t huge[] = {0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x9a,
				       0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92,
				       0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x92, 0x23};
	/* A map announcing 2^32 pairs in 9 bytes. */
	static const uint8_t map[] = {0xbb, 0, 0, 0, 1, 0, 0, 0, 0};
	uint8_t deep[LM_TYPE_CBOR_MAX_NEST + 2];
	struct lm_srvtime t;
	lm_type *any, *arr;
	char err[256];

	cr_assert_eq(lm_type_parse(&any, "any", NULL, 0), 0);
	cr_assert_eq(lm_type_parse(&arr, "[any]", NULL, 0), 0);
	cr_assert_eq(lm_type_check(any, huge, sizeof(huge), err, sizeof(err)), -EBADMSG);
	cr_assert(strstr(err, "announces more items"), "%s", err);
	cr_assert_eq(lm_type_check(arr, huge, sizeof(huge), err, sizeof(err)), -EBADMSG);
	cr_assert_eq(lm_type_check(any, map, sizeof(map), err, sizeof(err)), -EBADMSG);
	cr_assert_eq(lm_srvtime_decode(&t, huge, sizeof(huge)), -EBADMSG);

	/* [[[...[0]...]]]: LM_TYPE_CBOR_MAX_NEST arrays hold, one more does not. */
	memset(deep, 0x81, sizeof(deep));
	deep[LM_TYPE_CBOR_MAX_NEST] = 0x00;
	cr_assert_eq(lm_type_check(any, deep, LM_TYPE_CBOR_MAX_NEST + 1, err, sizeof(err)), 0, "%s",
		     err);
	deep[LM_TYPE_CBOR_MAX_NEST] = 0x81;
	deep[LM_TYPE_CBOR_MAX_NEST + 1] = 0x00;
	cr_assert_eq(lm_type_check(any, deep, sizeof(deep), err, sizeof(err)), -EBADMSG);
	cr_assert(strstr(err, "nests too deep"), "%s", err);
	lm_type_free(any);
	lm_type_free(arr);
}

/*
 * Found by fuzzing (tests/fuzz/corpus/types/regress_float_for_int): a float
 * where the checker asks whether the item is null or a bool (an optional
 * field, a bool, an error message naming what came) made libcbor assert
 * and abort the process. It is a mismatch like any other.
 */
Test(limits, cbor_float_where_null_or_bool_is_asked)
{
	static const uint8_t f32[] = {0xfa, 0xff, 0xff, 0xff, 0xc3};
	static const uint8_t f16[] = {0xf9, 0x3c, 0x00};
	const char *types[] = {"int", "int?", "bool", "bool?", "{a: int?}", "[bool]"};
	char err[256];

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		lm_type *t;

		cr_assert_eq(lm_type_parse(&t, types[i], NULL, 0), 0);
		cr_assert_eq(lm_type_check(t, f32, sizeof(f32), err, sizeof(err)), -EBADMSG, "%s",
			     types[i]);
		cr_assert(strstr(err, "float"), "%s: %s", types[i], err);
		cr_assert_eq(lm_type_check(t, f16, sizeof(f16), err, sizeof(err)), -EBADMSG, "%s",
			     types[i]);
		lm_type_free(t);
	}
}
