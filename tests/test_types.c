/* SPDX-License-Identifier: MIT */
/* Declared types: the type language, the CBOR checker, and what a server does with types. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <libmessage/libmessage.h>

#include "lm_test.h"

static lm_type *parse_ok(const char *text)
{
	char err[200] = "";
	lm_type *t = NULL;
	int rc = lm_type_parse(&t, text, err, sizeof(err));

	cr_assert_eq(rc, 0, "'%s': %s", text, err);
	return t;
}

static void parse_bad(const char *text, const char *why)
{
	char err[200] = "";
	lm_type *t = NULL;

	cr_assert_eq(lm_type_parse(&t, text, err, sizeof(err)), -EINVAL, "'%s' parsed", text);
	cr_assert_null(t);
	cr_assert(strstr(err, why), "'%s': '%s' does not say '%s'", text, err, why);
}

Test(types, parse_and_format)
{
	static const char *const cases[][2] = {
	    {"int", "int"},
	    {"  {sec:int,nsec : uint , iso: text}", "{sec: int, nsec: uint, iso: text}"},
	    {"[text]", "[text]"},
	    {"[{a: bool?, b: [bytes]?}]?", "[{a: bool?, b: [bytes]?}]?"},
	    {"( )", "()"},
	    {"any", "any"},
	    {"float?", "float?"},
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lm_type *t = parse_ok(cases[i][0]);

		cr_assert_eq(lm_type_format(t, buf, sizeof(buf)), strlen(cases[i][1]));
		cr_assert_str_eq(buf, cases[i][1]);
		lm_type_free(t);
	}
	/* A short buffer: the length it needs, and what fits. */
	lm_type *t = parse_ok("{sec: int}");
	cr_assert_eq(lm_type_format(t, buf, 5), 10);
	cr_assert_str_eq(buf, "{sec");
	lm_type_free(t);
}

Test(types, walk)
{
	lm_type *t = parse_ok("{a: [int], b: text?}");
	const lm_type *f;

	cr_assert_eq(lm_type_kind(t), LM_TYPE_MAP);
	cr_assert_eq(lm_type_field_count(t), 2);
	cr_assert_str_eq(lm_type_field(t, 0, &f), "a");
	cr_assert_eq(lm_type_kind(f), LM_TYPE_ARRAY);
	cr_assert_eq(lm_type_kind(lm_type_element(f)), LM_TYPE_INT);
	cr_assert_str_eq(lm_type_field(t, 1, &f), "b");
	cr_assert(lm_type_optional(f));
	cr_assert_null(lm_type_field(t, 2, &f));
	lm_type_free(t);
}

Test(types, parse_errors)
{
	parse_bad("", "expected a type");
	parse_bad("integer", "unknown type name");
	parse_bad("{a int}", "expected ':'");
	parse_bad("{a: int b: int}", "expected ',' or '}'");
	parse_bad("{a: int, a: text}", "field declared twice");
	parse_bad("{}", "at least one field");
	parse_bad("[int", "expected ']'");
	parse_bad("int int", "unexpected text");
	parse_bad("[()]", "whole type");
	parse_bad("(x)", "expected ')'");
	parse_bad("{1a: int}", "field name");
	parse_bad("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[int]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
		  "too deep");
	cr_assert_eq(lm_type_parse(NULL, "int", NULL, 0), -EINVAL);
}

/* item as CBOR bytes into buf; returns the length. */
static size_t ser(cbor_item_t *item, unsigned char *buf, size_t size)
{
	size_t n = cbor_serialize(item, buf, size);

	cbor_decref(&item);
	cr_assert_gt(n, 0);
	return n;
}

static cbor_item_t *map2(const char *k1, cbor_item_t *v1, const char *k2, cbor_item_t *v2)
{
	cbor_item_t *m = cbor_new_definite_map(2);

	cbor_map_add(m, (struct cbor_pair){cbor_move(cbor_build_string(k1)), cbor_move(v1)});
	if (k2)
		cbor_map_add(m,
			     (struct cbor_pair){cbor_move(cbor_build_string(k2)), cbor_move(v2)});
	return m;
}

static void check_bad(const lm_type *t, const void *p, size_t n, const char *why)
{
	char err[300] = "";

	cr_assert_eq(lm_type_check(t, p, n, err, sizeof(err)), -EBADMSG, "accepted (%s)", why);
	cr_assert(strstr(err, why), "'%s' does not say '%s'", err, why);
}

