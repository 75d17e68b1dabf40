/* SPDX-License-Identifier: MIT */
/* The srvtime sample: its payload layout, and its two programs driven as a user would. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/libmessage.h>

#include "lm_test.h"

Test(srvtime, payload_layout)
{
	struct timespec ts = {.tv_sec = 1700000000, .tv_nsec = 123456789};
	uint8_t out[LM_SRVTIME_PAYLOAD_SIZE];
	struct lm_srvtime t;

	lm_srvtime_encode(out, &ts);
	cr_assert_eq(out[0], 0x00);
	cr_assert_eq(out[1], 0xf1);
	cr_assert_eq(out[2], 0x53);
	cr_assert_eq(out[3], 0x65);
	cr_assert_str_eq((char *)out + 16, "2023-11-14T22:13:20.123456789Z");
	cr_assert_eq(lm_srvtime_decode(&t, out, sizeof(out)), 0);
	cr_assert_eq(t.sec, 1700000000);
	cr_assert_eq(t.nsec, 123456789);
	cr_assert_str_eq(t.iso, "2023-11-14T22:13:20.123456789Z");
	cr_assert_eq(lm_srvtime_decode(&t, out, 47), -EBADMSG);
	memset(out + 16, 'x', 32);
	cr_assert_eq(lm_srvtime_decode(&t, out, sizeof(out)), -EBADMSG);
}

static char bindir[4096];

static const char *prog(const char *name)
{
	static char path[2][4200];
	static int i;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0);
	exe[n] = 0;
	snprintf(bindir, sizeof(bindir), "%s/../services/srvtime", dirname(exe));
	i ^= 1;
	snprintf(path[i], sizeof(path[i]), "%s/%s", bindir, name);
	if (access(path[i], X_OK) != 0)
		cr_skip_test("%s not built", path[i]);
	return path[i];
}

/* Run a command line, capture stdout+stderr into out, return the exit code. */
static int run(const char *cmd, char *out, size_t size)
{
	FILE *f = popen(cmd, "r");
	size_t n;
	int st;

	cr_assert_not_null(f);
	n = fread(out, 1, size - 1, f);
	out[n] = 0;
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int count_lines(const char *s, const char *needle)
{
	int n = 0;

	for (const char *p = s; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

Test(srvtime, programs_end_to_end, .timeout = 60)
{
	const char *dir = lm_test_runtime_dir();
	const char *server = prog("srvtime-server"), *client = prog("srvtime-client");
	char cmd[9000], out[8192];
	struct dirent *e;
	pid_t pid;
	int st, n = 0;
	DIR *d;

	/* No server yet: a clear message and exit 1. */
	snprintf(cmd, sizeof(cmd), "%s getdate 2>&1", client);
	cr_assert_eq(run(cmd, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "no srvtime server at unix:srvtime (is srvtime-server running?)"),
		  "%s", out);
	snprintf(cmd, sizeof(cmd), "%s watch --count 1 2>&1", client);
	cr_assert_eq(run(cmd, out, sizeof(out)), 1, "%s", out);
	snprintf(cmd, sizeof(cmd), "%s bogus 2>&1", client);
	cr_assert_eq(run(cmd, out, sizeof(out)), 2, "%s", out);
	snprintf(cmd, sizeof(cmd), "%s --help", client);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0);
	cr_assert(strstr(out, "usage: srvtime-client"));
	snprintf(cmd, sizeof(cmd), "%s --help", server);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0);
	cr_assert(strstr(out, "usage: srvtime-server"));

	pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl(server, server, "--period-ms", "100", (char *)NULL);
		_exit(127);
	}
	/* Wait until it serves. */
	snprintf(cmd, sizeof(cmd), "%s getdate 2>&1", client);
	for (int i = 0; i < 100 && run(cmd, out, sizeof(out)) != 0; i++)
		usleep(20000);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0, "%s", out);
	/* "2026-11-22T04:46:09.087710807Z 1795322769.087710807\n" */
	cr_assert_eq(strlen(out), 52, "%s", out);
	cr_assert_eq(out[10], 'T');
	cr_assert_eq(out[29], 'Z');
	long long sec = atoll(out + 31);
	cr_assert(llabs(sec - (long long)time(NULL)) <= 2, "%s", out);

	snprintf(cmd, sizeof(cmd), "%s watch --count 3 2>&1", client);
	cr_assert_eq(run(cmd, out, sizeof(out)), 0, "%s", out);
	cr_assert_eq(count_lines(out, "Z "), 3, "%s", out);

	/* A second server on the same endpoint is refused. */
	snprintf(cmd, sizeof(cmd), "%s 2>&1", server);
	cr_assert_eq(run(cmd, out, sizeof(out)), 1, "%s", out);
	cr_assert(strstr(out, "already runs"), "%s", out);

	kill(pid, SIGTERM);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server status %#x", st);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	cr_assert_eq(n, 0, "files left in the runtime directory");
}
