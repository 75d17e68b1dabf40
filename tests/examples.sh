#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the examples the README shows, as built in the tree, each in a private
# runtime directory: every example alone, and readme_services as two
# processes (the client started first: it waits for the server).
set -euo pipefail
src=$1
bld=$2

# Every C block of README.md is, verbatim, the body of an example.
python3 - "$src" <<'PY'
import pathlib, re, sys
src = pathlib.Path(sys.argv[1])
examples = [p.read_text() for p in (src / "examples").glob("*.c")]
blocks = re.findall(r"^```c\n(.*?)^```$", (src / "README.md").read_text(), re.M | re.S)
assert blocks, "README.md has no C block"
for b in blocks:
    if not any(b in e for e in examples):
        sys.exit("README.md's C block starting %r is in no examples/*.c" % b.splitlines()[0])
print("README.md: %d C block(s), each an example's text" % len(blocks))
# ...and it says what each guide in docs/ is for.
readme = (src / "README.md").read_text()
for doc in sorted((src / "docs").glob("*.md")):
    if "`docs/%s`" % doc.name not in readme:
        sys.exit("README.md does not say what docs/%s is for" % doc.name)
PY
tmp=$(mktemp -d)
server=
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT
export LM_RUNTIME_DIR="$tmp/run"
mkdir -m 700 "$LM_RUNTIME_DIR"

for ex in "$bld"/examples/example_*; do
	timeout 20 "$ex" >"$tmp/out" || { echo "$(basename "$ex") failed"; cat "$tmp/out"; exit 1; }
	echo "$(basename "$ex") ran"
done

# In one process, then as two: the echo's reply and three ticks (which ticks
# depends on when the subscription reached the server).
ex="$bld/examples/example_readme_services"
check() {
	grep -qx 'echo: hello' "$1" && [ "$(grep -cx 'tick [0-9]*' "$1")" -eq 3 ] &&
		[ "$(wc -l <"$1")" -eq 4 ] || { printf '%s printed:\n' "$2"; cat "$1"; exit 1; }
}
timeout 20 "$ex" >"$tmp/both"
check "$tmp/both" "readme_services"
timeout 20 "$ex" client >"$tmp/client" &
client=$!
timeout 30 "$ex" server &
server=$!
wait "$client" || { echo "readme_services client failed"; cat "$tmp/client"; exit 1; }
kill -TERM "$server"
wait "$server" || { echo "readme_services server did not stop cleanly on SIGTERM"; exit 1; }
server=
check "$tmp/client" "readme_services client"
left=$(find "$LM_RUNTIME_DIR" -mindepth 1 | wc -l)
[ "$left" -eq 0 ] || { echo "the server left files:"; find "$LM_RUNTIME_DIR" -mindepth 1; exit 1; }
echo "readme_services: one process and two processes print the README's lines"