Test(types, check)
{
	lm_type *t = parse_ok("{sec: int, tags: [text]?}");
	unsigned char buf[256];
	size_t n;
	cbor_item_t *arr;

	n = ser(map2("sec", cbor_build_uint8(5), NULL, NULL), buf, sizeof(buf));
	cr_assert_eq(lm_type_check(t, buf, n, NULL, 0), 0);
	n = ser(map2("sec", cbor_build_negint8(4), "tags", cbor_new_null()), buf, sizeof(buf));
	cr_assert_eq(lm_type_check(t, buf, n, NULL, 0), 0);
	arr = cbor_new_definite_array(2);
	cbor_array_push(arr, cbor_move(cbor_build_string("a")));
	cbor_array_push(arr, cbor_move(cbor_build_uint8(1)));
	n = ser(map2("sec", cbor_build_uint8(5), "tags", arr), buf, sizeof(buf));
	check_bad(t, buf, n, "tags[1]: expected text, got uint");
	n = ser(map2("sec", cbor_build_string("x"), NULL, NULL), buf, sizeof(buf));
	check_bad(t, buf, n, "sec: expected int, got text");
	n = ser(map2("tags", cbor_new_null(), NULL, NULL), buf, sizeof(buf));
	check_bad(t, buf, n, "sec: missing");
	n = ser(map2("sec", cbor_build_uint8(1), "zzz", cbor_build_uint8(1)), buf, sizeof(buf));
	check_bad(t, buf, n, "unknown or repeated field 'zzz'");
	n = ser(map2("sec", cbor_build_uint8(1), "sec", cbor_build_uint8(1)), buf, sizeof(buf));
	check_bad(t, buf, n, "unknown or repeated field 'sec'");
	n = ser(cbor_build_uint64(UINT64_MAX), buf, sizeof(buf));
	check_bad(t, buf, n, "expected map, got uint");
	check_bad(t, buf, 0, "got no payload");
	check_bad(t, "\xa1\x63se", 4, "not CBOR (truncated");
	n = ser(map2("sec", cbor_build_uint8(5), NULL, NULL), buf, sizeof(buf));
	buf[n] = 0;
	check_bad(t, buf, n + 1, "1 bytes after the CBOR item");
	lm_type_free(t);

	t = parse_ok("int");
	n = ser(cbor_build_uint64(UINT64_MAX), buf, sizeof(buf));
	check_bad(t, buf, n, "int (in int64 range)");
	lm_type_free(t);

	t = parse_ok("text");
	/* libcbor may refuse it already ("malformed"), else the checker does. */
	check_bad(t, "\x62\xc3\x28", 3, "");
	cr_assert_eq(lm_type_check(t, "\x62\xc3\xa9", 3, NULL, 0), 0);
	lm_type_free(t);

	t = parse_ok("()");
	cr_assert_eq(lm_type_check(t, NULL, 0, NULL, 0), 0);
	check_bad(t, "\x01", 1, "expected no payload");
	lm_type_free(t);

	t = parse_ok("float");
	cr_assert_eq(lm_type_check(t, "\x01", 1, NULL, 0), 0, "an integer is a float too");
	lm_type_free(t);
}

/* ---- a server with typed and untyped members, called in process ---- */

static void echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	int *calls = userdata;

	(*calls)++;
	lm_call_reply(call, payload, len);
}

static const struct lm_method methods[] = {{"typed", echo}, {"untyped", echo}};

struct result {
	int status;
	char error[64], message[300];
	unsigned char payload[4096];
	size_t len;
};

static void done(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct result *r = userdata;

	r->status = reply->status;
	if (reply->error_name)
		snprintf(r->error, sizeof(r->error), "%s", reply->error_name);
	if (reply->error_message)
		snprintf(r->message, sizeof(r->message), "%s", reply->error_message);
	r->len = reply->len < sizeof(r->payload) ? reply->len : sizeof(r->payload);
	if (reply->len)
		memcpy(r->payload, reply->payload, r->len);
	lm_reactor_stop(lm_client_get_reactor(c), 0);
}

static struct result call(lm_client *c, const char *method, const void *p, size_t n)
{
	struct result r = {.status = 1};

