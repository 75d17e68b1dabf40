/* SPDX-License-Identifier: MIT */
/* lm-bridge imports: a local endpoint standing for a remote service, fed by MQTT. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "bridge.h"

struct im_call {
	struct pub_wait pw; /* first: on_publish finds the call from it */
	RB_ENTRY(im_call) by_id;
	TAILQ_ENTRY(im_call) by_deadline;
	struct importer *im;
	lm_call *call;
	uint64_t id;
	uint64_t deadline;
};

struct importer {
	struct bridge *b;
	const struct import_cfg *cfg;
	bool online;         /* the host's retained presence says "online" */
	char *introspection; /* the service's retained description; NULL: none */
	size_t ilen;
	lm_server *server; /* while the remote service is reachable */
	struct lm_method *methods;
	char *names; /* the methods' names, one block */
	size_t nmethods;
	TAILQ_HEAD(, im_call) calls; /* by deadline: every call has the same timeout */
	lm_source *timer;
	char *topic_presence, *topic_introspect, *topic_signals, *call_prefix;
	uint64_t dropped; /* the exporter's DROPPED total, last seen */
};

static int id_cmp(const struct im_call *a, const struct im_call *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}
BRIDGE_RB_GENERATE(call_tree, im_call, by_id, id_cmp)

static void ic_unlink(struct im_call *ic)
{
	struct bridge *b = ic->im->b;

	RB_REMOVE(call_tree, &b->calls, ic);
	TAILQ_REMOVE(&ic->im->calls, ic, by_deadline);
	pub_wait_del(b, &ic->pw);
}

/* Answer a waiting call with an ERROR and forget it. */
static void ic_fail(struct im_call *ic, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ic_fail(struct im_call *ic, const char *name, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ic_unlink(ic);
	lm_call_error(ic->call, name, msg);
	free(ic);
}

static void ic_abandoned(lm_call *call, void *userdata)
{
	struct im_call *ic = userdata;

	ic_unlink(ic);
	free(ic);
}

static void arm_timer(struct importer *im)
{
	struct im_call *ic = TAILQ_FIRST(&im->calls);
	uint64_t now = lm_reactor_now(im->b->r);

	if (!ic)
		lm_source_set_enabled(im->timer, false);
	else
		lm_timer_set(im->timer, ic->deadline > now ? ic->deadline - now : 1, 0);
}

static void on_deadline(lm_source *s, uint64_t expirations, void *userdata)
{
	struct importer *im = userdata;
	uint64_t now = lm_reactor_now(im->b->r);
	struct im_call *ic;

	while ((ic = TAILQ_FIRST(&im->calls)) && ic->deadline <= now)
		ic_fail(ic, "lm.Timeout", "no reply from %s/%s within %lld ms", im->cfg->host,
			im->cfg->service, (long long)(im->b->cfg.call_timeout_ns / 1000000));
	arm_timer(im);
}

/* ---- the local endpoint ---- */

static void on_introspect(lm_call *call, const void *payload, size_t len, void *userdata)
{
	struct importer *im = userdata;

	lm_call_reply(call, im->introspection, im->ilen);
}

static void on_call(lm_call *call, const void *payload, size_t len, void *userdata)
{
	struct importer *im = userdata;
	struct bridge *b = im->b;
	const char *method = lm_call_method(call);
	mosquitto_property *props = NULL;
	uint64_t timeout_ms = (uint64_t)(b->cfg.call_timeout_ns / 1000000);
	struct im_call *ic;
	char topic[2048], ms[24]; /* prefix, host, service, method: 4 names of <= 255 */
	uint8_t corr[8];
	int rc, mid = 0;

	if (!b->connected) {
		lm_call_error(call, "lm.Disconnected", "lm-bridge is not connected to its broker");
		return;
	}
	if (lm_call_no_reply(call)) {
		/* Fire and forget: no response topic, so the exporter makes a
		 * NO_REPLY call too; nothing waits here. */
		snprintf(topic, sizeof(topic), "%s%s", im->call_prefix, method);
		link_publish(b, topic, payload, len, b->cfg.qos, false, NULL, NULL);
		lm_call_reply(call, NULL, 0);
		return;
	}
	ic = calloc(1, sizeof(*ic));
	if (!ic) {
		lm_call_error(call, "lm.Failed", "lm-bridge: out of memory");
		return;
	}
	ic->pw.kind = PUB_IMPORT_CALL;
	ic->im = im;
	ic->call = call;
	ic->id = ++b->next_call_id;
	for (int i = 0; i < 8; i++)
		corr[i] = (uint8_t)(ic->id >> (8 * i));
	snprintf(topic, sizeof(topic), "%s%s", im->call_prefix, method);
	snprintf(ms, sizeof(ms), "%llu", (unsigned long long)timeout_ms);
	/* The deadline travels as time left (hosts' clocks differ) and as the
	 * message's expiry, so the broker drops a call nobody waits for. */
	if (mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, b->reply_topic) ||
	    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr, 8) ||
	    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, PROP_TIMEOUT, ms) ||
	    mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
					 (uint32_t)((timeout_ms + 999) / 1000))) {
		mosquitto_property_free_all(&props);
		free(ic);
		lm_call_error(call, "lm.Failed", "lm-bridge: out of memory");
		return;
	}
	rc = link_publish(b, topic, payload, len, b->cfg.qos, false, props, &mid);
	mosquitto_property_free_all(&props);
	if (rc != MOSQ_ERR_SUCCESS) {
		free(ic);
		if (rc == MOSQ_ERR_OVERSIZE_PACKET)
			lm_call_error(call, "lm.MessageTooLarge",
				      "the call does not fit the broker's maximum packet size");
		else
			lm_call_error(call, "lm.Disconnected", mosquitto_strerror(rc));
		return;
	}
	ic->deadline = lm_reactor_now(b->r) + timeout_ms * 1000000;
	RB_INSERT(call_tree, &b->calls, ic);
	TAILQ_INSERT_TAIL(&im->calls, ic, by_deadline);
	if (b->cfg.qos > 0)
		pub_wait_add(b, &ic->pw, mid);
	lm_call_set_abandoned_cb(call, ic_abandoned, ic);
	if (TAILQ_FIRST(&im->calls) == ic)
		arm_timer(im);
}

