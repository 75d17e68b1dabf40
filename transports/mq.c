/* SPDX-License-Identifier: MIT */
/* The mq transport: POSIX message queues polled as fds, fragmented above msgsize. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log-internal.h"
#include "transport-internal.h"

/*
 * Names: the listener's queue is "/lm.<dev>.<ino>.<btime>.<name>", from the
 * identity of the runtime directory, so two users (or two directories) never
 * collide; a connection's are that plus ".<pid>.<r>.c2s" and ".s2c", made by
 * the client (O_EXCL, 0600) and unlinked by the server once it holds them.
 * Queue names are one machine-wide namespace that any uid may create names
 * in, and the listener's is public by design (a client must find it): <r> is
 * 64 random bits (getrandom), so another uid cannot take a connection's
 * names before its client does; a name found taken anyway is replaced by a
 * fresh one at once (CONNECT_TRIES), not after a reconnection backoff.
 *
 * Framing (frame.c): messages packed into units of at most msgsize bytes,
 * a bigger one cut into units of exactly msgsize bytes and a shorter last.
 * A gathered batch goes one unit per mq_send, many messages in each.
 *
 * Queues have no end of file. A FIFO per connection in the runtime
 * directory, "<name>.mq.<pid>.<r>.hup", carries it: the client makes it and
 * holds the read end, the server opens the write end at accept and unlinks
 * it. Nothing is ever written; when either side closes the connection or
 * dies, the other sees it hung up (the client: POLLHUP, no writer left; the
 * server: POLLERR, no reader left): it is the connection's closefd. The
 * client also watches the server's life through a pidfd (its pid from the
 * name's lock file), its hupfd, for a server that dies before it took the
 * request. mq_notify is not used: see docs/transports.md.
 */
#define REQ_MAGIC     0x6c6d6d31u /* "lmm1" */
#define UNIT_MAX      (1u << 20)  /* the largest msgsize we accept from a peer's queue */
#define UNIT_MIN      64          /* and the smallest */
#define STACK_UNIT    4096        /* a unit this small is gathered on the stack */
#define CONNECT_TRIES 8           /* fresh names for a connection whose names are taken */

struct mq_req {
	uint32_t magic;
	int32_t pid;
	char id[32];
};

struct mq_listener {
	mqd_t q;
	int dirfd; /* the runtime directory, for the connections' FIFOs */
	char qname[256];
	char name[LM_NAME_MAX + 1];
};

struct mq_conn {
	mqd_t rq;
	mqd_t wq;
	mqd_t bq;    /* client side: rq again, blocking, for receive_wait; or -1 */
	bool server; /* accepted, not connected */
	int pidfd;
	int fifo;  /* hung up when the peer closed or died: see above */
	int dirfd; /* client side: the runtime directory, to remove hup if untaken */
	char hup[LM_NAME_MAX + 48];
	size_t runit;  /* msgsize of rq */
	size_t wunit;  /* msgsize of wq */
	char c2s[300]; /* client side: its queues, if the server never took them */
	char s2c[300];
	struct lm_peer_cred cred;
	unsigned char *scratch; /* gathers a unit bigger than STACK_UNIT */
	struct lm__unpack un;   /* a big message being reassembled */
};

static long proc_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "re");
	long v = dflt;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

/* Kernel limits as distinct, clear errors. */
static int mq_error(int err, const char *qname, const struct mq_attr *a)
{
	switch (err) {
	case EINVAL:
		lm_log_error("mq %s: %ld messages of %ld bytes exceed fs.mqueue.msg_max (%ld) or "
			     "fs.mqueue.msgsize_max (%ld)",
			     qname, a ? a->mq_maxmsg : 0, a ? a->mq_msgsize : 0,
			     proc_long("/proc/sys/fs/mqueue/msg_max", 10),
			     proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192));
		break;
	case ENOSPC:
		lm_log_error("mq %s: fs.mqueue.queues_max (%ld) queues exist already", qname,
			     proc_long("/proc/sys/fs/mqueue/queues_max", 256));
		break;
	case EMFILE:
		lm_log_error("mq %s: RLIMIT_MSGQUEUE (ulimit -q) exhausted, or no fd left (smaller "
			     "queues fit more connections: LM_MQ_MAXMSG, LM_MQ_MSGSIZE)",
			     qname);
		break;
	default:
		lm_log_error("mq %s: %s", qname, strerror(err));
	}
	return -err;
}

