#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# srvtime-server under systemd's own tools, without a running systemd: the
# example units pass systemd-analyze verify, and systemd-socket-activate
# (which passes a listening socket as systemd does for a .socket unit)
# starts srvtime-server at the first client's connection, which is served.
# Skips (77) where srvtime-server is built without libmessage-systemd or
# the tools are missing.
set -euo pipefail
src=$1
bld=$2
server="$bld/services/srvtime/srvtime-server"
client="$bld/services/srvtime/srvtime-client"
"$server" --help | grep -q "Under systemd" || { echo "srvtime-server built without libmessage-systemd"; exit 77; }
command -v systemd-socket-activate >/dev/null || { echo "no systemd-socket-activate"; exit 77; }
tmp=$(mktemp -d)
activator=
trap '[ -z "$activator" ] || kill "$activator" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# The units, as installed (ExecStart pointing at the built server).
if command -v systemd-analyze >/dev/null; then
	cp "$src/integrations/systemd/srvtime.socket" "$tmp/"
	sed "s|@CMAKE_INSTALL_FULL_BINDIR@|$bld/services/srvtime|" \
		"$src/integrations/systemd/srvtime.service.in" >"$tmp/srvtime.service"
	(cd "$tmp" && XDG_RUNTIME_DIR=$tmp timeout 60 systemd-analyze verify --user \
		./srvtime.socket ./srvtime.service)
	rm "$tmp/srvtime.socket" "$tmp/srvtime.service"
	echo "ok   systemd-analyze verify: srvtime.socket and srvtime.service"
fi

export LM_RUNTIME_DIR="$tmp/run"
mkdir -m 700 "$LM_RUNTIME_DIR"
systemd-socket-activate --seqpacket -l "$LM_RUNTIME_DIR/srvtime.unix" --fdname=srvtime \
	-E LM_RUNTIME_DIR "$server" --period-ms 100 2>"$tmp/server.err" &
activator=$!
for _ in $(seq 100); do
	[ -S "$LM_RUNTIME_DIR/srvtime.unix" ] && break
	sleep 0.1
done
[ -S "$LM_RUNTIME_DIR/srvtime.unix" ] || { echo "FAIL systemd-socket-activate made no socket"; exit 1; }
# The first connection starts the server, which serves it.
out=$(timeout 30 "$client" getdate) || { echo "FAIL getdate: $out"; cat "$tmp/server.err"; exit 1; }
echo "ok   getdate through the activated server: $out"
grep -q "on the socket passed by systemd" "$tmp/server.err" ||
	{ echo "FAIL srvtime-server did not serve the passed socket:"; cat "$tmp/server.err"; exit 1; }
[ ! -e "$LM_RUNTIME_DIR/srvtime.unix.lock" ] || { echo "FAIL a lock file was taken"; exit 1; }
timeout 30 "$client" watch --count 2 >/dev/null || { echo "FAIL watch"; exit 1; }
echo "ok   date signals from the activated server"
kill -TERM "$activator"
wait "$activator" || true
activator=
grep -q "stopping" "$tmp/server.err" || { echo "FAIL no clean stop:"; cat "$tmp/server.err"; exit 1; }
[ -S "$LM_RUNTIME_DIR/srvtime.unix" ] || { echo "FAIL the socket's file was removed"; exit 1; }
echo "ok   stopped cleanly, the socket's file left to its maker"
