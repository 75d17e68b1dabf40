/* SPDX-License-Identifier: MIT */
/* Tests of the wire protocol codec (services/protocol.c). */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lm_test.h"
#include "protocol.h"

#define MAX (1u << 20)

Test(codec, roundtrip_every_kind)
{
	static const struct {
		uint8_t kind;
		const char *name;
		size_t payload_len;
	} cases[] = {
	    {LM_PROTO_HELLO, "client-1", 0},
	    {LM_PROTO_HELLO, "", 0},
	    {LM_PROTO_WELCOME, "srvtime", 0},
	    {LM_PROTO_CALL, "getdate", 64},
	    {LM_PROTO_REPLY, "", 1000},
	    {LM_PROTO_ERROR, "lm.UnknownMethod", 5},
	    {LM_PROTO_SUBSCRIBE, "date", 0},
	    {LM_PROTO_UNSUBSCRIBE, "date", 0},
	    {LM_PROTO_SIGNAL, "date", 24},
	    {LM_PROTO_DROPPED, "date", 8},
	    {LM_PROTO_BYE, "", 0},
	};
	uint8_t payload[1000], buf[2048];

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct lm_proto_msg m;
		size_t nl = strlen(cases[i].name);
		int n = lm__proto_encode(buf, sizeof(buf), cases[i].kind, 1000 + (uint32_t)i,
					 cases[i].name, nl, payload, cases[i].payload_len, MAX);

		cr_assert_eq(n, (int)(16 + nl + cases[i].payload_len), "%s: %d",
			     lm__proto_kind_name(cases[i].kind), n);
		cr_assert_eq(lm__proto_decode(&m, buf, (size_t)n, MAX), 0);
		cr_assert_eq(m.kind, cases[i].kind);
		cr_assert_eq(m.version, LM_PROTO_VERSION);
		cr_assert_eq(m.serial, 1000 + i);
		cr_assert_eq(m.name_len, nl);
		cr_assert(memcmp(m.name, cases[i].name, nl) == 0);
		cr_assert_eq(m.payload_len, cases[i].payload_len);
		cr_assert(memcmp(m.payload, payload, m.payload_len) == 0);
	}
}

Test(codec, documented_example_bytes)
{
	static const uint8_t want[] = {0x4c, 0x4d, 0x01, 0x03, 0x00, 0x00, 0x07, 0x00,
				       0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
				       'g',  'e',  't',  'd',  'a',  't',  'e'};
	uint8_t buf[64];
	int n = lm__proto_encode(buf, sizeof(buf), LM_PROTO_CALL, 7, "getdate", 7, NULL, 0, MAX);

	cr_assert_eq(n, (int)sizeof(want));
	cr_assert(memcmp(buf, want, sizeof(want)) == 0);
}

/* A raw header, written by hand so it can say anything. */
static void header(uint8_t *b, uint8_t kind, uint16_t nl, uint32_t serial, uint32_t pl)
{
	const uint8_t h[16] = {0x4c,
			       0x4d,
			       1,
			       kind,
			       0,
			       0,
			       (uint8_t)nl,
			       (uint8_t)(nl >> 8),
			       (uint8_t)serial,
			       (uint8_t)(serial >> 8),
			       (uint8_t)(serial >> 16),
			       (uint8_t)(serial >> 24),
			       (uint8_t)pl,
			       (uint8_t)(pl >> 8),
			       (uint8_t)(pl >> 16),
			       (uint8_t)(pl >> 24)};

	memcpy(b, h, sizeof(h));
}

Test(codec, rejects_malformed)
{
	uint8_t b[64] = {0};
	struct lm_proto_msg m;

	memset(&m, 0xaa, sizeof(m));
	cr_assert_eq(lm__proto_decode(&m, b, 0, MAX), -EPROTO);
	cr_assert_eq(lm__proto_decode(&m, b, 15, MAX), -EPROTO);
	header(b, LM_PROTO_CALL, 4, 1, 0);
	memcpy(b + 16, "abcd", 4);
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), 0);
	/* lengths that do not add up */
	cr_assert_eq(lm__proto_decode(&m, b, 19, MAX), -EPROTO);
	cr_assert_eq(lm__proto_decode(&m, b, 21, MAX), -EPROTO);
	/* bad magic, version, kind */
	b[0] = 'X';
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	b[0] = 0x4c;
	b[2] = 2;
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTONOSUPPORT);
	b[2] = 1;
	b[3] = 0;
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	b[3] = 11;
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	b[3] = LM_PROTO_CALL;
	/* bad characters in a name, a name where none is allowed, a missing one */
	b[17] = '/';
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	b[17] = 0;
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	b[17] = 'b';
	b[3] = LM_PROTO_REPLY;
	cr_assert_eq(lm__proto_decode(&m, b, 20, MAX), -EPROTO);
	header(b, LM_PROTO_CALL, 0, 1, 0);
	cr_assert_eq(lm__proto_decode(&m, b, 16, MAX), -EPROTO);
	/* DROPPED carries exactly a u64 */
	header(b, LM_PROTO_DROPPED, 1, 0, 4);
	memset(&m, 0xaa, sizeof(m));
	cr_assert_eq(lm__proto_decode(&m, b, 21, MAX), -EPROTO);
	/* nothing was written on failure */
	cr_assert_eq(m.kind, 0xaa);
}

