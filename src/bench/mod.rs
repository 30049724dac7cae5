//! Expression benchmarks shared by `benches/expressions.rs` (criterion) and
//! `hubworker bench expr`: the front end (cold check+compile, warm cache hit) side by side with
//! the bare rustpython parse of the same texts (`expr::parse_expression`, the very function
//! `check` parses with), and a Formula → Formula → Filter → group_by plan
//! compiled from strings side by side with the same plan written by hand in Rust Polars.

pub mod dispatch;
pub(crate) mod fleet;
pub mod workflow;

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use polars::prelude::{
    DataFrame, Expr, IntoColumn, IntoLazy, LazyFrame, NamedFrom, Series, col, lit, when,
};

use crate::error::Error;
use crate::expr::{self, ExprCache};
use crate::workflow::Engine;

/// The Python reference implementation's median per expression on this machine (issue #2).
pub(crate) const PYTHON_REFERENCE_NS: f64 = 62_000.0;

/// Options of `hubworker bench expr`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ExprBenchArgs {
    /// Rows of generated data for the execution benchmark.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Timed repetitions of each plan (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Distinct expressions per size class in the front-end benchmark.
    #[arg(long, default_value_t = 2_000)]
    pub exprs: usize,
    /// Also run the execution plan in py-polars (`python3` with polars installed) on the same
    /// rows, its rounds between ours, and print the ratio.
    #[arg(long)]
    pub python: bool,
}

/// Expression size classes of the front-end benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// About 25 characters.
    Short,
    /// About 90 characters.
    Medium,
    /// About 500 characters.
    Long,
}

impl Size {
    /// All classes, in report order.
    pub const ALL: [Size; 3] = [Size::Short, Size::Medium, Size::Long];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Size::Short => "short",
            Size::Medium => "medium",
            Size::Long => "long",
        }
    }
}

/// `n` distinct expressions of a size class (constants vary so no two texts are equal).
pub fn corpus(size: Size, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match size {
            Size::Short => format!("pl.col(\"price\") * {}", i + 2),
            Size::Medium => format!(
                "pl.when(pl.col(\"qty\") > {i}).then(pl.col(\"price\") * 0.9).otherwise(pl.col(\"price\")).round(2)"
            ),
            Size::Long => {
                let mut s = String::from("(");
                for k in 0..4 {
                    if k > 0 {
                        s.push_str(" + ");
                    }
                    let _ = write!(
                        s,
                        "pl.when((pl.col(\"qty\") > {}) & pl.col(\"region\").str.starts_with(\"N\")).then(pl.col(\"price\") * {}).otherwise(0)",
                        i + k,
                        k + 1
                    );
                }
                s.push_str(").fill_null(0).clip(0, 10000).round(2).alias(\"score\")");
                s
            }
        })
        .collect()
}

/// Per-expression timings of one size class, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontEnd {
    /// Average source length in bytes.
    pub chars: usize,
    /// rustpython-parser alone.
    pub bare_ns: f64,
    /// parse + allowlist + compile to a Polars `Expr` (`expr::check`), no cache.
    pub cold_ns: f64,
    /// compiled-expression cache hit (`ExprCache::with`, which lends the cached result).
    pub warm_ns: f64,
}

fn per_item(elapsed: Duration, items: usize) -> f64 {
    elapsed.as_nanos() as f64 / items.max(1) as f64
}

/// Distinct expressions in the warm working set: a few workflows' worth, as a worker sees
/// when the same workflows run again and again.
pub const WARM_WORKING_SET: usize = 64;

