//! `Expr.dt.*`: date and time parts, truncation, formatting, epochs and durations, with
//! py-polars' result types (year Int32, month Int8, ordinal_day Int16, weekday Monday=1...).

use polars::lazy::dsl::dt::DateLikeNameSpace;
use polars::prelude::{DataType, Expr, NonExistent, Scalar, TimeUnit, TimeZone, lit};

use super::super::args::Call;
use super::super::duration::{self, Refused};
use super::super::error::{ErrorCode, ExprError, Result, Span};
use super::super::registry::{Dflt, Kind, Spec, nullable, opt, req, spec};
use super::super::val::Built;
use super::common::{TIME_UNITS, literal_str, time_unit};

const EPOCH_UNITS: &[&str] = &["ns", "us", "ms", "s", "d"];

fn dt(c: &mut Call) -> DateLikeNameSpace {
    c.recv().dt()
}

fn part(c: &mut Call, f: fn(DateLikeNameSpace) -> Expr) -> Result<Built> {
    Ok(Built::Expr(f(dt(c))))
}

fn total(c: &mut Call, f: fn(DateLikeNameSpace, bool) -> Expr) -> Result<Built> {
    let fractional = c.bool(0);
    Ok(Built::Expr(f(dt(c), fractional)))
}

/// `every`/`by` arguments: a `str` is a duration string literal (`"1d"`, `"1mo2d"`). A
/// literal is checked here, with Polars' grammar and a bound on its length (`duration.rs`),
/// so no such string reaches Polars unchecked; a duration read from a column is checked by
/// Polars as it runs (a panic there is caught by the caller and reported as an error).
fn every(c: &mut Call, f: fn(DateLikeNameSpace, Expr) -> Expr) -> Result<Built> {
    let span = c.span(0);
    let e = c.expr(0)?;
    if let Some(text) = literal_str(&e) {
        check_duration(c, text, span)?;
    }
    Ok(Built::Expr(f(dt(c), e)))
}

fn check_duration(c: &Call, text: &str, span: Span) -> Result<()> {
    let name = format!("{}{}()", c.table.prefix(), c.spec.name);
    match duration::check(text) {
        Ok(_) => Ok(()),
        Err(Refused::Grammar(why)) => Err(ExprError::new(
            ErrorCode::BadArguments,
            format!("{name}: invalid duration string {text:?}: {why}"),
            span,
        )),
        Err(Refused::TooLong) => Err(ExprError::new(
            ErrorCode::LimitExceeded,
            format!(
                "{name}: duration {text:?} is too long; the limit is about 292 years \
                 (3,438 months or 102,481 days: a month counted as 31 days and an hour, a day \
                 as 25 hours)"
            ),
            span,
        )),
    }
}

