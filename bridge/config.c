/* SPDX-License-Identifier: MIT */
/* lm-bridge's configuration: a file of "key = value" lines, then command-line flags. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge.h"

static const char usage[] =
    "usage: lm-bridge [--config FILE] [options]\n"
    "  -c, --config FILE          read KEY = VALUE lines (the long options' names) first\n"
    "  -b, --broker URL           mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (required)\n"
    "  -H, --host NAME            this host's name in topics (default: the hostname)\n"
    "  -u, --username NAME        MQTT user name\n"
    "  -p, --password-file PATH   file whose first line is the MQTT password\n"
    "      --ca-file PATH         CA certificates for TLS (turns TLS on)\n"
    "      --cert-file PATH       client certificate for TLS\n"
    "      --key-file PATH        client key for TLS\n"
    "  -e, --export SERVICE[=ENDPOINT]   export a local service (default unix:SERVICE)\n"
    "  -i, --import HOST/SERVICE[=ENDPOINT]  serve a remote service here\n"
    "                                    (default unix:HOST.SERVICE)\n"
    "      --prefix WORD          first topic level (default lm)\n"
    "      --keepalive SECONDS    MQTT keepalive (default 30)\n"
    "      --qos 0|1              QoS of calls and replies (default 1)\n"
    "      --call-timeout MS      deadline of an imported call (default 25000)\n"
    "  -v, --verbose              log each connection change and refusal\n"
    "  -h, --help\n";

int bridge_verbose;

/* Names that go into topics: the libmessage name alphabet, so never '/', '+', '#'. */
bool name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static int bad(const char *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const char *where, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "lm-bridge: %s%s", where ? where : "", where ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_int(const char *where, const char *key, const char *v, long min, long max,
		     long *ret)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		return bad(where, "%s: '%s' is not a number from %ld to %ld", key, v, min, max);
	*ret = n;
	return 0;
}

static int parse_broker(struct bridge_config *cfg, const char *where, const char *url)
{
	const char *h = url, *end;
	long port;
	char *host;
	int err;

	if (strncmp(url, "mqtt://", 7) == 0) {
		h = url + 7;
		cfg->tls = false;
		port = 1883;
	} else if (strncmp(url, "mqtts://", 8) == 0) {
		h = url + 8;
		cfg->tls = true;
		port = 8883;
	} else {
		return bad(where, "broker: '%s' is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
			   url);
	}
	if (*h == '[') { /* [v6 address] */
		end = strchr(h, ']');
		if (!end)
			return bad(where, "broker: '%s': no closing ']'", url);
		host = strndup(h + 1, (size_t)(end - h - 1));
		end++;
	} else {
		end = h + strcspn(h, ":/");
		host = strndup(h, (size_t)(end - h));
	}
	if (!host)
		return -ENOMEM;
	if (!*host) {
		free(host);
		return bad(where, "broker: '%s' names no host", url);
	}
	if (*end == ':') {
		if ((err = parse_int(where, "broker port", end + 1, 1, 65535, &port)) < 0) {
			free(host);
			return err;
		}
	} else if (*end && strcmp(end, "/") != 0) {
		free(host);
		return bad(where, "broker: '%s': unexpected '%s' after the host", url, end);
	}
	free(cfg->broker_host);
	cfg->broker_host = host;
	cfg->broker_port = (int)port;
	return 0;
}

static int read_password(struct bridge_config *cfg, const char *where, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	struct stat st;
	size_t n;

	if (!f)
		return bad(where, "password-file %s: %s", path, strerror(errno));
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 0077))
		fprintf(stderr, "lm-bridge: warning: password-file %s is readable by others\n",
			path);
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return bad(where, "password-file %s: empty", path);
	}
	fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = 0;
	return set_str(&cfg->password, line);
}

static int add_export(struct bridge_config *cfg, const char *where, const char *v)
{
	const char *eq = strchr(v, '=');
	struct export_cfg e = {0}, *vec;

	e.service = eq ? strndup(v, (size_t)(eq - v)) : strdup(v);
	if (!e.service)
		return -ENOMEM;
	if (!name_ok(e.service)) {
		free(e.service);
		return bad(where, "export '%s': the service name must be 1..255 of [A-Za-z0-9_.-]",
			   v);
	}
	if (eq && !eq[1]) {
		free(e.service);
		return bad(where, "export '%s': empty endpoint after '='", v);
	}
	if (eq)
		e.endpoint = strdup(eq + 1);
	else if (asprintf(&e.endpoint, "unix:%s", e.service) < 0)
		e.endpoint = NULL;
	for (size_t i = 0; e.endpoint && i < cfg->nexports; i++)
		if (strcmp(cfg->exports[i].service, e.service) == 0) {
			free(e.service);
			free(e.endpoint);
			return bad(where, "export '%s': exported twice", v);
		}
	vec = e.endpoint ? realloc(cfg->exports, (cfg->nexports + 1) * sizeof(*vec)) : NULL;
	if (!vec) {
		free(e.service);
		free(e.endpoint);
		return -ENOMEM;
	}
	vec[cfg->nexports++] = e;
	cfg->exports = vec;
	return 0;
}

