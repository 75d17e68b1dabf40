/* SPDX-License-Identifier: MIT */
/* Private structures of the reactor, shared by its files. */
#ifndef LM_REACTOR_INTERNAL_H
#define LM_REACTOR_INTERNAL_H

#include <bsd/sys/queue.h>
#include <pthread.h>
#include <signal.h>

#include "backend.h"
#include "hooks-internal.h"
#include "libmessage/reactor.h"

#define LM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define LM_MAX_EVENTS    256

/* The type tag one switch dispatches on; the last three are the reactor's
 * own fds, embedded in struct lm_reactor. */
enum lm__source_type {
	LM__SRC_IO,
	LM__SRC_TIMER,
	LM__SRC_SIGNAL,
	LM__SRC_DEFER,
	LM__SRC_EXIT,
	LM__SRC_PREPARE,
	LM__SRC_CHILD,
	LM__SRC_TIMERFD,
	LM__SRC_SIGNALFD,
	LM__SRC_POSTFD,
};

TAILQ_HEAD(lm__source_list, lm_source);

struct lm_source {
	enum lm__source_type type;
	lm_reactor *r;
	/* Its handle, the tag of its backend registration (0: none): see
	 * struct lm__slot. */
	uint64_t handle;
	void *userdata;
	bool enabled;
	bool floating;  /* owned by the reactor: ret was NULL */
	bool dead;      /* freed during dispatch; memory released after it */
	bool keepalive; /* lm_source_set_keepalive() */
	bool alive;     /* counted in r->alive */
	LIST_ENTRY(lm_source) all_link;
	/* On one of the reactor's lists (defers, exits, garbage), named by list. */
	TAILQ_ENTRY(lm_source) link;
	struct lm__source_list *list;
	union {
		struct {
			int fd;
			uint32_t events;
			bool watched; /* registered with the backend */
			lm_io_cb cb;
		} io;
		struct {
			uint64_t deadline; /* on clock; LM__NEVER: never */
			uint64_t period;
			uint64_t seq;
			size_t heap_idx; /* SIZE_MAX when not in the heap */
			lm_timer_cb cb;
			/* -1: CLOCK_MONOTONIC, in the heap; else a timerfd of
			 * its own on clock, registered while enabled */
			int fd;
			clockid_t clock;
			bool registered;
		} timer;
		struct {
			int signo;
			bool was_blocked;
			lm_signal_cb cb;
		} sig;
		struct {
			lm_source_cb cb;
		} defer; /* and exit, prepare */
		struct {
			int pidfd;
			pid_t pid;
			unsigned flags;
			bool registered; /* with the backend */
			bool reported;   /* its end was reported (reaped) */
			lm_child_cb cb;
		} child;
	};
};

/*
 * Events reach a source only through a handle the reactor checks: the
 * backend's tag is a slot index (low 32 bits) and the slot's generation
 * (high 32 bits), never the source's address. Freeing a source empties
 * its slot and bumps the generation, so whatever the kernel still reports
 * for it (later in the same batch, or from a registration its fd outlived
 * when it was closed before the free) finds a stale handle and is dropped.
 */
struct lm__slot {
	struct lm_source *s; /* NULL: free, next is the next free one */
	uint32_t gen;
	uint32_t next;
};

struct lm__post {
	lm_post_cb fn;
	void *userdata;
	STAILQ_ENTRY(lm__post) link;
};
STAILQ_HEAD(lm__post_list, lm__post);

struct lm_reactor {
	const struct lm_backend_ops *ops;
	pid_t pid; /* the process that made it: in any other, nothing shared is touched */
	void *backend;
	/* the event being dispatched to an io source (lm__source_data): here
	 * with the other fields every iteration reads, not after events[] */
	const struct lm_backend_event *io_event;
	uint64_t now;   /* CLOCK_MONOTONIC of this iteration, once read */
	bool now_stale; /* not read since the last wait: lm__reactor_now() reads it */

	bool dispatching;
	bool exit_requested;
	bool exited;   /* exit sources ran in the last iteration */
	bool embedded; /* lm_reactor_fd() was asked: kick it for pending defers */
	int exit_code;

	LIST_HEAD(, lm_source) sources;
	struct lm__source_list defers;     /* enabled, waiting for the next iteration */
	struct lm__source_list defers_run; /* being dispatched now */
	struct lm__source_list exits;
	struct lm__source_list exits_run;
	struct lm__source_list garbage;
	struct lm__source_list prepares;
	struct lm__source_list prepares_run;
	bool prepare_due;              /* a prepare source was added or enabled */
	unsigned alive;                /* sources that keep lm_reactor_run() going */
	struct lm__flush_list flushes; /* run before the reactor next sleeps */

	/* lone waiters (hooks-internal.h): used when there is one */
	struct lm__lone_list lones;
	unsigned nlones;
	struct lm__lone *lone;        /* the one, when nlones == 1 */
	struct lm__lone *lone_fd_off; /* waited last: its fd is unwatched */
	int64_t lone_ns;     /* LM__LONE_NS, or LM_LONE_NS from the environment; 0: never */
	unsigned io_watched; /* io sources registered with the backend */
	unsigned fd_watched; /* other sources' fds registered (pidfds, timerfds) */

