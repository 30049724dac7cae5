"""The execution plan of `hubworker bench expr`, in py-polars, on the very rows it ran on.

`hubworker bench expr --python` writes its generated rows to an Arrow IPC file and pipes this
script to `python3 - FILE RUNS`; it may also be run by hand the same way. The rows are read
into memory first (as hubworker holds them); only the query is timed, on each engine,
interleaved, after one warm-up each; the median is printed as one JSON line.
"""

import json
import statistics
import sys
import time

import polars as pl

GROUPS = ["g01", "g02", "g03", "g10", "g20", "g30", "g40"]
ENGINES = ["auto", "streaming", "in-memory"]


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
    path, runs = sys.argv[1], int(sys.argv[2])
    df = pl.read_ipc(path, memory_map=False, rechunk=False)
    times = {e: [] for e in ENGINES}
    groups = 0
    for i in range(runs + 1):
        for engine in ENGINES:
            t0 = time.perf_counter()
            out = plan(df).collect(engine=engine)
            elapsed = time.perf_counter() - t0
            groups = out.height
            if i > 0:
                times[engine].append(elapsed)
    print(
        json.dumps(
            {
                "version": pl.__version__,
                "groups": groups,
                "median_ms": {e: statistics.median(t) * 1e3 for e, t in times.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