/* The directory's device, inode and birth time: an inode number is reused
 * after a directory is removed, its birth time is not. */
static int base_name(char *buf, size_t size, int dirfd, const char *name)
{
	struct statx stx;

	if (statx(dirfd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &stx) < 0)
		return -errno;
	snprintf(buf, size, "/lm.%x.%x.%llx.%llx.%x.%s", stx.stx_dev_major, stx.stx_dev_minor,
		 (unsigned long long)stx.stx_ino, (unsigned long long)stx.stx_btime.tv_sec,
		 stx.stx_btime.tv_nsec, name);
	return 0;
}

/*
 * The shape of the two queues a client makes for a connection: 10 messages
 * of 2 KiB (or the kernel's fs.mqueue.msg_max and msgsize_max if lower),
 * about 21 KiB of RLIMIT_MSGQUEUE each (the kernel also counts ~96 bytes per
 * message slot): some 19 connections fit the default 800 KiB, which all of
 * a user's queues share. LM_MQ_MAXMSG and LM_MQ_MSGSIZE in the environment
 * (read at each connect) make them smaller, to fit more connections, or
 * bigger, for fewer syscalls per big message; the server takes whatever
 * shape the client made. Values the kernel refuses fail the connect with
 * the limit named (mq_error).
 */
static int queue_shape(long *maxmsg, long *msgsize)
{
	int err;

	*maxmsg = proc_long("/proc/sys/fs/mqueue/msg_max", 10);
	*msgsize = proc_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
	*maxmsg = *maxmsg < 10 ? *maxmsg : 10;
	*msgsize = *msgsize < 2048 ? *msgsize : 2048;
	err = lm__env_long("LM_MQ_MAXMSG", 1, 65536, maxmsg);
	if (!err)
		err = lm__env_long("LM_MQ_MSGSIZE", UNIT_MIN, UNIT_MAX, msgsize);
	return err;
}

static mqd_t mq_create(const char *qname, int flags, long maxmsg, long msgsize)
{
	struct mq_attr a = {.mq_maxmsg = maxmsg, .mq_msgsize = msgsize};

	return mq_open(qname, flags | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC, 0600, &a);
}

static bool queue_is_ours(mqd_t q)
{
	struct stat st;

	return fstat(q, &st) == 0 && st.st_uid == geteuid();
}

/* The close FIFO of connection id at name, in the runtime directory. */
static void hup_name(char *buf, size_t size, const char *name, const char *id)
{
	snprintf(buf, size, "%s.mq.%s.hup", name, id);
}

/* A valid request, its id made a string; false for anything else. */
static bool request_ok(struct mq_req *req, ssize_t n)
{
	req->id[sizeof(req->id) - 1] = 0;
	return n == sizeof(*req) && req->magic == REQ_MAGIC && req->pid > 0 && req->id[0] &&
	       strspn(req->id, "0123456789.") == strlen(req->id);
}

/*
 * Requests nobody will take (the listener closes, or is a dead server's):
 * remove the queues their clients made, which would otherwise outlive a
 * client that dies waiting and hold the user's RLIMIT_MSGQUEUE. A live
 * client keeps its open queues, sees the server go by its pidfd and closes.
 */
static void drop_requests(mqd_t q, const char *qname, int dirfd, const char *name)
{
	struct mq_req req;
	char path[300];
	ssize_t n;

	while ((n = mq_receive(q, (char *)&req, sizeof(req), NULL)) >= 0 || errno == EINTR) {
		if (n < 0 || !request_ok(&req, n))
			continue;
		snprintf(path, sizeof(path), "%s.%s.c2s", qname, req.id);
		mq_unlink(path);
		snprintf(path, sizeof(path), "%s.%s.s2c", qname, req.id);
		mq_unlink(path);
		hup_name(path, sizeof(path), name, req.id);
		unlinkat(dirfd, path, 0);
	}
}

static bool is_connection_queue(const char *path)
{
	mqd_t q = mq_open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct mq_attr a;
	bool conn;

	if (q == (mqd_t)-1)
		return false;
	conn = mq_getattr(q, &a) == 0 && a.mq_msgsize != (long)sizeof(struct mq_req);
	mq_close(q);
	return conn;
}

