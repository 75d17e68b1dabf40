/* SPDX-License-Identifier: MIT */
/* lmctl: list, introspect, call, monitor, wait for and ask the status of libmessage services. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <locale.h>
#include <wchar.h>
#include <libmessage/libmessage.h>

#include "convert.h"

/* Exit codes (lmctl(1), EXIT STATUS). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,     /* anything else: I/O, a malformed reply, access refused */
	EXIT_USAGE = 2,    /* bad command line, or an argument that does not match its type */
	EXIT_REMOTE = 3,   /* the server answered ERROR (name and message on stderr) */
	EXIT_NOSERVER = 4, /* nothing serves the endpoint */
	EXIT_TIMEOUT = 5,  /* no answer within --timeout */
};

#define DEFAULT_TIMEOUT_S 10.0
#define JSON_FLAGS        (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const char *prog = "lmctl";

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: lmctl list [--json]\n"
	       "       lmctl introspect ENDPOINT [--json | --methods | --signals]\n"
	       "       lmctl call ENDPOINT METHOD [ARG | --hex HEX | --file PATH|-] [--json]\n"
	       "                  [--timeout S] [--no-reply]\n"
	       "       lmctl monitor ENDPOINT [SIGNAL...] [--count N] [--json]\n"
	       "       lmctl wait ENDPOINT [--timeout S]\n"
	       "       lmctl status ENDPOINT [--json]\n"
	       "ENDPOINT is scheme:name (unix:srvtime, fifo:srvtime, mq:srvtime) or a bare name.\n"
	       "A typed method takes its argument as JSON and prints its reply as JSON.\n"
	       "Exit status: 0 done, 1 failure, 2 bad usage or argument, 3 the server answered an\n"
	       "error, 4 no server, 5 timeout. See lmctl(1).\n");
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(lmctl --help for usage)\n");
	return EXIT_USAGE;
}

static int parse_seconds(const char *s, int64_t *ns)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e9)
		return -EINVAL;
	*ns = (int64_t)llround(v * 1e9);
	return 0;
}

/* ---- a connection to one endpoint ---- */

struct session {
	const char *endpoint;
	lm_reactor *r;
	lm_client *c;
	lm_source *timer;
	int last_reason;    /* of the last DISCONNECTED */
	bool was_connected; /* monitor: to tell a restart */
	bool monitoring;
};

static void on_timeout(lm_source *src, uint64_t expirations, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(src), -ETIMEDOUT);
}

static void on_state(lm_client *c, enum lm_client_state st, int reason, void *userdata)
{
	struct session *s = userdata;

	if (st == LM_CLIENT_DISCONNECTED)
		s->last_reason = reason;
	if (s->monitoring) {
		if (st == LM_CLIENT_DISCONNECTED && s->was_connected)
			fprintf(stderr, "%s: lost %s (%s), waiting for it to come back\n", prog,
				s->endpoint, strerror(-reason));
		if (st == LM_CLIENT_CONNECTED && !s->was_connected)
			fprintf(stderr, "%s: %s is back, subscriptions renewed\n", prog,
				s->endpoint);
		s->was_connected =
		    st == LM_CLIENT_CONNECTED || (s->was_connected && st == LM_CLIENT_CONNECTING);
		return;
	}
	if (st == LM_CLIENT_CONNECTED)
		lm_reactor_stop(lm_client_get_reactor(c), 0);
}

static void on_stop_signal(lm_source *src, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(src), -EINTR);
}

/* Why a connection could not be made, as an exit code with a message. */
static int no_server(struct session *s, int reason)
{
	if (reason == -EACCES) {
		fprintf(stderr, "%s: %s refused this uid\n", prog, s->endpoint);
		return EXIT_FAIL;
	}
	if (reason == -ETIMEDOUT) {
		fprintf(stderr, "%s: no server answered at %s in time\n", prog, s->endpoint);
		return EXIT_TIMEOUT;
	}
	fprintf(stderr, "%s: no server at %s (%s)\n", prog, s->endpoint,
		strerror(reason ? -reason : ENOENT));
	return EXIT_NOSERVER;
}

static void session_end(struct session *s)
{
	lm_source_free(s->timer);
	lm_client_free(s->c);
	lm_reactor_free(s->r);
	memset(s, 0, sizeof(*s));
}

/*
 * Connect to endpoint. wait: keep trying until a server answers or
 * timeout_ns passes (lmctl wait); else a server that is not there now is
 * EXIT_NOSERVER at once. Returns EXIT_OK or the exit code, with its message.
 */
