/* SPDX-License-Identifier: MIT */
/* lm-bridge end to end: a real mosquitto broker, two bridges (two hosts), real services. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/libmessage.h>

#include "lm_test.h"

#define MOSQUITTO "/usr/sbin/mosquitto"
#define MAX_PROCS 8

/* Everything one test starts: killed and removed by teardown. */
static struct {
	char dir[64];       /* temp dir: broker config, logs */
	char rt[2][128];    /* runtime dirs: [0] host "ha" (exporter), [1] host "hb" */
	char svc[32];       /* the exported service's name, unique per run */
	const char *scheme; /* the local transport on both sides */
	int port;
	const char *bind_ip; /* where the broker listens (127.0.0.1 unless in a netns) */
	const char *url;     /* the broker URL's scheme: mqtt (default) or mqtts */
	pid_t broker, server, bridge[2];
	char bridge_log[2][200];
	const char *netns[2]; /* the bridges run in these namespaces when set */
	char nsname[2][32];   /* namespaces this test made (deleted by teardown) */
} T;

static const char *transports[] = {"unix", "fifo", "mq"};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *bridge_path(void)
{
	static char path[4200];
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0);
	exe[n] = 0;
	snprintf(path, sizeof(path), "%s/../bridge/lm-bridge", dirname(exe));
	if (access(path, X_OK) != 0)
		cr_skip_test("%s not built (LM_WITH_BRIDGE=OFF)", path);
	return path;
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static void teardown(void)
{
	pid_t pids[] = {T.bridge[0], T.bridge[1], T.server, T.broker};

	for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++)
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	for (int i = 0; i < 2; i++)
		if (T.nsname[i][0]) {
			char cmd[100];
			snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", T.nsname[i]);
			if (system(cmd) != 0)
				fprintf(stderr, "cleanup: %s failed\n", cmd);
		}
	if (T.dir[0]) {
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "rm -rf %s %s %s", T.dir, T.rt[0], T.rt[1]);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup: %s failed\n", cmd);
	}
	memset(&T, 0, sizeof(T));
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

/* The test's own state: a temp dir and two runtime dirs. */
static void setup(const char *scheme)
{
	char t[] = "/tmp/lm-bridge-XXXXXX";

	if (access(MOSQUITTO, X_OK) != 0)
		cr_skip_test("%s not installed", MOSQUITTO);
	bridge_path();
	memset(&T, 0, sizeof(T));
	atexit(teardown);
	cr_assert_not_null(mkdtemp(t));
	snprintf(T.dir, sizeof(T.dir), "%s", t);
	for (int i = 0; i < 2; i++) {
		char r[] = "/tmp/lm-bridge-rt-XXXXXX";
		cr_assert_not_null(mkdtemp(r));
		snprintf(T.rt[i], sizeof(T.rt[i]), "%s", r);
	}
	snprintf(T.svc, sizeof(T.svc), "t%d", (int)getpid());
	T.scheme = scheme;
	T.bind_ip = "127.0.0.1";
	T.port = free_port();
}

static bool broker_up(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
	int fd;
	bool ok;

	if (T.netns[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd),
			 "ip netns exec %s bash -c 'echo > /dev/tcp/%s/%d' 2>/dev/null", T.netns[0],
			 T.bind_ip, T.port);
		return system(cmd) == 0;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, T.bind_ip, &a.sin_addr);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* Start mosquitto from a config this test writes; extra is appended to it. */
