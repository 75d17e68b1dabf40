/* SPDX-License-Identifier: MIT */
/* The libmessage wire protocol: pure encode/decode of one message, no I/O. */
#ifndef LM_SERVICES_PROTOCOL_H
#define LM_SERVICES_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

/* See docs/protocol.md for the normative description. */
#define LM_PROTO_MAGIC0      0x4c /* 'L' */
#define LM_PROTO_MAGIC1      0x4d /* 'M' */
#define LM_PROTO_VERSION     1
#define LM_PROTO_HEADER_SIZE 16
#define LM_PROTO_MAX_NAME    255

/*
 * On the functions every signal runs through (decode, the client's message
 * handler, emit). GCC puts them in .text.hot, which the linker lays out
 * together: a subscriber woken among a hundred others then touches one page
 * of services code instead of three, and TLB misses are what a fan-out on
 * one CPU pays per process.
 */
#define LM_PROTO_HOT __attribute__((hot))

enum lm_proto_kind {
	LM_PROTO_HELLO = 1,
	LM_PROTO_WELCOME = 2,
	LM_PROTO_CALL = 3,
	LM_PROTO_REPLY = 4,
	LM_PROTO_ERROR = 5,
	LM_PROTO_SUBSCRIBE = 6,
	LM_PROTO_UNSUBSCRIBE = 7,
	LM_PROTO_SIGNAL = 8,
	LM_PROTO_DROPPED = 9,
	LM_PROTO_BYE = 10,
};

/* Header flags (docs/protocol.md). NO_REPLY on a CALL: the caller wants no
 * answer, and the server sends none (neither REPLY nor ERROR). */
#define LM_PROTO_FLAG_NO_REPLY 0x0001

/* The serial of a NO_REPLY call: its low 16 bits are 0, so it is never one
 * of a client's pending calls (their low 16 bits are a slot + 1), and an
 * older server's answer to it is dropped. */
#define LM_PROTO_NO_REPLY_SERIAL 0xffff0000u

/* Set a header's flags (after lm__proto_encode_header). */
static inline void lm__proto_set_flags(uint8_t hdr[16], uint16_t flags)
{
	hdr[4] = (uint8_t)flags;
	hdr[5] = (uint8_t)(flags >> 8);
}

/* A decoded message: name and payload point into the decoded buffer. */
struct lm_proto_msg {
	uint8_t kind;
	uint8_t version;
	uint16_t flags;
	uint32_t serial;
	const char *name; /* not NUL-terminated */
	size_t name_len;
	const void *payload;
	size_t payload_len;
};

/*
 * Decode one whole message of len bytes. 0 and *ret filled on success;
 * -EMSGSIZE if len or an announced length passes max_message; -EPROTO for a
 * malformed message (short, bad magic, unknown kind, lengths that do not add
 * up to len, a name that breaks the rules of its kind); -EPROTONOSUPPORT for
 * another protocol version. Never allocates; *ret untouched on failure.
 */
int lm__proto_decode(struct lm_proto_msg *ret, const void *data, size_t len, size_t max_message);

/*
 * Fill the 16-byte header for a message of this kind. Checks the name
 * (length and characters as the kind requires) and that the whole message
 * fits max_message: -EINVAL for a bad kind or name, -EMSGSIZE if too large.
 */
int lm__proto_encode_header(uint8_t hdr[LM_PROTO_HEADER_SIZE], uint8_t kind, uint32_t serial,
			    const char *name, size_t name_len, size_t payload_len,
			    size_t max_message);

/* Header, name and payload into buf (one contiguous message). Returns its
 * length, -ENOSPC if buf is too small, or an error of encode_header. */
int lm__proto_encode(void *buf, size_t size, uint8_t kind, uint32_t serial, const char *name,
		     size_t name_len, const void *payload, size_t payload_len, size_t max_message);

/* Whether name is a valid member or error name (1..255 bytes of [A-Za-z0-9_.-]). */
int lm__proto_name_ok(const char *name, size_t len);

/* "CALL", "REPLY", ... or "?" */
const char *lm__proto_kind_name(uint8_t kind);

#endif
