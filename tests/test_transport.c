/* SPDX-License-Identifier: MIT */
/* The transport conformance suite: one set of tests, run for every transport and backend. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport-internal.h"
#include "transport_test.h"

#define NAME "t"

static char endpoint[64];

static void no_io(lm_source *s, int fd, uint32_t events, void *userdata)
{
}

/* The reactor must be able to watch the transport's fds: probe mq's. */
static void probe_mq(lm_reactor *r)
{
	struct mq_attr a = {.mq_maxmsg = 1, .mq_msgsize = 8};
	char name[64];
	lm_source *s = NULL;
	mqd_t q;
	int err;

	snprintf(name, sizeof(name), "/lm-probe-%d", (int)getpid());
	q = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &a);
	cr_assert_neq(q, (mqd_t)-1, "mq_open: %s", strerror(errno));
	mq_unlink(name);
	err = lm_reactor_add_io(r, &s, (int)q, LM_IO_IN, no_io, NULL);
	lm_source_free(s);
	mq_close(q);
	if (err < 0)
		cr_skip_test("the %s backend refuses to watch a message queue fd: %s",
			     lm_reactor_backend_name(r), strerror(-err));
}

static lm_reactor *setup(const char *scheme, enum lm_backend backend)
{
	lm_reactor *r;

	lm_test_runtime_dir();
	if (!strcmp(scheme, "mq"))
		lm_tt_forget_queue_at_end(NAME);
	r = lm_test_reactor(backend);
	if (!strcmp(scheme, "mq"))
		probe_mq(r);
	snprintf(endpoint, sizeof(endpoint), "%s:" NAME, scheme);
	return r;
}

/* Message queues of every process of this user share RLIMIT_MSGQUEUE
 * (800 KiB by default): when others hold it all, mq cannot run here. */
static int connect_cb_or_skip(lm_conn **ret, lm_reactor *r, const struct lm_conn_callbacks *cb,
			      void *userdata)
{
	int err = lm_conn_connect(ret, r, endpoint, NULL, cb, userdata);

	if (err == -EMFILE && !strncmp(endpoint, "mq:", 3)) {
		lm_tt_fini(); /* a skipped test may not get its .fini */
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues: %s",
			     strerror(-err));
	}
	return err;
}

static int connect_or_skip(lm_conn **ret, lm_reactor *r, struct lm_tt_peer *p)
{
	return connect_cb_or_skip(ret, r, &lm_tt_callbacks, p);
}

/* In a forked client: connect or exit (77: mq's RLIMIT_MSGQUEUE is full). */
static lm_conn *child_connect(lm_reactor **r2)
{
	lm_conn *c = NULL;
	int err;

	if (lm_reactor_new(r2, NULL) < 0)
		_exit(1);
	err = lm_conn_connect(&c, *r2, endpoint, NULL, &lm_tt_callbacks, NULL);
	if (err < 0)
		_exit(err == -EMFILE ? 77 : 1);
	return c;
}

/* In the parent: skip if the forked client could not get its queues. */
static void skip_if_child_starved(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, WNOHANG) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 77) {
		lm_tt_fini(); /* a skipped test may not get its .fini */
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
	}
}

/* A server on r and one client connected to it, both in this process. */
static void pair(lm_reactor *r, struct lm_tt_server *s, struct lm_tt_peer *cl)
{
	int err = lm_listener_new(&s->l, r, endpoint, NULL, lm_tt_accept, s);

	cr_assert_eq(err, 0, "listen %s: %s", endpoint, strerror(-err));
	memset(cl, 0, sizeof(*cl));
	err = connect_or_skip(&cl->c, r, cl);
	cr_assert_eq(err, 0, "connect %s: %s", endpoint, strerror(-err));
}

/* pair(), and the server has accepted: its side of the connection. */
static struct lm_tt_peer *pair_accepted(lm_reactor *r, struct lm_tt_server *s,
					struct lm_tt_peer *cl)
{
	pair(r, s, cl);
	cr_assert(LM_TT_RUN_UNTIL(r, s->n == 1, 5), "not accepted");
	return &s->peers[0];
}

/* The end of a pair(): both sides, the listener, the reactor. */
static void pair_free(lm_reactor *r, struct lm_tt_server *s, struct lm_tt_peer *cl)
{
	lm_tt_peer_clear(cl);
	lm_tt_server_free(s);
	lm_reactor_free(r);
}

static void wait_child_ready(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	char b;

	cr_assert_eq(poll(&p, 1, 5000), 1, "the forked server did not start");
	cr_assert_eq(read(fd, &b, 1), 1, "the forked server failed");
	close(fd);
}

/* An echo server forked into *pid, and cl connected to it on r. */
static void forked_pair(lm_reactor *r, struct lm_tt_peer *cl, pid_t *pid)
{
	int err;

	wait_child_ready(lm_tt_fork_server(endpoint, pid));
	err = connect_or_skip(&cl->c, r, cl);
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
}

/* Send each size (a pattern) to an echo server and check what comes back;
 * buf holds the largest. */
static void echo_sizes(lm_reactor *r, struct lm_tt_peer *cl, const size_t *sizes, size_t n,
		       unsigned char *buf)
{
	for (size_t i = 0; i < n; i++) {
		size_t want = cl->received + 1;

		lm_tt_pattern(buf, sizes[i], (unsigned)i);
		cr_assert_eq(lm_conn_send(cl->c, buf, sizes[i]), 0,
			     "send %zu (closed %d reason %d)", sizes[i], cl->closed, cl->reason);
		cr_assert(LM_TT_RUN_UNTIL(r, cl->received == want, 20), "no echo of %zu bytes",
			  sizes[i]);
		cr_assert_eq(cl->last_len, sizes[i]);
		cr_assert(sizes[i] == 0 || !memcmp(cl->last, buf, sizes[i]), "%zu bytes corrupted",
			  sizes[i]);
	}
}

LM_TRANSPORT_TEST(transport, round_trip_sizes, .timeout = 30)
{
	static const size_t sizes[] = {0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 1 << 20};
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {.echo = true};
	struct lm_tt_peer cl;
	unsigned char *buf = malloc(1 << 20);

	pair(r, &s, &cl);
	echo_sizes(r, &cl, sizes, sizeof(sizes) / sizeof(sizes[0]), buf);
	/* iovecs are concatenated. */
	{
		struct iovec v[3] = {{buf, 10}, {buf + 10, 0}, {buf + 10, 70000}};

		lm_tt_pattern(buf, 70010, 99);
		cr_assert_eq(lm_conn_sendv(cl.c, v, 3), 0);
		cr_assert(LM_TT_RUN_UNTIL(r, cl.last_len == 70010, 10));
		cr_assert(!memcmp(cl.last, buf, 70010));
	}
	cr_assert_eq(s.peers[0].closed, 0);
	cr_assert_eq(cl.closed, 0);
	cr_assert_str_eq(lm_conn_scheme(cl.c), scheme);
	lm_tt_peer_clear(&cl);
	lm_tt_server_free(&s);
	lm_reactor_free(r);
	free(buf);
}

LM_TRANSPORT_TEST(transport, over_max_refused, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {.echo = true};
	struct lm_tt_peer cl;
	size_t max = LM_DEFAULT_MAX_MESSAGE;
	unsigned char *buf = calloc(1, max + 1);
	struct iovec v[2] = {{buf, max}, {buf, 1}};

	pair(r, &s, &cl);
	cr_assert_eq(lm_conn_max_message(cl.c), max);
	cr_assert_eq(lm_conn_send(cl.c, buf, max + 1), -EMSGSIZE);
	cr_assert_eq(lm_conn_sendv(cl.c, v, 2), -EMSGSIZE);
	cr_assert_eq(lm_conn_queued(cl.c), 0);
	cr_assert_eq(lm_conn_send(cl.c, "ok", 2), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 5));
	cr_assert_eq(s.peers[0].received, 1, "something of the refused message was sent");
	cr_assert_eq(cl.last_len, 2);
	lm_tt_peer_clear(&cl);
	lm_tt_server_free(&s);
	lm_reactor_free(r);
	free(buf);
}

/* unix, watched edge-triggered, whose receive() first hands out
 * edge_extra made-up one-byte messages, one per call: more than one
 * report's worth, with nothing more arriving to report the fd again. */
extern const struct lm_transport_ops lm__transport_unix;
static int edge_extra;

static int edge_receive(lm_conn *c, void *cstate)
{
	if (edge_extra > 0) {
		int ret;

		edge_extra--;
		ret = lm_transport_deliver(c, "x", 1);
		return ret < 0 ? ret : 1;
	}
	return lm__transport_unix.receive(c, cstate);
}

LM_BACKEND_TEST(transport, edge_reads_until_empty_over_rounds, .timeout = 20)
{
	static struct lm_transport_ops ops;
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	lm_reactor *r;
	int err, first;

	ops = lm__transport_unix;
	ops.scheme = "unixedge";
	ops.receive = edge_receive;
	ops.edge = true;
	ops.take = NULL; /* read by receive(), not handed datagrams */
	err = lm_transport_register(&ops);
	cr_assert(err == 0 || err == -EEXIST, "register: %s", strerror(-err));
	lm_test_runtime_dir();
	r = lm_test_reactor(backend);
	snprintf(endpoint, sizeof(endpoint), "unixedge:" NAME);
	pair_accepted(r, &s, &cl);
	cr_assert_eq(lm_conn_send(cl.c, "y", 1), 0);
	edge_extra = 40;
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received > 0, 5));
	first = (int)s.peers[0].received;
	/* Edge-triggered (io_uring): up to 16 receive()s per report, then the
	 * reactor's again() for the rest; level-triggered: one per report. */
	cr_assert_eq(first, backend == LM_BACKEND_URING ? 16 : 1);
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 41, 5), "%zu of 41 delivered",
		  s.peers[0].received);
	cr_assert_eq(s.peers[0].last_len, 1);
	cr_assert_eq(s.peers[0].last[0], 'y', "the real message comes after the made-up ones");
	cr_assert_eq(lm_reactor_run_once(r, 0), 0, "nothing left to report");
	pair_free(r, &s, &cl);
}

/* unix (or counted_base) whose take() and receive() count their calls:
 * those of counted_conn apart. */
static const struct lm_transport_ops *counted_base = &lm__transport_unix;
static lm_conn *counted_conn;
static int take_calls, take_last, receive_calls, conn_takes, conn_receives;

static int counting_take(lm_conn *c, void *cstate, const void *data, size_t len, bool last)
{
	if (c == counted_conn) {
		conn_takes++;
	} else {
		take_calls++;
		take_last += last;
	}
	return counted_base->take(c, cstate, data, len, last);
}

static int counting_receive(lm_conn *c, void *cstate)
{
	if (c == counted_conn)
		conn_receives++;
	else
		receive_calls++;
	return counted_base->receive(c, cstate);
}

/* Register base as scheme, its take() and receive() counted; the endpoint
 * is scheme:NAME. */
static void counted_register(const struct lm_transport_ops *base, const char *scheme)
{
	static struct lm_transport_ops ops;
	int err;

	ops = *base;
	ops.scheme = scheme;
	ops.receive = counting_receive;
	ops.take = counting_take;
	counted_base = base;
	err = lm_transport_register(&ops);
	cr_assert(err == 0 || err == -EEXIST, "register: %s", strerror(-err));
	snprintf(endpoint, sizeof(endpoint), "%s:" NAME, scheme);
}

/* Where the backend receives (io_uring), a connection's datagrams are all
 * handed to take(), in order, and receive() only reads the end; elsewhere
 * receive() reads everything and take() is never called. */
LM_BACKEND_TEST(transport, take_where_the_backend_receives, .timeout = 20)
{
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl, *sp;
	bool receives = lm_test_uring_receives(backend);
	lm_reactor *r;

	counted_register(&lm__transport_unix, "unixtake");
	lm_test_runtime_dir();
	r = lm_test_reactor(backend);
	sp = pair_accepted(r, &s, &cl);
	sp->check_seq = true;
	take_calls = take_last = receive_calls = 0;
	/* Sent outside dispatch: one datagram each, all there before the
	 * server's next wait. */
	for (uint64_t i = 0; i < 50; i++)
		cr_assert_eq(lm_conn_send(cl.c, &i, sizeof(i)), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, sp->received == 50, 5), "%zu of 50", sp->received);
	cr_assert(!sp->seq_error, "out of order");
	if (receives) {
		/* 50 now, and the 51st below is the end: an empty read. */
		cr_assert_eq(take_calls, 50, "take() %d times for 50 datagrams", take_calls);
		cr_assert_eq(receive_calls, 0, "receive() %d times", receive_calls);
		cr_assert(take_last >= 1 && take_last < 50,
			  "%d of 50 datagrams were the last come (some came together)", take_last);
	} else {
		cr_assert_eq(take_calls, 0);
		cr_assert_geq(receive_calls, 1);
	}
	/* The client goes: its end comes after the data, to take() as a read
	 * of 0 bytes where the backend receives, else read by receive(). */
	lm_tt_peer_clear(&cl);
	cr_assert(LM_TT_RUN_UNTIL(r, sp->closed == 1, 5), "the end was not seen");
	cr_assert_eq(sp->reason, -ECONNRESET);
	if (receives) {
		cr_assert_eq(take_calls, 51, "take() %d times", take_calls);
		cr_assert_eq(receive_calls, 0, "receive() %d times", receive_calls);
	} else {
		cr_assert_geq(receive_calls, 2);
	}
	lm_tt_server_free(&s);
	lm_reactor_free(r);
}