/// `Expr.dt.*` entries.
pub(crate) static DT: &[Spec] = &[
    spec!(
        "millennium",
        [],
        |c| part(c, DateLikeNameSpace::millennium),
        "millennium, 2001-01-01 starts the 3rd (Int32)"
    ),
    spec!(
        "century",
        [],
        |c| part(c, DateLikeNameSpace::century),
        "century, 2001-01-01 starts the 21st (Int32)"
    ),
    spec!(
        "year",
        [],
        |c| part(c, DateLikeNameSpace::year),
        "calendar year (Int32)"
    ),
    spec!(
        "iso_year",
        [],
        |c| part(c, DateLikeNameSpace::iso_year),
        "ISO 8601 year (Int32)"
    ),
    spec!(
        "quarter",
        [],
        |c| part(c, DateLikeNameSpace::quarter),
        "1..4 (Int8)"
    ),
    spec!(
        "month",
        [],
        |c| part(c, DateLikeNameSpace::month),
        "1..12 (Int8)"
    ),
    spec!(
        "week",
        [],
        |c| part(c, DateLikeNameSpace::week),
        "ISO week 1..53 (Int8)"
    ),
    spec!(
        "weekday",
        [],
        |c| part(c, DateLikeNameSpace::weekday),
        "Monday=1 .. Sunday=7 (Int8)"
    ),
    spec!(
        "day",
        [],
        |c| part(c, DateLikeNameSpace::day),
        "day of month (Int8)"
    ),
    spec!(
        "ordinal_day",
        [],
        |c| part(c, DateLikeNameSpace::ordinal_day),
        "day of year 1..366 (Int16)"
    ),
    spec!(
        "hour",
        [],
        |c| part(c, DateLikeNameSpace::hour),
        "0..23 (Int8)"
    ),
    spec!(
        "minute",
        [],
        |c| part(c, DateLikeNameSpace::minute),
        "0..59 (Int8)"
    ),
    spec!("second", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let fractional = c.bool(0);
        let x = c.recv();
        let sec = x.clone().dt().second();
        Ok(Built::Expr(if fractional {
            sec + x.dt().nanosecond().true_div(lit(1_000_000_000.0))
        } else {
            sec
        }))
    }, "0..59 (Int8); `fractional=True` adds the sub-second part (Float64)"),
    spec!(
        "millisecond",
        [],
        |c| part(c, DateLikeNameSpace::millisecond),
        "sub-second part in ms (Int32)"
    ),
    spec!(
        "microsecond",
        [],
        |c| part(c, DateLikeNameSpace::microsecond),
        "sub-second part in µs (Int32)"
    ),
    spec!(
        "nanosecond",
        [],
        |c| part(c, DateLikeNameSpace::nanosecond),
        "sub-second part in ns (Int32)"
    ),
    spec!(
        "days_in_month",
        [],
        |c| part(c, DateLikeNameSpace::days_in_month),
        "28..31 (Int8)"
    ),
    spec!("replace_time_zone", [nullable("time_zone", Kind::Str, Dflt::Required), opt("ambiguous", Kind::ExprLit, Dflt::Str("raise")),
        opt("non_existent", Kind::Choice(&["raise", "null"]), Dflt::Str("raise"))], @pos 1, |c| {
        let tz = match c.opt_str(0) {
            Some(t) => TimeZone::opt_try_new(Some(t)).map_err(|e| super::common::polars_error(e, c.span(0)))?,
            None => None,
        };
        let amb = c.expr(1)?;
        let ne = if c.str(2) == "null" { NonExistent::Null } else { NonExistent::Raise };
        Ok(Built::Expr(dt(c).replace_time_zone(tz, amb, ne)))
    }, "set or remove (`None`) the time zone, keeping wall-clock time"),
    spec!(
        "convert_time_zone",
        [req("time_zone", Kind::Str)],
        |c| {
            let tz = TimeZone::opt_try_new(Some(c.str(0)))
                .map_err(|e| super::common::polars_error(e, c.span(0)))?
                .unwrap_or(TimeZone::UTC);
            Ok(Built::Expr(dt(c).convert_time_zone(tz)))
        },
        "convert to another time zone, keeping the instant"
    ),
    spec!(
        "is_leap_year",
        [],
        |c| part(c, DateLikeNameSpace::is_leap_year),
        "leap year test"
    ),
    spec!(
        "date",
        [],
        |c| part(c, DateLikeNameSpace::date),
        "the date part (local for zoned values)"
    ),
    spec!(
        "time",
        [],
        |c| part(c, DateLikeNameSpace::time),
        "the time of day"
    ),
    spec!(
        "truncate",
        [req("every", Kind::ExprLit)],
        |c| every(c, DateLikeNameSpace::truncate),
        "round down to a multiple of a duration string like \"1d\", \"15m\", \"1mo\""
    ),
    spec!(
        "round",
        [req("every", Kind::ExprLit)],
        |c| every(c, DateLikeNameSpace::round),
        "round to the nearest multiple of a duration string"
    ),
    spec!(
        "offset_by",
        [req("by", Kind::ExprLit)],
        |c| every(c, DateLikeNameSpace::offset_by),
        "shift by a calendar-aware duration string like \"1mo2d\" or \"-3h\""
    ),
    spec!(
        "month_start",
        [],
        |c| part(c, DateLikeNameSpace::month_start),
        "first day of the month (time kept)"
    ),
    spec!(
        "month_end",
        [],
        |c| part(c, DateLikeNameSpace::month_end),
        "last day of the month (time kept)"
    ),
    spec!(
        "strftime",
        [req("format", Kind::Str)],
        |c| {
            let f = c.str(0).to_owned();
            Ok(Built::Expr(dt(c).to_string(&f)))
        },
        "format with chrono directives (`%Y-%m-%d`)"
    ),
    spec!(
        "to_string",
        [opt("format", Kind::Str, Dflt::Str("iso"))],
        |c| {
            let f = c.str(0).to_owned();
            Ok(Built::Expr(dt(c).to_string(&f)))
        },
        "format; \"iso\" by default"
    ),
    spec!(
        "timestamp",
        [opt("time_unit", Kind::Choice(TIME_UNITS), Dflt::Str("us"))],
        |c| {
            let tu = time_unit(c.str(0));
            Ok(Built::Expr(dt(c).timestamp(tu)))
        },
        "time since the epoch in a unit (Int64)"
    ),
    spec!(
        "epoch",
        [opt("time_unit", Kind::Choice(EPOCH_UNITS), Dflt::Str("us"))],
        epoch,
        "time since the epoch in ns/us/ms/s (Int64) or days (Int32)"
    ),
    spec!(
        "cast_time_unit",
        [req("time_unit", Kind::Choice(TIME_UNITS))],
        |c| {
            let tu = time_unit(c.str(0));
            Ok(Built::Expr(dt(c).cast_time_unit(tu)))
        },
        "convert a Datetime/Duration to another unit"
    ),
    spec!("total_days", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_days), "whole days in a Duration (Int64)"),
    spec!("total_hours", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_hours), "whole hours in a Duration (Int64)"),
    spec!("total_minutes", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_minutes), "whole minutes in a Duration (Int64)"),
    spec!("total_seconds", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_seconds), "whole seconds in a Duration (Int64)"),
    spec!("total_milliseconds", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_milliseconds), "whole milliseconds (Int64)"),
    spec!("total_microseconds", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_microseconds), "whole microseconds (Int64)"),
    spec!("total_nanoseconds", [opt("fractional", Kind::Bool, Dflt::Bool(false))], @pos 0,
        |c| total(c, DateLikeNameSpace::total_nanoseconds), "whole nanoseconds (Int64)"),
];

/// `dt.epoch` dispatches in py-polars itself: "s" floors milliseconds, "d" casts via Date.
fn epoch(c: &mut Call) -> Result<Built> {
    let unit = c.str(0).to_owned();
    let x = c.recv();
    Ok(Built::Expr(match unit.as_str() {
        "s" => x
            .dt()
            .timestamp(TimeUnit::Milliseconds)
            .floor_div(lit(Scalar::from(1000_i64))),
        "d" => x.strict_cast(DataType::Date).strict_cast(DataType::Int32),
        u => x.dt().timestamp(time_unit(u)),
    }))
}
