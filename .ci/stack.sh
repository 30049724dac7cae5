# Sourced by the CI steps that need a live reference Hub (grpcurl.sh, promtool.sh); expects
# $bin (the hubworker binary). Gives: $dir (a temporary directory, removed at exit), $pids
# (processes stopped and waited for at exit), free_port, wait_listening HOST:PORT, and
# start_hub, which sets up the Hub as the README's quickstart does (keys, the sample shop
# database and its connection, user alice) and starts `hub serve` on a free port: $hub
# (HOST:PORT), its log in $dir/hub.log.

dir="$(mktemp -d)"
# CI runs as root: run children then read the SQLite file as the sandbox's user (uid 65534),
# which must be able to pass through this directory (the file itself is 0644).
chmod 0711 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts connections on $1 (host:port; at most 60 s); 1 if nothing does.
wait_listening() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start_hub() {
    "$bin" keygen --out "$dir/keys" >/dev/null
    "$bin" sample-db "$dir/shop.db" >/dev/null
    printf '{"connection": "shop", "dialect": "sqlite", "database": "%s", "auth": {"kind": "none"}}\n' \
        "$dir/shop.db" >"$dir/shop.json"
    "$bin" hub add-user --db "$dir/hub.db" --name alice --role user >/dev/null
    "$bin" hub add-connection --db "$dir/hub.db" --secrets "$dir/keys" \
        --credential-file "$dir/shop.json" >/dev/null
    hub="127.0.0.1:$(free_port)"
    "$bin" hub serve --db "$dir/hub.db" --secrets "$dir/keys" --listen "$hub" >"$dir/hub.log" 2>&1 &
    pids+=($!)
    if ! wait_listening "$hub"; then
        echo "the reference Hub does not listen on $hub:" >&2
        tail -n 40 "$dir/hub.log" >&2
        exit 1
    fi
}
