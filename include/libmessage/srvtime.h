/* SPDX-License-Identifier: MIT */
/* The srvtime sample service: method getdate and signal date. */
#ifndef LIBMESSAGE_SRVTIME_H
#define LIBMESSAGE_SRVTIME_H

#include <stdint.h>
#include <time.h>

#include "service.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Payload of the getdate reply and of the date signal: the declared type
 * LM_SRVTIME_TYPE, one CBOR map (RFC 8949) with the seconds since the epoch,
 * the nanoseconds (0..999999999) and the ISO-8601 UTC text
 * "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ", from CLOCK_REALTIME; at most
 * LM_SRVTIME_CBOR_MAX bytes. getdate takes no arguments (type "()").
 * lmctl shows it as JSON: {"sec": ..., "nsec": ..., "iso": "..."}.
 *
 * Servers of libmessage 0.1.0 sent the untyped layout below instead (48
 * bytes, little-endian), which lm_srvtime_encode() still writes and
 * lm_srvtime_decode() still reads:
 *   offset 0   int64  seconds since the epoch
 *   offset 8   uint32 nanoseconds (0..999999999)
 *   offset 12  uint32 0 (reserved)
 *   offset 16  char[32] ISO-8601 UTC text, "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ",
 *              NUL-padded
 */
#define LM_SRVTIME_ENDPOINT          "unix:srvtime"
#define LM_SRVTIME_PAYLOAD_SIZE      48
#define LM_SRVTIME_TYPE              "{sec: int, nsec: uint, iso: text}"
#define LM_SRVTIME_CBOR_MAX          64
#define LM_SRVTIME_DEFAULT_PERIOD_NS (1000ull * 1000 * 1000)

struct lm_srvtime {
	int64_t sec;
	uint32_t nsec;
	char iso[32]; /* NUL-terminated */
};

typedef struct lm_srvtime_server lm_srvtime_server;

/* An async getdate completed: status 0 and t, or -errno and t NULL. */
typedef void (*lm_srvtime_cb)(lm_client *c, int status, const struct lm_srvtime *t, void *userdata);
/* A date signal: dropped = signals lost before this one. */
typedef void (*lm_srvtime_watch_cb)(lm_client *c, const struct lm_srvtime *t, uint64_t dropped,
				    void *userdata);

/* Serve getdate and date on endpoint (NULL: LM_SRVTIME_ENDPOINT), emitting
 * date every period_ns (0: 1 s). Errors of lm_server_new(). */
LM_EXPORT int lm_srvtime_server_new(lm_srvtime_server **ret, lm_reactor *r, const char *endpoint,
				    uint64_t period_ns);
/* The same on fd, a listening unix socket passed by systemd or another
 * supervisor (see lm_server_new_fd(): the server owns fd on success). */
LM_EXPORT int lm_srvtime_server_new_fd(lm_srvtime_server **ret, lm_reactor *r, int fd,
				       uint64_t period_ns);
LM_EXPORT void lm_srvtime_server_free(lm_srvtime_server *s);
/* The underlying server (to add methods, count clients). */
LM_EXPORT lm_server *lm_srvtime_server_get(lm_srvtime_server *s);

/* Encode t into out: the 48-byte layout of 0.1.0 servers. */
LM_EXPORT void lm_srvtime_encode(uint8_t out[LM_SRVTIME_PAYLOAD_SIZE], const struct timespec *t);
/* Decode a payload: the CBOR map of LM_SRVTIME_TYPE, or the 48-byte layout.
 * -EBADMSG if it is neither. */
LM_EXPORT int lm_srvtime_decode(struct lm_srvtime *ret, const void *payload, size_t len);

/* getdate, waiting for the answer (see lm_client_call_sync). timeout_ns < 0:
 * the client's default. */
LM_EXPORT int lm_srvtime_getdate(lm_client *c, int64_t timeout_ns, struct lm_srvtime *ret);
/* getdate without waiting: cb runs once, unless this returns an error. */
LM_EXPORT int lm_srvtime_getdate_async(lm_client *c, int64_t timeout_ns, lm_srvtime_cb cb,
				       void *userdata);
/* Subscribe to date (one watcher per client; -EEXIST for a second). */
LM_EXPORT int lm_srvtime_watch(lm_client *c, lm_srvtime_watch_cb cb, void *userdata);
/* Stop watching and free what lm_srvtime_watch() allocated: call it before
 * lm_client_free(). -ENOENT if not watching. */
LM_EXPORT int lm_srvtime_unwatch(lm_client *c);

#ifdef __cplusplus
}
#endif

#endif