static int session_start(struct session *s, const char *endpoint, int64_t timeout_ns, bool wait)
{
	int err;

	memset(s, 0, sizeof(*s));
	s->endpoint = endpoint;
	err = lm_reactor_new(&s->r, NULL);
	if (err < 0) {
		fprintf(stderr, "%s: cannot create the event loop: %s\n", prog, strerror(-err));
		return EXIT_FAIL;
	}
	err = lm_client_new(&s->c, s->r, endpoint,
			    &(struct lm_client_options){
				.name = "lmctl",
				.reconnect_min_ns = 20000000,
				.reconnect_max_ns = 200000000,
			    });
	if (err < 0) {
		fprintf(stderr, "%s: cannot use endpoint %s: %s\n", prog, endpoint, strerror(-err));
		session_end(s);
		return EXIT_USAGE;
	}
	lm_client_set_state_cb(s->c, on_state, s);
	if (lm_client_get_state(s->c) == LM_CLIENT_DISCONNECTED && !wait) {
		err = no_server(s, -ENOENT);
		session_end(s);
		return err;
	}
	if (lm_client_get_state(s->c) != LM_CLIENT_CONNECTED) {
		if (timeout_ns > 0 && lm_reactor_add_timer(s->r, &s->timer, (uint64_t)timeout_ns, 0,
							   on_timeout, s) < 0)
			timeout_ns = 0;
		/* Not waiting: the handshake's outcome decides (a DISCONNECTED stops too). */
		while (lm_client_get_state(s->c) != LM_CLIENT_CONNECTED) {
			err = lm_reactor_run_once(s->r, -1);
			if (err < 0 && err != -EINTR)
				break;
			if (!lm_source_get_enabled(s->timer) && s->timer) {
				err = -ETIMEDOUT;
				break;
			}
			if (!wait && lm_client_get_state(s->c) == LM_CLIENT_DISCONNECTED) {
				err = s->last_reason ? s->last_reason : -ECONNRESET;
				break;
			}
			err = 0;
		}
		lm_source_free(s->timer);
		s->timer = NULL;
		if (lm_client_get_state(s->c) != LM_CLIENT_CONNECTED) {
			err = no_server(s, err == -ETIMEDOUT ? -ETIMEDOUT : err);
			session_end(s);
			return err;
		}
	}
	return EXIT_OK;
}

struct result {
	bool done;
	int status;
	char *error_name, *error_message;
	unsigned char *payload;
	size_t len;
};

static void result_clear(struct result *r)
{
	free(r->error_name);
	free(r->error_message);
	free(r->payload);
	memset(r, 0, sizeof(*r));
}

static void on_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct result *r = userdata;

	r->done = true;
	r->status = reply->status;
	if (reply->error_name)
		r->error_name = strdup(reply->error_name);
	if (reply->error_message)
		r->error_message = strdup(reply->error_message);
	if (reply->len) {
		r->payload = malloc(reply->len + 1);
		if (r->payload) {
			memcpy(r->payload, reply->payload, reply->len);
			r->payload[reply->len] = 0; /* for text */
			r->len = reply->len;
		}
	}
	lm_reactor_stop(lm_client_get_reactor(c), 0);
}

/* Call method and wait for its reply. Returns EXIT_OK with *r filled, or
 * the exit code with its message printed (an ERROR reply: EXIT_REMOTE). */
static int session_call(struct session *s, const char *method, const void *payload, size_t len,
			int64_t timeout_ns, struct result *r)
{
	int err;

	memset(r, 0, sizeof(*r));
	err = lm_client_call(s->c, method, payload, len, timeout_ns ? timeout_ns : 0, on_reply, r);
	if (err == -EMSGSIZE) {
		fprintf(stderr, "%s: the argument is too large for %s\n", prog, s->endpoint);
		return EXIT_USAGE;
	}
	if (err == -EINVAL) {
		fprintf(stderr, "%s: '%s' is not a valid member name\n", prog, method);
		return EXIT_USAGE;
	}
	if (err < 0)
		return no_server(s, err);
	while (!r->done)
		lm_reactor_run(s->r);
	if (r->status == 0)
		return EXIT_OK;
	if (r->status == -EREMOTEIO) {
		fprintf(stderr, "%s: %s: %s%s%s\n", prog, method, r->error_name,
			r->error_message && r->error_message[0] ? ": " : "",
			r->error_message ? r->error_message : "");
		return EXIT_REMOTE;
	}
	if (r->status == -ETIMEDOUT) {
		fprintf(stderr, "%s: %s: no reply from %s in time\n", prog, method, s->endpoint);
		return EXIT_TIMEOUT;
	}
	if (r->status == -ECONNRESET || r->status == -ENOTCONN) {
		fprintf(stderr, "%s: %s: the server at %s went away\n", prog, method, s->endpoint);
		return EXIT_NOSERVER;
	}
	fprintf(stderr, "%s: %s: %s\n", prog, method, strerror(-r->status));
	return EXIT_FAIL;
}

/* ---- introspection ---- */

struct member {
	bool signal;
	char *name;
	char *policy;               /* signals */
	char *args_text, *res_text; /* NULL: untyped; signals use res_text */
	lm_type *args, *res;
};

struct description {
	int version;
	char *server;
	struct member *m;
	size_t n;
};

static void description_free(struct description *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->m[i].name);
		free(d->m[i].policy);
		free(d->m[i].args_text);
		free(d->m[i].res_text);
		lm_type_free(d->m[i].args);
		lm_type_free(d->m[i].res);
	}
	free(d->m);
	free(d->server);
	memset(d, 0, sizeof(*d));
}

