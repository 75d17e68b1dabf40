/* SPDX-License-Identifier: MIT */
/* lm-bridge-bench: bridged calls and signals against bare MQTT 5 through the same broker, one run.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <libmessage/libmessage.h>

static const char usage[] =
    "usage: lm-bridge-bench [--bridge PATH] [--calls N] [--signals N] [--qos 0|1]\n"
    "Starts mosquitto on 127.0.0.1 and measures, in one run:\n"
    "  bare:    request/response between two libmosquitto processes (response topic +\n"
    "           correlation data), and QoS 0 publish throughput between them;\n"
    "  bridged: a libmessage client -> lm-bridge (host hb) -> broker -> lm-bridge (host ha)\n"
    "           -> a libmessage server, and the server's signals back the same way.\n"
    "Prints p50/p99 round trips, signals per second, and bridged/bare ratios.\n";

static int port, qos = 1;
static char dir[64], rt[2][80];
static pid_t pids[8];
static int npids;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cleanup(void)
{
	char cmd[300];

	for (int i = 0; i < npids; i++) {
		kill(pids[i], SIGTERM);
		waitpid(pids[i], NULL, 0);
	}
	npids = 0;
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s %s %s", dir, rt[0], rt[1]);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup failed\n");
	}
}

static pid_t child(void)
{
	pid_t pid = fork();

	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	else
		pids[npids++] = pid;
	return pid;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, size_t n, double *p50)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	*p50 = (double)v[n / 2] / 1000.0;
	printf("%-28s p50 %8.1f us  p99 %8.1f us  (%zu calls)\n", what, *p50,
	       (double)v[n * 99 / 100] / 1000.0, n);
}

/* ---- bare MQTT 5 ---- */

static struct mosquitto *mq_new(const char *id, void *obj)
{
	struct mosquitto *m = mosquitto_new(id, true, obj);

	if (!m)
		exit(1);
	mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
	return m;
}

static void mq_connect(struct mosquitto *m)
{
	if (mosquitto_connect_bind_v5(m, "127.0.0.1", port, 30, NULL, NULL) != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "bench: cannot connect to the broker\n");
		exit(1);
	}
}

static void responder_msg(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
			  const mosquitto_property *props)
{
	mosquitto_property *out = NULL;
	char *topic = NULL;
	void *corr = NULL;
	uint16_t clen = 0;

	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &topic, false);
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &clen, false);
	if (corr)
		mosquitto_property_add_binary(&out, MQTT_PROP_CORRELATION_DATA, corr, clen);
	if (topic)
		mosquitto_publish_v5(m, NULL, topic, msg->payloadlen, msg->payload, qos, false,
				     out);
	mosquitto_property_free_all(&out);
	free(topic);
	free(corr);
}

static int burst; /* signals the bare peer publishes after its callback */

static void publisher_msg(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
			  const mosquitto_property *props)
{
	char n[16] = {0};

	memcpy(n, msg->payload, msg->payloadlen < 15 ? (size_t)msg->payloadlen : 15);
	burst = atoi(n);
}

static void peer_msg(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
		     const mosquitto_property *props)
{
	if (strcmp(msg->topic, "bench/burst") == 0)
		publisher_msg(m, obj, msg, props);
	else
		responder_msg(m, obj, msg, props);
}

/* The bare peer: answers bench/req, and publishes bench/sig bursts on request. */
static void bare_peer(void)
{
	struct mosquitto *m = mq_new("bench-peer", NULL);

	mosquitto_message_v5_callback_set(m, peer_msg);
	mq_connect(m);
	mosquitto_subscribe_v5(m, NULL, "bench/req", qos, 0, NULL);
	mosquitto_subscribe_v5(m, NULL, "bench/burst", 1, 0, NULL);
	for (;;) {
		char payload[16] = {0};

		mosquitto_loop(m, -1, 1);
		for (int i = 0; i < burst; i++) {
			memcpy(payload, &i, sizeof(i));
			mosquitto_publish_v5(m, NULL, "bench/sig", 16, payload, 0, false, NULL);
			while (mosquitto_want_write(m)) { /* the socket is full: wait for room */
				struct pollfd p = {mosquitto_socket(m), POLLOUT, 0};
				poll(&p, 1, 1000);
				if (mosquitto_loop_write(m, 1) != MOSQ_ERR_SUCCESS)
					break;
			}
		}
		burst = 0;
	}
}

struct bare {
	struct mosquitto *m;
	int got;
	uint64_t id, last;
	int sigs;
	uint64_t t_first, t_last;
};

static void requester_msg(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
			  const mosquitto_property *props)
{
	struct bare *b = obj;
	void *corr = NULL;
	uint16_t clen = 0;

	if (strcmp(msg->topic, "bench/sig") == 0) {
		if (b->sigs++ == 0)
			b->t_first = now_ns();
		b->t_last = now_ns();
		return;
	}
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &clen, false);
	if (corr && clen == 8 && memcmp(corr, &b->id, 8) == 0)
		b->got = 1;
	free(corr);
}

