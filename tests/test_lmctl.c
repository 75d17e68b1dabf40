/* SPDX-License-Identifier: MIT */
/* lmctl driven as a user would: real servers and lmctl as separate processes, on every transport.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "lm_test.h"

static const char *const transports[] = {"unix", "fifo", "mq"};
/* Parameters are indexes: Criterion's workers are new processes (ASLR moves
 * the strings), so a parameter cannot be a pointer into this binary. */
static int transport_ix[] = {0, 1, 2};

static char dir_tools[1024], dir_srvtime[1024], src_dir[1024];

/* Where the programs are: beside this test's build directory. */
static void find_programs(void)
{
	char exe[900], path[1100];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0);
	exe[n] = 0;
	snprintf(dir_tools, sizeof(dir_tools), "%s/../tools/lmctl", dirname(exe));
	snprintf(dir_srvtime, sizeof(dir_srvtime), "%s/../services/srvtime", exe);
	snprintf(src_dir, sizeof(src_dir), "%s", LM_TEST_SOURCE_DIR);
	snprintf(path, sizeof(path), "%s/lmctl", dir_tools);
	if (access(path, X_OK) != 0)
		cr_skip_test("lmctl is not built (LM_WITH_LMCTL=OFF)");
}

struct run {
	int code;
	char out[65536], err[8192];
};

/* Run a shell command line (lmctl is $L, the servers $T and $S), its stdout
 * and stderr captured apart. */
static struct run *run(const char *fmt, ...)
{
	static struct run r;
	char cmd[4096], line[8192], errfile[1100];
	va_list ap;
	FILE *f;
	size_t n;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(errfile, sizeof(errfile), "%s/stderr.txt", getenv("LM_RUNTIME_DIR"));
	snprintf(line, sizeof(line), "L=%s/lmctl; export PATH=%s:$PATH; { %s ; } 2>%s", dir_tools,
		 dir_tools, cmd, errfile);
	f = popen(line, "r");
	cr_assert_not_null(f);
	n = fread(r.out, 1, sizeof(r.out) - 1, f);
	r.out[n] = 0;
	st = pclose(f);
	r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	f = fopen(errfile, "r");
	n = f ? fread(r.err, 1, sizeof(r.err) - 1, f) : 0;
	r.err[n] = 0;
	if (f) {
		fclose(f);
		unlink(errfile);
	}
	return &r;
}

static struct run *expect(int code, const char *fmt, ...)
{
	char cmd[4096];
	struct run *r;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = run("%s", cmd);
	cr_assert_eq(r->code, code, "'%s': exit %d, not %d\nstdout: %s\nstderr: %s", cmd, r->code,
		     code, r->out, r->err);
	return r;
}

static pid_t start(const char *prog, char *const argv[])
{
	pid_t pid = lm_test_fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execv(prog, argv);
		_exit(127);
	}
	return pid;
}

/* The test server on endpoint (ticks every period_ms, burst at a time). */
static pid_t test_server(const char *endpoint, const char *period_ms, const char *burst,
			 const char *max_queue)
{
	char prog[4200];
	char *argv[] = {"lmctl-test-server", (char *)endpoint,  (char *)period_ms,
			(char *)burst,       (char *)max_queue, NULL};

	snprintf(prog, sizeof(prog), "%s/lmctl-test-server", dir_tools);
	return start(prog, argv);
}

static pid_t srvtime_server(const char *endpoint)
{
	char prog[4200];
	char *argv[] = {"srvtime-server", "--endpoint", (char *)endpoint,
			"--period-ms",    "50",         NULL};

	snprintf(prog, sizeof(prog), "%s/srvtime-server", dir_srvtime);
	return start(prog, argv);
}

static void stop(pid_t pid, int sig)
{
	int st;

	kill(pid, sig);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
}

/* Wait for a server with lmctl wait itself. */
static void wait_for(const char *endpoint)
{
	expect(0, "$L wait %s --timeout 30", endpoint);
}

static struct json_object *parse(const char *text)
{
	struct json_object *j = json_tokener_parse(text);

	cr_assert_not_null(j, "not JSON: %s", text);
	return j;
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no '%s' in %s", key,
		  json_object_to_json_string(o));
	return v;
}

