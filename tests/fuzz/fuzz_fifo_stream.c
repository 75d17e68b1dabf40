/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the fifo transport's unframing: a byte stream cut into reads.
 *
 * Input: a byte choosing max_message, then reads, each a 2-byte length (its
 * top bit: the read emptied the pipe) and that many bytes of the stream. The
 * reads go to fifo's take(), as the reactor hands them over, so frames cut
 * anywhere, frames kept for the next read and big frames reassembled in
 * place are all reached. The transport's file is included for its private
 * state; its ops table then comes from here, not from the library. */
#include <errno.h>

#include "fuzz.h"
#include "fifo.c"

static const size_t maxes[] = {0, 16, 300, 5000, 70000, 1u << 20};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fifo_conn *fc = conn_alloc();
	lm_conn c;
	int ret = 1;

	FZ_CHECK(fc != NULL);
	fz_conn_init(&c, maxes[fz_take(&data, &size, 1) % 6]);
	while (size && ret >= 0) {
		size_t n = fz_take(&data, &size, 2);
		bool last = n & 0x8000;

		n &= 0x7fff;
		if (n > size)
			n = size;
		if (n == 0)
			break; /* take() is never handed an empty read but at the end */
		ret = fifo_take(&c, fc, data, n, last);
		FZ_CHECK(ret == 1 || ret == -EMSGSIZE || ret == -ENOMEM);
		FZ_CHECK(!fc->abuf || (fc->afill < fc->atotal && fc->atotal <= c.max_message));
		FZ_CHECK(!fc->rlen || fc->left);
		data += n;
		size -= n;
	}
	fifo_free(fc);
	return 0;
}
