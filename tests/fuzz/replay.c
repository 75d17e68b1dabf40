/* SPDX-License-Identifier: MIT */
/* Replays files (or every file of directories) through a fuzz target, without libFuzzer.
 *
 * Built with any compiler, so CI replays each corpus where clang is missing:
 *   fuzz_replay_frame tests/fuzz/corpus/frame
 * Exit status 0 when every input ran; a crash aborts as under libFuzzer.
 * At least min inputs (LM_FUZZ_REPLAY_MIN, default 1) must be found. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	uint8_t *buf;
	size_t len;
	struct stat st;
	FILE *f = fopen(path, "rb");

	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		fclose(f);
		return -1;
	}
	len = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	const char *min_env = getenv("LM_FUZZ_REPLAY_MIN");
	long n = 0, min = min_env ? atol(min_env) : 1;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent *e;
		DIR *d;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			n++;
			continue;
		}
		d = opendir(argv[i]);
		if (!d)
			return 1;
		while ((e = readdir(d))) {
			char path[4096];

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
			if (run_file(path) < 0) {
				closedir(d);
				return 1;
			}
			n++;
		}
		closedir(d);
	}
	printf("%ld inputs replayed\n", n);
	if (n < min) {
		fprintf(stderr, "only %ld inputs, expected at least %ld\n", n, min);
		return 1;
	}
	return 0;
}
