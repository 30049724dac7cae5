//! The JSONL batch commands: `check expr|sql|egress --jsonl` and `eval --jsonl`. One request line in, one
//! answer line out, in the same order, flushed as it is written. A bad line gets an answer too
//! (code `bad_request`); nothing a request says can stop the batch or crash the process.

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use polars::prelude::{DataFrame, Expr, IntoLazy, OptFlags};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::expr::{ExprCache, ExprError};
use crate::frames;

/// Longest accepted request line; longer lines are answered with `bad_request`.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How an expression is applied to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `df.select((EXPR).alias("result"))`
    #[default]
    Select,
    /// `df.filter(EXPR)`
    Filter,
}

#[derive(Debug, Deserialize)]
struct CheckRequest {
    #[serde(default)]
    id: Value,
    expr: String,
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    #[serde(default)]
    id: Value,
    sql: String,
}

#[derive(Debug, Deserialize)]
struct EgressRequest {
    #[serde(default)]
    id: Value,
    url: String,
    /// The simulated DNS answers for the URL's host, in order.
    #[serde(default)]
    resolve: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct EvalRequest {
    #[serde(default)]
    id: Value,
    expr: String,
    #[serde(default)]
    mode: Mode,
}

/// One answer line.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    id: &'a Value,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<[u32; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect: Option<String>,
}

impl<'a> Answer<'a> {
    fn ok(id: &'a Value) -> Self {
        Answer {
            id,
            ok: true,
            rows: None,
            code: None,
            message: None,
            span: None,
            connect: None,
        }
    }

    fn fail(id: &'a Value, code: &'a str, message: String) -> Self {
        Answer {
            id,
            ok: false,
            rows: None,
            code: Some(code),
            message: Some(message),
            span: None,
            connect: None,
        }
    }

    fn rejected(id: &'a Value, e: &'a ExprError) -> Self {
        Answer {
            span: Some([e.span.0, e.span.1]),
            ..Answer::fail(id, e.code(), e.message.clone())
        }
    }
}

