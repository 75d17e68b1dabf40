/* SPDX-License-Identifier: MIT */
/* lm-bridge exports: a client of each local service, its description, signals and calls on MQTT. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "bridge.h"

struct ex_signal {
	char *name;
	char *topic;
	uint64_t dropped; /* signals the local service dropped for us, in total */
	struct exporter *e;
};

struct ex_call {
	struct pub_wait pw; /* first: on_publish finds the call from it */
	LIST_ENTRY(ex_call) link;
	struct exporter *e;
	char *resp_topic; /* NULL: nobody wants the reply */
	void *corr;
	uint16_t corr_len;
	bool final; /* an error sent after the broker refused the reply */
};

struct exporter {
	struct bridge *b;
	const struct export_cfg *cfg;
	lm_client *client;
	char *introspection; /* the service's lm.Introspect reply; NULL while unknown */
	size_t ilen;
	char *topic_introspect, *topic_calls;
	struct ex_signal **sigs;
	size_t nsigs;
	LIST_HEAD(, ex_call) acks; /* replies waiting for the broker's PUBACK */
};

static void publish_introspection(struct exporter *e)
{
	int rc = link_publish(e->b, e->topic_introspect, e->introspection,
			      e->introspection ? e->ilen : 0, 1, true, NULL, NULL);

	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
		blog(LM_LOG_WARN, "export %s: cannot publish its description: %s", e->cfg->service,
		     mosquitto_strerror(rc));
}

/* ---- signals ---- */

static void on_signal(lm_client *c, const char *signal, const void *payload, size_t len,
		      uint64_t dropped, void *userdata)
{
	struct ex_signal *sig = userdata;
	mosquitto_property *props = NULL;
	char count[24];
	int rc;

	if (dropped) {
		sig->dropped += dropped;
		snprintf(count, sizeof(count), "%llu", (unsigned long long)sig->dropped);
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, PROP_DROPPED,
						   count);
	}
	rc = link_publish(sig->e->b, sig->topic, payload, len, 0, false, props, NULL);
	if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
		blog(LM_LOG_WARN, "export %s: signal %s of %zu bytes not published: %s",
		     sig->e->cfg->service, signal, len, mosquitto_strerror(rc));
	mosquitto_property_free_all(&props);
}

static void subscribe_signal(struct exporter *e, const char *name, size_t nl)
{
	struct ex_signal *sig, **v;
	char buf[256];

	if (nl == 0 || nl > 255)
		return;
	memcpy(buf, name, nl);
	buf[nl] = 0;
	for (size_t i = 0; i < e->nsigs; i++)
		if (strcmp(e->sigs[i]->name, buf) == 0)
			return;
	sig = calloc(1, sizeof(*sig));
	v = realloc(e->sigs, (e->nsigs + 1) * sizeof(*v));
	if (v)
		e->sigs = v;
	if (!sig || !v || !(sig->name = strdup(buf)) ||
	    !(sig->topic = topic_join(e->b->cfg.prefix, e->b->cfg.host, e->cfg->service, "signal",
				      buf, NULL))) {
		if (sig)
			free(sig->name);
		free(sig);
		blog(LM_LOG_ERROR, "export %s: out of memory", e->cfg->service);
		return;
	}
	sig->e = e;
	if (lm_client_subscribe(e->client, buf, on_signal, sig) < 0) {
		free(sig->topic);
		free(sig->name);
		free(sig);
		return;
	}
	e->sigs[e->nsigs++] = sig;
}

/* The description's "signal NAME ..." lines; other lines are left alone, so
 * a newer description format passes through the bridge unchanged. */
static void subscribe_signals(struct exporter *e)
{
	const char *p = e->introspection, *end = p + e->ilen;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		if (eol - p > 7 && memcmp(p, "signal ", 7) == 0) {
			const char *n = p + 7;
			size_t len =
			    strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789_.-");
			if (n + len > eol)
				len = (size_t)(eol - n);
			subscribe_signal(e, n, len);
		}
		p = eol + 1;
	}
}

static void on_introspect(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct exporter *e = userdata;
	char *text;

	if (reply->status != 0) {
		if (reply->status != -ECANCELED)
			blog(LM_LOG_WARN, "export %s: lm.Introspect failed: %s%s%s",
			     e->cfg->service, strerror(-reply->status),
			     reply->error_name ? " " : "",
			     reply->error_name ? reply->error_name : "");
		return;
	}
	if (e->introspection && e->ilen == reply->len &&
	    memcmp(e->introspection, reply->payload, reply->len) == 0)
		return;
	text = malloc(reply->len + 1);
	if (!text)
		return;
	memcpy(text, reply->payload, reply->len);
	text[reply->len] = 0;
	free(e->introspection);
	e->introspection = text;
	e->ilen = reply->len;
	subscribe_signals(e);
	blog(LM_LOG_INFO, "export %s: %s is up", e->cfg->service, e->cfg->endpoint);
	publish_introspection(e);
}

