/* SPDX-License-Identifier: MIT */
/* The unix transport: AF_UNIX SOCK_SEQPACKET, fragmented above one datagram. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log-internal.h"
#include "transport-internal.h"

/*
 * Framing (frame.c): messages packed into datagrams of at most UNIT bytes, a
 * bigger one cut into datagrams of exactly UNIT bytes and a shorter last.
 * Datagrams are never empty, so a read of 0 bytes is the end of the
 * connection.
 */
#define UNIT        LM_TRANSPORT_DATAGRAM_MAX
#define BATCH       32 /* datagrams per sendmmsg */
#define RBATCH      8  /* datagrams per recvmmsg */
#define PROBE_EVERY 8
#define SEND_FLAGS  (MSG_NOSIGNAL | MSG_DONTWAIT)

struct unix_listener {
	int fd;
	int dirfd;
	char file[LM_NAME_MAX + 8];
};

struct unix_conn {
	int fd;
	struct ucred cred;
	struct lm__unpack un; /* a big message being reassembled */
	/* Receiving: batch (recvmmsg) while datagrams come several at a time,
	 * else one recvmsg, trying a batch every PROBE_EVERY reads. */
	bool batch;
	unsigned char singles;
};

static int sock_addr(struct sockaddr_un *sa, int dirfd, const char *file)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	/* Through the checked directory's fd: no path walk to hijack. */
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd, file);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static int unix_listen(int dirfd, const char *name, bool leftover, void **lstate)
{
	struct unix_listener *ul = calloc(1, sizeof(*ul));
	struct sockaddr_un sa;
	struct stat st;
	int err;

	if (!ul)
		return -ENOMEM;
	ul->fd = ul->dirfd = -1;
	snprintf(ul->file, sizeof(ul->file), "%s.unix", name);
	err = sock_addr(&sa, dirfd, ul->file);
	if (err < 0)
		goto fail;
	if (fstatat(dirfd, ul->file, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!leftover || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
			lm_log_error("unix:%s: refused: a foreign file is at the name", name);
			err = -EEXIST;
			goto fail;
		}
		lm_log_debug("unix:%s: replacing the socket of a dead server", name);
		if (unlinkat(dirfd, ul->file, 0) < 0 && errno != ENOENT) {
			err = -errno;
			goto fail;
		}
	}
	ul->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	ul->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ul->dirfd < 0 || ul->fd < 0) {
		err = -errno;
		goto fail;
	}
	if (bind(ul->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno == EADDRINUSE ? -EEXIST : -errno;
		goto fail;
	}
	if (fchmodat(dirfd, ul->file, 0600, 0) < 0 || listen(ul->fd, SOMAXCONN) < 0) {
		err = -errno;
		unlinkat(dirfd, ul->file, 0);
		goto fail;
	}
	*lstate = ul;
	return 0;
fail:
	if (ul->fd >= 0)
		close(ul->fd);
	if (ul->dirfd >= 0)
		close(ul->dirfd);
	free(ul);
	return err;
}

int lm__unix_listen_adopt(int fd, void **lstate)
{
	struct unix_listener *ul;
	int domain, type, listening, flags;
	socklen_t len = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return -errno;
	len = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	len = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
		return -errno;
	if (domain != AF_UNIX || type != SOCK_SEQPACKET)
		return -EPROTOTYPE;
	if (!listening)
		return -EINVAL;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	ul = calloc(1, sizeof(*ul));
	if (!ul)
		return -ENOMEM;
	/* No dirfd and no file: listen_close() only closes the socket. */
	ul->fd = fd;
	ul->dirfd = -1;
	*lstate = ul;
	return 0;
}

static int unix_listen_fd(void *lstate)
{
	return ((struct unix_listener *)lstate)->fd;
}

static int conn_from_fd(int fd, void **cstate)
{
	struct unix_conn *uc = calloc(1, sizeof(*uc));
	socklen_t len = sizeof(uc->cred);

	if (!uc) {
		close(fd);
		return -ENOMEM;
	}
	uc->fd = fd;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc->cred, &len) < 0)
		uc->cred.pid = 0, uc->cred.uid = (uid_t)-1, uc->cred.gid = (gid_t)-1;
	*cstate = uc;
	return 0;
}