/* The name at p (after "method " or "signal "), up to the end of its word. */
static size_t word(const char *p, const char *eol)
{
	size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-");

	return p + n > eol ? (size_t)(eol - p) : n;
}

/* Declare the description's methods and signals on im->server. Lines other
 * than "method NAME..." and "signal NAME..." are the remote's business: the
 * description is answered as it came, whatever its format's version. */
static int declare_members(struct importer *im)
{
	const char *p = im->introspection, *end = p + im->ilen;
	size_t n = 0, off = 0;
	int err;

	for (const char *q = p; q < end; q++)
		n += *q == '\n';
	im->methods = calloc(n + 1, sizeof(*im->methods));
	im->names = malloc(im->ilen + 1);
	if (!im->methods || !im->names)
		return -ENOMEM;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
		bool is_method = eol - p > 7 && memcmp(p, "method ", 7) == 0;
		bool is_signal = eol - p > 7 && memcmp(p, "signal ", 7) == 0;
		size_t len = (is_method || is_signal) ? word(p + 7, eol) : 0;
		char *name = im->names + off;

		if (len) {
			memcpy(name, p + 7, len);
			name[len] = 0;
			off += len + 1;
		}
		if (len && is_method && strncmp(name, "lm.", 3) != 0) {
			im->methods[im->nmethods] = (struct lm_method){name, on_call};
			err = lm_server_add_methods(im->server, &im->methods[im->nmethods], 1, im);
			if (err == 0)
				im->nmethods++;
		} else if (len && is_signal) {
			bool disc = memmem(p, (size_t)(eol - p), " disconnect", 11) != NULL;
			lm_server_add_signal(im->server, name,
					     disc ? LM_OVERFLOW_DISCONNECT
						  : LM_OVERFLOW_DROP_OLDEST);
		}
		p = eol + 1;
	}
	return 0;
}