static void broker_start(const char *extra)
{
	char conf[128], text[1024], log[128];

	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", T.dir);
	snprintf(log, sizeof(log), "%s/mosquitto.log", T.dir);
	/* As root, mosquitto would switch to its own user and could not read
	 * the test's private files. */
	snprintf(text, sizeof(text),
		 "listener %d %s\npersistence false\nmax_queued_messages 5000\n%s%s\n", T.port,
		 T.bind_ip, geteuid() == 0 ? "user root\n" : "",
		 extra ? extra : "allow_anonymous true\n");
	write_file(conf, text);
	T.broker = lm_test_fork();
	cr_assert_geq(T.broker, 0);
	if (T.broker == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		if (T.netns[0])
			execl("/usr/sbin/ip", "ip", "netns", "exec", T.netns[0], MOSQUITTO, "-c",
			      conf, (char *)NULL);
		else
			execl(MOSQUITTO, MOSQUITTO, "-c", conf, (char *)NULL);
		_exit(127);
	}
	for (uint64_t end = now_ms() + 10000; !broker_up(); usleep(20000))
		cr_assert_lt(now_ms(), end, "mosquitto did not listen on %s:%d (see %s)", T.bind_ip,
			     T.port, log);
}

static void broker_kill(void)
{
	kill(T.broker, SIGKILL);
	waitpid(T.broker, NULL, 0);
	T.broker = 0;
}

/* Start bridge i (0: host ha exporting the service, 1: host hb importing it). */
static void bridge_start(int i, const char *const *extra)
{
	char broker[64], exp[128], imp[160];
	const char *argv[32];
	int n = 0;

	snprintf(broker, sizeof(broker), "%s://%s:%d", T.url ? T.url : "mqtt", T.bind_ip, T.port);
	snprintf(exp, sizeof(exp), "%s=%s:%s", T.svc, T.scheme, T.svc);
	snprintf(imp, sizeof(imp), "ha/%s=%s:ha.%s", T.svc, T.scheme, T.svc);
	char log[200];
	snprintf(log, sizeof(log), "%s/bridge%d.log", T.dir, i);
	memcpy(T.bridge_log[i], log, sizeof(log));
	if (T.netns[i]) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = T.netns[i];
	}
	argv[n++] = bridge_path();
	argv[n++] = "-v";
	argv[n++] = "--broker";
	argv[n++] = broker;
	argv[n++] = "--host";
	argv[n++] = i == 0 ? "ha" : "hb";
	argv[n++] = i == 0 ? "--export" : "--import";
	argv[n++] = i == 0 ? exp : imp;
	for (; extra && *extra; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	T.bridge[i] = lm_test_fork();
	cr_assert_geq(T.bridge[i], 0);
	if (T.bridge[i] == 0) {
		int fd = open(T.bridge_log[i], O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		setenv("LM_RUNTIME_DIR", T.rt[i], 1);
		execv(T.netns[i] ? "/usr/sbin/ip" : argv[0], (char **)argv);
		_exit(127);
	}
}

static void show_logs(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "tail -n 20 %s/*.log >&2", T.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "no logs\n");
}

/* ---- the service on host ha, in a child process ---- */

static lm_server *srv;

static void m_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, payload, len);
}

static void m_hold(lm_call *call, const void *payload, size_t len, void *userdata)
{
	/* Never answered: the call waits until its client gives up. */
}

static void m_emit(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_server_emit(srv, "tick", payload, len);
	lm_call_reply(call, NULL, 0);
}

static void on_tick(lm_source *s, uint64_t expirations, void *userdata)
{
	static uint32_t n;

	n++;
	lm_server_emit(srv, "tick", &n, sizeof(n));
}

static const struct lm_method methods[] = {{"echo", m_echo}, {"hold", m_hold}, {"emit", m_emit}};

static void server_start(void)
{
	T.server = lm_test_fork();
	cr_assert_geq(T.server, 0);
	if (T.server == 0) {
		char ep[64];
		lm_reactor *r;
		struct lm_server_options o = {.name = T.svc, .transport.max_message = 4 << 20};

		setenv("LM_RUNTIME_DIR", T.rt[0], 1);
		snprintf(ep, sizeof(ep), "%s:%s", T.scheme, T.svc);
		if (lm_reactor_new(&r, NULL) < 0 || lm_server_new(&srv, r, ep, &o) < 0 ||
		    lm_server_add_methods(srv, methods, 3, NULL) < 0 ||
		    lm_server_add_signal(srv, "tick", LM_OVERFLOW_DROP_OLDEST) < 0 ||
		    lm_reactor_add_timer(r, NULL, 50000000, 50000000, on_tick, NULL) < 0)
			_exit(1);
		lm_reactor_run(r);
		_exit(0);
	}
}

