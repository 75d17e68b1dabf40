/* SPDX-License-Identifier: MIT */
/* libmessage reactor: one event loop per thread over epoll or io_uring. */
#ifndef LIBMESSAGE_REACTOR_H
#define LIBMESSAGE_REACTOR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LM_EXPORT __attribute__((visibility("default")))

/*
 * Conventions for every function here: an int return is >= 0 on success and
 * a negative errno on failure; a `ret` output parameter is written only on
 * success; a function that fails never calls its callback.
 *
 * Threads: a reactor belongs to the thread that runs it. Nothing here is
 * thread-safe except lm_reactor_post(), lm_reactor_ref() and
 * lm_reactor_unref(). It may be created in one thread and run in another,
 * and handed from one thread to the next between runs (with io_uring the
 * first wait in the new thread rebuilds the ring: docs/backends.md).
 *
 * After fork(): a reactor remembers the process that made it. In any other
 * process (a child of fork(), which inherits r and everything made on it),
 * nothing touches kernel state it shares with that process:
 *  - lm_source_free(), lm_reactor_free(), and the frees of what was made on
 *    r (lm_conn_free(), lm_listener_free(), lm_client_free(),
 *    lm_server_free()) release the child's memory and close its own copies
 *    of the fds, and do nothing else: no epoll or io_uring registration of
 *    the parent is removed or cancelled, no timerfd or signalfd changed, no
 *    socket, FIFO, queue or lock file unlinked, no message (BYE) sent on a
 *    connection; callbacks that a free would run (a client's pending calls
 *    failed with -ECANCELED) still run;
 *  - every other call that acts returns -ECHILD (lm_reactor_run(),
 *    lm_reactor_run_once(), lm_reactor_fd(), every add, lm_reactor_post(),
 *    lm_io_set_events(), lm_timer_set(), lm_source_set_enabled(), and the
 *    transport and service calls that send, connect or listen);
 *    lm_reactor_stop() does nothing; getters still answer.
 * So a child may free what it inherited, or leave it, and exec or exit;
 * the parent's reactor goes on as before. A child forked from inside a
 * callback must not return into the reactor (exec or _exit first). The
 * child is known by its process id, refreshed in the child by a
 * pthread_atfork() handler: a child made by fork() is covered; one made by
 * a raw clone() or vfork() must only exec or _exit.
 */

/* ---- types ---- */

typedef struct lm_reactor lm_reactor;
typedef struct lm_source lm_source;

enum lm_backend {
	LM_BACKEND_AUTO =
	    0, /* $LM_BACKEND (epoll|uring|io_uring|auto), else the preferred one with fallback */
	LM_BACKEND_EPOLL = 1,
	LM_BACKEND_URING = 2,
};

struct lm_reactor_options {
	enum lm_backend backend;
};

/* Event bits of io sources. LM_IO_ERR and LM_IO_HUP are always reported. */
enum {
	LM_IO_IN = 1u << 0,
	LM_IO_OUT = 1u << 1,
	LM_IO_ERR = 1u << 2,
	LM_IO_HUP = 1u << 3,
};

enum lm_log_level {
	LM_LOG_ERROR = 0,
	LM_LOG_WARN = 1,
	LM_LOG_INFO = 2,
	LM_LOG_DEBUG = 3,
};

/* ---- callbacks ---- */

/* fd is readable/writable/...: events is a mask of LM_IO_* limited to what is
 * wanted, plus ERR/HUP. */
typedef void (*lm_io_cb)(lm_source *s, int fd, uint32_t events, void *userdata);
/* expirations >= 1: how many periods elapsed since the last call (overruns);
 * 0 only for a CLOCK_REALTIME timer, when the wall clock was set. */