/* A declared type's text: NULL for "-" (untyped) or a type lmctl cannot parse. */
static char *type_text(const char *s, size_t n, lm_type **t)
{
	char *text;

	*t = NULL;
	if (n == 1 && s[0] == '-')
		return NULL;
	text = strndup(s, n);
	if (text && lm_type_parse(t, text, NULL, 0) < 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* Parse an lm.Introspect reply (docs/protocol.md, version 1 or 2). 0 or -EBADMSG. */
static int description_parse(struct description *d, char *text)
{
	char *save = NULL, *line;

	memset(d, 0, sizeof(*d));
	d->version = 1;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct member m = {0}, *v;
		char *sp, *arrow;

		if (strcmp(line, "introspect 2") == 0) {
			d->version = 2;
			continue;
		}
		if (strncmp(line, "server ", 7) == 0) {
			free(d->server);
			d->server = strdup(line + 7);
			continue;
		}
		if (strncmp(line, "method ", 7) == 0) {
			line += 7;
			sp = strchr(line, ' ');
			m.name = strndup(line, sp ? (size_t)(sp - line) : strlen(line));
			if (sp && (arrow = strstr(sp + 1, " -> "))) {
				m.args_text = type_text(sp + 1, (size_t)(arrow - sp - 1), &m.args);
				m.res_text = type_text(arrow + 4, strlen(arrow + 4), &m.res);
			}
		} else if (strncmp(line, "signal ", 7) == 0) {
			m.signal = true;
			line += 7;
			sp = strchr(line, ' ');
			m.name = strndup(line, sp ? (size_t)(sp - line) : strlen(line));
			if (sp) {
				char *sp2 = strchr(sp + 1, ' ');
				m.policy =
				    strndup(sp + 1, sp2 ? (size_t)(sp2 - sp - 1) : strlen(sp + 1));
				if (sp2)
					m.res_text = type_text(sp2 + 1, strlen(sp2 + 1), &m.res);
			}
		} else {
			continue; /* a later version's line: skip it */
		}
		v = realloc(d->m, (d->n + 1) * sizeof(*v));
		if (!v || !m.name) {
			free(m.name);
			free(m.policy);
			free(m.args_text);
			free(m.res_text);
			lm_type_free(m.args);
			lm_type_free(m.res);
			if (v)
				d->m = v;
			return -ENOMEM;
		}
		d->m = v;
		d->m[d->n++] = m;
	}
	return d->server ? 0 : -EBADMSG;
}

static int session_describe(struct session *s, int64_t timeout_ns, struct description *d)
{
	struct result r;
	int rc = session_call(s, "lm.Introspect", "2", 1, timeout_ns, &r);

	if (rc != EXIT_OK)
		return rc;
	rc = description_parse(d, r.payload ? (char *)r.payload : (char[]){0});
	result_clear(&r);
	if (rc == -EBADMSG) {
		fprintf(stderr, "%s: %s sent a malformed lm.Introspect reply\n", prog, s->endpoint);
		description_free(d);
		return EXIT_FAIL;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		description_free(d);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static const struct member *member_find(const struct description *d, const char *name, bool signal)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->m[i].signal == signal && strcmp(d->m[i].name, name) == 0)
			return &d->m[i];
	return NULL;
}

/* ---- printing payloads ---- */

/* Whether a payload reads as text: valid UTF-8 (glibc's decoder in the
 * C.UTF-8 locale, set in main) with no control bytes but tab and newline. */
static bool is_text(const unsigned char *p, size_t n)
{
	mbstate_t st = {0};
	size_t i = 0;

	while (i < n) {
		wchar_t wc;
		size_t k = mbrtowc(&wc, (const char *)p + i, n - i, &st);

		if (k == (size_t)-1 || k == (size_t)-2 || k == 0)
			return false;
		if ((wc < 0x20 && wc != '\t' && wc != '\n' && wc != '\r') || wc == 0x7f)
			return false;
		i += k;
	}
	return true;
}

static void print_hex_dump(FILE *f, const unsigned char *p, size_t n)
{
	for (size_t off = 0; off < n; off += 16) {
		fprintf(f, "%08zx ", off);
		for (size_t i = off; i < off + 16; i++)
			if (i < n)
				fprintf(f, " %02x", p[i]);
			else
				fputs("   ", f);
		fputs("  |", f);
		for (size_t i = off; i < off + 16 && i < n; i++)
			fputc(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.', f);
		fputs("|\n", f);
	}
}

/*
 * A payload as JSON: a typed one (type not NULL, or forced) as its value,
 * under "value"; text under "text"; other bytes as hex under "hex". Adds
 * the field to obj. Returns false if a typed payload is not CBOR.
 */
static bool payload_to_json(struct json_object *obj, const lm_type *type, const unsigned char *p,
			    size_t n)
{
	bool ok;

	if (type) {
		struct json_object *v =
		    lm_type_kind(type) == LM_TYPE_EMPTY ? NULL : lmctl_cbor_to_json(p, n, &ok);
		if (lm_type_kind(type) != LM_TYPE_EMPTY && !ok)
			return false;
		json_object_object_add(obj, "value", v);
	} else if (is_text(p, n)) {
		json_object_object_add(
		    obj, "text", json_object_new_string_len(n ? (const char *)p : "", (int)n));
	} else {
		json_object_object_add(obj, "hex", lmctl_hex_json(p, n));
	}
	return true;
}

static void print_json(struct json_object *j)
{
	printf("%s\n", json_object_to_json_string_ext(j, JSON_FLAGS));
}

/* ---- lmctl list ---- */

struct entry {
	char endpoint[340];
	char scheme[32];
	pid_t pid;
	uid_t uid;
	bool live;
	char *server; /* from lm.Introspect; NULL if unknown */
};

/* Whether a live process holds an flock on the file (st): /proc/locks says
 * so without touching the lock (taking it, even shared, for a moment could
 * make a server starting at that moment fail). *pid: the holder. */
static bool lock_held(const struct stat *st, pid_t *pid)
{
	FILE *f = fopen("/proc/locks", "re");
	char line[256], kind[16];
	unsigned maj, min;
	unsigned long ino;
	int p;
	bool held = false;

	if (!f)
		return false;
	while (!held && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", kind, &p, &maj, &min, &ino) != 5)
			continue;
		if (strcmp(kind, "FLOCK") == 0 && ino == st->st_ino &&
		    maj == (unsigned)major(st->st_dev) && min == (unsigned)minor(st->st_dev)) {
			held = true;
			*pid = p;
		}
	}
	fclose(f);
	return held;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->endpoint, ((const struct entry *)b)->endpoint);
}

/* The server's name, asked with lm.Introspect (NULL if it does not answer). */
static char *server_name(const char *endpoint)
{
	struct session s;
	struct description d;
	char *name = NULL;
	FILE *saved = stderr;

	/* The reasons a probe fails are not this command's errors. */
	stderr = fopen("/dev/null", "we");
	if (!stderr)
		stderr = saved;
	if (session_start(&s, endpoint, 2000000000, false) == EXIT_OK) {
		if (session_describe(&s, 2000000000, &d) == EXIT_OK) {
			name = d.server ? strdup(d.server) : NULL;
			description_free(&d);
		}
		session_end(&s);
	}
	if (stderr != saved)
		fclose(stderr);
	stderr = saved;
	return name;
}

static int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'}, {"names", no_argument, NULL, 'n'}, {0}};
	bool json = false, names = false;
	struct entry *v = NULL;
	size_t n = 0;
	char dir[4096];
	struct dirent *e;
	DIR *d;
	int opt, err, dfd;

	while ((opt = getopt_long(argc, argv, "+jn", opts, NULL)) != -1) {
		if (opt == 'j')
			json = true;
		else if (opt == 'n')
			names = true;
		else
			return usage_error("list: unknown option");
	}
	if (optind < argc)
		return usage_error("list takes no argument ('%s')", argv[optind]);
	err = lm_runtime_dir(dir, sizeof(dir));
	if (err < 0) {
		fprintf(stderr, "%s: the runtime directory: %s\n", prog, strerror(-err));
		return EXIT_FAIL;
	}
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
		return EXIT_FAIL;
	}
	dfd = dirfd(d);
	/* Every listener holds "<name>.<scheme>.lock" (its pid inside) for its
	 * life, whatever the transport (docs/transports.md). */
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char *dot, base[300], buf[32];
		struct stat st;
		struct entry *nv, en = {0};
		ssize_t r;
		int fd;

		if (len < 6 || len >= sizeof(base) || strcmp(e->d_name + len - 5, ".lock") != 0)
			continue;
		memcpy(base, e->d_name, len - 5);
		base[len - 5] = 0;
		dot = strrchr(base, '.');
		if (!dot || dot == base || strlen(dot + 1) >= sizeof(en.scheme))
			continue;
		*dot = 0;
		fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		buf[r > 0 ? r : 0] = 0;
		snprintf(en.scheme, sizeof(en.scheme), "%s", dot + 1);
		snprintf(en.endpoint, sizeof(en.endpoint), "%s:%s", en.scheme, base);
		en.pid = (pid_t)atoi(buf);
		en.uid = st.st_uid;
		en.live = lock_held(&st, &en.pid);
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			closedir(d);
			free(v);
			fprintf(stderr, "%s: out of memory\n", prog);
			return EXIT_FAIL;
		}
		v = nv;
		v[n++] = en;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), entry_cmp);
	for (size_t i = 0; i < n && !names; i++)
		if (v[i].live)
			v[i].server = server_name(v[i].endpoint);

	if (names) {
		for (size_t i = 0; i < n; i++)
			if (v[i].live)
				printf("%s\n", v[i].endpoint);
	} else if (json) {
		struct json_object *arr = json_object_new_array();

		for (size_t i = 0; i < n; i++) {
			struct json_object *o = json_object_new_object();
			const char *colon = strchr(v[i].endpoint, ':');

			json_object_object_add(o, "endpoint",
					       json_object_new_string(v[i].endpoint));
			json_object_object_add(o, "transport", json_object_new_string(v[i].scheme));
			json_object_object_add(o, "name", json_object_new_string(colon + 1));
			json_object_object_add(o, "pid", json_object_new_int(v[i].pid));
			json_object_object_add(o, "uid", json_object_new_int64(v[i].uid));
			json_object_object_add(
			    o, "state", json_object_new_string(v[i].live ? "live" : "stale"));
			json_object_object_add(
			    o, "server", v[i].server ? json_object_new_string(v[i].server) : NULL);
			json_object_array_add(arr, o);
		}
		print_json(arr);
		json_object_put(arr);
	} else {
		printf("%-32s %-5s %8s %8s %-6s %s\n", "ENDPOINT", "TRANS", "PID", "UID", "STATE",
		       "SERVER");
		for (size_t i = 0; i < n; i++)
			printf("%-32s %-5s %8d %8u %-6s %s\n", v[i].endpoint, v[i].scheme,
			       (int)v[i].pid, (unsigned)v[i].uid, v[i].live ? "live" : "stale",
			       v[i].server ? v[i].server : "-");
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].server);
	free(v);
	return EXIT_OK;
}