/* ---- the client on host hb ---- */

struct watch {
	enum lm_client_state state;
	int downs; /* DISCONNECTED after CONNECTED */
	int ticks;
	int emitted; /* "tick" signals of 5 bytes: sent by the method emit */
};

static void on_state(lm_client *c, enum lm_client_state state, int reason, void *userdata)
{
	struct watch *w = userdata;

	if (state == LM_CLIENT_DISCONNECTED && w->state == LM_CLIENT_CONNECTED)
		w->downs++;
	w->state = state;
}

static lm_client *client_new(lm_reactor *r, struct watch *w)
{
	struct lm_client_options o = {.max_pending = 2000,
				      .reconnect_min_ns = 20000000,
				      .reconnect_max_ns = 200000000,
				      .transport.max_message = 4 << 20};
	char ep[64];
	lm_client *c;

	setenv("LM_RUNTIME_DIR", T.rt[1], 1);
	snprintf(ep, sizeof(ep), "%s:ha.%s", T.scheme, T.svc);
	cr_assert_eq(lm_client_new(&c, r, ep, &o), 0);
	lm_client_set_state_cb(c, on_state, w);
	w->state = lm_client_get_state(c);
	return c;
}

/* Run r until *flag is true or ms pass; a bound, not a measurement. */
static bool run_until(lm_reactor *r, const int *flag, int want, uint64_t ms)
{
	uint64_t end = now_ms() + ms;

	while (*flag < want && now_ms() < end)
		lm_reactor_run_once(r, 20000000);
	return *flag >= want;
}

static void wait_connected(lm_reactor *r, struct watch *w)
{
	int up = 0;
	uint64_t end = now_ms() + 20000;

	while (now_ms() < end && !(up = w->state == LM_CLIENT_CONNECTED))
		lm_reactor_run_once(r, 20000000);
	if (!up)
		show_logs();
	cr_assert(up, "the imported endpoint never came up");
}

struct result {
	int done;
	int status;
	char error[64];
	size_t len;
	char payload[64];
};

static void on_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct result *res = userdata;

	res->done++;
	res->status = reply->status;
	res->len = reply->len;
	snprintf(res->error, sizeof(res->error), "%s", reply->error_name ? reply->error_name : "");
	if (reply->len)
		memcpy(res->payload, reply->payload, reply->len < 64 ? reply->len : 64);
}

static void call(lm_reactor *r, lm_client *c, const char *method, const void *p, size_t len,
		 struct result *res)
{
	memset(res, 0, sizeof(*res));
	cr_assert_eq(lm_client_call(c, method, p, len, 30ll * 1000000000, on_reply, res), 0);
	if (!run_until(r, &res->done, 1, 30000))
		show_logs();
	cr_assert_eq(res->done, 1);
}

static void on_tick_msg(lm_client *c, const char *signal, const void *payload, size_t len,
			uint64_t dropped, void *userdata)
{
	struct watch *w = userdata;

	if (strcmp(signal, "tick") == 0 && len == 4)
		w->ticks++;
	if (strcmp(signal, "tick") == 0 && len == 5)
		w->emitted++;
}

/* Both hosts up, the imported endpoint answering. */
static lm_client *start_all(lm_reactor **r, struct watch *w, const char *broker_extra,
			    const char *const *bridge_extra)
{
	broker_start(broker_extra);
	server_start();
	bridge_start(0, bridge_extra);
	bridge_start(1, bridge_extra);
	cr_assert_eq(lm_reactor_new(r, NULL), 0);
	lm_client *c = client_new(*r, w);
	wait_connected(*r, w);
	return c;
}