typedef void (*lm_timer_cb)(lm_source *s, uint64_t expirations, void *userdata);
typedef void (*lm_signal_cb)(lm_source *s, const struct signalfd_siginfo *si, void *userdata);
/* Defer, exit and prepare sources. */
typedef void (*lm_source_cb)(lm_source *s, void *userdata);
/* A child process ended: si as waitid(2) fills it (si_pid, si_code CLD_EXITED,
 * CLD_KILLED or CLD_DUMPED, si_status the exit code or the signal). si_code
 * 0: it ended but its status was taken by someone else (another wait, or
 * SIGCHLD set to SIG_IGN). */
typedef void (*lm_child_cb)(lm_source *s, const siginfo_t *si, void *userdata);
typedef void (*lm_post_cb)(void *userdata);
typedef void (*lm_log_cb)(enum lm_log_level level, const char *msg, void *userdata);

/* ---- lifetime ---- */

/*
 * Create a reactor. opts may be NULL (backend AUTO). AUTO reads $LM_BACKEND;
 * an unknown value there is -EINVAL. Asking for io_uring where the kernel
 * refuses it returns the kernel's error (-EPERM, -ENOSYS, ...); AUTO falls
 * back to epoll with a debug log line.
 */
LM_EXPORT int lm_reactor_new(lm_reactor **ret, const struct lm_reactor_options *opts);

/*
 * Free the reactor and every source still attached (without calling their
 * callbacks; exit sources run only through lm_reactor_stop()). Posts queued
 * and not yet run are dropped. Must not be called from a callback of r.
 * Free what was made on r first (connections, listeners, clients, servers:
 * they hold sources of r and are registered with it); freeing one after r
 * is undefined.
 * NULL is a no-op. Posts that race with it return -ESHUTDOWN provided the
 * posting thread holds a reference (lm_reactor_ref()).
 */
LM_EXPORT void lm_reactor_free(lm_reactor *r);

/*
 * Thread-safe reference counting of the reactor's memory, for threads that
 * post to it: the reactor is torn down by lm_reactor_free(), but its memory
 * lives until the last reference is dropped, so a late lm_reactor_post()
 * returns -ESHUTDOWN instead of touching freed memory. NULL-safe.
 */
LM_EXPORT lm_reactor *lm_reactor_ref(lm_reactor *r);
LM_EXPORT void lm_reactor_unref(lm_reactor *r);

/* "epoll" or "io_uring". */
LM_EXPORT const char *lm_reactor_backend_name(const lm_reactor *r);

/* True in a process other than the one that made r (a child after fork():
 * see "After fork()" above), where r's calls return -ECHILD and its frees
 * only release memory. False for NULL. For code built on the reactor that
 * owns kernel state of its own (files to unlink, peers to say goodbye to). */
LM_EXPORT bool lm_reactor_forked(const lm_reactor *r);

/* ---- running ---- */

/*
 * Run until lm_reactor_stop(), or until no source keeps the loop alive (see
 * lm_source_set_keepalive(); then it stops with code 0); then run the exit
 * sources (in the order they were added) and return the stop code. Posts
 * queued and not yet run are run first. -EBUSY if called from a callback.
 */
LM_EXPORT int lm_reactor_run(lm_reactor *r);

/*
 * One iteration: write the connections' output gathered since the last one
 * (lm_conn_cork(); if there was any, it does not block then), wait up to
 * timeout_ns (-1 forever, 0 poll) for work, then dispatch it and write the
 * output its callbacks gathered. Returns the number of callbacks run (0 on
 * timeout), or -errno (-EBUSY from a callback). If lm_reactor_stop() was
 * called during this iteration, the exit sources run at its end.
 *
 * A reactor whose only sources are one mq client connection waits for it
 * in the queue's own blocking receive, at most 10 ms at a time, rather than
 * in its backend (docs/reactor.md, "Lone waits"): faster, and the same to
 * its callbacks, except that a server killed outright is seen up to 10 ms
 * later. Posts, timers, signal handlers and the server's close end such a
 * wait at once; LM_LONE_NS=0 in the environment turns it off.
 */
LM_EXPORT int lm_reactor_run_once(lm_reactor *r, int64_t timeout_ns);

