/* SPDX-License-Identifier: MIT */
/* lm-bridge's internal types: configuration, the MQTT link, exports and imports. */
#ifndef LM_BRIDGE_H
#define LM_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bsd/sys/queue.h>
#include <bsd/sys/tree.h>
#include <mosquitto.h>

#include <libmessage/libmessage.h>

/* libbsd's RB_GENERATE_STATIC needs __unused, which libbsd leaves undefined on Linux. */
#define BRIDGE_RB_GENERATE(name, type, field, cmp) \
	RB_GENERATE_INTERNAL(name, type, field, cmp, __attribute__((unused)) static)

/* Exit codes (docs/man/lm-bridge.1.scd). */
#define BRIDGE_EXIT_OK      0
#define BRIDGE_EXIT_USAGE   2 /* bad flag or configuration */
#define BRIDGE_EXIT_REFUSED 3 /* the broker refused our credentials */
#define BRIDGE_EXIT_FAILED  1 /* anything else */

/* MQTT user properties the bridge adds (docs/bridge.md). */
#define PROP_TIMEOUT "lm-timeout-ms" /* a call: milliseconds left before its deadline */
#define PROP_ERROR   "lm-error"      /* a reply: the ERROR's name; the payload is its message */
#define PROP_DROPPED "lm-dropped"    /* a signal: signals lost so far by the exporter (total) */

struct export_cfg {
	char *service;  /* name used in topics */
	char *endpoint; /* the local service's endpoint (default unix:<service>) */
};

struct import_cfg {
	char *host, *service;
	char *endpoint; /* the local endpoint served (default unix:<host>.<service>) */
};

struct bridge_config {
	char *host;        /* this host's name in topics */
	char *broker_host; /* from the broker URL */
	int broker_port;   /* 1883, or 8883 for mqtts:// */
	bool tls;          /* mqtts:// or a CA file */
	char *username;    /* NULL: none */
	char *password;    /* read from password_file */
	char *ca_file, *cert_file, *key_file;
	char *prefix;            /* first topic level, default "lm" */
	int keepalive;           /* seconds, default 30 */
	int qos;                 /* calls and replies: 0 or 1 (default 1); signals go at 0 */
	int64_t call_timeout_ns; /* an imported call's deadline, default 25 s */
	struct export_cfg *exports;
	size_t nexports;
	struct import_cfg *imports;
	size_t nimports;
};

/* Something waiting for the broker's PUBACK of a QoS 1 publish. */
enum pub_kind { PUB_IMPORT_CALL, PUB_EXPORT_REPLY };
struct pub_wait {
	RB_ENTRY(pub_wait) link;
	int mid; /* 0: not waiting */
	enum pub_kind kind;
};
RB_HEAD(pub_tree, pub_wait);

struct im_call;
RB_HEAD(call_tree, im_call);

struct exporter;
struct importer;

struct bridge {
	struct bridge_config cfg;
	lm_reactor *r;
	struct mosquitto *mosq;
	lm_source *io;        /* the broker socket, while there is one */
	lm_source *misc;      /* mosquitto_loop_misc: keepalive */
	lm_source *retry;     /* the next connection attempt */
	lm_source *link_down; /* deferred: what follows a lost connection */
	bool connected;       /* CONNACK success received, link usable */
	bool stopping;
	int64_t backoff_ns;
	int last_connect_err; /* to log a repeated failure once */
	char last_error[256]; /* libmosquitto's last logged error (TLS says why there) */
	char instance[17];    /* random hex: this run's reply topic */
	char *reply_topic;
	uint64_t next_call_id;
	struct pub_tree pubs;
	struct call_tree calls;
	struct exporter *exports;
	struct importer *imports;
	int exit_code;
};

/* lm-bridge.c: the MQTT link. A publish that cannot go now returns the
 * MOSQ_ERR_* code; *mid is set for QoS 1 when mid is not NULL. */
int link_publish(struct bridge *b, const char *topic, const void *payload, size_t len, int qos,
		 bool retain, const mosquitto_property *props, int *mid);
int link_subscribe(struct bridge *b, const char *topic, int qos);
void pub_wait_add(struct bridge *b, struct pub_wait *w, int mid);
void pub_wait_del(struct bridge *b, struct pub_wait *w);
extern int bridge_verbose;
void blog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "prefix/a/b/..." into a fresh string; NULL on ENOMEM. */
char *topic_join(const char *first, ...);

/* config.c */
int config_parse(struct bridge_config *cfg, int argc, char **argv);
void config_free(struct bridge_config *cfg);
bool name_ok(const char *name);

/* export.c */
int exports_start(struct bridge *b);
void exports_link_up(struct bridge *b);
void exports_unpublish(struct bridge *b);
void exports_stop(struct bridge *b);
void export_call(struct bridge *b, const char *service, const char *method,
		 const struct mosquitto_message *msg, const mosquitto_property *props);
void export_reply_acked(struct bridge *b, struct pub_wait *w, int reason);

/* import.c */
int imports_start(struct bridge *b);
void imports_link_up(struct bridge *b);
void imports_link_down(struct bridge *b, const char *why);
void imports_stop(struct bridge *b);
void import_presence(struct bridge *b, const char *host, const void *payload, size_t len);
void import_introspect(struct bridge *b, const char *host, const char *service, const void *payload,
		       size_t len);
void import_signal(struct bridge *b, const char *host, const char *service, const char *signal,
		   const struct mosquitto_message *msg, const mosquitto_property *props);
void import_reply(struct bridge *b, const struct mosquitto_message *msg,
		  const mosquitto_property *props);
void import_call_acked(struct bridge *b, struct pub_wait *w, int reason);

#endif
