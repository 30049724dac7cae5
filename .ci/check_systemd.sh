#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` must be clean and the offline security review must
# score <= 2.0 (threshold 20 on systemd-analyze's 0-100 scale). The template is checked as
# instance hubworker@1, with ExecStart pointing at the built binary so verify can check it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: check_systemd.sh PATH_TO_BUILT_HUBWORKER}"
if ! command -v systemd-analyze >/dev/null; then
    echo "SKIPPED LOUDLY: systemd-analyze is not installed here; the units were not checked" >&2
    exit 0
fi
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/bin/hubworker#$bin#g" systemd/hubworker@.service > "$dir/hubworker@1.service"
cp systemd/hubworker.target "$dir/"
mkdir -p "$dir/hubworker@1.service.d"
cp systemd/hubworker@.service.d/sizing.conf.example "$dir/hubworker@1.service.d/sizing.conf"
for unit in hubworker@1.service hubworker.target; do
    out="$(cd "$dir" && systemd-analyze verify "./$unit" 2>&1)"
    if [ -n "$out" ]; then
        echo "systemd-analyze verify $unit:" >&2
        echo "$out" >&2
        exit 1
    fi
done
(cd "$dir" && systemd-analyze security --offline=true --threshold=20 ./hubworker@1.service | tail -1)
echo "systemd units: verify clean, exposure within 2.0"