	cr_assert_eq(lm_client_call(c, method, p, n, 10ll * 1000000000, done, &r), 0);
	lm_reactor_run(lm_client_get_reactor(c));
	cr_assert_neq(r.status, 1);
	return r;
}

static void on_state(lm_client *c, enum lm_client_state st, int reason, void *userdata)
{
	if (st == LM_CLIENT_CONNECTED)
		lm_reactor_stop(lm_client_get_reactor(c), 0);
}

struct pair {
	lm_reactor *r;
	lm_server *s;
	lm_client *c;
	int calls;
};

static void pair_up(struct pair *p)
{
	lm_test_runtime_dir();
	p->r = lm_test_reactor(LM_BACKEND_EPOLL);
	cr_assert_eq(lm_server_new(&p->s, p->r, "unix:typed", NULL), 0);
	cr_assert_eq(lm_server_add_methods(p->s, methods, 2, &p->calls), 0);
	cr_assert_eq(lm_client_new(&p->c, p->r, "unix:typed", NULL), 0);
	lm_client_set_state_cb(p->c, on_state, NULL);
	if (lm_client_get_state(p->c) != LM_CLIENT_CONNECTED)
		lm_reactor_run(p->r);
	lm_client_set_state_cb(p->c, NULL, NULL);
}

static void pair_down(struct pair *p)
{
	lm_client_free(p->c);
	lm_server_free(p->s);
	lm_reactor_free(p->r);
}

Test(types, server_declares_and_checks)
{
	struct pair p = {0};
	unsigned char buf[64];
	struct result r;
	size_t n;

	pair_up(&p);
	cr_assert_eq(lm_server_set_method_type(p.s, "typed", "{a: int}", "{a: int}"), 0);
	cr_assert_eq(lm_server_set_method_type(p.s, "nosuch", "int", NULL), -ENOENT);
	cr_assert_eq(lm_server_set_method_type(p.s, "typed", "{a: nope}", NULL), -EINVAL);
	cr_assert_eq(lm_server_set_method_type(NULL, "typed", NULL, NULL), -EINVAL);
	cr_assert_eq(lm_server_add_typed_signal(p.s, "tick", LM_OVERFLOW_DISCONNECT, "[uint]"), 0);
	cr_assert_eq(lm_server_add_typed_signal(p.s, "bad", LM_OVERFLOW_DROP_OLDEST, "[uint"),
		     -EINVAL);
	cr_assert_eq(lm_server_add_signal(p.s, "plain", LM_OVERFLOW_DROP_OLDEST), 0);

	/* A good typed call reaches the handler; a bad one does not. */
	n = ser(map2("a", cbor_build_uint8(7), NULL, NULL), buf, sizeof(buf));
	r = call(p.c, "typed", buf, n);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.len, n);
	cr_assert_eq(p.calls, 1);
	r = call(p.c, "typed", "hello", 5);
	cr_assert_eq(r.status, -EREMOTEIO);
	cr_assert_str_eq(r.error, "lm.InvalidArgs");
	cr_assert(strstr(r.message, "typed: arguments do not match {a: int}: not CBOR"), "%s",
		  r.message);
	n = ser(map2("a", cbor_build_string("x"), NULL, NULL), buf, sizeof(buf));
	r = call(p.c, "typed", buf, n);
	cr_assert_str_eq(r.error, "lm.InvalidArgs");
	cr_assert(strstr(r.message, "a: expected int, got text"), "%s", r.message);
	cr_assert_eq(p.calls, 1);
	/* Untyped members take any bytes, as before. */
	r = call(p.c, "untyped", "hello", 5);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(p.calls, 2);

	/* Introspection: version 1 as before, version 2 with the types. */
	r = call(p.c, "lm.Introspect", NULL, 0);
	r.payload[r.len] = 0;
	cr_assert_str_eq((char *)r.payload, "server typed\nmethod typed\nmethod untyped\n"
					    "signal tick disconnect\nsignal plain drop-oldest\n");
	r = call(p.c, "lm.Introspect", "2", 1);
	r.payload[r.len] = 0;
	cr_assert_str_eq((char *)r.payload,
			 "introspect 2\nserver typed\nmethod typed {a: int} -> {a: int}\n"
			 "method untyped\nsignal tick disconnect [uint]\n"
			 "signal plain drop-oldest\n");
	pair_down(&p);
}

