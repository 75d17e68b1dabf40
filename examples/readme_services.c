/* SPDX-License-Identifier: MIT */
/* The README's services example: a server (method echo, signal tick) and a client. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <libmessage/libmessage.h>

#define ENDPOINT "unix:readme-echo"

/* ---- the server: echo replies with what it got; tick is emitted every 100 ms ---- */

static void on_echo(lm_call *call, const void *payload, size_t len, void *userdata)
{
	lm_call_reply(call, payload, len);
}

static const struct lm_method methods[] = {{"echo", on_echo}};

static void on_timer(lm_source *s, uint64_t expirations, void *userdata)
{
	static unsigned n;

	n++;
	lm_server_emit(userdata, "tick", &n, sizeof(n));
}

static int serve(lm_reactor *r, lm_server **ret)
{
	int err = lm_server_new(ret, r, ENDPOINT, NULL);

	if (err == 0)
		err = lm_server_add_methods(*ret, methods, 1, NULL);
	if (err == 0)
		err = lm_server_add_signal(*ret, "tick", LM_OVERFLOW_DROP_OLDEST);
	if (err == 0)
		err = lm_reactor_add_timer(r, NULL, 100000000, 100000000, on_timer, *ret);
	return err;
}

/* ---- the client: one echo call once connected, then three ticks ---- */

static int ticks;

static void on_reply(lm_client *c, const struct lm_reply *reply, void *userdata)
{
	if (reply->status == 0)
		printf("echo: %.*s\n", (int)reply->len, (const char *)reply->payload);
	else
		printf("echo failed: %s\n", strerror(-reply->status));
}

static void on_state(lm_client *c, enum lm_client_state state, int reason, void *userdata)
{
	if (state == LM_CLIENT_CONNECTED)
		lm_client_call(c, "echo", "hello", 5, -1, on_reply, NULL);
}

static void on_tick(lm_client *c, const char *signal, const void *payload, size_t len,
		    uint64_t dropped, void *userdata)
{
	unsigned n;

	if (len == sizeof(n)) {
		memcpy(&n, payload, sizeof(n));
		printf("tick %u\n", n);
	}
	if (++ticks == 3)
		lm_reactor_stop(lm_client_get_reactor(c), 0);
}

static int connect_client(lm_reactor *r, lm_client **ret)
{
	int err = lm_client_new(ret, r, ENDPOINT, NULL);

	if (err == 0) {
		lm_client_set_state_cb(*ret, on_state, NULL);
		err = lm_client_subscribe(*ret, "tick", on_tick, NULL);
	}
	return err;
}

static void on_stop(lm_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	lm_reactor_stop(lm_source_get_reactor(s), 0);
}

/* "server", "client", or both in one process (no argument). */
int main(int argc, char **argv)
{
	const char *role = argc > 1 ? argv[1] : "both";
	lm_server *s = NULL;
	lm_client *c = NULL;
	lm_reactor *r;
	int err = lm_reactor_new(&r, NULL);

	if (err == 0 && strcmp(role, "client") != 0)
		err = serve(r, &s);
	if (err == 0 && strcmp(role, "server") != 0)
		err = connect_client(r, &c);
	if (err == 0)
		err = lm_reactor_add_signal(r, NULL, SIGINT, on_stop, NULL);
	if (err == 0)
		err = lm_reactor_add_signal(r, NULL, SIGTERM, on_stop, NULL);
	if (err == 0)
		err = lm_reactor_run(r);
	if (err < 0)
		fprintf(stderr, "readme_services: %s\n", strerror(-err));
	lm_client_free(c);
	lm_server_free(s);
	lm_reactor_free(r);
	return err < 0;
}