/* fifo's connections are read by completion where io_uring reads FIFOs
 * (Linux 6.7): the server's from the start; the client's once the server
 * spoke (before, the server's pidfd is watched, when its pid is known: the
 * client's FIFO has no end of file until the server opened it, so a read
 * armed before would end the connection at once), and from then on the
 * end of that FIFO alone tells the client the server went. Elsewhere
 * receive() reads everything, and the pidfd is let go all the same. */
static void fifo_takes(enum lm_backend backend, bool pid_known)
{
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl, *sp;
	bool reads = lm_test_uring_reads_fifos(backend);
	char lock[512];
	lm_reactor *r;
	int before, fd;

	counted_register(&lm__transport_fifo, "fifotake");
	/* The client finds the server's pid in "t.fifo.lock", which the
	 * listener of this scheme names "t.fifotake.lock": ours, by hand. */
	snprintf(lock, sizeof(lock), "%s/" NAME ".fifo.lock", lm_test_runtime_dir());
	if (pid_known) {
		fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		cr_assert_geq(fd, 0, "%s: %s", lock, strerror(errno));
		cr_assert_gt(dprintf(fd, "%d\n", (int)getpid()), 0);
		close(fd);
	}
	r = lm_test_reactor(backend);
	sp = pair_accepted(r, &s, &cl);
	counted_conn = cl.c;
	take_calls = take_last = receive_calls = conn_takes = conn_receives = 0;
	if (pid_known)
		cr_assert_not_null(cl.c->hsrc, "the server's pidfd is not watched before it spoke");
	cr_assert(LM_TT_RUN_UNTIL(r, false, 0.05) || !cl.closed, "the client ended (%d) at once",
		  cl.reason);

	/* The client speaks: its FIFO to the server is read by completion. */
	sp->check_seq = true;
	for (uint64_t i = 0; i < 50; i++)
		cr_assert_eq(lm_conn_send(cl.c, &i, sizeof(i)), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, sp->received == 50, 5), "%zu of 50", sp->received);
	cr_assert_not(sp->seq_error, "out of order");
	if (reads) {
		cr_assert_geq(take_calls, 1);
		cr_assert_eq(receive_calls, 0, "receive() %d times", receive_calls);
	} else {
		cr_assert_eq(take_calls, 0);
		cr_assert_geq(receive_calls, 1);
	}

	/* The server speaks: the client reads that itself, then lets the
	 * pidfd go. */
	cr_assert_eq(lm_conn_send(sp->c, "a", 1), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 5), "no first message");
	cr_assert_eq(conn_takes, 0, "take() %d times before the server spoke", conn_takes);
	cr_assert_geq(conn_receives, 1);
	cr_assert_null(cl.c->hsrc, "the server's pidfd is still watched");
	before = conn_receives;
	cl.received = 0;
	cl.check_seq = true;
	for (uint64_t i = 0; i < 50; i++)
		cr_assert_eq(lm_conn_send(sp->c, &i, sizeof(i)), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 50, 5), "%zu of 50", cl.received);
	cr_assert_not(cl.seq_error, "out of order");
	if (reads) {
		cr_assert_geq(conn_takes, 1);
		cr_assert_eq(conn_receives, before, "receive() %d times after the first",
			     conn_receives - before);
	} else {
		cr_assert_eq(conn_takes, 0);
		cr_assert_gt(conn_receives, before);
	}

	/* The server's side goes (its pidfd, ours, never would): the end of
	 * the FIFO tells, after the data. */
	lm_tt_server_free(&s);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.closed > 0, 5), "the end was not seen");
	cr_assert_eq(cl.closed, 1);
	cr_assert_eq(cl.reason, -ECONNRESET);
	if (reads)
		cr_assert_eq(conn_receives, before, "the end was not taken");
	counted_conn = NULL;
	lm_tt_peer_clear(&cl);
	lm_reactor_free(r);
	unlink(lock);
}

LM_BACKEND_TEST(transport, fifo_takes_once_the_server_spoke, .timeout = 20)
{
	fifo_takes(backend, true);
}

LM_BACKEND_TEST(transport, fifo_takes_once_the_server_spoke_pid_unknown, .timeout = 20)
{
	fifo_takes(backend, false);
}

LM_TRANSPORT_TEST(transport, order_100000, .timeout = 60)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	uint64_t seq = 0;

	pair_accepted(r, &s, &cl);
	s.peers[0].check_seq = true;
	while (seq < 100000) {
		int err = lm_conn_send(cl.c, &seq, sizeof(seq));

		if (err == -ENOBUFS) {
			lm_reactor_run_once(r, 10 * 1000 * 1000);
			continue;
		}
		cr_assert_eq(err, 0, "send: %s", strerror(-err));
		seq++;
		if (seq % 256 == 0)
			lm_reactor_run_once(r, 0);
	}
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 100000, 30), "got %zu",
		  s.peers[0].received);
	cr_assert_not(s.peers[0].seq_error, "messages out of order");
	pair_free(r, &s, &cl);
}

/* Small messages and big ones (several units each) queued together before
 * the receiver reads: unix reads several datagrams per syscall once it sees
 * them come in a stream, and a big message's fragments may then arrive in
 * the same batch as small ones. */
LM_TRANSPORT_TEST(transport, small_and_big_interleaved, .timeout = 60)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	static unsigned char big[100 * 1024], want[100 * 1024];
	size_t expect = 0, bytes = 0;

	pair_accepted(r, &s, &cl);
	for (unsigned round = 0; round < 20; round++) {
		for (uint64_t i = 0; i < 7; i++) {
			uint64_t v = round * 8 + i;

			cr_assert_eq(lm_conn_send(cl.c, &v, sizeof(v)), 0);
			bytes += sizeof(v);
		}
		lm_tt_pattern(big, sizeof(big), round);
		cr_assert_eq(lm_conn_send(cl.c, big, sizeof(big)), 0);
		bytes += sizeof(big);
		expect += 8;
		cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == expect, 10),
			  "round %u: %zu of %zu", round, s.peers[0].received, expect);
		lm_tt_pattern(want, sizeof(want), round);
		cr_assert_eq(s.peers[0].last_len, sizeof(big));
		cr_assert(!memcmp(s.peers[0].last, want, sizeof(want)),
			  "round %u: big message damaged", round);
	}
	cr_assert_eq(s.peers[0].bytes, bytes);
	cr_assert_eq(s.peers[0].closed, 0);
	pair_free(r, &s, &cl);
}

static void raise_mq_limit(const char *scheme)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

	/* 129 queues are more than RLIMIT_MSGQUEUE's default 800 KiB allows. */
	if (!strcmp(scheme, "mq") && setrlimit(RLIMIT_MSGQUEUE, &rl) < 0)
		cr_skip_test("mq: cannot raise RLIMIT_MSGQUEUE for 128 queues: %s",
			     strerror(errno));
}

LM_TRANSPORT_TEST(transport, clients_64, .timeout = 60)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {.echo = true};
	static struct lm_tt_peer cl[64];
	int err;

	raise_mq_limit(scheme);
	err = lm_listener_new(&s.l, r, endpoint, NULL, lm_tt_accept, &s);
	cr_assert_eq(err, 0, "listen: %s", strerror(-err));
	for (int i = 0; i < 64; i++) {
		memset(&cl[i], 0, sizeof(cl[i]));
		cl[i].check_seq = true;
		/* A full request queue (fifo, mq) asks to come back later. */
		while ((err = lm_conn_connect(&cl[i].c, r, endpoint, NULL, &lm_tt_callbacks,
					      &cl[i])) == -EAGAIN)
			lm_reactor_run_once(r, 1000 * 1000);
		cr_assert_eq(err, 0, "connect %d: %s", i, strerror(-err));
	}
	cr_assert(LM_TT_RUN_UNTIL(r, s.n == 64, 10), "accepted %d", s.n);
	for (uint64_t k = 0; k < 1000; k++) {
		for (int i = 0; i < 64; i++) {
			while ((err = lm_conn_send(cl[i].c, &k, sizeof(k))) == -ENOBUFS)
				lm_reactor_run_once(r, 1000 * 1000);
			cr_assert_eq(err, 0);
		}
		lm_reactor_run_once(r, 0);
	}
	cr_assert(LM_TT_RUN_UNTIL(r, ({
					  bool all = true;
					  for (int i = 0; i < 64; i++)
						  all = all && cl[i].received == 1000;
					  all;
				  }),
				  30));
	for (int i = 0; i < 64; i++) {
		cr_assert_not(cl[i].seq_error, "client %d: out of order", i);
		cr_assert_eq(cl[i].closed, 0);
		lm_tt_peer_clear(&cl[i]);
	}
	lm_tt_server_free(&s);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, client_killed, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	int baseline, status, err;
	pid_t pid;

	err = lm_listener_new(&s.l, r, endpoint, NULL, lm_tt_accept, &s);
	cr_assert_eq(err, 0, "listen: %s", strerror(-err));
	lm_reactor_run_once(r, 0);
	baseline = lm_test_fd_count();
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		lm_reactor *cr = NULL;
		lm_conn *c = child_connect(&cr);

		if (lm_conn_send(c, "hi", 2) < 0)
			_exit(1);
		for (;;)
			lm_reactor_run_once(cr, -1);
	}
	LM_TT_RUN_UNTIL(r, s.n == 1 && s.peers[0].received == 1, 10);
	skip_if_child_starved(pid);
	cr_assert(s.n == 1 && s.peers[0].received == 1, "no client");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].closed > 0, 10), "the death was not seen");
	LM_TT_RUN_UNTIL(r, false, 0.2);
	cr_assert_eq(s.peers[0].closed, 1, "closed %d times", s.peers[0].closed);
	cr_assert_eq(s.peers[0].reason, -ECONNRESET);
	cr_assert_eq(lm_test_fd_count(), baseline, "fds: %d, baseline %d", lm_test_fd_count(),
		     baseline);
	lm_tt_server_free(&s);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, server_killed_and_replaced, .timeout = 30)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_peer cl = {0};
	int status, err;
	pid_t pid;

	forked_pair(r, &cl, &pid);
	cr_assert_eq(lm_conn_send(cl.c, "ping", 4), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 10), "no echo");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.closed > 0, 10), "the server's death was not seen");
	LM_TT_RUN_UNTIL(r, false, 0.2);
	cr_assert_eq(cl.closed, 1);
	cr_assert_eq(cl.reason, -ECONNRESET);
	cr_assert_eq(lm_conn_send(cl.c, "x", 1), -ECONNRESET);
	lm_tt_peer_clear(&cl);

	/* The dead server's leftovers are replaced by the next one. */
	memset(&cl, 0, sizeof(cl));
	wait_child_ready(lm_tt_fork_server(endpoint, &pid));
	err = connect_or_skip(&cl.c, r, &cl);
	cr_assert_eq(err, 0, "reconnect: %s", strerror(-err));
	cr_assert_eq(lm_conn_send(cl.c, "ping", 4), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 10), "no echo from the new server");
	lm_tt_peer_clear(&cl);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	lm_reactor_free(r);
}

#define DYING_BURST 20000 /* more than a pipe, a socket buffer or a queue holds */

/* The server sends BURST messages and dies at once: the client gets every
 * one, in order, then the end. fifo: the end of the client's FIFO, which
 * the server's pidfd is watched for only until its first bytes came; on
 * io_uring the rest is read by completion from then on. */
LM_TRANSPORT_TEST(transport, server_dies_after_sending, .timeout = 60)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_peer cl = {0};
	int status, err;
	pid_t pid;

	wait_child_ready(lm_tt_fork_burster(endpoint, DYING_BURST, &pid));
	err = connect_or_skip(&cl.c, r, &cl);
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
	cl.check_seq = true;
	cr_assert_eq(lm_conn_send(cl.c, "go", 2), 0);
	LM_TT_RUN_UNTIL(r, cl.closed > 0, 40);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the server failed: %#x", status);
	cr_assert_eq(cl.received, DYING_BURST, "%zu of %d messages before the end", cl.received,
		     DYING_BURST);
	cr_assert_not(cl.seq_error, "out of order");
	cr_assert_eq(cl.closed, 1, "the end seen %d times", cl.closed);
	cr_assert_eq(cl.reason, -ECONNRESET);
	lm_tt_peer_clear(&cl);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, second_listener_refused, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {.echo = true}, s2 = {0};
	struct lm_tt_peer cl;
	lm_listener *l2 = NULL;
	int status;
	pid_t pid;

	pair(r, &s, &cl);
	cr_assert_eq(lm_listener_new(&l2, r, endpoint, NULL, lm_tt_accept, &s2), -EADDRINUSE);
	/* From another process too. */
	pid = lm_test_fork();
	if (pid == 0) {
		lm_reactor *r2 = NULL;

		_exit(lm_reactor_new(&r2, NULL) == 0 &&
			      lm_listener_new(&l2, r2, endpoint, NULL, lm_tt_accept, &s2) ==
				  -EADDRINUSE
			  ? 0
			  : 1);
	}
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a second server started");
	cr_assert_eq(lm_conn_send(cl.c, "still", 5), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 5), "the first server is broken");
	memset(&s2, 0, sizeof(s2));
	{
		struct lm_tt_peer cl2 = {0};

		cr_assert_eq(connect_or_skip(&cl2.c, r, &cl2), 0);
		cr_assert_eq(lm_conn_send(cl2.c, "new", 3), 0);
		cr_assert(LM_TT_RUN_UNTIL(r, cl2.received == 1, 5), "no new connections");
		lm_tt_peer_clear(&cl2);
	}
	pair_free(r, &s, &cl);
}