/* Ask the loop to stop after the current iteration; code is what
 * lm_reactor_run() returns. */
LM_EXPORT void lm_reactor_stop(lm_reactor *r, int code);

/*
 * One fd that is readable whenever lm_reactor_run_once(r, 0) has work (an
 * fd ready, a timer due, a post, a defer), from the moment the work is
 * there: put it in a foreign poll()/GLib/libuv loop to embed the reactor,
 * and call lm_reactor_run_once(r, 0) when it is readable. Callbacks are
 * those of lm_reactor_run(): an io source is called only while its fd is
 * ready. The fd may be readable with nothing left to run (run_once then
 * returns 0). On io_uring the first call rebuilds the ring out of
 * DEFER_TASKRUN (docs/backends.md); it can fail with the kernel's error.
 */
LM_EXPORT int lm_reactor_fd(const lm_reactor *r);

/* CLOCK_MONOTONIC in ns, read at most once per iteration: by the first call
 * (or timer dispatch) after the reactor's wait; later calls in the same
 * iteration return the same value. */
LM_EXPORT uint64_t lm_reactor_now(const lm_reactor *r);

/* ---- sources ----
 *
 * Every add function: ret may be NULL, in which case the source is
 * "floating": owned by the reactor, freed with it (and, for a one-shot timer
 * or a defer source, right after its callback). Otherwise the caller owns it
 * and frees it with lm_source_free().
 */

/*
 * Watch fd (level-triggered, persistent) for events (LM_IO_IN | LM_IO_OUT).
 * -EINVAL on a negative fd or unknown bits; -EEXIST if the number fd is held
 * by another io source of this reactor (one that watches it: enabled, with
 * events); -EBADF/-EPERM from the kernel for a bad or unpollable fd.
 * The fd stays the caller's: free the source before closing it.
 *
 * Closing it first is misuse the reactor survives, on both backends alike
 * (never memory corruption, never another source's events):
 *  - the number stays the source's until it is freed: an add on it, even
 *    for a new file that reused it, is -EEXIST;
 *  - while the source lives, a dup of the closed fd kept open elsewhere
 *    may still make its callback run (the kernel watches the file, not the
 *    number), with the closed number as fd;
 *  - once it is freed, nothing of it is reported, and what the kernel kept
 *    for it is taken back: on epoll that needs the number free and kcmp(2);
 *    where the number was reused meanwhile, epoll keeps the old file's
 *    registration until that file is closed (events for it are dropped,
 *    but they may wake the loop), and a warning is logged.
 */
LM_EXPORT int lm_reactor_add_io(lm_reactor *r, lm_source **ret, int fd, uint32_t events,
				lm_io_cb cb, void *userdata);

/* A CLOCK_MONOTONIC timer due first_ns from now, then every period_ns
 * (0: one-shot) keeping its phase: a late callback gets the number of
 * periods elapsed and the next deadline stays on the grid. Timers with the
 * same deadline fire in the order they were set. A one-shot timer is
 * disabled after it fires. Any value is valid: a deadline past the end of
 * the clock (now + first_ns, or the next period, beyond 2^64 - 1 ns)
 * saturates to "never", so a timer with a huge period fires once and then
 * stays enabled without firing again. */
LM_EXPORT int lm_reactor_add_timer(lm_reactor *r, lm_source **ret, uint64_t first_ns,
				   uint64_t period_ns, lm_timer_cb cb, void *userdata);

/*
 * Deliver signo through the reactor's signalfd. The signal is blocked in the
 * calling thread (which should be the reactor's thread). The application must
 * block it in its other threads too (or create them after this call, since
 * threads inherit the mask), else the kernel may deliver it to them; and a
 * child it spawns inherits the blocked mask: restore the mask after fork()
 * and before exec(). Removing the source restores the signal's previous
 * blocked state in the calling thread. Two signals of one kind that arrive
 * before the loop reads them coalesce into one callback (standard signals
 * are not queued by the kernel).
 * -EINVAL: signo out of range, SIGKILL or SIGSTOP; -EBUSY: signo already has
 * a source on this reactor.
 */