	/* the receive buffer its connections share (hooks-internal.h) */
	unsigned char *scratch;
	size_t scratch_size;
	bool scratch_taken;

	/* writes of fan-outs in one submission (fanout.c): made on first use */
	struct lm__fanout *fanout;
	struct lm__staged_list staged; /* for the end of the round */
	bool fanout_off;               /* refused by the kernel, or LM_FANOUT_URING=0 */
	uint64_t fanout_writes;

	/* timers: a min-heap on (deadline, seq) behind one timerfd */
	struct lm_source timerfd_src;
	int timer_fd;
	uint64_t timer_armed; /* deadline programmed in timer_fd, UINT64_MAX: none */
	uint64_t timer_seq;
	struct lm_source **heap;
	size_t heap_len, heap_cap;

	/* signals: one signalfd, created with the first signal source */
	struct lm_source signalfd_src;
	int signal_fd;
	sigset_t signal_mask;
	struct lm_source *signals[_NSIG];

	/* posts from any thread: eventfd + queue under a mutex */
	struct lm_source post_src;
	int post_fd;
	pthread_mutex_t post_lock;
	struct lm__post_list posts;
	bool post_kicked;  /* post_fd holds an unread wake-up */
	bool lone_waiting; /* under post_lock: a post kicks lone */
	bool shutdown;     /* lm_reactor_free() has begun: posts fail */
	int refs;

	/* the handles (struct lm__slot); io_byfd: the io source that holds
	 * each fd number, registered with the backend */
	struct lm__slot *slots;
	uint32_t nslots, slot_free;
	struct lm_source **io_byfd;
	size_t io_nfd;

	struct lm_backend_event events[LM_MAX_EVENTS];
};

/* Timer heap (timer.c). */
int lm__heap_push(lm_reactor *r, struct lm_source *s);
void lm__heap_remove(lm_reactor *r, struct lm_source *s);
struct lm_source *lm__heap_top(const lm_reactor *r);

uint64_t lm__now_ns(void);

/* A deadline that never comes: what every deadline computation saturates
 * to (the timerfd is then disarmed, and the timer never fires). */
#define LM__NEVER UINT64_MAX
/* t + ns, or LM__NEVER where that would wrap. */
uint64_t lm__deadline_add(uint64_t t, uint64_t ns);
/* a * b, or UINT64_MAX where that would wrap. */
uint64_t lm__mul_sat(uint64_t a, uint64_t b);

/* In a process other than r's (a child after fork()): lm_reactor_forked(). */
static inline bool lm__forked(const lm_reactor *r)
{
	extern pid_t lm__pid(void);

	return r->pid != lm__pid();
}

/* Frees the fan-out ring, if one was made (fanout.c). */
void lm__fanout_free(lm_reactor *r);
/* Make the staged writes and call their done() (fanout.c). */
void lm__fanout_run(lm_reactor *r);

/* For the sources in other files (child.c, timer.c): a new source with a
 * handle (so that it can be registered with the backend), or NULL; keep
 * r->alive right after a change of what source_keeps_alive() reads. */
struct lm_source *lm__source_new_watchable(lm_reactor *r, enum lm__source_type type, void *userdata,
					   bool floating);
void lm__source_alive_sync(struct lm_source *s);
/* The end of an add function: err < 0 frees s and is returned; else s is
 * counted alive, given to ret, and 0 returned. */
int lm__source_added(struct lm_source *s, lm_source **ret, int err);
/* Register an fd of a source other than io (a pidfd, a timerfd) with the
 * backend, or unregister it; *registered says which it is. */
int lm__reactor_watch_fd(lm_reactor *r, struct lm_source *s, int fd, bool *registered);
void lm__reactor_unwatch_fd(lm_reactor *r, struct lm_source *s, int fd, bool *registered);

/* Child sources (child.c). */
int lm__child_dispatch(lm_reactor *r, struct lm_source *s);
int lm__child_watch(struct lm_source *s);
void lm__child_detach(struct lm_source *s);

/* Timers with a timerfd of their own (timer.c): timer.fd >= 0. */
int lm__clock_timer_add(lm_reactor *r, lm_source **ret, clockid_t clock, uint64_t when_ns,
			uint64_t period_ns, unsigned flags, lm_timer_cb cb, void *userdata);
int lm__clock_timer_dispatch(lm_reactor *r, struct lm_source *s);
int lm__clock_timer_watch(struct lm_source *s);
int lm__clock_timer_set(struct lm_source *s, uint64_t first_ns, uint64_t period_ns);
void lm__clock_timer_detach(struct lm_source *s);

/* The iteration's time, read from the clock on first use after a wait. */
uint64_t lm__reactor_now(lm_reactor *r);

#endif
