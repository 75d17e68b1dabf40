#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command: install what is missing, then build and run every test
# three times: a normal build, ASan+UBSan, and ThreadSanitizer (for the tests
# that start threads). Every phase runs even when an earlier one failed; the
# command fails if any phase failed or ran no test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

step() { printf '\n== %s\n' "$*"; }
failed=()

# The mq transport's tests open many queues at once; the default per-user
# budget (RLIMIT_MSGQUEUE, 800 KiB) holds about ten. Raise it where we may;
# elsewhere the mq cases that hit it say so and skip.
ulimit -q unlimited 2>/dev/null || ulimit -q "$(ulimit -Hq)" 2>/dev/null || true

# phase NAME BUILD-DIR [cmake options...] -- [ctest options...]: build with the
# tests on (whatever an earlier configure, e.g. scripts/demo.sh, cached), then
# run them; --no-tests=error fails a phase that finds no test to run.
wrap=()
phase() {
	local name=$1 dir=$2 cm=() ct=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do cm+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	ct=("$@")
	step "$name"
	if ! scripts/build.sh "$dir" -DLM_BUILD_TESTS=ON "${cm[@]}"; then
		failed+=("$name (build)")
		return
	fi
	if ! "${wrap[@]}" ctest --test-dir "$dir" --no-tests=error --output-on-failure "${ct[@]}"; then
		failed+=("$name")
	fi
}

phase "normal build (-Werror)" build -DCMAKE_BUILD_TYPE=RelWithDebInfo

# malloc_context_size=2: the suppression below then matches only a block
# Criterion allocated itself, not everything allocated under its runner (every
# test's own allocations). A report's allocation stacks are cut to 2 frames:
# run the failing test again with ASAN_OPTIONS=malloc_context_size=30 for all.
LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:malloc_context_size=2 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	phase "AddressSanitizer + UndefinedBehaviorSanitizer" build-asan \
	-DCMAKE_BUILD_TYPE=Debug -DLM_SANITIZE=address,undefined

# TSan needs a narrower address-space layout than recent kernels randomise:
# ctest runs under setarch -R.
wrap=(setarch "$(uname -m)" -R)
TSAN_OPTIONS=halt_on_error=1 phase "ThreadSanitizer (tests that start threads)" build-tsan \
	-DCMAKE_BUILD_TYPE=Debug -DLM_SANITIZE=thread -- -L threads

# Every corpus was replayed in the phases above (fuzz_replay_*); now a short
# fuzzing run of each target with clang's libFuzzer, so a crash found later
# becomes a corpus input (a regression test) at once.
step "fuzz smoke (libFuzzer, about a minute in all)"
rc=0
scripts/fuzz.sh smoke 60 || rc=$?
if [ $rc -eq 77 ]; then
	echo "clang is missing: no fuzz smoke (the corpora were replayed above)"
elif [ $rc -ne 0 ]; then
	failed+=("fuzz smoke")
fi

# liburing releases other than the system's: Debian 13's 2.9 (since 2.6 liburing
# keeps IORING_SETUP_NO_SQARRAY in the ring's flags) and the newest, 2.15. Each
# is built from the shared vendor folder (../shared/vendor beside the repo, or
# $LM_VENDOR_DIR) into build-liburing-V/prefix, never the system, and the
# reactor, io_uring and transport suites run against it (normal build only).
vendor=${LM_VENDOR_DIR:-$PWD/../shared/vendor}
liburing_phase() {
	local v=$1 dir=build-liburing-$1 tarball prefix
	tarball=$vendor/liburing-$v.tar.gz
	prefix=$PWD/$dir/prefix
	step "liburing $v"
	if [ ! -f "$tarball" ]; then
		printf 'SKIPPED: no %s (the shared vendor folder is absent; set LM_VENDOR_DIR)\n' \
			"$tarball"
		return
	fi
	if [ ! -f "$prefix/lib/pkgconfig/liburing.pc" ]; then
		rm -rf "$dir/src" && mkdir -p "$dir/src"
		if ! (tar xzf "$tarball" -C "$dir/src" --strip-components=1 &&
			cd "$dir/src" && ./configure --prefix="$prefix" >/dev/null &&
			make -C src -j2 >/dev/null && make -C src install >/dev/null); then
			failed+=("liburing $v (building liburing)")
			return
		fi
	fi
	PKG_CONFIG_PATH=$prefix/lib/pkgconfig LD_LIBRARY_PATH=$prefix/lib LM_JOBS=2 \
		phase "liburing $v: reactor, io_uring and transport suites" "$dir" \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_BUILD_RPATH="$prefix/lib" \
		-- -R '^test_(reactor|reactor_uring|reactor_post|transport)$'
	# The library really is the one built here, not the system's.
	if [ -x "$dir/tests/test_reactor_uring" ] &&
		! ldd "$dir/tests/test_reactor_uring" | grep -q "$prefix/lib/liburing"; then
		failed+=("liburing $v (tests not linked against it)")
	fi
}
wrap=()
liburing_phase 2.9
liburing_phase 2.15

if [ ${#failed[@]} -ne 0 ]; then
	printf '\n== FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
step "all three builds and the fuzz smoke passed"
