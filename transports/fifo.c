/* SPDX-License-Identifier: MIT */
/* The fifo transport: a request FIFO per listener, a FIFO pair per connection. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log-internal.h"
#include "transport-internal.h"

/*
 * The listener's "<name>.fifo" only carries connection requests, each one
 * write of a fixed-size record (<= PIPE_BUF, so concurrent clients never
 * interleave). The client makes "<name>.<pid>.<n>.c2s" and ".s2c" (mode 0600),
 * opens its ends and sends the record; the server opens the other ends and
 * unlinks both, so nothing is left on disk whoever dies. Each FIFO has one
 * writer and one reader and carries frames: a 4-byte length (host order)
 * then the payload.
 */
#define REQ_MAGIC 0x6c6d6631u /* "lmf1" */
#define RBUF      (64u * 1024)

struct fifo_req {
	uint32_t magic;
	int32_t pid;
	char id[128];
};
_Static_assert(sizeof(struct fifo_req) <= PIPE_BUF, "requests must be atomic");

struct fifo_listener {
	int fd;
	int dirfd;
	char file[LM_NAME_MAX + 8];
};

struct fifo_conn {
	int rfd;
	int wfd;
	int pidfd; /* client side: the server's life */
	int dirfd; /* client side: to remove its FIFOs if the server never took them */
	char c2s[160];
	char s2c[160];
	struct lm_peer_cred cred;
	bool client;
	unsigned char *left; /* the start of a frame the last read cut (rlen bytes) */
	size_t rlen;
	unsigned char *abuf;
	size_t atotal;
	size_t afill;
};

