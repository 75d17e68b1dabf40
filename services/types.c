/* SPDX-License-Identifier: MIT */
/* Declared payload types: the type language's parser and the CBOR checker (libcbor). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "libmessage/types.h"

struct field {
	char *name;
	lm_type *type;
};

struct lm_type {
	enum lm_type_kind kind;
	bool optional;
	lm_type *elem;        /* LM_TYPE_ARRAY */
	struct field *fields; /* LM_TYPE_MAP */
	size_t nfields;
};

static const char *const kind_names[] = {
    [LM_TYPE_EMPTY] = "()",    [LM_TYPE_INT] = "int",   [LM_TYPE_UINT] = "uint",
    [LM_TYPE_FLOAT] = "float", [LM_TYPE_BOOL] = "bool", [LM_TYPE_TEXT] = "text",
    [LM_TYPE_BYTES] = "bytes", [LM_TYPE_ANY] = "any",   [LM_TYPE_ARRAY] = "array",
    [LM_TYPE_MAP] = "map",
};

static void set_err(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!err || !size)
		return;
	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
}

LM_EXPORT void lm_type_free(lm_type *t)
{
	if (!t)
		return;
	lm_type_free(t->elem);
	for (size_t i = 0; i < t->nfields; i++) {
		free(t->fields[i].name);
		lm_type_free(t->fields[i].type);
	}
	free(t->fields);
	free(t);
}

/* ---- parsing: a recursive descent over the text ---- */

struct parser {
	const char *text, *p;
	char *err;
	size_t errsize;
	int failed; /* -EINVAL or -ENOMEM once something went wrong */
};

static void fail(struct parser *ps, const char *what)
{
	if (ps->failed)
		return;
	ps->failed = -EINVAL;
	set_err(ps->err, ps->errsize, "at %zu: %s", (size_t)(ps->p - ps->text), what);
}

static void skip_space(struct parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n')
		ps->p++;
}

static bool ident_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

/* An identifier's length at ps->p (0 if none). */
static size_t ident_len(struct parser *ps)
{
	size_t n = 0;

	while (ident_char(ps->p[n], n == 0))
		n++;
	return n;
}

static lm_type *parse_type(struct parser *ps, int depth);

static lm_type *new_type(struct parser *ps, enum lm_type_kind kind)
{
	lm_type *t = calloc(1, sizeof(*t));

	if (!t && !ps->failed) {
		ps->failed = -ENOMEM;
		set_err(ps->err, ps->errsize, "out of memory");
	}
	if (t)
		t->kind = kind;
	return t;
}

static lm_type *parse_map(struct parser *ps, int depth)
{
	lm_type *t = new_type(ps, LM_TYPE_MAP);

	ps->p++; /* '{' */
	skip_space(ps);
	while (t && !ps->failed && *ps->p != '}') {
		size_t n = ident_len(ps);
		struct field *v;

		if (t->nfields && *ps->p == ',') {
			ps->p++;
			skip_space(ps);
			n = ident_len(ps);
		} else if (t->nfields) {
			fail(ps, "expected ',' or '}' after a field");
			break;
		}
		if (!n) {
			fail(ps, "expected a field name ([A-Za-z_][A-Za-z0-9_]*)");
			break;
		}
		for (size_t i = 0; i < t->nfields; i++) {
			if (strlen(t->fields[i].name) == n &&
			    !memcmp(t->fields[i].name, ps->p, n)) {
				fail(ps, "field declared twice");
				break;
			}
		}
		v = ps->failed ? NULL : realloc(t->fields, (t->nfields + 1) * sizeof(*v));
		if (!v) {
			if (!ps->failed)
				ps->failed = -ENOMEM;
			break;
		}
		t->fields = v;
		v[t->nfields].name = strndup(ps->p, n);
		v[t->nfields].type = NULL;
		t->nfields++;
		if (!v[t->nfields - 1].name) {
			ps->failed = -ENOMEM;
			break;
		}
		ps->p += n;
		skip_space(ps);
		if (*ps->p != ':') {
			fail(ps, "expected ':' after a field name");
			break;
		}
		ps->p++;
		v[t->nfields - 1].type = parse_type(ps, depth + 1);
		skip_space(ps);
	}
	if (t && !ps->failed) {
		if (t->nfields == 0)
			fail(ps, "a map type needs at least one field");
		else
			ps->p++; /* '}' */
	}
	return t;
}

