/* SPDX-License-Identifier: MIT */
/* Helpers of the transport conformance suite. */
#include <dirent.h>
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

#define PARAM(s)                    \
	{s, LM_BACKEND_EPOLL},      \
	{                           \
		s, LM_BACKEND_URING \
	}
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
	for (uint64_t i = 0; i < p->burst && p->received == 1; i++) {
		int err = lm_conn_send(c, &i, sizeof(i));

		if (err < 0) {
			fprintf(stderr, "burst: %s\n", strerror(-err));
			break;
		}
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
	p->burst = s->burst;
	p->free_on_close = true;
	lm_conn_set_callbacks(c, &lm_tt_callbacks, p);
}

void lm_tt_peer_clear(struct lm_tt_peer *p)
{
	lm_conn_free(p->c);
	p->c = NULL;
	free(p->last);
	p->last = NULL;
}

void lm_tt_server_free(struct lm_tt_server *s)
{
	for (int i = 0; i < s->n; i++)
		lm_tt_peer_clear(&s->peers[i]);
	s->n = 0;
	lm_listener_free(s->l);
	s->l = NULL;
}

static int mq_name(char *buf, size_t size, const char *name)
{
	char dir[4096];
	struct statx stx;

	if (lm_runtime_dir(dir, sizeof(dir)) < 0 ||
	    statx(AT_FDCWD, dir, 0, STATX_INO | STATX_BTIME, &stx) < 0)
		return -errno;
	/* As transports/mq.c names it. */
	snprintf(buf, size, "/lm.%x.%x.%llx.%llx.%x.%s", stx.stx_dev_major, stx.stx_dev_minor,
		 (unsigned long long)stx.stx_ino, (unsigned long long)stx.stx_btime.tv_sec,
		 stx.stx_btime.tv_nsec, name);
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

static char queue_to_remove[300];

void lm_tt_forget_queue_at_end(const char *name)
{
	if (mq_name(queue_to_remove, sizeof(queue_to_remove), name) < 0)
		queue_to_remove[0] = 0;
}

void lm_tt_fini(void)
{
	char prefix[340];
	struct dirent *e;
	DIR *d;

	if (!queue_to_remove[0])
		return;
	mq_unlink(queue_to_remove);
	/* And this process's own connection queues at that name, which a test
	 * that failed before the server took them leaves behind (where
	 * /dev/mqueue lists them). */
	snprintf(prefix, sizeof(prefix), "%s.%d.", queue_to_remove + 1, (int)getpid());
	d = opendir("/dev/mqueue");
	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[600];

		if (strncmp(e->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(path, sizeof(path), "/%s", e->d_name);
		mq_unlink(path);
	}
	closedir(d);
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

static void stop_on_signal(lm_source *src, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(src), 0);
}

/* The burst server's loop: until its first client's first message was
 * answered by the burst and all of it is in the kernel; then it dies with
 * its connection open, as a killed server does. */
static void burst_then_die(lm_reactor *r, struct lm_tt_server *s)
{
	while (
	    !(s->n && s->peers[0].c && s->peers[0].received && lm_conn_queued(s->peers[0].c) == 0))
		if (lm_reactor_run_once(r, -1) < 0 || (s->n && !s->peers[0].c))
			_exit(1);
	lm_listener_free(s->l);
	_exit(0);
}

static int fork_server(const char *endpoint, size_t burst, pid_t *pid)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	*pid = lm_test_fork();
	if (*pid < 0)
		return -errno;
	if (*pid == 0) {
		struct lm_tt_server *s = calloc(1, sizeof(*s));
		lm_reactor *r = NULL;
		int err;

		close(p[0]);
		s->echo = !burst;
		s->burst = burst;
		err = lm_reactor_new(&r, NULL);
		if (err == 0)
			err = lm_listener_new(&s->l, r, endpoint, NULL, lm_tt_accept, s);
		if (err < 0) {
			fprintf(stderr, "server %s: %s\n", endpoint, strerror(-err));
			_exit(1);
		}
		/* SIGTERM stops it cleanly: an mq listener's queue is global, it
		 * must not outlive the test. */
		if (lm_reactor_add_signal(r, NULL, SIGTERM, stop_on_signal, NULL) < 0 ||
		    write(p[1], "x", 1) != 1)
			_exit(1);
		if (burst)
			burst_then_die(r, s);
		lm_reactor_run(r);
		lm_listener_free(s->l);
		_exit(0);
	}
	close(p[1]);
	return p[0];
}

int lm_tt_fork_server(const char *endpoint, pid_t *pid)
{
	return fork_server(endpoint, 0, pid);
}

int lm_tt_fork_burster(const char *endpoint, size_t n, pid_t *pid)
{
	return fork_server(endpoint, n, pid);
}

/* ---- raw peers that speak each transport's framing badly ---- */

#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>

static void raw_unix(const char *dir, const char *name, const void *bytes, size_t n)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%.60s/%.20s.unix", dir, name) < 0 ||
	    fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    send(fd, bytes, n, MSG_NOSIGNAL) != (ssize_t)n)
		_exit(2);
	sleep(5);
	_exit(0);
}

