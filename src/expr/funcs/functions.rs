//! `pl.*` functions: column selection, literals, when/then, horizontal and string combinators,
//! temporal constructors, and the `pl.<agg>("col")` shorthands. No function here reads,
//! writes, constructs frames, or touches global state: such names are simply absent.

use polars::lazy::dsl::functions::{
    all_horizontal, any_horizontal, max_horizontal, mean_horizontal, min_horizontal, sum_horizontal,
};
use polars::prelude::{
    DataType, DatetimeArgs, DurationArgs, Expr, TimeUnit, TimeZone, coalesce, col, concat_str,
    dtype_cols, format_str,
};

use super::super::args::Call;
use super::super::error::{ErrorCode, ExprError, Result};
use super::super::exprs::ExprId;
use super::super::registry::{Dflt, Kind, Spec, nullable, opt, req, spec};
use super::super::val::{Built, StrAs, Val, WhenChain, const_lit};
use super::super::value::Const;
use super::common::{TIME_UNITS, list_scalar, polars_error, time_unit};

/// `pl.*` functions.
pub(crate) static FUNCTIONS: &[Spec] = &[
    spec!("col", [req("name", Kind::Names)], @var Kind::Names, col_fn,
        "one name, several names or a list; `\"*\"` is every column, `\"^re$\"` a regex; data types select by type"),
    spec!("lit", [req("value", Kind::Any), opt("dtype", Kind::DType, Dflt::None)], @pos 2, lit_fn,
        "ints and floats are dynamic literals (they take the other operand's type); lists become list scalars"),
    spec!("when", [], @pos 0, @var Kind::Exprs, when_fn,
        "several predicates are combined with `all_horizontal`; `str` is a column name"),
    spec!("len", [], len_fn, "number of rows (UInt32)"),
    spec!(
        "param",
        [req("name", Kind::Str)],
        param_fn,
        "hubworker only: a run parameter's value, a typed literal of its declared type (README: Run parameters)"
    ),
    spec!(
        "from_epoch",
        [
            req("column", Kind::Expr),
            opt(
                "time_unit",
                Kind::Choice(&["ns", "us", "ms", "s", "d"]),
                Dflt::Str("s")
            )
        ],
        from_epoch,
        "epoch numbers to `Datetime` (`\"s\"` and `\"ms\"` give microseconds) or, with `\"d\"`, to `Date`; `str` is a column name"
    ),
    spec!("concat_str", [req("exprs", Kind::Exprs), opt("separator", Kind::Str, Dflt::Str("")),
        opt("ignore_nulls", Kind::Bool, Dflt::Bool(false))], @pos 1, @var Kind::Exprs, concat_str_fn,
        "`str` is a column name; use `pl.lit(\"text\")` for text"),
    spec!("coalesce", [req("exprs", Kind::Exprs)], @pos 1, @var Kind::Exprs, coalesce_fn,
        "first non-null value per row; `str` is a column name"),
    spec!("max_horizontal", [], @pos 0, @var Kind::Exprs, max_h, "row-wise maximum"),
    spec!("min_horizontal", [], @pos 0, @var Kind::Exprs, min_h, "row-wise minimum"),
    spec!("sum_horizontal", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))], @pos 0,
        @var Kind::Exprs, sum_h, "row-wise sum; with `ignore_nulls` an all-null row sums to 0"),
    spec!("mean_horizontal", [opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))], @pos 0,
        @var Kind::Exprs, mean_h, "row-wise mean"),
    spec!("any_horizontal", [], @pos 0, @var Kind::Exprs, any_h, "row-wise OR (Kleene)"),
    spec!("all_horizontal", [], @pos 0, @var Kind::Exprs, all_h, "row-wise AND (Kleene)"),
    spec!("format", [req("f_string", Kind::Str)], @pos 1, @var Kind::Expr, format_fn,
        "`{}` placeholders filled by the arguments; `str` arguments are column names"),
    spec!("sum", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::sum), "`pl.col(names).sum()`"),
    spec!("cum_sum", [], @pos 0, @var Kind::Str, |c| agg_of(c, |e| e.cum_sum(false)),
        "`pl.col(names).cum_sum()`"),
    spec!("mean", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::mean), "`pl.col(names).mean()`"),
    spec!("min", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::min), "`pl.col(names).min()`"),
    spec!("max", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::max), "`pl.col(names).max()`"),
    spec!("median", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::median),
        "`pl.col(names).median()`"),
    spec!("n_unique", [], @pos 0, @var Kind::Str, |c| agg_of(c, Expr::n_unique),
        "`pl.col(names).n_unique()`"),
    spec!("first", [], @pos 0, @var Kind::Str, first_fn,
        "`pl.col(names).first()`; without names, the first column"),
    spec!("last", [], @pos 0, @var Kind::Str, last_fn,
        "`pl.col(names).last()`; without names, the last column"),
    spec!(
        "std",
        [
            req("column", Kind::Str),
            opt("ddof", Kind::Int, Dflt::Int(1))
        ],
        std_fn,
        "`pl.col(column).std(ddof)`"
    ),
    spec!(
        "var",
        [
            req("column", Kind::Str),
            opt("ddof", Kind::Int, Dflt::Int(1))
        ],
        var_fn,
        "`pl.col(column).var(ddof)`"
    ),
    spec!(
        "quantile",
        [
            req("column", Kind::Str),
            req("quantile", Kind::Expr),
            opt(
                "interpolation",
                Kind::Choice(super::agg::QUANTILE_METHODS),
                Dflt::Str("nearest")
            )
        ],
        quantile_fn,
        "`pl.col(column).quantile(q, interpolation)`"
    ),
    spec!(
        "date",
        [
            req("year", Kind::Expr),
            req("month", Kind::Expr),
            req("day", Kind::Expr)
        ],
        date_fn,
        "a Date from parts; `str` arguments are column names"
    ),
    spec!("datetime", [req("year", Kind::Expr), req("month", Kind::Expr), req("day", Kind::Expr),
        opt("hour", Kind::Expr, Dflt::None), opt("minute", Kind::Expr, Dflt::None),
        opt("second", Kind::Expr, Dflt::None), opt("microsecond", Kind::Expr, Dflt::None),
        opt("time_unit", Kind::Choice(TIME_UNITS), Dflt::Str("us")),
        opt("time_zone", Kind::Str, Dflt::None),
        opt("ambiguous", Kind::ExprLit, Dflt::Str("raise"))], @pos 7, datetime_fn,
        "a Datetime from parts; `str` arguments are column names"),
    spec!("duration", [opt("weeks", Kind::Expr, Dflt::None), opt("days", Kind::Expr, Dflt::None),
        opt("hours", Kind::Expr, Dflt::None), opt("minutes", Kind::Expr, Dflt::None),
        opt("seconds", Kind::Expr, Dflt::None), opt("milliseconds", Kind::Expr, Dflt::None),
        opt("microseconds", Kind::Expr, Dflt::None), opt("nanoseconds", Kind::Expr, Dflt::None),
        nullable("time_unit", Kind::Choice(TIME_UNITS), Dflt::None)], @pos 0, duration_fn,
        "a Duration from parts (keyword-only, like py-polars)"),
];