/* An unsigned field of the JSON object text holds. */
static uint64_t json_u64(const char *text, const char *key)
{
	struct json_object *o = parse(text);
	uint64_t v = json_object_get_uint64(get(o, key));

	json_object_put(o);
	return v;
}

static void setup(void)
{
	find_programs();
	lm_test_runtime_dir();
	/* Small mq queues (inherited by every program started): the user's
	 * RLIMIT_MSGQUEUE is shared with whatever else runs as this user. */
	setenv("LM_MQ_MAXMSG", "4", 0);
	setenv("LM_MQ_MSGSIZE", "256", 0);
}

static char ep_t[64], ep_s[64];

/* Both servers on transport tp: the test server at tp:t, srvtime at tp:st. */
static void servers(const char *tp, pid_t *t, pid_t *s)
{
	snprintf(ep_t, sizeof(ep_t), "%s:t", tp);
	snprintf(ep_s, sizeof(ep_s), "%s:st", tp);
	*t = test_server(ep_t, "20", "1", "0");
	wait_for(ep_t);
	if (s) {
		*s = srvtime_server(ep_s);
		wait_for(ep_s);
	}
}

ParameterizedTestParameters(lmctl, list)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, list, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t, s;
	struct run *r;
	struct json_object *arr;
	int seen = 0;

	servers(*tp, &t, &s);
	r = expect(0, "$L list --json");
	arr = parse(r->out);
	cr_assert_eq(json_object_array_length(arr), 2, "%s", r->out);
	for (size_t i = 0; i < 2; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *ep = json_object_get_string(get(e, "endpoint"));
		bool is_t = strcmp(ep, ep_t) == 0;

		cr_assert(is_t || strcmp(ep, ep_s) == 0, "%s", ep);
		seen |= is_t ? 1 : 2;
		cr_assert_str_eq(json_object_get_string(get(e, "transport")), *tp);
		cr_assert_str_eq(json_object_get_string(get(e, "name")), is_t ? "t" : "st");
		cr_assert_eq(json_object_get_int(get(e, "pid")), is_t ? t : s);
		cr_assert_eq(json_object_get_int64(get(e, "uid")), (int64_t)getuid());
		cr_assert_str_eq(json_object_get_string(get(e, "state")), "live");
		cr_assert_str_eq(json_object_get_string(get(e, "server")),
				 is_t ? "lmctl-test" : "srvtime");
	}
	cr_assert_eq(seen, 3);
	json_object_put(arr);
	r = expect(0, "$L list");
	cr_assert(strstr(r->out, "ENDPOINT"), "%s", r->out);
	cr_assert(strstr(r->out, "live   lmctl-test"), "%s", r->out);
	r = expect(0, "$L list --names");
	cr_assert(strstr(r->out, ep_t) && strstr(r->out, ep_s), "%s", r->out);

	/* A killed server leaves its files: a stale leftover, no server name. */
	stop(t, SIGKILL);
	r = expect(0, "$L list --json");
	arr = parse(r->out);
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		bool is_t = strcmp(json_object_get_string(get(e, "endpoint")), ep_t) == 0;

		cr_assert_str_eq(json_object_get_string(get(e, "state")), is_t ? "stale" : "live");
		if (is_t)
			cr_assert_null(get(e, "server"));
	}
	json_object_put(arr);
	r = expect(0, "$L list --names");
	cr_assert_null(strstr(r->out, ep_t), "a stale endpoint offered: %s", r->out);
	r = expect(2, "$L list extra");
	r = expect(2, "$L list --bogus");
	stop(s, SIGTERM);
}

