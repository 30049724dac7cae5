//! Expression methods that work row by row: naming, casting, math, null/NaN handling,
//! membership, replacement, and the named forms of the operators. Each builder mirrors what
//! py-polars' `Expr.<method>` hands to the Rust engine, including how `str` arguments are read.

use polars::prelude::{
    ClosedInterval, Expr, FillNullStrategy, InterpolationMethod, Operator, RoundMode, SortOptions,
    binary_expr, lit,
};

use polars::chunked_array::cast::CastOptions;

use super::super::args::Call;
use super::super::error::Result;
use super::super::registry::{Dflt, Kind, Spec, nullable, opt, req, spec};
use super::super::val::{Built, StrAs};
use super::common::list_scalar;
use super::replace::replace;

const CLOSED: &[&str] = &["both", "left", "right", "none"];
const ROUND_MODES: &[&str] = &["half_to_even", "half_away_from_zero"];
const FILL_STRATEGIES: &[&str] = &["forward", "backward", "min", "max", "mean", "zero", "one"];
const INTERPOLATION: &[&str] = &["linear", "nearest"];

fn unary(c: &mut Call, f: fn(Expr) -> Expr) -> Result<Built> {
    Ok(Built::Expr(f(c.recv())))
}

fn binary(c: &mut Call, f: fn(Expr, Expr) -> Expr) -> Result<Built> {
    let recv = c.recv();
    let other = c.expr(0)?;
    Ok(Built::Expr(f(recv, other)))
}

