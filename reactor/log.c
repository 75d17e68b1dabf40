/* SPDX-License-Identifier: MIT */
/* Logging: a replaceable handler, a level from $LM_LOG, stderr (journal-aware) by default. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "log-internal.h"

static pthread_once_t level_once = PTHREAD_ONCE_INIT;
static int log_level = LM_LOG_WARN;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool stderr_journal;
static lm_log_cb log_cb;
static void *log_userdata;

static void emit(enum lm_log_level level, const char *msg)
{
	static const char *const tags[] = {"error", "warning", "info", "debug"};
	static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	lm_log_cb cb = __atomic_load_n(&log_cb, __ATOMIC_ACQUIRE);

	if (cb)
		cb(level, msg, log_userdata);
	else if (lm_log_stderr_is_journal())
		/* journald reads "<N>" at a line's start as its priority. */
		fprintf(stderr, "<%d>libmessage: %s: %s\n", priorities[level], tags[level], msg);
	else
		fprintf(stderr, "libmessage: %s: %s\n", tags[level], msg);
}

/* Once per process. An unknown value is warned about (directly: the level
 * is not known yet) and the default kept. */
static void read_env_level(void)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	const char *v = getenv("LM_LOG");
	char msg[160];

	if (!v || !*v)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(v, names[i]) == 0) {
			__atomic_store_n(&log_level, (int)i, __ATOMIC_RELAXED);
			return;
		}
	snprintf(msg, sizeof(msg),
		 "LM_LOG=%.64s: unknown level (error, warn, info or debug); "
		 "warn is used",
		 v);
	emit(LM_LOG_WARN, msg);
}

/* systemd connects stderr to the journal and says so in JOURNAL_STREAM,
 * "device:inode" of that stream; a stderr redirected since does not match. */
static void read_journal_stream(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int n = 0;

	if (!v || sscanf(v, "%llu:%llu%n", &dev, &ino, &n) != 2 || v[n] != '\0')
		return;
	if (fstat(STDERR_FILENO, &st) < 0)
		return;
	stderr_journal =
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool lm_log_stderr_is_journal(void)
{
	pthread_once(&journal_once, read_journal_stream);
	return stderr_journal;
}

void lm_set_log_handler(lm_log_cb cb, void *userdata)
{
	log_userdata = userdata;
	__atomic_store_n(&log_cb, cb, __ATOMIC_RELEASE);
}

void lm_set_log_level(enum lm_log_level level)
{
	pthread_once(&level_once, read_env_level);
	if ((int)level < LM_LOG_ERROR)
		level = LM_LOG_ERROR;
	if (level > LM_LOG_DEBUG)
		level = LM_LOG_DEBUG;
	__atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

enum lm_log_level lm_get_log_level(void)
{
	pthread_once(&level_once, read_env_level);
	return (enum lm_log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

bool lm__log_enabled(enum lm_log_level level)
{
	return (int)level <= (int)lm_get_log_level();
}

void lm__log(enum lm_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!lm__log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	emit(level, msg);
}

int lm__env_long(const char *var, long lo, long hi, long *v)
{
	const char *s = getenv(var);
	char *end;
	long x;

	if (!s || !*s)
		return 0;
	errno = 0;
	x = strtol(s, &end, 10);
	if (errno || *end || x < lo || x > hi) {
		lm_log_error("%s=%s: not a number from %ld to %ld", var, s, lo, hi);
		return -EINVAL;
	}
	*v = x;
	return 0;
}
