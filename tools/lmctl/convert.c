/* SPDX-License-Identifier: MIT */
/* lmctl: JSON (json-c) to and from typed CBOR payloads (libcbor), guided by the declared type. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include "convert.h"

struct conv {
	char *err;
	size_t errsize;
	char path[256];
};

static cbor_item_t *conv_fail(struct conv *cv, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (cv->err && cv->errsize && !cv->err[0])
		snprintf(cv->err, cv->errsize, "%s%s%s", cv->path, cv->path[0] ? ": " : "", what);
	return NULL;
}

static const char *json_kind(struct json_object *j)
{
	switch (json_object_get_type(j)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
		return "a number with a fraction";
	case json_type_int:
		return "an integer";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "?";
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static cbor_item_t *to_cbor(const lm_type *t, struct json_object *j, struct conv *cv);

static cbor_item_t *int_to_cbor(const lm_type *t, struct json_object *j, struct conv *cv)
{
	int64_t v;

	if (!json_object_is_type(j, json_type_int))
		return conv_fail(cv, "expected an integer, got %s", json_kind(j));
	if (lm_type_kind(t) == LM_TYPE_UINT) {
		/* json-c keeps integers above INT64_MAX as uint64. */
		if (json_object_get_int64(j) < 0)
			return conv_fail(cv, "expected an integer >= 0");
		return cbor_build_uint64(json_object_get_uint64(j));
	}
	v = json_object_get_int64(j);
	if (v == INT64_MAX && json_object_get_uint64(j) > INT64_MAX)
		return conv_fail(cv, "integer out of the int64 range");
	return v >= 0 ? cbor_build_uint64((uint64_t)v) : cbor_build_negint64((uint64_t)(-1 - v));
}

static cbor_item_t *bytes_to_cbor(struct json_object *j, struct conv *cv)
{
	const char *s;
	size_t n;
	unsigned char *b;
	cbor_item_t *it;

	if (!json_object_is_type(j, json_type_string))
		return conv_fail(cv, "expected a hex string (bytes), got %s", json_kind(j));
	s = json_object_get_string(j);
	n = strlen(s);
	if (n % 2)
		return conv_fail(cv, "a hex string has an even number of digits");
	b = malloc(n / 2 + 1);
	if (!b)
		return NULL;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return conv_fail(cv, "'%c%c' is not a hex byte", s[2 * i], s[2 * i + 1]);
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	it = cbor_build_bytestring(b, n / 2);
	free(b);
	return it;
}

static cbor_item_t *array_to_cbor(const lm_type *t, struct json_object *j, struct conv *cv)
{
	size_t n, plen = strlen(cv->path);
	cbor_item_t *arr;

	if (!json_object_is_type(j, json_type_array))
		return conv_fail(cv, "expected an array, got %s", json_kind(j));
	n = json_object_array_length(j);
	arr = cbor_new_definite_array(n);
	for (size_t i = 0; arr && i < n; i++) {
		cbor_item_t *e;

		snprintf(cv->path + plen, sizeof(cv->path) - plen, "[%zu]", i);
		e = to_cbor(lm_type_element(t), json_object_array_get_idx(j, i), cv);
		if (!e || !cbor_array_push(arr, e)) {
			if (e)
				cbor_decref(&e);
			cbor_decref(&arr);
			return NULL;
		}
		cbor_decref(&e);
	}
	cv->path[plen] = 0;
	return arr;
}

static cbor_item_t *map_to_cbor(const lm_type *t, struct json_object *j, struct conv *cv)
{
	size_t plen = strlen(cv->path), n = lm_type_field_count(t), present = 0;
	cbor_item_t *map;

	if (!json_object_is_type(j, json_type_object))
		return conv_fail(cv, "expected an object, got %s", json_kind(j));
	json_object_object_foreach(j, key, val)
	{
		bool known = false;

		(void)val;
		for (size_t i = 0; i < n && !known; i++)
			known = strcmp(lm_type_field(t, i, NULL), key) == 0;
		if (!known)
			return conv_fail(cv, "unknown field '%s'", key);
	}
	for (size_t i = 0; i < n; i++)
		present += json_object_object_get_ex(j, lm_type_field(t, i, NULL), NULL);
	map = cbor_new_definite_map(present);
	for (size_t i = 0; map && i < n; i++) {
		const lm_type *ft;
		const char *name = lm_type_field(t, i, &ft);
		struct json_object *v;
		cbor_item_t *k, *cv_item;

		snprintf(cv->path + plen, sizeof(cv->path) - plen, "%s%s", plen ? "." : "", name);
		if (!json_object_object_get_ex(j, name, &v)) {
			if (lm_type_optional(ft))
				continue;
			cbor_decref(&map);
			return conv_fail(cv, "missing");
		}
		cv_item = to_cbor(ft, v, cv);
		k = cbor_build_string(name);
		if (!cv_item || !k || !cbor_map_add(map, (struct cbor_pair){k, cv_item})) {
			if (k)
				cbor_decref(&k);
			if (cv_item)
				cbor_decref(&cv_item);
			cbor_decref(&map);
			return NULL;
		}
		cbor_decref(&k);
		cbor_decref(&cv_item);
	}
	cv->path[plen] = 0;
	return map;
}

