/* SPDX-License-Identifier: MIT */
/* lm-bridge: carries libmessage services between hosts over MQTT 5, on one reactor thread. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <time.h>

#include <mqtt_protocol.h>

#include "bridge.h"

#define RETRY_MIN_NS (100ll * 1000 * 1000)
#define RETRY_MAX_NS (5ll * 1000 * 1000 * 1000)

void blog(int level, const char *fmt, ...)
{
	va_list ap;

	if (level > LM_LOG_WARN && !bridge_verbose)
		return;
	fputs("lm-bridge: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

char *topic_join(const char *first, ...)
{
	size_t n = 0, off = 0;
	const char *s;
	char *t;
	va_list ap;

	va_start(ap, first);
	for (s = first; s; s = va_arg(ap, const char *))
		n += strlen(s) + 1;
	va_end(ap);
	t = malloc(n + 1);
	if (!t)
		return NULL;
	va_start(ap, first);
	for (s = first; s; s = va_arg(ap, const char *)) {
		size_t l = strlen(s);
		if (off)
			t[off++] = '/';
		memcpy(t + off, s, l);
		off += l;
	}
	va_end(ap);
	t[off] = 0;
	return t;
}

/* ---- QoS 1 publishes waiting for their PUBACK ---- */

static int pub_cmp(const struct pub_wait *a, const struct pub_wait *b)
{
	return a->mid < b->mid ? -1 : a->mid > b->mid;
}
BRIDGE_RB_GENERATE(pub_tree, pub_wait, link, pub_cmp)

void pub_wait_add(struct bridge *b, struct pub_wait *w, int mid)
{
	w->mid = mid;
	if (mid && RB_INSERT(pub_tree, &b->pubs, w))
		w->mid = 0; /* a mid still in use: its PUBACK is not told */
}

void pub_wait_del(struct bridge *b, struct pub_wait *w)
{
	if (w->mid)
		RB_REMOVE(pub_tree, &b->pubs, w);
	w->mid = 0;
}

/* ---- driving libmosquitto's socket from the reactor ---- */

/* Watch for writability only while libmosquitto has bytes queued. */
static void link_sync(struct bridge *b)
{
	if (b->io)
		lm_io_set_events(b->io, LM_IO_IN | (mosquitto_want_write(b->mosq) ? LM_IO_OUT : 0));
}

static void link_lost(struct bridge *b)
{
	lm_source_free(b->io);
	b->io = NULL;
	lm_source_set_enabled(b->link_down, true);
}

static void on_io(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct bridge *b = userdata;
	int rc = MOSQ_ERR_SUCCESS;

	if (events & (LM_IO_IN | LM_IO_ERR | LM_IO_HUP)) {
		/* libmosquitto reads one packet per call: take what the kernel
		 * holds now (a PUBACK and the next PUBLISH often come together)
		 * rather than one packet per reactor iteration. */
		int avail = 0;

		for (int i = 0; i < 64 && rc == MOSQ_ERR_SUCCESS && b->io; i++) {
			rc = mosquitto_loop_read(b->mosq, 1);
			if (ioctl(fd, FIONREAD, &avail) < 0 || avail == 0)
				break;
		}
	}
	if (rc == MOSQ_ERR_SUCCESS && b->io && (events & LM_IO_OUT))
		rc = mosquitto_loop_write(b->mosq, 1);
	if (rc != MOSQ_ERR_SUCCESS && b->io) {
		/* libmosquitto closed the socket (and told on_disconnect, if it
		 * was connected). Before CONNACK, say why: a TLS handshake that
		 * did not end in the connect call fails here. */
		if (!b->connected && rc != b->last_connect_err)
			blog(LM_LOG_WARN, "cannot connect to the broker %s:%d: %s%s%s%s (retrying)",
			     b->cfg.broker_host, b->cfg.broker_port, mosquitto_strerror(rc),
			     b->last_error[0] ? " (" : "", b->last_error,
			     b->last_error[0] ? ")" : "");
		if (!b->connected)
			b->last_connect_err = rc;
		link_lost(b);
		return;
	}
	link_sync(b);
}

static void on_misc(lm_source *s, uint64_t expirations, void *userdata)
{
	struct bridge *b = userdata;

	if (!b->io)
		return;
	if (mosquitto_loop_misc(b->mosq) != MOSQ_ERR_SUCCESS) {
		link_lost(b);
		return;
	}
	link_sync(b);
}

