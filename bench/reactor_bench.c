/* SPDX-License-Identifier: MIT */
/* lm-bench-reactor: epoll against io_uring on posts, many ready fds and timer churn. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/reactor.h>

/* Sizes of one repetition; --quick divides them by 10. Each bench runs REPS
 * times per backend, alternating backends, and the median is printed: the
 * machine's load (and so its wake-up latency) drifts during a run. */
#define REPS 3
static long pingpong_trips = 10000;
static long fds_iterations = 4000;
static long timer_count = 1000000;
#define READY_FDS 1000

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static lm_reactor *reactor(enum lm_backend b)
{
	struct lm_reactor_options o = {.backend = b};
	lm_reactor *r;
	int err = lm_reactor_new(&r, &o);

	if (err < 0) {
		fprintf(stderr, "lm_reactor_new(%s): %s\n",
			b == LM_BACKEND_URING ? "uring" : "epoll", strerror(-err));
		return NULL;
	}
	return r;
}

/* ---- 1: cross-thread ping-pong through lm_reactor_post ---- */

struct pingpong {
	lm_reactor *a, *b; /* a: main thread, b: the other thread */
	long trips, left;
};

static void pong(void *userdata);

static void stop_b(void *userdata)
{
	struct pingpong *pp = userdata;

	lm_reactor_stop(pp->b, 0);
}

/* On a: one round trip done; send the next or stop both. */
static void ping(void *userdata)
{
	struct pingpong *pp = userdata;

	if (--pp->left == 0) {
		lm_reactor_post(pp->b, stop_b, pp);
		lm_reactor_stop(pp->a, 0);
		return;
	}
	lm_reactor_post(pp->b, pong, pp);
}

/* On b: send it back. */
static void pong(void *userdata)
{
	struct pingpong *pp = userdata;

	lm_reactor_post(pp->a, ping, pp);
}

static void *run_b(void *userdata)
{
	lm_reactor_run(userdata);
	return NULL;
}

/* ns per round trip, or a negative errno. */
static double bench_pingpong(enum lm_backend backend)
{
	struct pingpong pp = {.trips = pingpong_trips, .left = pingpong_trips};
	pthread_t t;
	uint64_t t0, t1;

	pp.a = reactor(backend);
	pp.b = reactor(backend);
	if (!pp.a || !pp.b)
		return -1;
	/* b is run by its own thread only: created here, run there. Each
	 * reactor is posted to by the other's thread: a reference each keeps
	 * their loops alive until they are stopped. */
	lm_reactor_ref(pp.a);
	lm_reactor_ref(pp.b);
	pthread_create(&t, NULL, run_b, pp.b);
	t0 = now_ns();
	lm_reactor_post(pp.b, pong, &pp);
	lm_reactor_run(pp.a);
	t1 = now_ns();
	pthread_join(t, NULL);
	lm_reactor_unref(pp.a);
	lm_reactor_unref(pp.b);
	lm_reactor_free(pp.a);
	lm_reactor_free(pp.b);
	return (double)(t1 - t0) / (double)pp.trips;
}

/* ---- 2: 1000 fds kept readable, one iteration reports them all ---- */

static void ready_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	(*(long *)userdata)++;
}

/* ns per READY_FDS fds reported. */
static double bench_ready_fds(enum lm_backend backend)
{
	lm_reactor *r = reactor(backend);
	int fds[READY_FDS];
	long calls = 0;
	uint64_t t0, t1;

	if (!r)
		return -1;
	for (int i = 0; i < READY_FDS; i++) {
		/* An eventfd holding 1 and never read stays readable. */
		fds[i] = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
		if (fds[i] < 0 ||
		    lm_reactor_add_io(r, NULL, fds[i], LM_IO_IN, ready_cb, &calls) < 0) {
			perror("eventfd / add_io");
			exit(1);
		}
	}
	/* Warm up: everything armed and reported once. */
	while (calls < READY_FDS)
		lm_reactor_run_once(r, -1);
	calls = 0;
	/* A reactor iteration reports at most 256 events, so "one iteration"
	 * here is as many run_once() calls as it takes to report 1000. */
	t0 = now_ns();
	while (calls < fds_iterations * READY_FDS)
		lm_reactor_run_once(r, -1);
	t1 = now_ns();
	lm_reactor_free(r);
	for (int i = 0; i < READY_FDS; i++)
		close(fds[i]);
	return (double)(t1 - t0) / (double)fds_iterations;
}

