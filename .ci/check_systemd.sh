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

# The README's enable step, run verbatim (its `systemctl enable` line, from the "A fleet under
# systemd" install block) against an offline root: the target must be wanted by
# multi-user.target (so the fleet starts at boot) and pull in each slot.
root="$dir/root"
mkdir -p "$root/etc/systemd/system"
install -m 0644 systemd/hubworker@.service systemd/hubworker.target "$root/etc/systemd/system/"
enable_line="$(grep -E '^systemctl enable ' README.md | head -1)"
if [ -z "$enable_line" ] || ! grep -q 'hubworker.target' <<<"$enable_line"; then
    echo "README: the install steps' 'systemctl enable' line must enable hubworker.target: '$enable_line'" >&2
    exit 1
fi
# shellcheck disable=SC2086 # the README's words, split as the shell splits them
set -- ${enable_line#systemctl enable }
units=()
for u in "$@"; do
    case "$u" in --now) ;; *) units+=("$u") ;; esac
done
if ! command -v systemctl >/dev/null; then
    echo "SKIPPED LOUDLY: systemctl is not installed here; the enable steps were not checked" >&2
    exit 0
fi
systemctl --root="$root" enable "${units[@]}"
wants="$root/etc/systemd/system"
check_link() {
    local link="$1" target="$2"
    if [ ! -L "$link" ] || [ "$(readlink "$link")" != "$target" ]; then
        echo "after '$enable_line': $link does not point at $target" >&2
        ls -lR "$wants" >&2
        exit 1
    fi
}
check_link "$wants/multi-user.target.wants/hubworker.target" /etc/systemd/system/hubworker.target
slots=0
for u in "${units[@]}"; do
    case "$u" in
        hubworker@*)
            check_link "$wants/hubworker.target.wants/${u%.service}.service" /etc/systemd/system/hubworker@.service
            slots=$((slots + 1))
            ;;
    esac
done
if [ "$slots" -lt 1 ]; then
    echo "README: the enable line names no slot: '$enable_line'" >&2
    exit 1
fi
echo "systemd units: verify clean, exposure within 2.0, the README's enable line makes hubworker.target (wanted by multi-user.target) pull in $slots slot(s)"