/// `<when>.then(statement)`.
pub(crate) static WHEN_THEN: Spec = spec!(
    "then",
    [req("statement", Kind::Expr)],
    then_fn,
    "the value where the condition holds; `str` is a column name"
);
/// `<then>.when(*predicates)`.
pub(crate) static WHEN_WHEN: Spec = spec!("when", [], @pos 0, @var Kind::Exprs, chained_when_fn,
    "another condition, tried when the earlier ones do not hold");
/// `<then>.otherwise(statement)`.
pub(crate) static WHEN_OTHERWISE: Spec = spec!(
    "otherwise",
    [req("statement", Kind::Expr)],
    otherwise_fn,
    "the value where no condition holds; `str` is a column name"
);

fn col_fn(c: &mut Call) -> Result<Built> {
    // The common case, one name: no intermediate collections.
    if c.rest.is_empty()
        && let Some(Val::Const(Const::Str(s))) = c.args.first().map(|a| &a.val)
    {
        return Ok(Built::Expr(col(s.as_ref())));
    }
    let mut names: Vec<String> = Vec::new();
    let mut dtypes: Vec<DataType> = Vec::new();
    let mut push = |v: &Val| match v {
        Val::Const(Const::Str(s)) => names.push(s.to_string()),
        Val::DType(d) => dtypes.push(d.clone()),
        _ => {}
    };
    for arg in c.args.iter().chain(c.rest.iter()) {
        match &arg.val {
            Val::Seq(items) => items.iter().for_each(|a| push(&a.val)),
            v => push(v),
        }
    }
    if !names.is_empty() && !dtypes.is_empty() {
        return Err(c.bad(0, "cannot mix column names and data types"));
    }
    Ok(Built::Expr(match (names.len(), dtypes.is_empty()) {
        (1, true) => col(names[0].as_str()),
        (_, true) => polars::prelude::cols(names).as_expr(),
        _ => dtype_cols(dtypes).as_selector().as_expr(),
    }))
}