/* ---- the tests ---- */

ParameterizedTestParameters(bridge, call_signal_introspect)
{
	static int which[] = {0, 1, 2};

	return cr_make_param_array(int, which, 3);
}

ParameterizedTest(int *which, bridge, call_signal_introspect, .timeout = 90)
{
	struct watch w = {0};
	struct result res;
	struct lm_reply *rep;
	lm_reactor *r;
	lm_client *c;
	char want[64];

	setup(transports[*which]);
	c = start_all(&r, &w, NULL, NULL);

	call(r, c, "echo", "hello", 5, &res);
	cr_assert_eq(res.status, 0, "echo: %s %s", strerror(-res.status), res.error);
	cr_assert_eq(res.len, 5);
	cr_assert_eq(memcmp(res.payload, "hello", 5), 0);

	/* An empty payload and an unknown method come back as they would locally. */
	call(r, c, "echo", NULL, 0, &res);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(res.len, 0);
	call(r, c, "nosuch", NULL, 0, &res);
	cr_assert_eq(res.status, -EREMOTEIO);
	cr_assert_str_eq(res.error, "lm.UnknownMethod");

	/* The description is the remote service's own, as it gave it. */
	cr_assert_eq(lm_client_call_sync(c, "lm.Introspect", NULL, 0, 10ll * 1000000000, &rep), 0);
	snprintf(want, sizeof(want), "server %s\n", T.svc);
	cr_assert(rep->len > strlen(want) && memcmp(rep->payload, want, strlen(want)) == 0, "%.*s",
		  (int)rep->len, (const char *)rep->payload);
	cr_assert(memmem(rep->payload, rep->len, "method echo\n", 12));
	cr_assert(memmem(rep->payload, rep->len, "signal tick drop-oldest\n", 24));
	lm_reply_free(rep);

	/* Signals cross too. */
	cr_assert_eq(lm_client_subscribe(c, "tick", on_tick_msg, &w), 0);
	if (!run_until(r, &w.ticks, 5, 20000))
		show_logs();
	cr_assert_geq(w.ticks, 5);

	/* A fire-and-forget call crosses as one: "emit" runs (its signal, with
	 * a 5-byte payload, arrives) and nothing answers it. */
	w.emitted = 0;
	cr_assert_eq(lm_client_call_no_reply(c, "emit", "fired", 5), 0);
	if (!run_until(r, &w.emitted, 1, 20000))
		show_logs();
	cr_assert_eq(w.emitted, 1);
	cr_assert_eq(lm_client_pending(c), 0);
	lm_client_free(c);
	lm_reactor_free(r);
}

Test(bridge, payload_at_the_size_limit, .timeout = 90)
{
	const size_t limit = 65536;
	struct watch w = {0};
	struct result res;
	lm_reactor *r;
	lm_client *c;
	char conf[200];
	char *big = malloc(limit + 70000);

	cr_assert_not_null(big);
	memset(big, 'x', limit + 70000);
	setup("unix");
	/* message_size_limit bounds a payload; max_packet_size (told to the
	 * clients in CONNACK) a whole packet. */
	snprintf(conf, sizeof(conf),
		 "allow_anonymous true\nmessage_size_limit %zu\nmax_packet_size %zu\n", limit,
		 limit + 4096);
	c = start_all(&r, &w, conf, NULL);

	call(r, c, "echo", big, limit, &res);
	cr_assert_eq(res.status, 0, "at the limit: %s %s", strerror(-res.status), res.error);
	cr_assert_eq(res.len, limit);

	/* One byte over: the broker refuses it (PUBACK 0x95), at once. */
	call(r, c, "echo", big, limit + 1, &res);
	cr_assert_eq(res.status, -EREMOTEIO);
	cr_assert_str_eq(res.error, "lm.MessageTooLarge");

	/* Over the packet size: libmosquitto refuses before sending. */
	call(r, c, "echo", big, limit + 65536, &res);
	cr_assert_eq(res.status, -EREMOTEIO);
	cr_assert_str_eq(res.error, "lm.MessageTooLarge");

	/* And the link is still fine. */
	call(r, c, "echo", "ok", 2, &res);
	cr_assert_eq(res.status, 0);
	free(big);
	lm_client_free(c);
	lm_reactor_free(r);
}

