/* SPDX-License-Identifier: MIT */
/* lmctl: JSON (json-c) to and from typed CBOR payloads (libcbor). */
#ifndef LMCTL_CONVERT_H
#define LMCTL_CONVERT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>
#include <libmessage/types.h>

/*
 * The JSON text json as the CBOR payload of type t, into *out (malloc'd,
 * *len bytes; NULL and 0 for the type "()"). Integers stay integers, a
 * float field takes any number, a bytes field takes a hex string, a map
 * takes an object with the declared fields (an optional one may be absent
 * or null) and no other. 0; -EINVAL with what is wrong and where in err
 * (the JSON does not parse, or does not match t); -ENOMEM.
 */
int lmctl_json_to_cbor(const lm_type *t, const char *json, unsigned char **out, size_t *len,
		       char *err, size_t errsize);

/*
 * One CBOR item (len bytes, nothing after it) as JSON: integers, floats,
 * text, bool and null as themselves, byte strings as hex text, maps with
 * text keys as objects (other keys as their JSON text), tags as their
 * content. *ok says whether payload is one CBOR item; the result is a new
 * reference, or NULL for JSON null (and when *ok is false).
 */
struct json_object *lmctl_cbor_to_json(const void *payload, size_t len, bool *ok);

/* Bytes as a JSON string of hex digits ("00ff"); a new reference. */
struct json_object *lmctl_hex_json(const unsigned char *p, size_t n);

#endif