/* ---- common option parsing for the commands on one endpoint ---- */

struct cmd_opts {
	bool json, methods, signals, no_reply;
	int64_t timeout_ns;
	unsigned long count;
	const char *hex, *file;
};

static int parse_opts(int argc, char **argv, const char *cmd, const char *allowed,
		      struct cmd_opts *o)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
					     {"timeout", required_argument, NULL, 't'},
					     {"count", required_argument, NULL, 'n'},
					     {"hex", required_argument, NULL, 'x'},
					     {"file", required_argument, NULL, 'f'},
					     {"methods", no_argument, NULL, 'M'},
					     {"signals", no_argument, NULL, 'S'},
					     {"no-reply", no_argument, NULL, 'R'},
					     {0}};
	char *end;
	int opt;

	memset(o, 0, sizeof(*o));
	o->timeout_ns = (int64_t)(DEFAULT_TIMEOUT_S * 1e9);
	/* Options may come anywhere; "--" ends them (an argument starting with '-'). */
	while ((opt = getopt_long(argc, argv, "jt:n:x:f:", opts, NULL)) != -1) {
		if (opt == '?' || !strchr(allowed, opt))
			return usage_error("%s: option %s not known here", cmd, argv[optind - 1]);
		switch (opt) {
		case 'j':
			o->json = true;
			break;
		case 't':
			if (parse_seconds(optarg, &o->timeout_ns) < 0)
				return usage_error("--timeout wants seconds >= 0, not '%s'",
						   optarg);
			break;
		case 'n':
			errno = 0;
			o->count = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || !o->count)
				return usage_error("--count wants a number > 0, not '%s'", optarg);
			break;
		case 'x':
			o->hex = optarg;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'M':
			o->methods = true;
			break;
		case 'S':
			o->signals = true;
			break;
		case 'R':
			o->no_reply = true;
			break;
		}
	}
	return -1;
}