static int unix_accept(void *lstate, void **cstate)
{
	struct unix_listener *ul = lstate;
	int fd = accept4(ul->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	return conn_from_fd(fd, cstate) < 0 ? -ENOMEM : 1;
}

static void unix_listen_close(void *lstate)
{
	struct unix_listener *ul = lstate;

	if (ul->dirfd >= 0) {
		unlinkat(ul->dirfd, ul->file, 0);
		close(ul->dirfd);
	}
	if (ul->fd >= 0)
		close(ul->fd);
	free(ul);
}

static int unix_connect(int dirfd, const char *name, void **cstate)
{
	struct sockaddr_un sa;
	char file[LM_NAME_MAX + 8];
	int fd, err;

	snprintf(file, sizeof(file), "%s.unix", name);
	err = sock_addr(&sa, dirfd, file);
	if (err < 0)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return conn_from_fd(fd, cstate);
}

static int unix_fds(void *cstate, struct lm_transport_fds *ret)
{
	struct unix_conn *uc = cstate;

	ret->rfd = ret->wfd = uc->fd;
	ret->hupfd = -1;
	return 0;
}

/* buf[0, len) as one datagram with send(), cheaper than sendmsg: returns as
 * ops->send does, *progress set to len once it went. */
static int send_datagram(int fd, const void *buf, size_t len, size_t *progress)
{
	while (send(fd, buf, len, SEND_FLAGS) < 0) {
		if (errno == EAGAIN || errno == ENOBUFS)
			return 0;
		if (errno != EINTR)
			return errno == EPIPE ? -ECONNRESET : -errno;
	}
	*progress = len;
	return 1;
}

static int unix_send(void *cstate, const struct iovec *iov, int iovcnt, size_t len,
		     size_t *progress)
{
	struct unix_conn *uc = cstate;
	uint32_t hdr = (uint32_t)len;
	size_t total = len + sizeof(hdr);
	struct iovec v[LM_MAX_IOV + 1];
	unsigned char flat[LM_FLAT_MAX];

	/* A small message: one send() of a copy. */
	if (*progress == 0 && lm__frame_flat(flat, hdr, iov, iovcnt))
		return send_datagram(uc->fd, flat, total, progress);
	while (*progress < total) {
		size_t n = total - *progress < UNIT ? total - *progress : UNIT;
		struct msghdr mh = {.msg_iov = v};

		mh.msg_iovlen = (size_t)lm__frame_slice(v, &hdr, iov, iovcnt, *progress, n);
		/* A datagram goes whole or not at all. */
		if (sendmsg(uc->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS)
				return 0;
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		*progress += n;
	}
	return 1;
}

static int unix_send_batch(void *cstate, const unsigned char *buf, size_t len, size_t *progress)
{
	struct unix_conn *uc = cstate;
	struct mmsghdr mv[BATCH];
	struct iovec iv[BATCH];
	size_t f = 0;

	/* One message, one datagram (a reply, most often): one send. */
	if (*progress == 0 && lm__frame_size(buf) == len && len <= UNIT)
		return send_datagram(uc->fd, buf, len, progress);
	while (*progress < len) {
		size_t off = *progress, g = f;
		int k, sent;

		for (k = 0; k < BATCH && off < len; k++) {
			iv[k] = (struct iovec){(void *)(buf + off),
					       lm__frame_next(buf, len, &g, off, UNIT)};
			mv[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iv[k], .msg_iovlen = 1}};
			off += iv[k].iov_len;
		}
		/* One datagram (a reply, most often): send is the cheaper call. */
		if (k > 1)
			sent = sendmmsg(uc->fd, mv, (unsigned)k, SEND_FLAGS);
		else
			sent = send(uc->fd, iv[0].iov_base, iv[0].iov_len, SEND_FLAGS) < 0 ? -1 : 1;
		if (sent < 0) {
			if (errno == EAGAIN || errno == ENOBUFS)
				return 0;
			if (errno == EINTR)
				continue;
			return errno == EPIPE ? -ECONNRESET : -errno;
		}
		for (int i = 0; i < sent; i++)
			*progress += iv[i].iov_len;
		if (sent == k)
			f = g;
	}
	return 1;
}

/* One datagram, without blocking: its real length (MSG_TRUNC: longer than
 * cap if it was cut), or -1 (errno). recv is cheaper than recvmsg. */
static ssize_t recv_one(int fd, void *buf, size_t cap)
{
	ssize_t k;

	do
		k = recv(fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC);
	while (k < 0 && errno == EINTR);
	return k;
}

/* Read up to vlen (> 1) datagrams: how many, or -1 (errno). */
static int recv_datagrams(int fd, struct mmsghdr *mv, unsigned vlen)
{
	int n;

	do
		n = recvmmsg(fd, mv, vlen, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	return n;
}

/* One datagram of len bytes (cut: it was longer than the buffer; last: the
 * last this receive read): an error, the end, or its messages. */
static int take_datagram(lm_conn *c, struct unix_conn *uc, const unsigned char *buf, size_t len,
			 bool cut, bool last)
{
	if (len == 0)
		return -ECONNRESET;
	if (cut)
		return -EPROTO; /* a datagram bigger than the framing allows */
	if (uc->un.buf)
		return lm__unpack_fragment(c, &uc->un, buf, len, UNIT);
	return lm__unpack_unit(c, &uc->un, buf, len, UNIT, last);
}

static int unix_receive(lm_conn *c, void *cstate)
{
	struct unix_conn *uc = cstate;
	lm_reactor *r = c->r; /* c may be gone after a delivery */
	struct mmsghdr mv[RBATCH];
	struct iovec iv[RBATCH];
	unsigned char *buf;
	unsigned vlen = RBATCH;
	ssize_t k;
	int n, ret = 1;

	/* The rest of a big message: the next fragment lands in place. */
	if (uc->un.buf) {
		size_t want = lm__unpack_want(&uc->un, UNIT);

		buf = uc->un.buf + uc->un.fill;
		k = recv_one(uc->fd, buf, want);
		if (k < 0)
			return errno == EAGAIN ? 0 : -errno;
		return take_datagram(c, uc, buf, (size_t)k, (size_t)k > want, true);
	}
	/*
	 * A peer that sends many datagrams (not gathered: one call per
	 * syscall) is read RBATCH at a time, and what answers them leaves in
	 * one batch. A batch read costs a failed read in the kernel when only
	 * one datagram waits (a request/reply exchange): then one recv, and
	 * a batch only now and then to notice a stream.
	 */
	if (!uc->batch && ++uc->singles < PROBE_EVERY)
		vlen = 1;
	uc->singles = uc->singles >= PROBE_EVERY ? 0 : uc->singles;
	buf = lm__reactor_scratch_take(r, vlen * UNIT);
	if (!buf)
		return -ENOMEM;
	if (vlen == 1) {
		k = recv_one(uc->fd, buf, UNIT);
		if (k < 0)
			ret = errno == EAGAIN ? 0 : -errno;
		else
			ret = take_datagram(c, uc, buf, (size_t)k, k > UNIT, true);
		lm__reactor_scratch_give(r, buf);
		return ret;
	}
	for (unsigned i = 0; i < vlen; i++) {
		iv[i] = (struct iovec){buf + (size_t)i * UNIT, UNIT};
		mv[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iv[i], .msg_iovlen = 1}};
	}
	n = recv_datagrams(uc->fd, mv, vlen);
	if (n < 0)
		ret = errno == EAGAIN ? 0 : -errno;
	else
		uc->batch = n > 1; /* c is still alive here */
	for (int i = 0; i < n && ret > 0; i++)
		ret = take_datagram(c, uc, iv[i].iov_base, mv[i].msg_len,
				    mv[i].msg_hdr.msg_flags & MSG_TRUNC, i == n - 1);
	lm__reactor_scratch_give(r, buf);
	return ret;
}

/* One datagram the reactor received for us (io_uring). */
static int unix_take(lm_conn *c, void *cstate, const void *data, size_t len, bool last)
{
	return take_datagram(c, cstate, data, len, len > UNIT, last);
}

static bool unix_partial(void *cstate)
{
	return ((struct unix_conn *)cstate)->un.buf != NULL;
}

static int unix_peer_cred(void *cstate, struct lm_peer_cred *ret)
{
	struct unix_conn *uc = cstate;

	if (uc->cred.uid == (uid_t)-1)
		return -ENOTCONN;
	ret->pid = uc->cred.pid;
	ret->uid = uc->cred.uid;
	ret->gid = uc->cred.gid;
	return 0;
}

static void unix_close(void *cstate)
{
	struct unix_conn *uc = cstate;

	if (uc->fd >= 0)
		close(uc->fd);
	uc->fd = -1;
}

static void unix_listen_abandon(void *lstate)
{
	struct unix_listener *ul = lstate;

	if (ul->fd >= 0) {
		close(ul->fd);
		close(ul->dirfd);
	}
	free(ul);
}

static void unix_free(void *state)
{
	struct unix_conn *uc = state;

	free(uc->un.buf);
	free(uc);
}

const struct lm_transport_ops lm__transport_unix = {
    .scheme = "unix",
    .listen = unix_listen,
    .listen_fd = unix_listen_fd,
    .accept = unix_accept,
    .listen_close = unix_listen_close,
    .listen_abandon = unix_listen_abandon,
    .abandon = unix_close, /* closes its fd: nothing else */
    .connect = unix_connect,
    .fds = unix_fds,
    .send = unix_send,
    .receive = unix_receive,
    .peer_cred = unix_peer_cred,
    .close = unix_close,
    .free = unix_free,
    .send_batch = unix_send_batch,
    .take = unix_take,
    .flat = LM_TRANSPORT_FLAT_SEND,
    .partial = unix_partial,
};
