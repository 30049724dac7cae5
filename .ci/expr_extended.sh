#!/usr/bin/env bash
# The extended expression corpus (tests/corpus/expr-extended): ~1,600 cases and ~120 attacks
# beyond the public corpus, checked against py-polars 1.43.2 (the release matching the Rust
# polars crate we link). The expected outputs are computed here with real py-polars, in a
# cached venv, rather than committed; the runner and the data are the public corpus' own.
# usage: .ci/expr_extended.sh HUBWORKER_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$1"
shared=../shared/corpus/expr
venv="${HUBWORKER_ORACLE_VENV:-$HOME/.cache/hubworker-oracle-venv}"
if ! "$venv/bin/python" -c 'import polars, pyarrow, sys; sys.exit(polars.__version__ != "1.43.2")' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check polars==1.43.2 pyarrow
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$shared/run.py" "$shared/make_expected.py" "$shared/data.parquet" "$work/"
cp tests/corpus/expr-extended/cases.jsonl tests/corpus/expr-extended/gen_attacks.py "$work/"
"$venv/bin/python" "$work/gen_attacks.py"
"$venv/bin/python" "$work/make_expected.py" > "$work/make_expected.log" || {
    cat "$work/make_expected.log"
    exit 1
}
HUBWORKER="$bin" "$venv/bin/python" "$work/run.py"