ParameterizedTestParameters(lmctl, introspect)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, introspect, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t, s;
	struct run *r;
	struct json_object *o, *m, *sig;

	servers(*tp, &t, &s);
	r = expect(0, "$L introspect %s", ep_s);
	cr_assert_str_eq(r->out, "server srvtime\n"
				 "method getdate () -> {sec: int, nsec: uint, iso: text}\n"
				 "signal date drop-oldest {sec: int, nsec: uint, iso: text}\n");
	r = expect(0, "$L introspect --json %s", ep_t);
	o = parse(r->out);
	cr_assert_str_eq(json_object_get_string(get(o, "server")), "lmctl-test");
	cr_assert_eq(json_object_get_int(get(o, "introspect_version")), 2);
	m = json_object_array_get_idx(get(o, "methods"), 0);
	cr_assert_str_eq(json_object_get_string(get(m, "name")), "add");
	cr_assert_str_eq(json_object_get_string(get(m, "args")), "{a: int, b: int}");
	cr_assert_str_eq(json_object_get_string(get(m, "result")), "{sum: int}");
	m = json_object_array_get_idx(get(o, "methods"), 1);
	cr_assert_str_eq(json_object_get_string(get(m, "name")), "echo");
	cr_assert_null(get(m, "args"));
	sig = json_object_array_get_idx(get(o, "signals"), 1);
	cr_assert_str_eq(json_object_get_string(get(sig, "name")), "raw");
	cr_assert_str_eq(json_object_get_string(get(sig, "overflow")), "disconnect");
	cr_assert_null(get(sig, "type"));
	json_object_put(o);
	r = expect(0, "$L introspect --methods %s", ep_t);
	cr_assert_str_eq(r->out, "add\necho\nblob\nfail\nslow\nnothing\ncount\n");
	r = expect(0, "$L introspect --signals %s", ep_t);
	cr_assert_str_eq(r->out, "tick\nraw\n");
	expect(2, "$L introspect");
	stop(t, SIGTERM);
	stop(s, SIGTERM);
	r = expect(4, "$L introspect %s", ep_t);
	cr_assert(strstr(r->err, "no server at"), "%s", r->err);
}

ParameterizedTestParameters(lmctl, call_typed)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, call_typed, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t, s;
	struct run *r;
	struct json_object *o;
	long long now = (long long)time(NULL), sec;

	servers(*tp, &t, &s);
	/* srvtime: the date as JSON. */
	r = expect(0, "$L call %s getdate", ep_s);
	o = parse(r->out);
	sec = json_object_get_int64(get(o, "sec"));
	cr_assert(sec >= now - 1 && sec < now + 86400, "%s", r->out);
	cr_assert_lt(json_object_get_int64(get(o, "nsec")), 1000000000);
	cr_assert_eq(strlen(json_object_get_string(get(o, "iso"))), 30);
	cr_assert_eq(json_object_object_length(o), 3);
	json_object_put(o);
	cr_assert_str_eq(r->err, "");

	r = expect(0, "$L call %s add '{\"a\": 1, \"b\": -5}'", ep_t);
	cr_assert_str_eq(r->out, "{\"sum\":-4}\n");
	r = expect(0, "$L call --json %s add '{\"a\": 40, \"b\": 2}'", ep_t);
	cr_assert_str_eq(r->out, "{\"value\":{\"sum\":42}}\n");
	r = expect(0, "echo '{\"a\": 2, \"b\": 3}' | $L call %s add --file -", ep_t);
	cr_assert_str_eq(r->out, "{\"sum\":5}\n");
	r = expect(0, "$L call %s count '{\"tags\": [\"x\", \"y\", \"z\"]}'", ep_t);
	cr_assert_str_eq(r->out, "3\n");
	r = expect(0, "$L call %s count '{\"tags\": [], \"note\": null}'", ep_t);
	cr_assert_str_eq(r->out, "0\n");
	/* Raw CBOR for a typed method: {"a": 1, "b": 2}. */
	r = expect(0, "$L call %s add --hex a2616101616202", ep_t);
	cr_assert_str_eq(r->out, "{\"sum\":3}\n");
	r = expect(0, "$L call %s nothing", ep_t);
	cr_assert_str_eq(r->out, "");

	/* Checked against the type before it is sent: exit 2, and why. */
	r = expect(2, "$L call %s add '{\"a\": 1}'", ep_t);
	cr_assert(strstr(r->err, "does not match {a: int, b: int}: b: missing"), "%s", r->err);
	r = expect(2, "$L call %s add '{\"a\": 1, \"b\": \"x\"}'", ep_t);
	cr_assert(strstr(r->err, "b: expected an integer, got a string"), "%s", r->err);
	r = expect(2, "$L call %s add '{\"a\": 1, \"b\": 2, \"c\": 3}'", ep_t);
	cr_assert(strstr(r->err, "unknown field 'c'"), "%s", r->err);
	r = expect(2, "$L call %s add '{\"a\": 1,'", ep_t);
	cr_assert(strstr(r->err, "not JSON"), "%s", r->err);
	r = expect(2, "$L call %s add", ep_t);
	cr_assert(strstr(r->err, "add takes {a: int, b: int}: give it as JSON"), "%s", r->err);
	r = expect(2, "$L call %s count '{\"tags\": [1]}'", ep_t);
	cr_assert(strstr(r->err, "tags[0]: expected a string"), "%s", r->err);
	r = expect(2, "$L call %s nothing 42", ep_t);
	cr_assert(strstr(r->err, "takes no arguments"), "%s", r->err);
	r = expect(2, "$L call %s add --hex 01", ep_t);
	cr_assert(strstr(r->err, "expected map, got uint"), "%s", r->err);
	r = expect(2, "$L call %s getdate '{}'", ep_s);
	stop(t, SIGTERM);
	stop(s, SIGTERM);
}

