/* SPDX-License-Identifier: MIT */
/* Tests of lm-bench's own logic: the histogram, argument errors, short runs that reap. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "lm_test.h"

/* The histogram is a plain C file of the tool: test it in-process. */
#include "../bench/hist.c"

/* ---- histogram ---- */

static double rel_err(uint64_t got, double want)
{
	return ((double)got - want) / want;
}

Test(bench_hist, uniform_percentiles_within_precision)
{
	static struct hist h;
	hist_init(&h);
	for (uint64_t v = 1; v <= 1000000; v++)
		hist_record(&h, v);
	cr_assert_eq(h.count, 1000000);
	cr_assert_eq(h.min, 1);
	cr_assert_eq(h.max, 1000000);
	const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99};
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		double want = ps[i] / 100.0 * 1e6;
		uint64_t got = hist_percentile(&h, ps[i]);
		cr_assert(rel_err(got, want) <= hist_precision() &&
			      rel_err(got, want) >= -hist_precision(),
			  "p%g: got %llu, want %.0f (precision %g)", ps[i], (unsigned long long)got,
			  want, hist_precision());
	}
	cr_assert_eq(hist_percentile(&h, 100), 1000000);
	cr_assert_eq(hist_percentile(&h, 0), 1);
}

Test(bench_hist, small_values_exact_and_buckets_contiguous)
{
	static struct hist h;
	hist_init(&h);
	cr_assert_eq(hist_percentile(&h, 50), 0, "empty histogram");
	for (uint64_t v = 0; v < HIST_LINEAR; v++)
		cr_assert_eq(hist_bucket_low(hist_index(v)), v);
	/* Every bucket starts where the previous one ends, up to the limit. */
	for (unsigned i = 1; i < HIST_BUCKETS; i++)
		cr_assert_eq(hist_bucket_low(i), hist_bucket_low(i - 1) + hist_bucket_width(i - 1),
			     "bucket %u", i);
	for (uint64_t v = 1; v < HIST_LIMIT; v = v * 3 + 1) {
		unsigned idx = hist_index(v);
		cr_assert(v >= hist_bucket_low(idx) &&
			  v < hist_bucket_low(idx) + hist_bucket_width(idx));
		if (v >= HIST_LINEAR)
			cr_assert((double)hist_bucket_width(idx) / (double)v <=
				  2 * hist_precision() + 1e-12);
	}
	cr_assert_eq(hist_index(UINT64_MAX), HIST_BUCKETS - 1, "huge values are clamped");
	for (int i = 0; i < 3; i++)
		hist_record(&h, 7);
	hist_record(&h, 100);
	cr_assert_eq(hist_percentile(&h, 50), 7);
	cr_assert_eq(hist_percentile(&h, 75), 7);
	cr_assert_eq(hist_percentile(&h, 76), 100);
}

Test(bench_hist, merge_adds_counts_and_extremes)
{
	static struct hist a, b;
	hist_init(&a);
	hist_init(&b);
	for (uint64_t v = 1000; v < 2000; v++)
		hist_record(&a, v);
	for (uint64_t v = 5000; v < 6000; v++)
		hist_record(&b, v);
	hist_merge(&a, &b);
	cr_assert_eq(a.count, 2000);
	cr_assert_eq(a.min, 1000);
	cr_assert_eq(a.max, 5999);
	/* Rank 1500 of 2000 is 5499. */
	double e = rel_err(hist_percentile(&a, 75), 5499);
	cr_assert(e <= hist_precision() && e >= -hist_precision(), "p75 of the merge: %g", e);
}

/* ---- the program ---- */

static char bench_path[PATH_MAX];

static const char *lm_bench(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		cr_skip_test("no /proc/self/exe");
	self[n] = '\0';
	snprintf(bench_path, sizeof(bench_path), "%s/../bench/lm-bench", dirname(self));
	if (access(bench_path, X_OK) != 0)
		cr_skip_test("lm-bench is not built beside the tests (%s)", bench_path);
	return bench_path;
}

struct run {
	int status; /* exit code, or 128 + signal */
	char out[65536];
	char err[4096];
	int leftover; /* processes left behind by lm-bench */
};

static void read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	/* Drain the rest so the writer never blocks. */
	char sink[4096];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
}

