/* SPDX-License-Identifier: MIT */
/* Holding under exhaustion and abuse: out of fds, and the caps on what one peer makes a server hold. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/libmessage.h>

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
__attribute__((unused)) static struct reply_state call_once(lm_reactor *r, lm_client *c, const char *method)
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

/* Serve unix:fdhog with at most 64 fds, every one of them taken, until
 * SIGUSR1 frees them; at SIGTERM, write the log counts to out. */
static void starved_server(enum lm_backend backend, int ready, int out)
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
	    lm_server_new(&s, v.r, "unix:fdhog", NULL) < 0 ||
	    lm_server_add_methods(s, methods, 1, NULL) < 0)
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
		starved_server(backend, ready[1], out[1]);
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

#define LIMITS_TEST(name, ...)                                                                \
	static void limits_##name##_body(const struct combo *k);                              \
	ParameterizedTestParameters(limits, name)                                             \
	{                                                                                     \
		return cr_make_param_array(struct combo, combos,                              \
					   sizeof(combos) / sizeof(combos[0]));               \
	}                                                                                     \
	ParameterizedTest(struct combo *kp, limits, name, .timeout = 90, ##__VA_ARGS__)       \
	{                                                                                     \
		limits_##name##_body(kp);                                                     \
	}                                                                                     \
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
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	lm_server_free(s);
	lm_reactor_free(r);
}