static void hostile(const char *dir, const char *scheme, enum lm_backend backend, int want)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct lm_tt_server s = {0};
	lm_conn *c = NULL;
	char ep[64];
	int err;

	setenv("LM_RUNTIME_DIR", dir, 1);
	snprintf(ep, sizeof(ep), "%s:" NAME, scheme);
	err = lm_listener_new(&s.l, r, ep, NULL, lm_tt_accept, &s);
	cr_assert_eq(err, want, "%s: listen got %s", dir, strerror(-err));
	err = lm_conn_connect(&c, r, ep, NULL, &lm_tt_callbacks, NULL);
	cr_assert_lt(err, 0, "%s: connect succeeded", dir);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, hostile_runtime_dir, .timeout = 20)
{
	const char *base = lm_test_runtime_dir();
	char link[300], target[300], open_dir[300], foreign[300];
	struct stat st;
	int err;

	snprintf(target, sizeof(target), "%s/target", base);
	snprintf(link, sizeof(link), "%s/link", base);
	snprintf(open_dir, sizeof(open_dir), "%s/open", base);
	snprintf(foreign, sizeof(foreign), "%s/foreign", base);
	cr_assert_eq(mkdir(target, 0700), 0);
	cr_assert_eq(symlink(target, link), 0);
	hostile(link, scheme, backend, -EPERM);

	cr_assert_eq(mkdir(open_dir, 0700), 0);
	cr_assert_eq(chmod(open_dir, 0777), 0);
	hostile(open_dir, scheme, backend, -EPERM);
	cr_assert_eq(stat(open_dir, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0777, "the directory was touched");

	if (geteuid() == 0) {
		cr_assert_eq(mkdir(foreign, 0700), 0);
		cr_assert_eq(chown(foreign, 65534, 65534), 0);
		hostile(foreign, scheme, backend, -EPERM);
		cr_assert_eq(stat(foreign, &st), 0);
		cr_assert_eq(st.st_uid, 65534);
	}
	/* Only the private directory itself is ours: nothing was created inside. */
	{
		char p[400];

		snprintf(p, sizeof(p), "%s/" NAME ".%s", target, scheme);
		cr_assert_neq(access(p, F_OK), 0, "something was created through the symlink");
	}

	/* A foreign object at the name, with no dead server's lock beside it. */
	setenv("LM_RUNTIME_DIR", target, 1);
	err = lm_tt_foreign_at_name(scheme, NAME);
	if (err == -EMFILE)
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
	cr_assert_eq(err, 0, "cannot make the foreign object: %s", strerror(-err));
	{
		lm_reactor *r = lm_test_reactor(backend);
		struct lm_tt_server s = {0};

		err = lm_listener_new(&s.l, r,
				      scheme[0] == 'u'   ? "unix:" NAME
				      : scheme[0] == 'f' ? "fifo:" NAME
							 : "mq:" NAME,
				      NULL, lm_tt_accept, &s);
		cr_assert_eq(err, -EEXIST, "listen over a foreign object: %s", strerror(-err));
		lm_reactor_free(r);
	}
	/* And it is still there. */
	cr_assert_eq(lm_tt_foreign_at_name(scheme, NAME), -EEXIST,
		     "the foreign object was removed");
	lm_tt_foreign_remove(scheme, NAME);
}

LM_TRANSPORT_TEST(transport, bad_names, .timeout = 10)
{
	lm_reactor *r = setup(scheme, backend);
	static const char *bad[] = {"", "a/b", "..", "a..b", "a\nb", "a\x7f"};
	char ep[300], longname[102];
	struct lm_tt_server s = {0};
	lm_conn *c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(ep, sizeof(ep), "%s:%s", scheme, bad[i]);
		cr_assert_eq(lm_listener_new(&s.l, r, ep, NULL, lm_tt_accept, &s), -EINVAL, "%s",
			     ep);
		cr_assert_eq(lm_conn_connect(&c, r, ep, NULL, &lm_tt_callbacks, NULL), -EINVAL);
	}
	memset(longname, 'a', 101);
	longname[101] = 0;
	snprintf(ep, sizeof(ep), "%s:%s", scheme, longname);
	cr_assert_eq(lm_listener_new(&s.l, r, ep, NULL, lm_tt_accept, &s), -EINVAL);
	cr_assert_eq(lm_listener_new(&s.l, r, "nosuch:x", NULL, lm_tt_accept, &s),
		     -EPROTONOSUPPORT);
	snprintf(ep, sizeof(ep), "%s:nobody", scheme);
	cr_assert_lt(lm_conn_connect(&c, r, ep, NULL, &lm_tt_callbacks, NULL), 0);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, peer_cred, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	struct lm_peer_cred pc;
	int status;
	pid_t pid;

	pair_accepted(r, &s, &cl);
	cr_assert_eq(lm_conn_peer_cred(s.peers[0].c, &pc), 0);
	cr_assert_eq(pc.uid, geteuid());
	cr_assert(pc.pid == getpid(), "pid %d", (int)pc.pid);
	cr_assert_eq(lm_conn_peer_cred(cl.c, &pc), 0);
	cr_assert_eq(pc.uid, geteuid());

	pid = lm_test_fork();
	if (pid == 0) {
		lm_reactor *r2 = NULL;
		lm_conn *c = child_connect(&r2);

		if (lm_conn_send(c, "me", 2) < 0)
			_exit(1);
		for (;;)
			lm_reactor_run_once(r2, -1);
	}
	LM_TT_RUN_UNTIL(r, s.n == 2 && s.peers[1].received == 1, 10);
	skip_if_child_starved(pid);
	cr_assert(s.n == 2 && s.peers[1].received == 1);
	cr_assert_eq(lm_conn_peer_cred(s.peers[1].c, &pc), 0);
	cr_assert_eq(pc.uid, geteuid());
	cr_assert_eq(pc.pid, pid, "pid %d, child %d", (int)pc.pid, (int)pid);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	pair_free(r, &s, &cl);
}

LM_TRANSPORT_TEST(transport, other_uid_refused, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	int status, err;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("needs root to run a client as another uid");
	err = lm_listener_new(&s.l, r, endpoint, NULL, lm_tt_accept, &s);
	cr_assert_eq(err, 0);
	pid = lm_test_fork();
	if (pid == 0) {
		lm_reactor *r2 = NULL;
		struct lm_tt_peer p = {0};

		if (setgid(65534) < 0 || setuid(65534) < 0 || lm_reactor_new(&r2, NULL) < 0)
			_exit(2);
		err = lm_conn_connect(&p.c, r2, endpoint, NULL, &lm_tt_callbacks, &p);
		if (err < 0)
			_exit(err == -EPERM || err == -EACCES ? 0 : 3);
		lm_conn_send(p.c, "x", 1);
		LM_TT_RUN_UNTIL(r2, p.closed || p.received, 3);
		_exit(p.closed && !p.received ? 0 : 4);
	}
	LM_TT_RUN_UNTIL(r, false, 0.5);
	waitpid(pid, &status, 0);
	LM_TT_RUN_UNTIL(r, false, 0.1);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
		  WEXITSTATUS(status));
	cr_assert_eq(s.n, 0, "a client of another uid was accepted");
	lm_tt_server_free(&s);
	lm_reactor_free(r);
}

Test(transport, register_refuses_incomplete)
{
	static const struct lm_transport_ops empty = {.scheme = "x"};
	extern const struct lm_transport_ops lm__transport_unix;
	struct lm_transport_ops o = lm__transport_unix;

	cr_assert_eq(lm_transport_register(NULL), -EINVAL);
	cr_assert_eq(lm_transport_register(&empty), -EINVAL);
	cr_assert_eq(lm_transport_register(&lm__transport_unix), -EEXIST);
	o.scheme = "Bad!";
	cr_assert_eq(lm_transport_register(&o), -EINVAL);
	o.scheme = "unixcopy";
	o.receive = NULL;
	cr_assert_eq(lm_transport_register(&o), -EINVAL);
	o.receive = lm__transport_unix.receive;
	cr_assert_eq(lm_transport_register(&o), 0);
}

Test(transport, runtime_dir_default_rules)
{
	char buf[512], want[512];
	struct stat st;

	unsetenv("LM_RUNTIME_DIR");
	setenv("XDG_RUNTIME_DIR", lm_test_runtime_dir(), 1);
	unsetenv("LM_RUNTIME_DIR");
	snprintf(want, sizeof(want), "%s/libmessage", getenv("XDG_RUNTIME_DIR"));
	cr_assert_eq(lm_runtime_dir(buf, sizeof(buf)), (int)strlen(want));
	cr_assert_str_eq(buf, want);
	cr_assert_eq(stat(want, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_eq(lm_runtime_dir(buf, 3), -ENAMETOOLONG);
}

static void garbage_case(lm_reactor *r, const char *scheme, const void *bytes, size_t n, int want1,
			 int want2)
{
	struct lm_tt_server s = {.echo = true};
	struct lm_tt_peer cl;
	int status;
	pid_t pid;

	pair_accepted(r, &s, &cl);
	pid = lm_tt_fork_garbage(scheme, NAME, bytes, n);
	cr_assert_gt(pid, 0);
	for (double end = lm_tt_now() + 10;
	     lm_tt_now() < end && !(s.n == 2 && s.peers[1].closed);) {
		lm_reactor_run_once(r, 10 * 1000 * 1000);
		if (waitpid(pid, &status, WNOHANG) == pid && WIFEXITED(status) &&
		    WEXITSTATUS(status) == 77) {
			lm_tt_fini(); /* a skipped test may not get its .fini */
			cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
		}
	}
	cr_assert(s.n == 2 && s.peers[1].closed, "garbage not refused");
	cr_assert(s.peers[1].reason == want1 || s.peers[1].reason == want2, "closed with %s",
		  strerror(-s.peers[1].reason));
	/* The peer stays 5 s after sending: had it left, its going would
	 * have closed the connection whatever it sent. */
	cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "the peer had left before the refusal");
	cr_assert_eq(s.peers[1].received, 0);
	/* The others keep working. */
	cr_assert_eq(lm_conn_send(cl.c, "ok", 2), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 5), "the good client was hurt");
	cr_assert_eq(s.peers[0].closed, 0);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	lm_tt_peer_clear(&cl);
	lm_tt_server_free(&s);
}

LM_TRANSPORT_TEST(transport, garbage_refused, .timeout = 40)
{
	lm_reactor *r = setup(scheme, backend);
	static const unsigned char lying[] = {0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c'};
	static const unsigned char short_frame[] = {0x01, 0x02};
	static const unsigned char cut[] = {0x64, 0, 0, 0, 'a', 'b', 'c'};

	/* A length of 0xFFFFFFFF. */
	garbage_case(r, scheme, lying, sizeof(lying), -EMSGSIZE, -EPROTO);
	if (strcmp(scheme, "fifo")) { /* unix and mq: units */
		lm_test_runtime_dir();
		/* A unit too short to hold a header. */
		garbage_case(r, scheme, short_frame, sizeof(short_frame), -EPROTO, -EPROTO);
		lm_test_runtime_dir();
		/* A message cut short by the end of a unit that is no fragment. */
		garbage_case(r, scheme, cut, sizeof(cut), -EPROTO, -EPROTO);
	}
	if (!strcmp(scheme, "unix")) {
		/* An empty datagram: a read of 0 bytes, which is the end of
		 * the connection (datagrams are never empty), on both backends;
		 * io_uring's receive cannot tell it from the end either. */
		lm_test_runtime_dir();
		garbage_case(r, scheme, "", 0, -ECONNRESET, -ECONNRESET);
	}
	if (!strcmp(scheme, "unix")) {
		/* A datagram one byte over the 64 KiB unit, holding one whole
		 * message: cut to the unit it would pass for the start of a big
		 * message, so only its real length tells. */
		static unsigned char big[65537];
		uint32_t len = sizeof(big) - 4;

		memcpy(big, &len, sizeof(len));
		lm_test_runtime_dir();
		garbage_case(r, scheme, big, sizeof(big), -EPROTO, -EPROTO);
	}
	lm_reactor_free(r);
}

static void slow_server(int ready)
{
	struct lm_tt_server *s = calloc(1, sizeof(*s));
	lm_reactor *r = NULL;

	int err;

	if (lm_reactor_new(&r, NULL) < 0)
		_exit(1);
	err = lm_listener_new(&s->l, r, endpoint, NULL, lm_tt_accept, s);
	if (err < 0)
		_exit(err == -EMFILE ? 77 : 1);
	if (write(ready, "x", 1) != 1)
		_exit(1);
	while (s->n == 0)
		lm_reactor_run_once(r, -1);
	/* Accepted: now read nothing for a while. */
	usleep(1500 * 1000);
	while (!s->peers[0].closed && s->peers[0].last_len != 1)
		lm_reactor_run_once(r, -1);
	lm_listener_free(s->l);
	_exit((int)(s->peers[0].received % 256));
}

LM_TRANSPORT_TEST(transport, slow_receiver, .timeout = 40)
{
	lm_reactor *r = setup(scheme, backend);
	static unsigned char buf[65536];
	struct lm_tt_peer cl = {0};
	struct rusage ru0, ru1;
	size_t sent = 0;
	int p[2], err, status;
	double t0;
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	pid = lm_test_fork();
	if (pid == 0) {
		close(p[0]);
		slow_server(p[1]);
	}
	close(p[1]);
	{
		struct pollfd pf = {p[0], POLLIN, 0};
		char b;

		if (poll(&pf, 1, 5000) != 1 || read(p[0], &b, 1) != 1) {
			usleep(100 * 1000);
			skip_if_child_starved(pid);
			cr_assert_fail("the forked server failed");
		}
		close(p[0]);
	}
	err = connect_or_skip(&cl.c, r, &cl);
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
	for (;;) {
		err = lm_conn_send(cl.c, buf, sizeof(buf));
		if (err == -ENOBUFS)
			break;
		cr_assert_eq(err, 0, "send: %s", strerror(-err));
		sent++;
		cr_assert_lt(sent, 10000, "the queue has no bound");
		lm_reactor_run_once(r, 0);
	}
	cr_assert_leq(lm_conn_queued(cl.c), LM_DEFAULT_MAX_QUEUE);
	cr_assert_gt(lm_conn_queued(cl.c) + sizeof(buf), LM_DEFAULT_MAX_QUEUE);
	/* Waiting for the receiver costs no CPU: nothing polls in a loop. */
	getrusage(RUSAGE_SELF, &ru0);
	t0 = lm_tt_now();
	cr_assert(LM_TT_RUN_UNTIL(r, cl.drained > 0, 15), "the queue never drained");
	getrusage(RUSAGE_SELF, &ru1);
	{
		double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
			     (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
			     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
			     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;

		cr_assert_lt(cpu, 0.5 * (lm_tt_now() - t0) + 0.05, "busy loop: %.2fs CPU in %.2fs",
			     cpu, lm_tt_now() - t0);
	}
	cr_assert_eq(lm_conn_queued(cl.c), 0);
	cr_assert_eq(lm_conn_send(cl.c, buf, sizeof(buf)), 0, "sending did not resume");
	cr_assert_eq(lm_conn_send(cl.c, "E", 1), 0);
	sent += 2;
	{
		bool done = false;

		cr_assert(
		    LM_TT_RUN_UNTIL(r, done || (done = waitpid(pid, &status, WNOHANG) == pid), 15),
		    "receiver stuck");
	}
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), (int)(sent % 256), "received %d, sent %zu",
		     WEXITSTATUS(status), sent);
	lm_tt_peer_clear(&cl);
	lm_reactor_free(r);
}