ParameterizedTestParameters(lmctl, call_untyped)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, call_untyped, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t;
	struct run *r;
	char file[4200];
	FILE *f;

	servers(*tp, &t, NULL);
	r = expect(0, "$L call %s echo 'hello world'", ep_t);
	cr_assert_str_eq(r->out, "hello world\n");
	r = expect(0, "$L call --json %s echo 'hello'", ep_t);
	cr_assert_str_eq(r->out, "{\"text\":\"hello\"}\n");
	r = expect(0, "$L call %s echo --hex '68 69'", ep_t);
	cr_assert_str_eq(r->out, "hi\n");
	snprintf(file, sizeof(file), "%s/arg.bin", getenv("LM_RUNTIME_DIR"));
	f = fopen(file, "w");
	fwrite("\x01\x02\x00\x7f", 1, 4, f);
	fclose(f);
	r = expect(0, "$L call %s echo --file %s", ep_t, file);
	cr_assert_str_eq(r->out,
			 "00000000  01 02 00 7f                                      |....|\n");
	r = expect(0, "$L call %s blob", ep_t);
	cr_assert_str_eq(r->out,
			 "00000000  00 01 02 ff 68 69                                |....hi|\n");
	r = expect(0, "$L call --json %s blob", ep_t);
	cr_assert_str_eq(r->out, "{\"hex\":\"000102ff6869\"}\n");
	r = expect(0, "$L call %s echo", ep_t);
	cr_assert_str_eq(r->out, "");
	/* Built-ins are there too. */
	r = expect(0, "$L call %s lm.Introspect", ep_t);
	cr_assert(strstr(r->out, "server lmctl-test\nmethod add\n"), "%s", r->out);
	stop(t, SIGTERM);
}

ParameterizedTestParameters(lmctl, call_errors)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, call_errors, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t;
	struct run *r;

	servers(*tp, &t, NULL);
	/* 3: the server answered ERROR, its name and message on stderr. */
	r = expect(3, "$L call %s fail", ep_t);
	cr_assert_str_eq(r->err, "lmctl: fail: test.Failed: failed as asked\n");
	cr_assert_str_eq(r->out, "");
	r = expect(3, "$L call %s nosuch", ep_t);
	cr_assert_str_eq(r->err, "lmctl: nosuch: lm.UnknownMethod: nosuch\n");
	/* 5: no reply in time. */
	r = expect(5, "$L call %s slow --timeout 0.2", ep_t);
	cr_assert(strstr(r->err, "no reply from"), "%s", r->err);
	/* 2: usage. */
	r = expect(2, "$L call %s", ep_t);
	cr_assert(strstr(r->err, "call wants ENDPOINT METHOD [ARG]"), "%s", r->err);
	expect(2, "$L call %s echo a b", ep_t);
	expect(2, "$L call %s echo --timeout -1 x", ep_t);
	expect(2, "$L call %s echo --timeout soon x", ep_t);
	r = expect(2, "$L call %s echo --hex 0g", ep_t);
	cr_assert(strstr(r->err, "--hex wants pairs of hex digits"), "%s", r->err);
	expect(2, "$L call %s echo --hex 123", ep_t);
	r = expect(2, "$L call %s echo x --hex 00", ep_t);
	cr_assert(strstr(r->err, "one way"), "%s", r->err);
	r = expect(2, "$L call %s echo --file /nonexistent/x", ep_t);
	cr_assert(strstr(r->err, "cannot read /nonexistent/x"), "%s", r->err);
	r = expect(2, "$L call %s 'bad name!'", ep_t);
	cr_assert(strstr(r->err, "not a valid member name"), "%s", r->err);
	expect(2, "$L call %s echo --count 3 x", ep_t);
	expect(2, "$L");
	expect(2, "$L frobnicate");
	r = expect(2, "$L call 'unix:bad/name' echo");
	cr_assert(strstr(r->err, "cannot use endpoint"), "%s", r->err);
	expect(0, "$L --help");
	expect(0, "$L --version");
	stop(t, SIGTERM);
	/* 4: nobody serves it. */
	r = expect(4, "$L call %s echo x", ep_t);
	cr_assert(strstr(r->err, "no server at"), "%s", r->err);
}

