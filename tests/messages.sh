#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# What the programs say when something is wrong: each error once, with its
# real reason, and the right exit status. Runs srvtime-client, srvtime-server
# and lm-bench as a user would, in a private runtime directory.
set -euo pipefail
bld=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export LM_RUNTIME_DIR="$tmp/run"
mkdir -m 700 "$LM_RUNTIME_DIR"
unset LM_LOG LM_BACKEND LM_TRANSPORT
client="$bld/services/srvtime/srvtime-client"
server="$bld/services/srvtime/srvtime-server"
bench="$bld/bench/lm-bench"
fails=0

# expect NAME STATUS PATTERN [ENV=V...] -- CMD...: CMD exits with STATUS, its
# stderr has exactly one line matching PATTERN (grep -E) and, unless
# no_server_hint=ok, never says "is srvtime-server running".
no_server_hint=
expect() {
	local name=$1 status=$2 pattern=$3 envs=() rc=0 n
	shift 3
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	env "${envs[@]}" timeout 60 "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	n=$(grep -cE -- "$pattern" "$tmp/err" || true)
	if [ "$rc" -ne "$status" ] || [ "$n" -ne 1 ] ||
		{ [ "$no_server_hint" != ok ] && grep -q 'is srvtime-server running' "$tmp/err"; }; then
		echo "FAIL $name: status $rc (want $status), $n line(s) matching '$pattern' (want 1):"
		sed 's/^/    /' "$tmp/err" | cut -c1-200
		fails=$((fails + 1))
	else
		echo "ok   $name: $(grep -E -- "$pattern" "$tmp/err" | cut -c1-150)"
	fi
}

long=$(printf 'a%.0s' $(seq 300))
for prog in "$client getdate" "$server"; do
	p=${prog%% *}
	p=${p##*/}
	# shellcheck disable=SC2086
	{
		expect "$p unknown transport" 1 "unknown transport 'bogus'" -- $prog --endpoint bogus:x
		expect "$p LM_TRANSPORT=bogus" 1 "LM_TRANSPORT=bogus: unknown transport" LM_TRANSPORT=bogus -- $prog --endpoint x
		expect "$p empty name" 1 "unix:: bad name: the name is empty" -- $prog --endpoint unix:
		expect "$p name with /" 1 "bad name: a name may not contain '/'" -- $prog --endpoint unix:../x
		expect "$p 300-byte name" 1 "bad name: the name is too long \(300 bytes, at most [0-9]+\)" -- $prog --endpoint "unix:$long"
		expect "$p runtime dir without parent" 1 "runtime directory .*/missing/run: cannot create it: its parent directory does not exist" \
			LM_RUNTIME_DIR="$tmp/missing/run" -- $prog
		expect "$p relative LM_RUNTIME_DIR" 1 "LM_RUNTIME_DIR=rel: refused: not an absolute path" LM_RUNTIME_DIR=rel -- $prog
		expect "$p LM_BACKEND=bogus" 1 "LM_BACKEND=bogus: expected epoll, uring" LM_BACKEND=bogus -- $prog
	}
done
[ ! -e "$tmp/rel" ] || { echo "FAIL a relative LM_RUNTIME_DIR was created"; fails=$((fails + 1)); }
# An unknown LM_LOG is warned about once; the program goes on (no server: 1).
no_server_hint=ok
expect "LM_LOG=bogus" 1 "LM_LOG=bogus: unknown level" LM_LOG=bogus -- "$client" getdate --timeout-ms 200
# No server at all: that is what the client says then.
expect "no server" 1 "no srvtime server at unix:nobody" -- "$client" getdate --endpoint unix:nobody --timeout-ms 200
no_server_hint=

# lm-bench refuses before its run: nothing on stdout, one line on stderr.
expect "lm-bench --plot in a missing directory" 2 "--plot /nonexistent/x.svg: cannot write there" -- \
	"$bench" --plot /nonexistent/x.svg --count 10 --mode call --transport unix
[ ! -s "$tmp/out" ] || { echo "FAIL lm-bench ran before refusing --plot"; fails=$((fails + 1)); }
expect "lm-bench LM_BACKEND=bogus" 2 "LM_BACKEND=bogus: expected epoll" LM_BACKEND=bogus -- \
	"$bench" --count 10 --mode call --transport unix
[ ! -s "$tmp/out" ] || { echo "FAIL lm-bench printed a table before refusing LM_BACKEND"; fails=$((fails + 1)); }

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "every message once, with its reason"