fn write_answer(out: &mut impl Write, a: &Answer) -> std::io::Result<()> {
    // Serializing plain structs of strings and numbers cannot fail.
    let line = serde_json::to_string(a).unwrap_or_else(|_| String::from("{\"ok\":false}"));
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Reads request lines, skipping blank ones; each item is the line or why it is unusable.
fn lines(input: impl BufRead) -> impl Iterator<Item = std::io::Result<Result<String, String>>> {
    let mut input = input;
    std::iter::from_fn(move || {
        loop {
            let mut buf = Vec::new();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if buf.len() > MAX_LINE_BYTES {
                return Some(Ok(Err(format!(
                    "request line longer than {MAX_LINE_BYTES} bytes"
                ))));
            }
            return Some(Ok(
                String::from_utf8(buf).map_err(|_| "request line is not UTF-8".into())
            ));
        }
    })
}

fn parse<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, String> {
    serde_json::from_str(line)
        .map_err(|e| format!("request is not valid JSON for this command: {e}"))
}

/// The cache lookup with one more layer of defence: should the parser ever panic on some input
/// (none is known; property tests and the fuzz target look for them), that line is rejected
/// and the batch goes on.
fn checked(cache: &ExprCache, src: &str) -> crate::expr::Checked {
    catch_unwind(AssertUnwindSafe(|| cache.get(src))).unwrap_or_else(|_| {
        let len = u32::try_from(src.len()).unwrap_or(u32::MAX);
        Err(ExprError::new(
            crate::expr::ErrorCode::Syntax,
            "the parser failed on this input (internal error); it is rejected",
            (0, len),
        ))
    })
}

/// `hubworker check expr --jsonl`: answers whether each expression passes the checker.
pub(crate) fn check_jsonl(
    input: impl BufRead,
    mut out: impl Write,
    cache: &ExprCache,
) -> std::io::Result<usize> {
    let mut n = 0;
    for line in lines(input) {
        let null = Value::Null;
        match line?.and_then(|l| parse::<CheckRequest>(&l)) {
            Err(msg) => write_answer(&mut out, &Answer::fail(&null, "bad_request", msg))?,
            Ok(req) => match checked(cache, &req.expr) {
                Ok(_) => write_answer(&mut out, &Answer::ok(&req.id))?,
                Err(e) => write_answer(&mut out, &Answer::rejected(&req.id, &e))?,
            },
        }
        n += 1;
    }
    Ok(n)
}

/// `hubworker check sql --dialect D --jsonl`: answers whether each query passes the SQL guard.
pub(crate) fn check_sql_jsonl(
    input: impl BufRead,
    mut out: impl Write,
    dialect: crate::sql::Dialect,
) -> std::io::Result<usize> {
    let mut n = 0;
    for line in lines(input) {
        let null = Value::Null;
        match line?.and_then(|l| parse::<SqlRequest>(&l)) {
            Err(msg) => write_answer(&mut out, &Answer::fail(&null, "bad_request", msg))?,
            Ok(req) => match crate::sql::guard(&req.sql, dialect) {
                Ok(_) => write_answer(&mut out, &Answer::ok(&req.id))?,
                Err(e) => {
                    let a = Answer::fail(&req.id, e.code.as_str(), e.message.clone());
                    write_answer(&mut out, &a)?
                }
            },
        }
        n += 1;
    }
    Ok(n)
}

/// One egress check with simulated DNS answers (`answers`: `None` when the request gave none;
/// a name then does not resolve). No network is used.
pub(crate) fn vet_egress(
    url: &str,
    answers: Option<&[String]>,
    rules: &crate::egress::Rules,
) -> Result<crate::egress::Vetted, crate::egress::Refusal> {
    let mut resolve = |_: &str| -> Result<Vec<std::net::IpAddr>, String> {
        let Some(answers) = answers else {
            return Err("no DNS answer was given (`resolve`)".into());
        };
        answers
            .iter()
            .map(|a| a.parse().map_err(|_| format!("{a:?} is not an IP address")))
            .collect()
    };
    crate::egress::vet(url, rules, &mut resolve)
}

/// `hubworker check egress --jsonl`: answers whether each URL may be reached, and where the
/// connection would go.
pub(crate) fn check_egress_jsonl(
    input: impl BufRead,
    mut out: impl Write,
    rules: &crate::egress::Rules,
) -> std::io::Result<usize> {
    let mut n = 0;
    for line in lines(input) {
        let null = Value::Null;
        match line?.and_then(|l| parse::<EgressRequest>(&l)) {
            Err(msg) => write_answer(&mut out, &Answer::fail(&null, "bad_request", msg))?,
            Ok(req) => match vet_egress(&req.url, req.resolve.as_deref(), rules) {
                Ok(v) => {
                    let a = Answer {
                        connect: Some(v.connect.to_string()),
                        ..Answer::ok(&req.id)
                    };
                    write_answer(&mut out, &a)?
                }
                Err(r) => write_answer(&mut out, &Answer::fail(&req.id, r.code, r.message))?,
            },
        }
        n += 1;
    }
    Ok(n)
}

/// Applies a compiled expression to a frame, as py-polars' `select((e).alias("result"))` or
/// `filter(e)` would.
pub fn apply(df: &DataFrame, expr: Expr, mode: Mode) -> polars::prelude::PolarsResult<DataFrame> {
    // py-polars runs DataFrame.select/filter with its "eager" flags: no plan optimizations
    // but type coercion/checks and expression simplification. Same engine path, same results.
    let cleared = OptFlags::PROJECTION_PUSHDOWN
        | OptFlags::PREDICATE_PUSHDOWN
        | OptFlags::CLUSTER_WITH_COLUMNS
        | OptFlags::SIMPLIFY_EXPR
        | OptFlags::SLICE_PUSHDOWN
        | OptFlags::COMM_SUBPLAN_ELIM
        | OptFlags::COMM_SUBEXPR_ELIM
        | OptFlags::CHECK_ORDER_OBSERVE
        | OptFlags::FAST_PROJECTION
        | OptFlags::SORT_COLLAPSE
        | OptFlags::PARTITION_HIVE
        | OptFlags::STREAMING
        | OptFlags::GPU;
    let flags = (OptFlags::default() - cleared) | OptFlags::EAGER | OptFlags::SIMPLIFY_EXPR;
    let lf = df.clone().lazy().with_optimizations(flags);
    match mode {
        Mode::Select => lf.select([expr.alias("result")]).collect(),
        Mode::Filter => lf.filter(expr).collect(),
    }
}

/// Runs `apply` and turns a panic inside the engine into an error, so one bad case costs one
/// answer, not the batch.
pub(crate) fn apply_guarded(df: &DataFrame, expr: Expr, mode: Mode) -> Result<DataFrame, String> {
    match catch_unwind(AssertUnwindSafe(|| apply(df, expr, mode))) {
        Ok(Ok(df)) => Ok(df),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the engine failed on this expression (internal error)".into()),
    }
}

/// The frame as a printed table (see [`frames::render_guarded`]).
pub(crate) fn render_guarded(df: &DataFrame) -> Result<String, String> {
    frames::render_guarded(df)
}

/// Whether `id` can name an output file: a plain file stem, nothing that walks directories.
fn safe_stem(id: &Value) -> Option<String> {
    let s = match id {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ok = !s.is_empty()
        && s.len() <= 200
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(s)
}

/// `hubworker eval --jsonl`: evaluates each expression on `df`, writing `DIR/<id>.parquet`.
pub(crate) fn eval_jsonl(
    df: &DataFrame,
    out_dir: &Path,
    input: impl BufRead,
    mut out: impl Write,
    cache: &ExprCache,
) -> std::io::Result<usize> {
    let mut n = 0;
    for line in lines(input) {
        let null = Value::Null;
        n += 1;
        let req = match line?.and_then(|l| parse::<EvalRequest>(&l)) {
            Ok(r) => r,
            Err(msg) => {
                write_answer(&mut out, &Answer::fail(&null, "bad_request", msg))?;
                continue;
            }
        };
        let Some(stem) = safe_stem(&req.id) else {
            let msg = "id must be 1-200 characters of A-Z a-z 0-9 - _ . (it names the output file)";
            write_answer(&mut out, &Answer::fail(&req.id, "bad_request", msg.into()))?;
            continue;
        };
        let checked = match checked(cache, &req.expr) {
            Ok(c) => c,
            Err(e) => {
                write_answer(&mut out, &Answer::rejected(&req.id, &e))?;
                continue;
            }
        };
        let mut result = match apply_guarded(df, crate::expr::compile(&checked), req.mode) {
            Ok(r) => r,
            Err(msg) => {
                write_answer(&mut out, &Answer::fail(&req.id, "eval_error", msg))?;
                continue;
            }
        };
        let path = out_dir.join(format!("{stem}.parquet"));
        match frames::write_parquet(&mut result, &path) {
            Ok(()) => {
                let a = Answer {
                    rows: Some(result.height()),
                    ..Answer::ok(&req.id)
                };
                write_answer(&mut out, &a)?;
            }
            Err(e) => {
                write_answer(
                    &mut out,
                    &Answer::fail(&req.id, "write_error", e.to_string()),
                )?;
            }
        }
    }
    Ok(n)
}
