/* SPDX-License-Identifier: MIT */
/* hist: a log-linear latency histogram with fixed relative precision (HdrHistogram-like). */
#ifndef LM_BENCH_HIST_H
#define LM_BENCH_HIST_H

#include <stdint.h>

/*
 * Values below HIST_LINEAR are counted exactly; above, every power of two is
 * cut into HIST_SUB equal buckets, so a bucket is at most 1/HIST_SUB of its
 * values wide (0.78 %) and a reported percentile (the bucket's middle) is
 * within half of that (0.39 %) of the true value. Values at or above
 * HIST_LIMIT (2^42 ns, 73 minutes) are counted in the last bucket. The size
 * is fixed (36 KiB) whatever the count.
 */
#define HIST_SUB_BITS  7
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_LINEAR    (2u * HIST_SUB)
#define HIST_MAX_SHIFT 34
#define HIST_BUCKETS   (HIST_LINEAR + HIST_MAX_SHIFT * HIST_SUB)
#define HIST_LIMIT     ((uint64_t)1 << (HIST_MAX_SHIFT + HIST_SUB_BITS + 1))

struct hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t counts[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
/* Add src into dst with atomic operations: dst may be shared between
 * processes that merge into it at the same time. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at percentile p (0..100): the middle of the bucket that holds
 * the rank ceil(p/100 * count), clamped to [min, max]. 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
/* Bucket geometry, for tests and plots. */
unsigned hist_index(uint64_t v);
uint64_t hist_bucket_low(unsigned idx);
uint64_t hist_bucket_width(unsigned idx);
/* The largest relative error of a reported value: 1 / (2 * HIST_SUB). */
double hist_precision(void);

#endif
