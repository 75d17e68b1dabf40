/* SPDX-License-Identifier: MIT */
/* lm-bench: command-line options and --help. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "lm_bench.h"

static const char *const mode_names[] = {"call", "signal", "throughput", "idle"};
static const char *const tp_names[] = {"unix", "fifo", "mq"};
static const char *const cpu_names[] = {"same", "split", "any"};
static const char *const backend_names[] = {"-", "epoll", "uring"};

const char *bench_mode_name(enum bench_mode m)
{
	return mode_names[m];
}

const char *bench_tp_name(enum bench_tp t)
{
	return tp_names[t];
}

const char *bench_cpu_name(enum bench_cpu c)
{
	return cpu_names[c];
}

const char *bench_backend_name(int backend)
{
	return backend >= 0 && backend <= 2 ? backend_names[backend] : "?";
}

void bench_usage(FILE *f)
{
	fputs("Usage: lm-bench [OPTION]...\n"
	      "Measure libmessage against the kernel's floor (the same messages over bare\n"
	      "blocking sockets, FIFOs or POSIX queues between the same processes, with the\n"
	      "same CPU placement), in one run. Server and clients are separate processes\n"
	      "in a private runtime directory.\n"
	      "\n"
	      "Options (LIST is comma-separated; the lists make a matrix run in one go):\n"
	      "  --mode LIST        call, signal, throughput, idle            [call]\n"
	      "      call:       request/reply round trip timed by the client\n"
	      "      signal:     one emission to every subscriber; time until the last\n"
	      "                  subscriber has it (subscribers tell the emitter through\n"
	      "                  shared memory, the same way for the floor and libmessage)\n"
	      "      throughput: pipelined one-way messages client -> server\n"
	      "      idle:       server and subscribers connected, nothing sent, for\n"
	      "                  --duration; counts the server's wake-ups\n"
	      "  --transport LIST   unix, fifo, mq                            [unix,fifo,mq]\n"
	      "  --backend LIST     epoll, uring (reactor of libmessage cases) [epoll,uring]\n"
	      "  --size N           message size in bytes, 16..1048576        [64]\n"
	      "  --count N          measured messages per client (signal: emissions) [20000]\n"
	      "  --duration S       measure for S seconds instead of --count (idle: the\n"
	      "                     idle window, default 2)\n"
	      "  --warmup N         unmeasured messages before the measured ones [1000]\n"
	      "  --clients N        client processes for call/throughput, 1..1000 [1]\n"
	      "  --subscribers N    subscriber processes for signal/idle, 1..1000 [1]\n"
	      "  --idle-clients N   call, libmessage cases: one more process holds N idle\n"
	      "                     connections to the server while the call is measured;\n"
	      "                     prints the server's RSS growth per idle client  [0]\n"
	      "  --cpu LIST         same: every process on one CPU; split: server on one CPU,\n"
	      "                     clients on another; any: left to the scheduler   [same]\n"
	      "  --json             one JSON object per case on stdout instead of the table\n"
	      "  --plot FILE.svg    write the percentile distribution of every case\n"
	      "  --floor-only       run only the floor cases (no loop, no libmessage)\n"
	      "  --emit-from WHERE  signal, libmessage cases: loop: the emitter emits\n"
	      "                     between reactor iterations; callback: from a reactor\n"
	      "                     callback (a defer source), as a timer or a received\n"
	      "                     message would, so the fan-out is written when the\n"
	      "                     round ends                                     [loop]\n"
	      "  --help             this text\n"
	      "\n"
	      "Table fields, with their names in --json (the table's short names first):\n"
	      "  case        mode + impl in JSON: the mode, then what carried it:\n"
	      "              floor (bare kernel: blocking reads and writes, one syscall per\n"
	      "              message; signal: one write per subscriber), floor-batch\n"
	      "              (signal, unix and fifo: the floor's writes to the subscribers\n"
	      "              in one io_uring submission per 64, as libmessage's fan-out\n"
	      "              makes them; no library), loop\n"
	      "              (call and signal: the floor's messages, each receive after\n"
	      "              a readiness wait as an event loop does it: epoll_wait, or\n"
	      "              a one-shot io_uring poll re-armed per report; no library),\n"
	      "              lm_conn (libmessage transport connections, transport.h, through\n"
	      "              the reactor), lm_service (client/server layer, service.h:\n"
	      "              lm_client_call, lm_server_emit; throughput: pipelined calls,\n"
	      "              128 in flight, client corked), lm_emit (throughput only:\n"
	      "              pipelined one-way lm_server_emit to the subscribers, measured\n"
	      "              where they arrive), lm_sync (call only: the lm_service server,\n"
	      "              each call an lm_client_call_sync()). On mq each client process's\n"
	      "              reactor has one connection and waits in mq_timedreceive\n"
	      "              (a lone wait, docs/reactor.md; LM_LONE_NS=0: off). On\n"
	      "              io_uring a unix or fifo connection is not polled: one\n"
	      "              multishot receive (or read) into provided buffers reads\n"
	      "              each message as the wait ends (docs/backends.md;\n"
	      "              LM_URING_RECV=0: off). A signal (lm_conn:\n"
	      "              lm_conn_sendv_many, lm_service: lm_server_emit) to 4 or\n"
	      "              more unix or fifo subscribers is written by one io_uring\n"
	      "              submission, on either backend\n"
	      "              (docs/transports.md; LM_FANOUT_URING=0: one syscall each)\n"
	      "  tp          transport: unix (AF_UNIX SOCK_SEQPACKET), fifo (a FIFO pair\n"
	      "              per client), mq (a POSIX queue pair per client)\n"
	      "  backend     backend: of loop and libmessage cases; - (null) for the floors\n"
	      "  cpu         cpu: the placement (--cpu) with the CPUs used\n"
	      "  n           peers: clients or subscribers\n"
	      "  p50..max    p50_us, p90_us, p99_us, p999_us, max_us (and min_us): latency\n"
	      "              percentiles in microseconds (round trip for call, time to the\n"
	      "              last subscriber for signal); the histogram's relative precision\n"
	      "              is 0.4 % (JSON count: the latencies recorded)\n"
	      "  msgs/s      msgs_per_s: measured messages (round trips, emissions, one-way\n"
	      "              messages) per second of wall time (JSON msgs: how many;\n"
	      "              bytes_per_s: msgs_per_s x size)\n"
	      "  cpu_us/msg  cpu_us_per_msg: user+system CPU of every process of the case\n"
	      "              (getrusage, over the measured part) divided by the measured\n"
	      "              messages\n"
	      "  wake/s      wake_per_s: idle: voluntary context switches per second of the\n"
	      "              server (/proc/PID/status), i.e. how often it woke up for nothing\n"
	      "  x50, x99    ratio_p50, ratio_p99: ratio to a floor of the same mode,\n"
	      "              transport and placement in this run, for p50 and p99\n"
	      "              (throughput: floor's msgs/s divided by this case's, so lower is\n"
	      "              better everywhere). The floor is floor, except for signal\n"
	      "              cases that libmessage writes in io_uring submissions (lm_conn\n"
	      "              and lm_service, unix or fifo, 4 or more subscribers, a message\n"
	      "              of one flat write, LM_FANOUT_URING not 0): those are compared\n"
	      "              with floor-batch, and the row ends \"(x: to floor-batch)\"\n"
	      "              (JSON ratio_to: floor or floor-batch)\n"
	      "  (JSON only) size, status (ok, n/a, failed), why, emit_from, idle_clients and\n"
	      "              server_rss_per_idle_client (the table's \"+N idle clients\" note)\n"
	      "A case that cannot run here (its layer not built yet, io_uring refused,\n"
	      "a kernel limit) is printed as \"n/a\" with the reason; nothing is estimated.\n"
	      "Exit status: 0 ok, 1 a case failed, 2 bad arguments.\n",
	      f);
}

/* Parse a comma list of names into a bit set; -EINVAL on an unknown name. */
static int parse_list(const char *arg, const char *const *names, int n, int first, unsigned *ret)
{
	unsigned set = 0;
	size_t len = strlen(arg);
	if (len == 0 || arg[0] == ',' || arg[len - 1] == ',' || strstr(arg, ",,"))
		return -EINVAL;
	char *copy = strdup(arg), *save = NULL;
	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int i;
		for (i = first; i < n; i++)
			if (strcmp(tok, names[i]) == 0)
				break;
		if (i == n) {
			free(copy);
			return -EINVAL;
		}
		set |= 1u << i;
	}
	free(copy);
	if (!set)
		return -EINVAL;
	*ret = set;
	return 0;
}