/* A call the service never answers, on its way (60 s timeout). */
static void hold_call(lm_reactor *r, lm_client *c, struct result *held)
{
	memset(held, 0, sizeof(*held));
	cr_assert_eq(lm_client_call(c, "hold", NULL, 0, 60ll * 1000000000, on_reply, held), 0);
	for (int i = 0; i < 10; i++)
		lm_reactor_run_once(r, 10000000);
	cr_assert_eq(held->done, 0);
}

/* The held call ends with a disconnection, long before its timeout. */
static void expect_disconnected(lm_reactor *r, struct result *held)
{
	if (!run_until(r, &held->done, 1, 20000))
		show_logs();
	cr_assert_eq(held->done, 1);
	cr_assert(held->status == -ECONNRESET ||
		      (held->status == -EREMOTEIO && !strcmp(held->error, "lm.Disconnected")),
		  "%s %s", strerror(-held->status), held->error);
}

Test(bridge, broker_restart, .timeout = 120)
{
	struct watch w = {0};
	struct result held, res;
	lm_reactor *r;
	lm_client *c;

	setup("unix");
	c = start_all(&r, &w, NULL, NULL);
	cr_assert_eq(lm_client_subscribe(c, "tick", on_tick_msg, &w), 0);
	cr_assert(run_until(r, &w.ticks, 1, 20000));

	hold_call(r, c, &held);

	/* The broker goes: the call in flight fails long before its 60 s. */
	broker_kill();
	expect_disconnected(r, &held);

	/* It comes back: the bridges reconnect, resubscribe, and calls work. */
	broker_start(NULL);
	wait_connected(r, &w);
	call(r, c, "echo", "again", 5, &res);
	cr_assert_eq(res.status, 0, "%s %s", strerror(-res.status), res.error);
	w.ticks = 0;
	cr_assert(run_until(r, &w.ticks, 3, 20000), "signals did not resume");
	lm_client_free(c);
	lm_reactor_free(r);
}

Test(bridge, exporter_killed, .timeout = 120)
{
	struct watch w = {0};
	struct result held, res;
	lm_reactor *r;
	lm_client *c;

	setup("unix");
	c = start_all(&r, &w, NULL, NULL);
	hold_call(r, c, &held);

	/* kill -9 of the exporting bridge: its will tells the importer. */
	kill(T.bridge[0], SIGKILL);
	waitpid(T.bridge[0], NULL, 0);
	T.bridge[0] = 0;
	expect_disconnected(r, &held);
	cr_assert(run_until(r, &w.downs, 1, 20000), "the imported endpoint did not go");

	/* The exporter comes back: so does the endpoint. */
	bridge_start(0, NULL);
	wait_connected(r, &w);
	call(r, c, "echo", "back", 4, &res);
	cr_assert_eq(res.status, 0, "%s %s", strerror(-res.status), res.error);

	/* The service itself killed: the same, seen through the exporter. */
	hold_call(r, c, &held);
	kill(T.server, SIGKILL);
	waitpid(T.server, NULL, 0);
	T.server = 0;
	expect_disconnected(r, &held);
	lm_client_free(c);
	lm_reactor_free(r);
}

Test(bridge, call_deadline_carried, .timeout = 90)
{
	const char *const extra[] = {"--call-timeout", "300", NULL};
	struct watch w = {0};
	struct result res;
	lm_reactor *r;
	lm_client *c;

	setup("unix");
	c = start_all(&r, &w, NULL, extra);
	/* The client would wait 30 s; the bridge's deadline (300 ms) ends it. */
	call(r, c, "hold", NULL, 0, &res);
	cr_assert_eq(res.status, -EREMOTEIO);
	cr_assert_str_eq(res.error, "lm.Timeout");
	lm_client_free(c);
	lm_reactor_free(r);
}

