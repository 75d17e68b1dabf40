/* SPDX-License-Identifier: MIT */
/* What the library says about bad input: each error once, naming the rule broken. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmessage/libmessage.h>

#include "lm_test.h"

/* Every line the library logs, kept. */
static char lines[16][512];
static int n_lines, n_errors;

static void keep(enum lm_log_level level, const char *msg, void *userdata)
{
	if (n_lines < 16)
		snprintf(lines[n_lines++], sizeof(lines[0]), "%s", msg);
	if (level == LM_LOG_ERROR)
		n_errors++;
}

static void setup(void)
{
	lm_test_runtime_dir();
	lm_set_log_handler(keep, NULL);
	n_lines = n_errors = 0;
}

/* How many kept lines contain s. */
static int said(const char *s)
{
	int n = 0;

	for (int i = 0; i < n_lines; i++)
		n += strstr(lines[i], s) != NULL;
	return n;
}

static int client_new(const char *endpoint)
{
	lm_reactor *r = lm_test_reactor(LM_BACKEND_EPOLL);
	lm_client *c = NULL;
	int err = lm_client_new(&c, r, endpoint, NULL);

	if (err == 0) {
		/* A client that got through: it tries again a few times. */
		for (int i = 0; i < 3; i++)
			lm_reactor_run_once(r, 300 * 1000 * 1000);
		lm_client_free(c);
	}
	lm_reactor_free(r);
	return err;
}

Test(messages, bad_endpoints_fail_at_once_saying_why, .init = setup)
{
	static const struct {
		const char *endpoint;
		int err;
		const char *why;
	} cases[] = {
	    {"bogus:x", -EPROTONOSUPPORT, "unknown transport 'bogus'"},
	    {"unix:", -EINVAL, "the name is empty"},
	    {"unix:../x", -EINVAL, "may not contain '/'"},
	    {"fifo:a..b", -EINVAL, "may not contain '..'"},
	    {"mq:a\tb", -EINVAL, "control characters"},
	};
	char longname[320];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n_lines = n_errors = 0;
		cr_assert_eq(client_new(cases[i].endpoint), cases[i].err, "%s", cases[i].endpoint);
		cr_assert_eq(n_errors, 1, "%s: %d error lines", cases[i].endpoint, n_errors);
		cr_assert_eq(said(cases[i].why), 1, "%s: '%s' not said: %s", cases[i].endpoint,
			     cases[i].why, lines[0]);
	}
	memset(longname, 'a', sizeof(longname));
	memcpy(longname, "unix:", 5);
	longname[305] = 0;
	n_lines = n_errors = 0;
	cr_assert_eq(client_new(longname), -EINVAL);
	cr_assert_eq(n_errors, 1);
	cr_assert_eq(said("the name is too long (300 bytes, at most"), 1, "%s", lines[0]);
}

Test(messages, unknown_lm_transport_named, .init = setup)
{
	setenv("LM_TRANSPORT", "bogus", 1);
	cr_assert_eq(client_new("x"), -EPROTONOSUPPORT);
	cr_assert_eq(n_errors, 1);
	cr_assert_eq(said("LM_TRANSPORT=bogus"), 1, "%s", lines[0]);
}

Test(messages, runtime_dir_without_parent_fails_once, .init = setup)
{
	char dir[4200];
	lm_server *s;
	lm_reactor *r = lm_test_reactor(LM_BACKEND_EPOLL);

	snprintf(dir, sizeof(dir), "%s/missing/run", getenv("LM_RUNTIME_DIR"));
	setenv("LM_RUNTIME_DIR", dir, 1);
	cr_assert_eq(client_new("unix:x"), -ENOENT);
	cr_assert_eq(n_errors, 1, "%d error lines", n_errors);
	cr_assert_eq(said("its parent directory does not exist"), 1, "%s", lines[0]);
	/* The same error again is not said again... */
	cr_assert_eq(lm_server_new(&s, r, "unix:x", NULL), -ENOENT);
	cr_assert_eq(n_errors, 1, "said twice");
	/* ...until the directory was opened fine once. */
	dir[strlen(dir) - strlen("/missing/run")] = 0;
	setenv("LM_RUNTIME_DIR", dir, 1);
	cr_assert_eq(lm_server_new(&s, r, "unix:x", NULL), 0);
	lm_server_free(s);
	strcat(dir, "/missing/run");
	setenv("LM_RUNTIME_DIR", dir, 1);
	cr_assert_eq(lm_server_new(&s, r, "unix:x", NULL), -ENOENT);
	cr_assert_eq(n_errors, 2);
	lm_reactor_free(r);
}

Test(messages, relative_runtime_dir_refused, .init = setup)
{
	char buf[256];

	setenv("LM_RUNTIME_DIR", "relative/dir", 1);
	cr_assert_eq(lm_runtime_dir(buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(said("LM_RUNTIME_DIR=relative/dir: refused: not an absolute path"), 1);
	cr_assert_eq(client_new("unix:x"), -EINVAL);
	cr_assert_eq(access("relative", F_OK), -1, "a relative directory was made");
}

Test(messages, unknown_log_level_warned_once, .init = setup)
{
	setenv("LM_LOG", "bogus", 1);
	cr_assert_eq(lm_get_log_level(), LM_LOG_WARN);
	cr_assert_eq(lm_get_log_level(), LM_LOG_WARN);
	cr_assert_eq(said("LM_LOG=bogus: unknown level"), 1, "%d lines", n_lines);
}

Test(messages, io_uring_is_uring, .init = setup)
{
	lm_reactor *r;
	int err;

	setenv("LM_BACKEND", "io_uring", 1);
	err = lm_reactor_new(&r, NULL);
	if (err < 0 && err != -EINVAL)
		cr_skip_test("io_uring refused here: %s", strerror(-err));
	cr_assert_eq(err, 0);
	cr_assert_str_eq(lm_reactor_backend_name(r), "io_uring");
	lm_reactor_free(r);
	setenv("LM_BACKEND", "bogus", 1);
	cr_assert_eq(lm_reactor_new(&r, NULL), -EINVAL);
	cr_assert_eq(said("LM_BACKEND=bogus"), 1);
}