static lm_type *parse_type(struct parser *ps, int depth)
{
	lm_type *t = NULL;
	size_t n;

	if (depth > LM_TYPE_MAX_DEPTH) {
		fail(ps, "types nest too deep");
		return NULL;
	}
	skip_space(ps);
	if (*ps->p == '{') {
		t = parse_map(ps, depth);
	} else if (*ps->p == '[') {
		ps->p++;
		t = new_type(ps, LM_TYPE_ARRAY);
		if (t)
			t->elem = parse_type(ps, depth + 1);
		skip_space(ps);
		if (!ps->failed && *ps->p != ']')
			fail(ps, "expected ']'");
		else if (!ps->failed)
			ps->p++;
	} else if (*ps->p == '(') {
		fail(ps, "() is only allowed as a whole type");
	} else {
		n = ident_len(ps);
		for (int k = LM_TYPE_INT; k <= LM_TYPE_ANY && !t; k++)
			if (strlen(kind_names[k]) == n && !memcmp(kind_names[k], ps->p, n))
				t = new_type(ps, (enum lm_type_kind)k);
		if (!t && !ps->failed) {
			fail(ps, n ? "unknown type name (int, uint, float, bool, text, bytes, any)"
				   : "expected a type");
			return NULL;
		}
		ps->p += n;
	}
	skip_space(ps);
	if (t && !ps->failed && *ps->p == '?') {
		t->optional = true;
		ps->p++;
	}
	return t;
}

LM_EXPORT int lm_type_parse(lm_type **ret, const char *text, char *err, size_t errsize)
{
	struct parser ps = {text, text, err, errsize, 0};
	lm_type *t;

	if (!ret || !text) {
		set_err(err, errsize, "no type");
		return -EINVAL;
	}
	skip_space(&ps);
	if (ps.p[0] == '(') {
		ps.p++;
		skip_space(&ps);
		if (*ps.p != ')') {
			fail(&ps, "expected ')': () is the empty payload");
			return ps.failed;
		}
		ps.p++;
		t = new_type(&ps, LM_TYPE_EMPTY);
	} else {
		t = parse_type(&ps, 1);
	}
	skip_space(&ps);
	if (!ps.failed && *ps.p)
		fail(&ps, "unexpected text after the type");
	if (ps.failed) {
		lm_type_free(t);
		return ps.failed;
	}
	*ret = t;
	return 0;
}

/* ---- formatting ---- */

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, const char *s)
{
	size_t n = strlen(s);

	if (o->len < o->size)
		memcpy(o->buf + o->len, s, o->len + n < o->size ? n : o->size - o->len);
	o->len += n;
}

static void format(const lm_type *t, struct out *o)
{
	if (t->kind == LM_TYPE_ARRAY) {
		put(o, "[");
		format(t->elem, o);
		put(o, "]");
	} else if (t->kind == LM_TYPE_MAP) {
		put(o, "{");
		for (size_t i = 0; i < t->nfields; i++) {
			put(o, i ? ", " : "");
			put(o, t->fields[i].name);
			put(o, ": ");
			format(t->fields[i].type, o);
		}
		put(o, "}");
	} else {
		put(o, kind_names[t->kind]);
	}
	if (t->optional)
		put(o, "?");
}

LM_EXPORT size_t lm_type_format(const lm_type *t, char *buf, size_t size)
{
	struct out o = {buf, size, 0};

	if (!t)
		return 0;
	format(t, &o);
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return o.len;
}

/* ---- checking ---- */

/* libcbor's cbor_is_null() and cbor_is_bool() assert (abort) when given a
 * float: ask them only about a simple value (a float_ctrl of width 0). */
static bool is_ctrl(const cbor_item_t *it)
{
	return cbor_isa_float_ctrl(it) && cbor_float_get_width(it) == CBOR_FLOAT_0;
}

static bool is_null(const cbor_item_t *it)
{
	return is_ctrl(it) && cbor_is_null(it);
}

static bool is_bool(const cbor_item_t *it)
{
	return is_ctrl(it) && cbor_is_bool(it);
}

static const char *item_name(const cbor_item_t *it)
{
	switch (cbor_typeof(it)) {
	case CBOR_TYPE_UINT:
		return "uint";
	case CBOR_TYPE_NEGINT:
		return "negative int";
	case CBOR_TYPE_BYTESTRING:
		return "bytes";
	case CBOR_TYPE_STRING:
		return "text";
	case CBOR_TYPE_ARRAY:
		return "array";
	case CBOR_TYPE_MAP:
		return "map";
	case CBOR_TYPE_TAG:
		return "tag";
	case CBOR_TYPE_FLOAT_CTRL:
		if (is_null(it))
			return "null";
		if (is_bool(it))
			return "bool";
		return cbor_is_float(it) ? "float" : "simple value";
	}
	return "?";
}