ParameterizedTestParameters(lmctl, monitor)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, monitor, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t, s;
	struct run *r;
	char *save = NULL, *line;
	int ticks = 0, raws = 0;
	uint64_t last = 0;

	servers(*tp, &t, &s);
	/* srvtime: dates, with a timestamp. */
	r = expect(0, "$L monitor %s --count 2", ep_s);
	for (line = strtok_r(r->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		cr_assert(strstr(line, "Z date {\"sec\":"), "%s", line);
		ticks++;
	}
	cr_assert_eq(ticks, 2);

	/* Every signal, one JSON object per line. */
	ticks = 0;
	r = expect(0, "$L monitor --json %s --count 6", ep_t);
	for (line = strtok_r(r->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = parse(line);
		const char *sig = json_object_get_string(get(o, "signal"));

		cr_assert_eq(strlen(json_object_get_string(get(o, "time"))), 27, "%s", line);
		if (strcmp(sig, "tick") == 0) {
			uint64_t n = json_object_get_uint64(get(get(o, "value"), "n"));
			cr_assert_gt(n, last);
			last = n;
			ticks++;
		} else {
			cr_assert_str_eq(sig, "raw");
			cr_assert(!strncmp(json_object_get_string(get(o, "text")), "raw ", 4));
			raws++;
		}
		json_object_put(o);
	}
	cr_assert_eq(ticks + raws, 6);
	cr_assert(ticks >= 2 && raws >= 2);

	/* The ones named only. */
	r = expect(0, "$L monitor %s raw --count 3", ep_t);
	cr_assert_null(strstr(r->out, "tick"), "%s", r->out);
	cr_assert_eq(strlen(r->out) > 0, true);
	r = expect(2, "$L monitor %s nosuch", ep_t);
	cr_assert(strstr(r->err, "has no signal nosuch"), "%s", r->err);
	expect(2, "$L monitor");
	expect(2, "$L monitor %s --count 0", ep_t);
	r = expect(4, "$L monitor %s:absent", *tp);
	stop(t, SIGTERM);
	stop(s, SIGTERM);
}

/* monitor goes on across a server restart, and says so on stderr. */
Test(lmctl, monitor_survives_restart, .init = setup)
{
	pid_t t, mon;
	char out[4200], prog[4200];
	char *argv[] = {"lmctl", "monitor", "--json", "unix:t", "tick", "--count", "30", NULL};
	int fd, st;
	FILE *f;
	char line[512];
	uint64_t prev = 0, n;
	int lines = 0;
	bool lost = false, back = false, renewed = false;
	struct run *r;

	t = test_server("unix:t", "20", "1", "0");
	wait_for("unix:t");
	snprintf(out, sizeof(out), "%s/monitor.out", getenv("LM_RUNTIME_DIR"));
	snprintf(prog, sizeof(prog), "%s/lmctl", dir_tools);
	mon = lm_test_fork();
	if (mon == 0) {
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
		dup2(fd, 1);
		fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(fd, 2);
		execv(prog, argv);
		_exit(127);
	}
	/* Wait until it got some, then restart the server (its count starts again). */
	for (int i = 0; i < 3000; i++) {
		r = run("grep -c tick %s", out);
		if (atoi(r->out) >= 3)
			break;
		usleep(10000);
	}
	stop(t, SIGTERM);
	t = test_server("unix:t", "20", "1", "0");
	cr_assert_eq(waitpid(mon, &st, 0), mon);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "monitor ended with %d", st);
	f = fopen(out, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct json_object *o;

		if (line[0] != '{') {
			lost |= strstr(line, "lost unix:t") != NULL;
			back |= strstr(line, "unix:t is back") != NULL;
			continue;
		}
		o = parse(line);
		n = json_object_get_uint64(get(get(o, "value"), "n"));
		renewed |= n <= prev; /* the new server counts from 1 again */
		prev = n;
		lines++;
		json_object_put(o);
	}
	fclose(f);
	cr_assert_eq(lines, 30);
	cr_assert(lost && back, "stderr says neither that it lost the server nor that it is back");
	cr_assert(renewed, "no tick of the new server");
	stop(t, SIGTERM);
}

