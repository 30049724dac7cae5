//! A run's checked values where they are used: typed Polars literals for `pl.param(...)` in
//! expressions, and bind values for `:name` in SQL. Neither ever becomes text to parse.

use polars::prelude::*;

use super::{Bound, ParamType, Params, Scalar, Value};
use crate::sql::Bind;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

impl Scalar {
    /// The Polars type a value of this type is.
    fn dtype(self) -> DataType {
        match self {
            Scalar::Int => DataType::Int64,
            Scalar::Float => DataType::Float64,
            Scalar::Str => DataType::String,
            Scalar::Bool => DataType::Boolean,
            Scalar::Date => DataType::Date,
            Scalar::Datetime => DataType::Datetime(TimeUnit::Microseconds, None),
        }
    }
}

impl ParamType {
    /// A typed stand-in with no value (a typed null; an empty list), for checking a workflow
    /// before a run brings values: the schema it predicts is the schema a run gets.
    pub(crate) fn placeholder(self) -> Expr {
        let dtype = self.scalar.dtype();
        if self.list {
            return list_literal(Series::new_empty(PlSmallStr::EMPTY, &dtype));
        }
        lit(polars::prelude::Scalar::null(dtype))
    }
}

fn list_literal(items: Series) -> Expr {
    let dtype = DataType::List(Box::new(items.dtype().clone()));
    lit(polars::prelude::Scalar::new(dtype, AnyValue::List(items)))
}

fn days(d: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

fn micros(t: chrono::NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// One scalar as a typed literal of `scalar`'s Polars type.
fn scalar_literal(b: &Bind, scalar: Scalar) -> Expr {
    use polars::prelude::Scalar as S;
    let dtype = scalar.dtype();
    match b {
        Bind::Int(v) => lit(S::new(dtype, AnyValue::Int64(*v))),
        Bind::Float(v) => lit(S::new(dtype, AnyValue::Float64(*v))),
        Bind::Str(v) => lit(S::new(dtype, AnyValue::StringOwned(v.as_str().into()))),
        Bind::Bool(v) => lit(S::new(dtype, AnyValue::Boolean(*v))),
        Bind::Date(v) => lit(S::new(dtype, AnyValue::Date(days(*v)))),
        Bind::Datetime(v) => lit(S::new(
            dtype,
            AnyValue::Datetime(micros(*v), TimeUnit::Microseconds, None),
        )),
    }
}

impl Value {
    /// A typed literal of `scalar`'s Polars type (a list: a list scalar, as `pl.lit([...])`).
    fn literal(&self, scalar: Scalar) -> Expr {
        match self {
            Value::One(b) => scalar_literal(b, scalar),
            Value::List(items) => list_literal(series(items, scalar)),
        }
    }

    /// The value as a SQL bind (`None` for a list: SQL binds scalars only, which validation
    /// already enforces).
    pub(crate) fn bind(&self) -> Option<Bind> {
        match self {
            Value::One(b) => Some(b.clone()),
            Value::List(_) => None,
        }
    }
}

/// A list's items as a Series of `scalar`'s type.
fn series(items: &[Bind], scalar: Scalar) -> Series {
    let name = PlSmallStr::EMPTY;
    let out = match scalar {
        Scalar::Int => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Int(i) => Some(*i),
                _ => None,
            }),
        ),
        Scalar::Float => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Float(f) => Some(*f),
                _ => None,
            }),
        ),
        Scalar::Str => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Str(s) => Some(s.clone()),
                _ => None,
            }),
        ),
        Scalar::Bool => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Bool(b) => Some(*b),
                _ => None,
            }),
        ),
        Scalar::Date => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Date(d) => Some(days(*d)),
                _ => None,
            }),
        ),
        Scalar::Datetime => Series::new(
            name,
            collect(items, |v| match v {
                Bind::Datetime(t) => Some(micros(*t)),
                _ => None,
            }),
        ),
    };
    out.cast(&scalar.dtype())
        .unwrap_or_else(|_| Series::new_empty(PlSmallStr::EMPTY, &scalar.dtype()))
}

fn collect<T>(items: &[Bind], f: impl Fn(&Bind) -> Option<T>) -> Vec<Option<T>> {
    items.iter().map(f).collect()
}

/// `expr` with each `pl.param(name)` replaced: by the run's value as a typed literal when
/// `values` are given, else by the declared type's [`placeholder`](ParamType::placeholder).
/// A name without a declaration (or a value) is the error.
pub(crate) fn literals(
    params: &Params,
    values: Option<&Bound>,
    expr: Expr,
) -> Result<Expr, String> {
    crate::expr::bind_params(expr, &|name| {
        let param = params.get(name)?;
        match values {
            Some(values) => Some(values.get(name)?.literal(param.ty.scalar)),
            None => Some(param.ty.placeholder()),
        }
    })
}

/// The binds of a query's parameters (`names`, in bind order), or the first name without a
/// scalar value.
pub(crate) fn binds(values: &Bound, names: &[String]) -> Result<Vec<Bind>, String> {
    names
        .iter()
        .map(|n| values.get(n).and_then(Value::bind).ok_or_else(|| n.clone()))
        .collect()
}
