//! The workflow benchmark: a realistic 10M-row workflow (formula, formula, filter, join with a
//! dimension table, summarize) through the workflow engine (JSON → validate → one plan →
//! results) against the same plan written by hand with the Rust Polars API, both over the same
//! loaded frames, alternating in one process. Shared by `benches/workflow.rs` and
//! `hubworker bench workflow`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use polars::prelude::*;

use crate::error::Error;
use crate::workflow::{self, RunControl};

/// `hubworker bench workflow` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkflowBenchArgs {
    /// Rows of the fact table.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: usize,
    /// Timed runs of each side (alternating; the median is reported).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
}

/// Products in the dimension table.
const PRODUCTS: usize = 1_000;

/// The benchmark workflow: the fact table arrives as `sql` node `sales`, the dimension
/// table as `sql` node `products`.
pub(crate) const WORKFLOW: &str = r#"{
  "version": 1,
  "nodes": [
    {"id": "sales", "tool": "sql", "connection": "dw", "dialect": "postgres",
     "query": "SELECT order_id, product_id, qty, price, discount FROM sales"},
    {"id": "products", "tool": "sql", "connection": "dw", "dialect": "postgres",
     "query": "SELECT product_id, category, cost FROM products"},
    {"id": "gross", "tool": "formula", "input": "sales", "formulas": [
      {"column": "gross", "expression": "pl.col(\"qty\") * pl.col(\"price\")"}]},
    {"id": "net", "tool": "formula", "input": "gross", "formulas": [
      {"column": "net", "expression": "pl.col(\"gross\") * (1 - pl.col(\"discount\").fill_null(0))"}]},
    {"id": "real", "tool": "filter", "input": "net",
     "expression": "(pl.col(\"net\") > 20) & (pl.col(\"qty\") < 9)"},
    {"id": "priced", "tool": "join", "left": "real", "right": "products", "how": "inner",
     "on": [{"left": "product_id", "right": "product_id"}]},
    {"id": "by_category", "tool": "summarize", "input": "priced", "group_by": ["category"],
     "aggregations": [
       {"op": "sum", "column": "net", "as": "revenue"},
       {"op": "count", "as": "orders"},
       {"op": "mean", "column": "cost", "as": "avg_cost"}
     ]},
    {"id": "result", "tool": "output", "input": "by_category", "name": "by_category"}
  ]
}"#;

/// Deterministic fact and dimension tables.
pub fn generate(rows: usize) -> (DataFrame, DataFrame) {
    let mut mix = crate::sample::Mix(0x5EED);
    let mut next = move || mix.next_u64();
    let mut product = Vec::with_capacity(rows);
    let mut qty = Vec::with_capacity(rows);
    let mut price = Vec::with_capacity(rows);
    let mut discount = Vec::with_capacity(rows);
    for _ in 0..rows {
        let r = next();
        product.push((r % PRODUCTS as u64) as i64);
        qty.push(((r >> 16) % 10) as i64 + 1);
        price.push(((r >> 24) % 10_000) as f64 / 100.0);
        discount.push(((r >> 40) % 4 == 0).then_some(0.1));
    }
    let order_id: Vec<i64> = (0..rows as i64).collect();
    let sales = DataFrame::new_infer_height(vec![
        Series::new("order_id".into(), order_id).into_column(),
        Series::new("product_id".into(), product).into_column(),
        Series::new("qty".into(), qty).into_column(),
        Series::new("price".into(), price).into_column(),
        Series::new("discount".into(), discount).into_column(),
    ])
    .unwrap_or_default();
    let ids: Vec<i64> = (0..PRODUCTS as i64).collect();
    let categories: Vec<String> = (0..PRODUCTS).map(|i| format!("cat{:02}", i % 40)).collect();
    let cost: Vec<f64> = (0..PRODUCTS).map(|i| (i % 97) as f64 + 0.5).collect();
    let products = DataFrame::new_infer_height(vec![
        Series::new("product_id".into(), ids).into_column(),
        Series::new("category".into(), categories).into_column(),
        Series::new("cost".into(), cost).into_column(),
    ])
    .unwrap_or_default();
    (sales, products)
}

/// The same plan as `WORKFLOW`, written by hand, with the same semantics (join keeping
/// left order, groups in first-appearance order), run with `collect()` (Polars' in-memory
/// engine).
pub fn handwritten(sales: &DataFrame, products: &DataFrame) -> PolarsResult<DataFrame> {
    handwritten_on(sales, products, Engine::InMemory)
}

