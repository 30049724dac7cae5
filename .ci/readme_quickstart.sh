#!/usr/bin/env bash
# CI: the README's quickstart, verbatim. Every fenced block that follows a
# `<!-- ci:quickstart -->` line is extracted, in order, into one bash script (`set -euo
# pipefail`: any failing command fails the step) and run in a fresh temporary directory that
# holds a copy of examples/ (the README's commands run from a checkout), with `hubworker` on
# PATH pointing at the binary given. Background processes the blocks start are killed when
# the script ends, however it ends; their logs are shown on failure.
# Usage: .ci/readme_quickstart.sh path/to/hubworker
set -euo pipefail
bin="$(realpath "${1:?usage: $0 path/to/hubworker}")"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
# CI runs as root: run children then read the quickstart's SQLite file as the sandbox's user
# (uid 65534), which must be able to pass through to it (README, "The run sandbox").
chmod 0711 "$work"
trap 'rm -rf "$work"' EXIT

mkdir "$work/bin" "$work/run"
ln -s "$bin" "$work/bin/hubworker"
cp -r "$repo/examples" "$work/run/examples"

# Extract the marked blocks; a marker without a fenced block after it is an error.
python3 - "$repo/README.md" >"$work/blocks.sh" <<'PY'
import sys

lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
blocks, i = [], 0
while i < len(lines):
    if lines[i].strip() == "<!-- ci:quickstart -->":
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or not lines[j].startswith("```"):
            sys.exit(f"README.md:{i + 1}: the marker is not followed by a fenced block")
        k, body = j + 1, []
        while k < len(lines) and lines[k].strip() != "```":
            body.append(lines[k])
            k += 1
        if k >= len(lines):
            sys.exit(f"README.md:{j + 1}: unterminated fenced block")
        blocks.append(f"# --- README.md:{j + 2}\n" + "\n".join(body))
        i = k
    i += 1
if not blocks:
    sys.exit("README.md: no block is marked <!-- ci:quickstart -->")
print("\n".join(blocks))
PY

{
    echo 'set -euo pipefail'
    # Jobs the blocks leave running are stopped (SIGTERM: the worker drains) and waited for.
    echo 'stop_jobs() { local p; p="$(jobs -p)"; [ -z "$p" ] || { kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; }; }'
    echo 'trap stop_jobs EXIT'
    echo 'trap "exit 143" TERM INT'
    cat "$work/blocks.sh"
} >"$work/quickstart.sh"

echo "running $(grep -c '^# --- README.md:' "$work/blocks.sh") README blocks from $repo/README.md"
set +e
(cd "$work/run" && PATH="$work/bin:$PATH" timeout 300 bash -x "$work/quickstart.sh")
code=$?
set -e
if [ "$code" -ne 0 ]; then
    for log in "$work"/run/*.log; do
        [ -f "$log" ] && { echo "--- $log"; tail -n 40 "$log"; }
    done
    echo "the README quickstart failed (exit $code)" >&2
    exit 1
fi
echo "the README quickstart ran as written"
