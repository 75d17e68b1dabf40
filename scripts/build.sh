#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configure and build one flavour: scripts/build.sh DIR [cmake options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift
cmake -S . -B "$dir" -G Ninja -DLM_WERROR=ON "$@" >/dev/null
ninja -C "$dir" >/dev/null
