#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configure and build one flavour: scripts/build.sh DIR [cmake options...]
# (LM_JOBS in the environment: ninja's -j)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
cmake -S . -B "$dir" -G Ninja -DLM_WERROR=ON "$@" >/dev/null
# LM_JOBS: ninja's -j (its default otherwise).
ninja -C "$dir" ${LM_JOBS:+-j"$LM_JOBS"} >/dev/null