/* ---- 3: timer churn ---- */

static void timer_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(*(long *)userdata)++;
}

/* ns per add+cancel pair: all added (spread over an hour), then all freed. */
static double bench_timer_churn(enum lm_backend backend)
{
	lm_reactor *r = reactor(backend);
	lm_source **t = malloc((size_t)timer_count * sizeof(*t));
	uint64_t t0, t1;
	long fired = 0;

	if (!r || !t)
		return -1;
	srandom(1);
	t0 = now_ns();
	for (long i = 0; i < timer_count; i++)
		lm_reactor_add_timer(r, &t[i],
				     1000000000ull + (uint64_t)random() % 3600000000000ull, 0,
				     timer_cb, &fired);
	for (long i = 0; i < timer_count; i++)
		lm_source_free(t[i]);
	t1 = now_ns();
	free(t);
	lm_reactor_free(r);
	return (double)(t1 - t0) / (double)timer_count;
}

/* ns per timer fired: all due within 1 us (so already due when the loop
 * starts: CPU cost, not the wall clock), run until the last one fired. */
static double bench_timer_fire(enum lm_backend backend)
{
	lm_reactor *r = reactor(backend);
	uint64_t t0, t1;
	long fired = 0;

	if (!r)
		return -1;
	srandom(2);
	for (long i = 0; i < timer_count; i++)
		lm_reactor_add_timer(r, NULL, (uint64_t)random() % 1000u, 0, timer_cb, &fired);
	t0 = now_ns();
	while (fired < timer_count)
		lm_reactor_run_once(r, -1);
	t1 = now_ns();
	lm_reactor_free(r);
	return (double)(t1 - t0) / (double)timer_count;
}

/* ---- driver ---- */

static const struct {
	const char *name;
	const char *unit;
	double (*run)(enum lm_backend);
} benches[] = {
    {"pingpong", "ns/round trip", bench_pingpong},
    {"ready_fds", "ns per 1000 ready fds reported", bench_ready_fds},
    {"timer_add_cancel", "ns/(add+cancel)", bench_timer_churn},
    {"timer_fire", "ns/timer fired", bench_timer_fire},
};

static double median(double v[REPS])
{
	for (int i = 1; i < REPS; i++)
		for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[REPS / 2];
}

static void usage(void)
{
	fprintf(stderr, "usage: lm-bench-reactor [--quick] [--backend epoll|uring] "
			"[--only pingpong|ready_fds|timer_add_cancel|timer_fire]\n");
}

int main(int argc, char **argv)
{
	enum lm_backend backends[2] = {LM_BACKEND_EPOLL, LM_BACKEND_URING};
	int nbackends = 2;
	const char *only = NULL;
	struct rlimit rl;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			pingpong_trips /= 10;
			fds_iterations /= 10;
			timer_count /= 10;
		} else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
			i++;
			backends[0] =
			    strcmp(argv[i], "uring") == 0 ? LM_BACKEND_URING : LM_BACKEND_EPOLL;
			nbackends = 1;
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else {
			usage();
			return 2;
		}
	}
	/* 1000 eventfds need more than the usual 1024 soft limit leaves. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	printf("%-17s %12s %12s %8s  %s\n", "bench", "epoll", "io_uring", "ratio", "unit");
	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++) {
		double v[2] = {0, 0};

		if (only && strcmp(only, benches[i].name) != 0)
			continue;
		double rep[2][REPS];

		for (int n = 0; n < REPS; n++)
			for (int k = 0; k < nbackends; k++)
				rep[k][n] = benches[i].run(backends[k]);
		for (int k = 0; k < nbackends; k++)
			v[backends[k] == LM_BACKEND_URING] = median(rep[k]);
		if (nbackends == 2)
			printf("%-17s %12.1f %12.1f %8.2f  %s\n", benches[i].name, v[0], v[1],
			       v[0] > 0 ? v[1] / v[0] : 0.0, benches[i].unit);
		else
			printf("%-17s %12.1f %12.1f %8s  %s\n", benches[i].name, v[0], v[1], "-",
			       benches[i].unit);
		fflush(stdout);
	}
	printf(
	    "median of %d alternating runs; ratio = io_uring / epoll (below 1: io_uring faster)\n",
	    REPS);
	return 0;
}