static void down(struct importer *im, const char *why)
{
	struct im_call *ic;

	if (!im->server)
		return;
	/* Waiting calls fail now, not at their deadline. */
	while ((ic = TAILQ_FIRST(&im->calls)))
		ic_fail(ic, "lm.Disconnected", "%s", why);
	arm_timer(im);
	lm_server_free(im->server);
	im->server = NULL;
	free(im->methods);
	free(im->names);
	im->methods = NULL;
	im->names = NULL;
	im->nmethods = 0;
	blog(LM_LOG_INFO, "import %s/%s: %s closed: %s", im->cfg->host, im->cfg->service,
	     im->cfg->endpoint, why);
}

static void up(struct importer *im)
{
	char name[520];
	struct lm_server_options opts = {.name = name};
	int err;

	snprintf(name, sizeof(name), "%s.%s", im->cfg->host, im->cfg->service);
	err = lm_server_new(&im->server, im->b->r, im->cfg->endpoint, &opts);
	if (err < 0) {
		blog(LM_LOG_ERROR, "import %s/%s: cannot serve %s: %s", im->cfg->host,
		     im->cfg->service, im->cfg->endpoint, strerror(-err));
		im->server = NULL;
		return;
	}
	lm_server_set_introspect(im->server, on_introspect, im);
	if (declare_members(im) < 0) {
		down(im, "out of memory");
		return;
	}
	blog(LM_LOG_INFO, "import %s/%s: serving %s", im->cfg->host, im->cfg->service,
	     im->cfg->endpoint);
}

/* Serve the endpoint exactly while the remote service is reachable. */
static void update(struct importer *im, const char *why)
{
	bool want = im->b->connected && im->online && im->introspection;

	if (!want)
		down(im, why);
	else if (!im->server)
		up(im);
}

/* ---- what the broker tells ---- */

void import_presence(struct bridge *b, const char *host, const void *payload, size_t len)
{
	char why[300];

	snprintf(why, sizeof(why), "host %s went offline", host);
	for (size_t i = 0; i < b->cfg.nimports && b->imports; i++) {
		struct importer *im = &b->imports[i];

		if (strcmp(im->cfg->host, host) != 0)
			continue;
		im->online = len == 6 && memcmp(payload, "online", 6) == 0;
		update(im, why);
	}
}

static struct importer *find(struct bridge *b, const char *host, const char *service)
{
	for (size_t i = 0; i < b->cfg.nimports && b->imports; i++)
		if (strcmp(b->imports[i].cfg->host, host) == 0 &&
		    strcmp(b->imports[i].cfg->service, service) == 0)
			return &b->imports[i];
	return NULL;
}

void import_introspect(struct bridge *b, const char *host, const char *service, const void *payload,
		       size_t len)
{
	struct importer *im = find(b, host, service);
	char why[600];
	char *text;

	if (!im)
		return;
	if (im->introspection && len == im->ilen && memcmp(payload, im->introspection, len) == 0)
		return;
	snprintf(why, sizeof(why), "%s on host %s %s", service, host, len ? "changed" : "stopped");
	down(im, why); /* clients see it go, and come back with the new members */
	free(im->introspection);
	im->introspection = NULL;
	im->ilen = 0;
	if (len) {
		text = malloc(len + 1);
		if (!text)
			return;
		memcpy(text, payload, len);
		text[len] = 0;
		im->introspection = text;
		im->ilen = len;
	}
	update(im, why);
}

void import_signal(struct bridge *b, const char *host, const char *service, const char *signal,
		   const struct mosquitto_message *msg, const mosquitto_property *props)
{
	struct importer *im = find(b, host, service);
	char *k, *v;

	if (!im || !im->server)
		return;
	if (mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &k, &v, false)) {
		unsigned long long total = strtoull(v, NULL, 10);
		if (strcmp(k, PROP_DROPPED) == 0 && total > im->dropped) {
			blog(LM_LOG_WARN, "import %s/%s: %llu signals lost at the exporter so far",
			     host, service, total);
			im->dropped = total;
		}
		free(k);
		free(v);
	}
	lm_server_emit(im->server, signal, msg->payload, (size_t)msg->payloadlen);
}

