"""The execution plan of `hubworker bench expr`, in py-polars, on the very rows it ran on.

`hubworker bench expr --python` writes its generated rows to an Arrow IPC file and starts
`python3 -c <this script> FILE`. The rows are read into memory first (as hubworker holds
them). Then, for every line `round` on stdin, the plan runs once on each engine (a pause
before each run, as on the Rust side, so no engine's idle threads run into the next
measurement) and one JSON line of the times, in milliseconds, is printed; hubworker runs its
own plans between rounds, so both sides are measured in the same window. The first line
printed says which polars it is and how many groups the plan gives.
"""

import io
import json
import sys
import time

import polars as pl

GROUPS = ["g01", "g02", "g03", "g10", "g20", "g30", "g40"]
ENGINES = ["auto", "streaming", "in-memory"]
PAUSE_S = 0.1


def plan(df):
    return (
        df.lazy()
        .with_columns((pl.col("price") * pl.col("qty")).alias("amount"))
        .with_columns(
            pl.when(pl.col("amount") > 1000)
            .then(pl.col("amount") * 0.9)
            .otherwise(pl.col("amount"))
            .alias("net")
        )
        .filter((pl.col("net") > 50) & pl.col("grp").is_in(GROUPS).not_())
        .group_by("grp")
        .agg(
            pl.col("net").sum().alias("net_sum"),
            pl.col("price").mean().alias("price_mean"),
            pl.col("qty").count().alias("n"),
        )
    )


def main():
    # Read from bytes in memory, so no query reads a memory-mapped file.
    with open(sys.argv[1], "rb") as f:
        df = pl.read_ipc(io.BytesIO(f.read()))
    groups = plan(df).collect().height
    print(json.dumps({"version": pl.__version__, "groups": groups}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        times = {}
        for engine in ENGINES:
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            plan(df).collect(engine=engine)
            times[engine] = (time.perf_counter() - t0) * 1e3
        print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