LM_EXPORT int lm_reactor_add_signal(lm_reactor *r, lm_source **ret, int signo, lm_signal_cb cb,
				    void *userdata);

/* Run cb once on the next iteration (then the source is disabled; enable it
 * again to run it again). Defer sources run in the order they were enabled. */
LM_EXPORT int lm_reactor_add_defer(lm_reactor *r, lm_source **ret, lm_source_cb cb, void *userdata);

/* Run cb when the loop stops (lm_reactor_stop()), in the order added. */
LM_EXPORT int lm_reactor_add_exit(lm_reactor *r, lm_source **ret, lm_source_cb cb, void *userdata);

/*
 * Run cb once per iteration, before the reactor waits (sd-event's prepare,
 * ae's beforesleep): at the end of each lm_reactor_run_once() round, after
 * its callbacks, defers and exit sources, so before the next wait whoever
 * waits (lm_reactor_run(), a run_once loop, or a foreign loop embedding
 * lm_reactor_fd()); a new or re-enabled one also runs at the start of the
 * next lm_reactor_run_once(). Prepare sources run in the order added, before
 * the output connections gathered in the round is written, so what cb sends
 * goes out in the same round. They are not counted in run_once's return.
 */
LM_EXPORT int lm_reactor_add_prepare(lm_reactor *r, lm_source **ret, lm_source_cb cb,
				     void *userdata);

/* Flags of lm_reactor_add_child(). */
enum {
	/* Freeing the source before the child ended sends it SIGKILL and
	 * reaps it (the free waits for it to die); not in a child of fork()
	 * (see "After fork()"), where the free only closes its pidfd copy. */
	LM_CHILD_KILL_ON_FREE = 1u << 0,
};

/*
 * Tell when child process pid ends, through a pidfd (pidfd_open(2), Linux
 * 5.3): cb runs once with its status (waitid(P_PIDFD), which reaps it), then
 * the source is disabled (freed if floating). No SIGCHLD handler is needed,
 * and any number of reactors in one process may each watch their children.
 * pid must be a child of the calling process: -ECHILD otherwise, -ESRCH if
 * there is no such process, -EINVAL for bad flags. Freed before the child
 * ended (without LM_CHILD_KILL_ON_FREE), the child is left alone: reap it
 * yourself.
 */
LM_EXPORT int lm_reactor_add_child(lm_reactor *r, lm_source **ret, pid_t pid, unsigned flags,
				   lm_child_cb cb, void *userdata);
/* The same from a pidfd the caller has (clone3(CLONE_PIDFD), pidfd_open());
 * the source watches a copy of it: pidfd stays the caller's. -EBADF if it is
 * not a pidfd. */
LM_EXPORT int lm_reactor_add_child_pidfd(lm_reactor *r, lm_source **ret, int pidfd, unsigned flags,
					 lm_child_cb cb, void *userdata);
/* The pid of a child source; -EINVAL if s is not one. */
LM_EXPORT pid_t lm_child_get_pid(const lm_source *s);

/* Flags of lm_reactor_add_timer_clock(). */
enum {
	/* when_ns is a time on the clock (ns since its epoch), not from now. */
	LM_TIMER_ABSOLUTE = 1u << 0,
};

/*
 * A timer on another clock: CLOCK_MONOTONIC (as lm_reactor_add_timer(),
 * which LM_TIMER_ABSOLUTE makes absolute), CLOCK_BOOTTIME (it counts the
 * time the machine was suspended), or CLOCK_REALTIME (the wall clock). Due
 * at when_ns (from now, or absolute), then every period_ns (0: one-shot),
 * with the same callbacks, overrun counts, saturation and lm_timer_set()
 * (relative, on the timer's clock) as a monotonic timer.
 * A CLOCK_REALTIME timer is told when the wall clock is set (a jump, not a
 * slew: settimeofday, clock_settime, NTP stepping): its callback runs with
 * expirations 0 and the timer stays armed for the same deadline on the new
 * time (fired at once if that is past now). -EINVAL for another clock or
 * bad flags. Each such timer has a timerfd of its own.
 */