static void bare_calls(int n, uint64_t *rtt)
{
	struct bare b = {0};
	mosquitto_property *props = NULL;
	char payload[16] = "0123456789abcdef";

	b.m = mq_new("bench-requester", &b);
	mosquitto_message_v5_callback_set(b.m, requester_msg);
	mq_connect(b.m);
	mosquitto_subscribe_v5(b.m, NULL, "bench/rep", qos, 0, NULL);
	for (int i = 0; i < 50; i++) /* the subscription and the peer's settle */
		mosquitto_loop(b.m, 10, 1);
	for (int i = -100; i < n; i++) { /* 100 warm-up calls */
		uint64_t t0 = now_ns();

		b.id++;
		b.got = 0;
		mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "bench/rep");
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, &b.id, 8);
		mosquitto_publish_v5(b.m, NULL, "bench/req", 16, payload, qos, false, props);
		mosquitto_property_free_all(&props);
		while (!b.got)
			if (mosquitto_loop(b.m, 5000, 1) != MOSQ_ERR_SUCCESS) {
				fprintf(stderr, "bench: lost the broker\n");
				exit(1);
			}
		if (i >= 0)
			rtt[i] = now_ns() - t0;
	}
	mosquitto_destroy(b.m);
}

static double bare_signals(int n)
{
	struct bare b = {0};
	char count[16];
	uint64_t end;

	b.m = mq_new("bench-subscriber", &b);
	mosquitto_message_v5_callback_set(b.m, requester_msg);
	mq_connect(b.m);
	mosquitto_subscribe_v5(b.m, NULL, "bench/sig", 0, 0, NULL);
	for (int i = 0; i < 50; i++)
		mosquitto_loop(b.m, 10, 1);
	snprintf(count, sizeof(count), "%d", n);
	mosquitto_publish_v5(b.m, NULL, "bench/burst", (int)strlen(count), count, 1, false, NULL);
	end = now_ns() + 30000000000ull;
	while (b.sigs < n && now_ns() < end)
		mosquitto_loop(b.m, 200, 1);
	mosquitto_destroy(b.m);
	if (b.sigs < n)
		printf("bare signals: %d of %d arrived (QoS 0)\n", b.sigs, n);
	return b.sigs > 1 ? (double)(b.sigs - 1) * 1e9 / (double)(b.t_last - b.t_first) : 0;
}

/* ---- the libmessage side ---- */

static lm_server *srv;

static void m_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, payload, len);
}

static void m_burst(lm_call *call, const void *payload, size_t len, void *userdata)
{
	uint32_t n = 0;
	char sig[16] = {0};

	if (len == 4)
		memcpy(&n, payload, 4);
	lm_call_reply(call, NULL, 0);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(sig, &i, 4);
		lm_server_emit(srv, "sig", sig, 16);
	}
}

static void lm_peer(void)
{
	static const struct lm_method methods[] = {{"echo", m_echo}, {"burst", m_burst}};
	lm_reactor *r;

	setenv("LM_RUNTIME_DIR", rt[0], 1);
	if (lm_reactor_new(&r, NULL) < 0 || lm_server_new(&srv, r, "unix:bench", NULL) < 0 ||
	    lm_server_add_methods(srv, methods, 2, NULL) < 0 ||
	    lm_server_add_signal(srv, "sig", LM_OVERFLOW_DROP_OLDEST) < 0)
		_exit(1);
	lm_reactor_run(r);
	_exit(0);
}

static void start_bridge(const char *path, int i)
{
	char broker[64], q[4], log[128];

	snprintf(broker, sizeof(broker), "mqtt://127.0.0.1:%d", port);
	snprintf(q, sizeof(q), "%d", qos);
	snprintf(log, sizeof(log), "%s/bridge%d.log", dir, i);
	if (child() == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 2);
		setenv("LM_RUNTIME_DIR", rt[i], 1);
		execl(path, path, "--broker", broker, "--qos", q, "--host", i ? "hb" : "ha",
		      i ? "--import" : "--export", i ? "ha/bench" : "bench", (char *)NULL);
		_exit(127);
	}
}

static int sigs;
static uint64_t sig_first, sig_last;

static void on_sig(lm_client *c, const char *signal, const void *payload, size_t len,
		   uint64_t dropped, void *userdata)
{
	uint64_t t = now_ns();

	if (sigs++ == 0)
		sig_first = t;
	sig_last = t;
}

