/* SPDX-License-Identifier: MIT */
/* The reactor: sources, one iteration of wait + dispatch, deferred release. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log-internal.h"
#include "reactor-internal.h"

int lm__timers_arm(lm_reactor *r);
int lm__timers_dispatch(lm_reactor *r);

#define return_if_invalid(cond)         \
	do {                            \
		if (cond)               \
			return -EINVAL; \
	} while (0)

/* ---- fork ---- */

/*
 * The process id, cached (getpid() is a syscall, and lm_reactor_run_once()
 * asks every time): forgotten in the child of every fork() by an atfork
 * handler, installed with the first reactor.
 */
static pid_t pid_cached;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_forget(void)
{
	__atomic_store_n(&pid_cached, 0, __ATOMIC_RELAXED);
}

static void pid_atfork(void)
{
	pthread_atfork(NULL, NULL, pid_forget);
}

pid_t lm__pid(void)
{
	pid_t pid = __atomic_load_n(&pid_cached, __ATOMIC_RELAXED);

	if (pid == 0) {
		pid = getpid();
		__atomic_store_n(&pid_cached, pid, __ATOMIC_RELAXED);
	}
	return pid;
}

bool lm_reactor_forked(const lm_reactor *r)
{
	return r && lm__forked(r);
}

/* Every call but the frees and getters, in a child after fork(). */
#define return_if_forked(r)             \
	do {                            \
		if (lm__forked(r))      \
			return -ECHILD; \
	} while (0)

/* ---- backend choice ---- */

/* Which backend AUTO prefers where both work: decided by lm-bench-reactor
 * (docs/backends.md, "Choosing the backend"): epoll, 2.3x faster with many
 * ready fds and no slower elsewhere. */
static const struct lm_backend_ops *const auto_order[] = {
    &lm__backend_epoll,
    &lm__backend_uring,
};

static int backend_from_env(enum lm_backend *ret)
{
	const char *v = getenv("LM_BACKEND");

	if (!v || !*v || strcmp(v, "auto") == 0)
		*ret = LM_BACKEND_AUTO;
	else if (strcmp(v, "epoll") == 0)
		*ret = LM_BACKEND_EPOLL;
	else if (strcmp(v, "uring") == 0 || strcmp(v, "io_uring") == 0)
		*ret = LM_BACKEND_URING;
	else {
		lm_log_error("LM_BACKEND=%s: expected epoll, uring (or io_uring) or auto", v);
		return -EINVAL;
	}
	return 0;
}

static int backend_open(lm_reactor *r, enum lm_backend which)
{
	int err = -EINVAL;

	if (which == LM_BACKEND_AUTO) {
		err = backend_from_env(&which);
		if (err < 0)
			return err;
	}
	if (which == LM_BACKEND_EPOLL || which == LM_BACKEND_URING) {
		r->ops = which == LM_BACKEND_EPOLL ? &lm__backend_epoll : &lm__backend_uring;
		return r->ops->init(&r->backend);
	}
	for (size_t i = 0; i < LM_ARRAY_SIZE(auto_order); i++) {
		r->ops = auto_order[i];
		err = r->ops->init(&r->backend);
		if (err == 0)
			return 0;
		lm_log_debug("backend %s unavailable (%s), trying the next", r->ops->name,
			     strerror(-err));
	}
	r->ops = NULL;
	return err;
}

/* ---- handles (struct lm__slot) ---- */

#define SLOT_NONE UINT32_MAX

static int slot_take(lm_reactor *r, struct lm_source *s)
{
	uint32_t i;

	if (r->slot_free == SLOT_NONE) {
		uint32_t n = r->nslots ? r->nslots * 2 : 64;
		struct lm__slot *t;

		if (r->nslots >= SLOT_NONE / 2)
			return -ENOMEM;
		t = reallocarray(r->slots, n, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (uint32_t k = r->nslots; k < n; k++)
			t[k] = (struct lm__slot){
			    .s = NULL, .gen = 1, .next = k + 1 < n ? k + 1 : SLOT_NONE};
		r->slots = t;
		r->slot_free = r->nslots;
		r->nslots = n;
	}
	i = r->slot_free;
	r->slot_free = r->slots[i].next;
	r->slots[i].s = s;
	s->handle = (uint64_t)r->slots[i].gen << 32 | i;
	return 0;
}

/* The handle goes stale: the slot's next owner has another generation
 * (never 0, so that no handle is 0). */
static void slot_give(lm_reactor *r, struct lm_source *s)
{
	uint32_t i = (uint32_t)s->handle;

	if (!s->handle)
		return;
	r->slots[i].s = NULL;
	r->slots[i].gen = r->slots[i].gen == UINT32_MAX ? 1 : r->slots[i].gen + 1;
	r->slots[i].next = r->slot_free;
	r->slot_free = i;
	s->handle = 0;
}

/* The live source a handle names, or NULL if it is stale. */
static inline struct lm_source *slot_source(const lm_reactor *r, uint64_t handle)
{
	uint32_t i = (uint32_t)handle;

	if (i >= r->nslots || r->slots[i].gen != (uint32_t)(handle >> 32))
		return NULL;
	return r->slots[i].s;
}

/* ---- lifetime ---- */

static int internal_source(lm_reactor *r, struct lm_source *s, enum lm__source_type type)
{
	s->type = type;
	s->r = r;
	s->enabled = true;
	return slot_take(r, s);
}

/* LM_LONE_NS: how long a lone wait lasts at most (0: no lone waits), for
 * tests and A/B runs; LM__LONE_NS otherwise (or if it is not a number). */
static int64_t lone_ns_from_env(void)
{
	long ns = LM__LONE_NS;

	return lm__env_long("LM_LONE_NS", 0, LONG_MAX, &ns) < 0 ? LM__LONE_NS : ns;
}

int lm_reactor_new(lm_reactor **ret, const struct lm_reactor_options *opts)
{
	lm_reactor *r;
	int err;

	return_if_invalid(!ret);
	return_if_invalid(opts && (unsigned)opts->backend > LM_BACKEND_URING);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_once(&pid_once, pid_atfork);
	r->pid = lm__pid();
	r->timer_fd = r->signal_fd = r->post_fd = -1;
	r->refs = 1;
	r->timer_armed = LM__NEVER;
	r->slot_free = SLOT_NONE;
	LIST_INIT(&r->sources);
	TAILQ_INIT(&r->defers);
	TAILQ_INIT(&r->defers_run);
	TAILQ_INIT(&r->exits);
	TAILQ_INIT(&r->exits_run);
	TAILQ_INIT(&r->garbage);
	TAILQ_INIT(&r->prepares);
	TAILQ_INIT(&r->prepares_run);
	TAILQ_INIT(&r->flushes);
	TAILQ_INIT(&r->staged);
	STAILQ_INIT(&r->posts);
	LIST_INIT(&r->lones);
	r->lone_ns = lone_ns_from_env();
	sigemptyset(&r->signal_mask);
	pthread_mutex_init(&r->post_lock, NULL);
	err = internal_source(r, &r->timerfd_src, LM__SRC_TIMERFD);
	if (err == 0)
		err = internal_source(r, &r->signalfd_src, LM__SRC_SIGNALFD);
	if (err == 0)
		err = internal_source(r, &r->post_src, LM__SRC_POSTFD);
	if (err == 0)
		err = backend_open(r, opts ? opts->backend : LM_BACKEND_AUTO);
	if (err < 0) {
		r->ops = NULL;
		goto fail;
	}
	r->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	r->post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->timer_fd < 0 || r->post_fd < 0) {
		err = -errno;
		goto fail;
	}
	err = r->ops->add(r->backend, r->timer_fd, LM_IO_IN, r->timerfd_src.handle);
	if (err == 0)
		err = r->ops->add(r->backend, r->post_fd, LM_IO_IN, r->post_src.handle);
	if (err < 0)
		goto fail;
	r->now = lm__now_ns();
	lm_log_debug("reactor %p on %s", (void *)r, r->ops->name);
	*ret = r;
	return 0;
fail:
	lm_reactor_free(r);
	return err;
}

