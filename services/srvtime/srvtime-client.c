/* SPDX-License-Identifier: MIT */
/* srvtime-client: ask a srvtime server for the date, or watch its date signal. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmessage/libmessage.h>

struct watch {
	unsigned long count, got;
	const char *endpoint;
	int status;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: srvtime-client getdate [--endpoint E] [--timeout-ms N]\n"
		   "       srvtime-client watch [--count N] [--endpoint E]\n"
		   "getdate prints the server's time once; watch prints each date signal\n"
		   "(N of them, or until SIGINT/SIGTERM). E defaults to " LM_SRVTIME_ENDPOINT ".\n"
		   "Each line: ISO-8601 UTC time, then seconds.nanoseconds since the epoch.\n"
		   "Exit status: 0 done, 1 no server or no answer, 2 bad usage.\n");
}

static void no_server(const char *endpoint)
{
	fprintf(stderr, "srvtime-client: no srvtime server at %s (is srvtime-server running?)\n",
		endpoint);
}

static void print_time(const struct lm_srvtime *t)
{
	printf("%s %lld.%09u\n", t->iso, (long long)t->sec, (unsigned)t->nsec);
	fflush(stdout);
}

static int do_getdate(lm_client *c, const char *endpoint, long timeout_ms)
{
	struct lm_srvtime t;
	int err = lm_srvtime_getdate(c, timeout_ms * 1000000ll, &t);

	if (err == -ENOTCONN || err == -ECONNRESET) {
		no_server(endpoint);
		return 1;
	}
	if (err == -ETIMEDOUT) {
		fprintf(stderr, "srvtime-client: no answer from %s within %ld ms\n", endpoint,
			timeout_ms);
		return 1;
	}
	if (err < 0) {
		fprintf(stderr, "srvtime-client: getdate at %s: %s\n", endpoint, strerror(-err));
		return 1;
	}
	print_time(&t);
	return 0;
}

static void on_date(lm_client *c, const struct lm_srvtime *t, uint64_t dropped, void *userdata)
{
	struct watch *w = userdata;

	if (dropped)
		fprintf(stderr, "srvtime-client: %llu dates missed\n", (unsigned long long)dropped);
	print_time(t);
	if (w->count && ++w->got >= w->count)
		lm_reactor_stop(lm_client_get_reactor(c), 0);
}

static void on_state(lm_client *c, enum lm_client_state st, int reason, void *userdata)
{
	struct watch *w = userdata;

	if (st == LM_CLIENT_DISCONNECTED)
		fprintf(stderr, "srvtime-client: lost %s (%s), waiting for it to come back\n",
			w->endpoint, strerror(-reason));
	else if (st == LM_CLIENT_CONNECTED && w->status)
		fprintf(stderr, "srvtime-client: connected to %s again\n", w->endpoint);
	if (st == LM_CLIENT_CONNECTED)
		w->status = 1;
}

static void on_stop(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(s), 0);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"endpoint", required_argument, NULL, 'e'},
	    {"count", required_argument, NULL, 'n'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct watch w = {.endpoint = LM_SRVTIME_ENDPOINT};
	long timeout_ms = 5000;
	const char *cmd;
	lm_reactor *r;
	lm_client *c;
	char *end;
	int opt, err, rc;

	while ((opt = getopt_long(argc, argv, "e:n:t:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e':
			w.endpoint = optarg;
			break;
		case 'n':
			errno = 0;
			w.count = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-') {
				fprintf(stderr,
					"srvtime-client: --count wants a number, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 't':
			errno = 0;
			timeout_ms = strtol(optarg, &end, 10);
			if (errno || *end || timeout_ms <= 0) {
				fprintf(stderr,
					"srvtime-client: --timeout-ms wants a positive number\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 ||
	    (strcmp(argv[optind], "getdate") != 0 && strcmp(argv[optind], "watch") != 0)) {
		fprintf(stderr, "srvtime-client: say getdate or watch\n");
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];

	err = lm_reactor_new(&r, NULL);
	if (err < 0) {
		fprintf(stderr, "srvtime-client: cannot create the event loop: %s\n",
			strerror(-err));
		return 1;
	}
	err = lm_client_new(&c, r, w.endpoint, NULL);
	if (err < 0) {
		/* A malformed endpoint, an unknown transport, an unusable runtime
		 * directory: libmessage logged which, once. */
		fprintf(stderr, "srvtime-client: cannot use %.120s: %s\n", w.endpoint,
			strerror(-err));
		lm_reactor_free(r);
		return 1;
	}
	if (strcmp(cmd, "getdate") == 0) {
		rc = do_getdate(c, w.endpoint, timeout_ms);
	} else if (lm_client_get_state(c) == LM_CLIENT_DISCONNECTED) {
		no_server(w.endpoint);
		rc = 1;
	} else {
		lm_client_set_state_cb(c, on_state, &w);
		lm_reactor_add_signal(r, NULL, SIGINT, on_stop, NULL);
		lm_reactor_add_signal(r, NULL, SIGTERM, on_stop, NULL);
		err = lm_srvtime_watch(c, on_date, &w);
		rc = err < 0 ? 1 : lm_reactor_run(r);
		lm_srvtime_unwatch(c);
	}
	lm_client_free(c);
	lm_reactor_free(r);
	return rc;
}