void import_reply(struct bridge *b, const struct mosquitto_message *msg,
		  const mosquitto_property *props)
{
	struct im_call key = {0}, *ic;
	const mosquitto_property *p;
	uint8_t *corr = NULL;
	uint16_t clen = 0;
	char *k, *v, *error = NULL;

	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, (void **)&corr, &clen,
				       false);
	if (!corr || clen != 8) {
		free(corr);
		return;
	}
	for (int i = 0; i < 8; i++)
		key.id |= (uint64_t)corr[i] << (8 * i);
	free(corr);
	ic = RB_FIND(call_tree, &b->calls, &key);
	if (!ic)
		return; /* timed out, or its client went: dropped as a late reply is */
	for (p = props; (p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &k, &v,
								 p != props));) {
		if (strcmp(k, PROP_ERROR) == 0 && !error)
			error = v;
		else
			free(v);
		free(k);
	}
	ic_unlink(ic);
	if (error) {
		char *text = strndup(msg->payload ? msg->payload : "", (size_t)msg->payloadlen);
		if (lm_call_error(ic->call, error, text ? text : "") == -EINVAL)
			lm_call_error(ic->call, "lm.Failed", text ? text : "");
		free(text);
	} else {
		lm_call_reply(ic->call, msg->payload, (size_t)msg->payloadlen);
	}
	free(error);
	free(ic);
}

void import_call_acked(struct bridge *b, struct pub_wait *w, int reason)
{
	struct im_call *ic = (struct im_call *)w;

	if (reason == MQTT_RC_NO_MATCHING_SUBSCRIBERS)
		ic_fail(ic, "lm.Disconnected", "nobody serves %s/%s", ic->im->cfg->host,
			ic->im->cfg->service);
	else if (reason >= MQTT_RC_UNSPECIFIED)
		ic_fail(ic, reason == MQTT_RC_PACKET_TOO_LARGE ? "lm.MessageTooLarge" : "lm.Failed",
			"the broker refused the call: %s (MQTT reason %d)",
			mosquitto_reason_string(reason), reason);
}

/* ---- lifetime ---- */

int imports_start(struct bridge *b)
{
	int err;

	if (!b->cfg.nimports)
		return 0;
	b->imports = calloc(b->cfg.nimports, sizeof(*b->imports));
	if (!b->imports)
		return -ENOMEM;
	for (size_t i = 0; i < b->cfg.nimports; i++) {
		struct importer *im = &b->imports[i];
		const char *h = b->cfg.imports[i].host, *s = b->cfg.imports[i].service;

		im->b = b;
		im->cfg = &b->cfg.imports[i];
		TAILQ_INIT(&im->calls);
		im->topic_presence = topic_join(b->cfg.prefix, h, "presence", NULL);
		im->topic_introspect = topic_join(b->cfg.prefix, h, s, "introspect", NULL);
		im->topic_signals = topic_join(b->cfg.prefix, h, s, "signal", "+", NULL);
		im->call_prefix = topic_join(b->cfg.prefix, h, s, "call", "", NULL);
		if (!im->topic_presence || !im->topic_introspect || !im->topic_signals ||
		    !im->call_prefix)
			return -ENOMEM;
		if ((err = lm_reactor_add_timer(b->r, &im->timer, 0, 0, on_deadline, im)) < 0)
			return err;
		lm_source_set_enabled(im->timer, false);
	}
	return 0;
}

void imports_link_up(struct bridge *b)
{
	for (size_t i = 0; i < b->cfg.nimports && b->imports; i++) {
		struct importer *im = &b->imports[i];

		/* The retained presence and description come back on subscribing. */
		link_subscribe(b, im->topic_presence, 1);
		link_subscribe(b, im->topic_introspect, 1);
		link_subscribe(b, im->topic_signals, 0);
	}
}

void imports_link_down(struct bridge *b, const char *why)
{
	for (size_t i = 0; i < b->cfg.nimports && b->imports; i++) {
		struct importer *im = &b->imports[i];

		im->online = false;
		update(im, why);
	}
}

void imports_stop(struct bridge *b)
{
	for (size_t i = 0; i < b->cfg.nimports && b->imports; i++) {
		struct importer *im = &b->imports[i];

		down(im, "lm-bridge is stopping");
		lm_source_free(im->timer);
		free(im->introspection);
		free(im->topic_presence);
		free(im->topic_introspect);
		free(im->topic_signals);
		free(im->call_prefix);
	}
	free(b->imports);
	b->imports = NULL;
}
