#!/usr/bin/env bash
# The metrics endpoint of a live worker, checked by promtool in both exposition formats: a
# reference Hub and a worker started as the README does, one workflow dispatched through the
# worker, then /metrics scraped with curl as Prometheus asks for OpenMetrics and as a client that
# asks for the text format 0.0.4. Each response's Content-Type is checked, and each body is piped
# into `promtool check metrics`; any problem it prints fails the step.
#
# promtool (2.42, Debian's `prometheus`) lints with the 0.0.4 text parser whatever it is fed. In
# OpenMetrics a counter family is named without `_total` (`# TYPE x counter`, sample `x_total`),
# which that parser reads as a second, untyped family without HELP ("x_total no help text"). So
# the OpenMetrics body is checked twice: promtool on it with exactly those lines allowed, each
# only for a family the same body declares as a counter with a HELP text; and promtool on the
# 0.0.4 body of the same scrape, which must be clean. The OpenMetrics body is then parsed by a
# strict OpenMetrics parser (Debian's python3-prometheus-client), which refuses the `_total`
# family names that would have pleased promtool ("Clashing name").
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:?usage: promtool.sh PATH_TO_BUILT_HUBWORKER}")"
command -v promtool >/dev/null || apt-get install -y prometheus >/dev/null
command -v curl >/dev/null || apt-get install -y curl >/dev/null
# A strict OpenMetrics parser (the Python client's), for what promtool cannot read.
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null \
    || apt-get install -y python3-prometheus-client >/dev/null

source .ci/stack.sh
start_hub
hub_port="${hub##*:}"
worker_port="$(free_port)"
metrics_port="$(free_port)"

cd "$dir"
cat > worker.toml <<EOF
[worker]
id = "promtool-worker"
listen = "127.0.0.1:$worker_port"
audience = "hubworker"
capacity = 2

[hub]
url = "http://127.0.0.1:$hub_port"
issuer = "hubworker-reference-hub"

[secrets]
dir = "$dir/keys"

[metrics]
listen = "127.0.0.1:$metrics_port"
EOF
"$bin" serve --config worker.toml 2>worker.log &
pids+=($!)
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$metrics_port/metrics" -o /dev/null && break
    if ! kill -0 "${pids[1]}" 2>/dev/null; then
        echo "the worker exited:" >&2
        cat worker.log >&2
        exit 1
    fi
    sleep 0.1
done
"$bin" hub dispatch --db hub.db --secrets keys --user alice \
    --workflow "$OLDPWD/examples/revenue_by_region.json" \
    --worker "http://127.0.0.1:$worker_port" > dispatch.out \
    || { echo "the dispatch failed:" >&2; cat dispatch.out worker.log >&2; exit 1; }

scrape() { # ACCEPT OUT: the body in OUT, the Content-Type printed
    curl -sSf -H "Accept: $1" -D "$2.headers" "http://127.0.0.1:$metrics_port/metrics" -o "$2"
    grep -i '^content-type:' "$2.headers" | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'
}
expect_type() { # GOT WANT WHAT
    if [ "$1" != "$2" ]; then
        echo "$3: Content-Type \"$1\", expected \"$2\"" >&2
        exit 1
    fi
}

# The run is counted just after its last event: wait for it, then scrape.
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$metrics_port/metrics" -o wait.txt \
        && grep -qxF 'hubworker_runs_finished_total{outcome="ok"} 1' wait.txt && break
    sleep 0.1
done
om_type="$(scrape 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' om.txt)"
expect_type "$om_type" "application/openmetrics-text; version=1.0.0; charset=utf-8" "OpenMetrics scrape"
text_type="$(scrape 'text/plain;version=0.0.4' text.txt)"
expect_type "$text_type" "text/plain; version=0.0.4; charset=utf-8" "text 0.0.4 scrape"
curl_type="$(scrape '*/*' curl.txt)"
expect_type "$curl_type" "text/plain; version=0.0.4; charset=utf-8" "scrape with Accept: */*"

# The scrape saw the run: a finished run and the standard series.
for series in 'hubworker_runs_finished_total{outcome="ok"} 1' 'hubworker_hub_connected 1'; do
    grep -qxF "$series" text.txt || { echo "missing: $series" >&2; cat text.txt >&2; exit 1; }
done
for name in process_cpu_seconds_total process_resident_memory_bytes process_start_time_seconds hubworker_build_info; do
    grep -q "^$name[ {]" text.txt || { echo "missing: $name" >&2; exit 1; }
done

lint() { # FILE: promtool's complaints (stdout and stderr), and its exit code in $lint_code
    set +e
    lint_out="$(promtool check metrics < "$1" 2>&1)"
    lint_code=$?
    set -e
}

for f in text.txt curl.txt; do
    lint "$f"
    if [ "$lint_code" -ne 0 ] || [ -n "$lint_out" ]; then
        echo "promtool check metrics on the 0.0.4 text ($f, exit $lint_code):" >&2
        echo "$lint_out" >&2
        exit 1
    fi
done
echo "promtool: the text format 0.0.4 is clean"

lint om.txt
grep -qx '# EOF' om.txt || { echo "the OpenMetrics text does not end with # EOF" >&2; exit 1; }
[ "$(tail -n1 om.txt)" = "# EOF" ] || { echo "# EOF is not the last line" >&2; exit 1; }
unexplained=""
while IFS= read -r line; do
    [ -z "$line" ] && continue
    family="${line% no help text}"
    family="${family%_total}"
    if [ "$line" = "${family}_total no help text" ] \
        && grep -qxF "# TYPE $family counter" om.txt \
        && grep -q "^# HELP $family ." om.txt; then
        continue
    fi
    unexplained+="$line"$'\n'
done <<<"$lint_out"
if [ -n "$unexplained" ]; then
    echo "promtool check metrics on the OpenMetrics text (exit $lint_code):" >&2
    echo "$unexplained" >&2
    exit 1
fi
if [ "$lint_code" -ne 0 ] && [ -z "$lint_out" ]; then
    echo "promtool check metrics failed on the OpenMetrics text without saying why" >&2
    exit 1
fi
echo "promtool: the OpenMetrics text is clean but for the counter naming its 0.0.4 parser cannot read"
/usr/bin/python3 - om.txt <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
counters = [f.name for f in families if f.type == "counter"]
assert "hubworker_runs_refused" in counters and "process_cpu_seconds" in counters, counters
print(f"OpenMetrics parser: {len(families)} families, {len(counters)} counters, all valid")
PY
echo "metrics: both formats pass promtool; content types right"