/* A forked client: n messages of varied sizes, each a pattern seeded by its
 * index, as fast as it can; then waits to be killed. */
static void writer_child(int n)
{
	static unsigned char buf[20000];
	lm_reactor *r = NULL;
	struct lm_tt_peer p = {0};

	int err;

	if (lm_reactor_new(&r, NULL) < 0)
		_exit(1);
	err = lm_conn_connect(&p.c, r, endpoint, NULL, &lm_tt_callbacks, &p);
	if (err < 0)
		_exit(err == -EMFILE ? 77 : 1);
	for (int i = 0; i < n; i++) {
		size_t len = ((size_t)i * 7919u) % sizeof(buf);

		lm_tt_pattern(buf, len, (unsigned)i);
		while (lm_conn_send(p.c, buf, len) == -ENOBUFS)
			lm_reactor_run_once(r, 10 * 1000 * 1000);
	}
	while (lm_conn_queued(p.c))
		lm_reactor_run_once(r, 10 * 1000 * 1000);
	for (;;)
		lm_reactor_run_once(r, -1);
}

struct checker {
	lm_conn *c;
	int got;
	bool bad;
};

static void check_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	static unsigned char want[20000];
	struct checker *k = userdata;
	size_t wlen = ((size_t)k->got * 7919u) % sizeof(want);

	lm_tt_pattern(want, wlen, (unsigned)k->got);
	if (len != wlen || memcmp(data, want, len))
		k->bad = true;
	k->got++;
}

static struct checker checkers[4];
static int naccepted;

static void accept_checker(lm_listener *l, lm_conn *c, void *userdata)
{
	static const struct lm_conn_callbacks cb = {.message = check_message};

	if (naccepted == 4) {
		lm_conn_free(c);
		return;
	}
	checkers[naccepted].c = c;
	lm_conn_set_callbacks(c, &cb, &checkers[naccepted++]);
}

LM_TRANSPORT_TEST(transport, concurrent_writers, .timeout = 60)
{
	lm_reactor *r = setup(scheme, backend);
	lm_listener *l = NULL;
	pid_t pids[4];
	int err, status;

	err = lm_listener_new(&l, r, endpoint, NULL, accept_checker, NULL);
	cr_assert_eq(err, 0, "listen: %s", strerror(-err));
	for (int i = 0; i < 4; i++) {
		pids[i] = lm_test_fork();
		if (pids[i] == 0)
			writer_child(2000);
	}
	for (double end = lm_tt_now() + 40; lm_tt_now() < end;) {
		if (checkers[0].got + checkers[1].got + checkers[2].got + checkers[3].got == 8000)
			break;
		lm_reactor_run_once(r, 10 * 1000 * 1000);
		for (int i = 0; i < 4; i++)
			if (waitpid(pids[i], &status, WNOHANG) == pids[i] && WIFEXITED(status) &&
			    WEXITSTATUS(status) == 77) {
				lm_tt_fini(); /* a skipped test may not get its .fini */
				cr_skip_test("%s: RLIMIT_MSGQUEUE exhausted (queues of other "
					     "processes of this user count too)",
					     scheme);
			}
	}
	cr_assert(checkers[0].got + checkers[1].got + checkers[2].got + checkers[3].got == 8000,
		  "got %d %d %d %d", checkers[0].got, checkers[1].got, checkers[2].got,
		  checkers[3].got);
	for (int i = 0; i < 4; i++) {
		cr_assert_not(checkers[i].bad, "client %d: a frame was corrupted", i);
		kill(pids[i], SIGKILL);
		waitpid(pids[i], &status, 0);
		lm_conn_free(checkers[i].c);
	}
	lm_listener_free(l);
	lm_reactor_free(r);
}

/* ---- gathered output: sends in callbacks, cork, flush, free ---- */

static const size_t burst_sizes[] = {0, 1, 60, 4000, 16383, 16384, 70000, 7};
#define BURST 200

struct burst {
	lm_conn *c;
	int got;
	bool bad;
	size_t gathered; /* lm_conn_queued() just after the first small sends */
	bool freed;
};

static void burst_check(lm_conn *c, const void *data, size_t len, void *userdata)
{
	static unsigned char want[70000];
	struct burst *b = userdata;
	size_t wlen = burst_sizes[b->got % 8];

	lm_tt_pattern(want, wlen, (unsigned)b->got);
	if (len != wlen || memcmp(data, want, len))
		b->bad = true;
	b->got++;
}

/* The server side: "go" asks for the burst, "bye" for a last word and a free. */
static void burst_serve(lm_conn *c, const void *data, size_t len, void *userdata)
{
	static unsigned char buf[70000];
	struct burst *b = userdata;

	if (len == 3 && !memcmp(data, "bye", 3)) {
		cr_assert_eq(lm_conn_send(c, "ciao", 4), 0);
		lm_conn_free(c); /* the reply must still leave */
		b->c = NULL;
		b->freed = true;
		return;
	}
	for (int i = 0; i < BURST; i++) {
		size_t n = burst_sizes[i % 8];

		lm_tt_pattern(buf, n, (unsigned)i);
		cr_assert_eq(lm_conn_send(c, buf, n), 0, "send %d (%zu bytes) in a callback", i, n);
		if (i == 3)
			b->gathered = lm_conn_queued(c);
	}
}

static struct burst served;

static void burst_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	static const struct lm_conn_callbacks cb = {.message = burst_serve};

	served.c = c;
	lm_conn_set_callbacks(c, &cb, &served);
}

/* The server side of reply_to_last_read_leaves_at_once: "ping" is answered
 * with two messages, anything else with one; lm_conn_queued() after each. */
static struct {
	lm_conn *c;
	size_t queued[8];
	int n;
} lastread;

static void lastread_serve(lm_conn *c, const void *data, size_t len, void *userdata)
{
	bool ping = len == 4 && !memcmp(data, "ping", 4);

	cr_assert_eq(lm_conn_send(c, ping ? "a" : "r", 1), 0);
	lastread.queued[lastread.n++ & 7] = lm_conn_queued(c);
	if (ping) {
		cr_assert_eq(lm_conn_send(c, "bb", 2), 0);
		lastread.queued[lastread.n++ & 7] = lm_conn_queued(c);
	}
}

static void lastread_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	static const struct lm_conn_callbacks cb = {.message = lastread_serve};

	lastread.c = c;
	lm_conn_set_callbacks(c, &cb, NULL);
}

/* In a callback, what answers the last message a receive read goes out at
 * once (nothing read after it could be gathered with it); the rest, and the
 * answers to messages read before others, wait for the end of the round. */
LM_TRANSPORT_TEST(transport, reply_to_last_read_leaves_at_once, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_peer cl = {0};
	lm_listener *l = NULL;

	memset(&lastread, 0, sizeof(lastread));
	cr_assert_eq(lm_listener_new(&l, r, endpoint, NULL, lastread_accept, NULL), 0);
	cr_assert_eq(connect_or_skip(&cl.c, r, &cl), 0);
	cr_assert_eq(lm_conn_send(cl.c, "ping", 4), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 2, 10), "%zu replies", cl.received);
	cr_assert_eq(lastread.queued[0], 0, "the first answer waited");
	cr_assert_eq(lastread.queued[1], 2, "the second answer did not wait");
	cr_assert_eq(cl.last_len, 2, "out of order");
	/* Three messages in one write (a corked batch): one unit, one read. */
	cr_assert_eq(lm_conn_cork(cl.c, true), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lm_conn_send(cl.c, "xyz", 3), 0);
	cr_assert_eq(lm_conn_cork(cl.c, false), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 5, 10), "%zu replies", cl.received);
	cr_assert_eq(lastread.n, 5);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lastread.queued[2 + i], (size_t)i + 1, "answer %d: %zu queued", i,
			     lastread.queued[2 + i]);
	lm_tt_peer_clear(&cl);
	lm_listener_free(l);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, gathered_in_callback, .timeout = 40)
{
	static const struct lm_conn_callbacks ccb = {.message = burst_check};
	lm_reactor *r = setup(scheme, backend);
	struct burst cl = {0};
	lm_listener *l = NULL;
	int err;

	memset(&served, 0, sizeof(served));
	err = lm_listener_new(&l, r, endpoint, NULL, burst_accept, NULL);
	cr_assert_eq(err, 0, "listen: %s", strerror(-err));
	err = connect_or_skip(&cl.c, r, NULL);
	cr_assert_eq(err, 0, "connect: %s", strerror(-err));
	lm_conn_set_callbacks(cl.c, &ccb, &cl);
	cr_assert_eq(lm_conn_send(cl.c, "go", 2), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.got == BURST, 20), "got %d of %d", cl.got, BURST);
	cr_assert_not(cl.bad, "a message was corrupted or out of order");
	/* The first four (65 bytes) waited in the buffer until the round ended. */
	cr_assert_eq(served.gathered, 0 + 1 + 60 + 4000, "queued %zu", served.gathered);
	cr_assert_eq(lm_conn_queued(served.c), 0);

	/* A reply sent just before lm_conn_free() in the same callback leaves. */
	{
		struct lm_tt_peer p = {0};

		lm_conn_set_callbacks(cl.c, &lm_tt_callbacks, &p);
		cr_assert_eq(lm_conn_send(cl.c, "bye", 3), 0);
		cr_assert(LM_TT_RUN_UNTIL(r, p.received == 1 && p.closed, 10),
			  "received %zu, closed %d", p.received, p.closed);
		cr_assert(served.freed);
		cr_assert_eq(p.last_len, 4);
		cr_assert(!memcmp(p.last, "ciao", 4));
		free(p.last);
	}
	lm_conn_free(cl.c);
	lm_listener_free(l);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, cork_and_flush, .timeout = 40)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	uint64_t seq = 0;

	pair_accepted(r, &s, &cl);
	s.peers[0].check_seq = true;

	/* Corked: outside dispatch, sends wait for lm_conn_flush(). */
	cr_assert_eq(lm_conn_cork(cl.c, true), 0);
	for (int i = 0; i < 5; i++, seq++)
		cr_assert_eq(lm_conn_send(cl.c, &seq, sizeof(seq)), 0);
	cr_assert_eq(lm_conn_queued(cl.c), 5 * sizeof(seq));
	cr_assert_eq(lm_conn_flush(cl.c), 0);
	cr_assert_eq(lm_conn_queued(cl.c), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 5, 5));

	/* Many: never more than 64 KiB wait for the flush. */
	for (int i = 0; i < 3000; i++, seq++) {
		cr_assert_eq(lm_conn_send(cl.c, &seq, sizeof(seq)), 0, "send %d", i);
		cr_assert_leq(lm_conn_queued(cl.c), 64 * 1024, "send %d: %zu bytes gathered", i,
			      lm_conn_queued(cl.c));
		if (lm_conn_queued(cl.c) > 32 * 1024)
			lm_reactor_run_once(r, 0); /* mq's queues are 10 deep */
	}
	/* The reactor writes what is left before it waits. */
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 3005, 20), "received %zu",
		  s.peers[0].received);
	cr_assert_not(s.peers[0].seq_error, "out of order");

	/* Uncorked: outside dispatch, a send goes to the kernel at once. */
	cr_assert_eq(lm_conn_cork(cl.c, false), 0);
	cr_assert_eq(lm_conn_send(cl.c, &seq, sizeof(seq)), 0);
	cr_assert_eq(lm_conn_queued(cl.c), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 3006, 5));
	cr_assert_not(s.peers[0].seq_error, "out of order");

	cr_assert_eq(lm_conn_cork(NULL, true), -EINVAL);
	cr_assert_eq(lm_conn_flush(NULL), -EINVAL);
	pair_free(r, &s, &cl);
}

