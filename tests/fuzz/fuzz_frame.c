/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the unit framing of unix datagrams and mq messages (frame.c).
 *
 * Input: a byte choosing max_message and the unit size, then units, each a
 * 2-byte length and that many bytes (cut at the input's end). Each unit goes
 * where unix_take() and mq's take_unit() send it: to the reassembly of a big
 * message if one is under way, else unpacked. Every message delivered is
 * within max_message and readable whole; a unit the framing refuses ends
 * the connection as it would (the reassembly buffer freed). */
#include <errno.h>

#include "fuzz.h"

static const size_t units[] = {64, 100, 512, 4096, LM_TRANSPORT_DATAGRAM_MAX};
static const size_t maxes[] = {0, 16, 300, 5000, 70000, 1u << 20};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lm__unpack un = {0};
	lm_conn c;
	size_t sel = fz_take(&data, &size, 1);
	size_t unit = units[sel % 5], max = maxes[(sel / 5) % 6];
	int ret = 1;

	fz_conn_init(&c, max);
	while (size && ret >= 0) {
		size_t n = fz_take(&data, &size, 2);

		if (n > size)
			n = size;
		if (n > unit) {
			ret = -EPROTO; /* what a receive does with a datagram too long */
			break;
		}
		if (un.buf) {
			FZ_CHECK(un.fill < un.total && un.total <= max);
			ret = lm__unpack_fragment(&c, &un, data, n, unit);
		} else {
			ret = lm__unpack_unit(&c, &un, data, n, unit, size == n);
		}
		FZ_CHECK(ret == 1 || ret == -EPROTO || ret == -EMSGSIZE);
		data += n;
		size -= n;
	}
	free(un.buf);
	return 0;
}
