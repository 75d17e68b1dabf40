/* SPDX-License-Identifier: MIT */
/* Timers: a min-heap on (deadline, seq) behind one timerfd armed with TFD_TIMER_ABSTIME. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log-internal.h"
#include "reactor-internal.h"

uint64_t lm__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool earlier(const struct lm_source *a, const struct lm_source *b)
{
	if (a->timer.deadline != b->timer.deadline)
		return a->timer.deadline < b->timer.deadline;
	return a->timer.seq < b->timer.seq;
}

static void heap_place(lm_reactor *r, size_t i, struct lm_source *s)
{
	r->heap[i] = s;
	s->timer.heap_idx = i;
}

static void sift_up(lm_reactor *r, size_t i)
{
	struct lm_source *s = r->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!earlier(s, r->heap[parent]))
			break;
		heap_place(r, i, r->heap[parent]);
		i = parent;
	}
	heap_place(r, i, s);
}

static void sift_down(lm_reactor *r, size_t i)
{
	struct lm_source *s = r->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= r->heap_len)
			break;
		if (c + 1 < r->heap_len && earlier(r->heap[c + 1], r->heap[c]))
			c++;
		if (!earlier(r->heap[c], s))
			break;
		heap_place(r, i, r->heap[c]);
		i = c;
	}
	heap_place(r, i, s);
}

int lm__heap_push(lm_reactor *r, struct lm_source *s)
{
	if (r->heap_len == r->heap_cap) {
		size_t cap = r->heap_cap ? r->heap_cap * 2 : 16;
		struct lm_source **h = reallocarray(r->heap, cap, sizeof(*h));

		if (!h)
			return -ENOMEM;
		r->heap = h;
		r->heap_cap = cap;
	}
	s->timer.seq = r->timer_seq++;
	heap_place(r, r->heap_len++, s);
	sift_up(r, s->timer.heap_idx);
	return 0;
}

void lm__heap_remove(lm_reactor *r, struct lm_source *s)
{
	size_t i = s->timer.heap_idx;
	struct lm_source *last;

	if (i == SIZE_MAX)
		return;
	s->timer.heap_idx = SIZE_MAX;
	last = r->heap[--r->heap_len];
	if (i == r->heap_len)
		return;
	heap_place(r, i, last);
	if (i > 0 && earlier(last, r->heap[(i - 1) / 2]))
		sift_up(r, i);
	else
		sift_down(r, i);
}

uint64_t lm__deadline_add(uint64_t t, uint64_t ns)
{
	uint64_t sum;

	return __builtin_add_overflow(t, ns, &sum) ? LM__NEVER : sum;
}

uint64_t lm__mul_sat(uint64_t a, uint64_t b)
{
	uint64_t p;

	return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

struct lm_source *lm__heap_top(const lm_reactor *r)
{
	return r->heap_len ? r->heap[0] : NULL;
}

int lm__timers_arm(lm_reactor *r)
{
	struct lm_source *top = lm__heap_top(r);
	uint64_t when = top ? top->timer.deadline : LM__NEVER;
	struct itimerspec its = {0};

	if (when == r->timer_armed)
		return 0;
	if (when != LM__NEVER) {
		/* 0 would disarm: a deadline of 0 is long past anyway. */
		if (when == 0)
			when = 1;
		its.it_value.tv_sec = (time_t)(when / 1000000000u);
		its.it_value.tv_nsec = (long)(when % 1000000000u);
	}
	if (timerfd_settime(r->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	r->timer_armed = when;
	return 0;
}

/* Fire every timer due now that was set before this pass began; a
 * timer re-set from a callback waits for the next iteration, so a callback
 * that re-arms itself at 0 cannot starve the loop. */
int lm__timers_dispatch(lm_reactor *r)
{
	uint64_t buf, now, start_seq = r->timer_seq;
	struct lm_source *s;
	int count = 0;

	if (read(r->timer_fd, &buf, sizeof(buf)) < 0 && errno != EAGAIN)
		lm_log_warn("timerfd read: %m");
	r->timer_armed = LM__NEVER; /* it fired: it is disarmed now */
	now = lm__reactor_now(r);

	while ((s = lm__heap_top(r)) && s->timer.deadline <= now && s->timer.seq < start_seq) {
		uint64_t expirations = 1;

		lm__heap_remove(r, s);
		if (s->timer.period) {
			expirations += (now - s->timer.deadline) / s->timer.period;
			s->timer.deadline = lm__deadline_add(
			    s->timer.deadline, lm__mul_sat(expirations, s->timer.period));
			if (lm__heap_push(r, s) < 0) {
				lm_log_error("timer heap: out of memory; timer disabled");
				s->enabled = false;
			}
		} else {
			s->enabled = false;
		}
		lm__source_alive_sync(s);
		s->timer.cb(s, expirations, s->userdata);
		count++;
		if (!s->dead && !s->enabled && s->floating)
			lm_source_free(s);
	}
	return count;
}

/* ---- timers on other clocks: a timerfd each ---- */

static uint64_t clock_now(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec ts_of(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
				 .tv_nsec = (long)(ns % 1000000000u)};
}

/* Program the timerfd for the source's deadline (absolute on its clock)
 * and period. A period the kernel's clock cannot add (past INT64_MAX ns)
 * is left to us: the next deadline is never. */
static int clock_timer_arm(struct lm_source *s)
{
	struct itimerspec its = {0};
	int flags = TFD_TIMER_ABSTIME;

	if (s->timer.clock == CLOCK_REALTIME)
		flags |= TFD_TIMER_CANCEL_ON_SET;
	if (s->timer.deadline != LM__NEVER) {
		its.it_value = ts_of(s->timer.deadline ? s->timer.deadline : 1);
		if (s->timer.period <= INT64_MAX)
			its.it_interval = ts_of(s->timer.period);
	}
	return timerfd_settime(s->timer.fd, flags, &its, NULL) < 0 ? -errno : 0;
}

/* Registered with the backend while enabled; the timerfd counts on while
 * disabled, so a deadline missed then fires on enable. */
int lm__clock_timer_watch(struct lm_source *s)
{
	if (s->enabled)
		return lm__reactor_watch_fd(s->r, s, s->timer.fd, &s->timer.registered);
	lm__reactor_unwatch_fd(s->r, s, s->timer.fd, &s->timer.registered);
	return 0;
}

int lm__clock_timer_set(struct lm_source *s, uint64_t first_ns, uint64_t period_ns)
{
	int err;

	s->timer.deadline = lm__deadline_add(clock_now(s->timer.clock), first_ns);
	s->timer.period = period_ns;
	err = clock_timer_arm(s);
	if (err < 0)
		return err;
	s->enabled = true;
	err = lm__clock_timer_watch(s);
	lm__source_alive_sync(s);
	return err;
}

int lm__clock_timer_add(lm_reactor *r, lm_source **ret, clockid_t clock, uint64_t when_ns,
			uint64_t period_ns, unsigned flags, lm_timer_cb cb, void *userdata)
{
	struct lm_source *s;
	int err;

	s = lm__source_new_watchable(r, LM__SRC_TIMER, userdata, !ret);
	if (!s)
		return -ENOMEM;
	s->timer.cb = cb;
	s->timer.heap_idx = SIZE_MAX;
	s->timer.clock = clock;
	s->timer.fd = timerfd_create(clock, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer.fd < 0) {
		err = -errno;
		lm_source_free(s);
		return err;
	}
	s->timer.deadline =
	    flags & LM_TIMER_ABSOLUTE ? when_ns : lm__deadline_add(clock_now(clock), when_ns);
	s->timer.period = period_ns;
	err = clock_timer_arm(s);
	if (err == 0)
		err = lm__clock_timer_watch(s);
	return lm__source_added(s, ret, err);
}

void lm__clock_timer_detach(struct lm_source *s)
{
	lm__reactor_unwatch_fd(s->r, s, s->timer.fd, &s->timer.registered);
	close(s->timer.fd);
	s->timer.fd = -1;
}

int lm__clock_timer_dispatch(lm_reactor *r, struct lm_source *s)
{
	uint64_t expirations;
	ssize_t n;

	(void)r;
	if (!s->enabled)
		return 0;
	n = read(s->timer.fd, &expirations, sizeof(expirations));
	if (n < 0 && errno == ECANCELED) {
		/* The wall clock was set: armed again for the same deadline,
		 * on the new time (at once if it is past now). */
		int err = clock_timer_arm(s);

		if (err < 0)
			lm_log_warn("timerfd: %s", strerror(-err));
		expirations = 0;
	} else if (n != sizeof(expirations)) {
		return 0; /* read by a report before: nothing due */
	} else if (s->timer.period) {
		s->timer.deadline =
		    s->timer.period > INT64_MAX
			? LM__NEVER
			: lm__deadline_add(s->timer.deadline,
					   lm__mul_sat(expirations, s->timer.period));
	} else {
		s->enabled = false;
		lm__reactor_unwatch_fd(s->r, s, s->timer.fd, &s->timer.registered);
	}
	lm__source_alive_sync(s);
	s->timer.cb(s, expirations, s->userdata);
	if (!s->dead && !s->enabled && s->floating)
		lm_source_free(s);
	return 1;
}