/* Run lm-bench with args; with interrupt_ms > 0, send SIGINT after that long.
 * This process is a subreaper, so any child lm-bench leaves behind becomes
 * ours and is counted. */
static void run_bench(struct run *r, const char *const *args, int interrupt_ms)
{
	const char *argv[32] = {lm_bench()};
	int n = 1;
	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	int out[2], err[2];
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(err), 0);
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	pid_t pid = lm_test_fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (interrupt_ms > 0) {
		struct timespec ts = {interrupt_ms / 1000, (interrupt_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGINT);
	}
	/* stderr is small; read stdout until lm-bench closes it. */
	read_all(out[0], r->out, sizeof(r->out));
	read_all(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	/* Give orphans, if any, a moment to be reparented to us and die. */
	struct timespec ts = {0, 100000000};
	nanosleep(&ts, NULL);
	r->leftover = 0;
	while (waitpid(-1, &st, WNOHANG) > 0)
		r->leftover++;
}

static void expect_usage_error(const char *const *args, const char *needle)
{
	static struct run r;
	run_bench(&r, args, 0);
	cr_assert_eq(r.status, 2, "%s: exit %d, stderr: %s", args[0], r.status, r.err);
	cr_assert(strstr(r.err, needle), "stderr lacks '%s': %s", needle, r.err);
	cr_assert_eq(r.out[0], '\0', "nothing on stdout: %s", r.out);
}

Test(bench_args, errors_exit_2_with_a_message, .timeout = 30)
{
	expect_usage_error((const char *[]){"--transport", "tcp", NULL}, "--transport");
	expect_usage_error((const char *[]){"--transport", "unix,", NULL}, "--transport");
	expect_usage_error((const char *[]){"--subscribers", "0", NULL}, "--subscribers");
	expect_usage_error((const char *[]){"--subscribers", "1001", NULL}, "--subscribers");
	expect_usage_error((const char *[]){"--clients", "-1", NULL}, "--clients");
	expect_usage_error((const char *[]){"--backend", "kqueue", NULL}, "--backend");
	expect_usage_error((const char *[]){"--mode", "pingpong", NULL}, "--mode");
	expect_usage_error((const char *[]){"--cpu", "three", NULL}, "--cpu");
	expect_usage_error((const char *[]){"--size", "8", NULL}, "--size");
	expect_usage_error((const char *[]){"--count", "10", "--duration", "1", NULL}, "not both");
	expect_usage_error((const char *[]){"--frobnicate", NULL}, "--frobnicate");
	expect_usage_error((const char *[]){"--idle-clients", "100001", NULL}, "--idle-clients");
	expect_usage_error((const char *[]){"--emit-from", "timer", NULL}, "--emit-from");
	expect_usage_error((const char *[]){"extra", NULL}, "extra");
}

Test(bench_args, help_explains_every_field, .timeout = 30)
{
	static struct run r;
	run_bench(&r, (const char *[]){"--help", NULL}, 0);
	cr_assert_eq(r.status, 0);
	const char *words[] = {
	    "--mode",   "--transport", "--backend",     "--size",    "--count",   "--duration",
	    "--warmup", "--clients",   "--subscribers", "--cpu",     "--json",    "--plot",
	    "p50",      "msgs/s",      "cpu_us/msg",    "wake/s",    "x50",       "x99",
	    "floor",    "loop",        "floor-batch",   "peers",     "ratio_p50", "ratio_p99",
	    "ratio_to", "p50_us",      "msgs_per_s",    "wake_per_s"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		cr_assert(strstr(r.out, words[i]), "--help lacks %s", words[i]);
}

/* Every line of --json output: one object, status ok or n/a, never failed. */
/* needle is in the line that starts at l and ends at end (a NULL from
 * strstr() compares below any pointer: never compare it directly). */
static bool in_line(const char *l, const char *end, const char *needle)
{
	const char *p = strstr(l, needle);

	return p && end && p < end;
}

static int check_json(const char *out, const char *mode, int *ok_floor)
{
	int lines = 0;
	char *copy = strdup(out), *save = NULL;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		lines++;
		cr_assert(l[0] == '{' && l[strlen(l) - 1] == '}', "not a JSON object: %s", l);
		cr_assert(strstr(l, mode), "wrong mode: %s", l);
		cr_assert(!strstr(l, "\"status\":\"failed\""), "a case failed: %s", l);
		/* The floor runs, except where a kernel limit shared with the rest of
		 * the machine says no (mq queues_max): then it says why. */
		if (strstr(l, "\"impl\":\"floor\"") && !strstr(l, "\"status\":\"n/a\"")) {
			cr_assert(strstr(l, "\"status\":\"ok\""), "the floor must run: %s", l);
			cr_assert(strstr(l, "\"p50_us\":") && strstr(l, "\"p99_us\":"), "%s", l);
			(*ok_floor)++;
		}
		if (strstr(l, "\"status\":\"n/a\""))
			cr_assert(strstr(l, "\"why\":\""), "n/a without a reason: %s", l);
		if ((strstr(l, "\"impl\":\"lm_conn\"") || strstr(l, "\"impl\":\"loop\"") ||
		     strstr(l, "\"impl\":\"lm_sync\"")) &&
		    strstr(l, "\"status\":\"ok\""))
			cr_assert(strstr(l, "\"ratio_p50\":"), "no ratio to the floor: %s", l);
	}
	free(copy);
	return lines;
}

Test(bench_run, call_every_transport_json_and_reaped, .timeout = 120)
{
	static struct run r;
	int floors = 0;
	run_bench(&r,
		  (const char *[]){"--mode", "call", "--transport", "unix,fifo,mq", "--backend",
				   "epoll", "--count", "200", "--warmup", "10", "--json", NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	/* Per transport: floor, loop, lm_conn, lm_service, lm_sync (epoll each). */
	cr_assert_eq(check_json(r.out, "\"mode\":\"call\"", &floors), 15, "%s", r.out);
	/* The sync calls ran on unix and fifo (mq may be n/a for a kernel limit). */
	const char *s1 = strstr(r.out, "\"impl\":\"lm_sync\",\"transport\":\"unix\"");
	const char *s2 = strstr(r.out, "\"impl\":\"lm_sync\",\"transport\":\"fifo\"");
	cr_assert(s1 && s2, "%s", r.out);
	cr_assert(in_line(s1, strchr(s1, '\n'), "\"status\":\"ok\""), "%s", r.out);
	cr_assert(in_line(s2, strchr(s2, '\n'), "\"status\":\"ok\""), "%s", r.out);
	cr_assert_geq(floors, 2, "the unix and fifo floors always run");
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}

Test(bench_run, signal_every_transport_json_and_reaped, .timeout = 120)
{
	static struct run r;
	int floors = 0;
	run_bench(&r,
		  (const char *[]){"--mode", "signal", "--transport", "unix,fifo,mq", "--backend",
				   "epoll", "--subscribers", "3", "--count", "100", "--warmup",
				   "10", "--json", NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	/* floor, floor-batch (not mq), loop, lm_conn, lm_service per transport */
	cr_assert_eq(check_json(r.out, "\"mode\":\"signal\"", &floors), 14, "%s", r.out);
	/* Three subscribers: libmessage writes them one at a time, so every ratio
	 * is to the floor. */
	cr_assert(!strstr(r.out, "\"ratio_to\":\"floor-batch\""), "%s", r.out);
	cr_assert_geq(floors, 2, "the unix and fifo floors always run");
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}

/* The line of out with impl and transport tp (JSON), or NULL; *end its end. */
static const char *json_case(const char *out, const char *impl, const char *tp, const char **end)
{
	char key[96];
	const char *l;

	snprintf(key, sizeof(key), "\"impl\":\"%s\",\"transport\":\"%s\"", impl, tp);
	l = strstr(out, key);
	*end = l ? strchr(l, '\n') : NULL;
	return l;
}

/* Four subscribers or more on unix and fifo: libmessage writes a signal to
 * all of them in io_uring submissions, and floor-batch makes the same
 * writes with no library; the libmessage cases' ratios are to it (the loop's
 * and the floor's own writes stay one at a time: theirs are to floor). With
 * LM_FANOUT_URING=0 libmessage writes one at a time: ratios to floor. */
Test(bench_run, signal_ratio_to_the_batched_floor, .timeout = 120)
{
	static struct run r, o;
	const char *l, *end;
	int floors = 0;

	run_bench(&r,
		  (const char *[]){"--mode", "signal", "--transport", "unix,fifo", "--backend",
				   "epoll", "--subscribers", "4", "--count", "100", "--warmup",
				   "10", "--json", NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	cr_assert_eq(check_json(r.out, "\"mode\":\"signal\"", &floors), 10, "%s", r.out);
	for (int t = 0; t < 2; t++) {
		const char *tp = t ? "fifo" : "unix";

		l = json_case(r.out, "floor-batch", tp, &end);
		cr_assert(l, "no floor-batch on %s: %s", tp, r.out);
		cr_assert(in_line(l, end, "\"backend\":null"), "%s", l);
		if (!in_line(l, end, "\"status\":\"ok\""))
			cr_skip_test("io_uring refused here: %.*s", (int)(end - l), l);
		cr_assert(in_line(l, end, "\"p50_us\":") && !in_line(l, end, "\"ratio_p50\""),
			  "%.*s", (int)(end - l), l);
		l = json_case(r.out, "loop", tp, &end);
		cr_assert(l && in_line(l, end, "\"ratio_to\":\"floor\""), "%s", r.out);
		for (int k = 0; k < 2; k++) {
			l = json_case(r.out, k ? "lm_service" : "lm_conn", tp, &end);
			cr_assert(l, "%s", r.out);
			if (in_line(l, end, "\"status\":\"ok\""))
				cr_assert(in_line(l, end, "\"ratio_to\":\"floor-batch\""), "%.*s",
					  (int)(end - l), l);
		}
	}
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);

	setenv("LM_FANOUT_URING", "0", 1);
	run_bench(&o,
		  (const char *[]){"--mode", "signal", "--transport", "unix", "--backend", "epoll",
				   "--subscribers", "4", "--count", "100", "--warmup", "10",
				   "--json", NULL},
		  0);
	unsetenv("LM_FANOUT_URING");
	cr_assert_eq(o.status, 0, "exit %d: %s %s", o.status, o.out, o.err);
	cr_assert(!strstr(o.out, "\"ratio_to\":\"floor-batch\""), "%s", o.out);
	cr_assert_eq(o.leftover, 0, "lm-bench left %d processes", o.leftover);
}

/* The readiness loop runs on each backend asked for (io_uring: or says why
 * not), beside the floor, with its ratio; never in a floor-only run, and
 * never in the modes it is not made for. */
Test(bench_run, loop_case_per_backend, .timeout = 120)
{
	static struct run r, f, t;
	int floors = 0;
	run_bench(&r,
		  (const char *[]){"--mode", "call", "--transport", "unix", "--backend",
				   "epoll,uring", "--count", "200", "--warmup", "10", "--json",
				   NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	/* floor, loop x2, lm_conn x2, lm_service x2, lm_sync x2 */
	cr_assert_eq(check_json(r.out, "\"mode\":\"call\"", &floors), 9, "%s", r.out);
	const char *epoll =
	    strstr(r.out, "\"impl\":\"loop\",\"transport\":\"unix\",\"backend\":\"epoll\"");
	const char *uring =
	    strstr(r.out, "\"impl\":\"loop\",\"transport\":\"unix\",\"backend\":\"uring\"");
	cr_assert(epoll && uring, "%s", r.out);
	cr_assert(in_line(epoll, strchr(epoll, '\n'), "\"status\":\"ok\""), "%s", r.out);
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);

	run_bench(&f,
		  (const char *[]){"--mode", "call", "--transport", "fifo", "--floor-only",
				   "--count", "200", "--warmup", "10", "--json", NULL},
		  0);
	cr_assert_eq(f.status, 0, "exit %d: %s %s", f.status, f.out, f.err);
	cr_assert(!strstr(f.out, "\"impl\":\"loop\""), "%s", f.out);

	run_bench(&t,
		  (const char *[]){"--mode", "throughput", "--transport", "unix", "--backend",
				   "epoll", "--count", "200", "--warmup", "10", "--json", NULL},
		  0);
	cr_assert_eq(t.status, 0, "exit %d: %s %s", t.status, t.out, t.err);
	cr_assert(!strstr(t.out, "\"impl\":\"loop\""), "%s", t.out);
}

/* The SVG's series: n polylines, no two with the same colour and dash
 * pattern; every legend label ends inside the picture, at a generous 8 px
 * per character of 12 px sans-serif. */
static void expect_readable_plot(const char *svg, int n)
{
	char styles[64][96];
	double width = 0;
	int lines = 0;

	cr_assert_eq(sscanf(strstr(svg, "width=\""), "width=\"%lf\"", &width), 1);
	for (const char *p = strstr(svg, "<polyline"); p; p = strstr(p + 1, "<polyline")) {
		const char *pts = strstr(p, " points=");

		cr_assert(pts && lines < 64);
		snprintf(styles[lines], sizeof(styles[0]), "%.*s", (int)(pts - p), p);
		for (int k = 0; k < lines; k++)
			cr_assert(strcmp(styles[k], styles[lines]), "two series drawn as %s",
				  styles[k]);
		lines++;
	}
	cr_assert_eq(lines, n, "%d series drawn", lines);
	for (const char *p = strstr(svg, "<text x=\""); p; p = strstr(p + 1, "<text x=\"")) {
		double x;
		const char *gt = strchr(p, '>'), *lt = gt ? strchr(gt, '<') : NULL;

		cr_assert(lt && sscanf(p, "<text x=\"%lf\"", &x) == 1);
		if (strstr(p, "text-anchor") && strstr(p, "text-anchor") < gt)
			continue; /* centred or right-aligned axis labels */
		cr_assert_leq(x + 8.0 * (double)(lt - gt - 1), width, "cut off: %.*s",
			      (int)(lt - gt - 1), gt + 1);
	}
}

Test(bench_run, table_shape_and_plot, .timeout = 120)
{
	static struct run r;
	char svg[] = "/tmp/test-bench-XXXXXX.svg";
	int fd = mkstemps(svg, 4);
	cr_assert_geq(fd, 0);
	close(fd);
	run_bench(&r,
		  (const char *[]){"--transport", "unix,fifo", "--backend", "epoll,uring",
				   "--count", "200", "--warmup", "10", "--plot", svg, NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	cr_assert(strncmp(r.out, "# lm-bench:", 11) == 0, "%s", r.out);
	const char *hdr = strstr(r.out, "\ncase ");
	cr_assert(hdr, "no header: %s", r.out);
	const char *cols[] = {"p50",    "p90",        "p99", "p99.9", "max",
			      "msgs/s", "cpu_us/msg", "x50", "x99"};
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
		cr_assert(strstr(hdr, cols[i]), "no column %s", cols[i]);
	cr_assert(strstr(r.out, "\ncall floor "), "%s", r.out);
	cr_assert(strstr(r.out, "\ncall loop "), "%s", r.out);
	cr_assert(strstr(r.out, "\ncall lm_conn "), "%s", r.out);
	static char buf[262144];
	FILE *f = fopen(svg, "r");
	cr_assert(f);
	cr_assert(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	unlink(svg);
	cr_assert(strstr(buf, "<svg"), "not an SVG: %.200s", buf);
	/* One series per case that ran: more than ten, so colours alone would
	 * repeat. */
	int ran = 0;
	for (const char *l = strstr(r.out, "\ncall "); l; l = strstr(l + 1, "\ncall "))
		ran += !in_line(l, strchr(l + 1, '\n'), "n/a:");
	cr_assert_gt(ran, 10, "%s", r.out);
	expect_readable_plot(buf, ran);
	cr_assert_eq(r.leftover, 0);
}

Test(bench_run, idle_clients_are_connected_and_reaped, .timeout = 120)
{
	static struct run r;
	int floors = 0;
	run_bench(&r,
		  (const char *[]){"--transport", "unix", "--backend", "epoll", "--count", "100",
				   "--warmup", "10", "--idle-clients", "50", "--json", NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	/* floor, loop, lm_conn, lm_service, lm_sync: only the last three get
	 * the crowd */
	cr_assert_eq(check_json(r.out, "\"mode\":\"call\"", &floors), 5, "%s", r.out);
	const char *l = strstr(r.out, "\"impl\":\"lm_conn\"");
	cr_assert(l, "%s", r.out);
	if (strstr(l, "\"status\":\"ok\""))
		cr_assert(strstr(l, "\"idle_clients\":50,\"server_rss_per_idle_client\":"), "%s",
			  l);
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}

/* --emit-from callback: the libmessage signal cases emit from a reactor
 * callback and say so; every case runs. */
Test(bench_run, signal_emitted_from_a_callback, .timeout = 120)
{
	static struct run r;
	int floors = 0;
	run_bench(&r,
		  (const char *[]){"--mode", "signal", "--transport", "unix", "--backend", "epoll",
				   "--subscribers", "5", "--count", "100", "--warmup", "10",
				   "--emit-from", "callback", "--json", NULL},
		  0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	/* floor, floor-batch, loop, lm_conn, lm_service */
	cr_assert_eq(check_json(r.out, "\"mode\":\"signal\"", &floors), 5, "%s", r.out);
	for (const char *l = r.out; *l; l = strchr(l, '\n') + 1) {
		const char *end = strchr(l, '\n');
		const char *tag = strstr(l, "\"emit_from\":\"callback\"");
		bool lib = in_line(l, end, "\"impl\":\"lm_");

		cr_assert(end, "%s", r.out);
		/* The floor and the loop emit as ever. */
		cr_assert_eq(tag && tag < end, lib, "%.*s", (int)(end - l), l);
	}
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}

/* Run lm-bench with args (--json, --size size): it exits 0 and leaves no
 * process behind, and every line is a case that ran ("status":"ok") of
 * that size with needle in it: lines of them, impls of them of impl. */
static void expect_all_ran(const char *const *args, const char *size, const char *needle,
			   const char *impl, int lines, int impls)
{
	static struct run r;
	char want[64];
	int n = 0, k = 0;

	run_bench(&r, args, 0);
	cr_assert_eq(r.status, 0, "exit %d: %s %s", r.status, r.out, r.err);
	snprintf(want, sizeof(want), "\"size\":%s", size);
	for (const char *l = r.out; *l; l = strchr(l, '\n') + 1) {
		const char *end = strchr(l, '\n');
		cr_assert(end, "%s", r.out);
		cr_assert(in_line(l, end, "\"status\":\"ok\"") && in_line(l, end, want) &&
			      in_line(l, end, needle),
			  "%.*s", (int)(end - l), l);
		k += in_line(l, end, impl);
		n++;
	}
	cr_assert_eq(n, lines, "%s", r.out);
	cr_assert_eq(k, impls, "%s", r.out);
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}

/* idle ends with a STOP of --size bytes like every message: it once came
 * from an 80-byte buffer, read past its end for a larger --size (the
 * libmessage cases failed or stalled). Per transport: floor, lm_conn,
 * lm_service; each ran. */
Test(bench_run, idle_any_size, .timeout = 120)
{
	expect_all_ran((const char *[]){"--mode", "idle", "--transport", "unix,fifo", "--backend",
					"epoll", "--size", "262144", "--subscribers", "2",
					"--duration", "0.3", "--json", NULL},
		       "262144", "\"mode\":\"idle\"", "\"impl\":\"floor\"", 6, 2);
}

/* throughput with messages of 1 MiB: lm_emit keeps what it has in flight
 * under a subscriber's queue bound (it once kept 2048 emissions in flight
 * whatever their size: the subscriber was disconnected, the case failed).
 * Per transport: floor, lm_conn, lm_service, lm_emit; each ran. */
Test(bench_run, throughput_big_messages, .timeout = 120)
{
	expect_all_ran((const char *[]){"--mode", "throughput", "--transport", "unix,fifo",
					"--backend", "epoll", "--size", "1048576", "--count", "40",
					"--warmup", "4", "--json", NULL},
		       "1048576", "\"msgs_per_s\":", "\"impl\":\"lm_emit\"", 8, 2);
}

Test(bench_run, ctrl_c_reaps_every_process, .timeout = 120)
{
	static struct run r;
	run_bench(&r,
		  (const char *[]){"--mode", "signal", "--transport", "unix", "--floor-only",
				   "--subscribers", "20", "--duration", "30", NULL},
		  700);
	cr_assert_eq(r.status, 130, "exit %d: %s", r.status, r.err);
	cr_assert(strstr(r.err, "interrupted"), "%s", r.err);
	cr_assert_eq(r.leftover, 0, "lm-bench left %d processes", r.leftover);
}