LM_TRANSPORT_TEST(transport, packed_unit, .timeout = 20)
{
	/* Three messages in one unit (datagram, queue message), as a batch is sent. */
	static const unsigned char three[] = {2, 0, 0, 0, 'h', 'i', 0,   0,   0,  0,
					      5, 0, 0, 0, 'w', 'o', 'r', 'l', 'd'};
	lm_reactor *r;
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	int status;
	pid_t pid;

	if (!strcmp(scheme, "fifo"))
		cr_skip_test("fifo is a byte stream: no units to pack");
	r = setup(scheme, backend);
	pair_accepted(r, &s, &cl);
	pid = lm_tt_fork_garbage(scheme, NAME, three, sizeof(three));
	cr_assert_gt(pid, 0);
	if (!LM_TT_RUN_UNTIL(r, s.n == 2 && s.peers[1].received == 3, 10) &&
	    waitpid(pid, &status, WNOHANG) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 77) {
		lm_tt_fini();
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
	}
	cr_assert(s.n == 2 && s.peers[1].received == 3, "received %zu",
		  s.n == 2 ? s.peers[1].received : 0);
	cr_assert_eq(s.peers[1].bytes, 7);
	cr_assert_eq(s.peers[1].last_len, 5);
	cr_assert(!memcmp(s.peers[1].last, "world", 5));
	cr_assert_eq(s.peers[1].closed, 0);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	pair_free(r, &s, &cl);
}

/* Queues of clients that died before their request was taken are removed
 * when the listener closes, and when a dead server's listener is reclaimed:
 * nothing holds the user's RLIMIT_MSGQUEUE after everyone is gone. */
/* While a server holds ep (stopped), a client runs die(NAME, c2s) and dies;
 * then the server is killed. Skips when the queues did not fit RLIMIT_MSGQUEUE. */
static void mq_client_dies_under_server(const char *ep, int (*die)(const char *, char *, size_t),
					char *c2s, size_t size)
{
	pid_t server;
	int st, ready = lm_tt_fork_server(ep, &server);
	char byte;

	cr_assert_geq(ready, 0);
	cr_assert_eq(read(ready, &byte, 1), 1, "the server did not start");
	close(ready);
	/* Stopped before the client comes, the server never takes its request:
	 * what the next listener must clean up is exactly what this client
	 * made. (A server killed between taking a request and unlinking its
	 * queues leaves them to drop_orphans(), which needs /dev/mqueue
	 * mounted: mq_orphan_queues_removed.) */
	cr_assert_eq(kill(server, SIGSTOP), 0);
	cr_assert_eq(waitpid(server, &st, WUNTRACED), server);
	cr_assert(WIFSTOPPED(st), "the server was not stopped");
	st = die(NAME, c2s, size);
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	if (st == 77)
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
	cr_assert_eq(st, 128 + SIGKILL);
}

/* Close FIFOs of mq connections in the runtime directory. */
static int close_fifos(void)
{
	char dir[4096];
	struct dirent *e;
	DIR *d;
	int n = 0;

	cr_assert_geq(lm_runtime_dir(dir, sizeof(dir)), 0);
	d = opendir(dir);
	cr_assert(d);
	while ((e = readdir(d)))
		if (strlen(e->d_name) > 4 && !strcmp(e->d_name + strlen(e->d_name) - 4, ".hup"))
			n++;
	closedir(d);
	return n;
}

/* A client that died between making its queues and sending its request, or
 * whose request a dead server had taken: no request names its queues. The
 * next listener at the name removes them (where /dev/mqueue shows them). */
LM_TRANSPORT_TEST(transport, mq_orphan_queues_removed, .timeout = 30)
{
	lm_reactor *r;
	lm_listener *l;
	char c2s[512], s2c[512], ep[64];
	mqd_t q;

	if (strcmp(scheme, "mq"))
		cr_skip_test(
		    "mq only: the other transports' names go with their runtime directory");
	if (access("/dev/mqueue", R_OK) < 0)
		cr_skip_test("/dev/mqueue is not mounted: orphan queues cannot be listed here");
	r = setup(scheme, backend);
	snprintf(ep, sizeof(ep), "mq:%s", NAME);
	mq_client_dies_under_server(ep, lm_tt_mq_queues_and_die, c2s, sizeof(c2s));
	snprintf(s2c, sizeof(s2c), "%.*ss2c", (int)strlen(c2s) - 3, c2s);
	q = mq_open(c2s, O_RDONLY | O_NONBLOCK);
	cr_assert_neq(q, (mqd_t)-1, "the client's queue %s is not there: %s", c2s, strerror(errno));
	mq_close(q);
	cr_assert_eq(lm_listener_new(&l, r, ep, NULL, lm_tt_accept, NULL), 0);
	cr_assert_eq(mq_open(c2s, O_RDONLY | O_NONBLOCK), (mqd_t)-1, "%s outlived its client", c2s);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(mq_open(s2c, O_RDONLY | O_NONBLOCK), (mqd_t)-1, "%s outlived its client", s2c);
	lm_listener_free(l);
	lm_reactor_free(r);
}

LM_TRANSPORT_TEST(transport, mq_unaccepted_requests_removed, .timeout = 30)
{
	lm_reactor *r;
	lm_listener *l;
	char c2s[512], ep[64];
	mqd_t q;
	int st;

	if (strcmp(scheme, "mq"))
		cr_skip_test(
		    "mq only: the other transports' names go with their runtime directory");
	r = setup(scheme, backend);
	snprintf(ep, sizeof(ep), "mq:%s", NAME);
	/* A listener that is freed without ever accepting. */
	cr_assert_eq(lm_listener_new(&l, r, ep, NULL, lm_tt_accept, NULL), 0);
	st = lm_tt_mq_request_and_die(NAME, c2s, sizeof(c2s));
	if (st == 77)
		cr_skip_test("mq: RLIMIT_MSGQUEUE exhausted by this user's queues");
	cr_assert_eq(st, 128 + SIGKILL);
	q = mq_open(c2s, O_RDONLY | O_NONBLOCK);
	cr_assert_neq(q, (mqd_t)-1, "the client's queue %s is not there: %s", c2s, strerror(errno));
	mq_close(q);
	cr_assert_eq(close_fifos(), 1, "the client's close FIFO is not there");
	lm_listener_free(l);
	cr_assert_eq(mq_open(c2s, O_RDONLY | O_NONBLOCK), (mqd_t)-1, "%s outlived the listener",
		     c2s);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(close_fifos(), 0, "a close FIFO outlived the listener");
	/* A server killed with a request waiting: the next listener cleans up. */
	mq_client_dies_under_server(ep, lm_tt_mq_request_and_die, c2s, sizeof(c2s));
	cr_assert_eq(lm_listener_new(&l, r, ep, NULL, lm_tt_accept, NULL), 0);
	cr_assert_eq(mq_open(c2s, O_RDONLY | O_NONBLOCK), (mqd_t)-1, "%s outlived the dead server",
		     c2s);
	cr_assert_eq(close_fifos(), 0, "a close FIFO outlived the dead server");
	lm_listener_free(l);
	lm_reactor_free(r);
}

/* A client killed between making its close FIFO and sending its request:
 * the next listener at the name removes the FIFO; a live process's stays. */
LM_TRANSPORT_TEST(transport, mq_orphan_close_fifo_removed, .timeout = 30)
{
	char dir[4096], dead[4300], live[4300];
	lm_reactor *r;
	lm_listener *l;
	pid_t pid;

	if (strcmp(scheme, "mq"))
		cr_skip_test("mq only: the others have no close FIFO");
	r = setup(scheme, backend);
	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(0);
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	cr_assert_geq(lm_runtime_dir(dir, sizeof(dir)), 0);
	snprintf(dead, sizeof(dead), "%s/%s.mq.%d.3.hup", dir, NAME, (int)pid);
	snprintf(live, sizeof(live), "%s/%s.mq.%d.3.hup", dir, NAME, (int)getpid());
	cr_assert_eq(mkfifo(dead, 0600), 0);
	cr_assert_eq(mkfifo(live, 0600), 0);
	cr_assert_eq(lm_listener_new(&l, r, endpoint, NULL, lm_tt_accept, NULL), 0);
	cr_assert_eq(access(dead, F_OK), -1, "%s outlived its client", dead);
	cr_assert_eq(access(live, F_OK), 0, "a live client's FIFO was removed");
	unlink(live);
	lm_listener_free(l);
	lm_reactor_free(r);
}

/* The name (in /dev/mqueue, without the slash) of this process's connection
 * queue ending in suffix, or "" if there is none or /dev/mqueue is not
 * mounted. */
static void own_queue(char *buf, size_t size, const char *suffix)
{
	DIR *d = opendir("/dev/mqueue");
	char pid[32];
	struct dirent *e;

	buf[0] = 0;
	if (!d)
		return;
	snprintf(pid, sizeof(pid), ".%d.", (int)getpid());
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name), k = strlen(suffix);

		if (strstr(e->d_name, pid) && n > k && !strcmp(e->d_name + n - k, suffix)) {
			snprintf(buf, size, "%s", e->d_name);
			break;
		}
	}
	closedir(d);
}

/* A client's connection queues take the shape LM_MQ_MAXMSG and
 * LM_MQ_MSGSIZE give (the server takes whatever the client made); bad
 * values are refused before any queue is made. */
LM_TRANSPORT_TEST(transport, mq_queue_shape_from_environment, .timeout = 60)
{
	static const size_t sizes[] = {0, 1, 123, 124, 125, 1000, 100000};
	struct lm_tt_server s = {.echo = true};
	struct lm_tt_peer cl = {0};
	char q[512], path[520];
	unsigned char *buf;
	lm_reactor *r;
	lm_conn *c;

	if (strcmp(scheme, "mq"))
		cr_skip_test("mq only");
	r = setup(scheme, backend);
	cr_assert_eq(lm_listener_new(&s.l, r, endpoint, NULL, lm_tt_accept, &s), 0);
	setenv("LM_MQ_MSGSIZE", "32", 1);
	cr_assert_eq(lm_conn_connect(&c, r, endpoint, NULL, &lm_tt_callbacks, &cl), -EINVAL,
		     "a unit under 64 bytes");
	setenv("LM_MQ_MSGSIZE", "128", 1);
	setenv("LM_MQ_MAXMSG", "3x", 1);
	cr_assert_eq(lm_conn_connect(&c, r, endpoint, NULL, &lm_tt_callbacks, &cl), -EINVAL,
		     "not a number");
	setenv("LM_MQ_MAXMSG", "0", 1);
	cr_assert_eq(lm_conn_connect(&c, r, endpoint, NULL, &lm_tt_callbacks, &cl), -EINVAL,
		     "no room at all");
	own_queue(q, sizeof(q), ".c2s");
	cr_assert_str_empty(q, "a refused connect left %s behind", q);

	setenv("LM_MQ_MAXMSG", "3", 1);
	cr_assert_eq(lm_conn_connect(&cl.c, r, endpoint, NULL, &lm_tt_callbacks, &cl), 0);
	/* Its queues, seen before the server takes (and unlinks) them. */
	own_queue(q, sizeof(q), ".c2s");
	if (q[0]) {
		struct mq_attr a;
		mqd_t m;

		snprintf(path, sizeof(path), "/%s", q);
		m = mq_open(path, O_RDONLY | O_NONBLOCK);
		cr_assert_neq(m, (mqd_t)-1, "%s: %s", path, strerror(errno));
		cr_assert_eq(mq_getattr(m, &a), 0);
		mq_close(m);
		cr_assert_eq(a.mq_maxmsg, 3);
		cr_assert_eq(a.mq_msgsize, 128);
	}
	/* Messages of every kind of fit, in 128-byte units three deep. */
	buf = malloc(100000);
	echo_sizes(r, &cl, sizes, sizeof(sizes) / sizeof(sizes[0]), buf);
	free(buf);
	unsetenv("LM_MQ_MAXMSG");
	unsetenv("LM_MQ_MSGSIZE");
	pair_free(r, &s, &cl);
}

/* A connection read alone, in the transport's own blocking receive
 * (lm__conn_wait, what lm_client_call_sync() waits in): mq has one, the
 * others say so and leave the waiting to the reactor. */
LM_TRANSPORT_TEST(transport, wait_alone_in_the_blocking_receive, .timeout = 20)
{
	static unsigned char big[10000];
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	struct lm_tt_peer *sp;
	int ret, rounds = 0;

	sp = pair_accepted(r, &s, &cl);
	if (strcmp(scheme, "mq") != 0) {
		cr_assert_eq(lm__conn_wait(cl.c, 1000000), -EOPNOTSUPP);
		cr_assert_eq(lm_conn_send(sp->c, "one", 3), 0);
		cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 5), "the reactor still reads");
		goto out;
	}
	/* Nothing comes: 0 once the time is up, nothing delivered. */
	cr_assert_eq(lm__conn_wait(cl.c, 2000000), 0);
	cr_assert_eq(cl.received, 0);
	/* A message waiting is taken and delivered without the reactor. */
	cr_assert_eq(lm_conn_send(sp->c, "one", 3), 0);
	cr_assert_eq(lm__conn_wait(cl.c, 5000000000), 1);
	cr_assert_eq(cl.received, 1);
	cr_assert(cl.last_len == 3 && !memcmp(cl.last, "one", 3));
	cr_assert(lm__conn_waits_alone(cl.c));
	/* From then on the reactor leaves it to the waits... */
	cr_assert_eq(lm_conn_send(sp->c, "two", 3), 0);
	for (int i = 0; i < 3; i++)
		lm_reactor_run_once(r, 10000000);
	cr_assert_eq(cl.received, 1, "the reactor read a connection waited on alone");
	cr_assert_eq(lm__conn_wait(cl.c, 5000000000), 1);
	cr_assert(cl.received == 2 && cl.last_len == 3 && !memcmp(cl.last, "two", 3));
	/* ... and a message cut into units comes whole over several waits (the
	 * sender, on this reactor, puts in what the queue has room for). */
	lm_tt_pattern(big, sizeof(big), 7);
	cr_assert_eq(lm_conn_send(sp->c, big, sizeof(big)), 0);
	while (cl.received == 2 && rounds++ < 100000) {
		lm_reactor_run_once(r, 0);
		ret = lm__conn_wait(cl.c, 100000000);
		cr_assert(ret == 0 || ret == 1, "wait: %d", ret);
	}
	cr_assert_gt(rounds, 1, "not cut into units");
	cr_assert(cl.received == 3 && cl.last_len == sizeof(big) &&
		  !memcmp(cl.last, big, sizeof(big)));
	/* Watched again, the reactor reads it as before. */
	lm__conn_watch(cl.c);
	cr_assert_not(lm__conn_waits_alone(cl.c));
	cr_assert_eq(lm_conn_send(sp->c, "three", 5), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 4, 5), "not read after lm__conn_watch()");
