/* SPDX-License-Identifier: MIT */
/* Framing the unix and mq transports share: messages packed into units. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport-internal.h"

/*
 * A message is its length (4 bytes, host order) and its payload. A unit (a
 * datagram, a queue message) of at most `unit` bytes holds one or more whole
 * messages back to back, or the start of one message too big for that:
 * exactly `unit` bytes, the length and unit - 4 bytes of payload, the rest
 * following in units of exactly `unit` bytes, the last one shorter. Units are
 * never empty.
 */

int lm__frame_slice(struct iovec *out, const uint32_t *hdr, const struct iovec *iov, int iovcnt,
		    size_t off, size_t n)
{
	size_t end = off + n, pos = 0;
	int k = 0;

	for (int i = -1; i < iovcnt && pos < end; i++) {
		const char *base = i < 0 ? (const char *)hdr : iov[i].iov_base;
		size_t len = i < 0 ? sizeof(*hdr) : iov[i].iov_len;
		size_t lo = pos, hi = pos + len;

		pos = hi;
		if (hi <= off || len == 0)
			continue;
		if (lo < off)
			base += off - lo, lo = off;
		if (hi > end)
			hi = end;
		out[k].iov_base = (void *)base;
		out[k].iov_len = hi - lo;
		k++;
	}
	return k;
}

size_t lm__frame_copy(unsigned char *out, uint32_t hdr, const struct iovec *iov, int iovcnt)
{
	memcpy(out, &hdr, sizeof(hdr));
	out += sizeof(hdr);
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(out, iov[i].iov_base, iov[i].iov_len);
		out += iov[i].iov_len;
	}
	return sizeof(hdr) + hdr;
}

size_t lm__frame_flat(unsigned char *out, uint32_t hdr, const struct iovec *iov, int iovcnt)
{
	return sizeof(hdr) + hdr > LM_FLAT_MAX ? 0 : lm__frame_copy(out, hdr, iov, iovcnt);
}

size_t lm__frame_size(const unsigned char *p)
{
	uint32_t len;

	memcpy(&len, p, sizeof(len));
	return sizeof(len) + len;
}

size_t lm__frame_next(const unsigned char *buf, size_t len, size_t *f, size_t off, size_t unit)
{
	size_t n, g, fl;

	while (*f + lm__frame_size(buf + *f) <= off)
		*f += lm__frame_size(buf + *f);
	g = *f;
	fl = lm__frame_size(buf + g);
	/* Inside a big message, or at the start of one: its next fragment. */
	if (off > g || fl > unit)
		return g + fl - off < unit ? g + fl - off : unit;
	for (n = 0; g < len && (fl = lm__frame_size(buf + g)) <= unit - n; g += fl)
		n += fl;
	return n;
}

int lm__unpack_unit(lm_conn *c, struct lm__unpack *u, const unsigned char *buf, size_t n,
		    size_t unit, bool last)
{
	size_t off = 0, max = lm_conn_max_message(c);
	uint32_t total;

	if (n == 0)
		return -EPROTO;
	while (off < n) {
		if (n - off < sizeof(total))
			return -EPROTO;
		memcpy(&total, buf + off, sizeof(total));
		if (total > max)
			return -EMSGSIZE;
		if (total <= n - off - sizeof(total)) {
			const unsigned char *m = buf + off + sizeof(total);
			int ret = last && total == n - off - sizeof(total)
				      ? lm__transport_deliver_last(c, m, total)
				      : lm_transport_deliver(c, m, total);

			if (ret < 0)
				return ret;
			off += sizeof(total) + total;
			continue;
		}
		/* Only a unit of one big message's start may end short of it. */
		if (off != 0 || n != unit)
			return -EPROTO;
		u->buf = malloc(total);
		if (!u->buf)
			return -ENOMEM;
		memcpy(u->buf, buf + sizeof(total), n - sizeof(total));
		u->total = total;
		u->fill = n - sizeof(total);
		break;
	}
	return 1;
}

size_t lm__unpack_want(const struct lm__unpack *u, size_t unit)
{
	return u->total - u->fill < unit ? u->total - u->fill : unit;
}

int lm__unpack_fragment(lm_conn *c, struct lm__unpack *u, const unsigned char *buf, size_t n,
			size_t unit)
{
	size_t want = lm__unpack_want(u, unit);
	unsigned char *m;
	int ret;

	if (n != want)
		return -EPROTO;
	if (buf != u->buf + u->fill)
		memcpy(u->buf + u->fill, buf, n);
	u->fill += n;
	if (u->fill < u->total)
		return 1;
	m = u->buf;
	u->buf = NULL; /* c may be freed in the callback */
	ret = lm_transport_deliver(c, m, u->total);
	free(m);
	return ret < 0 ? ret : 1;
}