/// Methods on expressions (with `agg::METHODS`).
pub(crate) static METHODS: &[Spec] = &[
    spec!(
        "alias",
        [req("name", Kind::Str)],
        |c| {
            let name = c.str(0).to_owned();
            Ok(Built::Expr(c.recv().alias(name)))
        },
        "rename the output"
    ),
    spec!("cast", [req("dtype", Kind::DType), opt("strict", Kind::Bool, Dflt::Bool(true)),
        opt("wrap_numerical", Kind::Bool, Dflt::Bool(false))], @pos 1, cast,
        "strict by default, like py-polars: a value that does not fit is an error"),
    // Math: element-wise, same dtype rules as py-polars.
    spec!("abs", [], |c| unary(c, Expr::abs), "absolute value"),
    spec!(
        "sqrt",
        [],
        |c| unary(c, Expr::sqrt),
        "square root (Float64)"
    ),
    spec!("cbrt", [], |c| unary(c, Expr::cbrt), "cube root (Float64)"),
    spec!("exp", [], |c| unary(c, Expr::exp), "e to the power"),
    spec!("log1p", [], |c| unary(c, Expr::log1p), "ln(1 + x)"),
    spec!(
        "log",
        [opt("base", Kind::Expr, Dflt::Float(std::f64::consts::E))],
        |c| binary(c, Expr::log),
        "logarithm, natural by default; `str` base is a column name"
    ),
    spec!(
        "log10",
        [],
        |c| Ok(Built::Expr(c.recv().log(lit(10.0)))),
        "base-10 logarithm"
    ),
    spec!(
        "pow",
        [req("exponent", Kind::Expr)],
        |c| binary(c, |a, b| a.pow(b)),
        "power; integer ** integer stays integer"
    ),
    spec!("floor", [], |c| unary(c, Expr::floor), "round down"),
    spec!("ceil", [], |c| unary(c, Expr::ceil), "round up"),
    spec!(
        "round",
        [
            opt("decimals", Kind::Int, Dflt::Int(0)),
            opt("mode", Kind::Choice(ROUND_MODES), Dflt::Str("half_to_even"))
        ],
        round,
        "half to even by default, like py-polars (12.25 -> 12.2)"
    ),
    spec!(
        "clip",
        [
            opt("lower_bound", Kind::Expr, Dflt::None),
            opt("upper_bound", Kind::Expr, Dflt::None)
        ],
        clip,
        "limit values to a range; `str` bounds are column names"
    ),
    spec!("sign", [], |c| unary(c, Expr::sign), "-1, 0 or 1"),
    spec!(
        "dot",
        [req("other", Kind::Expr)],
        |c| binary(c, |a, b| a.dot(b)),
        "sum of element-wise products"
    ),
    spec!(
        "round_sig_figs",
        [req("digits", Kind::Int)],
        |c| {
            let d = i32::try_from(c.int(0)).map_err(|_| c.bad(0, "digits out of range"))?;
            Ok(Built::Expr(c.recv().round_sig_figs(d)))
        },
        "round to significant figures"
    ),
    spec!("sin", [], |c| unary(c, Expr::sin), "sine"),
    spec!("cos", [], |c| unary(c, Expr::cos), "cosine"),
    spec!("tan", [], |c| unary(c, Expr::tan), "tangent"),
    spec!("cot", [], |c| unary(c, Expr::cot), "cotangent"),
    spec!("arcsin", [], |c| unary(c, Expr::arcsin), "inverse sine"),
    spec!("arccos", [], |c| unary(c, Expr::arccos), "inverse cosine"),
    spec!("arctan", [], |c| unary(c, Expr::arctan), "inverse tangent"),
    spec!("sinh", [], |c| unary(c, Expr::sinh), "hyperbolic sine"),
    spec!("cosh", [], |c| unary(c, Expr::cosh), "hyperbolic cosine"),
    spec!("tanh", [], |c| unary(c, Expr::tanh), "hyperbolic tangent"),
    spec!(
        "arcsinh",
        [],
        |c| unary(c, Expr::arcsinh),
        "inverse hyperbolic sine"
    ),
    spec!(
        "arccosh",
        [],
        |c| unary(c, Expr::arccosh),
        "inverse hyperbolic cosine"
    ),
    spec!(
        "arctanh",
        [],
        |c| unary(c, Expr::arctanh),
        "inverse hyperbolic tangent"
    ),
    spec!(
        "degrees",
        [],
        |c| unary(c, Expr::degrees),
        "radians to degrees"
    ),
    spec!(
        "radians",
        [],
        |c| unary(c, Expr::radians),
        "degrees to radians"
    ),
    spec!("neg", [], |c| unary(c, |e| -e), "same as unary `-`"),
    // Nulls and NaN.
    spec!(
        "is_null",
        [],
        |c| unary(c, Expr::is_null),
        "true where null"
    ),
    spec!(
        "is_not_null",
        [],
        |c| unary(c, Expr::is_not_null),
        "true where not null"
    ),
    spec!(
        "is_nan",
        [],
        |c| unary(c, Expr::is_nan),
        "true where NaN (null stays null)"
    ),
    spec!(
        "is_not_nan",
        [],
        |c| unary(c, Expr::is_not_nan),
        "true where not NaN"
    ),
    spec!(
        "is_finite",
        [],
        |c| unary(c, Expr::is_finite),
        "true where finite"
    ),
    spec!(
        "is_infinite",
        [],
        |c| unary(c, Expr::is_infinite),
        "true where +-inf"
    ),
    spec!(
        "fill_null",
        [
            opt("value", Kind::ExprLit, Dflt::None),
            opt("strategy", Kind::Choice(FILL_STRATEGIES), Dflt::None),
            opt("limit", Kind::Int, Dflt::None)
        ],
        fill_null,
        "a value (`str` is a literal) or a strategy"
    ),
    spec!(
        "fill_nan",
        [req("value", Kind::ExprLit)],
        |c| {
            let recv = c.recv();
            let v = c.expr(0)?;
            Ok(Built::Expr(recv.fill_nan(v)))
        },
        "replace NaN; `str` is a literal"
    ),
    spec!(
        "forward_fill",
        [opt("limit", Kind::Int, Dflt::None)],
        |c| fill_strategy(c, "forward", 0),
        "fill nulls with the previous value"
    ),
    spec!(
        "backward_fill",
        [opt("limit", Kind::Int, Dflt::None)],
        |c| fill_strategy(c, "backward", 0),
        "fill nulls with the next value"
    ),
    spec!(
        "interpolate",
        [opt(
            "method",
            Kind::Choice(INTERPOLATION),
            Dflt::Str("linear")
        )],
        |c| {
            let m = if c.str(0) == "nearest" {
                InterpolationMethod::Nearest
            } else {
                InterpolationMethod::Linear
            };
            Ok(Built::Expr(c.recv().interpolate(m)))
        },
        "fill nulls by interpolation"
    ),
    spec!(
        "drop_nulls",
        [],
        |c| unary(c, Expr::drop_nulls),
        "remove nulls (changes length)"
    ),
    spec!(
        "drop_nans",
        [],
        |c| unary(c, Expr::drop_nans),
        "remove NaN (changes length)"
    ),
    // Membership and replacement.
    spec!("is_in", [req("other", Kind::Collection), opt("nulls_equal", Kind::Bool, Dflt::Bool(false))],
        @pos 1, is_in, "a list of constants or an expression; `str` is a column name"),
    spec!(
        "is_between",
        [
            req("lower_bound", Kind::Expr),
            req("upper_bound", Kind::Expr),
            opt("closed", Kind::Choice(CLOSED), Dflt::Str("both"))
        ],
        is_between,
        "inclusive by default; `str` bounds are column names (use `pl.lit` for text)"
    ),
    spec!(
        "replace",
        [
            req("old", Kind::Collection),
            opt("new", Kind::Collection, Dflt::None)
        ],
        |c| replace(c, false),
        "map values: `replace(old, new)` with values or lists, or `replace({old: new})`; unmatched values are kept"
    ),
    spec!("replace_strict", [req("old", Kind::Collection), opt("new", Kind::Collection, Dflt::None),
        opt("default", Kind::ExprLit, Dflt::None), nullable("return_dtype", Kind::DType, Dflt::None)],
        @pos 2, |c| replace(c, true), "map values; unmatched values need `default` or it is an error"),
    spec!(
        "is_duplicated",
        [],
        |c| unary(c, Expr::is_duplicated),
        "true for values that occur more than once"
    ),
    spec!(
        "is_unique",
        [],
        |c| unary(c, Expr::is_unique),
        "true for values that occur once"
    ),
    spec!(
        "is_first_distinct",
        [],
        |c| unary(c, Expr::is_first_distinct),
        "true at each value's first occurrence"
    ),
    spec!(
        "is_last_distinct",
        [],
        |c| unary(c, Expr::is_last_distinct),
        "true at each value's last occurrence"
    ),
    // Operators by name (py-polars' dunder aliases; same str rules as the operators).
    spec!("not_", [], |c| unary(c, Expr::not), "same as `~`"),
    spec!("and_", [], @pos 0, @var Kind::Expr, |c| fold_op(c, Expr::and), "same as `&`"),
    spec!("or_", [], @pos 0, @var Kind::Expr, |c| fold_op(c, Expr::or), "same as `|`"),
    spec!(
        "xor",
        [req("other", Kind::Expr)],
        |c| binary(c, Expr::xor),
        "same as `^`"
    ),
    spec!(
        "eq",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::eq),
        "same as `==`"
    ),
    spec!(
        "ne",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::neq),
        "same as `!=`"
    ),
    spec!(
        "lt",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::lt),
        "same as `<`"
    ),
    spec!(
        "le",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::lt_eq),
        "same as `<=`"
    ),
    spec!(
        "gt",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::gt),
        "same as `>`"
    ),
    spec!(
        "ge",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::gt_eq),
        "same as `>=`"
    ),
    spec!(
        "eq_missing",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::eq_missing),
        "`==` where null equals null"
    ),
    spec!(
        "ne_missing",
        [req("other", Kind::ExprLit)],
        |c| binary(c, Expr::neq_missing),
        "`!=` where null equals null"
    ),
    spec!(
        "add",
        [req("other", Kind::ExprLit)],
        |c| binary(c, |a, b| binary_expr(a, Operator::Plus, b)),
        "same as `+`"
    ),
    spec!(
        "sub",
        [req("other", Kind::Expr)],
        |c| binary(c, |a, b| binary_expr(a, Operator::Minus, b)),
        "same as `-`"
    ),
    spec!(
        "mul",
        [req("other", Kind::Expr)],
        |c| binary(c, |a, b| binary_expr(a, Operator::Multiply, b)),
        "same as `*`"
    ),
    spec!(
        "truediv",
        [req("other", Kind::Expr)],
        |c| binary(c, Expr::true_div),
        "same as `/`"
    ),
    spec!(
        "floordiv",
        [req("other", Kind::Expr)],
        |c| binary(c, Expr::floor_div),
        "same as `//`"
    ),
    spec!(
        "mod",
        [req("other", Kind::Expr)],
        |c| binary(c, |a, b| binary_expr(a, Operator::Modulus, b)),
        "same as `%`"
    ),
    // Order.
    spec!(
        "reverse",
        [],
        |c| unary(c, Expr::reverse),
        "reverse the order"
    ),
    spec!("sort", [opt("descending", Kind::Bool, Dflt::Bool(false)), opt("nulls_last", Kind::Bool, Dflt::Bool(false))],
        @pos 0, |c| {
            let opts = SortOptions::default()
                .with_order_descending(c.bool(0))
                .with_nulls_last(c.bool(1));
            Ok(Built::Expr(c.recv().sort(opts)))
        }, "sort the values"),
    spec!(
        "head",
        [opt("n", Kind::Int, Dflt::Int(10))],
        |c| {
            let n = c.int(0);
            Ok(Built::Expr(c.recv().slice(lit(0_i64), lit(n))))
        },
        "first n values"
    ),
    spec!(
        "tail",
        [opt("n", Kind::Int, Dflt::Int(10))],
        |c| {
            let n = c.int(0);
            Ok(Built::Expr(c.recv().slice(lit(n.saturating_neg()), lit(n))))
        },
        "last n values"
    ),
    spec!(
        "slice",
        [
            req("offset", Kind::Int),
            opt("length", Kind::Int, Dflt::None)
        ],
        |c| {
            let offset = c.int(0);
            let len = c
                .opt_int(1)
                .map(lit)
                .unwrap_or_else(|| lit(polars::prelude::NULL));
            Ok(Built::Expr(c.recv().slice(lit(offset), len)))
        },
        "a slice of the values"
    ),
];

