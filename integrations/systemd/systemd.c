/* SPDX-License-Identifier: MIT */
/* libmessage-systemd: activation, sd_notify, watchdog timer and journal, on libsystemd. */
#define SD_JOURNAL_SUPPRESS_LOCATION /* the location would be this file's, not the caller's */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include <libmessage/systemd.h>

LM_EXPORT int lm_systemd_listen_fd(const char *name, int *ret)
{
	char **names = NULL;
	int n, fd = -1;

	if (!name || !*name || !ret)
		return -EINVAL;
	n = sd_listen_fds_with_names(0, &names);
	if (n <= 0)
		return n;
	for (int i = 0; i < n && fd < 0; i++)
		if (names && names[i] && strcmp(names[i], name) == 0)
			fd = SD_LISTEN_FDS_START + i;
	if (fd < 0 && n == 1)
		fd = SD_LISTEN_FDS_START;
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	if (fd < 0)
		return -ENOENT;
	*ret = fd;
	return 1;
}

LM_EXPORT int lm_systemd_notify(const char *state)
{
	if (!state || !*state)
		return -EINVAL;
	return sd_notify(0, state);
}

LM_EXPORT int lm_systemd_ready(void)
{
	return lm_systemd_notify("READY=1");
}

LM_EXPORT int lm_systemd_stopping(void)
{
	return lm_systemd_notify("STOPPING=1");
}

static void watchdog_feed(lm_source *s, uint64_t expirations, void *userdata)
{
	/* Nothing to do on failure: the manager going away is not ours to
	 * handle, and a missed feed is what the watchdog is for. */
	sd_notify(0, "WATCHDOG=1");
}

LM_EXPORT int lm_systemd_watchdog_start(lm_reactor *r, lm_source **ret)
{
	uint64_t usec = 0, period_ns;
	int err;

	if (!r)
		return -EINVAL;
	err = sd_watchdog_enabled(0, &usec);
	if (err < 0)
		return err;
	if (err == 0 || usec == 0) {
		if (ret)
			*ret = NULL;
		return 0;
	}
	/* Half the interval, as sd_watchdog_enabled(3) advises: one late
	 * feed is not yet a missed deadline. */
	period_ns = usec * 1000 / 2;
	err = lm_reactor_add_timer(r, ret, period_ns, period_ns, watchdog_feed, NULL);
	return err < 0 ? err : 1;
}

static int syslog_priority(enum lm_log_level level)
{
	switch (level) {
	case LM_LOG_ERROR:
		return LOG_ERR;
	case LM_LOG_WARN:
		return LOG_WARNING;
	case LM_LOG_INFO:
		return LOG_INFO;
	default:
		return LOG_DEBUG;
	}
}

LM_EXPORT void lm_systemd_journal_log(enum lm_log_level level, const char *msg, void *userdata)
{
	static const char *const tags[] = {"error", "warning", "info", "debug"};
	const char *tag = (unsigned)level < 4 ? tags[level] : "debug";
	int prio = syslog_priority(level);

	if (sd_journal_send("MESSAGE=libmessage: %s: %s", tag, msg, "PRIORITY=%d", prio,
			    "LM_LEVEL=%s", tag, "SYSLOG_IDENTIFIER=%s",
			    program_invocation_short_name, NULL) < 0)
		/* The journal refused it (libsystemd drops it silently when no
		 * journald listens): stderr, as the default output. */
		fprintf(stderr, "<%d>libmessage: %s: %s\n", prio, tag, msg);
}

LM_EXPORT int lm_systemd_journal_install(void)
{
	if (!lm_log_stderr_is_journal())
		return 0;
	lm_set_log_handler(lm_systemd_journal_log, NULL);
	return 1;
}