static int parse_u64(const char *arg, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	char *end;
	errno = 0;
	if (*arg == '-' || *arg == '\0')
		return -EINVAL;
	unsigned long long v = strtoull(arg, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*ret = v;
	return 0;
}

int bench_parse_args(struct bench_opts *o, int argc, char **argv, FILE *err)
{
	enum {
		O_MODE = 256,
		O_TP,
		O_BACKEND,
		O_SIZE,
		O_COUNT,
		O_DURATION,
		O_WARMUP,
		O_CLIENTS,
		O_SUBS,
		O_IDLE,
		O_CPU,
		O_JSON,
		O_PLOT,
		O_FLOOR,
		O_EMIT,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"mode", required_argument, NULL, O_MODE},
	    {"transport", required_argument, NULL, O_TP},
	    {"backend", required_argument, NULL, O_BACKEND},
	    {"size", required_argument, NULL, O_SIZE},
	    {"count", required_argument, NULL, O_COUNT},
	    {"duration", required_argument, NULL, O_DURATION},
	    {"warmup", required_argument, NULL, O_WARMUP},
	    {"clients", required_argument, NULL, O_CLIENTS},
	    {"subscribers", required_argument, NULL, O_SUBS},
	    {"idle-clients", required_argument, NULL, O_IDLE},
	    {"cpu", required_argument, NULL, O_CPU},
	    {"json", no_argument, NULL, O_JSON},
	    {"plot", required_argument, NULL, O_PLOT},
	    {"floor-only", no_argument, NULL, O_FLOOR},
	    {"emit-from", required_argument, NULL, O_EMIT},
	    {"help", no_argument, NULL, O_HELP},
	    {0},
	};
	*o = (struct bench_opts){
	    .modes = 1u << MODE_CALL,
	    .transports = (1u << TP_COUNT) - 1,
	    .backends = (1u << 1) | (1u << 2),
	    .cpus = 1u << CPU_SAME,
	    .size = 64,
	    .count = 20000,
	    .duration = 0,
	    .warmup = 1000,
	    .clients = 1,
	    .subscribers = 1,
	};
	bool count_set = false;
	uint64_t v;
	int opt;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int r = 0;
		const char *what = NULL;
		switch (opt) {
		case O_MODE:
			r = parse_list(optarg, mode_names, MODE_COUNT, 0, &o->modes);
			what = "--mode: expected a list of call, signal, throughput, idle";
			break;
		case O_TP:
			r = parse_list(optarg, tp_names, TP_COUNT, 0, &o->transports);
			what = "--transport: expected a list of unix, fifo, mq";
			break;
		case O_BACKEND:
			r = parse_list(optarg, backend_names, 3, 1, &o->backends);
			what = "--backend: expected a list of epoll, uring";
			break;
		case O_CPU:
			r = parse_list(optarg, cpu_names, CPU_COUNT, 0, &o->cpus);
			what = "--cpu: expected a list of same, split, any";
			break;
		case O_SIZE:
			r = parse_u64(optarg, BENCH_MIN_SIZE, BENCH_MAX_SIZE, &v);
			o->size = v;
			what = "--size: expected 16..1048576";
			break;
		case O_COUNT:
			r = parse_u64(optarg, 1, UINT64_MAX / 2, &o->count);
			count_set = true;
			what = "--count: expected a positive integer";
			break;
		case O_WARMUP:
			r = parse_u64(optarg, 0, UINT64_MAX / 2, &o->warmup);
			what = "--warmup: expected a non-negative integer";
			break;
		case O_DURATION: {
			char *end;
			errno = 0;
			o->duration = strtod(optarg, &end);
			if (errno || *end || !(o->duration > 0) || o->duration > 86400)
				r = -EINVAL;
			what = "--duration: expected seconds, > 0";
			break;
		}
		case O_CLIENTS:
			r = parse_u64(optarg, 1, BENCH_MAX_PEERS, &v);
			o->clients = (int)v;
			what = "--clients: expected 1..1000";
			break;
		case O_SUBS:
			r = parse_u64(optarg, 1, BENCH_MAX_PEERS, &v);
			o->subscribers = (int)v;
			what = "--subscribers: expected 1..1000";
			break;
		case O_IDLE:
			r = parse_u64(optarg, 0, 100000, &v);
			o->idle_clients = (int)v;
			what = "--idle-clients: expected 0..100000";
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_PLOT:
			o->plot = optarg;
			break;
		case O_FLOOR:
			o->floor_only = true;
			break;
		case O_EMIT:
			r = !strcmp(optarg, "loop") || !strcmp(optarg, "callback") ? 0 : -EINVAL;
			o->emit_in_cb = !strcmp(optarg, "callback");
			what = "--emit-from: expected loop or callback";
			break;
		case O_HELP:
			bench_usage(stdout);
			return 1;
		default:
			fprintf(err, "lm-bench: unknown or incomplete option '%s' (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
		if (r < 0) {
			fprintf(err, "lm-bench: bad value '%s' for %s\n", optarg, what);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(err, "lm-bench: unexpected argument '%s' (see --help)\n", argv[optind]);
		return 2;
	}
	if (o->duration > 0 && count_set) {
		fprintf(err, "lm-bench: give --count or --duration, not both\n");
		return 2;
	}
	if (o->duration > 0)
		o->count = 0;
	return 0;
}