fn cast(c: &mut Call) -> Result<Built> {
    let options = if c.bool(2) {
        CastOptions::Overflowing
    } else if c.bool(1) {
        CastOptions::Strict
    } else {
        CastOptions::NonStrict
    };
    let dtype = c.dtype(0);
    Ok(Built::Expr(c.recv().cast_with_options(dtype, options)))
}

fn round(c: &mut Call) -> Result<Built> {
    let decimals = c.count::<u32>(0)?;
    let mode = if c.str(1) == "half_away_from_zero" {
        RoundMode::HalfAwayFromZero
    } else {
        RoundMode::HalfToEven
    };
    Ok(Built::Expr(c.recv().round(decimals, mode)))
}

fn clip(c: &mut Call) -> Result<Built> {
    let recv = c.recv();
    let lo = c.opt_expr(0)?;
    let hi = c.opt_expr(1)?;
    Ok(Built::Expr(match (lo, hi) {
        (Some(lo), Some(hi)) => recv.clip(lo, hi),
        (Some(lo), None) => recv.clip_min(lo),
        (None, Some(hi)) => recv.clip_max(hi),
        (None, None) => recv,
    }))
}

fn fill_strategy(c: &mut Call, strategy: &str, limit_at: usize) -> Result<Built> {
    let limit = match c.opt_int(limit_at) {
        Some(_) => Some(c.count::<polars::prelude::IdxSize>(limit_at)?),
        None => None,
    };
    let s = match strategy {
        "forward" => FillNullStrategy::Forward(limit),
        "backward" => FillNullStrategy::Backward(limit),
        "min" => FillNullStrategy::Min,
        "max" => FillNullStrategy::Max,
        "mean" => FillNullStrategy::Mean,
        "zero" => FillNullStrategy::Zero,
        _ => FillNullStrategy::One,
    };
    Ok(Built::Expr(c.recv().fill_null_with_strategy(s)))
}

