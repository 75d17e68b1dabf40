/* SPDX-License-Identifier: MIT */
/* libmessage-systemd: socket activation, readiness, watchdog and journal for libmessage daemons. */
#ifndef LIBMESSAGE_SYSTEMD_H
#define LIBMESSAGE_SYSTEMD_H

#include <libmessage/reactor.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * libmessage-systemd is an optional library beside libmessage (pkg-config
 * libmessage-systemd), built on Debian's libsystemd. Nothing here needs a
 * running systemd: without its environment every call does nothing and
 * says so (returns 0). Same conventions as libmessage: >= 0 success,
 * -errno failure, ret written only on success. docs/systemd.md has the
 * whole story and the example units.
 */

/*
 * Socket activation: the fd systemd passed (LISTEN_FDS, LISTEN_PID,
 * LISTEN_FDNAMES; sd_listen_fds_with_names() semantics: nothing is passed
 * unless LISTEN_PID is this process) under the name name (the socket unit's
 * FileDescriptorName=), or, when no passed fd has that name, the only fd
 * passed. The environment is left as it is (the fds are close-on-exec), so
 * the call may be repeated. 1 and *ret set: serve on it with
 * lm_server_new_fd() or lm_listener_new_fd(), which own it from then on.
 * 0: nothing was passed (not activated). -ENOENT: several fds were passed
 * and none is named name. -EINVAL: name is NULL or empty, or the
 * environment is malformed.
 */
LM_EXPORT int lm_systemd_listen_fd(const char *name, int *ret);

/*
 * Send state (newline-separated VAR=value assignments, see sd_notify(3)) to
 * the service manager at $NOTIFY_SOCKET. > 0 sent, 0 when NOTIFY_SOCKET is
 * unset (not run by systemd with Type=notify), -errno.
 */
LM_EXPORT int lm_systemd_notify(const char *state);
/* "READY=1": call it once the daemon serves (its servers are listening). */
LM_EXPORT int lm_systemd_ready(void);
/* "STOPPING=1": call it when the daemon begins to stop. */
LM_EXPORT int lm_systemd_stopping(void);

/*
 * The watchdog: when $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or
 * this process, add a periodic timer to r that sends "WATCHDOG=1" every
 * half of that interval. The timer runs on the reactor's thread like every
 * other callback: a reactor stuck in a callback stops feeding the
 * watchdog, and systemd then acts (WatchdogSec=, Restart=). 1: started,
 * *ret (if ret is not NULL) is the timer (free it to stop; else it is
 * owned by r). 0: no watchdog was asked for, *ret is set to NULL.
 * -EINVAL (r NULL or a malformed environment), or lm_reactor_add_timer()'s
 * errors.
 */
LM_EXPORT int lm_systemd_watchdog_start(lm_reactor *r, lm_source **ret);

/*
 * The journal's native protocol: a lm_log_cb (for lm_set_log_handler())
 * that sends each libmessage log line to the journal with sd_journal_send()
 * as MESSAGE=, PRIORITY= (syslog level) and LM_LEVEL= (error, warning,
 * info, debug) fields. userdata is unused.
 */
LM_EXPORT void lm_systemd_journal_log(enum lm_log_level level, const char *msg, void *userdata);
/*
 * Install lm_systemd_journal_log when stderr is the journal's stream
 * (lm_log_stderr_is_journal()): 1 installed, 0 not (stderr is not the
 * journal: the default output stays).
 */
LM_EXPORT int lm_systemd_journal_install(void);

#ifdef __cplusplus
}
#endif

#endif