static void on_numbered(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	int *seen = userdata;
	uint32_t i;

	seen[1000]++;
	if (reply->status != 0 || reply->len != 4) {
		seen[1001]++;
		return;
	}
	memcpy(&i, reply->payload, 4);
	if (i < 1000)
		seen[i]++;
}

Test(bridge, thousand_calls_in_flight, .timeout = 120)
{
	static int seen[1002];
	struct watch w = {0};
	lm_reactor *r;
	lm_client *c;

	setup("unix");
	c = start_all(&r, &w, NULL, NULL);
	for (uint32_t i = 0; i < 1000; i++)
		cr_assert_eq(lm_client_call(c, "echo", &i, 4, 60ll * 1000000000, on_numbered, seen),
			     0);
	if (!run_until(r, &seen[1000], 1000, 60000))
		show_logs();
	cr_assert_eq(seen[1000], 1000);
	cr_assert_eq(seen[1001], 0, "%d calls failed", seen[1001]);
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(seen[i], 1, "reply %d seen %d times", i, seen[i]);
	/* Nothing late or duplicated comes after. */
	for (int i = 0; i < 20; i++)
		lm_reactor_run_once(r, 10000000);
	cr_assert_eq(seen[1000], 1000);
	lm_client_free(c);
	lm_reactor_free(r);
}

/* Run lm-bridge with args, capture stderr; its exit code. */
static int run_bridge(const char *args, char *out, size_t size)
{
	char cmd[1024];
	FILE *f;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd), "timeout 20 %s %s 2>&1", bridge_path(), args);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	n = fread(out, 1, size - 1, f);
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(bridge, wrong_password_refused, .timeout = 90)
{
	char conf[400], cmd[600], out[4096], args[600], pw[200];
	struct watch w = {0};
	struct result res;
	lm_reactor *r;
	lm_client *c;
	int code;

	setup("unix");
	snprintf(pw, sizeof(pw), "%s/passwd", T.dir);
	snprintf(cmd, sizeof(cmd), "mosquitto_passwd -b -c %s bridge s3cret >/dev/null 2>&1", pw);
	if (system(cmd) != 0)
		cr_skip_test("mosquitto_passwd failed");
	snprintf(conf, sizeof(conf), "allow_anonymous false\npassword_file %s\n", pw);
	snprintf(cmd, sizeof(cmd), "%s/good", T.dir);
	write_file(cmd, "s3cret\n");
	chmod(cmd, 0600);
	snprintf(cmd, sizeof(cmd), "%s/bad", T.dir);
	write_file(cmd, "guess\n");
	chmod(cmd, 0600);

	broker_start(conf);
	snprintf(args, sizeof(args),
		 "--broker mqtt://127.0.0.1:%d --host hx --import ha/x --username bridge "
		 "--password-file %s/bad",
		 T.port, T.dir);
	code = run_bridge(args, out, sizeof(out));
	cr_assert_eq(code, 3, "exit %d: %s", code, out);
	cr_assert(strstr(out, "refused user 'bridge'") && strstr(out, "MQTT reason 13"), "%s", out);

	/* With no credentials at all: refused too. */
	snprintf(args, sizeof(args), "--broker mqtt://127.0.0.1:%d --host hx --import ha/x",
		 T.port);
	code = run_bridge(args, out, sizeof(out));
	cr_assert_eq(code, 3, "exit %d: %s", code, out);

	/* The right one works end to end. */
	snprintf(args, sizeof(args), "%s/good", T.dir);
	const char *const extra[] = {"--username", "bridge", "--password-file", args, NULL};
	server_start();
	bridge_start(0, extra);
	bridge_start(1, extra);
	cr_assert_eq(lm_reactor_new(&r, NULL), 0);
	c = client_new(r, &w);
	wait_connected(r, &w);
	call(r, c, "echo", "pw", 2, &res);
	cr_assert_eq(res.status, 0);
	lm_client_free(c);
	lm_reactor_free(r);
}