/// Measures one size class; each measurement is the best of `rounds` passes over the texts
/// (best-of filters out scheduler noise on a shared 2-core machine). Cold and bare parse use
/// every text; warm cycles over the first [`WARM_WORKING_SET`] of them as many times.
pub(crate) fn measure_front_end(texts: &[String], rounds: usize) -> FrontEnd {
    let mut bare = f64::MAX;
    let mut cold = f64::MAX;
    let mut warm = f64::MAX;
    let cache = ExprCache::default();
    let hot = &texts[..texts.len().min(WARM_WORKING_SET)];
    for t in hot {
        let _ = cache.get(t);
    }
    let laps = texts.len() / hot.len().max(1);
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        for t in texts {
            let _ = black_box(expr::parse_expression(black_box(t), Default::default()));
        }
        bare = bare.min(per_item(t0.elapsed(), texts.len()));
        let t0 = Instant::now();
        for t in texts {
            let _ = black_box(expr::check(black_box(t)));
        }
        cold = cold.min(per_item(t0.elapsed(), texts.len()));
        // One untimed lap first: the cold pass just above evicted the hot texts and cache
        // entries from the CPU caches, and a warm hit is meant to be measured warm.
        for t in hot {
            let _ = black_box(cache.with(black_box(t), Result::is_ok));
        }
        let t0 = Instant::now();
        for _ in 0..laps {
            for t in hot {
                let _ = black_box(cache.with(black_box(t), Result::is_ok));
            }
        }
        warm = warm.min(per_item(t0.elapsed(), laps * hot.len()));
    }
    let chars = texts.iter().map(String::len).sum::<usize>() / texts.len().max(1);
    FrontEnd {
        chars,
        bare_ns: bare,
        cold_ns: cold,
        warm_ns: warm,
    }
}

/// Deterministic test data: `price` (f64, some nulls), `qty` (i64), `grp` (string, 64 values).
pub fn generate_frame(rows: usize, seed: u64) -> DataFrame {
    let mut mix = crate::sample::Mix(seed);
    let mut next = move || mix.next_u64();
    let names: Vec<String> = (0..64).map(|g| format!("g{g:02}")).collect();
    let mut price = Vec::with_capacity(rows);
    let mut qty = Vec::with_capacity(rows);
    let mut grp = Vec::with_capacity(rows);
    for _ in 0..rows {
        let r = next();
        price.push(if r % 50 == 0 {
            None
        } else {
            Some((r >> 11) as f64 / (1u64 << 53) as f64 * 500.0)
        });
        qty.push((next() % 200) as i64 - 20);
        grp.push(names[(next() % 64) as usize].as_str());
    }
    let cols = vec![
        Series::new("price".into(), price).into_column(),
        Series::new("qty".into(), qty).into_column(),
        Series::new("grp".into(), grp).into_column(),
    ];
    DataFrame::new_infer_height(cols).unwrap_or_default()
}

/// The benchmark plan's expressions as users write them.
pub(crate) const PLAN_SOURCES: [&str; 3] = [
    r#"pl.col("price") * pl.col("qty")"#,
    r#"pl.when(pl.col("amount") > 1000).then(pl.col("amount") * 0.9).otherwise(pl.col("amount"))"#,
    r#"(pl.col("net") > 50) & pl.col("grp").is_in(["g01", "g02", "g03", "g10", "g20", "g30", "g40"]).not_()"#,
];

fn finish(lf: LazyFrame, amount: Expr, net: Expr, keep: Expr) -> LazyFrame {
    lf.with_column(amount.alias("amount"))
        .with_column(net.alias("net"))
        .filter(keep)
        .group_by([col("grp")])
        .agg([
            col("net").sum().alias("net_sum"),
            col("price").mean().alias("price_mean"),
            col("qty").count().alias("n"),
        ])
}

/// The plan built from expression strings through the compiler.
pub fn compiled_plan(df: &DataFrame) -> Result<LazyFrame, Error> {
    let mut exprs = Vec::with_capacity(3);
    for src in PLAN_SOURCES {
        exprs.push(expr::compile(&expr::check(src)?));
    }
    let mut it = exprs.into_iter();
    let (Some(a), Some(n), Some(k)) = (it.next(), it.next(), it.next()) else {
        return Err(Error::Failed("benchmark plan is incomplete".into()));
    };
    Ok(finish(df.clone().lazy(), a, n, k))
}

