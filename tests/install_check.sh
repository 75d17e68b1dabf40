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

for ex in "$src"/examples/*.c; do
	out="$tmp/$(basename "$ex" .c)"
	# shellcheck disable=SC2046
	cc -std=gnu11 -Wall -Werror -o "$out" "$ex" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs libmessage)
	LD_LIBRARY_PATH="$libdir" timeout 20 "$out" >/dev/null
	echo "pkg-config: $(basename "$ex") built against the installed copy and ran"
done

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
