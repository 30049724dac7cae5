//! Small conversions shared by the builders: option strings to Polars enums, Polars errors
//! to rejections, list scalars. Nothing here decides what is allowed.

use polars::prelude::{AnyValue, DataType, Expr, PolarsError, Scalar, Series, TimeUnit, lit};

use super::super::error::{ErrorCode, ExprError, Span};

/// The time units py-polars accepts for `time_unit=`.
pub(crate) const TIME_UNITS: &[&str] = &["ns", "us", "ms"];

/// A time unit string (already checked against [`TIME_UNITS`]).
pub(crate) fn time_unit(s: &str) -> TimeUnit {
    match s {
        "ns" => TimeUnit::Nanoseconds,
        "ms" => TimeUnit::Milliseconds,
        _ => TimeUnit::Microseconds,
    }
}

/// A Polars error raised while building (not running) an expression, as a rejection.
/// Polars' message names the problem in terms of the expression, never of data or paths.
pub(crate) fn polars_error(e: PolarsError, span: Span) -> ExprError {
    ExprError::new(ErrorCode::BadArguments, e.to_string(), span)
}

/// The text of a string literal expression (`"x"` or `pl.lit("x")`), if `e` is one.
pub(crate) fn literal_str(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(lv) => lv.extract_str(),
        _ => None,
    }
}

/// A Python list as py-polars' `lit(list)` makes it: one List-typed scalar.
pub(crate) fn list_scalar(s: Series) -> Expr {
    let dtype = DataType::List(Box::new(s.dtype().clone()));
    lit(Scalar::new(dtype, AnyValue::List(s)))
}