/// [`handwritten`] on a chosen Polars engine.
pub fn handwritten_on(
    sales: &DataFrame,
    products: &DataFrame,
    engine: Engine,
) -> PolarsResult<DataFrame> {
    let mut args = JoinArgs::new(JoinType::Inner).with_suffix(Some("_right".into()));
    args.maintain_order = MaintainOrderJoin::LeftRight;
    sales
        .clone()
        .lazy()
        .with_column((col("qty") * col("price")).alias("gross"))
        .with_column((col("gross") * (lit(1) - col("discount").fill_null(lit(0)))).alias("net"))
        .filter(col("net").gt(lit(20)).and(col("qty").lt(lit(9))))
        .join(
            products.clone().lazy(),
            [col("product_id")],
            [col("product_id")],
            args,
        )
        .group_by_stable([col("category")])
        .agg([
            col("net").sum().alias("revenue"),
            len().alias("orders"),
            col("cost").mean().alias("avg_cost"),
        ])
        .collect_with_engine(engine)
        .and_then(|r| match r {
            polars_core::query_result::QueryResult::Single(df) => Ok(df),
            polars_core::query_result::QueryResult::Multiple(_) => Err(PolarsError::ComputeError(
                "one plan gave several results".into(),
            )),
        })
}

/// One run through the engine: validate the JSON, then execute over the loaded frames.
pub fn engine(sales: &DataFrame, products: &DataFrame) -> Result<DataFrame, Error> {
    let wf = workflow::validate(WORKFLOW).map_err(|p| Error::Failed(p.to_string()))?;
    let inputs = HashMap::from([
        ("sales".to_owned(), sales.clone()),
        ("products".to_owned(), products.clone()),
    ]);
    let mut outs = workflow::execute(&wf, inputs, &RunControl::default(), &mut |_| {})
        .map_err(|e| Error::Failed(e.to_string()))?;
    outs.pop()
        .map(|o| o.frame)
        .ok_or_else(|| Error::Failed("the benchmark workflow produced no output".into()))
}

/// Equal, except that float sums may differ in the last bits (parallel summation order).
fn same_result(a: &DataFrame, b: &DataFrame) -> bool {
    if a.schema() != b.schema() || a.height() != b.height() {
        return false;
    }
    a.columns().iter().zip(b.columns()).all(|(x, y)| {
        match (
            x.as_materialized_series().f64(),
            y.as_materialized_series().f64(),
        ) {
            (Ok(x), Ok(y)) => x.iter().zip(y.iter()).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                (x, y) => x == y,
            }),
            _ => x
                .as_materialized_series()
                .equals_missing(y.as_materialized_series()),
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the comparison and renders the report.
pub(crate) fn run(args: &WorkflowBenchArgs) -> Result<String, Error> {
    let (sales, products) = generate(args.rows);
    let want = handwritten(&sales, &products)?;
    let got = engine(&sales, &products)?;
    let streamed = handwritten_on(&sales, &products, Engine::Streaming)?;
    for (what, other) in [
        ("the engine", &got),
        ("the hand-written plan, streaming,", &streamed),
    ] {
        if !same_result(other, &want) {
            return Err(Error::Failed(format!(
                "{what} and the hand-written plan disagree:\n{other}\n{want}"
            )));
        }
    }
    let mut engine_ms = Vec::with_capacity(args.runs);
    let mut hand_ms = Vec::with_capacity(args.runs);
    let mut hand_streaming_ms = Vec::with_capacity(args.runs);
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        std::hint::black_box(handwritten(&sales, &products)?);
        hand_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(handwritten_on(&sales, &products, Engine::Streaming)?);
        hand_streaming_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(engine(&sales, &products)?);
        engine_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (e, h, hs) = (
        median(engine_ms),
        median(hand_ms),
        median(hand_streaming_ms),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "workflow benchmark: {} fact rows x {PRODUCTS} products; formula, formula, filter, join, summarize ({} groups)",
        args.rows,
        want.height()
    );
    let _ = writeln!(
        out,
        "  hand-written Rust Polars, collect() (in-memory): {h:9.1} ms (median of {})",
        args.runs.max(1)
    );
    let _ = writeln!(
        out,
        "  hand-written Rust Polars, streaming engine:      {hs:9.1} ms"
    );
    let _ = writeln!(
        out,
        "  workflow engine (streaming):                     {e:9.1} ms (validate + plan + run)"
    );
    let _ = writeln!(
        out,
        "  ratio engine / hand-written, same engine: {:.3}x (target <= 1.05x)",
        e / hs
    );
    let _ = writeln!(
        out,
        "  ratio engine / hand-written collect():    {:.3}x (the streaming engine on this plan)",
        e / h
    );
    Ok(out)
}