/*
 * Connection queues whose request no queue names any more: their client died
 * between making them and sending the request, or a dead server had taken
 * the request and died before unlinking them. Where the queue filesystem is
 * mounted (/dev/mqueue, as on any systemd machine), remove ours at the name
 * whose client process is gone; elsewhere they stay, as before.
 */
static void drop_orphans(const char *qname)
{
	size_t blen = strlen(qname + 1);
	struct dirent *de;
	DIR *d = opendir("/dev/mqueue");

	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *rest = de->d_name + blen;
		char path[NAME_MAX + 2];
		int pid, end = 0;
		struct stat st;

		/* "<name>.<pid>.<r>.c2s" or ".s2c", as mq_connect() makes them. */
		if (strncmp(de->d_name, qname + 1, blen) != 0 ||
		    sscanf(rest, ".%d.%*[0-9].%*[cs]2%*[cs]%n", &pid, &end) < 1 || end == 0 ||
		    rest[end] != 0 || pid <= 0 || (kill(pid, 0) == 0 || errno != ESRCH))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || st.st_uid != geteuid())
			continue;
		snprintf(path, sizeof(path), "/%s", de->d_name);
		/* Names may hold dots: a listener queue of an endpoint called
		 * "<name>.<pid>.<r>.c2s" looks the same, but its messages are
		 * requests. */
		if (!is_connection_queue(path))
			continue;
		lm_log_debug("mq: removing %s, left by dead process %d", path, pid);
		mq_unlink(path);
	}
	closedir(d);
}

/*
 * Close FIFOs at the name whose client process is gone and which no request
 * names (a client killed between making its FIFO and sending its request):
 * "<name>.mq.<pid>.<r>.hup" in the runtime directory, ours, a FIFO.
 */
static void drop_orphan_fifos(int dirfd, const char *name)
{
	size_t nlen = strlen(name);
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		const char *rest = de->d_name + nlen;
		int pid, end = 0;
		struct stat st;

		if (strncmp(de->d_name, name, nlen) != 0 ||
		    sscanf(rest, ".mq.%d.%*[0-9].hup%n", &pid, &end) < 1 || end == 0 ||
		    rest[end] != 0 || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISFIFO(st.st_mode) || st.st_uid != geteuid())
			continue;
		lm_log_debug("mq: removing %s, left by dead process %d", de->d_name, pid);
		unlinkat(dirfd, de->d_name, 0);
	}
	closedir(d);
}