static void on_state(lm_client *c, enum lm_client_state state, int reason, void *userdata)
{
	struct exporter *e = userdata;

	if (state == LM_CLIENT_CONNECTED) {
		int err = lm_client_call(c, "lm.Introspect", NULL, 0, -1, on_introspect, e);
		if (err < 0)
			blog(LM_LOG_WARN, "export %s: lm.Introspect: %s", e->cfg->service,
			     strerror(-err));
	} else if (state == LM_CLIENT_DISCONNECTED && e->introspection) {
		/* Importers take their endpoint down when the description goes. */
		blog(LM_LOG_INFO, "export %s: %s went away (%s)", e->cfg->service, e->cfg->endpoint,
		     strerror(-reason));
		free(e->introspection);
		e->introspection = NULL;
		e->ilen = 0;
		publish_introspection(e);
	}
}

/* ---- calls ---- */

static void ex_call_free(struct ex_call *call)
{
	if (!call)
		return;
	if (call->pw.mid) {
		pub_wait_del(call->e->b, &call->pw);
		LIST_REMOVE(call, link);
	}
	free(call->resp_topic);
	free(call->corr);
	free(call);
}

/* Publish the reply (error_name NULL) or an ERROR; frees call unless it
 * waits for the broker's PUBACK. */
static void ex_send(struct ex_call *call, const void *payload, size_t len, const char *error_name)
{
	struct bridge *b = call->e->b;
	mosquitto_property *props = NULL;
	int rc, mid = 0;

	if (!call->resp_topic || !b->connected) {
		ex_call_free(call);
		return;
	}
	if (call->corr)
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, call->corr,
					      call->corr_len);
	if (error_name)
		mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, PROP_ERROR,
						   error_name);
	rc = link_publish(b, call->resp_topic, payload, len, b->cfg.qos, false, props, &mid);
	mosquitto_property_free_all(&props);
	if (rc == MOSQ_ERR_OVERSIZE_PACKET && !call->final) {
		char msg[160];

		snprintf(msg, sizeof(msg),
			 "a reply of %zu bytes does not fit the broker's maximum packet size", len);
		call->final = true;
		ex_send(call, msg, strlen(msg), "lm.MessageTooLarge");
		return;
	}
	if (rc != MOSQ_ERR_SUCCESS)
		blog(LM_LOG_WARN, "export %s: reply not published: %s", call->e->cfg->service,
		     mosquitto_strerror(rc));
	if (rc == MOSQ_ERR_SUCCESS && b->cfg.qos > 0 && mid) {
		pub_wait_add(b, &call->pw, mid);
		if (call->pw.mid) {
			LIST_INSERT_HEAD(&call->e->acks, call, link);
			return;
		}
	}
	ex_call_free(call);
}

static void ex_error(struct ex_call *call, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ex_error(struct ex_call *call, const char *name, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ex_send(call, msg, strlen(msg), name);
}

void export_reply_acked(struct bridge *b, struct pub_wait *w, int reason)
{
	struct ex_call *call = (struct ex_call *)w;

	LIST_REMOVE(call, link);
	if (reason >= MQTT_RC_UNSPECIFIED && !call->final) {
		call->final = true;
		ex_error(call,
			 reason == MQTT_RC_PACKET_TOO_LARGE ? "lm.MessageTooLarge" : "lm.Failed",
			 "the broker refused the reply of %s: %s (MQTT reason %d)",
			 call->e->cfg->service, mosquitto_reason_string(reason), reason);
		return;
	}
	ex_call_free(call);
}

static void on_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct ex_call *call = userdata;
	const char *svc = call->e->cfg->service, *host = call->e->b->cfg.host;

	switch (reply->status) {
	case 0:
		ex_send(call, reply->payload, reply->len, NULL);
		break;
	case -EREMOTEIO:
		ex_send(call, reply->error_message, strlen(reply->error_message),
			reply->error_name);
		break;
	case -ECANCELED:
		ex_call_free(call);
		break;
	case -ETIMEDOUT:
		ex_error(call, "lm.Timeout", "%s on %s did not reply within the deadline", svc,
			 host);
		break;
	case -ECONNRESET:
	case -ENOTCONN:
		ex_error(call, "lm.Disconnected", "%s on %s went away", svc, host);
		break;
	default:
		ex_error(call, "lm.Failed", "%s on %s: %s", svc, host, strerror(-reply->status));
	}
}

static struct exporter *find(struct bridge *b, const char *service)
{
	for (size_t i = 0; i < b->cfg.nexports; i++)
		if (strcmp(b->exports[i].cfg->service, service) == 0)
			return &b->exports[i];
	return NULL;
}