/// py-polars' `from_epoch` on an expression: scale seconds and milliseconds to microseconds
/// with an Int64 literal, then cast strictly.
fn from_epoch(c: &mut Call) -> Result<Built> {
    let column = c.expr(0)?;
    let datetime = |unit| DataType::Datetime(unit, None);
    let micros = |column: Expr, factor: i64| {
        let factor = polars::prelude::lit(factor).strict_cast(DataType::Int64);
        (column * factor).strict_cast(datetime(TimeUnit::Microseconds))
    };
    Ok(Built::Expr(match c.str(1) {
        "d" => column.strict_cast(DataType::Date),
        "s" => micros(column, 1_000_000),
        "ms" => micros(column, 1_000),
        unit => column.strict_cast(datetime(time_unit(unit))),
    }))
}

fn lit_fn(c: &mut Call) -> Result<Built> {
    let dtype = (!c.is_none(1)).then(|| c.dtype(1));
    let base = match &c.args[0].val {
        Val::Const(k) => const_lit(k),
        Val::Seq(_) => list_scalar(c.series(0)?),
        _ => c.expr(0)?,
    };
    Ok(Built::Expr(match dtype {
        // py-polars casts a one-element Series strictly and makes it a scalar.
        Some(dt) => base.strict_cast(dt),
        None => base,
    }))
}

/// The condition of a `when`: one predicate as it is, several combined with `&`.
fn predicates(c: &mut Call) -> Result<ExprId> {
    // The usual single condition, without collecting it first.
    if c.rest.len() == 1
        && !matches!(c.rest[0].val, Val::Seq(_))
        && let Some(arg) = c.rest.pop()
    {
        return c.expr_id_of(arg, StrAs::Column);
    }
    let mut preds = c.rest_exprs(StrAs::Column)?;
    let cond = match preds.len() {
        0 => {
            return Err(ExprError::new(
                ErrorCode::BadArguments,
                "when() needs at least one predicate",
                c.span,
            ));
        }
        1 => preds.remove(0),
        _ => all_horizontal(preds).map_err(|e| polars_error(e, c.span))?,
    };
    Ok(c.put_expr(cond))
}

fn when_fn(c: &mut Call) -> Result<Built> {
    let cond = predicates(c)?;
    Ok(Val::When(WhenChain {
        branches: smallvec::SmallVec::new(),
        pending: Some(cond),
    })
    .into())
}

