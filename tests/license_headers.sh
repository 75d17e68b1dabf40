#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Every tracked C file opens with the SPDX license line, and every script
# and CMake file carries it in its first two lines (after a shebang).
set -euo pipefail
src=$1
cd "$src"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	echo "not a git checkout: no list of tracked files"
	exit 77
fi
bad=0
while IFS= read -r f; do
	[ -f "$f" ] || continue
	if [ "$(head -n1 "$f")" != "/* SPDX-License-Identifier: MIT */" ]; then
		echo "$f: the first line is not /* SPDX-License-Identifier: MIT */"
		bad=1
	fi
done < <(git ls-files '*.c' '*.h' '*.h.in')
while IFS= read -r f; do
	[ -f "$f" ] || continue
	head -n2 "$f" | grep -qx '# SPDX-License-Identifier: MIT' ||
		{ echo "$f: no '# SPDX-License-Identifier: MIT' in its first two lines"; bad=1; }
done < <(git ls-files '*.sh' '*.py' 'CMakeLists.txt' '*/CMakeLists.txt' '*.cmake.in' '.ci/run')
[ "$bad" -eq 0 ] || exit 1
echo "every tracked source, script and CMake file carries the SPDX line"