out:
	pair_free(r, &s, &cl);
}

/* A live peer that closes its end is told to the other side, after what it
 * sent before: each way, on every transport (mq's queues have no end of
 * file: its close channel, a FIFO, carries it). */
LM_TRANSPORT_TEST(transport, peer_closes_alive, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	struct lm_tt_peer *sp;

	sp = pair_accepted(r, &s, &cl);
	/* The client says two things and leaves. */
	cr_assert_eq(lm_conn_send(cl.c, "last", 4), 0);
	cr_assert_eq(lm_conn_send(cl.c, "words", 5), 0);
	lm_conn_free(cl.c);
	cl.c = NULL;
	cr_assert(LM_TT_RUN_UNTIL(r, sp->closed, 5), "the server did not see the client close");
	cr_assert_eq(sp->received, 2, "what was sent before the close was lost");
	cr_assert(sp->last_len == 5 && !memcmp(sp->last, "words", 5));
	cr_assert_eq(sp->reason, -ECONNRESET);
	cr_assert_eq(sp->closed, 1);
	/* A second client; the server closes it. */
	memset(&cl, 0, sizeof(cl));
	cr_assert_eq(connect_or_skip(&cl.c, r, &cl), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.n == 2, 5), "not accepted");
	sp = &s.peers[1];
	cr_assert_eq(lm_conn_send(sp->c, "bye", 3), 0);
	lm_conn_free(sp->c);
	sp->c = NULL;
	cr_assert(LM_TT_RUN_UNTIL(r, cl.closed, 5), "the client did not see the server close");
	cr_assert(cl.received == 1 && cl.last_len == 3 && !memcmp(cl.last, "bye", 3));
	cr_assert_eq(cl.reason, -ECONNRESET);
	cr_assert_eq(lm_conn_send(cl.c, "x", 1), -ECONNRESET);
	pair_free(r, &s, &cl);
}

/* A close FIFO that is not one (a regular file, a symlink, nothing): the
 * request is refused, nothing is accepted, and the listener goes on. */
LM_TRANSPORT_TEST(transport, mq_bad_close_fifo_refused, .timeout = 30)
{
	lm_reactor *r;
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;

	if (strcmp(scheme, "mq"))
		cr_skip_test("mq only: the others have no close FIFO");
	r = setup(scheme, backend);
	cr_assert_eq(lm_listener_new(&s.l, r, endpoint, NULL, lm_tt_accept, &s), 0);
	for (int kind = 1; kind <= 3; kind++) {
		pid_t pid = lm_tt_fork_mq_bad_close(NAME, kind);
		bool never = false;

		char dir[4096], hup[4300];

		cr_assert_gt(pid, 0);
		cr_assert_geq(lm_runtime_dir(dir, sizeof(dir)), 0);
		snprintf(hup, sizeof(hup), "%s/%s.mq.%d.77.hup", dir, NAME, (int)pid);
		/* Until the request was taken: the server removes the name. */
		LM_TT_RUN_UNTIL(r, never, 0.3);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert_eq(s.n, 0, "kind %d: a connection was accepted", kind);
		cr_assert(access(hup, F_OK) < 0 && errno == ENOENT,
			  "kind %d: the request was not taken", kind);
		if (kind == 2) {
			strcat(hup, ".real");
			cr_assert_eq(access(hup, F_OK), 0, "the symlink was followed");
			unlink(hup);
		}
	}
	/* A real client still gets in. */
	memset(&cl, 0, sizeof(cl));
	cr_assert_eq(connect_or_skip(&cl.c, r, &cl), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.n == 1, 5), "the listener stopped accepting");
	cr_assert_eq(lm_conn_send(cl.c, "hi", 2), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, s.peers[0].received == 1, 5));
	pair_free(r, &s, &cl);
}

static void on_fired(lm_source *s, uint64_t expirations, void *userdata)
{
	*(bool *)userdata = true;
}

static volatile sig_atomic_t alarms;

static void on_alarm(int signo)
{
	alarms++;
}

static void on_byte(lm_source *s, int fd, uint32_t events, void *userdata)
{
	char b;

	if (read(fd, &b, 1) == 1)
		(*(int *)userdata)++;
}

/* Echo one more message, waiting with lm_reactor_run_once(r, -1). */
static void echo_once(lm_reactor *r, struct lm_tt_peer *cl)
{
	size_t want = cl->received + 1;

	cr_assert_eq(lm_conn_send(cl->c, "ping", 4), 0);
	while (cl->received < want && !cl->closed)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	cr_assert_eq(cl->received, want, "closed: %d", cl->reason);
}

/*
 * A reactor whose only sources are one mq client connection's waits in
 * the connection's own blocking receive (a lone wait, docs/reactor.md) and
 * still wakes for everything else: a timer, another fd, a foreign loop
 * polling lm_reactor_fd(). Lone waits of an hour (LM_LONE_NS): one that
 * something fails to end hangs the test until its timeout. unix and fifo
 * never wait alone; the same sequence runs through their reactor.
 */
LM_TRANSPORT_TEST(transport, lone_wait_ends_for_everything_else, .timeout = 30)
{
	struct lm_tt_peer cl = {0};
	bool mq = !strcmp(scheme, "mq"), fired = false;
	struct pollfd pfd = {.events = POLLIN};
	struct sigaction sa = {.sa_handler = on_alarm}, old_sa;
	struct itimerval it = {.it_value = {0, 50000}};
	int status, p[2], got = 0;
	lm_source *t, *ps;
	lm_reactor *r;
	pid_t pid;

	setenv("LM_LONE_NS", "3600000000000", 1);
	r = setup(scheme, backend);
	forked_pair(r, &cl, &pid);
	for (int i = 0; i < 3; i++)
		echo_once(r, &cl);
	cr_assert_eq(lm__conn_waits_alone(cl.c), mq, "mq: replies not taken by lone waits");

	/* A timer ends the wait at its deadline. */
	cr_assert_eq(lm_reactor_add_timer(r, &t, 20000000, 0, on_fired, &fired), 0);
	while (!fired)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	lm_source_free(t);
	echo_once(r, &cl);

	/* Another fd: the reactor watches both, and both are heard. */
	cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	cr_assert_eq(lm_reactor_add_io(r, &ps, p[0], LM_IO_IN, on_byte, &got), 0);
	cr_assert_eq(write(p[1], "x", 1), 1);
	while (!got)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	cr_assert_not(lm__conn_waits_alone(cl.c), "not watched again beside another fd");
	echo_once(r, &cl);
	cr_assert_eq(write(p[1], "y", 1), 1);
	while (got < 2)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	lm_source_free(ps);
	close(p[0]);
	close(p[1]);
	echo_once(r, &cl);
	cr_assert_eq(lm__conn_waits_alone(cl.c), mq, "mq: no lone waits once alone again");

	/* A signal handler (no SA_RESTART) makes run_once() return, as when a
	 * signal interrupts the backend's wait: a loop checking a flag the
	 * handler sets is not left waiting. */
	cr_assert_eq(sigaction(SIGALRM, &sa, &old_sa), 0);
	cr_assert_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
	while (!alarms)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	sigaction(SIGALRM, &old_sa, NULL);
	echo_once(r, &cl);
	cr_assert_eq(lm__conn_waits_alone(cl.c), mq, "mq: no lone waits after a signal");

	/* A foreign loop polling the reactor's fd is woken for a reply. */
	pfd.fd = lm_reactor_fd(r);
	cr_assert_geq(pfd.fd, 0);
	cr_assert_not(lm__conn_waits_alone(cl.c), "not watched again for a foreign loop");
	cr_assert_eq(lm_conn_send(cl.c, "ping", 4), 0);
	for (int i = 0; i < 10 && cl.received < 8; i++) {
		cr_assert_eq(poll(&pfd, 1, 5000), 1, "the reactor's fd did not wake");
		lm_reactor_run_once(r, 0);
	}
	cr_assert_eq(cl.received, 8);
	cr_assert_not(lm__conn_waits_alone(cl.c));

	lm_tt_peer_clear(&cl);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	lm_reactor_free(r);
	unsetenv("LM_LONE_NS");
}

/* A server killed while its client's reactor waits alone (run_once(-1)):
 * seen when the lone wait ends (LM__LONE_NS, 10 ms), not never. */
LM_TRANSPORT_TEST(transport, lone_wait_sees_the_peer_die, .timeout = 30)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_peer cl = {0};
	int status;
	pid_t pid;

	forked_pair(r, &cl, &pid);
	echo_once(r, &cl);
	echo_once(r, &cl);
	cr_assert_eq(lm__conn_waits_alone(cl.c), !strcmp(scheme, "mq"));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	while (!cl.closed)
		cr_assert_geq(lm_reactor_run_once(r, -1), 0);
	cr_assert_eq(cl.reason, -ECONNRESET);
	cr_assert_eq(lm_conn_send(cl.c, "x", 1), -ECONNRESET);
	lm_tt_peer_clear(&cl);
	lm_reactor_free(r);
}

/* A wake-up (receive_wake: an empty unit in the queue) is skipped: by a
 * blocking wait, which returns 0 for it, and by the reactor's reads. */
LM_TRANSPORT_TEST(transport, receive_wake_is_no_message, .timeout = 20)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {0};
	struct lm_tt_peer cl;
	struct lm_tt_peer *sp;

	sp = pair_accepted(r, &s, &cl);
	if (!cl.c->ops->receive_wake)
		goto out;
	/* Waited for: 0 at once, nothing delivered. */
	cl.c->ops->receive_wake(cl.c->tp);
	cr_assert_eq(lm__conn_wait(cl.c, 5000000000), 0);
	cr_assert_eq(cl.received, 0);
	/* Several, before and between messages, read by the reactor. */
	lm__conn_watch(cl.c);
	cl.c->ops->receive_wake(cl.c->tp);
	cr_assert_eq(lm_conn_send(sp->c, "one", 3), 0);
	cl.c->ops->receive_wake(cl.c->tp);
	cr_assert_eq(lm_conn_send(sp->c, "two", 3), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 2, 5), "messages lost behind wake-ups");
	cr_assert(cl.last_len == 3 && !memcmp(cl.last, "two", 3));
	LM_TT_RUN_UNTIL(r, false, 0.05);
	cr_assert_eq(cl.received, 2);
	cr_assert_not(cl.closed, "a wake-up broke the connection: %d", cl.reason);
out:
	pair_free(r, &s, &cl);
}

struct freer {
	lm_conn *c;
	int got;
};

static void free_on_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	struct freer *f = userdata;

	f->got++;
	lm_conn_free(c);
	f->c = NULL;
}

static const struct lm_conn_callbacks freer_cbs = {.message = free_on_message};

/* A connection freed by its own callback while its reactor waits alone
 * (mq): the reactor goes on with no waiter (ASan sees any use after free),
 * and a new connection becomes its lone waiter. */
LM_TRANSPORT_TEST(transport, lone_waiter_freed_in_its_callback, .timeout = 30)
{
	lm_reactor *r = setup(scheme, backend);
	struct freer f = {0};
	int status, err;
	pid_t pid;

	wait_child_ready(lm_tt_fork_server(endpoint, &pid));
	for (int round = 0; round < 2; round++) {
		err = connect_cb_or_skip(&f.c, r, &freer_cbs, &f);
		cr_assert_eq(err, 0, "connect: %s", strerror(-err));
		cr_assert_eq(lm_conn_send(f.c, "ping", 4), 0);
		while (f.got == round)
			cr_assert_geq(lm_reactor_run_once(r, -1), 0);
		cr_assert_null(f.c);
		/* Nothing left to wait on: the reactor's own wait, bounded. */
		cr_assert_eq(lm_reactor_run_once(r, 20000000), 0);
	}
	cr_assert_eq(f.got, 2);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	lm_reactor_free(r);
}

/* ---- one message to many connections: lm_conn_sendv_many ---- */

#define FAN 6

/* A server and FAN clients connected to it, all on r; cs[i] is the
 * server's side of client cl[i] (accepted in order). */
struct fan {
	lm_reactor *r;
	struct lm_tt_server s;
	struct lm_tt_peer cl[FAN + 1]; /* the last: pair_free()'s, unused */
	lm_conn *cs[FAN];
	int res[FAN + 2];
};