/* JSON of any shape, as CBOR of the same shape (the type "any"). */
static cbor_item_t *any_to_cbor(struct json_object *j, struct conv *cv)
{
	switch (json_object_get_type(j)) {
	case json_type_null:
		return cbor_new_null();
	case json_type_boolean:
		return cbor_build_bool(json_object_get_boolean(j));
	case json_type_double:
		return cbor_build_float8(json_object_get_double(j));
	case json_type_int:
		return json_object_get_int64(j) >= 0
			   ? cbor_build_uint64(json_object_get_uint64(j))
			   : cbor_build_negint64((uint64_t)(-1 - json_object_get_int64(j)));
	case json_type_string:
		return cbor_build_string(json_object_get_string(j));
	case json_type_array: {
		size_t n = json_object_array_length(j);
		cbor_item_t *arr = cbor_new_definite_array(n);

		for (size_t i = 0; arr && i < n; i++) {
			cbor_item_t *e = any_to_cbor(json_object_array_get_idx(j, i), cv);
			bool ok = e && cbor_array_push(arr, e);

			if (e)
				cbor_decref(&e);
			if (!ok)
				cbor_decref(&arr);
		}
		return arr;
	}
	case json_type_object: {
		cbor_item_t *map = cbor_new_definite_map(json_object_object_length(j));

		json_object_object_foreach(j, key, val)
		{
			cbor_item_t *k, *v;
			bool ok;

			if (!map)
				break;
			k = cbor_build_string(key);
			v = any_to_cbor(val, cv);
			ok = k && v && cbor_map_add(map, (struct cbor_pair){k, v});
			if (k)
				cbor_decref(&k);
			if (v)
				cbor_decref(&v);
			if (!ok)
				cbor_decref(&map);
		}
		return map;
	}
	}
	return NULL;
}

static cbor_item_t *to_cbor(const lm_type *t, struct json_object *j, struct conv *cv)
{
	if (!j || json_object_is_type(j, json_type_null)) {
		if (lm_type_optional(t) || lm_type_kind(t) == LM_TYPE_ANY)
			return cbor_new_null();
		return conv_fail(cv, "null where the type is not optional");
	}
	switch (lm_type_kind(t)) {
	case LM_TYPE_INT:
	case LM_TYPE_UINT:
		return int_to_cbor(t, j, cv);
	case LM_TYPE_FLOAT:
		if (!json_object_is_type(j, json_type_double) &&
		    !json_object_is_type(j, json_type_int))
			return conv_fail(cv, "expected a number, got %s", json_kind(j));
		return cbor_build_float8(json_object_get_double(j));
	case LM_TYPE_BOOL:
		if (!json_object_is_type(j, json_type_boolean))
			return conv_fail(cv, "expected true or false, got %s", json_kind(j));
		return cbor_build_bool(json_object_get_boolean(j));
	case LM_TYPE_TEXT:
		if (!json_object_is_type(j, json_type_string))
			return conv_fail(cv, "expected a string, got %s", json_kind(j));
		return cbor_build_string(json_object_get_string(j));
	case LM_TYPE_BYTES:
		return bytes_to_cbor(j, cv);
	case LM_TYPE_ANY:
		return any_to_cbor(j, cv);
	case LM_TYPE_ARRAY:
		return array_to_cbor(t, j, cv);
	case LM_TYPE_MAP:
		return map_to_cbor(t, j, cv);
	case LM_TYPE_EMPTY:
		break;
	}
	return conv_fail(cv, "the method takes no arguments");
}

int lmctl_json_to_cbor(const lm_type *t, const char *json, unsigned char **out, size_t *len,
		       char *err, size_t errsize)
{
	struct conv cv = {err, errsize, ""};
	enum json_tokener_error jerr;
	struct json_object *j;
	cbor_item_t *it;
	unsigned char *buf = NULL;
	size_t size = 0, n;

	if (err && errsize)
		err[0] = 0;
	if (lm_type_kind(t) == LM_TYPE_EMPTY) {
		if (json && json[strspn(json, " \t\n")]) {
			conv_fail(&cv, "the method takes no arguments (its type is ())");
			return -EINVAL;
		}
		*out = NULL;
		*len = 0;
		return 0;
	}
	j = json_tokener_parse_verbose(json, &jerr);
	if (!j && jerr != json_tokener_success) {
		conv_fail(&cv, "not JSON: %s", json_tokener_error_desc(jerr));
		return -EINVAL;
	}
	it = to_cbor(t, j, &cv);
	json_object_put(j);
	if (!it)
		return err && errsize && err[0] ? -EINVAL : -ENOMEM;
	n = cbor_serialize_alloc(it, &buf, &size);
	cbor_decref(&it);
	if (!n) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ---- CBOR to JSON ---- */

struct json_object *lmctl_hex_json(const unsigned char *p, size_t n)
{
	char *s = malloc(2 * n + 1);
	struct json_object *j;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++)
		snprintf(s + 2 * i, 3, "%02x", p[i]);
	s[2 * n] = 0;
	j = json_object_new_string(s);
	free(s);
	return j;
}