static void source_release(struct lm_source *s);
static void timers_changed(lm_reactor *r);

lm_reactor *lm_reactor_ref(lm_reactor *r)
{
	if (r)
		__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void lm_reactor_unref(lm_reactor *r)
{
	if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	pthread_mutex_destroy(&r->post_lock);
	free(r);
}

/*
 * In a child after fork(), r's fds are copies of the parent's, and its
 * registrations (epoll's interest list, the ring's polls, the timerfd's
 * deadline, the signalfd's mask) are the parent's too: the child frees its
 * memory and closes its copies, and tells the kernel nothing else. Its one
 * thread may find post_lock held by a thread of the parent that it has not:
 * it never takes it.
 */
static void reactor_free_forked(lm_reactor *r)
{
	struct lm_source *s;
	struct lm__post *p;

	while ((s = LIST_FIRST(&r->sources)))
		lm_source_free(s);
	while ((s = TAILQ_FIRST(&r->garbage))) {
		TAILQ_REMOVE(&r->garbage, s, link);
		source_release(s);
	}
	if (r->ops)
		r->ops->fini(r->backend);
	if (r->signal_fd >= 0)
		close(r->signal_fd);
	if (r->timer_fd >= 0)
		close(r->timer_fd);
	if (r->post_fd >= 0)
		close(r->post_fd);
	r->post_fd = -1;
	lm__fanout_free(r);
	free(r->heap);
	free(r->slots);
	free(r->io_byfd);
	free(r->scratch);
	r->scratch = NULL;
	r->shutdown = true;
	while ((p = STAILQ_FIRST(&r->posts))) {
		STAILQ_REMOVE_HEAD(&r->posts, link);
		free(p);
	}
	/* The memory goes with the last reference, as in the parent: a
	 * reference the child's code took before the fork stays valid until
	 * its unref (those of the parent's other threads are never dropped
	 * here: the child keeps that memory). */
	lm_reactor_unref(r);
}

void lm_reactor_free(lm_reactor *r)
{
	struct lm_source *s;
	struct lm__post *p;

	if (!r)
		return;
	if (lm__forked(r)) {
		reactor_free_forked(r);
		return;
	}
	if (r->dispatching) {
		lm_log_error("lm_reactor_free() called from a callback: ignored");
		return;
	}
	while ((s = LIST_FIRST(&r->sources)))
		lm_source_free(s);
	while ((s = TAILQ_FIRST(&r->garbage))) {
		TAILQ_REMOVE(&r->garbage, s, link);
		source_release(s);
	}
	if (r->ops) {
		if (r->signal_fd >= 0)
			r->ops->del(r->backend, r->signal_fd, r->signalfd_src.handle);
		if (r->timer_fd >= 0)
			r->ops->del(r->backend, r->timer_fd, r->timerfd_src.handle);
		if (r->post_fd >= 0)
			r->ops->del(r->backend, r->post_fd, r->post_src.handle);
		r->ops->fini(r->backend);
	}
	if (r->signal_fd >= 0)
		close(r->signal_fd);
	if (r->timer_fd >= 0)
		close(r->timer_fd);
	lm__fanout_free(r);
	free(r->heap);
	free(r->slots);
	free(r->io_byfd);
	free(r->scratch);
	r->scratch = NULL;

	/* After this, posts fail with -ESHUTDOWN and never touch post_fd. */
	pthread_mutex_lock(&r->post_lock);
	r->shutdown = true;
	if (r->post_fd >= 0)
		close(r->post_fd);
	r->post_fd = -1;
	while ((p = STAILQ_FIRST(&r->posts))) {
		STAILQ_REMOVE_HEAD(&r->posts, link);
		free(p);
	}
	pthread_mutex_unlock(&r->post_lock);
	lm_reactor_unref(r);
}

const char *lm_reactor_backend_name(const lm_reactor *r)
{
	return r && r->ops ? r->ops->name : NULL;
}

int lm_reactor_fd(const lm_reactor *r)
{
	if (!r)
		return -EINVAL;
	return_if_forked(r);
	((lm_reactor *)r)->embedded = true;
	/* A foreign loop polls it from now on: no lone waits, and the fd
	 * the last one took out is watched again. */
	if (r->lone_fd_off) {
		r->lone_fd_off->ops->watch(r->lone_fd_off);
		((lm_reactor *)r)->lone_fd_off = NULL;
	}
	return r->ops->fd(r->backend);
}

uint64_t lm__reactor_now(lm_reactor *r)
{
	if (r->now_stale) {
		r->now = lm__now_ns();
		r->now_stale = false;
	}
	return r->now;
}

uint64_t lm_reactor_now(const lm_reactor *r)
{
	/* The cached time is the reactor's own state, not its user's. */
	return r ? lm__reactor_now((lm_reactor *)r) : 0;
}

void lm_reactor_stop(lm_reactor *r, int code)
{
	if (!r || lm__forked(r))
		return;
	r->exit_requested = true;
	r->exit_code = code;
}

/* ---- dispatch ---- */

static void kick(lm_reactor *r)
{
	uint64_t one = 1;

	if (lm__forked(r))
		return; /* the eventfd is the parent's */
	pthread_mutex_lock(&r->post_lock);
	if (!r->post_kicked && write(r->post_fd, &one, sizeof(one)) == sizeof(one))
		r->post_kicked = true;
	pthread_mutex_unlock(&r->post_lock);
}

static int dispatch_posts(lm_reactor *r)
{
	struct lm__post_list batch = STAILQ_HEAD_INITIALIZER(batch);
	struct lm__post *p;
	uint64_t v;
	int count = 0;

	pthread_mutex_lock(&r->post_lock);
	/* Read the eventfd under the lock: a post after this sees an empty
	 * queue and writes it again, so no wake-up is lost. */
	if (read(r->post_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		lm_log_warn("eventfd read: %m");
	r->post_kicked = false;
	STAILQ_CONCAT(&batch, &r->posts);
	pthread_mutex_unlock(&r->post_lock);

	while ((p = STAILQ_FIRST(&batch))) {
		STAILQ_REMOVE_HEAD(&batch, link);
		p->fn(p->userdata);
		free(p);
		count++;
	}
	return count;
}

static int dispatch_signals(lm_reactor *r)
{
	struct signalfd_siginfo si[16];
	int count = 0;

	for (;;) {
		ssize_t n = read(r->signal_fd, si, sizeof(si));

		if (n <= 0)
			break;
		for (size_t i = 0; i < (size_t)n / sizeof(si[0]); i++) {
			struct lm_source *s;

			if (si[i].ssi_signo >= _NSIG)
				continue;
			s = r->signals[si[i].ssi_signo];
			if (!s || s->dead || !s->enabled)
				continue;
			s->sig.cb(s, &si[i], s->userdata);
			count++;
		}
		if ((size_t)n < sizeof(si))
			break;
	}
	return count;
}

static int dispatch_event(lm_reactor *r, const struct lm_backend_event *ev)
{
	struct lm_source *s = slot_source(r, ev->tag);
	uint32_t events;

	if (!s)
		return 0; /* stale: its source was freed */
	switch (s->type) {
	case LM__SRC_TIMERFD:
		return lm__timers_dispatch(r);
	case LM__SRC_SIGNALFD:
		return dispatch_signals(r);
	case LM__SRC_POSTFD:
		return dispatch_posts(r);
	case LM__SRC_TIMER: /* only those with a timerfd of their own */
		return s->dead ? 0 : lm__clock_timer_dispatch(r, s);
	case LM__SRC_CHILD:
		return s->dead ? 0 : lm__child_dispatch(r, s);
	case LM__SRC_IO:
		/* Freed, disabled or re-aimed earlier in this batch: the event
		 * is stale. */
		if (s->dead || !s->enabled || !s->io.watched)
			return 0;
		events = ev->events & (s->io.events | LM_IO_ERR | LM_IO_HUP);
		if (!events)
			return 0;
		r->io_event = ev;
		s->io.cb(s, s->io.fd, events, s->userdata);
		r->io_event = NULL;
		return 1;
	default:
		return 0;
	}
}

static void list_move(struct lm_source *s, struct lm__source_list *to)
{
	if (s->list)
		TAILQ_REMOVE(s->list, s, link);
	s->list = to;
	if (to)
		TAILQ_INSERT_TAIL(to, s, link);
}

static int dispatch_defers(lm_reactor *r)
{
	struct lm_source *s;
	int count = 0;

	/* Only those pending now: a defer enabled by a callback runs next time. */
	while ((s = TAILQ_FIRST(&r->defers)))
		list_move(s, &r->defers_run);
	while ((s = TAILQ_FIRST(&r->defers_run))) {
		list_move(s, NULL);
		s->enabled = false;
		lm__source_alive_sync(s);
		s->defer.cb(s, s->userdata);
		count++;
		if (!s->dead && s->floating && !s->enabled)
			lm_source_free(s);
	}
	return count;
}

static int dispatch_exits(lm_reactor *r)
{
	struct lm_source *s;
	int count = 0;

	while ((s = TAILQ_FIRST(&r->exits)))
		list_move(s, &r->exits_run);
	while ((s = TAILQ_FIRST(&r->exits_run))) {
		list_move(s, &r->exits);
		if (!s->enabled)
			continue;
		s->defer.cb(s, s->userdata);
		count++;
	}
	return count;
}

static void collect_garbage(lm_reactor *r)
{
	struct lm_source *s;

	while ((s = TAILQ_FIRST(&r->garbage))) {
		TAILQ_REMOVE(&r->garbage, s, link);
		source_release(s);
	}
}

static void run_flushes(lm_reactor *r)
{
	struct lm__flush *f;

	do {
		while ((f = TAILQ_FIRST(&r->flushes))) {
			TAILQ_REMOVE(&r->flushes, f, link);
			f->queued = false;
			f->fn(f);
		}
		/* What the flushes staged goes in one submission. */
		lm__fanout_run(r);
	} while (!TAILQ_EMPTY(&r->flushes));
}

/* The prepare sources, in the order added; one added by a callback here
 * runs next time. */
static void run_prepares(lm_reactor *r)
{
	struct lm_source *s;

	r->prepare_due = false;
	while ((s = TAILQ_FIRST(&r->prepares)))
		list_move(s, &r->prepares_run);
	while ((s = TAILQ_FIRST(&r->prepares_run))) {
		list_move(s, &r->prepares);
		if (s->enabled)
			s->defer.cb(s, s->userdata);
	}
}

/*
 * What runs before the reactor (or the loop embedding it) waits: the public
 * prepare sources, then the library's own flushes (hooks-internal.h), which
 * are the last user of this hook: they write what the round, the prepare
 * callbacks included, gathered.
 */
static void before_sleep(lm_reactor *r)
{
	if (!TAILQ_EMPTY(&r->prepares))
		run_prepares(r);
	run_flushes(r);
}

/* lm__timers_arm() unless the earliest deadline is the one programmed
 * already, as it is in most iterations (no call for nothing). */
static inline int timers_arm(lm_reactor *r)
{
	uint64_t when = r->heap_len ? r->heap[0]->timer.deadline : LM__NEVER;

	return when == r->timer_armed ? 0 : lm__timers_arm(r);
}

/* ---- lone waits (hooks-internal.h) ---- */

/* Under the post lock: a post from another thread kicks r->lone. */
void lm__reactor_lone_add(lm_reactor *r, struct lm__lone *l)
{
	if (lm__forked(r))
		return;
	pthread_mutex_lock(&r->post_lock);
	LIST_INSERT_HEAD(&r->lones, l, link);
	r->nlones++;
	r->lone = r->nlones == 1 ? l : NULL;
	pthread_mutex_unlock(&r->post_lock);
}

void lm__reactor_lone_remove(lm_reactor *r, struct lm__lone *l)
{
	/* In a child after fork(), post_lock may be held by a parent's
	 * thread that is not here: the child has one thread, no lock needed. */
	bool lock = !lm__forked(r);

	if (lock)
		pthread_mutex_lock(&r->post_lock);
	LIST_REMOVE(l, link);
	r->nlones--;
	r->lone = r->nlones == 1 ? LIST_FIRST(&r->lones) : NULL;
	if (lock)
		pthread_mutex_unlock(&r->post_lock);
	if (r->lone_fd_off == l)
		r->lone_fd_off = NULL;
}

bool lm__source_watched(const lm_source *s)
{
	return s && s->type == LM__SRC_IO && s->io.watched;
}

/* Nothing but the lone waiter's own sources can wake r. */
static bool lone_alone(const lm_reactor *r)
{
	return r->lone && r->lone_ns > 0 && !r->embedded && TAILQ_EMPTY(&r->defers) &&
	       !r->exit_requested && r->signal_fd < 0 && !r->fd_watched &&
	       r->io_watched == r->lone->ops->sources(r->lone);
}

/*
 * Wait in the lone waiter, dispatching what it delivers: > 0 if something
 * was; else 0, *timeout_ns then being what is left for the backend's wait.
 * A post (or a timer) due already, or one that comes meanwhile (the kick),
 * ends it.
 */
static int lone_wait(lm_reactor *r, int64_t *timeout_ns)
{
	struct lm__lone *l = r->lone;
	int64_t slice = r->lone_ns;
	uint64_t start = 0;
	int n;

	if (*timeout_ns > 0 && *timeout_ns < slice)
		slice = *timeout_ns;
	if (r->heap_len || *timeout_ns > 0) {
		uint64_t deadline = r->heap_len ? r->heap[0]->timer.deadline : LM__NEVER;

		start = lm__now_ns();
		if (deadline <= start)
			return 0;
		if (deadline - start < (uint64_t)slice)
			slice = (int64_t)(deadline - start);
	}
	pthread_mutex_lock(&r->post_lock);
	r->lone_waiting = !r->post_kicked;
	pthread_mutex_unlock(&r->post_lock);
	if (!r->lone_waiting)
		return 0;
	r->lone_fd_off = l;
	r->dispatching = true;
	n = l->ops->wait(l, slice);
	pthread_mutex_lock(&r->post_lock);
	r->lone_waiting = false;
	pthread_mutex_unlock(&r->post_lock);
	if (n > 0)
		return n;
	r->dispatching = false;
	if (n == -EINTR) {
		/* A signal handler ran: return, as a backend's wait does. */
		*timeout_ns = 0;
	} else if (*timeout_ns > 0) {
		uint64_t spent = lm__now_ns() - start;

		*timeout_ns = spent < (uint64_t)*timeout_ns ? *timeout_ns - (int64_t)spent : 0;
	}
	return 0;
}

int lm_reactor_run_once(lm_reactor *r, int64_t timeout_ns)
{
	int n, count = 0, err;

	if (!r)
		return -EINVAL;
	return_if_forked(r);
	if (r->dispatching)
		return -EBUSY;
	/* What was gathered outside dispatch goes out before we sleep; that
	 * was work: do not sleep after it (a caller looping until its output
	 * is written must not block once it is). */
	if (!TAILQ_EMPTY(&r->flushes) || r->prepare_due) {
		r->dispatching = true;
		if (r->prepare_due)
			run_prepares(r);
		if (!TAILQ_EMPTY(&r->flushes)) {
			run_flushes(r);
			timeout_ns = 0;
		}
		r->dispatching = false;
		collect_garbage(r);
	}
	if (!TAILQ_EMPTY(&r->defers) || r->exit_requested)
		timeout_ns = 0;
	err = timers_arm(r);
	if (err < 0)
		return err;
	if (timeout_ns != 0 && lone_alone(r) && (count = lone_wait(r, &timeout_ns)) > 0) {
		/* Delivered, dispatching: the rest of the round as below. */
		r->now_stale = true;
	} else {
		if (r->lone_fd_off) {
			r->lone_fd_off->ops->watch(r->lone_fd_off);
			r->lone_fd_off = NULL;
		}
		n = r->ops->wait(r->backend, r->events, LM_MAX_EVENTS, timeout_ns);
		if (n < 0)
			return n;
		/* Read the clock only if someone asks this iteration (a timer
		 * fired, a call set its deadline): most iterations of a busy
		 * loop do not. */
		r->now_stale = true;
		r->dispatching = true;
		for (int i = 0; i < n; i++) {
			count += dispatch_event(r, &r->events[i]);
			/* A datagram is the backend's again, dispatched or not. */
			if (r->events[i].data)
				r->ops->recycle(r->backend, r->events[i].data);
		}
	}
	count += dispatch_defers(r);
	if (r->exit_requested) {
		r->exit_requested = false;
		count += dispatch_exits(r);
		r->exited = true;
	}
	before_sleep(r);
	r->dispatching = false;
	collect_garbage(r);
	/* Program the timerfd now, not only before the next wait: a foreign
	 * loop polling lm_reactor_fd() must be woken for the next deadline. */
	err = timers_arm(r);
	if (err < 0)
		lm_log_warn("timerfd: %s", strerror(-err));
	/* A foreign loop only polls our fd: make it readable for what waits,
	 * and let the backend tell the kernel what to watch now that the
	 * callbacks ran (no report of what they read). */
	if (r->embedded) {
		if (!TAILQ_EMPTY(&r->defers))
			kick(r);
		if (r->ops->flush)
			r->ops->flush(r->backend);
	}
	return count;
}

static bool posts_pending(lm_reactor *r)
{
	bool pending;

	pthread_mutex_lock(&r->post_lock);
	pending = !STAILQ_EMPTY(&r->posts);
	pthread_mutex_unlock(&r->post_lock);
	return pending;
}

int lm_reactor_run(lm_reactor *r)
{
	if (!r)
		return -EINVAL;
	return_if_forked(r);
	if (r->dispatching)
		return -EBUSY;
	r->exited = false;
	while (!r->exited) {
		int err;

		/* Nothing keeps it going: stop, as lm_reactor_stop(r, 0) would,
		 * once the posts already queued have run. A thread that holds a
		 * reference may post: it keeps the loop alive. */
		if (!r->alive && !r->exit_requested &&
		    __atomic_load_n(&r->refs, __ATOMIC_ACQUIRE) <= 1 && !posts_pending(r))
			lm_reactor_stop(r, 0);
		err = lm_reactor_run_once(r, -1);

		if (err < 0 && err != -EINTR)
			return err;
	}
	r->exited = false;
	return r->exit_code;
}

/* ---- for the other layers (hooks-internal.h) ---- */

void lm__reactor_flush_queue(lm_reactor *r, struct lm__flush *f)
{
	if (f->queued)
		return;
	f->queued = true;
	TAILQ_INSERT_TAIL(&r->flushes, f, link);
	/* A foreign loop only polls our fd: make it call us soon. */
	if (r->embedded && !r->dispatching)
		kick(r);
}

void lm__reactor_flush_cancel(lm_reactor *r, struct lm__flush *f)
{
	if (!f->queued)
		return;
	f->queued = false;
	TAILQ_REMOVE(&r->flushes, f, link);
}

bool lm__reactor_dispatching(const lm_reactor *r)
{
	return r->dispatching;
}

unsigned char *lm__reactor_scratch_take(lm_reactor *r, size_t size)
{
	if (r->scratch_taken)
		return malloc(size);
	if (r->scratch_size < size) {
		free(r->scratch);
		r->scratch_size = 0;
		r->scratch = malloc(size);
		if (!r->scratch)
			return NULL;
		r->scratch_size = size;
	}
	r->scratch_taken = true;
	return r->scratch;
}

void lm__reactor_scratch_give(lm_reactor *r, unsigned char *buf)
{
	if (buf && buf == r->scratch)
		r->scratch_taken = false;
	else
		free(buf);
}

/* ---- sources ---- */

static struct lm_source *source_new(lm_reactor *r, enum lm__source_type type, void *userdata,
				    bool floating)
{
	struct lm_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->type = type;
	s->r = r;
	s->userdata = userdata;
	s->floating = floating;
	s->enabled = true;
	s->keepalive = true;
	LIST_INSERT_HEAD(&r->sources, s, all_link);
	return s;
}

struct lm_source *lm__source_new_watchable(lm_reactor *r, enum lm__source_type type, void *userdata,
					   bool floating)
{
	struct lm_source *s = source_new(r, type, userdata, floating);

	if (s && slot_take(r, s) < 0) {
		/* Nothing of its type is set yet: not lm_source_free(). */
		LIST_REMOVE(s, all_link);
		free(s);
		s = NULL;
	}
	if (s && type == LM__SRC_TIMER)
		s->timer.fd = -1;
	if (s && type == LM__SRC_CHILD)
		s->child.pidfd = -1;
	return s;
}

static bool source_keeps_alive(const struct lm_source *s)
{
	if (s->dead || !s->enabled || !s->keepalive)
		return false;
	switch (s->type) {
	case LM__SRC_IO:
		return s->io.events & (LM_IO_IN | LM_IO_OUT);
	case LM__SRC_TIMER:
		return s->timer.deadline != LM__NEVER;
	case LM__SRC_CHILD:
		return !s->child.reported;
	case LM__SRC_SIGNAL:
	case LM__SRC_DEFER:
		return true;
	default:
		return false; /* exit, prepare, the reactor's own */
	}
}

int lm__source_added(struct lm_source *s, lm_source **ret, int err)
{
	if (err < 0) {
		lm_source_free(s);
		return err;
	}
	lm__source_alive_sync(s);
	if (ret)
		*ret = s;
	return 0;
}

void lm__source_alive_sync(struct lm_source *s)
{
	bool alive = source_keeps_alive(s);

	if (alive == s->alive)
		return;
	s->alive = alive;
	if (alive)
		s->r->alive++;
	else
		s->r->alive--;
}

int lm__reactor_watch_fd(lm_reactor *r, struct lm_source *s, int fd, bool *registered)
{
	int err;

	if (*registered)
		return 0;
	err = r->ops->add(r->backend, fd, LM_IO_IN, s->handle);
	if (err == 0) {
		*registered = true;
		r->fd_watched++;
	}
	return err;
}

void lm__reactor_unwatch_fd(lm_reactor *r, struct lm_source *s, int fd, bool *registered)
{
	if (!*registered)
		return;
	r->ops->del(r->backend, fd, s->handle);
	*registered = false;
	r->fd_watched--;
}

static void source_release(struct lm_source *s)
{
	free(s);
}

/* A number is held by one registered io source at a time (io_byfd): the
 * reactor, not the backend, answers an add on a held number (-EEXIST), so
 * both backends answer alike, whatever the file behind the number is now;
 * and only the holder's free unregisters the number. */
static int byfd_room(lm_reactor *r, int fd)
{
	size_t n = r->io_nfd ? r->io_nfd : 64;
	struct lm_source **t;

	if ((size_t)fd < r->io_nfd)
		return 0;
	while (n <= (size_t)fd)
		n *= 2;
	t = reallocarray(r->io_byfd, n, sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t + r->io_nfd, 0, (n - r->io_nfd) * sizeof(*t));
	r->io_byfd = t;
	r->io_nfd = n;
	return 0;
}

static void io_unwatch(struct lm_source *s)
{
	lm_reactor *r = s->r;

	if (!s->io.watched)
		return;
	r->ops->del(r->backend, s->io.fd, s->handle);
	r->io_byfd[s->io.fd] = NULL;
	s->io.watched = false;
	r->io_watched--;
}

static int io_watch(struct lm_source *s)
{
	lm_reactor *r = s->r;
	int err;

	if (!s->enabled || !(s->io.events & (LM_IO_IN | LM_IO_OUT))) {
		io_unwatch(s);
		return 0;
	}
	if (s->io.watched)
		return r->ops->mod(r->backend, s->io.fd, s->io.events, s->handle);
	err = byfd_room(r, s->io.fd);
	if (err < 0)
		return err;
	if (r->io_byfd[s->io.fd])
		return -EEXIST;
	err = r->ops->add(r->backend, s->io.fd, s->io.events, s->handle);
	if (err == 0) {
		s->io.watched = true;
		r->io_byfd[s->io.fd] = s;
		r->io_watched++;
	}
	return err;
}

static int signal_mask_update(lm_reactor *r)
{
	int fd = signalfd(r->signal_fd, &r->signal_mask, SFD_NONBLOCK | SFD_CLOEXEC);
	int err;

	if (fd < 0)
		return -errno;
	if (r->signal_fd < 0) {
		err = r->ops->add(r->backend, fd, LM_IO_IN, r->signalfd_src.handle);
		if (err < 0) {
			close(fd);
			return err;
		}
		r->signal_fd = fd;
	}
	return 0;
}

static void signal_detach(struct lm_source *s)
{
	lm_reactor *r = s->r;
	int signo = s->sig.signo;
	sigset_t one;

	r->signals[signo] = NULL;
	sigdelset(&r->signal_mask, signo);
	if (signal_mask_update(r) < 0)
		lm_log_warn("signalfd update for signal %d: %m", signo);
	if (s->sig.was_blocked)
		return;
	/* Drop what is pending for it before unblocking, so that removing the
	 * source does not run the default action of a signal it received. */
	sigemptyset(&one);
	sigaddset(&one, signo);
	while (sigtimedwait(&one, NULL, &(struct timespec){0}) > 0)
		;
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
}

/* lm_source_free() in a child after fork(): the source leaves r's memory,
 * nothing is said to the kernel (the registrations are the parent's). */
static void source_forget(struct lm_source *s)
{
	lm_reactor *r = s->r;

	switch (s->type) {
	case LM__SRC_IO:
		if (s->io.watched) {
			r->io_byfd[s->io.fd] = NULL;
			r->io_watched--;
		}
		s->io.watched = false;
		break;
	case LM__SRC_TIMER:
		lm__heap_remove(r, s);
		if (s->timer.fd >= 0) /* our copy: the parent's timer goes on */
			close(s->timer.fd);
		s->timer.fd = -1;
		break;
	case LM__SRC_SIGNAL:
		r->signals[s->sig.signo] = NULL;
		sigdelset(&r->signal_mask, s->sig.signo);
		break;
	case LM__SRC_CHILD:
		/* The parent's child: never killed nor waited for from here. */
		if (s->child.pidfd >= 0)
			close(s->child.pidfd);
		s->child.pidfd = -1;
		break;
	default:
		break;
	}
	slot_give(r, s);
	s->dead = true;
	s->enabled = false;
	lm__source_alive_sync(s);
	LIST_REMOVE(s, all_link);
	/* Released now: a child does not return into a dispatch of r. */
	list_move(s, NULL);
	source_release(s);
}

void lm_source_free(lm_source *s)
{
	lm_reactor *r;

	if (!s || s->dead)
		return;
	r = s->r;
	if (lm__forked(r)) {
		source_forget(s);
		return;
	}
	switch (s->type) {
	case LM__SRC_IO:
		io_unwatch(s);
		break;
	case LM__SRC_TIMER:
		if (s->timer.fd >= 0) {
			lm__clock_timer_detach(s);
			break;
		}
		lm__heap_remove(r, s);
		timers_changed(r);
		break;
	case LM__SRC_SIGNAL:
		signal_detach(s);
		break;
	case LM__SRC_CHILD:
		lm__child_detach(s);
		break;
	default:
		break;
	}
	slot_give(r, s);
	s->dead = true;
	s->enabled = false;
	lm__source_alive_sync(s);
	LIST_REMOVE(s, all_link);
	if (r->dispatching) {
		list_move(s, &r->garbage);
	} else {
		list_move(s, NULL);
		source_release(s);
	}
}

static int add_io(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
		  void *userdata)
{
	struct lm_source *s;

	return_if_forked(r);
	s = lm__source_new_watchable(r, LM__SRC_IO, userdata, !ret);
	if (!s)
		return -ENOMEM;
	s->io.fd = fd;
	s->io.events = events;
	s->io.cb = cb;
	return lm__source_added(s, ret, io_watch(s));
}

int lm_reactor_add_io(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
		      void *userdata)
{
	return_if_invalid(!r || fd < 0 || !cb);
	return_if_invalid(events & ~(uint32_t)(LM_IO_IN | LM_IO_OUT));
	return add_io(r, ret, fd, events, cb, userdata);
}

int lm__reactor_add_io_edge(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
			    void *userdata, bool *edge)
{
	*edge = r->ops->again != NULL;
	return add_io(r, ret, fd, events | (*edge ? LM__IO_EDGE : 0u), cb, userdata);
}

int lm__reactor_add_io_recv(lm_reactor *r, lm_source **ret, int fd, uint32_t events, lm_io_cb cb,
			    void *userdata, bool *edge)
{
	uint32_t flags = r->ops->recycle ? LM__IO_RECV : 0u;

	if (edge) {
		*edge = r->ops->again != NULL;
		flags |= *edge ? LM__IO_EDGE : 0u;
	}
	return add_io(r, ret, fd, events | flags, cb, userdata);
}

bool lm__reactor_receives(const lm_reactor *r)
{
	return r->ops->recycle != NULL;
}

const void *lm__source_data(const lm_source *s, size_t *len, bool *more)
{
	const struct lm_backend_event *ev = s->r->io_event;

	if (!ev || !ev->data || ev->tag != s->handle)
		return NULL;
	*len = ev->len;
	*more = ev->events & LM__IO_MORE;
	return ev->data;
}

void lm__source_again(lm_source *s)
{
	if (s->type == LM__SRC_IO && s->io.watched && (s->io.events & LM__IO_EDGE))
		s->r->ops->again(s->r->backend, s->io.fd);
}

/* Outside dispatch, re-program the timerfd at once (run_once does it after
 * dispatch): an embedding loop may never call run_once until it fires. */
static void timers_changed(lm_reactor *r)
{
	int err;

	if (r->dispatching)
		return;
	err = lm__timers_arm(r);
	if (err < 0)
		lm_log_warn("timerfd: %s", strerror(-err));
}

static int timer_program_at(struct lm_source *s, uint64_t deadline, uint64_t period_ns)
{
	lm_reactor *r = s->r;
	int err;

	lm__heap_remove(r, s);
	s->timer.deadline = deadline;
	s->timer.period = period_ns;
	s->enabled = true;
	err = lm__heap_push(r, s);
	timers_changed(r);
	lm__source_alive_sync(s);
	return err;
}

static int timer_program(struct lm_source *s, uint64_t first_ns, uint64_t period_ns)
{
	if (s->timer.fd >= 0)
		return lm__clock_timer_set(s, first_ns, period_ns);
	return timer_program_at(s, lm__deadline_add(lm__now_ns(), first_ns), period_ns);
}

static int add_heap_timer(lm_reactor *r, lm_source **ret, uint64_t deadline, uint64_t period_ns,
			  lm_timer_cb cb, void *userdata)
{
	struct lm_source *s = source_new(r, LM__SRC_TIMER, userdata, !ret);

	if (!s)
		return -ENOMEM;
	s->timer.cb = cb;
	s->timer.heap_idx = SIZE_MAX;
	s->timer.fd = -1;
	return lm__source_added(s, ret, timer_program_at(s, deadline, period_ns));
}

int lm_reactor_add_timer(lm_reactor *r, lm_source **ret, uint64_t first_ns, uint64_t period_ns,
			 lm_timer_cb cb, void *userdata)
{
	return_if_invalid(!r || !cb);
	return_if_forked(r);
	return add_heap_timer(r, ret, lm__deadline_add(lm__now_ns(), first_ns), period_ns, cb,
			      userdata);
}

int lm_reactor_add_signal(lm_reactor *r, lm_source **ret, int signo, lm_signal_cb cb,
			  void *userdata)
{
	struct lm_source *s;
	sigset_t one, old;
	int err;

	return_if_invalid(!r || !cb || signo <= 0 || signo >= _NSIG);
	return_if_invalid(signo == SIGKILL || signo == SIGSTOP);
	return_if_forked(r);
	if (r->signals[signo])
		return -EBUSY;
	s = source_new(r, LM__SRC_SIGNAL, userdata, !ret);
	if (!s)
		return -ENOMEM;
	s->sig.signo = signo;
	s->sig.cb = cb;
	sigemptyset(&one);
	sigaddset(&one, signo);
	err = pthread_sigmask(SIG_BLOCK, &one, &old);
	if (err) {
		LIST_REMOVE(s, all_link);
		free(s);
		return -err;
	}
	s->sig.was_blocked = sigismember(&old, signo);
	sigaddset(&r->signal_mask, signo);
	r->signals[signo] = s;
	return lm__source_added(s, ret, signal_mask_update(r));
}

static int add_callback_source(lm_reactor *r, lm_source **ret, enum lm__source_type type,
			       lm_source_cb cb, void *userdata)
{
	struct lm_source *s;

	return_if_invalid(!r || !cb);
	return_if_forked(r);
	s = source_new(r, type, userdata, !ret);
	if (!s)
		return -ENOMEM;
	s->defer.cb = cb;
	if (type == LM__SRC_PREPARE) {
		list_move(s, &r->prepares);
		r->prepare_due = true;
	} else {
		list_move(s, type == LM__SRC_DEFER ? &r->defers : &r->exits);
	}
	if (type == LM__SRC_DEFER && r->embedded && !r->dispatching)
		kick(r);
	lm__source_alive_sync(s);
	if (ret)
		*ret = s;
	return 0;
}

int lm_reactor_add_defer(lm_reactor *r, lm_source **ret, lm_source_cb cb, void *userdata)
{
	return add_callback_source(r, ret, LM__SRC_DEFER, cb, userdata);
}

int lm_reactor_add_exit(lm_reactor *r, lm_source **ret, lm_source_cb cb, void *userdata)
{
	return add_callback_source(r, ret, LM__SRC_EXIT, cb, userdata);
}

int lm_reactor_add_prepare(lm_reactor *r, lm_source **ret, lm_source_cb cb, void *userdata)
{
	return add_callback_source(r, ret, LM__SRC_PREPARE, cb, userdata);
}

int lm_reactor_add_timer_clock(lm_reactor *r, lm_source **ret, clockid_t clock, uint64_t when_ns,
			       uint64_t period_ns, unsigned flags, lm_timer_cb cb, void *userdata)
{
	return_if_invalid(!r || !cb || (flags & ~(unsigned)LM_TIMER_ABSOLUTE));
	return_if_invalid(clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME &&
			  clock != CLOCK_REALTIME);
	return_if_forked(r);
	if (clock != CLOCK_MONOTONIC)
		return lm__clock_timer_add(r, ret, clock, when_ns, period_ns, flags, cb, userdata);
	if (!(flags & LM_TIMER_ABSOLUTE))
		return lm_reactor_add_timer(r, ret, when_ns, period_ns, cb, userdata);
	return add_heap_timer(r, ret, when_ns, period_ns, cb, userdata);
}

int lm_reactor_post(lm_reactor *r, lm_post_cb fn, void *userdata)
{
	struct lm__post *p;
	uint64_t one = 1;
	int err = 0;

	if (!r || !fn)
		return -EINVAL;
	return_if_forked(r);
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->userdata = userdata;
	pthread_mutex_lock(&r->post_lock);
	if (r->shutdown) {
		err = -ESHUTDOWN;
	} else {
		STAILQ_INSERT_TAIL(&r->posts, p, link);
		/* One wake-up per batch: only the post that finds no unread
		 * wake-up writes the eventfd. */
		if (!r->post_kicked) {
			if (write(r->post_fd, &one, sizeof(one)) == sizeof(one))
				r->post_kicked = true;
			else
				lm_log_warn("eventfd write: %m");
		}
		/* The reactor may be waiting where the eventfd cannot wake it. */
		if (r->lone_waiting && r->lone)
			r->lone->ops->kick(r->lone);
	}
	pthread_mutex_unlock(&r->post_lock);
	if (err)
		free(p);
	return err;
}

int lm_io_set_events(lm_source *s, uint32_t events)
{
	uint32_t old;
	int err;

	return_if_invalid(!s || s->dead || s->type != LM__SRC_IO);
	return_if_invalid(events & ~(uint32_t)(LM_IO_IN | LM_IO_OUT));
	return_if_forked(s->r);
	events |= s->io.events & LM__IO_FLAGS;
	if (events == s->io.events)
		return 0;
	old = s->io.events;
	s->io.events = events;
	err = io_watch(s);
	if (err < 0)
		s->io.events = old;
	lm__source_alive_sync(s);
	return err;
}

int lm_io_get_fd(const lm_source *s)
{
	return_if_invalid(!s || s->type != LM__SRC_IO);
	return s->io.fd;
}

int lm_timer_set(lm_source *s, uint64_t first_ns, uint64_t period_ns)
{
	return_if_invalid(!s || s->dead || s->type != LM__SRC_TIMER);
	return_if_forked(s->r);
	return timer_program(s, first_ns, period_ns);
}

int lm_source_set_enabled(lm_source *s, bool enabled)
{
	lm_reactor *r;
	int err = 0;

	return_if_invalid(!s || s->dead);
	return_if_forked(s->r);
	if (s->enabled == enabled)
		return 0;
	r = s->r;
	s->enabled = enabled;
	switch (s->type) {
	case LM__SRC_IO:
		err = io_watch(s);
		break;
	case LM__SRC_TIMER:
		if (s->timer.fd >= 0) {
			err = lm__clock_timer_watch(s);
			break;
		}
		if (enabled)
			err = lm__heap_push(r, s);
		else
			lm__heap_remove(r, s);
		timers_changed(r);
		break;
	case LM__SRC_CHILD:
		err = lm__child_watch(s);
		break;
	case LM__SRC_PREPARE:
		r->prepare_due |= enabled;
		break;
	case LM__SRC_SIGNAL:
		/* Disabled: still blocked, so it waits pending in the kernel. */
		if (enabled)
			sigaddset(&r->signal_mask, s->sig.signo);
		else
			sigdelset(&r->signal_mask, s->sig.signo);
		err = signal_mask_update(r);
		break;
	case LM__SRC_DEFER:
		list_move(s, enabled ? &r->defers : NULL);
		if (enabled && r->embedded && !r->dispatching)
			kick(r);
		break;
	default:
		break;
	}
	if (err < 0)
		s->enabled = !enabled;
	lm__source_alive_sync(s);
	return err;
}

int lm_source_set_keepalive(lm_source *s, bool keepalive)
{
	return_if_invalid(!s || s->dead);
	return_if_forked(s->r);
	s->keepalive = keepalive;
	lm__source_alive_sync(s);
	return 0;
}

bool lm_source_get_keepalive(const lm_source *s)
{
	return s && s->keepalive;
}

bool lm_source_get_enabled(const lm_source *s)
{
	return s && s->enabled;
}

void *lm_source_get_userdata(const lm_source *s)
{
	return s ? s->userdata : NULL;
}

lm_reactor *lm_source_get_reactor(const lm_source *s)
{
	return s ? s->r : NULL;
}