static void fan_setup(struct fan *f, const char *scheme, enum lm_backend backend)
{
	int err;

	memset(f, 0, sizeof(*f));
	f->r = setup(scheme, backend);
	err = lm_listener_new(&f->s.l, f->r, endpoint, NULL, lm_tt_accept, &f->s);
	cr_assert_eq(err, 0, "listen %s: %s", endpoint, strerror(-err));
	for (int i = 0; i < FAN; i++) {
		err = connect_or_skip(&f->cl[i].c, f->r, &f->cl[i]);
		cr_assert_eq(err, 0, "connect %d: %s", i, strerror(-err));
		cr_assert(LM_TT_RUN_UNTIL(f->r, f->s.n == i + 1, 5), "client %d not accepted", i);
		f->cs[i] = f->s.peers[i].c;
	}
}

static void fan_free(struct fan *f)
{
	for (int i = 0; i < FAN; i++)
		lm_tt_peer_clear(&f->cl[i]);
	pair_free(f->r, &f->s, &f->cl[FAN]);
}

/* Every connection gets every message, once and in order; on unix and
 * fifo the writes are the fan-out ring's (one submission for all six), on
 * mq never (no flat write). */
LM_TRANSPORT_TEST(transport, sendv_many_reaches_each_in_order, .timeout = 30)
{
	static struct fan f;
	uint64_t w0, w1 = 0;

	fan_setup(&f, scheme, backend);
	for (int i = 0; i < FAN; i++)
		f.cl[i].check_seq = true;
	w0 = lm__reactor_fanout_writes(f.r);
	for (uint64_t k = 0; k < 20; k++) {
		struct iovec iov = {&k, sizeof(k)};

		memset(f.res, 0x55, sizeof(f.res));
		cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN, "message %d",
			     (int)k);
		for (int i = 0; i < FAN; i++)
			cr_assert_eq(f.res[i], 0, "message %d to %d: %s", (int)k, i,
				     strerror(-f.res[i]));
		if (k == 0)
			w1 = lm__reactor_fanout_writes(f.r) - w0;
	}
	for (int i = 0; i < FAN; i++) {
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 20, 5), "client %d: %zu of 20",
			  i, f.cl[i].received);
		cr_assert(!f.cl[i].seq_error, "client %d: out of order", i);
	}
	w0 = lm__reactor_fanout_writes(f.r) - w0;
	cr_log_info("%s: %d of %d writes by the fan-out ring", scheme, (int)w0, 20 * FAN);
	if (strcmp(scheme, "mq"))
		cr_assert_eq(w0, lm_test_fanout_ring() ? 20 * FAN : 0, "%d ring writes", (int)w0);
	else
		cr_assert_eq(w0, 0);
	cr_assert_eq(w1 * 20, w0, "%d ring writes, %d of the first message", (int)w0, (int)w1);
	fan_free(&f);
}

/* Write one encoded message (4-byte length, 8-byte sequence number) to the
 * connection's fd as the transport would; false when the kernel is full. */
static bool fan_raw_send(lm_conn *c, const char *scheme, uint64_t seq)
{
	unsigned char frame[12];
	uint32_t len = sizeof(seq);
	ssize_t n;

	memcpy(frame, &len, sizeof(len));
	memcpy(frame + sizeof(len), &seq, sizeof(seq));
	if (!strcmp(scheme, "unix"))
		n = send(c->fds.wfd, frame, sizeof(frame), MSG_DONTWAIT | MSG_NOSIGNAL);
	else
		n = write(c->fds.wfd, frame, sizeof(frame));
	if (n < 0 && errno == EAGAIN)
		return false;
	cr_assert_eq(n, (ssize_t)sizeof(frame), "raw write: %s", strerror(errno));
	return true;
}

/* A connection whose kernel buffer is full when the fan-out writes gets its
 * message queued (0, lm_conn_queued() > 0) and delivered after what filled
 * it; the others get theirs at once. unix and fifo: filled behind the
 * library's back, so nothing waits in the connection and the fan-out ring
 * meets the full kernel itself; mq: filled by sends until one is queued. */
LM_TRANSPORT_TEST(transport, sendv_many_full_kernel_queues_in_order, .timeout = 30)
{
	static struct fan f;
	uint64_t m = 0, w;
	struct iovec iov = {&m, sizeof(m)};

	fan_setup(&f, scheme, backend);
	f.cl[0].check_seq = true;
	if (!strcmp(scheme, "mq")) {
		while (lm_conn_queued(f.cs[0]) == 0) {
			cr_assert_eq(lm_conn_send(f.cs[0], &m, sizeof(m)), 0);
			m++;
		}
	} else {
		while (fan_raw_send(f.cs[0], scheme, m))
			m++;
		cr_assert_eq(lm_conn_queued(f.cs[0]), 0);
	}
	w = lm__reactor_fanout_writes(f.r);
	cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN);
	for (int i = 0; i < FAN; i++)
		cr_assert_eq(f.res[i], 0, "to %d: %s", i, strerror(-f.res[i]));
	w = lm__reactor_fanout_writes(f.r) - w;
	/* The full one was the ring's too: unix -EAGAIN; fifo a poll for
	 * room, taken back (-ECANCELED). */
	if (strcmp(scheme, "mq"))
		cr_assert_eq(w, lm_test_fanout_ring() ? FAN - 1 : 0, "%d ring writes", (int)w);
	cr_assert_gt(lm_conn_queued(f.cs[0]), 0, "the full one's message waits");
	for (int i = 1; i < FAN; i++)
		cr_assert_eq(lm_conn_queued(f.cs[i]), 0, "%d: nothing waits", i);
	cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[0].received == m + 1, 10), "%zu of %d",
		  f.cl[0].received, (int)m + 1);
	cr_assert(!f.cl[0].seq_error, "the queued message came out of order");
	for (int i = 1; i < FAN; i++) {
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
		cr_assert_eq(f.cl[i].last_len, sizeof(m));
		cr_assert_eq(memcmp(f.cl[i].last, &m, sizeof(m)), 0);
	}
	fan_free(&f);
}

/* Bad arguments change nothing; a NULL entry, a message over the limit and
 * a peer that is gone are each that entry's error, the others are sent; a
 * connection twice in the array gets the message twice. */
LM_TRANSPORT_TEST(transport, sendv_many_errors_are_per_connection, .timeout = 30)
{
	static struct fan f;
	lm_conn *mixed[FAN + 2];
	uint64_t m = 7;
	struct iovec iov = {&m, sizeof(m)}, bad = {NULL, 4};
	size_t big_len;
	unsigned char *big;

	fan_setup(&f, scheme, backend);
	f.res[0] = 12345;
	cr_assert_eq(lm_conn_sendv_many(NULL, 1, &iov, 1, f.res), -EINVAL);
	cr_assert_eq(lm_conn_sendv_many(f.cs, 1, &iov, 1, NULL), -EINVAL);
	cr_assert_eq(lm_conn_sendv_many(f.cs, 1, &bad, 1, f.res), -EINVAL);
	cr_assert_eq(lm_conn_sendv_many(f.cs, 1, &iov, -1, f.res), -EINVAL);
	cr_assert_eq(lm_conn_sendv_many(f.cs, 1, NULL, 1, f.res), -EINVAL);
	cr_assert_eq(f.res[0], 12345, "results untouched");
	cr_assert_eq(lm_conn_sendv_many(NULL, 0, &iov, 1, NULL), 0);

	big_len = lm_conn_max_message(f.cs[0]) + 1;
	big = calloc(1, big_len);
	cr_assert_not_null(big);
	struct iovec biov = {big, big_len};
	cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &biov, 1, f.res), 0);
	for (int i = 0; i < FAN; i++)
		cr_assert_eq(f.res[i], -EMSGSIZE);
	free(big);

	/* Client 2 goes; the server has not noticed yet (no run). */
	lm_tt_peer_clear(&f.cl[2]);
	mixed[0] = f.cs[0];
	mixed[1] = NULL;
	mixed[2] = f.cs[2];
	mixed[3] = f.cs[1];
	mixed[4] = f.cs[3];
	mixed[5] = f.cs[0];
	mixed[6] = f.cs[4];
	mixed[7] = f.cs[5];
	int n = lm_conn_sendv_many(mixed, FAN + 2, &iov, 1, f.res);
	cr_assert_eq(f.res[1], -EINVAL, "NULL entry: %d", f.res[1]);
	if (!strcmp(scheme, "unix"))
		cr_assert_eq(f.res[2], -ECONNRESET, "gone peer: %s", strerror(-f.res[2]));
	else /* fifo, mq: the writing end stays open, the death is seen later */
		cr_assert(f.res[2] == 0 || f.res[2] == -ECONNRESET, "gone peer: %s",
			  strerror(-f.res[2]));
	for (int i = 0; i < FAN + 2; i++)
		if (i != 1 && i != 2)
			cr_assert_eq(f.res[i], 0, "entry %d: %s", i, strerror(-f.res[i]));
	cr_assert_eq(n, FAN + (f.res[2] == 0), "%d sent", n);
	cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[0].received == 2, 5), "twice in the array: %zu",
		  f.cl[0].received);
	for (int i = 1; i < FAN; i++)
		if (i != 2)
			cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
	/* (fifo and mq see a peer die by its pid, and this one is alive.) */
	if (!strcmp(scheme, "unix"))
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.s.peers[2].closed == 1, 5),
			  "the gone peer is closed");
	cr_assert_eq(f.cl[0].received, 2, "no more");
	fan_free(&f);
}

/* LM_FANOUT_URING=0: no ring, every message still there. */
LM_BACKEND_TEST(transport, sendv_many_without_the_ring, .timeout = 30)
{
	static struct fan f;
	uint64_t m = 3;
	struct iovec iov = {&m, sizeof(m)};

	setenv("LM_FANOUT_URING", "0", 1);
	fan_setup(&f, "unix", backend);
	cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN);
	for (int i = 0; i < FAN; i++)
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
	cr_assert_eq(lm__reactor_fanout_writes(f.r), 0);
	fan_free(&f);
}

/* Where io_uring is refused at run time (a container's seccomp profile), a
 * fan-out still reaches everyone once: a ring whose io_uring_enter() fails
 * leaves every write to the connections, and one that cannot be made is not
 * asked for again. epoll, so that the reactor itself needs no io_uring. */
Test(transport, sendv_many_where_io_uring_is_refused, .timeout = 30, .fini = lm_tt_fini)
{
	static struct fan f;
	uint64_t k = 0, w;
	struct iovec iov = {&k, sizeof(k)};
	bool ring = lm_test_fanout_ring();

	fan_setup(&f, "unix", LM_BACKEND_EPOLL);
	for (int i = 0; i < FAN; i++)
		f.cl[i].check_seq = true;
	cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN);
	w = lm__reactor_fanout_writes(f.r);
	cr_assert_eq(w, ring ? FAN : 0, "%d ring writes", (int)w);

	/* The ring is made; now it cannot be entered. */
	cr_assert_eq(lm_test_refuse_syscall(__NR_io_uring_enter), 0);
	k = 1;
	cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN);
	for (int i = 0; i < FAN; i++)
		cr_assert_eq(f.res[i], 0, "%d: %s", i, strerror(-f.res[i]));
	cr_assert_eq(lm__reactor_fanout_writes(f.r), w);

	/* Nor made again (the failed one was let go). */
	cr_assert_eq(lm_test_refuse_syscall(__NR_io_uring_setup), 0);
	for (k = 2; k < 5; k++)
		cr_assert_eq(lm_conn_sendv_many(f.cs, FAN, &iov, 1, f.res), FAN);
	cr_assert_eq(lm__reactor_fanout_writes(f.r), w);

	for (int i = 0; i < FAN; i++) {
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 5, 5), "client %d: %zu of 5", i,
			  f.cl[i].received);
		cr_assert(!f.cl[i].seq_error, "client %d: a message lost, doubled or swapped", i);
	}
	fan_free(&f);
}

/* ---- the same from a callback: the end of the round's writes ---- */

/* What a callback does in these tests: send fan_msgs messages (sequence
 * numbers from fan_seq) to every connection of f. */
static struct fan *cb_fan;
static unsigned cb_msgs;
static uint64_t cb_seq;

static void fan_in_callback(lm_source *src, void *userdata)
{
	for (unsigned m = 0; m < cb_msgs; m++, cb_seq++) {
		struct iovec iov = {&cb_seq, sizeof(cb_seq)};

		cr_assert_eq(lm_conn_sendv_many(cb_fan->cs, FAN, &iov, 1, cb_fan->res), FAN);
	}
	lm_source_free(src);
}

/* Run fan_in_callback once, as a defer of f's reactor. */
static void run_fan_callback(struct fan *f, unsigned msgs)
{
	lm_source *d = NULL;

	cb_fan = f;
	cb_msgs = msgs;
	cr_assert_eq(lm_reactor_add_defer(f->r, &d, fan_in_callback, NULL), 0);
	cr_assert_eq(lm_source_set_enabled(d, true), 0);
	cr_assert_geq(lm_reactor_run_once(f->r, 0), 1);
}

/* Sent from a callback, one message per connection is gathered and, at the
 * round's end, written by the fan-out ring with the others (unix; fifo as
 * the kernel allows; never mq); two per connection are one batch each,
 * written by the transport as before. Every message arrives once, in
 * order. */