Test(bridge, bad_configuration, .timeout = 60)
{
	char out[4096], path[200];
	struct {
		const char *args, *says;
	} cases[] = {
	    {"--import ha/x", "no broker"},
	    {"--broker mqtt://127.0.0.1:1883", "nothing to do"},
	    {"--broker http://x --import ha/x", "is not mqtt://"},
	    {"--broker mqtt://x:99999 --import ha/x", "broker port"},
	    {"--broker mqtt://x --import hax", "not HOST/SERVICE"},
	    {"--broker mqtt://x --import ha/x/y", "host and service"},
	    {"--broker mqtt://x --export a+b", "service name"},
	    {"--broker mqtt://x --export a --export a", "exported twice"},
	    {"--broker mqtt://x --import a/b --qos 2", "qos"},
	    {"--broker mqtt://x --import a/b --host a/b", "host 'a/b'"},
	    {"--broker mqtt://x --import a/b --username u --password-file /nonexistent",
	     "No such file"},
	    {"--broker mqtt://x --import a/b --bogus", "unknown option"},
	    {"--config /nonexistent", "config /nonexistent"},
	};

	setup("unix");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int code = run_bridge(cases[i].args, out, sizeof(out));
		cr_expect_eq(code, 2, "%s: exit %d", cases[i].args, code);
		cr_expect(strstr(out, cases[i].says), "%s: said %s", cases[i].args, out);
	}
	/* A config file's error names its line. */
	snprintf(path, sizeof(path), "%s/bad.conf", T.dir);
	write_file(path, "# a comment\nbroker = mqtt://x\nimport = a/b\nqos = seven\n");
	char args[300];
	snprintf(args, sizeof(args), "--config %s", path);
	cr_assert_eq(run_bridge(args, out, sizeof(out)), 2);
	cr_assert(strstr(out, "bad.conf:4: qos: 'seven'"), "%s", out);
}

/* Two hosts in two network namespaces joined by a veth pair. */
Test(bridge, across_network_namespaces, .timeout = 120)
{
	char cmd[1024], (*ns)[32] = T.nsname;
	struct watch w = {0};
	struct result res;
	lm_reactor *r;
	lm_client *c;
	int id = getpid() % 200 + 20;

	if (geteuid() != 0)
		cr_skip_test("needs root for ip netns");
	setup("unix");
	snprintf(ns[0], sizeof(ns[0]), "lmbr-a-%d", (int)getpid());
	snprintf(ns[1], sizeof(ns[1]), "lmbr-b-%d", (int)getpid());
	snprintf(cmd, sizeof(cmd),
		 "set -e; ip netns add %s; ip netns add %s; "
		 "ip link add lmbr%da netns %s type veth peer name lmbr%db netns %s; "
		 "ip -n %s addr add 10.213.%d.1/24 dev lmbr%da; ip -n %s link set lmbr%da up; "
		 "ip -n %s link set lo up; "
		 "ip -n %s addr add 10.213.%d.2/24 dev lmbr%db; ip -n %s link set lmbr%db up",
		 ns[0], ns[1], id, ns[0], id, ns[1], ns[0], id, id, ns[0], id, ns[0], ns[1], id, id,
		 ns[1], id);
	if (system(cmd) != 0)
		cr_skip_test("ip netns does not work here"); /* teardown deletes what was made */
	static char ip[32];
	snprintf(ip, sizeof(ip), "10.213.%d.1", id);
	T.bind_ip = ip;
	T.netns[0] = ns[0];
	T.netns[1] = ns[1];
	/* The broker and host ha in the first namespace, host hb in the second:
	 * hb reaches the broker over the veth pair only. */
	broker_start(NULL);
	server_start();
	bridge_start(0, NULL);
	bridge_start(1, NULL);
	cr_assert_eq(lm_reactor_new(&r, NULL), 0);
	c = client_new(r, &w);
	wait_connected(r, &w);
	call(r, c, "echo", "netns", 5, &res);
	cr_assert_eq(res.status, 0, "%s %s", strerror(-res.status), res.error);
	lm_client_free(c);
	lm_reactor_free(r);
	teardown();
	snprintf(cmd, sizeof(cmd), "ip netns list | grep -c 'lmbr-[ab]-%d'", (int)getpid());
	memset(&T, 0, sizeof(T));
	cr_assert_neq(system(cmd), 0, "the namespaces were not deleted");
}