int link_publish(struct bridge *b, const char *topic, const void *payload, size_t len, int qos,
		 bool retain, const mosquitto_property *props, int *mid)
{
	int rc;

	if (!b->connected)
		return MOSQ_ERR_NO_CONN;
	if (len > INT32_MAX)
		return MOSQ_ERR_PAYLOAD_SIZE;
	rc = mosquitto_publish_v5(b->mosq, mid, topic, (int)len, payload, qos, retain, props);
	link_sync(b);
	return rc;
}

int link_subscribe(struct bridge *b, const char *topic, int qos)
{
	int rc = mosquitto_subscribe_v5(b->mosq, NULL, topic, qos, 0, NULL);

	if (rc != MOSQ_ERR_SUCCESS)
		blog(LM_LOG_WARN, "subscribe %s: %s", topic, mosquitto_strerror(rc));
	link_sync(b);
	return rc;
}

static void schedule_retry(struct bridge *b)
{
	uint64_t jitter;

	if (b->stopping)
		return;
	if (b->backoff_ns == 0)
		b->backoff_ns = RETRY_MIN_NS;
	/* Up to a quarter of jitter, so bridges that lost one broker do not
	 * all come back in the same millisecond. */
	jitter = (uint64_t)rand() % (uint64_t)(b->backoff_ns / 4 + 1);
	lm_timer_set(b->retry, (uint64_t)b->backoff_ns + jitter, 0);
	b->backoff_ns = b->backoff_ns * 2 > RETRY_MAX_NS ? RETRY_MAX_NS : b->backoff_ns * 2;
}

/* PUBACKs that will not come: the session ended with the connection. */
static void forget_pubs(struct bridge *b)
{
	struct pub_wait *w;

	while ((w = RB_MIN(pub_tree, &b->pubs))) {
		pub_wait_del(b, w);
		if (w->kind == PUB_IMPORT_CALL)
			import_call_acked(b, w, -1);
		else
			export_reply_acked(b, w, -1);
	}
}

/* Everything that follows a lost or refused connection, outside libmosquitto's callbacks. */
static void on_link_down(lm_source *s, void *userdata)
{
	struct bridge *b = userdata;

	lm_source_set_enabled(s, false);
	if (b->stopping) /* our own DISCONNECT: nothing was lost */
		return;
	if (b->io)
		link_lost(b);
	forget_pubs(b);
	if (b->connected) {
		b->connected = false;
		blog(LM_LOG_WARN, "lost the broker %s:%d", b->cfg.broker_host, b->cfg.broker_port);
		imports_link_down(b, "lm-bridge lost its MQTT broker");
	}
	if (b->exit_code)
		lm_reactor_stop(b->r, b->exit_code);
	else
		schedule_retry(b);
}

static void link_connect(struct bridge *b)
{
	int rc, fd, err;

	b->last_error[0] = 0;
	rc = mosquitto_connect_bind_v5(b->mosq, b->cfg.broker_host, b->cfg.broker_port,
				       b->cfg.keepalive, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		int e = rc == MOSQ_ERR_ERRNO ? errno : 0;
		if (rc != b->last_connect_err)
			blog(LM_LOG_WARN, "cannot reach the broker %s:%d: %s%s%s%s (retrying)",
			     b->cfg.broker_host, b->cfg.broker_port,
			     e ? strerror(e) : mosquitto_strerror(rc), b->last_error[0] ? " (" : "",
			     b->last_error, b->last_error[0] ? ")" : "");
		b->last_connect_err = rc;
		schedule_retry(b);
		return;
	}
	fd = mosquitto_socket(b->mosq);
	err = lm_reactor_add_io(b->r, &b->io, fd, LM_IO_IN, on_io, b);
	if (err < 0) {
		blog(LM_LOG_ERROR, "cannot watch the broker socket: %s", strerror(-err));
		mosquitto_disconnect(b->mosq);
		schedule_retry(b);
		return;
	}
	link_sync(b);
}

static void on_retry(lm_source *s, uint64_t expirations, void *userdata)
{
	link_connect(userdata);
}

