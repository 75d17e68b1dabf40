/* SPDX-License-Identifier: MIT */
/* libmessage declared payload types: parse a type, check a CBOR payload against it. */
#ifndef LIBMESSAGE_TYPES_H
#define LIBMESSAGE_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include "reactor.h" /* LM_EXPORT */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A member may declare the type of its payload in a small language
 * (docs/protocol.md, "Declared types"); its payload is then one CBOR item
 * (RFC 8949) of that type. Examples:
 *   {sec: int, nsec: uint, iso: text}     a map with text keys
 *   [text]                                an array
 *   {name: text, age: uint?}              age may be absent or null
 *   ()                                    no payload at all (0 bytes)
 * A parsed type is immutable: any thread may read it.
 */
typedef struct lm_type lm_type;

enum lm_type_kind {
	LM_TYPE_EMPTY = 0, /* "()": 0 bytes, top level only */
	LM_TYPE_INT,       /* a CBOR integer in int64 range */
	LM_TYPE_UINT,      /* a CBOR unsigned integer (0 .. 2^64-1) */
	LM_TYPE_FLOAT,     /* a CBOR float, or an integer */
	LM_TYPE_BOOL,
	LM_TYPE_TEXT,  /* a UTF-8 text string */
	LM_TYPE_BYTES, /* a byte string */
	LM_TYPE_ANY,   /* any one CBOR item */
	LM_TYPE_ARRAY, /* [T] */
	LM_TYPE_MAP,   /* {name: T, ...} */
};

/* Types nest at most this deep. */
#define LM_TYPE_MAX_DEPTH 32
/* A payload's CBOR items nest at most this deep (inside `any` too). */
#define LM_TYPE_CBOR_MAX_NEST 64

/*
 * Parse text into *ret. 0, -EINVAL for a malformed type (why, in err:
 * "at 5: expected ':' after field name", NUL-terminated, when err is not
 * NULL), -ENOMEM. Free with lm_type_free().
 */
LM_EXPORT int lm_type_parse(lm_type **ret, const char *text, char *err, size_t errsize);
/* NULL-safe. */
LM_EXPORT void lm_type_free(lm_type *t);

/* The type's canonical text ("{sec: int, iso: text?}") into buf, like
 * snprintf: returns the length it needs, buf NUL-terminated if size > 0. */
LM_EXPORT size_t lm_type_format(const lm_type *t, char *buf, size_t size);

/*
 * Whether payload (len bytes) is one CBOR item of type t and nothing after
 * it. 0 if it is; -EBADMSG if not, with what is wrong and where in err
 * ("sec: expected int, got text"); -ENOMEM. A payload whose items nest
 * deeper than LM_TYPE_CBOR_MAX_NEST, or with an array or map that announces
 * more items than the payload has bytes left, is -EBADMSG before anything
 * is allocated for it: checking costs memory in proportion to len.
 */
LM_EXPORT int lm_type_check(const lm_type *t, const void *payload, size_t len, char *err,
			    size_t errsize);

/* Walking a type (tools that convert to and from other formats). */
LM_EXPORT enum lm_type_kind lm_type_kind(const lm_type *t);
/* T? : the value may be null, and a map's field may be absent. */
LM_EXPORT bool lm_type_optional(const lm_type *t);
/* An array's element type; NULL for other kinds. */
LM_EXPORT const lm_type *lm_type_element(const lm_type *t);
/* A map's fields, in declared order: their number, and field i's name and
 * type (NULL past the end or for other kinds). */
LM_EXPORT size_t lm_type_field_count(const lm_type *t);
LM_EXPORT const char *lm_type_field(const lm_type *t, size_t i, const lm_type **type);

#ifdef __cplusplus
}
#endif

#endif
