/* SPDX-License-Identifier: MIT */
/* The srvtime sample service, library part: server side and client helpers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cbor.h>

#include "libmessage/srvtime.h"
#include "libmessage/types.h"

struct lm_srvtime_server {
	lm_server *server;
	lm_source *timer;
};

LM_EXPORT void lm_srvtime_encode(uint8_t out[LM_SRVTIME_PAYLOAD_SIZE], const struct timespec *t)
{
	uint64_t sec = (uint64_t)t->tv_sec;
	uint32_t nsec = (uint32_t)t->tv_nsec;
	struct tm tm;
	char date[24];

	memset(out, 0, LM_SRVTIME_PAYLOAD_SIZE);
	for (int b = 0; b < 8; b++)
		out[b] = (uint8_t)(sec >> (8 * b));
	for (int b = 0; b < 4; b++)
		out[8 + b] = (uint8_t)(nsec >> (8 * b));
	gmtime_r(&t->tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf((char *)out + 16, 32, "%.19s.%09uZ", date, (unsigned)(nsec % 1000000000u));
}

/* The typed payload (LM_SRVTIME_TYPE, CBOR) into t; -EBADMSG if it is not. */
static int decode_cbor(struct lm_srvtime *t, const void *payload, size_t len)
{
	struct cbor_load_result res;
	struct cbor_pair *pairs;
	cbor_item_t *it;
	lm_type *type;
	int found = 0, err;

	/* Checked first: lm_type_check() refuses what cbor_load() would take
	 * gigabytes to build (a header that announces more than the payload). */
	err = lm_type_parse(&type, LM_SRVTIME_TYPE, NULL, 0);
	if (err < 0)
		return err;
	err = lm_type_check(type, payload, len, NULL, 0);
	lm_type_free(type);
	if (err < 0)
		return err == -ENOMEM ? err : -EBADMSG;
	err = -EBADMSG;
	it = cbor_load(payload, len, &res);
	if (!it)
		return -EBADMSG;
	if (res.read != len || !cbor_isa_map(it) || cbor_map_size(it) != 3)
		goto out;
	pairs = cbor_map_handle(it);
	for (size_t i = 0; i < 3; i++) {
		const cbor_item_t *k = pairs[i].key, *v = pairs[i].value;
		size_t kl;

		if (!cbor_isa_string(k) || !cbor_string_is_definite(k))
			goto out;
		kl = cbor_string_length(k);
		if (kl == 3 && !memcmp(cbor_string_handle(k), "sec", 3) && cbor_is_int(v) &&
		    cbor_get_int(v) <= INT64_MAX) {
			t->sec = cbor_isa_uint(v) ? (int64_t)cbor_get_int(v)
						  : -1 - (int64_t)cbor_get_int(v);
			found |= 1;
		} else if (kl == 4 && !memcmp(cbor_string_handle(k), "nsec", 4) &&
			   cbor_isa_uint(v) && cbor_get_int(v) <= 999999999) {
			t->nsec = (uint32_t)cbor_get_int(v);
			found |= 2;
		} else if (kl == 3 && !memcmp(cbor_string_handle(k), "iso", 3) &&
			   cbor_isa_string(v) && cbor_string_is_definite(v) &&
			   cbor_string_length(v) < sizeof(t->iso) &&
			   !memchr(cbor_string_handle(v), 0, cbor_string_length(v))) {
			memcpy(t->iso, cbor_string_handle(v), cbor_string_length(v));
			t->iso[cbor_string_length(v)] = 0;
			found |= 4;
		}
	}
	if (found == 7)
		err = 0;
out:
	cbor_decref(&it);
	return err;
}