/// The same plan written by hand with the Rust Polars API.
pub fn handwritten_plan(df: &DataFrame) -> LazyFrame {
    let amount = col("price") * col("qty");
    let net = when(col("amount").gt(lit(1000)))
        .then(col("amount") * lit(0.9))
        .otherwise(col("amount"));
    let groups = Series::new("".into(), ["g01", "g02", "g03", "g10", "g20", "g30", "g40"]);
    let list = polars::prelude::Scalar::new(
        polars::prelude::DataType::List(Box::new(polars::prelude::DataType::String)),
        polars::prelude::AnyValue::List(groups),
    );
    let keep = col("net")
        .gt(lit(50))
        .and(col("grp").is_in(lit(list), false).not());
    finish(df.clone().lazy(), amount, net, keep)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs both benchmarks and renders the report.
pub(crate) fn run_expr_bench(args: &ExprBenchArgs) -> Result<String, Error> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "front end (per expression, best of 15 alternating passes; cold and bare parse over {} distinct \
         texts, warm over a working set of {WARM_WORKING_SET})",
        args.exprs
    );
    let _ = writeln!(
        out,
        "{:<7} {:>6} {:>11} {:>11} {:>11} {:>10} {:>14} {:>14}",
        "size", "chars", "bare parse", "cold", "warm", "cold/bare", "cold expr/s", "warm vs py"
    );
    for size in Size::ALL {
        let texts = corpus(size, args.exprs);
        let f = measure_front_end(&texts, 15);
        let _ = writeln!(
            out,
            "{:<7} {:>6} {:>9.0}ns {:>9.0}ns {:>9.0}ns {:>9.3}x {:>14.0} {:>13.0}x",
            size.name(),
            f.chars,
            f.bare_ns,
            f.cold_ns,
            f.warm_ns,
            f.cold_ns / f.bare_ns,
            1e9 / f.cold_ns,
            PYTHON_REFERENCE_NS / f.warm_ns
        );
    }
    let df = generate_frame(args.rows, 1984);
    let mut python = if args.python {
        Some(Python::start(&df)?)
    } else {
        None
    };
    let engines = [Engine::Streaming, Engine::InMemory];
    // Interleaved so drift (thermal, other load) hits all alike, py-polars' round between
    // ours; one warm-up round; a pause before each run, so no engine's idle threads (the
    // streaming engine's executor spins a little before it parks) run into the next one.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 6];
    let mut groups = [0usize; 6];
    let mut py_times: Vec<(String, Vec<f64>)> = Vec::new();
    for i in 0..=args.runs.max(1) {
        // The six plans in a rotating order: no plan always comes first after py-polars' round.
        for k in 0..6 {
            let slot = (k + i) % 6;
            let engine = engines[slot / 3];
            let (plan, as_run) = match slot % 3 {
                0 => (compiled_plan(&df)?, false),
                1 => (handwritten_plan(&df), false),
                _ => (compiled_plan(&df)?, true),
            };
            {
                std::thread::sleep(PAUSE);
                let t0 = Instant::now();
                let out = if as_run {
                    crate::workflow::collect(plan, engine)
                        .map_err(|e| Error::Failed(e.to_string()))?
                } else {
                    plan.collect_with_engine(engine.polars())?.unwrap_single()
                };
                let t = t0.elapsed().as_secs_f64();
                groups[slot] = out.height();
                if i > 0 {
                    times[slot].push(t);
                }
            }
        }
        if let Some(py) = python.as_mut() {
            let round = py.round()?;
            if i > 0 {
                for (name, ms) in round {
                    match py_times.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => v.push(ms),
                        None => py_times.push((name, vec![ms])),
                    }
                }
            }
        }
    }
    let m: Vec<f64> = times.into_iter().map(median).collect();
    let _ = writeln!(
        out,
        "\nexecution: Formula -> Formula -> Filter -> group_by over {} rows (median of {} interleaved runs)",
        args.rows, args.runs
    );
    let _ = writeln!(
        out,
        "{:<10} {:>24} {:>24} {:>24}",
        "engine", "compiled from strings", "hand-written Rust", "compiled, as a run"
    );
    for (e, engine) in engines.iter().enumerate() {
        let cell = |k: usize| {
            format!(
                "{:.1} ms ({} groups)",
                m[3 * e + k] * 1e3,
                groups[3 * e + k]
            )
        };
        let _ = writeln!(
            out,
            "{:<10} {:>24} {:>24} {:>24}",
            engine.name(),
            cell(0),
            cell(1),
            cell(2)
        );
    }
    let _ = writeln!(
        out,
        "ratio compiled/hand-written (streaming): {:.3}x; streaming/in-memory (compiled): {:.3}x; \
         as a run/compiled (streaming): {:.3}x",
        m[0] / m[1],
        m[0] / m[3],
        m[2] / m[0]
    );
    if let Some(py) = python {
        let _ = writeln!(
            out,
            "\npy-polars {} (benches/expr_plan.py: the same plan on the same rows, its rounds between ours)",
            py.version
        );
        let mut best = f64::INFINITY;
        for (name, v) in py_times {
            let ms = median(v);
            best = best.min(ms);
            let _ = writeln!(out, "{:<10} {:>10.1} ms ({} groups)", name, ms, py.groups);
        }
        let _ = writeln!(
            out,
            "ratio hubworker streaming (compiled) / py-polars best: {:.3}x; as a run / py-polars best: {:.3}x",
            m[0] * 1e3 / best,
            m[2] * 1e3 / best
        );
    }
    Ok(out)
}

