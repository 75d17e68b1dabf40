/* SPDX-License-Identifier: MIT */
/* The default log output: plain lines on stderr, syslog priorities when stderr is the journal. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log-internal.h"
#include "lm_test.h"

/* stderr into a pipe; JOURNAL_STREAM names it when journal is true (else
 * another stream, as after a redirection). Logs one warning and one error,
 * and returns what stderr got. */
static const char *log_through_pipe(bool journal)
{
	static char out[1024];
	struct stat st;
	char v[64];
	int p[2], saved;
	ssize_t n;

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	cr_assert_eq(fstat(p[1], &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + (journal ? 0 : 1));
	setenv("JOURNAL_STREAM", v, 1);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	cr_assert_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
	cr_assert_eq(lm_log_stderr_is_journal(), journal);
	lm__log(LM_LOG_WARN, "a warning %d", 1);
	lm__log(LM_LOG_ERROR, "an error");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], out, sizeof(out) - 1);
	cr_assert_gt(n, 0);
	out[n] = 0;
	close(p[0]);
	return out;
}

Test(log, journal_stream_gets_priority_prefixes)
{
	cr_assert_str_eq(log_through_pipe(true),
			 "<4>libmessage: warning: a warning 1\n<3>libmessage: error: an error\n");
}

Test(log, other_stream_gets_plain_lines)
{
	cr_assert_str_eq(log_through_pipe(false),
			 "libmessage: warning: a warning 1\nlibmessage: error: an error\n");
}

Test(log, malformed_journal_stream_is_not_the_journal)
{
	setenv("JOURNAL_STREAM", "12:34x", 1);
	cr_assert_eq(lm_log_stderr_is_journal(), false);
}

Test(log, no_journal_stream_is_not_the_journal)
{
	unsetenv("JOURNAL_STREAM");
	cr_assert_eq(lm_log_stderr_is_journal(), false);
}
