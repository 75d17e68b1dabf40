/* Helpers of the transport conformance suite. */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transport_test.h"

#define PARAM(s) {s, LM_BACKEND_EPOLL}, {s, LM_BACKEND_URING}
struct lm_tt_param lm_tt_params[] = {PARAM("unix"), PARAM("fifo"), PARAM("mq")};
const size_t lm_tt_nparams = sizeof(lm_tt_params) / sizeof(lm_tt_params[0]);

double lm_tt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void lm_tt_pattern(unsigned char *buf, size_t len, unsigned seed)
{
	uint32_t x = (uint32_t)len * 2654435761u + seed + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
}

static void on_message(lm_conn *c, const void *data, size_t len, void *userdata)
{
	struct lm_tt_peer *p = userdata;

	if (p->check_seq) {
		uint64_t seq = 0;

		if (len != sizeof(seq))
			p->seq_error = true;
		else
			memcpy(&seq, data, sizeof(seq));
		if (seq != p->received)
			p->seq_error = true;
	} else {
		free(p->last);
		p->last = malloc(len ? len : 1);
		if (len)
			memcpy(p->last, data, len);
	}
	p->received++;
	p->bytes += len;
	p->last_len = len;
	if (p->echo) {
		int err = lm_conn_send(c, data, len);

		if (err < 0)
			fprintf(stderr, "echo: %s\n", strerror(-err));
	}
}

static void on_closed(lm_conn *c, int reason, void *userdata)
{
	struct lm_tt_peer *p = userdata;

	p->closed++;
	p->reason = reason;
	if (p->free_on_close) {
		lm_conn_free(c);
		p->c = NULL;
	}
}

static void on_drained(lm_conn *c, void *userdata)
{
	((struct lm_tt_peer *)userdata)->drained++;
}

const struct lm_conn_callbacks lm_tt_callbacks = {on_message, on_closed, on_drained};

void lm_tt_accept(lm_listener *l, lm_conn *c, void *userdata)
{
	struct lm_tt_server *s = userdata;
	struct lm_tt_peer *p;

	if (s->n == (int)(sizeof(s->peers) / sizeof(s->peers[0]))) {
		lm_conn_free(c);
		return;
	}
	p = &s->peers[s->n++];
	memset(p, 0, sizeof(*p));
	p->c = c;
	p->echo = s->echo;
	p->free_on_close = true;
	lm_conn_set_callbacks(c, &lm_tt_callbacks, p);
}

static int mq_name(char *buf, size_t size, const char *name)
{
	char dir[4096];
	struct stat st;

	if (lm_runtime_dir(dir, sizeof(dir)) < 0 || stat(dir, &st) < 0)
		return -errno;
	snprintf(buf, size, "/lm.%lx.%lx.%s", (unsigned long)st.st_dev, (unsigned long)st.st_ino,
		 name);
	return 0;
}

static int file_path(char *buf, size_t size, const char *scheme, const char *name)
{
	char dir[4096];
	int err = lm_runtime_dir(dir, sizeof(dir));

	if (err < 0)
		return err;
	snprintf(buf, size, "%s/%s.%s", dir, name, scheme);
	return 0;
}

int lm_tt_foreign_at_name(const char *scheme, const char *name)
{
	char path[4200];
	int fd;

	if (!strcmp(scheme, "mq")) {
		mqd_t q;

		if (mq_name(path, sizeof(path), name) < 0)
			return -errno;
		q = mq_open(path, O_CREAT | O_EXCL | O_RDWR, 0600, NULL);
		if (q == (mqd_t)-1)
			return -errno;
		mq_close(q);
		return 0;
	}
	if (file_path(path, sizeof(path), scheme, name) < 0)
		return -EINVAL;
	if (!strcmp(scheme, "fifo"))
		return mkfifo(path, 0600) < 0 ? -errno : 0;
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

void lm_tt_foreign_remove(const char *scheme, const char *name)
{
	char path[4200];

	if (!strcmp(scheme, "mq")) {
		if (mq_name(path, sizeof(path), name) == 0)
			mq_unlink(path);
	} else if (file_path(path, sizeof(path), scheme, name) == 0) {
		unlink(path);
	}
}

int lm_tt_fork_server(const char *endpoint, pid_t *pid)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	*pid = fork();
	if (*pid < 0)
		return -errno;
	if (*pid == 0) {
		struct lm_tt_server *s = calloc(1, sizeof(*s));
		lm_reactor *r = NULL;
		int err;

		close(p[0]);
		s->echo = true;
		err = lm_reactor_new(&r, NULL);
		if (err == 0)
			err = lm_listener_new(&s->l, r, endpoint, NULL, lm_tt_accept, s);
		if (err < 0) {
			fprintf(stderr, "server %s: %s\n", endpoint, strerror(-err));
			_exit(1);
		}
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		lm_reactor_run(r);
		_exit(0);
	}
	close(p[1]);
	return p[0];
}
