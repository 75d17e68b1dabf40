/* SPDX-License-Identifier: MIT */
/* srvtime-server: serve the time (method getdate, signal date) until SIGINT/SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmessage/libmessage.h>
#ifdef LM_SRVTIME_SYSTEMD
#include <libmessage/systemd.h>
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: srvtime-server [--endpoint E] [--period-ms N]\n"
		   "Serve the time: method getdate, and signal date every N ms (default 1000).\n"
		   "E is scheme:name (unix:, fifo:, mq:), default " LM_SRVTIME_ENDPOINT ".\n"
		   "Stops cleanly on SIGINT or SIGTERM.\n"
#ifdef LM_SRVTIME_SYSTEMD
		   "Under systemd: serves the socket a .socket unit passes (named as E's name,\n"
		   "or the only one), says READY=1 and STOPPING=1, feeds the watchdog, logs\n"
		   "to the journal (docs/systemd.md).\n"
#endif

		   "Exit status: 0 stopped by a signal, 1 could not serve, 2 bad usage.\n");
}

static void on_stop(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	fprintf(stderr, "srvtime-server: %s, stopping\n", strsignal((int)si->ssi_signo));
	lm_reactor_stop(lm_source_get_reactor(s), 0);
}

/* The listening socket systemd passed for endpoint: 1 and *fd, 0 when not
 * socket-activated, -errno. */
static int activated_fd(const char *endpoint, int *fd)
{
#ifdef LM_SRVTIME_SYSTEMD
	const char *colon = strchr(endpoint, ':');
	const char *scheme = getenv("LM_TRANSPORT");
	const char *name = colon ? colon + 1 : endpoint;
	int err;

	if (!*name)
		return 0; /* a bad endpoint: lm_srvtime_server_new() says why */
	err = lm_systemd_listen_fd(name, fd);
	if (err <= 0)
		return err;
	if (colon ? strncmp(endpoint, "unix:", 5) != 0
		  : scheme && *scheme && strcmp(scheme, "unix"))
		return -EOPNOTSUPP; /* activation serves unix endpoints only */
	return 1;
#else
	return 0;
#endif
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"endpoint", required_argument, NULL, 'e'},
	    {"period-ms", required_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	const char *endpoint = LM_SRVTIME_ENDPOINT;
	unsigned long period_ms = 1000;
	lm_srvtime_server *srv;
	lm_reactor *r;
	char *end;
	int opt, err, fd = -1;

	while ((opt = getopt_long(argc, argv, "e:p:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'e':
			endpoint = optarg;
			break;
		case 'p':
			errno = 0;
			period_ms = strtoul(optarg, &end, 10);
			if (errno || *end || period_ms == 0 || period_ms > 86400000) {
				fprintf(stderr,
					"srvtime-server: --period-ms wants 1..86400000, not '%s'\n",
					optarg);
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
	if (optind < argc) {
		fprintf(stderr, "srvtime-server: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	err = lm_reactor_new(&r, NULL);
	if (err < 0) {
		fprintf(stderr, "srvtime-server: cannot create the event loop: %s\n",
			strerror(-err));
		return 1;
	}
#ifdef LM_SRVTIME_SYSTEMD
	lm_systemd_journal_install();
#endif
	err = activated_fd(endpoint, &fd);
	if (err < 0) {
		fprintf(stderr, "srvtime-server: socket activation for %s: %s\n", endpoint,
			strerror(-err));
		lm_reactor_free(r);
		return 1;
	}
	if (err > 0)
		err = lm_srvtime_server_new_fd(&srv, r, fd, period_ms * 1000000ull);
	else
		err = lm_srvtime_server_new(&srv, r, endpoint, period_ms * 1000000ull);
	if (err == -EADDRINUSE) {
		fprintf(stderr, "srvtime-server: a server already runs at %s\n", endpoint);
		lm_reactor_free(r);
		return 1;
	}
	if (err < 0) {
		fprintf(stderr, "srvtime-server: cannot serve %s: %s\n", endpoint, strerror(-err));
		lm_reactor_free(r);
		return 1;
	}
	if ((err = lm_reactor_add_signal(r, NULL, SIGINT, on_stop, NULL)) < 0 ||
	    (err = lm_reactor_add_signal(r, NULL, SIGTERM, on_stop, NULL)) < 0) {
		fprintf(stderr, "srvtime-server: cannot watch signals: %s\n", strerror(-err));
		lm_srvtime_server_free(srv);
		lm_reactor_free(r);
		return 1;
	}
#ifdef LM_SRVTIME_SYSTEMD
	if ((err = lm_systemd_watchdog_start(r, NULL)) < 0) {
		fprintf(stderr, "srvtime-server: cannot feed the watchdog: %s\n", strerror(-err));
		lm_srvtime_server_free(srv);
		lm_reactor_free(r);
		return 1;
	}
	lm_systemd_ready();
#endif
	fprintf(stderr, "srvtime-server: serving %s%s (date every %lu ms)\n", endpoint,
		fd >= 0 ? " on the socket passed by systemd" : "", period_ms);
	lm_reactor_run(r);
#ifdef LM_SRVTIME_SYSTEMD
	lm_systemd_stopping();
#endif
	lm_srvtime_server_free(srv);
	lm_reactor_free(r);
	return 0;
}