/* ---- libmosquitto's callbacks (run inside loop_read/loop_write/loop_misc) ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
		       const mosquitto_property *props)
{
	struct bridge *b = obj;
	char *topic;

	if (rc != 0) {
		if (rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD || rc == MQTT_RC_NOT_AUTHORIZED ||
		    rc == MQTT_RC_BANNED || rc == MQTT_RC_BAD_AUTHENTICATION_METHOD) {
			blog(LM_LOG_ERROR,
			     "the broker %s:%d refused user '%s': %s (MQTT reason %d)",
			     b->cfg.broker_host, b->cfg.broker_port,
			     b->cfg.username ? b->cfg.username : "(none)",
			     mosquitto_reason_string(rc), rc);
			b->exit_code = BRIDGE_EXIT_REFUSED;
		} else {
			blog(LM_LOG_WARN, "the broker refused the connection: %s (MQTT reason %d)",
			     mosquitto_reason_string(rc), rc);
		}
		lm_source_set_enabled(b->link_down, true);
		return;
	}
	b->connected = true;
	b->backoff_ns = 0;
	b->last_connect_err = 0;
	blog(LM_LOG_INFO, "connected to %s:%d as host %s", b->cfg.broker_host, b->cfg.broker_port,
	     b->cfg.host);
	link_subscribe(b, b->reply_topic, b->cfg.qos);
	imports_link_up(b);
	exports_link_up(b);
	topic = topic_join(b->cfg.prefix, b->cfg.host, "presence", NULL);
	if (topic)
		link_publish(b, topic, "online", 6, 1, true, NULL, NULL);
	free(topic);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
	struct bridge *b = obj;

	if (rc && b->connected)
		blog(LM_LOG_INFO, "disconnected: %s", mosquitto_reason_string(rc));
	lm_source_set_enabled(b->link_down, true);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason,
		       const mosquitto_property *props)
{
	struct bridge *b = obj;
	struct pub_wait key = {.mid = mid}, *w;

	w = RB_FIND(pub_tree, &b->pubs, &key);
	if (!w)
		return;
	pub_wait_del(b, w);
	if (w->kind == PUB_IMPORT_CALL)
		import_call_acked(b, w, reason);
	else
		export_reply_acked(b, w, reason);
}

/* Split topic into at most 6 levels; the number of levels, or -1 if more. */
static int split(char *topic, char *lv[6])
{
	int n = 0;

	for (char *s = topic;; s++) {
		if (n == 6)
			return -1;
		lv[n++] = s;
		s = strchr(s, '/');
		if (!s)
			return n;
		*s = 0;
	}
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
		       const mosquitto_property *props)
{
	struct bridge *b = obj;
	char *topic = strdup(msg->topic), *lv[6];
	int n;

	if (!topic)
		return;
	n = split(topic, lv);
	if (n < 3 || strcmp(lv[0], b->cfg.prefix) != 0)
		goto out;
	/* lm/<host>/presence */
	if (n == 3 && strcmp(lv[2], "presence") == 0)
		import_presence(b, lv[1], msg->payload, (size_t)msg->payloadlen);
	/* lm/<me>/reply/<instance> */
	else if (n == 4 && strcmp(lv[2], "reply") == 0 && strcmp(lv[3], b->instance) == 0 &&
		 strcmp(lv[1], b->cfg.host) == 0)
		import_reply(b, msg, props);
	/* lm/<host>/<service>/introspect */
	else if (n == 4 && strcmp(lv[3], "introspect") == 0)
		import_introspect(b, lv[1], lv[2], msg->payload, (size_t)msg->payloadlen);
	/* lm/<host>/<service>/signal/<name> */
	else if (n == 5 && strcmp(lv[3], "signal") == 0)
		import_signal(b, lv[1], lv[2], lv[4], msg, props);
	/* lm/<me>/<service>/call/<method> */
	else if (n == 5 && strcmp(lv[3], "call") == 0 && strcmp(lv[1], b->cfg.host) == 0)
		export_call(b, lv[2], lv[4], msg, props);
out:
	free(topic);
}

/* libmosquitto says why TLS failed only in its log: keep its last error for
 * the message of a failed connection attempt. */
static void on_mosq_log(struct mosquitto *m, void *obj, int level, const char *str)
{
	struct bridge *b = obj;

	if (level & MOSQ_LOG_ERR)
		snprintf(b->last_error, sizeof(b->last_error), "%s", str);
	if (bridge_verbose > 1)
		blog(LM_LOG_DEBUG, "mosquitto: %s", str);
}

/* ---- lifetime ---- */

static void stop_now(struct bridge *b)
{
	b->stopping = true;
	if (b->connected) {
		/* Importers see this host go at once: the will says so. */
		exports_unpublish(b);
		mosquitto_disconnect_v5(b->mosq, MQTT_RC_DISCONNECT_WITH_WILL_MSG, NULL);
		for (int i = 0; i < 10 && mosquitto_want_write(b->mosq); i++)
			if (mosquitto_loop_write(b->mosq, 1) != MOSQ_ERR_SUCCESS)
				break;
	}
	lm_reactor_stop(b->r, b->exit_code);
}