fn then_fn(c: &mut Call) -> Result<Built> {
    let value = c.expr_id(0)?;
    let mut ch = c.chain.take().unwrap_or_default();
    if let Some(cond) = ch.pending.take() {
        ch.branches.push((cond, value));
    }
    Ok(Val::When(ch).into())
}

fn chained_when_fn(c: &mut Call) -> Result<Built> {
    let cond = predicates(c)?;
    let mut ch = c.chain.take().unwrap_or_default();
    ch.pending = Some(cond);
    Ok(Val::When(ch).into())
}

fn otherwise_fn(c: &mut Call) -> Result<Built> {
    let value = c.expr(0)?;
    let ch = c.chain.take().unwrap_or_default();
    Ok(Built::Expr(c.finish_when(ch, value)))
}

fn param_fn(c: &mut Call) -> Result<Built> {
    let name = c.str(0);
    if !super::super::param::is_param_name(name) {
        return Err(c.bad(
            0,
            "a parameter name is a letter or `_`, then letters, digits and `_` (at most 64)",
        ));
    }
    Ok(Built::Expr(super::super::param::marker(name)))
}

fn len_fn(_c: &mut Call) -> Result<Built> {
    Ok(Built::Expr(polars::prelude::len()))
}

fn concat_str_fn(c: &mut Call) -> Result<Built> {
    let exprs = c.exprs_and_rest(0, StrAs::Column)?;
    Ok(Built::Expr(concat_str(exprs, c.str(1), c.bool(2))))
}

fn coalesce_fn(c: &mut Call) -> Result<Built> {
    let exprs = c.exprs_and_rest(0, StrAs::Column)?;
    Ok(Built::Expr(coalesce(&exprs)))
}

fn horizontal(
    c: &mut Call,
    f: impl FnOnce(Vec<Expr>) -> polars::prelude::PolarsResult<Expr>,
) -> Result<Built> {
    let exprs = c.rest_exprs(StrAs::Column)?;
    if exprs.is_empty() {
        return Err(ExprError::new(
            ErrorCode::BadArguments,
            format!("pl.{}() needs at least one expression", c.spec.name),
            c.span,
        ));
    }
    f(exprs)
        .map(Built::Expr)
        .map_err(|e| polars_error(e, c.span))
}

fn max_h(c: &mut Call) -> Result<Built> {
    horizontal(c, max_horizontal)
}
fn min_h(c: &mut Call) -> Result<Built> {
    horizontal(c, min_horizontal)
}
fn any_h(c: &mut Call) -> Result<Built> {
    horizontal(c, any_horizontal)
}
fn all_h(c: &mut Call) -> Result<Built> {
    horizontal(c, all_horizontal)
}
fn sum_h(c: &mut Call) -> Result<Built> {
    let ignore = c.bool(0);
    horizontal(c, |e| sum_horizontal(e, ignore))
}
fn mean_h(c: &mut Call) -> Result<Built> {
    let ignore = c.bool(0);
    horizontal(c, |e| mean_horizontal(e, ignore))
}

fn format_fn(c: &mut Call) -> Result<Built> {
    let fmt = c.str(0).to_owned();
    let args = c.rest_exprs(StrAs::Column)?;
    format_str(&fmt, &args)
        .map(Built::Expr)
        .map_err(|e| polars_error(e, c.span))
}

