#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The first quick-start command: install what is missing, build, and run the
# srvtime sample end to end in a private runtime directory: the server in the
# background, one getdate call, three date signals, a clean stop, and a check
# that the server left no file behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_BUILD_TESTS=OFF

bin=build/services/srvtime
endpoint=${1:-unix:srvtime}
export LM_RUNTIME_DIR
LM_RUNTIME_DIR=$(mktemp -d /tmp/lm-demo-XXXXXX)
server_pid=
cleanup() {
	[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
	rm -rf "$LM_RUNTIME_DIR"
}
trap cleanup EXIT

echo "== srvtime-server --endpoint $endpoint --period-ms 200 (runtime dir $LM_RUNTIME_DIR)"
"$bin/srvtime-server" --endpoint "$endpoint" --period-ms 200 &
server_pid=$!

# Wait for the server to answer (lmctl wait), when lmctl is built.
lmctl=build/tools/lmctl/lmctl
if [ -x "$lmctl" ]; then
	"$lmctl" wait "$endpoint" --timeout 10
else
	for _ in $(seq 50); do
		"$bin/srvtime-client" getdate --endpoint "$endpoint" >/dev/null 2>&1 && break
		sleep 0.1
	done
fi
echo "== srvtime-client getdate"
"$bin/srvtime-client" getdate --endpoint "$endpoint"
echo "== srvtime-client watch --count 3"
"$bin/srvtime-client" watch --count 3 --endpoint "$endpoint"
if [ -x "$lmctl" ]; then
	echo "== lmctl introspect, call getdate, monitor --count 2"
	"$lmctl" introspect "$endpoint"
	"$lmctl" call "$endpoint" getdate
	"$lmctl" monitor "$endpoint" --count 2
fi

echo "== stopping the server (SIGTERM)"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=
left=$(find "$LM_RUNTIME_DIR" -mindepth 1 | wc -l)
if [ "$left" -ne 0 ]; then
	echo "the server left $left file(s) in $LM_RUNTIME_DIR:" >&2
	find "$LM_RUNTIME_DIR" -mindepth 1 >&2
	exit 1
fi
echo "== done: clean stop, runtime directory empty"
