/* SPDX-License-Identifier: MIT */
/* lm-bench-embed: timer lateness and wake-up delay of a reactor driven through lm_reactor_fd(). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/reactor.h>

/*
 * A foreign poll() loop that only sees lm_reactor_fd(r) and calls
 * lm_reactor_run_once(r, 0) when it is readable, as GLib or libuv would.
 * Timer lateness: a one-shot timer of 20 ms, from its deadline to its
 * callback. Wake-up delay: another thread writes a byte to a pipe the
 * reactor watches, from the write to the io callback. Also counted: io
 * callbacks that found the pipe empty (spurious), and loop wake-ups that
 * ran nothing. Usage: lm-bench-embed [epoll|uring] [rounds]
 */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct state {
	uint64_t fired;
	uint64_t written;
	int pipe[2];
	unsigned spurious;
	unsigned reads;
};

static void on_timer(lm_source *s, uint64_t expirations, void *userdata)
{
	(void)s;
	(void)expirations;
	((struct state *)userdata)->fired = now_ns();
}

static void on_io(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct state *st = userdata;
	char c;

	(void)s;
	(void)events;
	if (read(fd, &c, 1) == 1) {
		st->fired = now_ns();
		st->reads++;
	} else {
		st->spurious++;
	}
}

static void *writer(void *arg)
{
	struct state *st = arg;

	usleep(5000);
	st->written = now_ns();
	if (write(st->pipe[1], "x", 1) != 1)
		abort();
	return NULL;
}

/* Run the foreign loop until st->fired is set; returns loop wake-ups that
 * ran no callback. */
static unsigned drive(lm_reactor *r, struct state *st)
{
	struct pollfd pfd = {.fd = lm_reactor_fd(r), .events = POLLIN};
	unsigned idle = 0;

	st->fired = 0;
	while (!st->fired) {
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			abort();
		if (lm_reactor_run_once(r, 0) == 0)
			idle++;
	}
	return idle;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	printf("  %-16s median %7.1f us  p90 %7.1f us  max %7.1f us\n", what, v[n / 2] / 1e3,
	       v[n * 9 / 10] / 1e3, v[n - 1] / 1e3);
}

int main(int argc, char **argv)
{
	struct lm_reactor_options o = {.backend = LM_BACKEND_EPOLL};
	int rounds = argc > 2 ? atoi(argv[2]) : 50;
	uint64_t *late = calloc((size_t)rounds, sizeof(*late));
	uint64_t *wake = calloc((size_t)rounds, sizeof(*wake));
	struct state st = {0};
	unsigned idle_t = 0, idle_w = 0;
	lm_reactor *r;
	lm_source *io;
	int err;

	if (argc > 1 && (!strcmp(argv[1], "uring") || !strcmp(argv[1], "io_uring")))
		o.backend = LM_BACKEND_URING;
	if (rounds < 1 || !late || !wake || pipe(st.pipe) < 0)
		return 2;
	err = lm_reactor_new(&r, &o);
	if (err < 0) {
		fprintf(stderr, "lm_reactor_new: %s\n", strerror(-err));
		return 1;
	}
	if (lm_reactor_add_io(r, &io, st.pipe[0], LM_IO_IN, on_io, &st) < 0)
		return 1;
	lm_reactor_fd(r);
	for (int i = 0; i < rounds; i++) {
		uint64_t due = now_ns() + 20000000;
		lm_source *t;

		if (lm_reactor_add_timer(r, &t, 20000000, 0, on_timer, &st) < 0)
			return 1;
		idle_t += drive(r, &st);
		late[i] = st.fired > due ? st.fired - due : 0;
		lm_source_free(t);
	}
	for (int i = 0; i < rounds; i++) {
		pthread_t th;

		pthread_create(&th, NULL, writer, &st);
		idle_w += drive(r, &st);
		pthread_join(th, NULL);
		wake[i] = st.fired - st.written;
	}
	printf("%s, %d rounds, foreign poll() loop on lm_reactor_fd():\n",
	       lm_reactor_backend_name(r), rounds);
	report("timer lateness", late, rounds);
	report("wake-up delay", wake, rounds);
	printf("  io callbacks %u (bytes read), spurious (nothing to read) %u; "
	       "loop wake-ups that ran nothing: %u (timers), %u (io)\n",
	       st.reads, st.spurious, idle_t, idle_w);
	lm_source_free(io);
	lm_reactor_free(r);
	return 0;
}
