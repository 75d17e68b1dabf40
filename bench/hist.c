/* SPDX-License-Identifier: MIT */
/* hist: a log-linear latency histogram with fixed relative precision. */
#include <stdbool.h>
#include <string.h>

#include "hist.h"

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned hist_index(uint64_t v)
{
	if (v < HIST_LINEAR)
		return (unsigned)v;
	if (v >= HIST_LIMIT)
		v = HIST_LIMIT - 1;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - HIST_SUB_BITS;
	unsigned m = (unsigned)(v >> shift);
	return HIST_LINEAR + (shift - 1) * HIST_SUB + (m - HIST_SUB);
}

uint64_t hist_bucket_low(unsigned idx)
{
	if (idx < HIST_LINEAR)
		return idx;
	unsigned k = idx - HIST_LINEAR;
	unsigned shift = k / HIST_SUB + 1;
	return (uint64_t)(k % HIST_SUB + HIST_SUB) << shift;
}

uint64_t hist_bucket_width(unsigned idx)
{
	if (idx < HIST_LINEAR)
		return 1;
	return (uint64_t)1 << ((idx - HIST_LINEAR) / HIST_SUB + 1);
}

double hist_precision(void)
{
	return 1.0 / (2.0 * HIST_SUB);
}

void hist_record(struct hist *h, uint64_t v)
{
	h->counts[hist_index(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		if (src->counts[i])
			__atomic_fetch_add(&dst->counts[i], src->counts[i], __ATOMIC_RELAXED);
	__atomic_fetch_add(&dst->count, src->count, __ATOMIC_RELAXED);
	__atomic_fetch_add(&dst->sum, src->sum, __ATOMIC_RELAXED);
	uint64_t cur = __atomic_load_n(&dst->min, __ATOMIC_RELAXED);
	while (src->min < cur && !__atomic_compare_exchange_n(&dst->min, &cur, src->min, false,
							      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	cur = __atomic_load_n(&dst->max, __ATOMIC_RELAXED);
	while (src->max > cur && !__atomic_compare_exchange_n(&dst->max, &cur, src->max, false,
							      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	if (h->count == 0)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	double want = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_low(i) + hist_bucket_width(i) / 2;
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}
