#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The libFuzzer targets (tests/fuzz/), built with clang in build-fuzz/.
#
#   scripts/fuzz.sh build                     configure and build them
#   scripts/fuzz.sh list                      their names
#   scripts/fuzz.sh run TARGET [ARGS...]      fuzz TARGET (libFuzzer ARGS, e.g.
#                                             -runs=10000000), growing
#                                             build-fuzz/corpus/TARGET from the
#                                             committed tests/fuzz/corpus/TARGET
#   scripts/fuzz.sh merge TARGET              minimise what run grew into the
#                                             committed corpus (then commit it)
#   scripts/fuzz.sh smoke [SECONDS]           every target in turn, SECONDS in
#                                             all (60), on a copy of its corpus
#
# A crash leaves crash-* (oom-*, timeout-*) in build-fuzz/: add it to the
# target's corpus as regress_<what> (merge keeps those; CI replays it with gcc
# as a regression test) and fix the code.
# One fuzzing process at a time (no -jobs, -workers): the machine's cores are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build-fuzz
targets=(codec frame fifo_stream fifo_request mq_request types)

# Longest input per target: the framing targets need room for several units.
max_len() {
	case $1 in
	frame | fifo_stream) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

build() {
	if ! command -v clang >/dev/null; then
		echo "fuzz.sh: clang is missing (scripts/deps.sh installs it)" >&2
		exit 77
	fi
	CC=clang cmake -S . -B "$dir" -G Ninja -DLM_WERROR=ON -DLM_FUZZ=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLM_SANITIZE=address,undefined >/dev/null
	if ! ninja -C "$dir" -j2 >"$dir/build.log"; then
		grep -E -A5 'error|FAILED' "$dir/build.log" >&2 || tail -n 30 "$dir/build.log" >&2
		exit 1
	fi
}

known() {
	for t in "${targets[@]}"; do
		[[ $t == "$1" ]] && return 0
	done
	echo "fuzz.sh: unknown target '$1' (scripts/fuzz.sh list)" >&2
	exit 2
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cmd=${1:-}
shift || true
case $cmd in
build)
	build
	;;
list)
	printf '%s\n' "${targets[@]}"
	;;
run)
	t=${1:?target}
	shift
	known "$t"
	build
	mkdir -p "$dir/corpus/$t"
	cd "$dir"
	exec "./tests/fuzz/fuzz_$t" -max_len="$(max_len "$t")" -print_final_stats=1 \
		"$@" "corpus/$t" "../tests/fuzz/corpus/$t"
	;;
merge)
	t=${1:?target}
	known "$t"
	build
	rm -rf "$dir/merged/$t"
	mkdir -p "$dir/merged/$t" "$dir/corpus/$t"
	"$dir/tests/fuzz/fuzz_$t" -merge=1 -max_len="$(max_len "$t")" "$dir/merged/$t" \
		"tests/fuzz/corpus/$t" "$dir/corpus/$t"
	# Inputs named regress_* (crashes found, now regression tests) stay as they are.
	find "tests/fuzz/corpus/$t" -maxdepth 1 -type f ! -name 'regress_*' -delete
	cp "$dir/merged/$t"/* "tests/fuzz/corpus/$t/"
	echo "tests/fuzz/corpus/$t: $(ls "tests/fuzz/corpus/$t" | wc -l) inputs"
	;;
smoke)
	total=${1:-60}
	build
	each=$((total / ${#targets[@]}))
	((each > 0)) || each=1
	for t in "${targets[@]}"; do
		work=$(mktemp -d)
		cp -r "tests/fuzz/corpus/$t/." "$work/"
		echo "== fuzz smoke: $t, ${each}s"
		rc=0
		(cd "$dir" && "./tests/fuzz/fuzz_$t" -max_len="$(max_len "$t")" \
			-max_total_time="$each" -print_final_stats=1 "$work") >"$dir/smoke-$t.log" 2>&1 ||
			rc=$?
		rm -rf "$work"
		grep -E '^#[0-9]+ +DONE|^stat::number_of_executed_units' "$dir/smoke-$t.log" || true
		if ((rc != 0)); then
			grep -E -A30 'ERROR|SUMMARY' "$dir/smoke-$t.log" >&2 || tail -n 30 "$dir/smoke-$t.log" >&2
			echo "fuzz smoke: $t failed (the crash input is in $dir/)" >&2
			exit 1
		fi
	done
	;;
*)
	sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