static const cbor_item_t *field(const cbor_item_t *map, const char *name)
{
	for (size_t i = 0; i < cbor_map_size(map); i++) {
		const cbor_item_t *k = cbor_map_handle(map)[i].key;
		if (cbor_string_length(k) == strlen(name) &&
		    !memcmp(cbor_string_handle(k), name, strlen(name)))
			return cbor_map_handle(map)[i].value;
	}
	cr_assert_fail("no field %s", name);
	return NULL;
}

Test(types, stats)
{
	struct pair p = {0};
	struct cbor_load_result lr;
	struct result r;
	cbor_item_t *it;
	const cbor_item_t *sigs;
	lm_type *t;

	pair_up(&p);
	cr_assert_eq(lm_server_add_signal(p.s, "tick", LM_OVERFLOW_DROP_OLDEST), 0);
	cr_assert_eq(lm_server_emit(p.s, "tick", "x", 1), 0);
	cr_assert_eq(lm_server_emit(p.s, "tick", "x", 1), 0);
	call(p.c, "untyped", "x", 1);
	call(p.c, "nosuch", NULL, 0);
	r = call(p.c, "lm.Stats", NULL, 0);
	cr_assert_eq(r.status, 0);
	/* The reply matches the type docs/protocol.md gives. */
	cr_assert_eq(lm_type_parse(&t,
				   "{name: text, uptime_ns: uint, clients: uint, calls: uint, "
				   "calls_refused: uint, signals_emitted: uint, "
				   "signals_dropped: uint, overflow_disconnects: uint, "
				   "connections_refused: uint, stalled_disconnects: uint, "
				   "signals: [{name: text, subscribers: uint}]}",
				   NULL, 0),
		     0);
	cr_assert_eq(lm_type_check(t, r.payload, r.len, NULL, 0), 0);
	lm_type_free(t);
	it = cbor_load(r.payload, r.len, &lr);
	cr_assert_not_null(it);
	cr_assert_eq(cbor_get_int(field(it, "clients")), 1);
	cr_assert_eq(cbor_get_int(field(it, "calls")), 2, "untyped and lm.Stats itself");
	cr_assert_eq(cbor_get_int(field(it, "calls_refused")), 1);
	cr_assert_eq(cbor_get_int(field(it, "signals_emitted")), 2);
	cr_assert_eq(cbor_get_int(field(it, "signals_dropped")), 0);
	cr_assert_eq(cbor_get_int(field(it, "overflow_disconnects")), 0);
	cr_assert_eq(cbor_get_int(field(it, "connections_refused")), 0);
	cr_assert_eq(cbor_get_int(field(it, "stalled_disconnects")), 0);
	sigs = field(it, "signals");
	cr_assert_eq(cbor_array_size(sigs), 1);
	cr_assert_eq(cbor_get_int(field(cbor_array_handle(sigs)[0], "subscribers")), 0);
	cbor_decref(&it);
	pair_down(&p);
}

Test(types, srvtime_is_typed)
{
	lm_reactor *r;
	lm_srvtime_server *srv;
	lm_client *c;
	struct result res;
	lm_type *t;
	struct lm_srvtime st;

	lm_test_runtime_dir();
	r = lm_test_reactor(LM_BACKEND_EPOLL);
	cr_assert_eq(lm_srvtime_server_new(&srv, r, "unix:st", 0), 0);
	cr_assert_eq(lm_client_new(&c, r, "unix:st", NULL), 0);
	res = call(c, "getdate", NULL, 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(lm_type_parse(&t, LM_SRVTIME_TYPE, NULL, 0), 0);
	cr_assert_eq(lm_type_check(t, res.payload, res.len, NULL, 0), 0);
	lm_type_free(t);
	cr_assert_eq(lm_srvtime_decode(&st, res.payload, res.len), 0);
	cr_assert_eq(strlen(st.iso), 30);
	res = call(c, "getdate", "x", 1);
	cr_assert_str_eq(res.error, "lm.InvalidArgs");
	res = call(c, "lm.Introspect", "2", 1);
	res.payload[res.len] = 0;
	cr_assert(
	    strstr((char *)res.payload, "method getdate () -> {sec: int, nsec: uint, iso: text}\n"),
	    "%s", res.payload);
	lm_client_free(c);
	lm_srvtime_server_free(srv);
	lm_reactor_free(r);
}