fn names_col(c: &mut Call) -> Option<Expr> {
    let names: Vec<String> = c
        .rest
        .iter()
        .filter_map(|a| match &a.val {
            Val::Const(Const::Str(s)) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    match names.len() {
        0 => None,
        1 => Some(col(names[0].as_str())),
        _ => Some(polars::prelude::cols(names).as_expr()),
    }
}

fn agg_of(c: &mut Call, f: fn(Expr) -> Expr) -> Result<Built> {
    match names_col(c) {
        Some(e) => Ok(Built::Expr(f(e))),
        None => Err(ExprError::new(
            ErrorCode::BadArguments,
            format!("pl.{}() needs at least one column name", c.spec.name),
            c.span,
        )),
    }
}

fn first_fn(c: &mut Call) -> Result<Built> {
    Ok(Built::Expr(match names_col(c) {
        Some(e) => e.first(),
        None => polars::prelude::first().as_expr(),
    }))
}

fn last_fn(c: &mut Call) -> Result<Built> {
    Ok(Built::Expr(match names_col(c) {
        Some(e) => e.last(),
        None => polars::prelude::last().as_expr(),
    }))
}

fn ddof(c: &Call, i: usize) -> Result<u8> {
    c.count::<u8>(i)
}

fn std_fn(c: &mut Call) -> Result<Built> {
    Ok(Built::Expr(col(c.str(0)).std(ddof(c, 1)?)))
}

fn var_fn(c: &mut Call) -> Result<Built> {
    Ok(Built::Expr(col(c.str(0)).var(ddof(c, 1)?)))
}

fn quantile_fn(c: &mut Call) -> Result<Built> {
    let method = super::agg::quantile_method(c.str(2));
    let q = c.expr(1)?;
    Ok(Built::Expr(col(c.str(0)).quantile(q, method)))
}

fn datetime_args(c: &mut Call) -> Result<DatetimeArgs> {
    let mut args = DatetimeArgs::new(c.expr(0)?, c.expr(1)?, c.expr(2)?);
    if c.args.len() < 7 {
        return Ok(args);
    }
    if let Some(h) = c.opt_expr(3)? {
        args.hour = h;
    }
    if let Some(m) = c.opt_expr(4)? {
        args.minute = m;
    }
    if let Some(s) = c.opt_expr(5)? {
        args.second = s;
    }
    if let Some(us) = c.opt_expr(6)? {
        args.microsecond = us;
    }
    Ok(args)
}

fn date_fn(c: &mut Call) -> Result<Built> {
    let args = datetime_args(c)?;
    Ok(Built::Expr(
        polars::prelude::datetime(args)
            .strict_cast(DataType::Date)
            .alias("date"),
    ))
}

fn datetime_fn(c: &mut Call) -> Result<Built> {
    let mut args = datetime_args(c)?;
    args.time_unit = time_unit(c.str(7));
    if let Some(tz) = c.opt_str(8) {
        let tz = TimeZone::opt_try_new(Some(tz)).map_err(|e| polars_error(e, c.span(8)))?;
        args.time_zone = tz;
    }
    args.ambiguous = c.expr(9)?;
    Ok(Built::Expr(strip_alias(
        polars::prelude::datetime(args),
        "datetime",
    )))
}

/// py-polars 2.x no longer names a computed `pl.datetime(...)` "datetime"; folded literals keep it.
fn strip_alias(e: Expr, name: &str) -> Expr {
    match e {
        Expr::Alias(inner, n) if n.as_str() == name && !matches!(*inner, Expr::Literal(_)) => {
            std::sync::Arc::unwrap_or_clone(inner)
        }
        other => other,
    }
}

fn duration_fn(c: &mut Call) -> Result<Built> {
    let unit = match c.opt_str(8) {
        Some(u) => time_unit(u),
        None if !c.is_none(7) => TimeUnit::Nanoseconds,
        None => TimeUnit::Microseconds,
    };
    let mut args = DurationArgs {
        time_unit: unit,
        ..Default::default()
    };
    let slots: [&mut Expr; 8] = [
        &mut args.weeks,
        &mut args.days,
        &mut args.hours,
        &mut args.minutes,
        &mut args.seconds,
        &mut args.milliseconds,
        &mut args.microseconds,
        &mut args.nanoseconds,
    ];
    for (i, slot) in slots.into_iter().enumerate() {
        if let Some(e) = c.opt_expr(i)? {
            *slot = e;
        }
    }
    Ok(Built::Expr(polars::prelude::duration(args)))
}
