/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the mq transport's connection requests.
 *
 * A listener serves "fz" in a private runtime directory (its queue unlinked
 * at once, so nothing outlives the run); the input is cut into queue
 * messages, each a 1-byte length and that many bytes, sent to its request
 * queue as any process of ours could, and accept() takes them until none is
 * left. The transport's file is included for the listener's queue name. */
#include <errno.h>

#include "fuzz.h"
#include "mq.c"

static struct mq_listener *ml;
static mqd_t wq = (mqd_t)-1;

static void setup(void)
{
	char dir[] = "/tmp/lm-fuzz-XXXXXX";
	void *ls;
	int dirfd;

	FZ_CHECK(mkdtemp(dir) != NULL);
	dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	FZ_CHECK(dirfd >= 0);
	lm_set_log_level(LM_LOG_ERROR);
	FZ_CHECK(mq_listen(dirfd, "fz", false, &ls) == 0);
	ml = ls;
	wq = mq_open(ml->qname, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	mq_unlink(ml->qname);
	FZ_CHECK(wq != (mqd_t)-1);
	rmdir(dir);
	close(dirfd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *cs;
	int ret = 0;

	if (!ml)
		setup();
	while (size) {
		size_t n = fz_take(&data, &size, 1) % (sizeof(struct mq_req) + 1);

		if (n > size)
			n = size;
		if (mq_send(wq, (const char *)data, n, 0) < 0) {
			FZ_CHECK(errno == EAGAIN);
			break;
		}
		data += n;
		size -= n;
	}
	for (int i = 0; i < 256; i++) {
		ret = mq_accept(ml, &cs);
		if (ret == 0)
			break;
		FZ_CHECK(ret < 0); /* nothing a request names exists */
	}
	FZ_CHECK(ret == 0);
	return 0;
}