/* ---- lmctl introspect ---- */

static int cmd_introspect(int argc, char **argv)
{
	struct cmd_opts o;
	struct session s;
	struct description d;
	int rc = parse_opts(argc, argv, "introspect", "jtMS", &o);

	if (rc >= 0)
		return rc;
	if (argc - optind != 1)
		return usage_error("introspect wants one ENDPOINT");
	if ((rc = session_start(&s, argv[optind], o.timeout_ns, false)) != EXIT_OK)
		return rc;
	rc = session_describe(&s, o.timeout_ns, &d);
	session_end(&s);
	if (rc != EXIT_OK)
		return rc;
	if (o.methods || o.signals) {
		for (size_t i = 0; i < d.n; i++)
			if (d.m[i].signal ? o.signals : o.methods)
				printf("%s\n", d.m[i].name);
	} else if (o.json) {
		struct json_object *root = json_object_new_object(), *ms = json_object_new_array(),
				   *ss = json_object_new_array();

		json_object_object_add(root, "server", json_object_new_string(d.server));
		json_object_object_add(root, "introspect_version", json_object_new_int(d.version));
		for (size_t i = 0; i < d.n; i++) {
			struct member *m = &d.m[i];
			struct json_object *e = json_object_new_object();

			json_object_object_add(e, "name", json_object_new_string(m->name));
			if (m->signal) {
				json_object_object_add(
				    e, "overflow",
				    json_object_new_string(m->policy ? m->policy : "?"));
				json_object_object_add(
				    e, "type",
				    m->res_text ? json_object_new_string(m->res_text) : NULL);
				json_object_array_add(ss, e);
			} else {
				json_object_object_add(
				    e, "args",
				    m->args_text ? json_object_new_string(m->args_text) : NULL);
				json_object_object_add(
				    e, "result",
				    m->res_text ? json_object_new_string(m->res_text) : NULL);
				json_object_array_add(ms, e);
			}
		}
		json_object_object_add(root, "methods", ms);
		json_object_object_add(root, "signals", ss);
		print_json(root);
		json_object_put(root);
	} else {
		printf("server %s\n", d.server);
		for (size_t i = 0; i < d.n; i++) {
			struct member *m = &d.m[i];

			if (m->signal)
				printf("signal %s %s%s%s\n", m->name, m->policy ? m->policy : "?",
				       m->res_text ? " " : "", m->res_text ? m->res_text : "");
			else if (m->args_text || m->res_text)
				printf("method %s %s -> %s\n", m->name,
				       m->args_text ? m->args_text : "-",
				       m->res_text ? m->res_text : "-");
			else
				printf("method %s\n", m->name);
		}
	}
	description_free(&d);
	return EXIT_OK;
}

/* ---- lmctl call ---- */