void export_call(struct bridge *b, const char *service, const char *method,
		 const struct mosquitto_message *msg, const mosquitto_property *props)
{
	struct exporter *e = find(b, service);
	struct ex_call *call = calloc(1, sizeof(*call));
	const mosquitto_property *p;
	int64_t timeout_ns = -1;
	char *k, *v;
	int err;

	if (!call)
		return;
	call->pw.kind = PUB_EXPORT_REPLY;
	mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &call->resp_topic, false);
	mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &call->corr,
				       &call->corr_len, false);
	for (p = props; (p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &k, &v,
								 p != props));) {
		if (strcmp(k, PROP_TIMEOUT) == 0) {
			long long ms = strtoll(v, NULL, 10);
			timeout_ns = ms > 0 ? ms * 1000000ll : 0;
		}
		free(k);
		free(v);
	}
	if (!e) {
		/* Another bridge with this host name exports it: that one answers. */
		blog(LM_LOG_DEBUG, "a call for %s, which this bridge does not export", service);
		free(call->resp_topic);
		free(call->corr);
		free(call);
		return;
	}
	call->e = e;
	if (timeout_ns == 0) {
		ex_call_free(call); /* its deadline passed on the way: the caller gave up */
		return;
	}
	if (!call->resp_topic) { /* nobody wants the reply: a fire-and-forget call */
		lm_client_call_no_reply(e->client, method, msg->payload, (size_t)msg->payloadlen);
		ex_call_free(call);
		return;
	}
	err = lm_client_call(e->client, method, msg->payload, (size_t)msg->payloadlen, timeout_ns,
			     on_reply, call);
	if (err == 0)
		return;
	switch (err) {
	case -ENOTCONN:
		ex_error(call, "lm.Disconnected", "%s on %s is not running", service, b->cfg.host);
		break;
	case -ENOBUFS:
		ex_error(call, "lm.Failed", "%s on %s: too many calls waiting", service,
			 b->cfg.host);
		break;
	case -EMSGSIZE:
		ex_error(call, "lm.MessageTooLarge",
			 "%s on %s: the call is larger than "
			 "max_message",
			 service, b->cfg.host);
		break;
	case -EINVAL:
		ex_error(call, "lm.UnknownMethod", "%s", method);
		break;
	default:
		ex_error(call, "lm.Failed", "%s on %s: %s", service, b->cfg.host, strerror(-err));
	}
}

/* ---- lifetime ---- */

int exports_start(struct bridge *b)
{
	struct lm_client_options opts = {.name = "lm-bridge", .max_pending = LM_LIMIT_MAX_PENDING};
	int err;

	if (!b->cfg.nexports)
		return 0;
	b->exports = calloc(b->cfg.nexports, sizeof(*b->exports));
	if (!b->exports)
		return -ENOMEM;
	for (size_t i = 0; i < b->cfg.nexports; i++) {
		struct exporter *e = &b->exports[i];

		e->b = b;
		e->cfg = &b->cfg.exports[i];
		LIST_INIT(&e->acks);
		e->topic_introspect =
		    topic_join(b->cfg.prefix, b->cfg.host, e->cfg->service, "introspect", NULL);
		e->topic_calls =
		    topic_join(b->cfg.prefix, b->cfg.host, e->cfg->service, "call", "+", NULL);
		if (!e->topic_introspect || !e->topic_calls)
			return -ENOMEM;
		err = lm_client_new(&e->client, b->r, e->cfg->endpoint, &opts);
		if (err < 0) {
			blog(LM_LOG_ERROR, "export %s: endpoint %s: %s", e->cfg->service,
			     e->cfg->endpoint, strerror(-err));
			return err;
		}
		/* Told the current state at once, then each change. */
		lm_client_set_state_cb(e->client, on_state, e);
	}
	return 0;
}

void exports_link_up(struct bridge *b)
{
	for (size_t i = 0; i < b->cfg.nexports && b->exports; i++) {
		link_subscribe(b, b->exports[i].topic_calls, b->cfg.qos);
		publish_introspection(&b->exports[i]);
	}
}

void exports_unpublish(struct bridge *b)
{
	for (size_t i = 0; i < b->cfg.nexports && b->exports; i++)
		link_publish(b, b->exports[i].topic_introspect, NULL, 0, 1, true, NULL, NULL);
}

void exports_stop(struct bridge *b)
{
	struct ex_call *call;

	for (size_t i = 0; i < b->cfg.nexports && b->exports; i++) {
		struct exporter *e = &b->exports[i];

		lm_client_free(e->client); /* pending calls end with -ECANCELED */
		while ((call = LIST_FIRST(&e->acks)))
			ex_call_free(call);
		for (size_t j = 0; j < e->nsigs; j++) {
			free(e->sigs[j]->name);
			free(e->sigs[j]->topic);
			free(e->sigs[j]);
		}
		free(e->sigs);
		free(e->introspection);
		free(e->topic_introspect);
		free(e->topic_calls);
	}
	free(b->exports);
	b->exports = NULL;
}
