/* SPDX-License-Identifier: MIT */
/* lm-bench: runs every case of the matrix as separate processes and prints the table. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmessage/transport.h>

#include "lm_bench.h"

/* ---- helpers the roles share ---- */

uint64_t bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

void bench_fail(struct bench_shm *shm, int level, const char *fmt, ...)
{
	int zero = 0;
	if (!__atomic_compare_exchange_n(&shm->failed, &zero, level, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(shm->why, sizeof(shm->why), fmt, ap);
	va_end(ap);
}

void bench_connect_failed(const struct bench_ctx *x, const char *ep, int err)
{
	struct rlimit rl;

	if (err == -EMFILE && x->c->tp == TP_MQ && getrlimit(RLIMIT_MSGQUEUE, &rl) == 0)
		bench_fail(x->shm, 1,
			   "client %d: RLIMIT_MSGQUEUE (ulimit -q: %lu KiB for all of this "
			   "user's queues) is used up; each connection is two queues "
			   "(smaller ones: LM_MQ_MAXMSG, LM_MQ_MSGSIZE)",
			   x->index, (unsigned long)(rl.rlim_cur >> 10));
	else
		bench_fail(x->shm, 2, "client %d: connect %s: %s", x->index, ep, strerror(-err));
}

void bench_endpoint(const struct bench_ctx *x, char *buf, size_t n)
{
	snprintf(buf, n, "%s:%s-%u", bench_tp_name(x->c->tp),
		 x->c->impl == IMPL_CONN ? "bench" : "svc", x->tag);
}

/* Shared (not private) futexes: the word lives in memory shared across fork. */
void bench_futex_wait_for(uint32_t *addr, uint32_t val, long ns)
{
	struct timespec ts = {ns / 1000000000, ns % 1000000000};

	syscall(SYS_futex, addr, FUTEX_WAIT, val, ns < 0 ? NULL : &ts, NULL, 0);
}

void bench_futex_wait(uint32_t *addr, uint32_t val)
{
	bench_futex_wait_for(addr, val, -1);
}

void bench_futex_wake(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

bool bench_more(const struct bench_ctx *x, uint64_t done, uint64_t t_start)
{
	if (x->o->count)
		return done < x->o->count;
	return bench_now() - t_start < (uint64_t)(x->o->duration * 1e9);
}

void bench_fan_received(struct bench_ctx *x)
{
	uint64_t t = bench_now();
	uint64_t cur = __atomic_load_n(&x->shm->fan_last, __ATOMIC_RELAXED);
	while (t > cur && !__atomic_compare_exchange_n(&x->shm->fan_last, &cur, t, false,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (__atomic_add_fetch(&x->shm->fan_ack, 1, __ATOMIC_RELEASE) == (uint32_t)x->c->peers)
		bench_futex_wake(&x->shm->fan_ack);
}

void bench_add_cpu(struct bench_shm *shm, uint64_t cpu_ns)
{
	__atomic_fetch_add(&shm->cpu_ns, cpu_ns, __ATOMIC_RELAXED);
}

void bench_add_window(struct bench_shm *shm, uint64_t t_first, uint64_t t_last)
{
	uint64_t cur = __atomic_load_n(&shm->t_first, __ATOMIC_RELAXED);
	while (t_first < cur && !__atomic_compare_exchange_n(&shm->t_first, &cur, t_first, false,
							     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	cur = __atomic_load_n(&shm->t_last, __ATOMIC_RELAXED);
	while (t_last > cur && !__atomic_compare_exchange_n(&shm->t_last, &cur, t_last, false,
							    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* ---- the client side of every mode ---- */

static int client_call(struct bench_ctx *x, const struct bench_io *io, char *buf, size_t cap)
{
	struct bench_hdr *h = (struct bench_hdr *)buf;
	size_t size = x->o->size;
	long n;

	h->kind = BENCH_WARMUP;
	for (uint64_t i = 0; i < x->o->warmup; i++)
		if ((n = io->send(io->p, buf, size)) < 0 || (n = io->recv(io->p, buf, cap)) <= 0)
			goto fail;
	struct hist *hist = malloc(sizeof(*hist));
	if (!hist)
		return 1;
	hist_init(hist);
	uint64_t msgs = 0, cpu0 = bench_cpu_ns(), t0 = bench_now();
	while (bench_more(x, msgs, t0)) {
		h->kind = BENCH_DATA;
		uint64_t t = bench_now();
		if ((n = io->send(io->p, buf, size)) < 0)
			goto fail;
		n = io->recv(io->p, buf, cap);
		if (n <= 0)
			goto fail;
		hist_record(hist, bench_now() - t);
		if ((++msgs & 63) == 0)
			__atomic_fetch_add(&x->shm->progress, 64, __ATOMIC_RELAXED);
	}
	uint64_t t1 = bench_now();
	bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
	bench_add_window(x->shm, t0, t1);
	__atomic_fetch_add(&x->shm->msgs, msgs, __ATOMIC_RELAXED);
	hist_merge(&x->shm->hist, hist);
	free(hist);
	h->kind = BENCH_STOP;
	if ((n = io->send(io->p, buf, size)) < 0 || (n = io->flush(io->p)) < 0)
		goto fail;
	return 0;
fail:
	bench_fail(x->shm, 2, "client %d: round trip failed: %s", x->index,
		   n ? strerror((int)-n) : "connection closed");
	return 1;
}

static int client_throughput(struct bench_ctx *x, const struct bench_io *io, char *buf)
{
	struct bench_hdr *h = (struct bench_hdr *)buf;
	size_t size = x->o->size;
	int r;

	h->kind = BENCH_WARMUP;
	for (uint64_t i = 0; i < x->o->warmup; i++)
		if ((r = io->send(io->p, buf, size)) < 0)
			goto fail;
	uint64_t msgs = 0, cpu0 = bench_cpu_ns(), t0 = bench_now();
	h->kind = BENCH_DATA;
	while (bench_more(x, msgs, t0)) {
		if ((r = io->send(io->p, buf, size)) < 0)
			goto fail;
		if ((++msgs & 255) == 0)
			__atomic_fetch_add(&x->shm->progress, 256, __ATOMIC_RELAXED);
	}
	h->kind = BENCH_STOP;
	if ((r = io->send(io->p, buf, size)) < 0 || (r = io->flush(io->p)) < 0)
		goto fail;
	bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
	return 0;
fail:
	bench_fail(x->shm, 2, "client %d: send failed: %s", x->index, strerror(-r));
	return 1;
}

static int client_subscriber(struct bench_ctx *x, const struct bench_io *io, char *buf, size_t cap)
{
	struct bench_hdr h;
	uint64_t cpu0 = 0;

	if (x->c->mode == MODE_IDLE)
		__atomic_fetch_add(&x->shm->progress, 1, __ATOMIC_RELAXED);
	for (;;) {
		long n = io->recv(io->p, buf, cap);
		if (n < (long)sizeof(h)) {
			bench_fail(x->shm, 2, "subscriber %d: receive failed: %s", x->index,
				   n < 0 ? strerror((int)-n) : "short message or closed");
			return 1;
		}
		memcpy(&h, buf, sizeof(h));
		if (h.kind == BENCH_STOP)
			break;
		if (h.kind == BENCH_PROBE)
			continue;
		if (h.kind == BENCH_DATA && !cpu0)
			cpu0 = bench_cpu_ns();
		bench_fan_received(x);
	}
	if (cpu0)
		bench_add_cpu(x->shm, bench_cpu_ns() - cpu0);
	return 0;
}

int bench_client_run(struct bench_ctx *x, const struct bench_io *io)
{
	size_t cap = x->o->size + 64;
	char *buf = calloc(1, cap);
	if (!buf)
		return 1;
	memset(buf, 'x', x->o->size);
	memset(buf, 0, sizeof(struct bench_hdr));
	((struct bench_hdr *)buf)->from = (uint32_t)x->index;
	switch (x->c->mode) {
	case MODE_CALL:
		return client_call(x, io, buf, cap);
	case MODE_THROUGHPUT:
		return client_throughput(x, io, buf);
	default:
		return client_subscriber(x, io, buf, cap);
	}
}

/* ---- processes ---- */

static pid_t children[BENCH_MAX_PEERS + 1];
static int nchildren;
static volatile sig_atomic_t interrupted;
static char runtime_dir[64];

static void on_interrupt(int signo)
{
	interrupted = signo;
	for (int i = 0; i < nchildren; i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
}

static int cpus[2] = {-1, -1};

static void find_cpus(void)
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return;
	for (int i = 0; i < CPU_SETSIZE && n < 2; i++)
		if (CPU_ISSET(i, &set))
			cpus[n++] = i;
}

static void cpu_label(enum bench_cpu c, char *buf, size_t n)
{
	if (c == CPU_SAME)
		snprintf(buf, n, "same(%d)", cpus[0]);
	else if (c == CPU_SPLIT)
		snprintf(buf, n, "split(%d/%d)", cpus[0], cpus[1]);
	else
		snprintf(buf, n, "any");
}

static void pin(enum bench_cpu c, bool server)
{
	if (c == CPU_ANY)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(c == CPU_SPLIT && !server ? cpus[1] : cpus[0], &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* Fork one role of the case; the child never returns. */
static pid_t spawn(struct bench_ctx *x, bool server, int close_fds[2], const sigset_t *mask)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigprocmask(SIG_SETMASK, mask, NULL);
	for (int i = 0; i < 2; i++)
		if (close_fds[i] >= 0)
			close(close_fds[i]);
	pin(x->c->cpu, server);
	int rc;
	if (x->index == -2)
		rc = x->c->impl == IMPL_CONN ? bench_conn_crowd(x) : bench_service_crowd(x);
	else if (BENCH_IMPL_BARE(x->c->impl))
		rc = server ? bench_floor_server(x) : bench_floor_client(x);
	else if (x->c->impl == IMPL_CONN)
		rc = server ? bench_conn_server(x) : bench_conn_client(x);
	else
		rc = server ? bench_service_server(x) : bench_service_client(x);
	_exit(rc);
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

static void unlink_floor_queues(unsigned tag, int peers)
{
	char name[64];
	for (int i = 0; i < peers; i++) {
		snprintf(name, sizeof(name), "/lm-bench-%u-c2s-%d", tag, i);
		mq_unlink(name);
		snprintf(name, sizeof(name), "/lm-bench-%u-s2c-%d", tag, i);
		mq_unlink(name);
	}
}

static long proc_status(pid_t pid, const char *field)
{
	char path[64], line[256];
	long v = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, strlen(field)) == 0) {
			v = strtol(line + strlen(field), NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Wait for every child, with a progress line and a watchdog. Returns the
 * worst exit status. */
static int reap_all(struct bench_shm *shm, const char *label, const sigset_t *chld)
{
	int worst = 0, left = nchildren;
	uint64_t last_progress = 0, started = bench_now(), last_change = started;
	bool shown = false, tty = isatty(2);

	while (left > 0) {
		int st;
		pid_t pid;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (int i = 0; i < nchildren; i++)
				if (children[i] == pid)
					children[i] = 0;
			left--;
			int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			if (code > worst)
				worst = code;
			if (code && !interrupted)
				/* One side gave up: the others would wait forever. */
				on_interrupt(0);
		}
		if (left <= 0)
			break;
		struct timespec ts = {1, 0};
		sigtimedwait(chld, NULL, &ts);
		uint64_t now = bench_now(), p = __atomic_load_n(&shm->progress, __ATOMIC_RELAXED);
		if (p != last_progress) {
			last_progress = p;
			last_change = now;
		} else if (now - last_change > 20000000000ull) {
			bench_fail(shm, 2, "stalled: no progress for 20 s");
			on_interrupt(0);
		}
		if (tty && now - started > 3000000000ull) {
			fprintf(stderr, "\r%s: %llu messages, %.0f s   ", label,
				(unsigned long long)p, (double)(now - started) / 1e9);
			shown = true;
		}
	}
	if (shown)
		fprintf(stderr, "\r%*s\r", 72, "");
	nchildren = 0;
	return worst;
}

static struct bench_shm *shm;

/* One more process holds o->idle_clients idle connections; the server's RSS
 * before and after tells what an idle client costs it. */
static void start_crowd(struct bench_ctx *x, struct bench_result *r, int close_fds[2],
			const sigset_t *mask)
{
	int n = x->o->idle_clients;
	long rss0 = proc_status(children[0], "VmRSS:");
	x->index = -2;
	x->ready_fd = -1;
	pid_t pid = spawn(x, false, close_fds, mask);
	if (pid < 0) {
		bench_fail(shm, 1, "fork: %s", strerror(errno));
		return;
	}
	children[nchildren++] = pid;
	uint64_t t0 = bench_now();
	while (!shm->failed && !interrupted &&
	       (!__atomic_load_n(&shm->crowd_ready, __ATOMIC_ACQUIRE) ||
		__atomic_load_n(&shm->accepted, __ATOMIC_RELAXED) < (uint64_t)n)) {
		if (bench_now() - t0 > 90000000000ull) {
			bench_fail(shm, 2, "%d idle clients not connected after 90 s", n);
			return;
		}
		usleep(10000);
	}
	usleep(100000);
	long rss1 = proc_status(children[0], "VmRSS:");
	r->idle_clients = n;
	if (rss0 > 0 && rss1 > 0)
		r->rss_per_idle_client = (double)(rss1 - rss0) * 1024.0 / n;
}

static void run_case(const struct bench_case *c, const struct bench_opts *o, unsigned tag,
		     struct bench_result *r)
{
	int ready[2] = {-1, -1}, ctl[2] = {-1, -1};
	sigset_t chld, old;
	char label[96];

	*r = (struct bench_result){.c = *c, .wake_per_s = -1, .rss_per_idle_client = -1};
	cpu_label(c->cpu, r->cpu, sizeof(r->cpu));
	snprintf(label, sizeof(label), "%s %s %s%s", bench_mode_name(c->mode), bench_tp_name(c->tp),
		 c->impl == IMPL_LOOP ? "loop " : "",
		 c->impl == IMPL_FLOOR         ? "floor"
		 : c->impl == IMPL_FLOOR_BATCH ? "floor-batch"
					       : bench_backend_name(c->backend));
	if (c->cpu == CPU_SPLIT && cpus[1] < 0) {
		r->status = 1;
		snprintf(r->why, sizeof(r->why), "split needs two CPUs, this process has one");
		return;
	}
	if (c->impl == IMPL_CONN && bench_conn_available(r->why, sizeof(r->why)) < 0) {
		r->status = 1;
		return;
	}
	if ((c->impl == IMPL_SERVICE || c->impl == IMPL_EMIT || c->impl == IMPL_SYNC) &&
	    bench_service_available(r->why, sizeof(r->why)) < 0) {
		r->status = 1;
		return;
	}
	memset(shm, 0, sizeof(*shm));
	hist_init(&shm->hist);
	shm->t_first = UINT64_MAX;
	snprintf(runtime_dir, sizeof(runtime_dir), "/tmp/lm-bench-XXXXXX");
	if (!mkdtemp(runtime_dir) || pipe2(ready, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0) {
		r->status = 2;
		snprintf(r->why, sizeof(r->why), "setup: %s", strerror(errno));
		return;
	}
	setenv("LM_RUNTIME_DIR", runtime_dir, 1);

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);

	struct bench_ctx x = {.c = c,
			      .o = o,
			      .shm = shm,
			      .dir = runtime_dir,
			      .tag = tag,
			      .index = -1,
			      .ready_fd = ready[1],
			      .ctl_fd = ctl[0]};
	int server_close[2] = {ready[0], ctl[1]};
	children[nchildren++] = spawn(&x, true, server_close, &old);
	close(ready[1]);
	ready[1] = -1;

	/* The server says "R" once it serves; EOF means it gave up. */
	struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
	char byte = 0;
	if (poll(&pfd, 1, 30000) <= 0 || read(ready[0], &byte, 1) != 1 || byte != 'R') {
		if (!shm->failed)
			bench_fail(shm, 2, "server did not start");
		on_interrupt(0);
	} else {
		int client_close[2] = {ready[0], ctl[1]};
		if (c->mode == MODE_CALL && c->impl != IMPL_FLOOR && c->impl != IMPL_LOOP &&
		    o->idle_clients > 0)
			start_crowd(&x, r, client_close, &old);
		for (int i = 0; i < c->peers && !interrupted; i++) {
			x.index = i;
			x.ready_fd = -1;
			x.ctl_fd = -1;
			pid_t pid = spawn(&x, false, client_close, &old);
			if (pid < 0) {
				bench_fail(shm, 1, "fork client %d: %s", i, strerror(errno));
				on_interrupt(0);
				break;
			}
			children[nchildren++] = pid;
		}
	}
	if (c->mode == MODE_IDLE && !shm->failed) {
		/* Everyone connected, then a quiet window measured from outside. */
		uint64_t t = bench_now();
		while (__atomic_load_n(&shm->progress, __ATOMIC_RELAXED) < (uint64_t)c->peers &&
		       bench_now() - t < 20000000000ull && !shm->failed)
			usleep(10000);
		usleep(200000);
		double window = o->duration > 0 ? o->duration : 2.0;
		long w0 = proc_status(children[0], "voluntary_ctxt_switches:");
		struct timespec ts = {(time_t)window, (long)((window - (time_t)window) * 1e9)};
		nanosleep(&ts, NULL);
		long w1 = proc_status(children[0], "voluntary_ctxt_switches:");
		if (w0 >= 0 && w1 >= 0)
			r->wake_per_s = (double)(w1 - w0) / window;
	}
	close(ctl[1]); /* idle servers stop on this */
	int worst = reap_all(shm, label, &chld);
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(ready[0]);
	close(ctl[0]);
	bool bare = BENCH_IMPL_BARE(c->impl);
	if (!bare && c->tp == TP_MQ)
		bench_reclaim_mq(&x);
	remove_dir(runtime_dir);
	if (bare && c->tp == TP_MQ)
		unlink_floor_queues(tag, c->peers);

	if (interrupted > 0) {
		r->status = 2;
		snprintf(r->why, sizeof(r->why), "interrupted");
		return;
	}
	if (shm->failed || worst) {
		r->status = shm->failed ? shm->failed : 2;
		snprintf(r->why, sizeof(r->why), "%s", shm->failed ? shm->why : "a process failed");
		return;
	}
	r->msgs = shm->msgs;
	if (shm->msgs && shm->t_last > shm->t_first) {
		r->msgs_per_s = (double)shm->msgs * 1e9 / (double)(shm->t_last - shm->t_first);
		r->cpu_us_per_msg = (double)shm->cpu_ns / 1e3 / (double)shm->msgs;
	}
	if (c->mode == MODE_CALL || c->mode == MODE_SIGNAL) {
		r->hist = malloc(sizeof(*r->hist));
		if (r->hist)
			memcpy(r->hist, &shm->hist, sizeof(*r->hist));
	}
}

/* Whether libmessage writes this signal case's emissions to all subscribers
 * in io_uring submissions, as floor-batch does: lm_conn_sendv_many() and
 * lm_server_emit() on unix or fifo, to LM__FANOUT_MIN (4) or more
 * subscribers, a message the transport writes in one flat call (its
 * encoding, with the 4-byte length and for lm_service the 16-byte protocol
 * header and the signal's name, at most LM_TRANSPORT_FLAT_MAX bytes),
 * unless LM_FANOUT_URING=0. */
static bool batched_like_floor(const struct bench_case *c, const struct bench_opts *o)
{
	const char *env = getenv("LM_FANOUT_URING");
	size_t encoded = 4 + o->size + (c->impl == IMPL_SERVICE ? 16 + strlen("Tick") : 0);

	return c->mode == MODE_SIGNAL && (c->impl == IMPL_CONN || c->impl == IMPL_SERVICE) &&
	       c->tp != TP_MQ && c->peers >= 4 && encoded <= LM_TRANSPORT_FLAT_MAX &&
	       !(env && !strcmp(env, "0"));
}

/* Whether the SVG can be written at path: its directory exists and is
 * writable, and so is the file if it exists. 0 or -1 with errno. */
static int plot_writable(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!*path) {
		errno = ENOENT;
		return -1;
	}
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (access(dir, W_OK | X_OK) < 0)
		return -1;
	if (access(path, F_OK) == 0 && access(path, W_OK) < 0)
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	int rc = bench_parse_args(&o, argc, argv, stderr);
	if (rc)
		return rc == 1 ? 0 : 2;
	/* What would fail after the run, or in every case of it, fails now. */
	if (o.plot && plot_writable(o.plot) < 0) {
		fprintf(stderr, "lm-bench: --plot %s: cannot write there: %s\n", o.plot,
			strerror(errno));
		return 2;
	}
	lm_reactor *probe;
	if (lm_reactor_new(&probe, NULL) == -EINVAL) {
		/* libmessage said what is wrong with LM_BACKEND. */
		fprintf(stderr, "lm-bench: unset LM_BACKEND or fix it (--backend chooses the "
				"backends of the cases)\n");
		return 2;
	}
	lm_reactor_free(probe);

	struct sigaction sa = {.sa_handler = on_interrupt};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Fan-out to 1000 FIFO pairs needs 2000 descriptors in one process. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	find_cpus();
	shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED) {
		perror("lm-bench: mmap");
		return 1;
	}

	int max_cases = MODE_COUNT * CPU_COUNT * TP_COUNT * 12, n = 0, failed = 0;
	struct bench_result *rs = calloc((size_t)max_cases, sizeof(*rs));
	if (!rs)
		return 1;
	if (!o.json) {
		char a[32], b[32];
		cpu_label(CPU_SAME, a, sizeof(a));
		cpu_label(CPU_SPLIT, b, sizeof(b));
		printf(
		    "# lm-bench: size %zu B, %s %llu%s, warmup %llu, clients %d, subscribers %d; "
		    "CPUs %s / %s%s\n",
		    o.size, o.count ? "count" : "duration",
		    o.count ? (unsigned long long)o.count : (unsigned long long)o.duration,
		    o.count ? "" : " s", (unsigned long long)o.warmup, o.clients, o.subscribers, a,
		    b, o.emit_in_cb ? "; signals emitted from a callback" : "");
		bench_print_header(stdout);
	}
	for (int m = 0; m < MODE_COUNT; m++) {
		if (!(o.modes & (1u << m)))
			continue;
		for (int cpu = 0; cpu < CPU_COUNT; cpu++) {
			if (!(o.cpus & (1u << cpu)))
				continue;
			for (int tp = 0; tp < TP_COUNT && !interrupted; tp++) {
				if (!(o.transports & (1u << tp)))
					continue;
				int peers = (m == MODE_CALL || m == MODE_THROUGHPUT)
						? o.clients
						: o.subscribers;
				struct bench_case cs[12];
				int nc = 0;
				cs[nc++] = (struct bench_case){m, tp, IMPL_FLOOR, 0, cpu, peers};
				if (m == MODE_SIGNAL && tp != TP_MQ)
					cs[nc++] = (struct bench_case){m, tp,  IMPL_FLOOR_BATCH,
								       0, cpu, peers};
				for (int b = 1; b <= 2 && !o.floor_only; b++)
					if ((m == MODE_CALL || m == MODE_SIGNAL) &&
					    (o.backends & (1u << b)))
						cs[nc++] = (struct bench_case){m, tp,  IMPL_LOOP,
									       b, cpu, peers};
				for (int b = 1; b <= 2 && !o.floor_only; b++)
					if (o.backends & (1u << b))
						cs[nc++] = (struct bench_case){m, tp,  IMPL_CONN,
									       b, cpu, peers};
				for (int b = 1; b <= 2 && !o.floor_only; b++)
					if (o.backends & (1u << b))
						cs[nc++] = (struct bench_case){m, tp,  IMPL_SERVICE,
									       b, cpu, peers};
				for (int b = 1; b <= 2 && !o.floor_only; b++)
					if (m == MODE_CALL && (o.backends & (1u << b)))
						cs[nc++] = (struct bench_case){m, tp,  IMPL_SYNC,
									       b, cpu, peers};
				for (int b = 1; b <= 2 && !o.floor_only; b++)
					if (m == MODE_THROUGHPUT && (o.backends & (1u << b)))
						cs[nc++] = (struct bench_case){m, tp,  IMPL_EMIT,
									       b, cpu, peers};
				int floor_at = n, batch_at = -1;
				for (int k = 0; k < nc && !interrupted; k++) {
					struct bench_result *r = &rs[n];
					run_case(&cs[k], &o, (unsigned)getpid() * 64u + (unsigned)n,
						 r);
					if (cs[k].impl == IMPL_FLOOR_BATCH)
						batch_at = n;
					else if (k > 0 && rs[floor_at].status == 0)
						r->floor = &rs[floor_at];
					/* Where libmessage writes the signal to every
					 * subscriber in one submission, it is measured
					 * against the floor that does the same. */
					if (batch_at >= 0 && rs[batch_at].status == 0 &&
					    batched_like_floor(&cs[k], &o))
						r->floor = &rs[batch_at];
					if (r->status == 2)
						failed = 1;
					if (o.json)
						bench_print_json(stdout, r, &o);
					else
						bench_print_row(stdout, r);
					fflush(stdout);
					n++;
				}
			}
		}
	}
	if (o.plot && !interrupted && bench_write_plot(o.plot, rs, n) < 0) {
		fprintf(stderr, "lm-bench: cannot write %s: %s\n", o.plot, strerror(errno));
		failed = 1;
	}
	for (int i = 0; i < n; i++)
		free(rs[i].hist);
	free(rs);
	if (interrupted) {
		fprintf(stderr, "lm-bench: interrupted, every process reaped\n");
		return 130;
	}
	return failed;
}