LM_TRANSPORT_TEST(transport, fan_out_from_a_callback, .timeout = 30)
{
	static struct fan f;
	uint64_t w0, w1, w2;

	fan_setup(&f, scheme, backend);
	for (int i = 0; i < FAN; i++)
		f.cl[i].check_seq = true;
	cb_seq = 0;
	w0 = lm__reactor_fanout_writes(f.r);
	run_fan_callback(&f, 1);
	w1 = lm__reactor_fanout_writes(f.r) - w0;
	run_fan_callback(&f, 2);
	w2 = lm__reactor_fanout_writes(f.r) - w0 - w1;
	for (int i = 0; i < FAN; i++) {
		cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 3, 5), "client %d: %zu of 3", i,
			  f.cl[i].received);
		cr_assert(!f.cl[i].seq_error, "client %d: out of order", i);
	}
	if (!strcmp(scheme, "unix"))
		cr_assert_eq(w1, lm_test_fanout_ring() ? FAN : 0, "%d ring writes", (int)w1);
	else if (!strcmp(scheme, "mq"))
		cr_assert_eq(w1, 0);
	else
		cr_assert(w1 == 0 || w1 == FAN, "%d ring writes", (int)w1);
	cr_assert_eq(w2, 0, "two messages per connection: the transport's batch");
	fan_free(&f);
}

/* Callbacks run between the round-end writes and what they do to the
 * others. The peer of connection 2 is gone: */
struct fan_victim {
	lm_conn *free_it; /* closed: free this one (its write made already) */
	lm_conn *send_it; /* closed: send this one another message */
	uint64_t send_seq;
	int closed;
};

static void victim_closed(lm_conn *c, int reason, void *userdata)
{
	struct fan_victim *v = userdata;

	v->closed++;
	if (v->free_it)
		lm_conn_free(v->free_it);
	if (v->send_it)
		cr_assert_eq(lm_conn_send(v->send_it, &v->send_seq, sizeof(v->send_seq)), 0);
	lm_conn_free(c);
}

static void victim_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
}

static const struct lm_conn_callbacks victim_cbs = {.message = victim_message,
						    .closed = victim_closed};

/* Connection 2's client goes, unseen by the server until it writes: its
 * reading is off (as if the reactor had not waited since), and v gets its
 * closed callback. */
static void fan_victim(struct fan *f, struct fan_victim *v)
{
	lm_conn_set_callbacks(f->cs[2], &victim_cbs, v);
	cr_assert_eq(lm_source_set_enabled(f->cs[2]->rsrc, false), 0);
	f->s.peers[2].c = NULL; /* freed by its callback */
	lm_tt_peer_clear(&f->cl[2]);
}

/* Message two[0] to every connection but 2, then two[0] and two[1] to 2. */
static void fan_two_cb(lm_source *src, void *userdata)
{
	uint64_t *two = userdata;

	for (int i = 0; i < FAN; i++)
		if (i != 2)
			cr_assert_eq(lm_conn_send(cb_fan->cs[i], &two[0], sizeof(two[0])), 0);
	cr_assert_eq(lm_conn_send(cb_fan->cs[2], &two[0], sizeof(two[0])), 0);
	cr_assert_eq(lm_conn_send(cb_fan->cs[2], &two[1], sizeof(two[1])), 0);
	lm_source_free(src);
}

/* ... and its closed callback, run by its round-end write's result, frees
 * connection 3, whose write the same submission made: its client gets
 * that message once, then the end. */
LM_BACKEND_TEST(transport, fan_out_callback_frees_a_written_one, .timeout = 30)
{
	static struct fan f;
	static struct fan_victim v;

	fan_setup(&f, "unix", backend);
	for (int i = 0; i < FAN; i++)
		f.cl[i].check_seq = true;
	v = (struct fan_victim){.free_it = f.cs[3]};
	fan_victim(&f, &v);
	f.s.peers[3].c = NULL; /* freed by the callback */
	cb_seq = 0;
	run_fan_callback(&f, 1);
	cr_assert_eq(v.closed, 1, "the gone peer's write broke its connection");
	for (int i = 0; i < FAN; i++)
		if (i != 2)
			cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
	cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[3].closed == 1, 5), "client 3 sees the end");
	cr_assert_eq(f.cl[3].received, 1, "once");
	fan_free(&f);
}

/* ... or, when its round-end push fails before the others are written (two
 * messages for it: not one staged write), its closed callback sends
 * connection 0 a second message while the first waits staged: both arrive,
 * in order. */
LM_BACKEND_TEST(transport, fan_out_callback_sends_to_a_staged_one, .timeout = 30)
{
	static struct fan f;
	static struct fan_victim v;
	lm_source *d = NULL;
	uint64_t two[2] = {0, 1};

	fan_setup(&f, "unix", backend);
	f.cl[0].check_seq = true;
	v = (struct fan_victim){.send_it = f.cs[0], .send_seq = 1};
	fan_victim(&f, &v);
	/* In one callback: message 0 to all but 2, which gets two, queued
	 * after the others so its push comes after their staging. */
	cb_fan = &f;
	cr_assert_eq(lm_reactor_add_defer(f.r, &d, fan_two_cb, two), 0);
	cr_assert_eq(lm_source_set_enabled(d, true), 0);
	cr_assert_geq(lm_reactor_run_once(f.r, 0), 1);
	cr_assert_eq(v.closed, 1);
	cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[0].received == 2, 5), "client 0: %zu of 2",
		  f.cl[0].received);
	cr_assert(!f.cl[0].seq_error, "client 0: out of order");
	for (int i = 1; i < FAN; i++)
		if (i != 2)
			cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
	fan_free(&f);
}

/* ... or its closed callback, run by its round-end write's result, sends
 * connection 3 (written by the same submission, its result not taken yet)
 * a second message: both arrive, in order, once. */
LM_BACKEND_TEST(transport, fan_out_callback_sends_to_a_written_one, .timeout = 30)
{
	static struct fan f;
	static struct fan_victim v;

	fan_setup(&f, "unix", backend);
	for (int i = 0; i < FAN; i++)
		f.cl[i].check_seq = true;
	v = (struct fan_victim){.send_it = f.cs[3], .send_seq = 1};
	fan_victim(&f, &v);
	cb_seq = 0;
	run_fan_callback(&f, 1);
	cr_assert_eq(v.closed, 1);
	cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[3].received == 2, 5), "client 3: %zu of 2",
		  f.cl[3].received);
	cr_assert(!f.cl[3].seq_error, "client 3: out of order");
	for (int i = 0; i < FAN; i++)
		if (i != 2 && i != 3)
			cr_assert(LM_TT_RUN_UNTIL(f.r, f.cl[i].received == 1, 5), "client %d", i);
	cr_assert_eq(lm_reactor_run_once(f.r, 0) >= 0, true);
	cr_assert_eq(f.cl[3].received, 2, "once each");
	fan_free(&f);
}

/* ---- serving on a passed listening fd (socket activation) ---- */

/* A unix socket of type at <runtime dir>/<name>.unix, listening if asked. */
static int passed_socket(const char *name, int type, bool listening)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.unix", getenv("LM_RUNTIME_DIR"), name);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	if (listening)
		cr_assert_eq(listen(fd, 16), 0);
	return fd;
}

static void no_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	lm_conn_free(c);
}

/* Every bad fd or argument gets its own error, and the fd stays the caller's. */
Test(transport, listener_new_fd_refuses)
{
	lm_reactor *r = lm_test_reactor(LM_BACKEND_EPOLL);
	lm_listener *l = NULL;
	int pipefd[2], stream, unbound, fd;

	lm_test_runtime_dir();
	fd = passed_socket("ok", SOCK_SEQPACKET, true);
	cr_assert_eq(lm_listener_new_fd(NULL, r, "unix", fd, NULL, no_accept, NULL), -EINVAL);
	cr_assert_eq(lm_listener_new_fd(&l, NULL, "unix", fd, NULL, no_accept, NULL), -EINVAL);
	cr_assert_eq(lm_listener_new_fd(&l, r, NULL, fd, NULL, no_accept, NULL), -EINVAL);
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", -1, NULL, no_accept, NULL), -EINVAL);
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", fd, NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(lm_listener_new_fd(&l, r, "nope", fd, NULL, no_accept, NULL),
		     -EPROTONOSUPPORT);
	cr_assert_eq(lm_listener_new_fd(&l, r, "fifo", fd, NULL, no_accept, NULL), -EOPNOTSUPP);
	cr_assert_eq(lm_listener_new_fd(&l, r, "mq", fd, NULL, no_accept, NULL), -EOPNOTSUPP);
	struct lm_transport_options big = {.max_message = LM_LIMIT_MAX_MESSAGE + 1};
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", fd, &big, no_accept, NULL), -EINVAL);
	cr_assert_eq(fcntl(fd, F_GETFD), FD_CLOEXEC, "the fd stays open and as it was");

	cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", pipefd[0], NULL, no_accept, NULL),
		     -ENOTSOCK);
	cr_assert_geq(fcntl(pipefd[0], F_GETFD), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	cr_assert_eq(fcntl(4000, F_GETFD), -1, "fd 4000 is not open");
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", 4000, NULL, no_accept, NULL), -EBADF);

	stream = passed_socket("stream", SOCK_STREAM, true);
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", stream, NULL, no_accept, NULL), -EPROTOTYPE);
	cr_assert_geq(fcntl(stream, F_GETFD), 0);
	close(stream);
	unbound = passed_socket("quiet", SOCK_SEQPACKET, false);
	cr_assert_eq(lm_listener_new_fd(&l, r, "unix", unbound, NULL, no_accept, NULL), -EINVAL,
		     "a socket not listening");
	cr_assert_geq(fcntl(unbound, F_GETFD), 0);
	close(unbound);
	cr_assert_null(l, "ret untouched on failure");
	close(fd);
	lm_reactor_free(r);
}

/* A listener on a passed socket serves clients of its name, takes the fd
 * (closes it, made non-blocking), takes no lock, and leaves the socket's file
 * to its maker when freed. */
LM_BACKEND_TEST(transport, listener_new_fd_serves, .timeout = 30)
{
	static struct lm_tt_server srv = {.echo = true};
	static struct lm_tt_peer cl;
	lm_reactor *r = lm_test_reactor(backend);
	const char *dir = lm_test_runtime_dir();
	char path[512];
	struct stat st;
	int fd = passed_socket("passed", SOCK_SEQPACKET, true);

	cr_assert_eq(lm_listener_new_fd(&srv.l, r, "unix", fd, NULL, lm_tt_accept, &srv), 0);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "the listener took the fd");
	cr_assert_eq(lm_conn_connect(&cl.c, r, "unix:passed", NULL, &lm_tt_callbacks, &cl), 0);
	cr_assert_eq(lm_conn_send(cl.c, "ping", 4), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 10), "the echo came back");
	cr_assert_eq(cl.last_len, 4);
	cr_assert_eq(memcmp(cl.last, "ping", 4), 0);
	snprintf(path, sizeof(path), "%s/passed.unix.lock", dir);
	cr_assert_eq(stat(path, &st), -1, "no lock file: the name is the fd maker's");
	lm_tt_peer_clear(&cl);
	lm_tt_server_free(&srv);
	snprintf(path, sizeof(path), "%s/passed.unix", dir);
	cr_assert_eq(stat(path, &st), 0, "the socket's file stays");
	cr_assert(S_ISSOCK(st.st_mode));
	lm_reactor_run_once(r, 0);
	lm_reactor_free(r);
}

/* ---- after fork() ---- */

/* The child's side: its calls that act say -ECHILD, then it frees the
 * client, the server's connection and the listener it inherited, and the
 * reactor. 0, or the check that failed. */
static int fork_child_frees(lm_reactor *r, struct lm_tt_server *s, struct lm_tt_peer *cl)
{
	lm_listener *l = NULL;
	lm_conn *c = NULL;

	if (lm_conn_send(cl->c, "x", 1) != -ECHILD ||
	    lm_conn_send(s->peers[0].c, "x", 1) != -ECHILD)
		return 10;
	if (lm_conn_flush(cl->c) != -ECHILD || lm_conn_cork(cl->c, true) != -ECHILD)
		return 11;
	if (lm_conn_connect(&c, r, endpoint, NULL, &lm_tt_callbacks, NULL) != -ECHILD || c)
		return 12;
	if (lm_listener_new(&l, r, endpoint, NULL, lm_tt_accept, s) != -ECHILD || l)
		return 13;
	lm_tt_peer_clear(cl);
	lm_tt_server_free(s);
	lm_reactor_free(r);
	return 0;
}

/* A child frees every connection and the listener it inherited, and exits:
 * the parent's connection still carries messages both ways with no close
 * seen on either side (no goodbye, no registration taken), and its
 * listener still serves (no file or queue of the name unlinked). */
LM_TRANSPORT_TEST(transport, child_frees_inherited_parent_goes_on, .timeout = 30)
{
	lm_reactor *r = setup(scheme, backend);
	struct lm_tt_server s = {.echo = true};
	struct lm_tt_peer cl, cl2 = {0}, *sp;
	int status;
	pid_t pid;

	sp = pair_accepted(r, &s, &cl);
	cr_assert_eq(lm_conn_send(cl.c, "one", 3), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 1, 10), "no echo before the fork");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fork_child_frees(r, &s, &cl));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's check %d failed",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(lm_conn_send(cl.c, "two", 3), 0);
		cr_assert(LM_TT_RUN_UNTIL(r, cl.received == 2 + (size_t)i, 10),
			  "no echo after the fork (closed %d/%d)", cl.closed, sp->closed);
	}
	cr_assert_eq(sp->received, 4);
	cr_assert_eq(cl.closed, 0, "the client saw a close (%d)", cl.reason);
	cr_assert_eq(sp->closed, 0, "the server's side saw a close (%d)", sp->reason);
	/* A new client gets in: the name's files are there. */
	cr_assert_eq(connect_or_skip(&cl2.c, r, &cl2), 0);
	cr_assert_eq(lm_conn_send(cl2.c, "three", 5), 0);
	cr_assert(LM_TT_RUN_UNTIL(r, cl2.received == 1, 10), "a new client got no echo");
	lm_tt_peer_clear(&cl2);
	pair_free(r, &s, &cl);
}