/// The pause before each timed run.
const PAUSE: Duration = Duration::from_millis(100);

/// py-polars running benches/expr_plan.py (`python3` on the PATH, with polars installed) over
/// the same rows, written to an Arrow IPC file in a private temporary directory; driven one
/// round at a time over its stdin.
struct Python {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    version: String,
    groups: usize,
    _dir: tempfile::TempDir,
}

impl Python {
    fn start(df: &DataFrame) -> Result<Python, Error> {
        use polars::prelude::{IpcWriter, SerWriter};
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Failed(format!("{what}: {e}"));
        let dir = tempfile::tempdir().map_err(|e| failed("temporary directory", &e))?;
        let path = dir.path().join("rows.arrow");
        let mut file = std::fs::File::create(&path)
            .map_err(|e| failed("writing the rows for py-polars", &e))?;
        IpcWriter::new(&mut file).finish(&mut df.clone())?;
        drop(file);
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(PYTHON_PLAN)
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| failed("cannot start python3", &e))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Failed("python3's pipes".into()));
        };
        let mut py = Python {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
            version: String::new(),
            groups: 0,
            _dir: dir,
        };
        let hello = py.line()?;
        py.version = hello["version"].as_str().unwrap_or("?").to_owned();
        py.groups = hello["groups"].as_u64().unwrap_or(0) as usize;
        Ok(py)
    }

    /// One JSON line from the script.
    fn line(&mut self) -> Result<serde_json::Value, Error> {
        use std::io::BufRead as _;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .map_err(|e| Error::Failed(format!("py-polars' report: {e}"))),
            _ => Err(Error::Failed(
                "py-polars did not run the plan (is polars installed for python3? \
                 `python3 -m pip install polars`)"
                    .into(),
            )),
        }
    }

    /// One run of the plan on each of py-polars' engines: (engine, ms).
    fn round(&mut self) -> Result<Vec<(String, f64)>, Error> {
        use std::io::Write as _;
        self.stdin
            .write_all(b"round\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Error::Failed(format!("python3: {e}")))?;
        let v = self.line()?;
        Ok(v.as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, ms)| Some((k.clone(), ms.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// benches/expr_plan.py.
const PYTHON_PLAN: &str = include_str!("../../benches/expr_plan.py");

/// Options of `hubworker bench load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadBenchArgs {
    /// File with the PostgreSQL URL (`-` for stdin); default: the local test database.
    #[arg(long)]
    pub url_file: Option<std::path::PathBuf>,
    /// Rows the query produces.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Timed repetitions of each side (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The 8-column query the load benchmark reads (generated server-side, so both sides pay the
/// same server cost).
pub fn load_query(rows: usize) -> String {
    format!(
        "SELECT g AS id, g % 97 AS small, g * 1.5::float8 AS amount, 'customer-' || g AS name, \
         (g % 3 = 0) AS flag, DATE '2020-01-01' + (g % 1000) AS day, \
         TIMESTAMP '2020-01-01' + g * INTERVAL '1 second' AS ts, (g % 10000)::numeric(12, 2) AS price \
         FROM generate_series(1, {rows}) AS g"
    )
}

/// Loads [`load_query`] into a DataFrame through the connector's COPY path and drains the same
/// `COPY ... (FORMAT binary)` to nothing, on one connection, interleaved; then the same rows
/// asked with a run parameter (`WHERE g >= :first`, bound to 1), which takes the row protocol
/// because COPY takes no bind parameters.
pub(crate) fn run_load_bench(
    args: &LoadBenchArgs,
    url: crate::secret::Secret,
) -> Result<String, Error> {
    use futures_util::TryStreamExt;
    use sqlx::Executor;
    let target = crate::connector::Target::from_url(url)?;
    let sql = load_query(args.rows);
    let checked = crate::sql::guard(&sql, target.dialect)
        .map_err(|e| Error::Failed(format!("benchmark query rejected: {}", e.message)))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = crate::connector::postgres::connect(&target).await?;
        conn.execute("BEGIN TRANSACTION READ ONLY")
            .await
            .map_err(crate::connector::query_error)?;
        let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", checked.sql());
        let bound = crate::sql::guard(&format!("{sql} WHERE g >= :first"), target.dialect)
            .map_err(|e| Error::Failed(format!("benchmark query rejected: {}", e.message)))?;
        let binds = [crate::sql::Bind::Int(1)];
        let mut rows = Vec::new();
        let options = crate::connector::QueryOptions {
            timeout: Duration::from_secs(600),
            ..Default::default()
        };
        let (mut floor, mut ours) = (Vec::new(), Vec::new());
        let (mut bytes, mut shape) = (0usize, (0, 0));
        for i in 0..=args.runs.max(1) {
            let t0 = Instant::now();
            let mut stream = conn
                .copy_out_raw(&copy)
                .await
                .map_err(crate::connector::query_error)?;
            let mut n = 0;
            while let Some(chunk) = stream
                .try_next()
                .await
                .map_err(crate::connector::query_error)?
            {
                n += black_box(chunk.len());
            }
            drop(stream);
            let tf = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let df =
                crate::connector::postgres::fetch_copy(&mut conn, checked.sql(), options).await?;
            let to = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            let by_rows =
                crate::connector::postgres::fetch(&mut conn, bound.driver_sql(), &binds, options)
                    .await?;
            let tr = t0.elapsed().as_secs_f64();
            if by_rows.shape() != df.shape() {
                return Err(Error::Failed("the parameterised query lost rows".into()));
            }
            bytes = n;
            shape = df.shape();
            if i > 0 {
                floor.push(tf);
                ours.push(to);
                rows.push(tr);
            }
        }
        let _ = conn.execute("ROLLBACK").await;
        let (mf, mo, mr) = (median(floor), median(ours), median(rows));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "load: {} rows x 8 columns from PostgreSQL (median of {} runs)",
            args.rows, args.runs
        );
        let _ = writeln!(
            out,
            "COPY binary drained (floor): {:>8.1} ms  ({:.1} MB)",
            mf * 1e3,
            bytes as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "into a DataFrame:            {:>8.1} ms  ({} x {})",
            mo * 1e3,
            shape.0,
            shape.1
        );
        let _ = writeln!(out, "ratio DataFrame/floor: {:.3}x", mo / mf);
        let _ = writeln!(
            out,
            "with a run parameter (row protocol, no COPY): {:>8.1} ms; ratio to COPY: {:.3}x",
            mr * 1e3,
            mr / mo
        );
        Ok(out)
    })
}