static int add_import(struct bridge_config *cfg, const char *where, const char *v)
{
	const char *eq = strchr(v, '='), *slash = strchr(v, '/');
	struct import_cfg im = {0}, *vec;

	if (!slash || (eq && slash > eq))
		return bad(where, "import '%s': not HOST/SERVICE[=ENDPOINT]", v);
	im.host = strndup(v, (size_t)(slash - v));
	im.service = eq ? strndup(slash + 1, (size_t)(eq - slash - 1)) : strdup(slash + 1);
	if (!im.host || !im.service)
		goto nomem;
	if (!name_ok(im.host) || !name_ok(im.service)) {
		bad(where, "import '%s': host and service must each be 1..255 of [A-Za-z0-9_.-]",
		    v);
		goto fail;
	}
	if (eq && !eq[1]) {
		bad(where, "import '%s': empty endpoint after '='", v);
		goto fail;
	}
	if (eq)
		im.endpoint = strdup(eq + 1);
	else if (asprintf(&im.endpoint, "unix:%s.%s", im.host, im.service) < 0)
		im.endpoint = NULL;
	if (!im.endpoint)
		goto nomem;
	for (size_t i = 0; i < cfg->nimports; i++)
		if (strcmp(cfg->imports[i].host, im.host) == 0 &&
		    strcmp(cfg->imports[i].service, im.service) == 0) {
			bad(where, "import '%s': imported twice", v);
			goto fail;
		}
	vec = realloc(cfg->imports, (cfg->nimports + 1) * sizeof(*vec));
	if (!vec)
		goto nomem;
	vec[cfg->nimports++] = im;
	cfg->imports = vec;
	return 0;
nomem:
	free(im.host);
	free(im.service);
	free(im.endpoint);
	return -ENOMEM;
fail:
	free(im.host);
	free(im.service);
	free(im.endpoint);
	return -EINVAL;
}

