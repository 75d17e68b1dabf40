#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what building and testing libmessage needs, from Debian's packages.
# As root it runs apt-get; otherwise it prints the exact line to run.
set -euo pipefail

# The core (liburing, libbsd), the tests (Criterion), and the optional parts that
# are on by default: lmctl's typed payloads (libcbor, json-c), lm-bridge (a real
# mosquitto broker and libmosquitto), systemd / GLib / libuv fit, man pages
# (scdoc, rendered by groff in a test), fuzzing (clang's libFuzzer), and the
# tools the tests use (setpriv for a second uid, ip for network namespaces).
pkgs=(gcc cmake ninja-build pkg-config liburing-dev libbsd-dev libcriterion-dev
	libcbor-dev libjson-c-dev mosquitto libmosquitto-dev libsystemd-dev libglib2.0-dev
	libuv1-dev scdoc groff-base man-db clang libclang-rt-14-dev util-linux iproute2 procps)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
else
	echo "deps: missing packages; run:" >&2
	echo "  sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