LM_EXPORT int lm_srvtime_decode(struct lm_srvtime *ret, const void *payload, size_t len)
{
	const uint8_t *p = payload;
	struct lm_srvtime t = {0};
	uint64_t sec = 0;
	uint32_t nsec = 0;

	if (!ret || !payload)
		return -EBADMSG;
	if (decode_cbor(&t, payload, len) == 0) {
		*ret = t;
		return 0;
	}
	if (len != LM_SRVTIME_PAYLOAD_SIZE || !memchr(p + 16, 0, 32))
		return -EBADMSG;
	for (int b = 0; b < 8; b++)
		sec |= (uint64_t)p[b] << (8 * b);
	for (int b = 0; b < 4; b++)
		nsec |= (uint32_t)p[8 + b] << (8 * b);
	if (nsec > 999999999)
		return -EBADMSG;
	ret->sec = (int64_t)sec;
	ret->nsec = nsec;
	memcpy(ret->iso, p + 16, 32);
	return 0;
}

/* The time now as the typed payload (CBOR map of LM_SRVTIME_TYPE) into out;
 * returns its length, 0 if out of memory. */
static size_t now_payload(uint8_t out[LM_SRVTIME_CBOR_MAX])
{
	uint8_t legacy[LM_SRVTIME_PAYLOAD_SIZE];
	struct lm_srvtime t;
	struct timespec ts;
	cbor_item_t *map = cbor_new_definite_map(3);
	const char *keys[3] = {"sec", "nsec", "iso"};
	cbor_item_t *vals[3];
	size_t n = 0;
	bool ok = map != NULL;

	clock_gettime(CLOCK_REALTIME, &ts);
	lm_srvtime_encode(legacy, &ts); /* the ISO text, one way for both */
	lm_srvtime_decode(&t, legacy, sizeof(legacy));
	vals[0] = t.sec >= 0 ? cbor_build_uint64((uint64_t)t.sec)
			     : cbor_build_negint64((uint64_t)(-1 - t.sec));
	vals[1] = cbor_build_uint32(t.nsec);
	vals[2] = cbor_build_string(t.iso);
	for (int i = 0; i < 3; i++) {
		cbor_item_t *k = cbor_build_string(keys[i]);

		ok = ok && k && vals[i] && cbor_map_add(map, (struct cbor_pair){k, vals[i]});
		if (k)
			cbor_decref(&k);
		if (vals[i])
			cbor_decref(&vals[i]);
	}
	if (ok)
		n = cbor_serialize(map, out, LM_SRVTIME_CBOR_MAX);
	if (map)
		cbor_decref(&map);
	return n;
}

static void method_getdate(lm_call *call, const void *payload, size_t len, void *userdata)
{
	uint8_t out[LM_SRVTIME_CBOR_MAX];
	size_t n = now_payload(out);

	if (n)
		lm_call_reply(call, out, n);
	else
		lm_call_error(call, "lm.Failed", "out of memory");
}

static const struct lm_method srvtime_methods[] = {
    {"getdate", method_getdate},
};

static void tick(lm_source *src, uint64_t expirations, void *userdata)
{
	lm_srvtime_server *s = userdata;
	uint8_t out[LM_SRVTIME_CBOR_MAX];
	size_t n = now_payload(out);

	if (n)
		lm_server_emit(s->server, "date", out, n);
}

/* Serve on endpoint, or when it is NULL, on the listening unix socket fd. */
static int srvtime_new(lm_srvtime_server **ret, lm_reactor *r, const char *endpoint, int fd,
		       uint64_t period_ns)
{
	struct lm_server_options o = {.name = "srvtime"};
	lm_srvtime_server *s;
	int err;

	if (!period_ns)
		period_ns = LM_SRVTIME_DEFAULT_PERIOD_NS;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (endpoint)
		err = lm_server_new(&s->server, r, endpoint, &o);
	else
		err = lm_server_new_fd(&s->server, r, "unix", fd, &o);
	if (err < 0)
		goto fail;
	if ((err = lm_server_add_methods(s->server, srvtime_methods, 1, s)) < 0 ||
	    (err = lm_server_set_method_type(s->server, "getdate", "()", LM_SRVTIME_TYPE)) < 0 ||
	    (err = lm_server_add_typed_signal(s->server, "date", LM_OVERFLOW_DROP_OLDEST,
					      LM_SRVTIME_TYPE)) < 0 ||
	    (err = lm_reactor_add_timer(r, &s->timer, period_ns, period_ns, tick, s)) < 0)
		goto fail;
	*ret = s;
	return 0;
fail:
	lm_srvtime_server_free(s);
	return err;
}