static int read_all(const char *path, unsigned char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	unsigned char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return -errno;
	for (;;) {
		size_t got;

		if (n == cap) {
			unsigned char *nb = realloc(buf, cap ? cap * 2 : 4096);
			if (!nb) {
				free(buf);
				if (f != stdin)
					fclose(f);
				return -ENOMEM;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		if (f != stdin)
			fclose(f);
		return -EIO;
	}
	if (f != stdin)
		fclose(f);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static int hex_decode(const char *s, unsigned char **out, size_t *len)
{
	size_t n = 0;
	unsigned char *b = malloc(strlen(s) / 2 + 1);

	if (!b)
		return -ENOMEM;
	for (const char *p = s; *p;) {
		unsigned v;

		if (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t') {
			p++;
			continue;
		}
		if (sscanf(p, "%2x", &v) != 1 || !p[1] || !strchr("0123456789abcdefABCDEF", p[0]) ||
		    !strchr("0123456789abcdefABCDEF", p[1])) {
			free(b);
			return -EINVAL;
		}
		b[n++] = (unsigned char)v;
		p += 2;
	}
	*out = b;
	*len = n;
	return 0;
}

/* The call's argument as bytes, from ARG, --hex or --file, converted from
 * JSON for a typed method. EXIT_OK or the exit code, with its message. */
static int call_argument(const struct member *m, const char *arg, const struct cmd_opts *o,
			 unsigned char **out, size_t *len)
{
	unsigned char *raw = NULL;
	size_t n = 0;
	char why[300];
	int err;

	*out = NULL;
	*len = 0;
	if ((arg != NULL) + (o->hex != NULL) + (o->file != NULL) > 1)
		return usage_error("call: give the argument one way (ARG, --hex or --file)");
	if (o->hex) {
		if (hex_decode(o->hex, &raw, &n) < 0)
			return usage_error("call: --hex wants pairs of hex digits, not '%s'",
					   o->hex);
	} else if (o->file) {
		err = read_all(o->file, &raw, &n);
		if (err < 0) {
			fprintf(stderr, "%s: call: cannot read %s: %s\n", prog,
				strcmp(o->file, "-") ? o->file : "stdin", strerror(-err));
			return EXIT_USAGE;
		}
	} else if (arg) {
		raw = (unsigned char *)strdup(arg);
		n = strlen(arg);
		if (!raw)
			return EXIT_FAIL;
	}
	if (!m || !m->args) {
		*out = raw;
		*len = n;
		return EXIT_OK;
	}
	if (o->hex) {
		/* Raw bytes for a typed method: the server's own check, here first. */
		if (lm_type_check(m->args, raw, n, why, sizeof(why)) < 0) {
			fprintf(stderr, "%s: call: the bytes do not match %s: %s\n", prog,
				m->args_text, why);
			free(raw);
			return EXIT_USAGE;
		}
		*out = raw;
		*len = n;
		return EXIT_OK;
	}
	if (!raw && lm_type_kind(m->args) != LM_TYPE_EMPTY) {
		return usage_error("call: %s takes %s: give it as JSON", m->name, m->args_text);
	}
	err = lmctl_json_to_cbor(m->args, raw ? (char *)raw : "", out, len, why, sizeof(why));
	free(raw);
	if (err == -EINVAL) {
		fprintf(stderr, "%s: call: the argument does not match %s: %s\n", prog,
			m->args_text, why);
		return EXIT_USAGE;
	}
	if (err < 0) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int print_reply(const struct member *m, const struct result *r, bool json)
{
	const lm_type *type = m ? m->res : NULL;
	struct json_object *o;
	bool ok = true;

	if (json) {
		o = json_object_new_object();
		ok = payload_to_json(o, type, r->payload, r->len);
		if (ok)
			print_json(o);
		json_object_put(o);
	} else if (type) {
		if (lm_type_kind(type) != LM_TYPE_EMPTY) {
			o = lmctl_cbor_to_json(r->payload, r->len, &ok);
			if (ok)
				print_json(o);
			json_object_put(o);
		}
	} else if (r->len == 0) {
		/* An empty reply prints nothing. */
	} else if (is_text(r->payload, r->len)) {
		fwrite(r->payload, 1, r->len, stdout);
		if (r->len && r->payload[r->len - 1] != '\n')
			putchar('\n');
	} else {
		print_hex_dump(stdout, r->payload, r->len);
	}
	if (!ok) {
		fprintf(stderr, "%s: the reply is not the CBOR its type %s says; its bytes:\n",
			prog, m->res_text);
		print_hex_dump(stderr, r->payload, r->len);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Fire and forget: the CALL leaves with the NO_REPLY flag, and nothing
 * comes back (not even an error). EXIT_OK once it is in the kernel. */
static int call_no_reply(struct session *s, const char *method, const void *payload, size_t len)
{
	int err = lm_client_call_no_reply(s->c, method, payload, len);

	if (err == 0) {
		err = lm_client_flush(s->c);
		while (err == -EAGAIN) {
			lm_reactor_run_once(s->r, 100000000);
			err = lm_client_flush(s->c);
		}
	}
	if (err == -EINVAL) {
		fprintf(stderr, "%s: '%s' is not a valid member name\n", prog, method);
		return EXIT_USAGE;
	}
	if (err == -EMSGSIZE) {
		fprintf(stderr, "%s: the argument is too large for %s\n", prog, s->endpoint);
		return EXIT_USAGE;
	}
	if (err < 0)
		return no_server(s, err);
	return EXIT_OK;
}

static int cmd_call(int argc, char **argv)
{
	struct cmd_opts o;
	struct session s;
	struct description d = {0};
	struct result r;
	const struct member *m = NULL;
	unsigned char *payload = NULL;
	size_t len = 0;
	const char *method;
	int rc = parse_opts(argc, argv, "call", "jtxfR", &o);

	if (rc >= 0)
		return rc;
	if (argc - optind < 2 || argc - optind > 3)
		return usage_error("call wants ENDPOINT METHOD [ARG]");
	method = argv[optind + 1];
	if ((rc = session_start(&s, argv[optind], o.timeout_ns, false)) != EXIT_OK)
		return rc;
	/* The member's types, if it declares any (built-ins are not listed). */
	if (strncmp(method, "lm.", 3) != 0) {
		rc = session_describe(&s, o.timeout_ns, &d);
		if (rc != EXIT_OK)
			goto out;
		m = member_find(&d, method, false);
	}
	rc = call_argument(m, argc - optind == 3 ? argv[optind + 2] : NULL, &o, &payload, &len);
	if (rc != EXIT_OK)
		goto out;
	if (o.no_reply) {
		rc = call_no_reply(&s, method, payload, len);
		goto out;
	}
	rc = session_call(&s, method, payload, len, o.timeout_ns, &r);
	if (rc == EXIT_OK)
		rc = print_reply(m, &r, o.json);
	result_clear(&r);
out:
	free(payload);
	description_free(&d);
	session_end(&s);
	return rc;
}

/* ---- lmctl monitor ---- */

struct monitor {
	struct session *s;
	const struct description *d;
	bool json;
	unsigned long count, got;
};

static void timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char date[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%.19s.%06uZ", date, (unsigned)(ts.tv_nsec / 1000) % 1000000u);
}

static void on_signal(lm_client *c, const char *signal, const void *payload, size_t len,
		      uint64_t dropped, void *userdata)
{
	struct monitor *mon = userdata;
	const struct member *m = member_find(mon->d, signal, true);
	const lm_type *type = m ? m->res : NULL;
	struct json_object *o;
	char now[48];

	/* Signals that came in the same round as the last one counted. */
	if (mon->count && mon->got >= mon->count)
		return;
	o = json_object_new_object();
	timestamp(now, sizeof(now));
	if (dropped) {
		if (mon->json) {
			struct json_object *dr = json_object_new_object();
			json_object_object_add(dr, "time", json_object_new_string(now));
			json_object_object_add(dr, "signal", json_object_new_string(signal));
			json_object_object_add(dr, "dropped", json_object_new_uint64(dropped));
			print_json(dr);
			json_object_put(dr);
		} else {
			printf("%s %s DROPPED %llu\n", now, signal, (unsigned long long)dropped);
		}
	}
	if (!payload_to_json(o, type, payload, len)) {
		json_object_put(o);
		o = json_object_new_object();
		payload_to_json(o, NULL, payload, len); /* not the CBOR it says: show the bytes */
		type = NULL;
	}
	if (mon->json) {
		struct json_object *line = json_object_new_object();

		json_object_object_add(line, "time", json_object_new_string(now));
		json_object_object_add(line, "signal", json_object_new_string(signal));
		json_object_object_foreach(o, k, v)
		{
			json_object_object_add(line, k, json_object_get(v));
		}
		print_json(line);
		json_object_put(line);
	} else {
		struct json_object *v = NULL;
		const char *key = type ? "value" : NULL;

		if (!key)
			key = json_object_object_get_ex(o, "text", NULL) ? "text" : "hex";
		json_object_object_get_ex(o, key, &v);
		if (strcmp(key, "value") == 0)
			printf("%s %s %s\n", now, signal,
			       json_object_to_json_string_ext(v, JSON_FLAGS));
		else
			printf("%s %s %s%s\n", now, signal, key[0] == 'h' ? "hex:" : "",
			       json_object_get_string(v));
	}
	json_object_put(o);
	/* Nobody reads any more (a closed pipe): stop. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		lm_reactor_stop(lm_client_get_reactor(c), -EPIPE);
		return;
	}
	if (mon->count && ++mon->got >= mon->count)
		lm_reactor_stop(lm_client_get_reactor(c), 0);
}

static int cmd_monitor(int argc, char **argv)
{
	struct cmd_opts o;
	struct session s;
	struct description d;
	struct monitor mon = {0};
	size_t nsub = 0;
	int rc = parse_opts(argc, argv, "monitor", "jtn", &o), err;

	if (rc >= 0)
		return rc;
	if (argc - optind < 1)
		return usage_error("monitor wants ENDPOINT [SIGNAL...]");
	if ((rc = session_start(&s, argv[optind], o.timeout_ns, false)) != EXIT_OK)
		return rc;
	rc = session_describe(&s, o.timeout_ns, &d);
	if (rc != EXIT_OK) {
		session_end(&s);
		return rc;
	}
	mon = (struct monitor){&s, &d, o.json, o.count, 0};
	for (int i = optind + 1; i < argc && rc == EXIT_OK; i++) {
		if (!member_find(&d, argv[i], true)) {
			fprintf(stderr,
				"%s: %s has no signal %s (lmctl introspect %s lists them)\n", prog,
				argv[optind], argv[i], argv[optind]);
			rc = EXIT_USAGE;
		}
	}
	for (size_t i = 0; i < d.n && rc == EXIT_OK; i++) {
		bool wanted = argc - optind == 1;

		for (int k = optind + 1; k < argc && !wanted; k++)
			wanted = strcmp(argv[k], d.m[i].name) == 0;
		if (!d.m[i].signal || !wanted)
			continue;
		err = lm_client_subscribe(s.c, d.m[i].name, on_signal, &mon);
		if (err < 0 && err != -EEXIST) {
			fprintf(stderr, "%s: subscribe %s: %s\n", prog, d.m[i].name,
				strerror(-err));
			rc = EXIT_FAIL;
		}
		nsub++;
	}
	if (rc == EXIT_OK && nsub == 0) {
		fprintf(stderr, "%s: %s declares no signal\n", prog, argv[optind]);
		rc = EXIT_FAIL;
	}
	if (rc == EXIT_OK) {
		s.monitoring = true;
		s.was_connected = true;
		lm_reactor_add_signal(s.r, NULL, SIGINT, on_stop_signal, NULL);
		lm_reactor_add_signal(s.r, NULL, SIGTERM, on_stop_signal, NULL);
		err = lm_reactor_run(s.r);
		rc = err == 0 || err == -EINTR ? EXIT_OK : EXIT_FAIL;
	}
	session_end(&s);
	description_free(&d);
	return rc;
}

/* ---- lmctl wait ---- */

static int cmd_wait(int argc, char **argv)
{
	struct cmd_opts o;
	struct session s;
	int rc = parse_opts(argc, argv, "wait", "t", &o);

	if (rc >= 0)
		return rc;
	if (argc - optind != 1)
		return usage_error("wait wants one ENDPOINT");
	rc = session_start(&s, argv[optind], o.timeout_ns, true);
	if (rc == EXIT_OK)
		session_end(&s);
	return rc;
}

/* ---- lmctl status ---- */

static uint64_t jget_u64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_uint64(v) : 0;
}

static int cmd_status(int argc, char **argv)
{
	struct cmd_opts o;
	struct session s;
	struct result r;
	struct json_object *st, *sigs, *name;
	bool ok;
	int rc = parse_opts(argc, argv, "status", "jt", &o);

	if (rc >= 0)
		return rc;
	if (argc - optind != 1)
		return usage_error("status wants one ENDPOINT");
	if ((rc = session_start(&s, argv[optind], o.timeout_ns, false)) != EXIT_OK)
		return rc;
	rc = session_call(&s, "lm.Stats", NULL, 0, o.timeout_ns, &r);
	session_end(&s);
	if (rc != EXIT_OK)
		return rc;
	st = lmctl_cbor_to_json(r.payload, r.len, &ok);
	result_clear(&r);
	if (!ok || !json_object_is_type(st, json_type_object)) {
		fprintf(stderr, "%s: %s sent a malformed lm.Stats reply\n", prog, argv[optind]);
		json_object_put(st);
		return EXIT_FAIL;
	}
	if (o.json) {
		print_json(st);
	} else {
		json_object_object_get_ex(st, "name", &name);
		printf("server: %s\n", name ? json_object_get_string(name) : "?");
		printf("uptime: %.3f s\n", (double)jget_u64(st, "uptime_ns") / 1e9);
		printf("clients: %llu\n", (unsigned long long)jget_u64(st, "clients"));
		printf("calls served: %llu (refused: %llu)\n",
		       (unsigned long long)jget_u64(st, "calls"),
		       (unsigned long long)jget_u64(st, "calls_refused"));
		printf("signals emitted: %llu, dropped: %llu\n",
		       (unsigned long long)jget_u64(st, "signals_emitted"),
		       (unsigned long long)jget_u64(st, "signals_dropped"));
		printf("disconnections for overflow: %llu\n",
		       (unsigned long long)jget_u64(st, "overflow_disconnects"));
		/* Counters of later servers, when they are there. */
		if (json_object_object_get_ex(st, "stalled_disconnects", NULL))
			printf("disconnections for stalled messages: %llu\n",
			       (unsigned long long)jget_u64(st, "stalled_disconnects"));
		if (json_object_object_get_ex(st, "connections_refused", NULL))
			printf("connections refused: %llu\n",
			       (unsigned long long)jget_u64(st, "connections_refused"));
		if (json_object_object_get_ex(st, "signals", &sigs) &&
		    json_object_is_type(sigs, json_type_array)) {
			for (size_t i = 0; i < json_object_array_length(sigs); i++) {
				struct json_object *e = json_object_array_get_idx(sigs, i), *n;

				json_object_object_get_ex(e, "name", &n);
				printf("signal %s: %llu subscriber(s)\n",
				       n ? json_object_get_string(n) : "?",
				       (unsigned long long)jget_u64(e, "subscribers"));
			}
		}
	}
	json_object_put(st);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} cmds[] = {
	    {"list", cmd_list}, {"introspect", cmd_introspect},
	    {"call", cmd_call}, {"monitor", cmd_monitor},
	    {"wait", cmd_wait}, {"status", cmd_status},
	};

	setlocale(LC_CTYPE, "C.UTF-8");
	/* The client's reconnection notes are ours to tell, not the library's. */
	if (!getenv("LM_LOG"))
		lm_set_log_level(LM_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		return usage_error(
		    "say what to do: list, introspect, call, monitor, wait or status");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("lmctl (libmessage) %s\n", lm_version());
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(argv[1], cmds[i].name) == 0) {
			int rc;

			optind = 1;
			rc = cmds[i].run(argc - 1, argv + 1);
			fflush(stdout);
			return rc;
		}
	}
	return usage_error("unknown command '%s'", argv[1]);
}