static void on_signal(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct bridge *b = userdata;

	blog(LM_LOG_INFO, "signal %u: stopping", si->ssi_signo);
	stop_now(b);
}

static int mosq_setup(struct bridge *b)
{
	char id[300], *will;
	int rc;

	snprintf(id, sizeof(id), "lm-bridge/%s", b->cfg.host);
	b->mosq = mosquitto_new(id, true, b);
	if (!b->mosq)
		return -ENOMEM;
	mosquitto_int_option(b->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	/* A call is one small packet each way: Nagle would hold it for an ACK. */
	mosquitto_int_option(b->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(b->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(b->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(b->mosq, on_publish);
	mosquitto_message_v5_callback_set(b->mosq, on_message);
	mosquitto_log_callback_set(b->mosq, on_mosq_log);
	if (b->cfg.username &&
	    (rc = mosquitto_username_pw_set(b->mosq, b->cfg.username, b->cfg.password)))
		goto fail;
	if (b->cfg.tls) {
		rc = mosquitto_tls_set(b->mosq, b->cfg.ca_file,
				       b->cfg.ca_file ? NULL : "/etc/ssl/certs", b->cfg.cert_file,
				       b->cfg.key_file, NULL);
		if (rc)
			goto fail;
	}
	will = topic_join(b->cfg.prefix, b->cfg.host, "presence", NULL);
	if (!will)
		return -ENOMEM;
	rc = mosquitto_will_set_v5(b->mosq, will, 7, "offline", 1, true, NULL);
	free(will);
	if (rc)
		goto fail;
	return 0;
fail:
	blog(LM_LOG_ERROR, "cannot set up the MQTT client: %s", mosquitto_strerror(rc));
	return -EINVAL;
}

int main(int argc, char **argv)
{
	struct bridge b = {0};
	uint64_t rnd = 0;
	int err, code = BRIDGE_EXIT_FAILED;

	err = config_parse(&b.cfg, argc, argv);
	if (err == 1)
		return 0;
	if (err < 0) {
		if (err != -EINVAL)
			fprintf(stderr, "lm-bridge: %s\n", strerror(-err));
		config_free(&b.cfg);
		return BRIDGE_EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	RB_INIT(&b.pubs);
	RB_INIT(&b.calls);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	srand((unsigned)rnd);
	snprintf(b.instance, sizeof(b.instance), "%016llx", (unsigned long long)rnd);
	b.reply_topic = topic_join(b.cfg.prefix, b.cfg.host, "reply", b.instance, NULL);
	mosquitto_lib_init();
	if (!b.reply_topic || (err = lm_reactor_new(&b.r, NULL)) < 0 || mosq_setup(&b) < 0)
		goto out;
	if ((err = lm_reactor_add_timer(b.r, &b.retry, 0, 0, on_retry, &b)) < 0 ||
	    (err = lm_reactor_add_defer(b.r, &b.link_down, on_link_down, &b)) < 0 ||
	    (err = lm_reactor_add_timer(
		 b.r, &b.misc, (uint64_t)(b.cfg.keepalive / 4 + 1) * 1000000000ull,
		 (uint64_t)(b.cfg.keepalive / 4 + 1) * 1000000000ull, on_misc, &b)) < 0 ||
	    (err = lm_reactor_add_signal(b.r, NULL, SIGTERM, on_signal, &b)) < 0 ||
	    (err = lm_reactor_add_signal(b.r, NULL, SIGINT, on_signal, &b)) < 0)
		goto out;
	lm_source_set_enabled(b.link_down, false);
	lm_source_set_enabled(b.retry, false);
	if ((err = exports_start(&b)) < 0 || (err = imports_start(&b)) < 0)
		goto out;
	blog(LM_LOG_INFO, "host %s, broker %s:%d, %zu exports, %zu imports", b.cfg.host,
	     b.cfg.broker_host, b.cfg.broker_port, b.cfg.nexports, b.cfg.nimports);
	link_connect(&b);
	code = lm_reactor_run(b.r);
	if (code < 0)
		code = BRIDGE_EXIT_FAILED;
	err = 0;
out:
	if (err < 0)
		blog(LM_LOG_ERROR, "cannot start: %s", strerror(-err));
	imports_stop(&b);
	lm_source_free(b.io);
	b.io = NULL;
	exports_stop(&b);
	lm_source_free(b.retry);
	lm_source_free(b.misc);
	lm_source_free(b.link_down);
	if (b.mosq)
		mosquitto_destroy(b.mosq);
	mosquitto_lib_cleanup();
	lm_reactor_free(b.r);
	free(b.reply_topic);
	config_free(&b.cfg);
	return code;
}