/* A string item's bytes (definite or in chunks) as one malloc'd buffer. */
static unsigned char *string_bytes(const cbor_item_t *it, size_t *n)
{
	bool text = cbor_isa_string(it);
	size_t len = 0, count;
	cbor_item_t **chunks;
	unsigned char *buf;

	if (text ? cbor_string_is_definite(it) : cbor_bytestring_is_definite(it)) {
		len = text ? cbor_string_length(it) : cbor_bytestring_length(it);
		buf = malloc(len + 1);
		if (buf) {
			memcpy(buf, text ? cbor_string_handle(it) : cbor_bytestring_handle(it),
			       len);
			buf[len] = 0;
		}
		*n = len;
		return buf;
	}
	count = text ? cbor_string_chunk_count(it) : cbor_bytestring_chunk_count(it);
	chunks = text ? cbor_string_chunks_handle(it) : cbor_bytestring_chunks_handle(it);
	for (size_t i = 0; i < count; i++)
		len += text ? cbor_string_length(chunks[i]) : cbor_bytestring_length(chunks[i]);
	buf = malloc(len + 1);
	if (!buf)
		return NULL;
	len = 0;
	for (size_t i = 0; i < count; i++) {
		size_t l = text ? cbor_string_length(chunks[i]) : cbor_bytestring_length(chunks[i]);
		memcpy(buf + len,
		       text ? cbor_string_handle(chunks[i]) : cbor_bytestring_handle(chunks[i]), l);
		len += l;
	}
	buf[len] = 0;
	*n = len;
	return buf;
}

static struct json_object *to_json(const cbor_item_t *it)
{
	struct json_object *j = NULL;
	unsigned char *b;
	size_t n;

	switch (cbor_typeof(it)) {
	case CBOR_TYPE_UINT:
		return json_object_new_uint64(cbor_get_int(it));
	case CBOR_TYPE_NEGINT:
		if (cbor_get_int(it) > INT64_MAX)
			return json_object_new_double(-1.0 - (double)cbor_get_int(it));
		return json_object_new_int64(-1 - (int64_t)cbor_get_int(it));
	case CBOR_TYPE_BYTESTRING:
	case CBOR_TYPE_STRING:
		b = string_bytes(it, &n);
		if (!b)
			return NULL;
		j = cbor_isa_string(it) ? json_object_new_string_len((const char *)b, (int)n)
					: lmctl_hex_json(b, n);
		free(b);
		return j;
	case CBOR_TYPE_ARRAY:
		j = json_object_new_array();
		for (size_t i = 0; j && i < cbor_array_size(it); i++)
			json_object_array_add(j, to_json(cbor_array_handle(it)[i]));
		return j;
	case CBOR_TYPE_MAP:
		j = json_object_new_object();
		for (size_t i = 0; j && i < cbor_map_size(it); i++) {
			struct cbor_pair *pr = &cbor_map_handle(it)[i];
			struct json_object *k = NULL;
			char *key = NULL;

			if (cbor_isa_string(pr->key)) {
				key = (char *)string_bytes(pr->key, &n);
			} else {
				k = to_json(pr->key);
				key = k ? strdup(json_object_to_json_string(k)) : NULL;
				json_object_put(k);
			}
			if (key)
				json_object_object_add(j, key, to_json(pr->value));
			free(key);
		}
		return j;
	case CBOR_TYPE_TAG: {
		cbor_item_t *in = cbor_tag_item(it); /* a new reference */

		j = in ? to_json(in) : NULL;
		if (in)
			cbor_decref(&in);
		return j;
	}
	case CBOR_TYPE_FLOAT_CTRL:
		if (cbor_is_bool(it))
			return json_object_new_boolean(cbor_get_bool(it));
		if (cbor_is_float(it))
			return json_object_new_double(cbor_float_get_float(it));
		return NULL; /* null, undefined, simple values */
	}
	return NULL;
}

struct json_object *lmctl_cbor_to_json(const void *payload, size_t len, bool *ok)
{
	struct cbor_load_result res;
	cbor_item_t *it;
	struct json_object *j;

	*ok = false;
	if (!len)
		return NULL;
	it = cbor_load(payload, len, &res);
	if (!it)
		return NULL;
	if (res.read != len) {
		cbor_decref(&it);
		return NULL;
	}
	j = to_json(it);
	cbor_decref(&it);
	*ok = true;
	return j;
}
