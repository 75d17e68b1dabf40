#!/usr/bin/env bash
# Install what building and testing libmessage needs, from Debian's packages.
# As root it runs apt-get; otherwise it prints the exact line to run.
set -euo pipefail

pkgs=(gcc cmake ninja-build pkg-config liburing-dev libbsd-dev libcriterion-dev)
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