Test(codec, size_limits_checked_before_anything)
{
	uint8_t b[64];
	struct lm_proto_msg m;

	/* a header announcing 4 GiB: refused from the header alone */
	header(b, LM_PROTO_REPLY, 0, 1, 0);
	b[12] = b[13] = b[14] = b[15] = 0xff;
	cr_assert_eq(lm__proto_decode(&m, b, 16, MAX), -EMSGSIZE);
	/* announcing just over the limit */
	header(b, LM_PROTO_REPLY, 0, 1, 100 - 16 + 1);
	cr_assert_eq(lm__proto_decode(&m, b, 16, 100), -EMSGSIZE);
	/* a message longer than the limit */
	cr_assert_eq(lm__proto_decode(&m, b, 101, 100), -EMSGSIZE);
	/* a name over 255 bytes */
	header(b, LM_PROTO_CALL, 4, 1, 0);
	b[6] = 0;
	b[7] = 1;
	cr_assert_eq(lm__proto_decode(&m, b, 16 + 256, MAX), -EPROTO);
	/* the encoder refuses too */
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_REPLY, 1, NULL, 0, 85, 100), -EMSGSIZE);
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_REPLY, 1, NULL, 0, 84, 100), 0);
	cr_assert_eq(lm__proto_encode(b, 20, LM_PROTO_REPLY, 1, NULL, 0, b, 30, MAX), -ENOSPC);
}

Test(codec, encoder_checks_names)
{
	uint8_t b[16];
	char long_name[300];

	memset(long_name, 'a', sizeof(long_name));
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_CALL, 1, "", 0, 0, MAX), -EINVAL);
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_CALL, 1, "a b", 3, 0, MAX), -EINVAL);
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_CALL, 1, long_name, 256, 0, MAX), -EINVAL);
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_CALL, 1, long_name, 255, 0, MAX), 0);
	cr_assert_eq(lm__proto_encode_header(b, LM_PROTO_REPLY, 1, "x", 1, 0, MAX), -EINVAL);
	cr_assert_eq(lm__proto_encode_header(b, 42, 1, "x", 1, 0, MAX), -EINVAL);
	cr_assert(lm__proto_name_ok("lm.Introspect", 13));
	cr_assert_str_eq(lm__proto_kind_name(LM_PROTO_DROPPED), "DROPPED");
	cr_assert_str_eq(lm__proto_kind_name(200), "?");
}

/* The fuzz target itself, so its corpus is replayed here with gcc. */
#include "fuzz/fuzz_codec.c"

Test(codec, fuzz_corpus_replay)
{
	char dir[4096], path[4400];
	struct dirent *e;
	DIR *d;
	int n = 0;

	char src[4096], exe[4096];
	ssize_t el;

	/* __FILE__ is absolute, or relative to the build directory, which is
	 * the parent of this executable's directory. */
	if (__FILE__[0] == '/') {
		snprintf(src, sizeof(src), "%s", __FILE__);
	} else {
		el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		cr_assert_gt(el, 0);
		exe[el] = 0;
		snprintf(src, sizeof(src), "%s/../%s", dirname(dirname(exe)), __FILE__);
	}
	snprintf(dir, sizeof(dir), "%s/fuzz/corpus/codec", dirname(src));
	d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		uint8_t buf[1 << 16];
		size_t len;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		cr_assert_not_null(f, "%s", path);
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		cr_assert_eq(LLVMFuzzerTestOneInput(buf, len), 0);
		n++;
	}
	closedir(d);
	cr_assert_geq(n, 10, "only %d corpus files in %s", n, dir);
}
