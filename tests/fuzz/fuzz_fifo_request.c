/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the fifo transport's connection requests.
 *
 * A listener serves "fz" in a private runtime directory; the input is
 * written to its request FIFO as clients (or anyone with the directory)
 * would, and accept() takes requests until none is left. A request naming
 * FIFOs that are not there, or malformed, is refused without harm; the
 * listener goes on. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "fuzz.h"

static void *ls;
static int wfd = -1;

static void setup(void)
{
	char dir[] = "/tmp/lm-fuzz-XXXXXX";
	int dirfd;

	FZ_CHECK(mkdtemp(dir) != NULL);
	dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	FZ_CHECK(dirfd >= 0);
	lm_set_log_level(LM_LOG_ERROR);
	FZ_CHECK(lm__transport_fifo.listen(dirfd, "fz", false, &ls) == 0);
	wfd = openat(dirfd, "fz.fifo", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	FZ_CHECK(wfd >= 0);
	/* The directory goes at once; the open fds keep what the target needs. */
	unlinkat(dirfd, "fz.fifo", 0);
	rmdir(dir);
	close(dirfd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *cs;
	int ret;

	if (!ls)
		setup();
	if (size > PIPE_BUF * 4)
		size = PIPE_BUF * 4;
	if (size)
		FZ_CHECK(write(wfd, data, size) == (ssize_t)size);
	for (int i = 0; i < 256; i++) {
		ret = lm__transport_fifo.accept(ls, &cs);
		if (ret == 0)
			break;
		FZ_CHECK(ret < 0); /* nothing a request names exists */
	}
	FZ_CHECK(ret == 0);
	return 0;
}
