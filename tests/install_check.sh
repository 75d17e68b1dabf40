#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the built tree into a temporary prefix, then build examples/ against
# it through pkg-config and a CMake project through find_package(libmessage).
set -euo pipefail
src=$1
bld=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$bld" --prefix "$tmp/prefix" >/dev/null
pc="$tmp/prefix/lib/pkgconfig"
[ -d "$pc" ] || pc=$(dirname "$(find "$tmp/prefix" -name libmessage.pc | head -n1)")
libdir=$(PKG_CONFIG_PATH="$pc" pkg-config --variable=libdir libmessage)

# The SONAME is versioned.
soname=$(readelf -d "$libdir/libmessage.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[[ "$soname" =~ ^libmessage\.so\.[0-9]+$ ]] || { echo "bad SONAME: $soname"; exit 1; }

# Only lm_* symbols are exported.
bad=$(nm -D --defined-only "$libdir/libmessage.so" | awk '$2 ~ /[TDB]/ {print $3}' | grep -v '^lm_' || true)
[ -z "$bad" ] || { echo "exported non-lm_ symbols: $bad"; exit 1; }

export LM_RUNTIME_DIR="$tmp/run-examples"
mkdir -m 700 "$LM_RUNTIME_DIR"
for ex in "$src"/examples/*.c; do
	out="$tmp/$(basename "$ex" .c)"
	# shellcheck disable=SC2046
	cc -std=gnu11 -Wall -Werror -o "$out" "$ex" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs libmessage)
	LD_LIBRARY_PATH="$libdir" timeout 20 "$out" >/dev/null
	echo "pkg-config: $(basename "$ex") built against the installed copy and ran"
done

# libmessage-systemd, when built (LM_WITH_SYSTEMD): its .pc, header and
# library, and the srvtime example units.
if [ -f "$pc/libmessage-systemd.pc" ]; then
	cat >"$tmp/sd.c" <<'C'
#include <libmessage/systemd.h>
int main(void) { return lm_systemd_ready() == 0 ? 0 : 1; }
C
	# shellcheck disable=SC2046
	cc -std=gnu11 -Wall -Werror -o "$tmp/sd" "$tmp/sd.c" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs libmessage-systemd)
	env -u NOTIFY_SOCKET LD_LIBRARY_PATH="$libdir" "$tmp/sd"
	for u in srvtime.socket srvtime.service; do
		[ -f "$tmp/prefix/lib/systemd/user/$u" ] || { echo "$u not installed"; exit 1; }
	done
	grep -q "^ExecStart=/.*/srvtime-server$" "$tmp/prefix/lib/systemd/user/srvtime.service" ||
		{ echo "srvtime.service: no ExecStart"; exit 1; }
	echo "pkg-config: libmessage-systemd built against the installed copy and ran; units installed"
fi

mkdir -p "$tmp/cm"
cat >"$tmp/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(uses_libmessage C)
find_package(libmessage REQUIRED)
add_executable(embed "$src/examples/embed_poll.c")
target_link_libraries(embed PRIVATE libmessage::libmessage)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
LD_LIBRARY_PATH="$libdir" timeout 20 "$tmp/cm/build/embed" >/dev/null
echo "find_package(libmessage): built and ran"

# The man pages, where they are built, are installed under share/man.
if grep -q '^LM_WITH_MAN:BOOL=ON$' "$bld/CMakeCache.txt"; then
	while read -r page; do
		[ -z "$page" ] || [ -f "$tmp/prefix/share/man/man${page##*.}/$page" ] ||
			{ echo "man page $page not installed"; exit 1; }
	done <"$bld/docs/man/pages.txt"
	echo "man pages installed under share/man"
fi

# Installed programs start as installed: their RUNPATH finds the library
# beside them, with no LD_LIBRARY_PATH; srvtime-server serves and
# srvtime-client calls it, in a private runtime directory.
bin="$tmp/prefix/bin"
progs=(srvtime-server srvtime-client lm-bench)
# lmctl and its bash completion, where it is built (LM_WITH_LMCTL).
if [ -e "$bin/lmctl" ]; then
	progs+=(lmctl)
	[ -f "$(dirname "$bin")/share/bash-completion/completions/lmctl" ] ||
		{ echo "lmctl's bash completion is not installed"; exit 1; }
fi
for p in "${progs[@]}"; do
	runpath=$(readelf -d "$bin/$p" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
	[ -n "$runpath" ] || [ "$p" = lm-bench ] || { echo "$p: no RUNPATH"; exit 1; }
	env -u LD_LIBRARY_PATH "$bin/$p" --help >/dev/null || { echo "installed $p does not start"; exit 1; }
done
LM_RUNTIME_DIR="$tmp/run"
mkdir -m 700 "$LM_RUNTIME_DIR"
env -u LD_LIBRARY_PATH "$bin/srvtime-server" --endpoint unix:installed &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ok=
for _ in $(seq 100); do
	if env -u LD_LIBRARY_PATH "$bin/srvtime-client" getdate --endpoint unix:installed >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 0.1
done
[ -n "$ok" ] || { echo "installed srvtime-client got no date from installed srvtime-server"; exit 1; }
kill -TERM "$server"
wait "$server"
echo "installed srvtime-server and srvtime-client ran, found the library by their RUNPATH"