static void bridged(const char *path, int ncalls, int nsigs, uint64_t *rtt, double *sig_rate)
{
	struct lm_client_options o = {.reconnect_min_ns = 10000000, .reconnect_max_ns = 100000000};
	char payload[16] = "0123456789abcdef";
	struct lm_reply *rep;
	lm_reactor *r;
	lm_client *c;
	uint64_t end;
	uint32_t n = (uint32_t)nsigs;

	if (child() == 0)
		lm_peer();
	start_bridge(path, 0);
	start_bridge(path, 1);
	setenv("LM_RUNTIME_DIR", rt[1], 1);
	if (lm_reactor_new(&r, NULL) < 0 || lm_client_new(&c, r, "unix:ha.bench", &o) < 0)
		exit(1);
	end = now_ns() + 20000000000ull;
	while (lm_client_get_state(c) != LM_CLIENT_CONNECTED && now_ns() < end)
		lm_reactor_run_once(r, 10000000);
	if (lm_client_get_state(c) != LM_CLIENT_CONNECTED) {
		fprintf(stderr, "bench: the imported endpoint never came up (logs in %s)\n", dir);
		exit(1);
	}
	for (int i = -100; i < ncalls; i++) {
		uint64_t t0 = now_ns();

		if (lm_client_call_sync(c, "echo", payload, 16, 10000000000ll, &rep) != 0) {
			fprintf(stderr, "bench: a bridged call failed\n");
			exit(1);
		}
		lm_reply_free(rep);
		if (i >= 0)
			rtt[i] = now_ns() - t0;
	}
	lm_client_subscribe(c, "sig", on_sig, NULL);
	/* The subscription is in once a call on the same connection returned. */
	for (int i = 0; i < 20; i++)
		lm_reactor_run_once(r, 10000000);
	if (lm_client_call_sync(c, "burst", &n, 4, 10000000000ll, &rep) == 0)
		lm_reply_free(rep);
	end = now_ns() + 30000000000ull;
	while (sigs < nsigs && now_ns() < end)
		lm_reactor_run_once(r, 200000000);
	if (sigs < nsigs)
		printf("bridged signals: %d of %d arrived\n", sigs, nsigs);
	*sig_rate = sigs > 1 ? (double)(sigs - 1) * 1e9 / (double)(sig_last - sig_first) : 0;
	lm_client_free(c);
	lm_reactor_free(r);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	p = ntohs(a.sin_port);
	close(fd);
	return p;
}

static void start_broker(void)
{
	char conf[128], text[256];
	FILE *f;

	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", dir);
	f = fopen(conf, "w");
	if (!f)
		exit(1);
	fprintf(f,
		"listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
		"max_queued_messages 0\nset_tcp_nodelay true\n%s",
		port, geteuid() == 0 ? "user root\n" : "");
	fclose(f);
	if (child() == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

		ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (ok)
			return;
		usleep(10000);
	}
	snprintf(text, sizeof(text), "bench: mosquitto did not start on port %d\n", port);
	fputs(text, stderr);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int ncalls = 2000, nsigs = 20000;
	uint64_t *bare_rtt, *br_rtt;
	double bare_p50, br_p50, bare_rate, br_rate;
	char self[4096];
	ssize_t n;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bridge") && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
			ncalls = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--signals") && i + 1 < argc)
			nsigs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--qos") && i + 1 < argc)
			qos = atoi(argv[++i]);
		else {
			fputs(usage, strcmp(argv[i], "--help") ? stderr : stdout);
			return strcmp(argv[i], "--help") ? 2 : 0;
		}
	}
	if (ncalls < 100 || nsigs < 100 || (qos != 0 && qos != 1)) {
		fputs("lm-bridge-bench: --calls and --signals at least 100, --qos 0 or 1\n",
		      stderr);
		return 2;
	}
	if (!path) { /* beside this program */
		n = readlink("/proc/self/exe", self, sizeof(self) - 20);
		if (n <= 0)
			return 1;
		self[n] = 0;
		strcpy(strrchr(self, '/') + 1, "lm-bridge");
		path = self;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/lm-bridge-bench-XXXXXX");
	snprintf(rt[0], sizeof(rt[0]), "/tmp/lm-bridge-bench-a-XXXXXX");
	snprintf(rt[1], sizeof(rt[1]), "/tmp/lm-bridge-bench-b-XXXXXX");
	if (!mkdtemp(dir) || !mkdtemp(rt[0]) || !mkdtemp(rt[1]))
		return 1;
	atexit(cleanup);
	bare_rtt = calloc((size_t)ncalls, sizeof(uint64_t));
	br_rtt = calloc((size_t)ncalls, sizeof(uint64_t));
	if (!bare_rtt || !br_rtt)
		return 1;
	port = free_port();
	mosquitto_lib_init();
	start_broker();
	if (child() == 0)
		bare_peer();
	printf("lm-bridge-bench: mosquitto on 127.0.0.1:%d, QoS %d for calls, 16-byte payloads\n",
	       port, qos);
	bare_calls(ncalls, bare_rtt);
	bare_rate = bare_signals(nsigs);
	bridged(path, ncalls, nsigs, br_rtt, &br_rate);
	report("bare MQTT 5 request/reply", bare_rtt, (size_t)ncalls, &bare_p50);
	report("bridged libmessage call", br_rtt, (size_t)ncalls, &br_p50);
	printf("%-28s %8.0f /s\n%-28s %8.0f /s\n", "bare MQTT 5 QoS 0 publish", bare_rate,
	       "bridged libmessage signal", br_rate);
	printf("ratio call p50 bridged/bare: %.2f\n", br_p50 / bare_p50);
	printf("ratio signal throughput bare/bridged: %.2f\n",
	       br_rate > 0 ? bare_rate / br_rate : 0);
	mosquitto_lib_cleanup();
	return 0;
}