/* Valid UTF-8 (RFC 3629: no overlong forms, no surrogates, up to U+10FFFF). */
static bool utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], len, min, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, min = 0x80, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, min = 0x800, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, min = 0x10000, cp = c & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (unsigned k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static bool text_ok(const cbor_item_t *it)
{
	if (cbor_string_is_definite(it))
		return utf8_ok(cbor_string_handle(it), cbor_string_length(it));
	for (size_t i = 0; i < cbor_string_chunk_count(it); i++) {
		cbor_item_t *c = cbor_string_chunks_handle(it)[i];
		if (!utf8_ok(cbor_string_handle(c), cbor_string_length(c)))
			return false;
	}
	return true;
}

struct check {
	char *err;
	size_t errsize;
	char path[256]; /* where we are: "sec", "list[3].name" */
};

static int mismatch(struct check *ck, const char *want, const cbor_item_t *it)
{
	set_err(ck->err, ck->errsize, "%s%sexpected %s, got %s", ck->path, ck->path[0] ? ": " : "",
		want, item_name(it));
	return -EBADMSG;
}

static int check_item(const lm_type *t, const cbor_item_t *it, struct check *ck);

/* A map key equal to name (a definite text string). */
static bool key_is(const cbor_item_t *key, const char *name)
{
	size_t n = strlen(name);

	return cbor_isa_string(key) && cbor_string_is_definite(key) &&
	       cbor_string_length(key) == n && !memcmp(cbor_string_handle(key), name, n);
}

static int check_map(const lm_type *t, const cbor_item_t *it, struct check *ck)
{
	struct cbor_pair *pairs = cbor_map_handle(it);
	size_t n = cbor_map_size(it), plen = strlen(ck->path);
	int err;

	for (size_t i = 0; i < n; i++) {
		bool known = false;

		if (!cbor_isa_string(pairs[i].key) || !cbor_string_is_definite(pairs[i].key)) {
			set_err(ck->err, ck->errsize, "%s%sa map key is not a text string",
				ck->path, ck->path[0] ? ": " : "");
			return -EBADMSG;
		}
		for (size_t j = 0; j < t->nfields && !known; j++)
			known = key_is(pairs[i].key, t->fields[j].name);
		for (size_t j = 0; j < i && known; j++)
			if (cbor_string_length(pairs[j].key) == cbor_string_length(pairs[i].key) &&
			    !memcmp(cbor_string_handle(pairs[j].key),
				    cbor_string_handle(pairs[i].key),
				    cbor_string_length(pairs[i].key)))
				known = false;
		if (!known) {
			set_err(ck->err, ck->errsize, "%s%sunknown or repeated field '%.*s'",
				ck->path, ck->path[0] ? ": " : "",
				(int)(cbor_string_length(pairs[i].key) > 64
					  ? 64
					  : cbor_string_length(pairs[i].key)),
				(const char *)cbor_string_handle(pairs[i].key));
			return -EBADMSG;
		}
	}
	for (size_t j = 0; j < t->nfields; j++) {
		const cbor_item_t *v = NULL;

		for (size_t i = 0; i < n && !v; i++)
			if (key_is(pairs[i].key, t->fields[j].name))
				v = pairs[i].value;
		snprintf(ck->path + plen, sizeof(ck->path) - plen, "%s%s", plen ? "." : "",
			 t->fields[j].name);
		if (!v && !t->fields[j].type->optional) {
			set_err(ck->err, ck->errsize, "%s: missing", ck->path);
			return -EBADMSG;
		}
		if (v && (err = check_item(t->fields[j].type, v, ck)) < 0)
			return err;
		ck->path[plen] = 0;
	}
	return 0;
}

static int check_item(const lm_type *t, const cbor_item_t *it, struct check *ck)
{
	size_t plen;
	int err;

	if (t->optional && is_null(it))
		return 0;
	switch (t->kind) {
	case LM_TYPE_EMPTY:
		return mismatch(ck, "no payload", it);
	case LM_TYPE_INT:
		if (cbor_isa_uint(it) && cbor_get_int(it) <= INT64_MAX)
			return 0;
		if (cbor_isa_negint(it) && cbor_get_int(it) <= INT64_MAX)
			return 0;
		return mismatch(ck, cbor_is_int(it) ? "int (in int64 range)" : "int", it);
	case LM_TYPE_UINT:
		return cbor_isa_uint(it) ? 0 : mismatch(ck, "uint", it);
	case LM_TYPE_FLOAT:
		return cbor_is_float(it) || cbor_is_int(it) ? 0 : mismatch(ck, "float", it);
	case LM_TYPE_BOOL:
		return is_bool(it) ? 0 : mismatch(ck, "bool", it);
	case LM_TYPE_TEXT:
		if (!cbor_isa_string(it))
			return mismatch(ck, "text", it);
		if (!text_ok(it)) {
			set_err(ck->err, ck->errsize, "%s%stext is not valid UTF-8", ck->path,
				ck->path[0] ? ": " : "");
			return -EBADMSG;
		}
		return 0;
	case LM_TYPE_BYTES:
		return cbor_isa_bytestring(it) ? 0 : mismatch(ck, "bytes", it);
	case LM_TYPE_ANY:
		return 0;
	case LM_TYPE_ARRAY:
		if (!cbor_isa_array(it))
			return mismatch(ck, "array", it);
		plen = strlen(ck->path);
		for (size_t i = 0; i < cbor_array_size(it); i++) {
			snprintf(ck->path + plen, sizeof(ck->path) - plen, "[%zu]", i);
			if ((err = check_item(t->elem, cbor_array_handle(it)[i], ck)) < 0)
				return err;
		}
		ck->path[plen] = 0;
		return 0;
	case LM_TYPE_MAP:
		return cbor_isa_map(it) ? check_map(t, it, ck) : mismatch(ck, "map", it);
	}
	return -EINVAL;
}

/*
 * Before cbor_load(), which allocates at once what each header announces (a
 * 28-byte payload of nested arrays announcing 2^31 items each made it take
 * gigabytes and minutes): walk the headers with libcbor's streaming decoder
 * and refuse a definite array or map that announces more items than bytes
 * are left (each item takes one at least), and nesting deeper than
 * LM_TYPE_CBOR_MAX_NEST. What loads then costs memory in proportion to the
 * payload.
 */
struct scan {
	size_t left;                        /* bytes from the current header on */
	size_t at;                          /* its offset */
	int depth;                          /* containers open */
	size_t open[LM_TYPE_CBOR_MAX_NEST]; /* items each still expects; SIZE_MAX: indefinite */
	const char *bad;                    /* why the payload is refused */
};

/* An item begins: its container has one fewer to come. */
static void scan_item(struct scan *sc)
{
	if (sc->depth > 0 && sc->open[sc->depth - 1] != SIZE_MAX)
		sc->open[sc->depth - 1]--;
}

/* Containers that have all their items are over. */
static void scan_close(struct scan *sc)
{
	while (sc->depth > 0 && sc->open[sc->depth - 1] == 0)
		sc->depth--;
}

static void scan_open(struct scan *sc, size_t items)
{
	scan_item(sc);
	if (items != SIZE_MAX && items >= sc->left)
		sc->bad = "announces more items than the payload holds";
	else if (sc->depth == LM_TYPE_CBOR_MAX_NEST)
		sc->bad = "nests too deep";
	else
		sc->open[sc->depth++] = items;
	scan_close(sc);
}

static void scan_scalar(struct scan *sc)
{
	scan_item(sc);
	scan_close(sc);
}

static void scan_u8(void *sc, uint8_t v)
{
	scan_scalar(sc);
}
static void scan_u16(void *sc, uint16_t v)
{
	scan_scalar(sc);
}
static void scan_u32(void *sc, uint32_t v)
{
	scan_scalar(sc);
}
static void scan_u64(void *sc, uint64_t v)
{
	scan_scalar(sc);
}
static void scan_simple(void *sc)
{
	scan_scalar(sc);
}
static void scan_string(void *sc, cbor_data d, size_t n)
{
	scan_scalar(sc);
}
static void scan_float(void *sc, float v)
{
	scan_scalar(sc);
}
static void scan_double(void *sc, double v)
{
	scan_scalar(sc);
}
static void scan_bool(void *sc, bool v)
{
	scan_scalar(sc);
}
static void scan_indef(void *sc)
{
	scan_open(sc, SIZE_MAX);
}
static void scan_array(void *sc, size_t n)
{
	scan_open(sc, n);
}
static void scan_map(void *sc, size_t n)
{
	scan_open(sc, n > SIZE_MAX / 2 - 1 ? SIZE_MAX - 1 : 2 * n);
}
static void scan_tag(void *sc, uint64_t v)
{
	scan_open(sc, 1); /* the tagged item */
}
static void scan_break(void *v)
{
	struct scan *sc = v;

	if (sc->depth > 0 && sc->open[sc->depth - 1] == SIZE_MAX)
		sc->depth--;
	scan_close(sc);
}

static const struct cbor_callbacks scan_callbacks = {
    .uint8 = scan_u8,
    .uint16 = scan_u16,
    .uint32 = scan_u32,
    .uint64 = scan_u64,
    .negint8 = scan_u8,
    .negint16 = scan_u16,
    .negint32 = scan_u32,
    .negint64 = scan_u64,
    .byte_string_start = scan_indef,
    .byte_string = scan_string,
    .string = scan_string,
    .string_start = scan_indef,
    .indef_array_start = scan_indef,
    .array_start = scan_array,
    .indef_map_start = scan_indef,
    .map_start = scan_map,
    .tag = scan_tag,
    .float2 = scan_float,
    .float4 = scan_float,
    .float8 = scan_double,
    .undefined = scan_simple,
    .null = scan_simple,
    .boolean = scan_bool,
    .indef_break = scan_break,
};

/* 0 if cbor_load() may take payload (it reports what is malformed itself),
 * -EBADMSG with err set if it must not. */
static int cbor_scan(const uint8_t *p, size_t len, char *err, size_t errsize)
{
	struct scan sc = {0};

	while (sc.at < len) {
		struct cbor_decoder_result r;

		sc.left = len - sc.at;
		r = cbor_stream_decode(p + sc.at, len - sc.at, &scan_callbacks, &sc);
		if (sc.bad) {
			set_err(err, errsize, "not CBOR we take (the item at byte %zu %s)", sc.at,
				sc.bad);
			return -EBADMSG;
		}
		if (r.status != CBOR_DECODER_FINISHED || r.read == 0)
			return 0;
		sc.at += r.read;
		if (sc.depth == 0)
			break; /* one whole item */
	}
	return 0;
}

LM_EXPORT int lm_type_check(const lm_type *t, const void *payload, size_t len, char *err,
			    size_t errsize)
{
	struct check ck = {err, errsize, ""};
	struct cbor_load_result res;
	cbor_item_t *it;
	int ret;

	if (!t || (!payload && len))
		return -EINVAL;
	if (t->kind == LM_TYPE_EMPTY) {
		if (len == 0)
			return 0;
		set_err(err, errsize, "expected no payload, got %zu bytes", len);
		return -EBADMSG;
	}
	if (len == 0) {
		set_err(err, errsize, "expected %s, got no payload", kind_names[t->kind]);
		return -EBADMSG;
	}
	ret = cbor_scan(payload, len, err, errsize);
	if (ret < 0)
		return ret;
	it = cbor_load(payload, len, &res);
	if (!it) {
		if (res.error.code == CBOR_ERR_MEMERROR) {
			set_err(err, errsize, "out of memory");
			return -ENOMEM;
		}
		set_err(err, errsize, "not CBOR (%s at byte %zu)",
			res.error.code == CBOR_ERR_NOTENOUGHDATA ? "truncated" : "malformed",
			res.error.position);
		return -EBADMSG;
	}
	if (res.read != len) {
		set_err(err, errsize, "%zu bytes after the CBOR item", len - res.read);
		ret = -EBADMSG;
	} else {
		ret = check_item(t, it, &ck);
	}
	cbor_decref(&it);
	return ret;
}

/* ---- walking ---- */

LM_EXPORT enum lm_type_kind lm_type_kind(const lm_type *t)
{
	return t ? t->kind : LM_TYPE_ANY;
}

LM_EXPORT bool lm_type_optional(const lm_type *t)
{
	return t && t->optional;
}

LM_EXPORT const lm_type *lm_type_element(const lm_type *t)
{
	return t && t->kind == LM_TYPE_ARRAY ? t->elem : NULL;
}

LM_EXPORT size_t lm_type_field_count(const lm_type *t)
{
	return t ? t->nfields : 0;
}

LM_EXPORT const char *lm_type_field(const lm_type *t, size_t i, const lm_type **type)
{
	if (!t || i >= t->nfields)
		return NULL;
	if (type)
		*type = t->fields[i].type;
	return t->fields[i].name;
}