LM_EXPORT int lm_srvtime_server_new(lm_srvtime_server **ret, lm_reactor *r, const char *endpoint,
				    uint64_t period_ns)
{
	if (!ret || !r)
		return -EINVAL;
	return srvtime_new(ret, r, endpoint ? endpoint : LM_SRVTIME_ENDPOINT, -1, period_ns);
}

LM_EXPORT int lm_srvtime_server_new_fd(lm_srvtime_server **ret, lm_reactor *r, int fd,
				       uint64_t period_ns)
{
	if (!ret || !r || fd < 0)
		return -EINVAL;
	return srvtime_new(ret, r, NULL, fd, period_ns);
}

LM_EXPORT void lm_srvtime_server_free(lm_srvtime_server *s)
{
	if (!s)
		return;
	lm_source_free(s->timer);
	lm_server_free(s->server);
	free(s);
}

LM_EXPORT lm_server *lm_srvtime_server_get(lm_srvtime_server *s)
{
	return s ? s->server : NULL;
}

LM_EXPORT int lm_srvtime_getdate(lm_client *c, int64_t timeout_ns, struct lm_srvtime *ret)
{
	struct lm_reply *reply;
	struct lm_srvtime t;
	int err;

	if (!ret)
		return -EINVAL;
	err = lm_client_call_sync(c, "getdate", NULL, 0, timeout_ns, &reply);
	if (err < 0) {
		if (err == -EREMOTEIO)
			lm_reply_free(reply);
		return err;
	}
	err = lm_srvtime_decode(&t, reply->payload, reply->len);
	lm_reply_free(reply);
	if (err == 0)
		*ret = t;
	return err;
}

struct async_ctx {
	lm_srvtime_cb cb;
	void *userdata;
};

static void getdate_done(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct async_ctx ctx = *(struct async_ctx *)userdata;
	struct lm_srvtime t;
	int err = reply->status;

	free(userdata);
	if (err == 0)
		err = lm_srvtime_decode(&t, reply->payload, reply->len);
	ctx.cb(c, err, err == 0 ? &t : NULL, ctx.userdata);
}

LM_EXPORT int lm_srvtime_getdate_async(lm_client *c, int64_t timeout_ns, lm_srvtime_cb cb,
				       void *userdata)
{
	struct async_ctx *ctx;
	int err;

	if (!cb)
		return -EINVAL;
	ctx = malloc(sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	*ctx = (struct async_ctx){cb, userdata};
	err = lm_client_call(c, "getdate", NULL, 0, timeout_ns, getdate_done, ctx);
	if (err < 0)
		free(ctx);
	return err;
}

struct watch_ctx {
	lm_srvtime_watch_cb cb;
	void *userdata;
};

static void date_signal(lm_client *c, const char *signal, const void *payload, size_t len,
			uint64_t dropped, void *userdata)
{
	struct watch_ctx *w = userdata;
	struct lm_srvtime t;

	if (lm_srvtime_decode(&t, payload, len) == 0)
		w->cb(c, &t, dropped, w->userdata);
}

void *lm__client_sub_userdata(lm_client *c, const char *signal);

LM_EXPORT int lm_srvtime_watch(lm_client *c, lm_srvtime_watch_cb cb, void *userdata)
{
	/* Owned by the subscription; lm_srvtime_unwatch() frees it. */
	struct watch_ctx *w;
	int err;

	if (!c || !cb)
		return -EINVAL;
	w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct watch_ctx){cb, userdata};
	err = lm_client_subscribe(c, "date", date_signal, w);
	if (err < 0)
		free(w);
	return err;
}

LM_EXPORT int lm_srvtime_unwatch(lm_client *c)
{
	void *w = lm__client_sub_userdata(c, "date");
	int err = lm_client_unsubscribe(c, "date");

	if (err == 0)
		free(w);
	return err;
}
