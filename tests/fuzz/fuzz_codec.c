/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the wire codec: decode anything, re-encode what decodes.
 *
 * Build and run (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I services \
 *         tests/fuzz/fuzz_codec.c services/protocol.c -o fuzz_codec
 *   ./fuzz_codec tests/fuzz/corpus
 * The corpus is replayed through the same function by tests/test_codec.c. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static void one(const uint8_t *data, size_t size, size_t max)
{
	struct lm_proto_msg m;
	uint8_t *buf;
	int err = lm__proto_decode(&m, data, size, max);

	check(err == 0 || err == -EPROTO || err == -EMSGSIZE || err == -EPROTONOSUPPORT);
	if (err < 0)
		return;
	/* What decodes is in bounds and re-encodes to the same bytes
	 * (flags aside: the encoder always writes 0). */
	check(m.name_len <= LM_PROTO_MAX_NAME && size <= max);
	check((const uint8_t *)m.name == data + LM_PROTO_HEADER_SIZE);
	check((const uint8_t *)m.payload + m.payload_len == data + size);
	buf = malloc(size ? size : 1);
	check(buf != NULL);
	err = lm__proto_encode(buf, size, m.kind, m.serial, m.name, m.name_len, m.payload,
			       m.payload_len, max);
	check(err == (int)size);
	check(memcmp(buf, data, 4) == 0 && memcmp(buf + 6, data + 6, size - 6) == 0);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size, 1u << 20);
	one(data, size, 64);
	one(data, size, LM_PROTO_HEADER_SIZE);
	return 0;
}