/* One setting, from the file (where = "FILE:LINE") or a flag (where = NULL). */
static int apply(struct bridge_config *cfg, const char *where, const char *key, const char *v)
{
	long n;
	int err;

	if (strcmp(key, "broker") == 0)
		return parse_broker(cfg, where, v);
	if (strcmp(key, "host") == 0) {
		if (!name_ok(v))
			return bad(where, "host '%s': must be 1..255 of [A-Za-z0-9_.-]", v);
		return set_str(&cfg->host, v);
	}
	if (strcmp(key, "username") == 0)
		return set_str(&cfg->username, v);
	if (strcmp(key, "password-file") == 0)
		return read_password(cfg, where, v);
	if (strcmp(key, "ca-file") == 0) {
		cfg->tls = true;
		return set_str(&cfg->ca_file, v);
	}
	if (strcmp(key, "cert-file") == 0)
		return set_str(&cfg->cert_file, v);
	if (strcmp(key, "key-file") == 0)
		return set_str(&cfg->key_file, v);
	if (strcmp(key, "export") == 0)
		return add_export(cfg, where, v);
	if (strcmp(key, "import") == 0)
		return add_import(cfg, where, v);
	if (strcmp(key, "prefix") == 0) {
		if (!name_ok(v))
			return bad(where, "prefix '%s': must be 1..255 of [A-Za-z0-9_.-]", v);
		return set_str(&cfg->prefix, v);
	}
	if (strcmp(key, "keepalive") == 0) {
		if ((err = parse_int(where, key, v, 5, 65535, &n)) < 0)
			return err;
		cfg->keepalive = (int)n;
		return 0;
	}
	if (strcmp(key, "qos") == 0) {
		if ((err = parse_int(where, key, v, 0, 1, &n)) < 0)
			return err;
		cfg->qos = (int)n;
		return 0;
	}
	if (strcmp(key, "call-timeout") == 0) {
		if ((err = parse_int(where, key, v, 1, 24 * 3600 * 1000l, &n)) < 0)
			return err;
		cfg->call_timeout_ns = n * 1000000ll;
		return 0;
	}
	return bad(where, "unknown setting '%s'", key);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

static int read_file(struct bridge_config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[4096], where[PATH_MAX + 32];
	unsigned lineno = 0;
	int err = 0;

	if (!f)
		return bad(NULL, "config %s: %s", path, strerror(errno));
	while (err == 0 && fgets(line, sizeof(line), f)) {
		char *k = trim(line), *eq;

		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (!*k || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (!eq) {
			err = bad(where, "not KEY = VALUE: '%s'", k);
			break;
		}
		*eq = 0;
		err = apply(cfg, where, trim(k), trim(eq + 1));
	}
	fclose(f);
	return err;
}

static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"broker", required_argument, NULL, 'b'},
    {"host", required_argument, NULL, 'H'},
    {"username", required_argument, NULL, 'u'},
    {"password-file", required_argument, NULL, 'p'},
    {"ca-file", required_argument, NULL, 1},
    {"cert-file", required_argument, NULL, 2},
    {"key-file", required_argument, NULL, 3},
    {"export", required_argument, NULL, 'e'},
    {"import", required_argument, NULL, 'i'},
    {"prefix", required_argument, NULL, 4},
    {"keepalive", required_argument, NULL, 5},
    {"qos", required_argument, NULL, 6},
    {"call-timeout", required_argument, NULL, 7},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
static const char shortopts[] = "c:b:H:u:p:e:i:vh";

/*
 * Fill cfg from the file named by --config (read first, wherever the flag
 * is), then from the other flags in order. 0, 1 for --help (printed), or
 * -EINVAL after printing what is wrong, -ENOMEM.
 */
int config_parse(struct bridge_config *cfg, int argc, char **argv)
{
	char hostname[256];
	int opt, err;

	memset(cfg, 0, sizeof(*cfg));
	cfg->keepalive = 30;
	cfg->qos = 1;
	cfg->call_timeout_ns = 25ll * 1000 * 1000 * 1000;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage, stdout);
			return 1;
		}
		if (opt == '?')
			return bad(NULL, "unknown option or missing argument: %s\n%s",
				   argv[optind - 1], usage);
		if (opt == 'c' && (err = read_file(cfg, optarg)) < 0)
			return err;
	}
	optind = 1;
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const char *key = NULL;

		for (const struct option *o = longopts; o->name; o++)
			if (o->val == opt)
				key = o->name;
		if (opt == 'c')
			continue;
		if (opt == 'v') {
			bridge_verbose = 1;
			continue;
		}
		if ((err = apply(cfg, NULL, key, optarg)) < 0)
			return err;
	}
	if (optind < argc)
		return bad(NULL, "unexpected argument '%s'\n%s", argv[optind], usage);
	if (!cfg->broker_host)
		return bad(NULL, "no broker: give --broker mqtt://HOST[:PORT] (or broker = ... in "
				 "the config file)");
	if (!cfg->nexports && !cfg->nimports)
		return bad(NULL, "nothing to do: give at least one --export or --import");
	if (cfg->password && !cfg->username)
		return bad(NULL, "a password-file without a username");
	if ((cfg->cert_file != NULL) != (cfg->key_file != NULL))
		return bad(NULL, "cert-file and key-file go together");
	if (!cfg->host) {
		if (gethostname(hostname, sizeof(hostname)) < 0)
			return -errno;
		hostname[sizeof(hostname) - 1] = 0;
		hostname[strcspn(hostname, ".")] = 0;
		if (!name_ok(hostname))
			return bad(NULL, "the hostname '%s' cannot be used in topics: give --host",
				   hostname);
		if ((err = set_str(&cfg->host, hostname)) < 0)
			return err;
	}
	if (!cfg->prefix && (err = set_str(&cfg->prefix, "lm")) < 0)
		return err;
	return 0;
}

void config_free(struct bridge_config *cfg)
{
	for (size_t i = 0; i < cfg->nexports; i++) {
		free(cfg->exports[i].service);
		free(cfg->exports[i].endpoint);
	}
	for (size_t i = 0; i < cfg->nimports; i++) {
		free(cfg->imports[i].host);
		free(cfg->imports[i].service);
		free(cfg->imports[i].endpoint);
	}
	free(cfg->exports);
	free(cfg->imports);
	free(cfg->host);
	free(cfg->broker_host);
	free(cfg->username);
	if (cfg->password)
		explicit_bzero(cfg->password, strlen(cfg->password));
	free(cfg->password);
	free(cfg->ca_file);
	free(cfg->cert_file);
	free(cfg->key_file);
	free(cfg->prefix);
	memset(cfg, 0, sizeof(*cfg));
}
