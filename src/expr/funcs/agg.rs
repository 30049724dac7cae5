//! Aggregations (alone they reduce to one row; with `.over(...)` they broadcast per group),
//! windows, shifts and cumulative/rolling functions. Defaults follow py-polars: `quantile`
//! interpolates "nearest", `std`/`var` use ddof=1, `rank` is "average", rolling windows need
//! `window_size` values unless `min_samples` says otherwise.

use polars::prelude::{
    Expr, QuantileMethod, RankMethod, RankOptions, RollingFnParams, RollingOptionsFixedWindow,
    RollingVarParams, SortOptions, WindowMapping,
};

use polars::prelude::{DataType, SortMultipleOptions, lit};
use polars::series::ops::NullBehavior;

use super::super::args::Call;
use super::super::error::Result;
use super::super::registry::{Dflt, Kind, Spec, nullable, opt, req, spec};
use super::super::val::{Built, StrAs, Val};
use super::common::polars_error;

/// Quantile interpolation methods py-polars accepts.
pub(crate) const QUANTILE_METHODS: &[&str] = &[
    "nearest",
    "higher",
    "lower",
    "midpoint",
    "linear",
    "equiprobable",
];
const RANK_METHODS: &[&str] = &["average", "min", "max", "dense", "ordinal", "random"];
const MAPPING: &[&str] = &["group_to_rows", "join", "explode"];
const NULL_BEHAVIOR: &[&str] = &["ignore", "drop"];

/// A quantile method string (already checked against [`QUANTILE_METHODS`]).
pub(crate) fn quantile_method(s: &str) -> QuantileMethod {
    match s {
        "higher" => QuantileMethod::Higher,
        "lower" => QuantileMethod::Lower,
        "midpoint" => QuantileMethod::Midpoint,
        "linear" => QuantileMethod::Linear,
        "equiprobable" => QuantileMethod::Equiprobable,
        _ => QuantileMethod::Nearest,
    }
}

fn unary(c: &mut Call, f: fn(Expr) -> Expr) -> Result<Built> {
    Ok(Built::Expr(f(c.recv())))
}

fn cum(c: &mut Call, f: fn(Expr, bool) -> Expr) -> Result<Built> {
    let reverse = c.bool(0);
    Ok(Built::Expr(f(c.recv(), reverse)))
}