static void raw_fifo(const char *dir, const char *name, const void *bytes, size_t n)
{
	struct {
		uint32_t magic;
		int32_t pid;
		char id[128];
	} req = {0x6c6d6631u, getpid(), ""};
	char c2s[4300], s2c[4300], lst[4300];
	int rfd, wfd, lfd;

	snprintf(req.id, sizeof(req.id), "%s.%d.raw", name, (int)getpid());
	snprintf(c2s, sizeof(c2s), "%s/%s.c2s", dir, req.id);
	snprintf(s2c, sizeof(s2c), "%s/%s.s2c", dir, req.id);
	snprintf(lst, sizeof(lst), "%s/%s.fifo", dir, name);
	if (mkfifo(c2s, 0600) < 0 || mkfifo(s2c, 0600) < 0)
		_exit(2);
	rfd = open(s2c, O_RDONLY | O_NONBLOCK);
	wfd = open(c2s, O_RDWR);
	lfd = open(lst, O_WRONLY);
	if (rfd < 0 || wfd < 0 || lfd < 0 || write(lfd, &req, sizeof(req)) != sizeof(req) ||
	    write(wfd, bytes, n) != (ssize_t)n)
		_exit(3);
	sleep(5);
	_exit(0);
}

/* Make a connection's queues (id <pid>.77), send the request, and return
 * the client's writing queue. */
/* A client's two queues, and its request on the listener's queue unless
 * !request (a client that dies between the two). */
static int hup_kind; /* lm_tt_fork_mq_bad_close(): what stands at the FIFO's name */

static mqd_t mq_request(const char *name, bool request)
{
	struct {
		uint32_t magic;
		int32_t pid;
		char id[32];
	} req = {0x6c6d6d31u, getpid(), ""};
	struct mq_attr a = {.mq_maxmsg = 10, .mq_msgsize = 2048};
	char base[300], c2s[400], s2c[400];
	mqd_t w, r, l;

	if (mq_name(base, sizeof(base), name) < 0)
		_exit(2);
	snprintf(req.id, sizeof(req.id), "%d.77", (int)getpid());
	snprintf(c2s, sizeof(c2s), "%s.%s.c2s", base, req.id);
	snprintf(s2c, sizeof(s2c), "%s.%s.s2c", base, req.id);
	w = mq_open(c2s, O_CREAT | O_EXCL | O_WRONLY, 0600, &a);
	r = mq_open(s2c, O_CREAT | O_EXCL | O_RDONLY, 0600, &a);
	l = mq_open(base, O_WRONLY);
	if (w == (mqd_t)-1 || r == (mqd_t)-1) {
		int err = errno;

		mq_unlink(c2s);
		mq_unlink(s2c);
		_exit(err == EMFILE ? 77 : 3);
	}
	if (request) {
		/* The FIFO that tells each side the other closed, read end ours. */
		char dir[4096], hup[4500];

		if (lm_runtime_dir(dir, sizeof(dir)) < 0)
			_exit(3);
		snprintf(hup, sizeof(hup), "%s/%s.mq.%s.hup", dir, name, req.id);
		if (hup_kind == 1) { /* a regular file */
			if (open(hup, O_CREAT | O_EXCL | O_RDWR, 0600) < 0)
				_exit(3);
		} else if (hup_kind == 2) { /* a symlink to a FIFO */
			char real[4600];

			snprintf(real, sizeof(real), "%s.real", hup);
			if (mkfifo(real, 0600) < 0 || open(real, O_RDONLY | O_NONBLOCK) < 0 ||
			    symlink(real, hup) < 0)
				_exit(3);
		} else if (hup_kind == 0 &&
			   (mkfifo(hup, 0600) < 0 || open(hup, O_RDONLY | O_NONBLOCK) < 0)) {
			_exit(3);
		} /* 3: nothing at all */
	}
	if (request && (l == (mqd_t)-1 || mq_send(l, (const char *)&req, sizeof(req), 0) < 0))
		_exit(3);
	return w;
}

static void raw_mq(const char *name, const void *bytes, size_t n)
{
	mqd_t w = mq_request(name, true);

	/* The bytes are one unit, as a datagram is for unix. */
	if (n && mq_send(w, bytes, n, 0) < 0)
		_exit(4);
	if (n == 0)
		raise(SIGKILL); /* dies holding nothing but the names */
	sleep(5);
	_exit(0);
}

pid_t lm_tt_fork_mq_bad_close(const char *name, int kind)
{
	pid_t pid = lm_test_fork();

	if (pid != 0)
		return pid;
	hup_kind = kind;
	mq_request(name, true);
	sleep(5);
	_exit(0);
}

pid_t lm_tt_fork_garbage(const char *scheme, const char *name, const void *bytes, size_t n)
{
	char dir[4096];
	pid_t pid;

	if (lm_runtime_dir(dir, sizeof(dir)) < 0)
		return -1;
	pid = lm_test_fork();
	if (pid != 0)
		return pid;
	if (!strcmp(scheme, "unix"))
		raw_unix(dir, name, bytes, n);
	else if (!strcmp(scheme, "fifo"))
		raw_fifo(dir, name, bytes, n);
	else
		raw_mq(name, bytes, n);
	_exit(9);
}

static int mq_client_dies(const char *name, char *c2s, size_t size, bool request)
{
	char base[300];
	int status;
	pid_t pid;

	if (mq_name(base, sizeof(base), name) < 0)
		return -errno;
	pid = lm_test_fork();
	if (pid < 0)
		return -errno;
	if (pid == 0 && request)
		raw_mq(name, NULL, 0);
	if (pid == 0) {
		mq_request(name, false);
		raise(SIGKILL);
	}
	snprintf(c2s, size, "%s.%d.77.c2s", base, (int)pid);
	if (waitpid(pid, &status, 0) != pid)
		return -errno;
	return WIFSIGNALED(status) ? (int)WTERMSIG(status) + 128 : WEXITSTATUS(status);
}

int lm_tt_mq_request_and_die(const char *name, char *c2s, size_t size)
{
	return mq_client_dies(name, c2s, size, true);
}

int lm_tt_mq_queues_and_die(const char *name, char *c2s, size_t size)
{
	return mq_client_dies(name, c2s, size, false);
}
