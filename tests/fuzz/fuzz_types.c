/* SPDX-License-Identifier: MIT */
/* libFuzzer target for declared payload types: type texts, and CBOR payloads checked against types.
 *
 * Input: a type's text up to the first NUL, then a payload (the rest). The
 * text is parsed; a type that parses formats to a text that parses again to
 * the same text, and the payload is checked against it. Without a NUL, the
 * whole input is a payload, checked against fixed types (srvtime's among
 * them) and decoded as srvtime's answer. Every result is one the API
 * documents; a refusal says why. */
#include <errno.h>

#include "fuzz.h"
#include "libmessage/srvtime.h"
#include "libmessage/types.h"

static const char *const fixed_text[] = {
    "()",
    "int",
    "uint",
    "float",
    "bool",
    "text",
    "bytes",
    "any",
    "[text]",
    "{name: text, age: uint?}",
    "[{a: [int?], b: {c: bytes}}]",
    LM_SRVTIME_TYPE,
};
#define NFIXED (sizeof(fixed_text) / sizeof(fixed_text[0]))
static lm_type *fixed[NFIXED];

static void check_payload(const lm_type *t, const uint8_t *p, size_t len)
{
	char err[256] = "";
	int ret = lm_type_check(t, p, len, err, sizeof(err));

	FZ_CHECK(ret == 0 || ret == -EBADMSG || ret == -ENOMEM);
	FZ_CHECK(ret != -EBADMSG || err[0]);
}

/* The canonical text of t, malloc'd. */
static char *format(const lm_type *t)
{
	size_t n = lm_type_format(t, NULL, 0);
	char *buf = malloc(n + 1);

	FZ_CHECK(buf != NULL);
	FZ_CHECK(lm_type_format(t, buf, n + 1) == n && strlen(buf) == n);
	return buf;
}

static void one_type(const char *text, const uint8_t *p, size_t len)
{
	char err[256] = "", *canon, *again;
	lm_type *t, *t2;
	int ret = lm_type_parse(&t, text, err, sizeof(err));

	FZ_CHECK(ret == 0 || ret == -EINVAL || ret == -ENOMEM);
	if (ret == -EINVAL)
		FZ_CHECK(err[0]);
	if (ret < 0)
		return;
	canon = format(t);
	FZ_CHECK(lm_type_parse(&t2, canon, err, sizeof(err)) == 0);
	again = format(t2);
	FZ_CHECK(strcmp(canon, again) == 0);
	check_payload(t, p, len);
	free(canon);
	free(again);
	lm_type_free(t2);
	lm_type_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	struct lm_srvtime st;
	int ret;

	if (!fixed[0])
		for (size_t i = 0; i < NFIXED; i++)
			FZ_CHECK(lm_type_parse(&fixed[i], fixed_text[i], NULL, 0) == 0);
	if (nul) {
		one_type((const char *)data, nul + 1, size - (size_t)(nul + 1 - data));
		return 0;
	}
	for (size_t i = 0; i < NFIXED; i++)
		check_payload(fixed[i], data, size);
	ret = lm_srvtime_decode(&st, data, size);
	FZ_CHECK(ret == 0 || ret == -EBADMSG);
	return 0;
}