/// Aggregation and window methods.
pub(crate) static METHODS: &[Spec] = &[
    spec!("filter", [], @pos 0, @var Kind::Exprs, |c| {
        let preds = c.rest_exprs(StrAs::Column)?;
        let pred = match preds.len() {
            0 => return Err(c.bad(0, "filter() needs at least one predicate")),
            1 => preds.into_iter().next().unwrap_or_else(|| lit(true)),
            _ => polars::lazy::dsl::functions::all_horizontal(preds)
                .map_err(|e| polars_error(e, c.span))?,
        };
        Ok(Built::Expr(c.recv().filter(pred)))
    }, "keep the values where the predicates hold (inside an aggregation or window)"),
    spec!("implode", [opt("maintain_order", Kind::Bool, Dflt::Bool(true))], @pos 0, |c| {
        let keep = c.bool(0);
        Ok(Built::Expr(c.recv().implode(keep)))
    }, "all values as one list"),
    spec!("arg_sort", [opt("descending", Kind::Bool, Dflt::Bool(false)),
        opt("nulls_last", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let (d, n) = (c.bool(0), c.bool(1));
        Ok(Built::Expr(c.recv().arg_sort(d, n)))
    }, "indices that would sort the values"),
    spec!("sort_by", [req("by", Kind::Exprs), opt("descending", Kind::Bool, Dflt::Bool(false)),
        opt("nulls_last", Kind::Bool, Dflt::Bool(false)),
        opt("maintain_order", Kind::Bool, Dflt::Bool(false))], @pos 1, @var Kind::Exprs, |c| {
        let by = c.exprs_and_rest(0, StrAs::Column)?;
        let opts = SortMultipleOptions::default()
            .with_order_descending(c.bool(1))
            .with_nulls_last(c.bool(2))
            .with_maintain_order(c.bool(3));
        Ok(Built::Expr(c.recv().sort_by(by, opts)))
    }, "sort by other columns; `descending`/`nulls_last` apply to every key"),
    spec!("gather", [req("indices", Kind::Collection), opt("null_on_oob", Kind::Bool, Dflt::Bool(false))],
        @pos 1, |c| {
        let idx = if c.is_seq(0) {
            lit(c.series(0)?.cast(&DataType::Int64).map_err(|e| polars_error(e, c.span(0)))?)
        } else {
            c.expr(0)?
        };
        let oob = c.bool(1);
        Ok(Built::Expr(c.recv().gather(idx, oob)))
    }, "values at the given indices"),
    spec!("get", [req("index", Kind::IntOrExpr), opt("null_on_oob", Kind::Bool, Dflt::Bool(false))],
        @pos 1, |c| {
        let idx = c.expr(0)?;
        let oob = c.bool(1);
        Ok(Built::Expr(c.recv().get(idx, oob)))
    }, "the value at an index"),
    spec!(
        "limit",
        [opt("n", Kind::Int, Dflt::Int(10))],
        |c| {
            let n = c.int(0);
            Ok(Built::Expr(c.recv().slice(lit(0_i64), lit(n))))
        },
        "same as `head`"
    ),
    spec!("skew", [opt("bias", Kind::Bool, Dflt::Bool(true))], @pos 0, |c| {
        let bias = c.bool(0);
        Ok(Built::Expr(c.recv().skew(bias)))
    }, "sample skewness"),
    spec!("kurtosis", [opt("fisher", Kind::Bool, Dflt::Bool(true)), opt("bias", Kind::Bool, Dflt::Bool(true))],
        @pos 0, |c| {
        let (f, b) = (c.bool(0), c.bool(1));
        Ok(Built::Expr(c.recv().kurtosis(f, b)))
    }, "sample kurtosis"),
    spec!(
        "approx_n_unique",
        [],
        |c| unary(c, Expr::approx_n_unique),
        "estimated number of distinct values"
    ),
    spec!(
        "unique_counts",
        [],
        |c| unary(c, Expr::unique_counts),
        "occurrences of each distinct value, in order of appearance"
    ),
    spec!(
        "has_nulls",
        [],
        |c| unary(c, Expr::has_nulls),
        "whether any value is null"
    ),
    spec!(
        "nan_max",
        [],
        |c| unary(c, Expr::nan_max),
        "maximum where NaN wins"
    ),
    spec!(
        "nan_min",
        [],
        |c| unary(c, Expr::nan_min),
        "minimum where NaN wins"
    ),
    spec!("rolling_var", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false)), opt("ddof", Kind::Int, Dflt::Int(1))], @pos 1,
        |c| {
            let ddof = c.count::<u8>(3)?;
            rolling(c, Expr::rolling_var, Some(RollingFnParams::Var(RollingVarParams { ddof })))
        }, "variance over a sliding window of rows"),
    spec!(
        "sum",
        [],
        |c| unary(c, Expr::sum),
        "sum (NaN propagates; an all-null column sums to 0)"
    ),
    spec!("mean", [], |c| unary(c, Expr::mean), "mean (Float64)"),
    spec!("min", [], |c| unary(c, Expr::min), "minimum (NaN ignored)"),
    spec!("max", [], |c| unary(c, Expr::max), "maximum (NaN ignored)"),
    spec!("median", [], |c| unary(c, Expr::median), "median (Float64)"),
    spec!("product", [], |c| unary(c, Expr::product), "product"),
    spec!(
        "n_unique",
        [],
        |c| unary(c, Expr::n_unique),
        "number of distinct values incl. null (UInt32)"
    ),
    spec!(
        "null_count",
        [],
        |c| unary(c, Expr::null_count),
        "number of nulls (UInt32)"
    ),
    spec!(
        "count",
        [],
        |c| unary(c, Expr::count),
        "number of non-null values (UInt32)"
    ),
    spec!(
        "len",
        [],
        |c| unary(c, Expr::len),
        "number of values incl. null (UInt32)"
    ),
    spec!("first", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let skip = c.bool(0);
        let e = c.recv();
        Ok(Built::Expr(if skip { e.first_non_null() } else { e.first() }))
    }, "first value"),
    spec!("last", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let skip = c.bool(0);
        let e = c.recv();
        Ok(Built::Expr(if skip { e.last_non_null() } else { e.last() }))
    }, "last value"),
    spec!(
        "std",
        [opt("ddof", Kind::Int, Dflt::Int(1))],
        |c| {
            let ddof = c.count::<u8>(0)?;
            Ok(Built::Expr(c.recv().std(ddof)))
        },
        "standard deviation (ddof=1)"
    ),
    spec!(
        "var",
        [opt("ddof", Kind::Int, Dflt::Int(1))],
        |c| {
            let ddof = c.count::<u8>(0)?;
            Ok(Built::Expr(c.recv().var(ddof)))
        },
        "variance (ddof=1)"
    ),
    spec!(
        "quantile",
        [
            req("quantile", Kind::Expr),
            opt(
                "interpolation",
                Kind::Choice(QUANTILE_METHODS),
                Dflt::Str("nearest")
            )
        ],
        |c| {
            let method = quantile_method(c.str(1));
            let q = c.expr(0)?;
            Ok(Built::Expr(c.recv().quantile(q, method)))
        },
        "quantile; \"nearest\" by default like py-polars"
    ),
    spec!("any", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))], @pos 0, |c| {
        let ig = c.bool(0);
        Ok(Built::Expr(c.recv().any(ig)))
    }, "any true"),
    spec!("all", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))], @pos 0, |c| {
        let ig = c.bool(0);
        Ok(Built::Expr(c.recv().all(ig)))
    }, "all true"),
    spec!(
        "arg_max",
        [],
        |c| unary(c, Expr::arg_max),
        "index of the maximum"
    ),
    spec!(
        "arg_min",
        [],
        |c| unary(c, Expr::arg_min),
        "index of the minimum"
    ),
    spec!("unique", [opt("maintain_order", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let stable = c.bool(0);
        let e = c.recv();
        Ok(Built::Expr(if stable { e.unique_stable() } else { e.unique() }))
    }, "distinct values (changes length)"),
    spec!("mode", [opt("maintain_order", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let stable = c.bool(0);
        Ok(Built::Expr(c.recv().mode(stable)))
    }, "most frequent value(s)"),
    spec!("over", [nullable("partition_by", Kind::Exprs, Dflt::None),
        opt("order_by", Kind::Exprs, Dflt::None), opt("descending", Kind::Bool, Dflt::Bool(false)),
        opt("nulls_last", Kind::Bool, Dflt::Bool(false)),
        opt("mapping_strategy", Kind::Choice(MAPPING), Dflt::Str("group_to_rows"))],
        @pos 1, @var Kind::Exprs, over, "evaluate per group and map back to rows"),
    spec!("shift", [opt("n", Kind::IntOrExpr, Dflt::Int(1)), opt("fill_value", Kind::ExprLit, Dflt::None)],
        @pos 1, |c| {
            let n = c.expr(0)?;
            let fill = c.opt_expr(1)?;
            let e = c.recv();
            Ok(Built::Expr(match fill {
                Some(f) => e.shift_and_fill(n, f),
                None => e.shift(n),
            }))
        }, "shift by n rows (nulls, or `fill_value`, fill the gap)"),
    spec!(
        "diff",
        [
            opt("n", Kind::IntOrExpr, Dflt::Int(1)),
            opt(
                "null_behavior",
                Kind::Choice(NULL_BEHAVIOR),
                Dflt::Str("ignore")
            )
        ],
        |c| {
            let n = c.expr(0)?;
            let nb = if c.str(1) == "drop" {
                NullBehavior::Drop
            } else {
                NullBehavior::Ignore
            };
            Ok(Built::Expr(c.recv().diff(n, nb)))
        },
        "difference with the value n rows before"
    ),
    spec!(
        "pct_change",
        [opt("n", Kind::IntOrExpr, Dflt::Int(1))],
        |c| {
            let n = c.expr(0)?;
            Ok(Built::Expr(c.recv().pct_change(n)))
        },
        "relative change over n rows (Float64)"
    ),
    spec!("cum_sum", [opt("reverse", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| cum(c, Expr::cum_sum),
        "running sum"),
    spec!("cum_prod", [opt("reverse", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| cum(c, Expr::cum_prod),
        "running product"),
    spec!("cum_min", [opt("reverse", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| cum(c, Expr::cum_min),
        "running minimum"),
    spec!("cum_max", [opt("reverse", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| cum(c, Expr::cum_max),
        "running maximum"),
    spec!("cum_count", [opt("reverse", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| cum(c, Expr::cum_count),
        "running count of non-null values"),
    spec!("rank", [opt("method", Kind::Choice(RANK_METHODS), Dflt::Str("average")),
        opt("descending", Kind::Bool, Dflt::Bool(false)), opt("seed", Kind::Int, Dflt::None)], @pos 1, rank,
        "rank; \"average\" gives Float64, the others UInt32"),
    spec!("rolling_mean", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| rolling(c, Expr::rolling_mean, None),
        "mean over a sliding window of rows"),
    spec!("rolling_sum", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| rolling(c, Expr::rolling_sum, None),
        "sum over a sliding window of rows"),
    spec!("rolling_min", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| rolling(c, Expr::rolling_min, None),
        "minimum over a sliding window of rows"),
    spec!("rolling_max", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| rolling(c, Expr::rolling_max, None),
        "maximum over a sliding window of rows"),
    spec!("rolling_median", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| rolling(c, Expr::rolling_median, None),
        "median over a sliding window of rows"),
    spec!("rolling_std", [req("window_size", Kind::Int), opt("min_samples", Kind::Int, Dflt::None),
        opt("center", Kind::Bool, Dflt::Bool(false)), opt("ddof", Kind::Int, Dflt::Int(1))], @pos 1,
        |c| {
            let ddof = c.count::<u8>(3)?;
            rolling(c, Expr::rolling_std, Some(RollingFnParams::Var(RollingVarParams { ddof })))
        }, "standard deviation over a sliding window of rows"),
];

fn over(c: &mut Call) -> Result<Built> {
    let partition = c.exprs_and_rest(0, StrAs::Column)?;
    let order = if c.is_none(1) {
        None
    } else {
        let mut v = Vec::new();
        match std::mem::replace(
            &mut c.args[1].val,
            Val::Const(super::super::value::Const::None),
        ) {
            Val::Seq(items) => {
                for item in items {
                    v.push(c.expr_of(item, StrAs::Column)?);
                }
            }
            other => v.push(c.expr_of(
                super::super::val::Arg {
                    val: other,
                    span: c.span(1),
                },
                StrAs::Column,
            )?),
        }
        // py-polars 2 sorts window order keys stably.
        let opts = SortOptions {
            descending: c.bool(2),
            nulls_last: c.bool(3),
            multithreaded: true,
            maintain_order: true,
            limit: None,
        };
        Some((v, opts))
    };
    let mapping = match c.str(4) {
        "join" => WindowMapping::Join,
        "explode" => WindowMapping::Explode,
        _ => WindowMapping::GroupsToRows,
    };
    let partition = (!partition.is_empty()).then_some(partition);
    c.recv()
        .over_with_options(partition, order, mapping)
        .map(Built::Expr)
        .map_err(|e| polars_error(e, c.span))
}

fn rank(c: &mut Call) -> Result<Built> {
    let method = match c.str(0) {
        "min" => RankMethod::Min,
        "max" => RankMethod::Max,
        "dense" => RankMethod::Dense,
        "ordinal" => RankMethod::Ordinal,
        "random" => RankMethod::Random,
        _ => RankMethod::Average,
    };
    let seed = match c.opt_int(2) {
        Some(_) => Some(c.count::<u64>(2)?),
        None => None,
    };
    let opts = RankOptions {
        method,
        descending: c.bool(1),
    };
    Ok(Built::Expr(c.recv().rank(opts, seed)))
}

fn rolling(
    c: &mut Call,
    f: fn(Expr, RollingOptionsFixedWindow) -> Expr,
    fn_params: Option<RollingFnParams>,
) -> Result<Built> {
    let window_size = c.count::<usize>(0)?;
    if window_size > 1_000_000 {
        return Err(c.bad(0, "window_size is limited to 1000000 rows"));
    }
    let min_periods = match c.opt_int(1) {
        Some(_) => c.count::<usize>(1)?,
        None => window_size,
    };
    let opts = RollingOptionsFixedWindow {
        window_size,
        min_periods,
        weights: None,
        center: c.bool(2),
        fn_params,
    };
    Ok(Built::Expr(f(c.recv(), opts)))
}
