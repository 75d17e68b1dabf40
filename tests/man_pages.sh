#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Render every man page the build made (docs/man/pages.txt) with groff -ww
# (all warnings) and fail on any warning or error; skip where the man pages
# are not built (LM_WITH_MAN=OFF).
set -euo pipefail
bld=$2
dir="$bld/docs/man"
if ! grep -q '^LM_WITH_MAN:BOOL=ON$' "$bld/CMakeCache.txt"; then
	echo "LM_WITH_MAN is off: no man pages to check"
	exit 77
fi
[ -s "$dir/pages.txt" ] || { echo "LM_WITH_MAN is on but $dir/pages.txt is missing"; exit 1; }
n=0
while read -r page; do
	[ -n "$page" ] || continue
	[ -s "$dir/$page" ] || { echo "$page: not built"; exit 1; }
	if ! out=$(LC_ALL=C.UTF-8 groff -ww -man -z -Tutf8 "$dir/$page" 2>&1) || [ -n "$out" ]; then
		printf '%s: groff -ww says:\n%s\n' "$page" "$out"
		exit 1
	fi
	# The page names itself as the list says.
	name=${page%.*} section=${page##*.}
	grep -q "^\.TH \"$name\" \"$section\"" "$dir/$page" || { echo "$page: .TH is not $name($section)"; exit 1; }
	n=$((n + 1))
done <"$dir/pages.txt"
[ "$n" -gt 0 ] || { echo "no man page listed in $dir/pages.txt"; exit 1; }
echo "$n man pages rendered by groff -ww without a warning"