/* DROPPED notices reach the output: a server whose small queue overflows. */
Test(lmctl, monitor_dropped, .init = setup)
{
	pid_t t;
	struct run *r;

	/* Bursts of 20000 ticks, 64 KiB of queue per client: many are dropped. */
	t = test_server("unix:t", "200", "20000", "65536");
	wait_for("unix:t");
	r = expect(0, "timeout 60 $L monitor --json unix:t tick --count 50000 | grep -m1 dropped");
	cr_assert(strstr(r->out, "\"signal\":\"tick\",\"dropped\":"), "%s", r->out);
	r = expect(0, "timeout 60 $L monitor unix:t tick --count 50000 | grep -m1 DROPPED");
	cr_assert(strstr(r->out, " tick DROPPED "), "%s", r->out);
	r = expect(0, "$L status --json unix:t");
	cr_assert_gt(json_u64(r->out, "signals_dropped"), 0);
	stop(t, SIGTERM);
}

/* A queue that overflows while a round's signals are gathered (4 KiB, less
 * than one round's output): the subscriber still gets its DROPPED notice
 * and the newest signal once the round's output went out, and goes on (it
 * waited forever for a writability event that never came). */
Test(lmctl, monitor_dropped_small_queue, .init = setup)
{
	pid_t t;
	struct run *r;

	t = test_server("unix:t", "100", "2000", "4096");
	wait_for("unix:t");
	r = expect(0, "timeout 60 $L monitor unix:t tick --count 3000 | grep -c DROPPED");
	cr_assert_geq(atoi(r->out), 2, "%s", r->out);
	stop(t, SIGTERM);
}

ParameterizedTestParameters(lmctl, wait)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, wait, .init = setup)
{
	const char *const *tp = &transports[*ix];
	char ep[64], cmd[4400];
	pid_t w, t;
	int st;
	struct run *r;

	snprintf(ep, sizeof(ep), "%s:late", *tp);
	r = expect(5, "$L wait %s --timeout 0.2", ep);
	cr_assert(strstr(r->err, "no server answered at"), "%s", r->err);
	expect(2, "$L wait");
	expect(2, "$L wait %s --json", ep);
	/* Started before the server: returns once it answers. */
	w = lm_test_fork();
	if (w == 0) {
		snprintf(cmd, sizeof(cmd), "%s/lmctl", dir_tools);
		execl(cmd, "lmctl", "wait", ep, "--timeout", "60", NULL);
		_exit(127);
	}
	usleep(100000);
	t = test_server(ep, "1000", "1", "0");
	cr_assert_eq(waitpid(w, &st, 0), w);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "wait ended with %d", st);
	expect(0, "$L call %s echo up", ep);
	stop(t, SIGTERM);
}

ParameterizedTestParameters(lmctl, status)
{
	return cr_make_param_array(int, transport_ix, 3);
}

