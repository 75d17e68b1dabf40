/* SPDX-License-Identifier: MIT */
/* Reactor tests at the edges: timer limits, misuse of fds; each body runs on both backends. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lm_test.h"
#include "reactor-internal.h"

#define MS 1000000ull
#define S  1000000000ull

static void count_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(void)s;
	(void)expirations;
	(*(int *)userdata)++;
}

/* The timerfd of r is disarmed: nothing will wake the reactor for timers. */
static bool timerfd_disarmed(const lm_reactor *r)
{
	struct itimerspec its;

	cr_assert_eq(timerfd_gettime(r->timer_fd, &its), 0);
	return its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0;
}

/* ---- part 4: timers at the limits ---- */

/* A periodic timer whose period does not fit after its deadline fires once:
 * its next deadline saturates to never, it is not a deadline in the past. */
LM_BACKEND_TEST(timer_limits, huge_periods_fire_once)
{
	static const uint64_t periods[] = {UINT64_MAX, UINT64_MAX - 1 * S, (uint64_t)INT64_MAX + 1,
					   UINT64_MAX / 2 + 1};

	for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
		lm_reactor *r = lm_test_reactor(backend);
		lm_source *t;
		int n = 0;

		cr_assert_eq(lm_reactor_add_timer(r, &t, 0, periods[i], count_cb, &n), 0);
		for (int k = 0; k < 20 && n == 0; k++)
			cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
		cr_assert_eq(n, 1, "period %llu: fired %d times", (unsigned long long)periods[i],
			     n);
		/* A wrapped deadline would fire at every iteration. */
		cr_assert_eq(lm_test_spin(r, 1000), 0, "period %llu fired again",
			     (unsigned long long)periods[i]);
		cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0);
		cr_assert_eq(n, 1);
		cr_assert(t->timer.deadline > lm__now_ns() + 100ull * 365 * 24 * 3600 * S);
		cr_assert(lm_source_get_enabled(t));
		lm_source_free(t);
		lm_reactor_free(r);
	}
}

/* A first deadline past the end of the clock never comes, and the timerfd
 * is not armed for it; from a callback too (lm_timer_set). */
static void reset_far_cb(lm_source *s, uint64_t expirations, void *userdata)
{
	(void)expirations;
	(*(int *)userdata)++;
	cr_assert_eq(lm_timer_set(s, UINT64_MAX - 1, UINT64_MAX), 0);
}

LM_BACKEND_TEST(timer_limits, huge_first_deadlines_never_come)
{
	lm_reactor *r = lm_test_reactor(backend);
	lm_source *a, *b, *c;
	int n = 0, m = 0;

	cr_assert_eq(lm_reactor_add_timer(r, &a, UINT64_MAX, 1, count_cb, &n), 0);
	cr_assert_eq(lm_reactor_add_timer(r, &b, UINT64_MAX - 1, UINT64_MAX, count_cb, &n), 0);
	cr_assert_eq(lm_reactor_add_timer(r, &c, 0, 1, reset_far_cb, &m), 0);
	for (int k = 0; k < 20 && m == 0; k++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(m, 1);
	cr_assert_eq(lm_test_spin(r, 1000), 0);
	cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(m, 1);
	cr_assert(timerfd_disarmed(r), "armed for a deadline that never comes");
	cr_assert_eq(lm_timer_set(a, UINT64_MAX, UINT64_MAX), 0);
	cr_assert_eq(lm_test_spin(r, 10), 0);
	lm_source_free(a);
	lm_source_free(b);
	lm_source_free(c);
	lm_reactor_free(r);
}

/* The smallest period, late by a lot: one callback with the count, then
 * the deadline is back on the grid, not in the past. */
LM_BACKEND_TEST(timer_limits, one_ns_period_counts_and_stays_on_the_grid)
{
	lm_reactor *r = lm_test_reactor(backend);
	uint64_t first;
	lm_source *t;
	int n = 0;

	cr_assert_eq(lm_reactor_add_timer(r, &t, 0, 1, count_cb, &n), 0);
	first = t->timer.deadline;
	nanosleep(&(struct timespec){0, 2 * MS}, NULL);
	cr_assert_eq(lm_reactor_run_once(r, 10 * MS), 1);
	cr_assert_eq(n, 1);
	cr_assert_gt(t->timer.deadline, first + 2 * MS);
	cr_assert_gt(t->timer.deadline, lm_reactor_now(r));
	lm_source_free(t);
	lm_reactor_free(r);
}

/* ---- part 5: misuse of fds is never memory corruption ---- */

struct io_count {
	int calls;
	int fd;
};

static void io_count_cb(lm_source *s, int fd, uint32_t events, void *userdata)
{
	struct io_count *c = userdata;
	char buf[64];

	(void)s;
	(void)events;
	c->calls++;
	c->fd = fd;
	(void)!read(fd, buf, sizeof(buf));
}

static void pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Whether the reactor's fd says it has work. */
static bool reactor_fd_ready(lm_reactor *r)
{
	struct pollfd p = {.fd = lm_reactor_fd(r), .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

/* libevent's dup_fd order: the watched fd is closed while a dup of it
 * stays open, then its source is freed, then the file becomes ready. The
 * registration must not outlive the source (epoll kept it, pointing at
 * freed memory), and nothing may wake the reactor for it. */
LM_BACKEND_TEST(misuse, fd_closed_with_a_dup_open_then_freed)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_count c = {0};
	lm_source *s;
	int sv[2], d;

	(void)lm_reactor_fd(r);
	pair(sv);
	cr_assert_eq(lm_reactor_add_io(r, &s, sv[0], LM_IO_IN, io_count_cb, &c), 0);
	d = dup(sv[0]);
	cr_assert_geq(d, 0);
	close(sv[0]);
	lm_source_free(s);
	cr_assert_eq(write(sv[1], "x", 1), 1);
	cr_assert_eq(lm_test_spin(r, 100), 0);
	cr_assert_eq(c.calls, 0);
	cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0);
	cr_assert_not(reactor_fd_ready(r), "a registration outlived its source");
	/* The backends agree on the number again: the same file put back at
	 * it can be watched (epoll said -EEXIST, io_uring 0). */
	cr_assert_eq(dup2(d, sv[0]), sv[0]);
	cr_assert_eq(lm_reactor_add_io(r, &s, sv[0], LM_IO_IN, io_count_cb, &c), 0);
	for (int i = 0; i < 10 && !c.calls; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.fd, sv[0]);
	lm_source_free(s);
	close(sv[0]);
	close(sv[1]);
	close(d);
	lm_reactor_free(r);
}

/* The watched fd is closed while a dup stays open and the source lives on:
 * the source still hears of its file (the kernel's view), and once freed,
 * nothing. */
LM_BACKEND_TEST(misuse, fd_closed_while_the_source_lives)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_count c = {0};
	lm_source *s;
	int sv[2], d;

	pair(sv);
	cr_assert_eq(lm_reactor_add_io(r, &s, sv[0], LM_IO_IN, io_count_cb, &c), 0);
	d = dup(sv[0]);
	close(sv[0]);
	cr_assert_eq(write(sv[1], "xy", 2), 2);
	cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	lm_source_free(s);
	cr_assert_eq(lm_test_spin(r, 100), 0);
	cr_assert_leq(c.calls, 1);
	close(d);
	close(sv[1]);
	lm_reactor_free(r);
}

