/* SPDX-License-Identifier: MIT */
/* The libmessage wire protocol codec: bytes <-> struct lm_proto_msg, no I/O. */
#include <errno.h>
#include <string.h>

#include "protocol.h"

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The bytes a name may hold: [A-Za-z0-9_.-]. A table, because every
 * message decoded and every signal emitted checks its name. */
static const uint8_t name_char[256] = {
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['_'] = 1, ['.'] = 1, ['-'] = 1,
};

LM_PROTO_HOT int lm__proto_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > LM_PROTO_MAX_NAME)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!name_char[(unsigned char)name[i]])
			return 0;
	return 1;
}

/* What a kind says about its name: 0 must be empty, 1 required, 2 optional. */
LM_PROTO_HOT static int name_rule(uint8_t kind)
{
	switch (kind) {
	case LM_PROTO_HELLO:
	case LM_PROTO_WELCOME:
		return 2;
	case LM_PROTO_CALL:
	case LM_PROTO_ERROR:
	case LM_PROTO_SUBSCRIBE:
	case LM_PROTO_UNSUBSCRIBE:
	case LM_PROTO_SIGNAL:
	case LM_PROTO_DROPPED:
		return 1;
	case LM_PROTO_REPLY:
	case LM_PROTO_BYE:
		return 0;
	default:
		return -1;
	}
}

LM_PROTO_HOT static int check_name(uint8_t kind, const char *name, size_t len)
{
	int rule = name_rule(kind);

	if (rule < 0)
		return 0;
	if (len == 0)
		return rule != 1;
	if (rule == 0)
		return 0;
	return lm__proto_name_ok(name, len);
}

LM_PROTO_HOT int lm__proto_decode(struct lm_proto_msg *ret, const void *data, size_t len,
				  size_t max_message)
{
	const uint8_t *p = data;
	size_t name_len, payload_len;

	if (len > max_message)
		return -EMSGSIZE;
	if (len < LM_PROTO_HEADER_SIZE || p[0] != LM_PROTO_MAGIC0 || p[1] != LM_PROTO_MAGIC1)
		return -EPROTO;
	if (p[2] != LM_PROTO_VERSION)
		return -EPROTONOSUPPORT;
	name_len = get16(p + 6);
	payload_len = get32(p + 12);
	/* Both are bounded (16 and 32 bits), so the sum cannot wrap a size_t. */
	if (name_len > LM_PROTO_MAX_NAME)
		return -EPROTO;
	if (payload_len > max_message ||
	    LM_PROTO_HEADER_SIZE + name_len + payload_len > max_message)
		return -EMSGSIZE;
	if (LM_PROTO_HEADER_SIZE + name_len + payload_len != len)
		return -EPROTO;
	if (!check_name(p[3], (const char *)p + LM_PROTO_HEADER_SIZE, name_len))
		return -EPROTO;
	if (p[3] == LM_PROTO_DROPPED && payload_len != 8)
		return -EPROTO;

	ret->kind = p[3];
	ret->version = p[2];
	ret->flags = get16(p + 4);
	ret->serial = get32(p + 8);
	ret->name = (const char *)p + LM_PROTO_HEADER_SIZE;
	ret->name_len = name_len;
	ret->payload = p + LM_PROTO_HEADER_SIZE + name_len;
	ret->payload_len = payload_len;
	return 0;
}

int lm__proto_encode_header(uint8_t hdr[LM_PROTO_HEADER_SIZE], uint8_t kind, uint32_t serial,
			    const char *name, size_t name_len, size_t payload_len,
			    size_t max_message)
{
	if (name_len > LM_PROTO_MAX_NAME || !check_name(kind, name, name_len))
		return -EINVAL;
	if (payload_len > max_message || payload_len > UINT32_MAX ||
	    LM_PROTO_HEADER_SIZE + name_len + payload_len > max_message)
		return -EMSGSIZE;
	hdr[0] = LM_PROTO_MAGIC0;
	hdr[1] = LM_PROTO_MAGIC1;
	hdr[2] = LM_PROTO_VERSION;
	hdr[3] = kind;
	put16(hdr + 4, 0);
	put16(hdr + 6, (uint16_t)name_len);
	put32(hdr + 8, serial);
	put32(hdr + 12, (uint32_t)payload_len);
	return 0;
}

int lm__proto_encode(void *buf, size_t size, uint8_t kind, uint32_t serial, const char *name,
		     size_t name_len, const void *payload, size_t payload_len, size_t max_message)
{
	uint8_t hdr[LM_PROTO_HEADER_SIZE];
	uint8_t *p = buf;
	size_t total;
	int err;

	err = lm__proto_encode_header(hdr, kind, serial, name, name_len, payload_len, max_message);
	if (err < 0)
		return err;
	total = LM_PROTO_HEADER_SIZE + name_len + payload_len;
	if (total > size || total > INT32_MAX)
		return -ENOSPC;
	memcpy(p, hdr, sizeof(hdr));
	if (name_len)
		memcpy(p + LM_PROTO_HEADER_SIZE, name, name_len);
	if (payload_len)
		memcpy(p + LM_PROTO_HEADER_SIZE + name_len, payload, payload_len);
	return (int)total;
}

const char *lm__proto_kind_name(uint8_t kind)
{
	static const char *const names[] = {
	    [LM_PROTO_HELLO] = "HELLO",
	    [LM_PROTO_WELCOME] = "WELCOME",
	    [LM_PROTO_CALL] = "CALL",
	    [LM_PROTO_REPLY] = "REPLY",
	    [LM_PROTO_ERROR] = "ERROR",
	    [LM_PROTO_SUBSCRIBE] = "SUBSCRIBE",
	    [LM_PROTO_UNSUBSCRIBE] = "UNSUBSCRIBE",
	    [LM_PROTO_SIGNAL] = "SIGNAL",
	    [LM_PROTO_DROPPED] = "DROPPED",
	    [LM_PROTO_BYE] = "BYE",
	};

	if (kind < sizeof(names) / sizeof(names[0]) && names[kind])
		return names[kind];
	return "?";
}