fn fill_null(c: &mut Call) -> Result<Built> {
    let has_value = c.given(0) && !c.is_none(0);
    let strategy = c.opt_str(1).map(str::to_owned);
    match (has_value, strategy) {
        (true, Some(_)) => Err(c.bad(1, "cannot specify both 'value' and 'strategy'")),
        (false, None) => Err(c.bad(0, "must specify either a fill 'value' or a 'strategy'")),
        (true, None) => {
            if c.opt_int(2).is_some() {
                return Err(c.bad(2, "'limit' goes with strategy 'forward' or 'backward'"));
            }
            let recv = c.recv();
            let v = c.expr(0)?;
            Ok(Built::Expr(recv.fill_null(v)))
        }
        (false, Some(s)) => {
            if c.opt_int(2).is_some() && s != "forward" && s != "backward" {
                return Err(c.bad(2, "'limit' goes with strategy 'forward' or 'backward'"));
            }
            fill_strategy(c, &s, 2)
        }
    }
}

/// `is_in`: a Python list is one List-typed scalar; `str` is a column name.
fn is_in(c: &mut Call) -> Result<Built> {
    let other = if c.is_seq(0) {
        list_scalar(c.series(0)?)
    } else {
        c.expr(0)?
    };
    let nulls_equal = c.bool(1);
    Ok(Built::Expr(c.recv().is_in(other, nulls_equal)))
}

fn is_between(c: &mut Call) -> Result<Built> {
    let closed = match c.str(2) {
        "left" => ClosedInterval::Left,
        "right" => ClosedInterval::Right,
        "none" => ClosedInterval::None,
        _ => ClosedInterval::Both,
    };
    let recv = c.recv();
    let lo = c.expr(0)?;
    let hi = c.expr(1)?;
    Ok(Built::Expr(recv.is_between(lo, hi, closed)))
}

fn fold_op(c: &mut Call, f: fn(Expr, Expr) -> Expr) -> Result<Built> {
    let recv = c.recv();
    let others = c.rest_exprs(StrAs::Column)?;
    Ok(Built::Expr(others.into_iter().fold(recv, f)))
}