static int mq_listen(int dirfd, const char *name, bool leftover, void **lstate)
{
	struct mq_listener *ml = calloc(1, sizeof(*ml));
	long depth = 256;
	int err;

	if (!ml)
		return -ENOMEM;
	snprintf(ml->name, sizeof(ml->name), "%s", name);
	ml->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (ml->dirfd < 0) {
		err = -errno;
		goto fail;
	}
	err = base_name(ml->qname, sizeof(ml->qname), dirfd, name);
	if (err < 0)
		goto fail;
	for (int tries = 0;; tries++) {
		ml->q = mq_create(ml->qname, O_RDONLY, depth, sizeof(struct mq_req));
		if (ml->q != (mqd_t)-1)
			break;
		err = errno;
		if (err == EINVAL && depth > 10) {
			/* Unprivileged: fs.mqueue.msg_max bounds the depth. */
			depth = proc_long("/proc/sys/fs/mqueue/msg_max", 10);
			if (depth > 10)
				depth = 10;
			continue;
		}
		if (err == EEXIST && leftover && tries == 0) {
			mqd_t old = mq_open(ml->qname, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
			bool ours = old != (mqd_t)-1 && queue_is_ours(old);

			if (ours) {
				/* A dead server's requests are never read as new. */
				lm_log_debug("mq:%s: replacing the queue of a dead server", name);
				drop_requests(old, ml->qname, dirfd, name);
				drop_orphans(ml->qname);
				mq_unlink(ml->qname);
			}
			if (old != (mqd_t)-1)
				mq_close(old);
			if (ours)
				continue;
		}
		if (err == EEXIST) {
			lm_log_error("mq:%s: refused: a foreign queue %s is at the name", name,
				     ml->qname);
			err = -EEXIST;
		} else {
			err = mq_error(err, ml->qname, NULL);
		}
		goto fail;
	}
	drop_orphan_fifos(dirfd, name);
	*lstate = ml;
	return 0;
fail:
	if (ml->dirfd >= 0)
		close(ml->dirfd);
	free(ml);
	return err;
}

static int mq_listen_fd(void *lstate)
{
	return (int)((struct mq_listener *)lstate)->q;
}

static void mq_listen_close(void *lstate)
{
	struct mq_listener *ml = lstate;

	mq_unlink(ml->qname);
	drop_requests(ml->q, ml->qname, ml->dirfd, ml->name);
	mq_close(ml->q);
	close(ml->dirfd);
	free(ml);
}

static struct mq_conn *conn_alloc(void)
{
	struct mq_conn *mc = calloc(1, sizeof(*mc));

	if (mc) {
		mc->rq = mc->wq = mc->bq = (mqd_t)-1;
		mc->pidfd = mc->dirfd = mc->fifo = -1;
	}
	return mc;
}

static void mq_conn_close(void *cstate);
static void mq_conn_free(void *cstate);

static int unit_size(mqd_t q, size_t *ret)
{
	struct mq_attr a;

	if (mq_getattr(q, &a) < 0)
		return -errno;
	if (a.mq_msgsize < UNIT_MIN || (size_t)a.mq_msgsize > UNIT_MAX)
		return -EPROTO;
	*ret = (size_t)a.mq_msgsize;
	return 0;
}

static int mq_accept(void *lstate, void **cstate)
{
	struct mq_listener *ml = lstate;
	struct mq_req req;
	struct mq_conn *mc;
	struct stat rst, wst;
	char c2s[300], s2c[300];
	ssize_t n;
	int err = 0;

	/* Two queues, the hang-up FIFO and a pidfd for a moment: out of fds,
	 * the request waits. */
	err = lm__fds_available(ml->dirfd, 4);
	if (err < 0)
		return err;
	n = mq_receive(ml->q, (char *)&req, sizeof(req), NULL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (!request_ok(&req, n)) {
		lm_log_warn("mq: malformed connection request dropped");
		return -EPROTO;
	}
	snprintf(c2s, sizeof(c2s), "%s.%s.c2s", ml->qname, req.id);
	snprintf(s2c, sizeof(s2c), "%s.%s.s2c", ml->qname, req.id);
	mc = conn_alloc();
	if (!mc)
		return -ENOMEM;
	mc->server = true;
	mc->rq = mq_open(c2s, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	mc->wq = mq_open(s2c, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (mc->rq == (mqd_t)-1 || mc->wq == (mqd_t)-1)
		err = -errno;
	mq_unlink(c2s);
	mq_unlink(s2c);
	if (!err &&
	    (fstat(mc->rq, &rst) < 0 || fstat(mc->wq, &wst) < 0 || rst.st_uid != wst.st_uid))
		err = -EPROTO;
	if (!err)
		err = unit_size(mc->rq, &mc->runit);
	if (!err)
		err = unit_size(mc->wq, &mc->wunit);
	if (!err) {
		/* The client may be gone already: then there is nobody to serve
		 * (its FIFO has no reader: ENXIO). */
		char hup[sizeof(mc->hup)];
		struct stat hst;

		hup_name(hup, sizeof(hup), ml->name, req.id);
		mc->fifo = openat(ml->dirfd, hup, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (mc->fifo < 0)
			err = errno == ENXIO || errno == ENOENT ? -ECONNRESET : -errno;
		else if (fstat(mc->fifo, &hst) < 0 || !S_ISFIFO(hst.st_mode) ||
			 hst.st_uid != rst.st_uid)
			err = -EPROTO;
		unlinkat(ml->dirfd, hup, 0);
	}
	if (!err) {
		/* The pid it gives, for lm_conn_peer_cred(): alive, or it lies. */
		int pidfd = lm__pidfd_open(req.pid);

		if (pidfd < 0)
			err = -ECONNRESET;
		else
			close(pidfd);
	}
	if (err < 0) {
		mq_conn_close(mc);
		mq_conn_free(mc);
		return err;
	}
	mc->cred.uid = rst.st_uid;
	mc->cred.gid = rst.st_gid;
	mc->cred.pid = req.pid; /* as the client says, checked to be alive */
	*cstate = mc;
	return 1;
}

/* The client's end of the close channel: the FIFO's read end. */
static int hup_make(struct mq_conn *mc, int dirfd, const char *name, const char *id)
{
	mc->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (mc->dirfd < 0)
		return -errno;
	hup_name(mc->hup, sizeof(mc->hup), name, id);
	/* One left by a dead process that had our pid: ours to replace. */
	if (mkfifoat(dirfd, mc->hup, 0600) < 0 &&
	    (errno != EEXIST || unlinkat(dirfd, mc->hup, 0) < 0 ||
	     mkfifoat(dirfd, mc->hup, 0600) < 0)) {
		int err = -errno;

		mc->hup[0] = 0;
		return err;
	}
	mc->fifo = openat(dirfd, mc->hup, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	return mc->fifo < 0 ? -errno : 0;
}

/* 64 bits no other process can guess: getrandom, which does not block once
 * the kernel's pool is initialised (early boot: a clock and a counter, shared
 * atomically by every thread). */
static uint64_t conn_random(void)
{
	static _Atomic uint64_t fallback;
	uint64_t v;
	struct timespec ts;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return atomic_fetch_add(&fallback, 1) ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
}

/* Make the connection's two queues under fresh random names: a name taken
 * (EEXIST: another process made it) is retried at once with new ones. */
static int conn_queues(struct mq_conn *mc, struct mq_req *req, const char *base,
		       const struct mq_attr *attr)
{
	for (int tries = 0;; tries++) {
		snprintf(req->id, sizeof(req->id), "%d.%llu", (int)req->pid,
			 (unsigned long long)conn_random());
		snprintf(mc->c2s, sizeof(mc->c2s), "%s.%s.c2s", base, req->id);
		snprintf(mc->s2c, sizeof(mc->s2c), "%s.%s.s2c", base, req->id);
		mc->wq = mq_create(mc->c2s, O_WRONLY, attr->mq_maxmsg, attr->mq_msgsize);
		if (mc->wq != (mqd_t)-1) {
			mc->rq = mq_create(mc->s2c, O_RDONLY, attr->mq_maxmsg, attr->mq_msgsize);
			if (mc->rq != (mqd_t)-1)
				return 0;
			int err = errno;

			mq_close(mc->wq);
			mq_unlink(mc->c2s);
			mc->wq = (mqd_t)-1;
			errno = err;
		}
		if (errno != EEXIST || tries + 1 == CONNECT_TRIES) {
			int err = mq_error(errno, mc->c2s, attr);

			mc->c2s[0] = mc->s2c[0] = 0;
			return err;
		}
		lm_log_debug("mq %s: taken, trying other names", mc->c2s);
	}
}

static int mq_connect(int dirfd, const char *name, void **cstate)
{
	struct mq_req req = {.magic = REQ_MAGIC, .pid = getpid()};
	char base[256];
	struct mq_conn *mc;
	struct stat st;
	struct mq_attr attr = {0};
	mqd_t lq;
	int err;

	err = base_name(base, sizeof(base), dirfd, name);
	if (err < 0)
		return err;
	lq = mq_open(base, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (lq == (mqd_t)-1)
		return -errno;
	mc = conn_alloc();
	if (!mc) {
		mq_close(lq);
		return -ENOMEM;
	}
	if (fstat(lq, &st) < 0) {
		err = -errno;
		goto fail;
	}
	mc->cred.uid = st.st_uid;
	mc->cred.gid = st.st_gid;
	mc->cred.pid = lm__server_pid(dirfd, name, "mq");
	/* A queue with no live server behind it is a dead server's leftover. */
	mc->pidfd = mc->cred.pid > 0 ? lm__pidfd_open(mc->cred.pid) : -1;
	if (mc->pidfd < 0) {
		err = -ECONNREFUSED;
		goto fail;
	}
	err = queue_shape(&attr.mq_maxmsg, &attr.mq_msgsize);
	if (err < 0)
		goto fail;
	err = conn_queues(mc, &req, base, &attr);
	if (err < 0)
		goto fail;
	err = unit_size(mc->rq, &mc->runit);
	if (!err)
		err = unit_size(mc->wq, &mc->wunit);
	if (err < 0)
		goto fail;
	/* A second, blocking description of the reply queue, opened while it
	 * still has a name: receive_wait() waits in mq_timedreceive() on it.
	 * Without it (out of fds), the reactor does all the waiting. */
	mc->bq = mq_open(mc->s2c, O_RDWR | O_CLOEXEC);
	err = hup_make(mc, dirfd, name, req.id);
	if (err < 0)
		goto fail;
	if (mq_send(lq, (const char *)&req, sizeof(req), 0) < 0) {
		err = errno == EAGAIN ? -EAGAIN : -errno;
		goto fail;
	}
	mq_close(lq);
	*cstate = mc;
	return 0;
fail:
	/* Nothing half-built stays behind: the queues made here go. */
	mq_close(lq);
	mq_conn_close(mc);
	mq_conn_free(mc);
	return err;
}

static int mq_fds(void *cstate, struct lm_transport_fds *ret)
{
	struct mq_conn *mc = cstate;

	ret->rfd = (int)mc->rq;
	ret->wfd = (int)mc->wq;
	ret->hupfd = mc->pidfd;
	ret->closefd = mc->fifo;
	return 0;
}

/* One unit: [off, off + n) of the message's encoding, gathered into one
 * buffer unless it is one piece of the caller's. */
static int send_unit(struct mq_conn *mc, const struct iovec *v, int k, size_t n)
{
	unsigned char stack[STACK_UNIT], *p = stack;
	const char *q = v[0].iov_base;

	if (k > 1) {
		if (n > sizeof(stack)) {
			if (!mc->scratch && !(mc->scratch = malloc(mc->wunit)))
				return -ENOMEM;
			p = mc->scratch;
		}
		q = (const char *)p;
		for (int i = 0; i < k; i++) {
			memcpy(p, v[i].iov_base, v[i].iov_len);
			p += v[i].iov_len;
		}
	}
	while (mq_send(mc->wq, q, n, 0) < 0) {
		if (errno == EAGAIN)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
	return 1;
}

static int mq_conn_send(void *cstate, const struct iovec *iov, int iovcnt, size_t len,
			size_t *progress)
{
	struct mq_conn *mc = cstate;
	uint32_t hdr = (uint32_t)len;
	size_t total = len + sizeof(hdr);
	struct iovec v[LM_MAX_IOV + 1];

	while (*progress < total) {
		size_t n = total - *progress < mc->wunit ? total - *progress : mc->wunit;
		int k = lm__frame_slice(v, &hdr, iov, iovcnt, *progress, n);
		int ret = send_unit(mc, v, k, n);

		if (ret <= 0)
			return ret;
		*progress += n;
	}
	return 1;
}

static int mq_send_batch(void *cstate, const unsigned char *buf, size_t len, size_t *progress)
{
	struct mq_conn *mc = cstate;
	size_t f = 0;

	while (*progress < len) {
		struct iovec v = {(void *)(buf + *progress), 0};
		int ret;

		v.iov_len = lm__frame_next(buf, len, &f, *progress, mc->wunit);
		ret = send_unit(mc, &v, 1, v.iov_len);
		if (ret <= 0)
			return ret;
		*progress += v.iov_len;
	}
	return 1;
}

/* One unit from q: at once (rq), or by the realtime deadline (bq). */
static int take_unit(lm_conn *c, struct mq_conn *mc, mqd_t q, const struct timespec *deadline)
{
	lm_reactor *r = c->r; /* c may be gone after a delivery */
	unsigned char *buf = lm__reactor_scratch_take(r, mc->runit);
	ssize_t n;
	int ret;

	if (!buf)
		return -ENOMEM;
	if (deadline)
		n = mq_timedreceive(q, (char *)buf, mc->runit, NULL, deadline);
	else
		do
			n = mq_receive(q, (char *)buf, mc->runit, NULL);
		while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EINTR && deadline)
		ret = -EINTR; /* the caller's loop looks (see receive_wait) */
	else if (n < 0)
		ret = errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR ? 0 : -errno;
	else if (n == 0)
		ret = deadline ? 0 : 1; /* a wake-up (see wake_unit): nothing for the user */
	else if (mc->un.buf)
		ret = lm__unpack_fragment(c, &mc->un, buf, (size_t)n, mc->runit);
	else
		ret = lm__unpack_unit(c, &mc->un, buf, (size_t)n, mc->runit, true);
	lm__reactor_scratch_give(r, buf);
	return ret;
}

static int mq_conn_receive(lm_conn *c, void *cstate)
{
	return take_unit(c, cstate, ((struct mq_conn *)cstate)->rq, NULL);
}

static int mq_conn_receive_wait(lm_conn *c, void *cstate, int64_t timeout_ns)
{
	struct mq_conn *mc = cstate;
	struct timespec ts;

	if (mc->bq == (mqd_t)-1)
		return -EOPNOTSUPP;
	/* mq_timedreceive() takes a CLOCK_REALTIME deadline: a clock step
	 * within this short wait only lengthens or shortens it. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(timeout_ns / 1000000000);
	ts.tv_nsec += (long)(timeout_ns % 1000000000);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return take_unit(c, mc, mc->bq, &ts);
}

/* An empty unit, which no message makes: it ends a receive_wait() on the
 * queue and is otherwise skipped. Never blocks (a full queue needs none). */
static void wake_unit(mqd_t q)
{
	static const struct timespec past = {0, 0};

	if (q != (mqd_t)-1)
		mq_timedsend(q, "", 0, 0, &past);
}

static void mq_conn_receive_wake(void *cstate)
{
	wake_unit(((struct mq_conn *)cstate)->bq);
}

static bool mq_partial(void *cstate)
{
	return ((struct mq_conn *)cstate)->un.buf != NULL;
}

static int mq_peer_cred(void *cstate, struct lm_peer_cred *ret)
{
	*ret = ((struct mq_conn *)cstate)->cred;
	return 0;
}

static void mq_conn_close(void *cstate)
{
	struct mq_conn *mc = cstate;

	/* Server side: a client waiting in receive_wait() sees the close now,
	 * not only when its wait ends. */
	if (mc->server)
		wake_unit(mc->wq);
	if (mc->rq != (mqd_t)-1)
		mq_close(mc->rq);
	if (mc->wq != (mqd_t)-1)
		mq_close(mc->wq);
	if (mc->bq != (mqd_t)-1)
		mq_close(mc->bq);
	if (mc->pidfd >= 0)
		close(mc->pidfd);
	if (mc->fifo >= 0)
		close(mc->fifo);
	/* Taken by the server, they are gone already; else they are ours. */
	if (mc->c2s[0])
		mq_unlink(mc->c2s);
	if (mc->s2c[0])
		mq_unlink(mc->s2c);
	if (mc->hup[0] && mc->dirfd >= 0)
		unlinkat(mc->dirfd, mc->hup, 0);
	if (mc->dirfd >= 0)
		close(mc->dirfd);
	mc->c2s[0] = mc->s2c[0] = mc->hup[0] = 0;
	mc->rq = mc->wq = mc->bq = (mqd_t)-1;
	mc->pidfd = mc->dirfd = mc->fifo = -1;
}

/* In a child after fork(): close the descriptors, nothing else (no wake-up
 * unit sent, no queue or file unlinked: they are the parent's). */
static void mq_conn_abandon(void *cstate)
{
	struct mq_conn *mc = cstate;

	mc->server = false;
	mc->c2s[0] = mc->s2c[0] = mc->hup[0] = 0;
	mq_conn_close(mc);
}

static void mq_listen_abandon(void *lstate)
{
	struct mq_listener *ml = lstate;

	mq_close(ml->q);
	close(ml->dirfd);
	free(ml);
}

static void mq_conn_free(void *cstate)
{
	struct mq_conn *mc = cstate;

	free(mc->scratch);
	free(mc->un.buf);
	free(mc);
}

const struct lm_transport_ops lm__transport_mq = {
    .scheme = "mq",
    .listen = mq_listen,
    .listen_fd = mq_listen_fd,
    .accept = mq_accept,
    .listen_close = mq_listen_close,
    .listen_abandon = mq_listen_abandon,
    .abandon = mq_conn_abandon,
    .connect = mq_connect,
    .fds = mq_fds,
    .send = mq_conn_send,
    .send_batch = mq_send_batch,
    .receive = mq_conn_receive,
    .receive_wait = mq_conn_receive_wait,
    .receive_wake = mq_conn_receive_wake,
    .peer_cred = mq_peer_cred,
    .close = mq_conn_close,
    .free = mq_conn_free,
    .partial = mq_partial,
};
