/* SPDX-License-Identifier: MIT */
/* lmctl-test-server: a server with typed and untyped members, for lmctl's tests.
 * Usage: lmctl-test-server ENDPOINT [PERIOD_MS [BURST [MAX_QUEUE]]]: every
 * PERIOD_MS it emits BURST ticks ({n: uint}) and as many raw signals (text). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <libmessage/libmessage.h>

struct state {
	lm_server *s;
	uint64_t n;
	unsigned long burst; /* ticks per period */
};

/* add {a: int, b: int} -> {sum: int}: the server checked the type already. */
static void m_add(lm_call *call, const void *payload, size_t len, void *userdata)
{
	struct cbor_load_result res;
	cbor_item_t *it = cbor_load(payload, len, &res), *out, *k, *v;
	int64_t sum = 0;
	unsigned char buf[64];
	size_t n;

	for (size_t i = 0; i < cbor_map_size(it); i++) {
		cbor_item_t *x = cbor_map_handle(it)[i].value;
		sum += cbor_isa_uint(x) ? (int64_t)cbor_get_int(x) : -1 - (int64_t)cbor_get_int(x);
	}
	cbor_decref(&it);
	out = cbor_new_definite_map(1);
	k = cbor_build_string("sum");
	v = sum >= 0 ? cbor_build_uint64((uint64_t)sum) : cbor_build_negint64((uint64_t)(-1 - sum));
	cbor_map_add(out, (struct cbor_pair){k, v});
	n = cbor_serialize(out, buf, sizeof(buf));
	cbor_decref(&k);
	cbor_decref(&v);
	cbor_decref(&out);
	lm_call_reply(call, buf, n);
}

static void m_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, payload, len);
}

static void m_blob(lm_call *call, const void *payload, size_t len, void *userdata)
{
	static const unsigned char b[] = {0x00, 0x01, 0x02, 0xff, 'h', 'i'};

	lm_call_reply(call, b, sizeof(b));
}

static void m_fail(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_error(call, "test.Failed", "failed as asked");
}

/* Never answers (until the client goes): for timeouts. */
static void m_slow(lm_call *call, const void *payload, size_t len, void *userdata)
{
}

static void m_nothing(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, NULL, 0);
}

/* count {tags: [text], note: text?} -> uint */
static void m_count(lm_call *call, const void *payload, size_t len, void *userdata)
{
	struct cbor_load_result res;
	cbor_item_t *it = cbor_load(payload, len, &res);
	unsigned char buf[16];
	size_t n = 0;

	for (size_t i = 0; i < cbor_map_size(it); i++)
		if (cbor_isa_array(cbor_map_handle(it)[i].value))
			n = cbor_array_size(cbor_map_handle(it)[i].value);
	cbor_decref(&it);
	it = cbor_build_uint64(n);
	n = cbor_serialize(it, buf, sizeof(buf));
	cbor_decref(&it);
	lm_call_reply(call, buf, n);
}

static const struct lm_method methods[] = {
    {"add", m_add},   {"echo", m_echo},       {"blob", m_blob},   {"fail", m_fail},
    {"slow", m_slow}, {"nothing", m_nothing}, {"count", m_count},
};

static void tick_one(struct state *st)
{
	unsigned char buf[32];
	char text[32];
	cbor_item_t *m = cbor_new_definite_map(1), *k = cbor_build_string("n"),
		    *v = cbor_build_uint64(++st->n);
	size_t n;

	cbor_map_add(m, (struct cbor_pair){k, v});
	n = cbor_serialize(m, buf, sizeof(buf));
	cbor_decref(&k);
	cbor_decref(&v);
	cbor_decref(&m);
	lm_server_emit(st->s, "tick", buf, n);
	n = (size_t)snprintf(text, sizeof(text), "raw %llu", (unsigned long long)st->n);
	lm_server_emit(st->s, "raw", text, n);
}

static void tick(lm_source *src, uint64_t expirations, void *userdata)
{
	struct state *st = userdata;

	for (unsigned long i = 0; i < st->burst; i++)
		tick_one(st);
}

static void on_stop(lm_source *src, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(src), 0);
}

int main(int argc, char **argv)
{
	const char *endpoint = argc > 1 ? argv[1] : "unix:lmctl-test";
	unsigned long period_ms = argc > 2 ? strtoul(argv[2], NULL, 10) : 100;
	struct state st = {.burst = argc > 3 ? strtoul(argv[3], NULL, 10) : 1};
	struct lm_server_options o = {.name = "lmctl-test"};
	lm_reactor *r;
	int err;

	if (lm_reactor_new(&r, NULL) < 0)
		return 1;
	/* A small output queue per client, to see DROPPED notices. */
	o.transport.max_queue = argc > 4 ? strtoul(argv[4], NULL, 10) : 0;
	err = lm_server_new(&st.s, r, endpoint, &o);
	if (err < 0) {
		fprintf(stderr, "lmctl-test-server: %s: %s\n", endpoint, strerror(-err));
		return 1;
	}
	if (lm_server_add_methods(st.s, methods, sizeof(methods) / sizeof(methods[0]), &st) < 0 ||
	    lm_server_set_method_type(st.s, "add", "{a: int, b: int}", "{sum: int}") < 0 ||
	    lm_server_set_method_type(st.s, "nothing", "()", "()") < 0 ||
	    lm_server_set_method_type(st.s, "count", "{tags: [text], note: text?}", "uint") < 0 ||
	    lm_server_add_typed_signal(st.s, "tick", LM_OVERFLOW_DROP_OLDEST, "{n: uint}") < 0 ||
	    lm_server_add_signal(st.s, "raw", LM_OVERFLOW_DISCONNECT) < 0 ||
	    lm_reactor_add_timer(r, NULL, period_ms * 1000000ull, period_ms * 1000000ull, tick,
				 &st) < 0 ||
	    lm_reactor_add_signal(r, NULL, SIGINT, on_stop, NULL) < 0 ||
	    lm_reactor_add_signal(r, NULL, SIGTERM, on_stop, NULL) < 0) {
		fprintf(stderr, "lmctl-test-server: setup failed\n");
		return 1;
	}
	lm_reactor_run(r);
	lm_server_free(st.s);
	lm_reactor_free(r);
	return 0;
}