static int fifo_listen(int dirfd, const char *name, bool leftover, void **lstate)
{
	struct fifo_listener *fl = calloc(1, sizeof(*fl));
	struct stat st;
	int err;

	if (!fl)
		return -ENOMEM;
	fl->fd = fl->dirfd = -1;
	snprintf(fl->file, sizeof(fl->file), "%s.fifo", name);
	if (fstatat(dirfd, fl->file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!leftover || !S_ISFIFO(st.st_mode) || st.st_uid != geteuid()) {
			lm_log_error("fifo:%s: refused: a foreign file is at the name", name);
			err = -EEXIST;
			goto fail;
		}
		/* A dead server's requests are not new ones: start empty. */
		lm_log_debug("fifo:%s: replacing the FIFO of a dead server", name);
		if (unlinkat(dirfd, fl->file, 0) < 0 && errno != ENOENT) {
			err = -errno;
			goto fail;
		}
	}
	if (mkfifoat(dirfd, fl->file, 0600) < 0) {
		err = -errno;
		goto fail;
	}
	/* O_RDWR: we are a writer too, so the FIFO never reports hang-up when
	 * a client closes its end after its request. */
	fl->fd = openat(dirfd, fl->file, O_RDWR | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	fl->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (fl->fd < 0 || fl->dirfd < 0) {
		err = -errno;
		unlinkat(dirfd, fl->file, 0);
		goto fail;
	}
	*lstate = fl;
	return 0;
fail:
	if (fl->fd >= 0)
		close(fl->fd);
	if (fl->dirfd >= 0)
		close(fl->dirfd);
	free(fl);
	return err;
}

static int fifo_listen_fd(void *lstate)
{
	return ((struct fifo_listener *)lstate)->fd;
}

static void fifo_listen_close(void *lstate)
{
	struct fifo_listener *fl = lstate;

	unlinkat(fl->dirfd, fl->file, 0);
	close(fl->fd);
	close(fl->dirfd);
	free(fl);
}

static struct fifo_conn *conn_alloc(void)
{
	struct fifo_conn *fc = calloc(1, sizeof(*fc));

	if (fc)
		fc->rfd = fc->wfd = fc->pidfd = fc->dirfd = -1;
	return fc;
}

static int open_fifo(int dirfd, const char *file, int flags, struct stat *st)
{
	int fd = openat(dirfd, file, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0 || !S_ISFIFO(st->st_mode)) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

static void fifo_close(void *cstate);
static void fifo_free(void *cstate);

static int fifo_accept(void *lstate, void **cstate)
{
	struct fifo_listener *fl = lstate;
	struct fifo_req req;
	struct fifo_conn *fc;
	struct stat rst, wst;
	char c2s[160], s2c[160];
	ssize_t n;
	int err;

	/* The connection's two FIFOs: out of fds, the request waits. */
	err = lm__fds_available(fl->fd, 2);
	if (err < 0)
		return err;
	n = read(fl->fd, &req, sizeof(req));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	req.id[sizeof(req.id) - 1] = 0;
	if (n != sizeof(req) || req.magic != REQ_MAGIC || lm__name_check(req.id) < 0) {
		lm_log_warn("fifo: malformed connection request dropped");
		return -EPROTO;
	}
	snprintf(c2s, sizeof(c2s), "%s.c2s", req.id);
	snprintf(s2c, sizeof(s2c), "%s.s2c", req.id);
	fc = conn_alloc();
	if (!fc)
		return -ENOMEM;
	/* s2c O_RDWR: a reader always exists (ourselves), so our writes never
	 * raise SIGPIPE and cost no signal-mask syscalls. The client's death
	 * shows as end of file on c2s. */
	err = fc->rfd = open_fifo(fl->dirfd, c2s, O_RDONLY, &rst);
	if (err >= 0)
		err = fc->wfd = open_fifo(fl->dirfd, s2c, O_RDWR, &wst);
	/* Both ends are open (or the client is gone): the names are done. */
	unlinkat(fl->dirfd, c2s, 0);
	unlinkat(fl->dirfd, s2c, 0);
	if (err >= 0 && rst.st_uid != wst.st_uid)
		err = -EPROTO;
	if (err < 0) {
		fifo_close(fc);
		fifo_free(fc);
		return err == -ENXIO ? -ECONNRESET : err;
	}
	fc->cred.uid = rst.st_uid;
	fc->cred.gid = rst.st_gid;
	fc->cred.pid = req.pid; /* as the client says: FIFOs cannot tell */
	*cstate = fc;
	return 1;
}

static int fifo_connect(int dirfd, const char *name, void **cstate)
{
	/* Shared by every reactor's thread: two connections never get one id. */
	static _Atomic unsigned counter;
	struct fifo_req req = {.magic = REQ_MAGIC, .pid = getpid()};
	char file[LM_NAME_MAX + 8];
	struct fifo_conn *fc;
	struct iovec v = {&req, sizeof(req)};
	struct stat st;
	int lfd, err;

	snprintf(file, sizeof(file), "%s.fifo", name);
	lfd = open_fifo(dirfd, file, O_WRONLY, &st);
	if (lfd < 0)
		return lfd == -ENXIO || lfd == -EPROTO ? -ECONNREFUSED : lfd;
	fc = conn_alloc();
	if (!fc) {
		close(lfd);
		return -ENOMEM;
	}
	fc->client = true;
	fc->cred.uid = st.st_uid;
	fc->cred.gid = st.st_gid;
	fc->cred.pid = lm__server_pid(dirfd, name, "fifo");
	snprintf(req.id, sizeof(req.id), "%s.%d.%u", name, (int)getpid(),
		 atomic_fetch_add(&counter, 1));
	snprintf(fc->c2s, sizeof(fc->c2s), "%s.c2s", req.id);
	snprintf(fc->s2c, sizeof(fc->s2c), "%s.s2c", req.id);
	fc->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (fc->dirfd < 0 || mkfifoat(dirfd, fc->c2s, 0600) < 0) {
		err = -errno;
		fc->c2s[0] = 0;
		goto fail;
	}
	if (mkfifoat(dirfd, fc->s2c, 0600) < 0) {
		err = -errno;
		fc->s2c[0] = 0;
		goto fail;
	}
	/* Our reading end first, so the server can open its writing end. Our
	 * writing end is O_RDWR only so that it opens before the server reads;
	 * the server's death shows as end of file on s2c. */
	err = fc->rfd = open_fifo(dirfd, fc->s2c, O_RDONLY, &st);
	if (err >= 0)
		err = fc->wfd = open_fifo(dirfd, fc->c2s, O_RDWR, &st);
	if (err < 0)
		goto fail;
	if (fc->cred.pid > 0) {
		/* Seen before the server takes the request, too. */
		fc->pidfd = lm__pidfd_open(fc->cred.pid);
		if (fc->pidfd < 0) {
			err = -ECONNREFUSED;
			goto fail;
		}
	}
	if (lm__writev_nosigpipe(lfd, &v, 1) != sizeof(req)) {
		err = errno == EAGAIN ? -EAGAIN : -ECONNREFUSED;
		goto fail;
	}
	close(lfd);
	*cstate = fc;
	return 0;
fail:
	close(lfd);
	fifo_close(fc);
	fifo_free(fc);
	return err;
}

static int fifo_fds(void *cstate, struct lm_transport_fds *ret)
{
	struct fifo_conn *fc = cstate;

	ret->rfd = fc->rfd;
	ret->wfd = fc->wfd;
	ret->hupfd = fc->pidfd;
	/* Client: s2c has no end of file before the server opened it; then
	 * the server's death shows there. */
	ret->late_eof = fc->client;
	return 0;
}

static int fifo_send(void *cstate, const struct iovec *iov, int iovcnt, size_t len,
		     size_t *progress)
{
	struct fifo_conn *fc = cstate;
	uint32_t hdr = (uint32_t)len;
	size_t total = len + sizeof(hdr);
	struct iovec v[LM_MAX_IOV + 1];
	unsigned char flat[LM_FLAT_MAX];

	/* A small message: one write() of a copy, whole (at most PIPE_BUF
	 * bytes: atomic). */
	if (*progress == 0 && lm__frame_flat(flat, hdr, iov, iovcnt)) {
		for (;;) {
			ssize_t n = write(fc->wfd, flat, total);

			if (n >= 0) {
				*progress = (size_t)n;
				break;
			}
			if (errno == EAGAIN)
				return 0;
			if (errno != EINTR)
				return errno == EPIPE ? -ECONNRESET : -errno;
		}
	}
	while (*progress < total) {
		int k = lm__frame_slice(v, &hdr, iov, iovcnt, *progress, total - *progress);
		/* Each side holds its writing end O_RDWR, so a write never
		 * raises SIGPIPE: one writev, without the signal mask dance. */
		ssize_t n = writev(fc->wfd, v, k);

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		*progress += (size_t)n;
	}
	return 1;
}

static ssize_t read_some(int fd, void *buf, size_t size)
{
	ssize_t n;

	do
		n = read(fd, buf, size);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	return n == 0 ? -ECONNRESET : n;
}

/* Hand out the whole frames of buf[0, len); keep the cut one. empty: the
 * read found the pipe empty, so the last frame is the last one there. */
static int deliver_frames(lm_conn *c, struct fifo_conn *fc, const unsigned char *buf, size_t len,
			  bool empty)
{
	size_t off = 0, max = lm_conn_max_message(c);
	int ret;

	while (len - off >= sizeof(uint32_t)) {
		size_t avail = len - off - sizeof(uint32_t);
		uint32_t n;

		memcpy(&n, buf + off, sizeof(n));
		if (n > max)
			return -EMSGSIZE;
		if (avail >= n) {
			const unsigned char *m = buf + off + sizeof(n);

			ret = empty && avail == n ? lm__transport_deliver_last(c, m, n)
						  : lm_transport_deliver(c, m, n);
			if (ret < 0)
				return ret;
			off += sizeof(n) + n;
			continue;
		}
		if (n + sizeof(n) > RBUF) {
			/* The rest of a big frame goes straight into place. */
			fc->abuf = malloc(n);
			if (!fc->abuf)
				return -ENOMEM;
			memcpy(fc->abuf, buf + off + sizeof(n), avail);
			fc->atotal = n;
			fc->afill = avail;
			return 1;
		}
		break;
	}
	if (off < len) {
		fc->left = malloc(len - off);
		if (!fc->left)
			return -ENOMEM;
		memcpy(fc->left, buf + off, len - off);
		fc->rlen = len - off;
	}
	return 1;
}

static int fifo_receive(lm_conn *c, void *cstate)
{
	struct fifo_conn *fc = cstate;
	lm_reactor *r = c->r; /* c may be gone after a delivery */
	unsigned char *buf;
	ssize_t n;
	int ret;

	if (fc->abuf) {
		size_t want = fc->atotal - fc->afill;

		n = read_some(fc->rfd, fc->abuf + fc->afill, want);
		if (n <= 0)
			return (int)n;
		fc->afill += (size_t)n;
		if (fc->afill == fc->atotal) {
			unsigned char *m = fc->abuf;

			fc->abuf = NULL;
			ret = lm_transport_deliver(c, m, fc->atotal);
			free(m);
			if (ret < 0)
				return ret;
		}
		return (size_t)n < want ? 2 : 1; /* a short read empties a pipe */
	}
	/* One read into the reactor's buffer, after what the last one cut. */
	buf = lm__reactor_scratch_take(r, RBUF);
	if (!buf)
		return -ENOMEM;
	if (fc->rlen)
		memcpy(buf, fc->left, fc->rlen);
	n = read_some(fc->rfd, buf + fc->rlen, RBUF - fc->rlen);
	if (n > 0) {
		size_t len = fc->rlen + (size_t)n;

		free(fc->left);
		fc->left = NULL;
		fc->rlen = 0;
		ret = deliver_frames(c, fc, buf, len, len < RBUF);
		if (ret == 1 && len < RBUF)
			ret = 2; /* a short read empties a pipe */
	} else {
		ret = (int)n;
	}
	lm__reactor_scratch_give(r, buf);
	return ret;
}

/* What one read the backend made for us returned (see take() in
 * transport.h): the next bytes of the stream. */
static int fifo_take(lm_conn *c, void *cstate, const void *data, size_t len, bool last)
{
	struct fifo_conn *fc = cstate;
	lm_reactor *r = c->r; /* c may be gone after a delivery */
	const unsigned char *p = data;
	bool empty = last && len <= LM_TRANSPORT_DATAGRAM_MAX; /* a short read */
	unsigned char *buf;
	int ret;

	if (len == 0)
		return -ECONNRESET;
	if (fc->abuf) {
		size_t k = fc->atotal - fc->afill;

		if (k > len)
			k = len;
		memcpy(fc->abuf + fc->afill, p, k);
		fc->afill += k;
		p += k;
		len -= k;
		if (fc->afill < fc->atotal)
			return 1;
		buf = fc->abuf;
		fc->abuf = NULL;
		ret = empty && len == 0 ? lm__transport_deliver_last(c, buf, fc->atotal)
					: lm_transport_deliver(c, buf, fc->atotal);
		free(buf);
		if (ret < 0 || len == 0)
			return ret < 0 ? ret : 1;
	}
	if (!fc->rlen)
		return deliver_frames(c, fc, p, len, empty); /* in place: no copy */
	/* The rest of a frame the last read cut comes first. */
	buf = lm__reactor_scratch_take(r, fc->rlen + len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, fc->left, fc->rlen);
	memcpy(buf + fc->rlen, p, len);
	len += fc->rlen;
	free(fc->left);
	fc->left = NULL;
	fc->rlen = 0;
	ret = deliver_frames(c, fc, buf, len, empty);
	lm__reactor_scratch_give(r, buf);
	return ret;
}

static int fifo_send_batch(void *cstate, const unsigned char *buf, size_t len, size_t *progress)
{
	struct fifo_conn *fc = cstate;

	while (*progress < len) {
		ssize_t n = write(fc->wfd, buf + *progress, len - *progress);

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		*progress += (size_t)n;
	}
	return 1;
}

static bool fifo_partial(void *cstate)
{
	const struct fifo_conn *fc = cstate;

	return fc->abuf || fc->rlen;
}

static int fifo_peer_cred(void *cstate, struct lm_peer_cred *ret)
{
	*ret = ((struct fifo_conn *)cstate)->cred;
	return 0;
}

static void fifo_close(void *cstate)
{
	struct fifo_conn *fc = cstate;

	if (fc->rfd >= 0)
		close(fc->rfd);
	if (fc->wfd >= 0)
		close(fc->wfd);
	if (fc->pidfd >= 0)
		close(fc->pidfd);
	if (fc->dirfd >= 0) {
		/* The server unlinks them when it takes the request; if it never
		 * did, they are ours to remove. */
		if (fc->c2s[0])
			unlinkat(fc->dirfd, fc->c2s, 0);
		if (fc->s2c[0])
			unlinkat(fc->dirfd, fc->s2c, 0);
		close(fc->dirfd);
	}
	fc->rfd = fc->wfd = fc->pidfd = fc->dirfd = -1;
}

/* In a child after fork(): the FIFOs' files are the parent's. */
static void fifo_abandon(void *cstate)
{
	struct fifo_conn *fc = cstate;

	fc->c2s[0] = fc->s2c[0] = 0;
	fifo_close(fc);
}

static void fifo_listen_abandon(void *lstate)
{
	struct fifo_listener *fl = lstate;

	close(fl->fd);
	close(fl->dirfd);
	free(fl);
}

static void fifo_free(void *cstate)
{
	struct fifo_conn *fc = cstate;

	free(fc->left);
	free(fc->abuf);
	free(fc);
}

const struct lm_transport_ops lm__transport_fifo = {
    .scheme = "fifo",
    .listen = fifo_listen,
    .listen_fd = fifo_listen_fd,
    .accept = fifo_accept,
    .listen_close = fifo_listen_close,
    .listen_abandon = fifo_listen_abandon,
    .abandon = fifo_abandon,
    .connect = fifo_connect,
    .fds = fifo_fds,
    .send = fifo_send,
    .receive = fifo_receive,
    .peer_cred = fifo_peer_cred,
    .close = fifo_close,
    .free = fifo_free,
    .send_batch = fifo_send_batch,
    .take = fifo_take,
    .edge = true,
    .flat = LM_TRANSPORT_FLAT_WRITE,
    .partial = fifo_partial,
};
