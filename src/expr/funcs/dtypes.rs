//! `pl.<DataType>`: the data types an expression may name (for `cast`, `strptime`, `lit`,
//! `col`). A bare `pl.Datetime` is the default instance; `pl.Datetime("ms")` builds one.

use polars::prelude::{DataType, TimeZone};

use super::super::args::Call;
use super::super::error::Result;
use super::super::registry::{Dflt, Kind, Spec, opt, spec};
use super::super::val::{Built, Val};
use super::common::{TIME_UNITS, polars_error, time_unit};

macro_rules! simple {
    ($name:literal, $dt:expr, $doc:literal) => {
        spec!($name, [], |_c| Ok(Val::DType($dt).into()), $doc)
    };
}

/// `pl.<DataType>` entries.
pub(crate) static DTYPES: &[Spec] = &[
    simple!("Int8", DataType::Int8, "8-bit signed integer"),
    simple!("Int16", DataType::Int16, "16-bit signed integer"),
    simple!("Int32", DataType::Int32, "32-bit signed integer"),
    simple!("Int64", DataType::Int64, "64-bit signed integer"),
    simple!("Int128", DataType::Int128, "128-bit signed integer"),
    simple!("UInt8", DataType::UInt8, "8-bit unsigned integer"),
    simple!("UInt16", DataType::UInt16, "16-bit unsigned integer"),
    simple!("UInt32", DataType::UInt32, "32-bit unsigned integer"),
    simple!("UInt64", DataType::UInt64, "64-bit unsigned integer"),
    simple!("Float32", DataType::Float32, "32-bit float"),
    simple!("Float64", DataType::Float64, "64-bit float"),
    simple!("String", DataType::String, "UTF-8 string"),
    simple!("Utf8", DataType::String, "alias of `String`"),
    simple!("Boolean", DataType::Boolean, "boolean"),
    simple!("Date", DataType::Date, "calendar date"),
    simple!("Time", DataType::Time, "time of day"),
    simple!("Null", DataType::Null, "all-null type"),
    spec!(
        "Datetime",
        [
            opt("time_unit", Kind::Choice(TIME_UNITS), Dflt::Str("us")),
            opt("time_zone", Kind::Str, Dflt::None)
        ],
        datetime_dtype,
        "`pl.Datetime` is microseconds without a time zone"
    ),
    spec!(
        "Duration",
        [opt("time_unit", Kind::Choice(TIME_UNITS), Dflt::Str("us"))],
        |c| Ok(Val::DType(DataType::Duration(time_unit(c.str(0)))).into()),
        "`pl.Duration` is microseconds"
    ),
    spec!(
        "Decimal",
        [
            opt("precision", Kind::Int, Dflt::None),
            opt("scale", Kind::Int, Dflt::Int(0))
        ],
        decimal_dtype,
        "128-bit decimal; precision defaults to 38"
    ),
    spec!(
        "List",
        [opt("inner", Kind::DType, Dflt::None)],
        list_dtype,
        "`pl.List(inner)`; bare `pl.List` has a Null inner type"
    ),
];

fn datetime_dtype(c: &mut Call) -> Result<Built> {
    let tz = match c.opt_str(1) {
        Some(tz) => TimeZone::opt_try_new(Some(tz)).map_err(|e| polars_error(e, c.span(1)))?,
        None => None,
    };
    Ok(Val::DType(DataType::Datetime(time_unit(c.str(0)), tz)).into())
}

fn decimal_dtype(c: &mut Call) -> Result<Built> {
    let precision = match c.opt_int(0) {
        Some(_) => c.count::<usize>(0)?,
        None => 38,
    };
    let scale = c.count::<usize>(1)?;
    if !(1..=38).contains(&precision) || scale > precision {
        return Err(c.bad(
            0,
            "precision must be 1..=38 and scale at most the precision",
        ));
    }
    Ok(Val::DType(DataType::Decimal(precision, scale)).into())
}

fn list_dtype(c: &mut Call) -> Result<Built> {
    let inner = if c.is_none(0) {
        DataType::Null
    } else {
        c.dtype(0)
    };
    Ok(Val::DType(DataType::List(Box::new(inner))).into())
}