/* A late free: the old source's fd was closed and its number reused by a
 * new file. The number stays the old source's until it is freed (-EEXIST
 * on both backends), and its late free never unregisters the new source. */
LM_BACKEND_TEST(misuse, late_free_of_an_old_source_leaves_the_new_one)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_count old = {0}, neu = {0};
	lm_source *a, *b;
	int sv[2], nv[2], n;

	pair(sv);
	cr_assert_eq(lm_reactor_add_io(r, &a, sv[0], LM_IO_IN, io_count_cb, &old), 0);
	n = sv[0];
	close(sv[0]);
	pair(nv);
	if (nv[0] != n) {
		cr_assert_eq(dup2(nv[0], n), n);
		close(nv[0]);
	}
	cr_assert_eq(lm_reactor_add_io(r, &b, n, LM_IO_IN, io_count_cb, &neu), -EEXIST);
	lm_source_free(a);
	cr_assert_eq(lm_reactor_add_io(r, &b, n, LM_IO_IN, io_count_cb, &neu), 0);
	cr_assert_eq(write(nv[1], "x", 1), 1);
	for (int i = 0; i < 10 && !neu.calls; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(neu.calls, 1);
	cr_assert_eq(old.calls, 0);
	/* The same with a dup of the old file kept open: its registration
	 * (epoll cannot take it back, the number is another file's) reports
	 * nothing to anyone. */
	lm_source_free(b);
	close(n);
	pair(sv);
	cr_assert_eq(lm_reactor_add_io(r, &a, sv[0], LM_IO_IN, io_count_cb, &old), 0);
	n = dup(sv[0]);
	close(sv[0]);
	cr_assert_eq(dup2(nv[1], sv[0]), sv[0]);
	lm_source_free(a);
	cr_assert_eq(lm_reactor_add_io(r, &b, sv[0], LM_IO_OUT, io_count_cb, &neu), 0);
	cr_assert_eq(write(sv[1], "z", 1), 1);
	neu.calls = 0;
	for (int i = 0; i < 10 && !neu.calls; i++)
		cr_assert_geq(lm_reactor_run_once(r, 10 * MS), 0);
	cr_assert_eq(neu.calls, 1);
	cr_assert_eq(lm_test_spin(r, 50), 50, "only the new source hears");
	cr_assert_eq(old.calls, 0);
	lm_source_free(b);
	close(n);
	close(sv[0]);
	close(sv[1]);
	close(nv[1]);
	lm_reactor_free(r);
}

/* A number watched by a live source: -EEXIST on both backends, for the
 * same fd, a dup's number taken over, and nothing changes for the holder. */
LM_BACKEND_TEST(misuse, re_adding_a_held_number_is_eexist_on_both)
{
	lm_reactor *r = lm_test_reactor(backend);
	struct io_count c = {0};
	lm_source *a, *b;
	int sv[2], d;

	pair(sv);
	cr_assert_eq(lm_reactor_add_io(r, &a, sv[0], LM_IO_IN, io_count_cb, &c), 0);
	cr_assert_eq(lm_reactor_add_io(r, &b, sv[0], LM_IO_OUT, io_count_cb, &c), -EEXIST);
	d = dup(sv[1]);
	cr_assert_eq(dup2(d, sv[0]), sv[0]); /* the number is another file now */
	cr_assert_eq(lm_reactor_add_io(r, &b, sv[0], LM_IO_OUT, io_count_cb, &c), -EEXIST);
	/* Disabled, the number is free; enabling again finds it taken. */
	cr_assert_eq(lm_source_set_enabled(a, false), 0);
	cr_assert_eq(lm_reactor_add_io(r, &b, sv[0], LM_IO_OUT, io_count_cb, &c), 0);
	cr_assert_eq(lm_source_set_enabled(a, true), -EEXIST);
	cr_assert_not(lm_source_get_enabled(a));
	lm_source_free(a);
	lm_source_free(b);
	close(d);
	close(sv[0]);
	close(sv[1]);
	lm_reactor_free(r);
}
