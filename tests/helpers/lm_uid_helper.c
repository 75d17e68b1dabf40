/* SPDX-License-Identifier: MIT */
/* What tests run as another uid (under setpriv): take mq names, or call a service. */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libmessage/libmessage.h>

/*
 * lm_uid_helper mq-create NAME...
 *	create each message queue (O_EXCL, mode 0666); prints how many it
 *	made; exit 0.
 * lm_uid_helper call ENDPOINT METHOD
 *	connect (LM_RUNTIME_DIR from the environment) and call METHOD with no
 *	arguments, 5 s at most; prints "reply N" (exit 0), "error NAME"
 *	(exit 2), "refused E" when the connection is refused (exit 3), or
 *	"failed E" (exit 4), E an errno name's number.
 */

struct st {
	enum lm_client_state state;
	int reason;
	int refused;
};

static void on_state(lm_client *c, enum lm_client_state state, int reason, void *ud)
{
	struct st *s = ud;

	s->state = state;
	s->reason = reason;
	if (state == LM_CLIENT_DISCONNECTED && (reason == -EACCES || reason == -EPERM))
		s->refused = reason;
}

static int call(const char *ep, const char *method)
{
	struct st s = {0};
	struct timespec t0, t;
	struct lm_reply *reply = NULL;
	lm_reactor *r;
	lm_client *c;
	int err = lm_reactor_new(&r, NULL);

	if (err == 0)
		err = lm_client_new(&c, r, ep,
				    &(struct lm_client_options){.reconnect_min_ns = 20000000});
	if (err < 0) {
		printf("failed %d\n", -err);
		return err == -EACCES || err == -EPERM ? 3 : 4;
	}
	s.state = lm_client_get_state(c);
	lm_client_set_state_cb(c, on_state, &s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	t = t0;
	while (s.state != LM_CLIENT_CONNECTED && !s.refused && t.tv_sec - t0.tv_sec < 5) {
		lm_reactor_run_once(r, 20000000);
		clock_gettime(CLOCK_MONOTONIC, &t);
	}
	if (s.refused) {
		printf("refused %d\n", -s.refused);
		return 3;
	}
	err = lm_client_call_sync(c, method, NULL, 0, 5000000000ll, &reply);
	if (err == 0)
		printf("reply %zu\n", reply->len);
	else if (err == -EREMOTEIO)
		printf("error %s\n", reply->error_name);
	else if (err == -EACCES)
		printf("refused %d\n", -err);
	else
		printf("failed %d\n", -err);
	lm_reply_free(reply);
	lm_client_free(c);
	lm_reactor_free(r);
	return err == 0 ? 0 : err == -EREMOTEIO ? 2 : err == -EACCES ? 3 : 4;
}

int main(int argc, char **argv)
{
	int made = 0;

	if (argc >= 2 && strcmp(argv[1], "mq-create") == 0) {
		struct mq_attr a = {.mq_maxmsg = 1, .mq_msgsize = 64};

		for (int i = 2; i < argc; i++) {
			mqd_t q = mq_open(argv[i], O_CREAT | O_EXCL | O_RDWR, 0666, &a);

			if (q != (mqd_t)-1) {
				made++;
				mq_close(q);
			}
		}
		printf("%d\n", made);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "call") == 0)
		return call(argv[2], argv[3]);
	fprintf(stderr, "usage: lm_uid_helper mq-create NAME... | call ENDPOINT METHOD\n");
	return 1;
}
