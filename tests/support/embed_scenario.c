/* SPDX-License-Identifier: MIT */
/* The libmessage side of the GLib and libuv loop tests: a server and a client on one reactor. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "embed_scenario.h"
#include "lm_test.h"

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static void on_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, payload, len);
}

static const struct lm_method es_methods[] = {{"echo", on_echo}};

static void on_tick(lm_source *s, uint64_t expirations, void *userdata)
{
	struct lm_es *e = userdata;

	e->ticks++;
	lm_server_emit(e->srv, "tick", &e->ticks, sizeof(e->ticks));
}

static void on_signal(lm_client *c, const char *signal, const void *payload, size_t len,
		      uint64_t dropped, void *userdata)
{
	struct lm_es *e = userdata;

	if (strcmp(signal, "tick") == 0 && len == sizeof(unsigned))
		e->signals++;
}

static void on_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	struct lm_es *e = userdata;
	unsigned n;

	/* The payload is the call's number: replies come in order, once. */
	if (reply->status == 0 && reply->len == sizeof(n)) {
		memcpy(&n, reply->payload, sizeof(n));
		if (n == e->replies) {
			e->replies++;
			return;
		}
	}
	e->bad_replies++;
}

void lm_es_start(struct lm_es *e, enum lm_backend backend, unsigned tick_ms)
{
	uint64_t ns = tick_ms * 1000000ull;

	memset(e, 0, sizeof(*e));
	lm_test_runtime_dir();
	e->r = lm_test_reactor(backend);
	cr_assert_eq(lm_server_new(&e->srv, e->r, "unix:embed", NULL), 0);
	cr_assert_eq(lm_server_add_methods(e->srv, es_methods, 1, e), 0);
	cr_assert_eq(lm_server_add_signal(e->srv, "tick", LM_OVERFLOW_DROP_OLDEST), 0);
	cr_assert_eq(lm_reactor_add_timer(e->r, &e->tick, ns, ns, on_tick, e), 0);
	cr_assert_eq(lm_client_new(&e->cl, e->r, "unix:embed", NULL), 0);
	cr_assert_eq(lm_client_subscribe(e->cl, "tick", on_signal, e), 0);
	cr_assert_eq(pipe2(e->pipefd, O_CLOEXEC | O_NONBLOCK), 0);
	e->calling = true;
}

bool lm_es_foreign_tick(struct lm_es *e)
{
	unsigned n = e->calls;

	e->ftick++;
	if (e->calling && e->replies < 20) {
		cr_assert_eq(lm_client_call(e->cl, "echo", &n, sizeof(n), 5ll * 1000 * 1000 * 1000,
					    on_reply, e),
			     0);
		e->calls++;
	}
	if (e->ftick % 4 == 0)
		cr_assert_eq(write(e->pipefd[1], "x", 1), 1);
	return e->calling && e->replies >= 20 && e->signals >= 10 && e->bad_replies == 0 &&
	       e->fio >= 5;
}

void lm_es_foreign_io(struct lm_es *e)
{
	char c;

	if (read(e->pipefd[0], &c, 1) == 1)
		e->fio++;
}

void lm_es_check_exchange(const struct lm_es *e, enum lm_backend backend)
{
	cr_assert(!e->timed_out,
		  "%s: 30 s and not done: %u replies, %u signals, %u bad, %u foreign ticks, %u "
		  "foreign io",
		  lm_test_backend_name(backend), e->replies, e->signals, e->bad_replies, e->ftick,
		  e->fio);
	cr_assert_eq(e->bad_replies, 0);
	cr_assert_geq(e->replies, 20);
	cr_assert_geq(e->signals, 10);
	cr_assert_geq(e->ftick, 10);
	cr_assert_geq(e->fio, 5);
}

void lm_es_free(struct lm_es *e)
{
	lm_client_free(e->cl);
	lm_source_free(e->tick);
	lm_server_free(e->srv);
	lm_reactor_free(e->r);
	e->r = NULL;
	close(e->pipefd[0]);
	close(e->pipefd[1]);
}

void lm_es_idle_begin(struct lm_es *e, struct lm_es_idle *m, uint64_t dispatches, uint64_t empty)
{
	uint64_t ns = 100 * 1000 * 1000;

	e->calling = false;
	cr_assert_eq(lm_timer_set(e->tick, ns, ns), 0);
	e->iterations = 0;
	m->dispatches = dispatches;
	m->empty = empty;
	m->signals = e->signals;
	m->cpu = cpu_seconds();
}

void lm_es_idle_end(struct lm_es *e, struct lm_es_idle *m, uint64_t dispatches, uint64_t empty,
		    enum lm_backend backend)
{
	m->cpu = cpu_seconds() - m->cpu;
	m->dispatches = dispatches - m->dispatches;
	m->empty = empty - m->empty;
	m->signals = e->signals - m->signals;
	cr_log_info("%s idle 1 s: %u iterations, %u reactor dispatches (%u empty), %u signals, "
		    "%.3f s CPU",
		    lm_test_backend_name(backend), e->iterations, (unsigned)m->dispatches,
		    (unsigned)m->empty, m->signals, m->cpu);
	/* ~10 server ticks (each a signal to deliver) and ~10 foreign ticks. */
	cr_assert_geq(m->signals, 3, "signals on time: %u in 1 s at 100 ms", m->signals);
	cr_assert_leq(m->signals, 11, "%u signals in 1 s at 100 ms", m->signals);
	cr_assert_leq(m->dispatches, 60, "%u reactor dispatches in an idle second",
		      (unsigned)m->dispatches);
	cr_assert_leq(e->iterations, 150, "%u loop iterations in an idle second", e->iterations);
	cr_assert_lt(m->cpu, 0.25, "%.3f s of CPU in an idle second", m->cpu);
	/* The reactor's fd is readable when it has work, not after: a wake-up
	 * that finds nothing is wasted (reactor.h allows one now and then). */
	cr_assert_leq(m->empty, 3, "%u of %u wake-ups found no work", (unsigned)m->empty,
		      (unsigned)m->dispatches);
}