ParameterizedTest(int *ix, lmctl, status, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t, s;
	struct run *r;
	struct json_object *o, *sig;

	servers(*tp, &t, &s);
	/* One tick seen: the server has emitted. */
	expect(0, "$L monitor %s tick --count 1", ep_t);
	expect(3, "$L call %s fail", ep_t);
	expect(3, "$L call %s nosuch", ep_t);
	r = expect(0, "$L status --json %s", ep_t);
	o = parse(r->out);
	cr_assert_str_eq(json_object_get_string(get(o, "name")), "lmctl-test");
	cr_assert_gt(json_object_get_uint64(get(o, "uptime_ns")), 0);
	cr_assert_eq(json_object_get_uint64(get(o, "clients")), 1);
	cr_assert_geq(json_object_get_uint64(get(o, "calls")), 2);
	cr_assert_eq(json_object_get_uint64(get(o, "calls_refused")), 1);
	cr_assert_gt(json_object_get_uint64(get(o, "signals_emitted")), 0);
	cr_assert_eq(json_object_get_uint64(get(o, "overflow_disconnects")), 0);
	sig = json_object_array_get_idx(get(o, "signals"), 0);
	cr_assert_str_eq(json_object_get_string(get(sig, "name")), "tick");
	cr_assert_eq(json_object_get_uint64(get(sig, "subscribers")), 0);
	json_object_put(o);
	/* A subscriber shows in the counts while it is there. */
	r = expect(0,
		   "$L monitor %s tick --count 100 > /dev/null & sleep 0.5; "
		   "$L status %s; wait",
		   ep_t, ep_t);
	cr_assert(strstr(r->out, "server: lmctl-test\nuptime: "), "%s", r->out);
	cr_assert(strstr(r->out, "signal tick: 1 subscriber(s)\n"), "%s", r->out);
	cr_assert(strstr(r->out, "clients: 2\n"), "%s", r->out);
	r = expect(0, "$L status %s", ep_s);
	cr_assert(strstr(r->out, "signal date: 0 subscriber(s)"), "%s", r->out);
	expect(2, "$L status");
	stop(t, SIGTERM);
	stop(s, SIGTERM);
	expect(4, "$L status %s", ep_t);
}

ParameterizedTestParameters(lmctl, call_no_reply)
{
	return cr_make_param_array(int, transport_ix, 3);
}

/* --no-reply: the handler runs, nothing comes back, not even an error. */
ParameterizedTest(int *ix, lmctl, call_no_reply, .init = setup)
{
	const char *const *tp = &transports[*ix];
	pid_t t;
	struct run *r;
	uint64_t before, after;

	servers(*tp, &t, NULL);
	r = expect(0, "$L status --json %s", ep_t);
	before = json_u64(r->out, "calls");
	r = expect(0, "$L call --no-reply %s echo hello", ep_t);
	cr_assert_str_eq(r->out, "");
	r = expect(0, "$L call --no-reply %s fail", ep_t);
	cr_assert_str_eq(r->err, "");
	expect(0, "$L call --no-reply %s slow --timeout 0.1", ep_t);
	expect(2, "$L call --no-reply %s add '{}'", ep_t);
	/* Each call's lm.Introspect, the three calls, and this lm.Stats. */
	r = expect(0, "$L status --json %s", ep_t);
	after = json_u64(r->out, "calls");
	cr_assert_eq(after, before + 8, "%llu then %llu", (unsigned long long)before,
		     (unsigned long long)after);
	stop(t, SIGTERM);
	expect(4, "$L call --no-reply %s echo x", ep_t);
}

Test(lmctl, completion, .init = setup)
{
	pid_t s;
	struct run *r;
	const char *fn = "t() { COMP_LINE=\"$*\"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _lmctl; "
			 "echo \"[${COMPREPLY[*]}]\"; }";

	s = srvtime_server("unix:srvtime");
	wait_for("unix:srvtime");
	r = expect(0,
		   "bash -c 'source %s/tools/lmctl/lmctl.bash-completion; %s; t \"lmctl \"; "
		   "t lmctl ca; t \"lmctl call \"; t \"lmctl call unix:srvtime \"; "
		   "t \"lmctl monitor --count 3 unix:srvtime \"; t lmctl call --j; "
		   "t lmctl status unix:s; t lmctl wait u; t \"lmctl list \"'",
		   src_dir, fn);
	cr_assert_str_eq(r->out, "[list introspect call monitor wait status --help --version]\n"
				 "[call]\n"
				 "[unix:srvtime]\n"
				 "[getdate]\n"
				 "[date]\n"
				 "[--json]\n"
				 "[srvtime]\n"
				 "[unix:srvtime]\n"
				 "[]\n");
	stop(s, SIGTERM);
}
