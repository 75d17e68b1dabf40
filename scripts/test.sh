#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test command: install what is missing, then build and run every test
# three times: a normal build, ASan+UBSan, and ThreadSanitizer (for the tests
# that start threads).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

step() { printf '\n== %s\n' "$*"; }

# The mq transport's tests open many queues at once; the default per-user
# budget (RLIMIT_MSGQUEUE, 800 KiB) holds about ten. Raise it where we may;
# elsewhere the mq cases that hit it say so and skip.
ulimit -q unlimited 2>/dev/null || ulimit -q "$(ulimit -Hq)" 2>/dev/null || true

step "normal build (-Werror)"
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest --test-dir build --output-on-failure

step "AddressSanitizer + UndefinedBehaviorSanitizer"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DLM_SANITIZE=address,undefined
# malloc_context_size=2: the suppression below then matches only a block
# Criterion allocated itself, not everything allocated under its runner (every
# test's own allocations). A report's allocation stacks are cut to 2 frames:
# run the failing test again with ASAN_OPTIONS=malloc_context_size=30 for all.
LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:malloc_context_size=2 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure

step "ThreadSanitizer (tests that start threads)"
scripts/build.sh build-tsan -DCMAKE_BUILD_TYPE=Debug -DLM_SANITIZE=thread
# TSan needs a narrower address-space layout than recent kernels randomise.
TSAN_OPTIONS=halt_on_error=1 setarch "$(uname -m)" -R ctest --test-dir build-tsan -L threads --output-on-failure

step "all three builds passed"
