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

/* Runs n non-blocking iterations and returns how many callbacks they ran. */
static int spin(lm_reactor *r, int n)
{
	int total = 0;

	for (int i = 0; i < n; i++) {
		int c = lm_reactor_run_once(r, 0);

		cr_assert_geq(c, 0);
		total += c;
	}
	return total;
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
		cr_assert_eq(spin(r, 1000), 0, "period %llu fired again",
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
	cr_assert_eq(spin(r, 1000), 0);
	cr_assert_eq(lm_reactor_run_once(r, 5 * MS), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(m, 1);
	cr_assert(timerfd_disarmed(r), "armed for a deadline that never comes");
	cr_assert_eq(lm_timer_set(a, UINT64_MAX, UINT64_MAX), 0);
	cr_assert_eq(spin(r, 10), 0);
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