/* Make a CA, a broker certificate for 127.0.0.1 and a client certificate in T.dir. */
static bool make_certs(void)
{
	char cmd[2048];

	snprintf(
	    cmd, sizeof(cmd),
	    "cd %s && exec >openssl.log 2>&1 && set -e && "
	    "key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
	    "openssl req -x509 $key -keyout ca.key -out ca.crt -days 2 -subj /CN=lm-test-ca && "
	    "openssl req -x509 $key -keyout other.key -out other.crt -days 2 -subj /CN=other && "
	    "openssl req $key -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 && "
	    "printf 'subjectAltName=IP:127.0.0.1\n' > san && "
	    "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
	    "-out srv.crt -days 2 -extfile san && "
	    "openssl req $key -keyout cli.key -out cli.csr -subj /CN=bridge && "
	    "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
	    "-out cli.crt -days 2",
	    T.dir);
	return system(cmd) == 0;
}

Test(bridge, tls_with_client_certificates, .timeout = 90)
{
	char conf[600], ca[100], cert[100], key[100], args[600], out[4096];
	struct watch w = {0};
	struct result res;
	lm_reactor *r;
	lm_client *c;

	setup("unix");
	if (access("/usr/bin/openssl", X_OK) != 0 || !make_certs())
		cr_skip_test("openssl cannot make the test certificates");
	snprintf(conf, sizeof(conf),
		 "allow_anonymous true\ncafile %s/ca.crt\ncertfile %s/srv.crt\nkeyfile %s/srv.key\n"
		 "require_certificate true\n",
		 T.dir, T.dir, T.dir);
	broker_start(conf);
	T.url = "mqtts";
	snprintf(ca, sizeof(ca), "%s/ca.crt", T.dir);
	snprintf(cert, sizeof(cert), "%s/cli.crt", T.dir);
	snprintf(key, sizeof(key), "%s/cli.key", T.dir);

	/* A broker certificate from another CA: refused, and said so. */
	snprintf(args, sizeof(args),
		 "--broker mqtts://127.0.0.1:%d --host hx --import ha/x --ca-file %s/other.crt "
		 "--cert-file %s --key-file %s",
		 T.port, T.dir, cert, key);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "timeout 8 %s %s 2>&1", bridge_path(), args);
	FILE *f = popen(cmd, "r");
	size_t n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = 0;
	pclose(f);
	cr_assert(strstr(out, "TLS") && strstr(out, "certificate verify failed"), "said: %s", out);

	const char *const extra[] = {"--ca-file", ca, "--cert-file", cert, "--key-file", key, NULL};
	server_start();
	bridge_start(0, extra);
	bridge_start(1, extra);
	cr_assert_eq(lm_reactor_new(&r, NULL), 0);
	c = client_new(r, &w);
	wait_connected(r, &w);
	call(r, c, "echo", "tls", 3, &res);
	cr_assert_eq(res.status, 0, "%s %s", strerror(-res.status), res.error);
	cr_assert_eq(lm_client_subscribe(c, "tick", on_tick_msg, &w), 0);
	cr_assert(run_until(r, &w.ticks, 3, 20000));
	lm_client_free(c);
	lm_reactor_free(r);
}