LM_EXPORT int lm_reactor_add_timer_clock(lm_reactor *r, lm_source **ret, clockid_t clock,
					 uint64_t when_ns, uint64_t period_ns, unsigned flags,
					 lm_timer_cb cb, void *userdata);

/*
 * Run fn(userdata) on the reactor's thread. The only call safe from any
 * thread. Posts are never lost or merged; those of one thread run in the
 * order posted; a batch of posts wakes the loop once. Allocates; not
 * async-signal-safe. -ESHUTDOWN once lm_reactor_free() has begun, -ENOMEM.
 */
LM_EXPORT int lm_reactor_post(lm_reactor *r, lm_post_cb fn, void *userdata);

/* Change an io source's interest. 0 stops watching without freeing. */
LM_EXPORT int lm_io_set_events(lm_source *s, uint32_t events);
/* -EINVAL if s is not an io source. */
LM_EXPORT int lm_io_get_fd(const lm_source *s);

/* Re-arm a timer: first_ns from now, then every period_ns (0 one-shot); also
 * enables it. -EINVAL if s is not a timer. */
LM_EXPORT int lm_timer_set(lm_source *s, uint64_t first_ns, uint64_t period_ns);

/* A disabled source gets no callback until enabled again: an io source stops
 * being watched, a timer keeps its deadline (a missed deadline fires on
 * enable), a signal stays blocked and pending in the kernel. */
LM_EXPORT int lm_source_set_enabled(lm_source *s, bool enabled);
LM_EXPORT bool lm_source_get_enabled(const lm_source *s);

/*
 * Whether s keeps lm_reactor_run() going (libuv's ref/unref, sd-event's
 * exit_on_idle): run() returns 0 once no enabled source that keeps it alive
 * remains. By default io sources (watching something), timers (with a
 * deadline that can come), signal sources, child sources (until their
 * child is reported) and defer sources (while pending) keep it alive;
 * prepare and exit sources never do, nor do the reactor's own fds. Posts:
 * those queued are run first, and a thread that holds a reference
 * (lm_reactor_ref(), as a thread that posts should) keeps the loop alive
 * until it drops it. Disabled sources do not.
 */
LM_EXPORT int lm_source_set_keepalive(lm_source *s, bool keepalive);
LM_EXPORT bool lm_source_get_keepalive(const lm_source *s);
LM_EXPORT void *lm_source_get_userdata(const lm_source *s);
LM_EXPORT lm_reactor *lm_source_get_reactor(const lm_source *s);

/*
 * Detach and free s. Safe from any callback, its own included: no callback
 * of s runs after this returns, and its memory is released after the
 * current dispatch. NULL-safe.
 */
LM_EXPORT void lm_source_free(lm_source *s);

/* ---- logging ----
 * The library never writes to stdout. By default warnings and errors go to
 * stderr; $LM_LOG=debug|info|warn|error sets the level. A handler replaces the
 * default output (NULL restores it); it may be called from any thread that
 * uses the library. */
LM_EXPORT void lm_set_log_handler(lm_log_cb cb, void *userdata);
LM_EXPORT void lm_set_log_level(enum lm_log_level level);
LM_EXPORT enum lm_log_level lm_get_log_level(void);
/* Whether stderr is systemd's journal stream ($JOURNAL_STREAM names its
 * device and inode; read once, at the first call or log line). The default
 * output then starts each line with its syslog priority ("<3>" error, "<4>"
 * warning, "<6>" info, "<7>" debug), which journald takes as the line's
 * priority. */
LM_EXPORT bool lm_log_stderr_is_journal(void);

#ifdef __cplusplus
}
#endif

#endif
