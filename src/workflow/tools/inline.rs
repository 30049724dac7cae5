//! The `inline` tool (the Text Input tool): typed rows in the document, JSON values → a typed
//! DataFrame, checked cell by cell. Every bad cell is reported with its row and column; nothing
//! is coerced silently (a float is not truncated into an integer column, an out-of-range
//! integer is not wrapped). Never reads anything but the document.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Role, ToolKind};
use crate::workflow::model::ColumnType;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::Report;

/// Rows typed in the workflow itself (the Text Input tool).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Inline {
    /// Column names and types, in order.
    pub(crate) columns: Vec<InlineColumn>,
    /// Rows, each an array with one JSON value (or null) per column.
    pub(crate) rows: Vec<Vec<serde_json::Value>>,
}

/// One column of an `inline` node.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InlineColumn {
    /// Column name.
    pub(crate) name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub(crate) dtype: ColumnType,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"columns": [{"name": "k", "type": "Int64"}], "rows": [[1], [2]]}"#;

impl ToolKind for Inline {
    fn inputs(&self) -> Vec<(String, &str)> {
        Vec::new()
    }

    fn role(&self) -> Role<'_> {
        Role::Rows
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        build(self, report).map_or(Compiled::Plain, Compiled::Frame)
    }

    fn predict(
        &self,
        compiled: &Compiled,
        _inputs: &[SchemaRef],
        _report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        compiled.frame().map(|df| df.schema().clone())
    }

    fn plan(&self, compiled: &Compiled, _inputs: Vec<Input>) -> PolarsResult<Built> {
        let df = compiled.frame().ok_or_else(|| plan::not_built("inline"))?;
        Ok(Built::main(df.clone().lazy()))
    }
}

/// Most problems reported for one `inline` node (a wrong type in a 10k-row paste would
/// otherwise bury everything else).
const MAX_CELL_PROBLEMS: usize = 20;

/// Builds the frame, or reports every problem (up to a cap).
fn build(node: &Inline, report: &mut Report<'_>) -> Option<DataFrame> {
    let mut names = std::collections::HashSet::new();
    for (j, c) in node.columns.iter().enumerate() {
        if c.name.is_empty() {
            report.push(format!("columns[{j}].name"),
                "invalid_value",
                "a column name is not empty",
            );
        } else if !names.insert(c.name.as_str()) {
            report.push(format!("columns[{j}].name"),
                "duplicate_column",
                format!("column {:?} is named twice", c.name),
            );
        }
    }
    let width = node.columns.len();
    for (i, row) in node.rows.iter().enumerate() {
        if row.len() != width {
            report.push(format!("rows[{i}]"),
                "invalid_value",
                format!("row has {} values; there are {width} columns", row.len()),
            );
        }
    }
    if !report.is_clean() {
        return None;
    }
    let mut columns = Vec::with_capacity(width);
    let mut bad = 0usize;
    for (j, c) in node.columns.iter().enumerate() {
        let cells = node.rows.iter().map(|r| &r[j]);
        let mut bad_cell = |i: usize, why: String| {
            bad += 1;
            if bad <= MAX_CELL_PROBLEMS {
                report.push(format!("rows[{i}][{j}]"),
                    "invalid_value",
                    format!("column {:?} ({:?}): {why}", c.name, c.dtype),
                );
            }
        };
        let name = PlSmallStr::from_str(&c.name);
        let series = column(name, c.dtype, cells, &mut bad_cell);
        columns.push(series.into_column());
    }
    if bad > MAX_CELL_PROBLEMS {
        report.push("rows",
            "invalid_value",
            format!("{} more bad values not listed", bad - MAX_CELL_PROBLEMS),
        );
    }
    if !report.is_clean() {
        return None;
    }
    match DataFrame::new(node.rows.len(), columns) {
        Ok(df) => Some(df),
        Err(e) => {
            report.push("rows",
                "invalid_value",
                e.to_string(),
            );
            None
        }
    }
}

fn column<'a>(
    name: PlSmallStr,
    ty: ColumnType,
    cells: impl Iterator<Item = &'a Value>,
    report: &mut dyn FnMut(usize, String),
) -> Series {
    let mut ints: Vec<Option<i128>> = Vec::new();
    let mut floats: Vec<Option<f64>> = Vec::new();
    let mut strs: Vec<Option<&str>> = Vec::new();
    let mut bools: Vec<Option<bool>> = Vec::new();
    for (i, v) in cells.enumerate() {
        match (ty, v) {
            (_, Value::Null) => {
                ints.push(None);
                floats.push(None);
                strs.push(None);
                bools.push(None);
            }
            (ColumnType::Boolean, Value::Bool(b)) => bools.push(Some(*b)),
            (ColumnType::Float32 | ColumnType::Float64, Value::Number(n)) => {
                floats.push(n.as_f64())
            }
            (ColumnType::String, Value::String(s)) => strs.push(Some(s)),
            (ColumnType::Date, Value::String(s)) => {
                match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Ok(d) => ints.push(Some(i128::from(days_since_epoch(d)))),
                    Err(_) => report(i, format!("{s:?} is not a date YYYY-MM-DD")),
                }
            }
            (ColumnType::Datetime, Value::String(s)) => match parse_datetime(s) {
                Some(t) => ints.push(Some(i128::from(t.and_utc().timestamp_micros()))),
                None => report(
                    i,
                    format!("{s:?} is not a datetime YYYY-MM-DDTHH:MM:SS[.ffffff]"),
                ),
            },
            (ColumnType::Time, Value::String(s)) => {
                match NaiveTime::parse_from_str(s, "%H:%M:%S%.f") {
                    Ok(t) => {
                        let nanos = i128::from(t.num_seconds_from_midnight()) * 1_000_000_000
                            + i128::from(t.nanosecond());
                        ints.push(Some(nanos));
                    }
                    Err(_) => report(i, format!("{s:?} is not a time HH:MM:SS[.ffffff]")),
                }
            }
            (
                ColumnType::Int8
                | ColumnType::Int16
                | ColumnType::Int32
                | ColumnType::Int64
                | ColumnType::UInt8
                | ColumnType::UInt16
                | ColumnType::UInt32
                | ColumnType::UInt64
                | ColumnType::Duration,
                Value::Number(n),
            ) => {
                let v = n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from));
                match v.filter(|v| fits(ty, *v)) {
                    Some(v) => ints.push(Some(v)),
                    None => report(i, format!("{n} is not a whole number in range")),
                }
            }
            (_, other) => report(i, format!("{} is not a value of this type", kind(other))),
        }
    }
    series(name, ty, ints, floats, strs, bools)
}

/// The column from the cells read (only the vector of the column's type holds values; every
/// value in it was checked).
fn series(
    name: PlSmallStr,
    ty: ColumnType,
    ints: Vec<Option<i128>>,
    floats: Vec<Option<f64>>,
    strs: Vec<Option<&str>>,
    bools: Vec<Option<bool>>,
) -> Series {
    let dtype = ty.dtype();
    let built = match ty {
        ColumnType::Boolean => Ok(Series::new(name, bools)),
        ColumnType::Float32 | ColumnType::Float64 => Series::new(name, floats).cast(&dtype),
        ColumnType::String => Ok(Series::new(name, strs)),
        ColumnType::Time | ColumnType::Date | ColumnType::Datetime | ColumnType::Duration => {
            let raw: Vec<Option<i64>> = ints
                .iter()
                .map(|v| v.and_then(|v| i64::try_from(v).ok()))
                .collect();
            let physical = match ty {
                ColumnType::Date => Series::new(name, raw).cast(&DataType::Int32),
                _ => Ok(Series::new(name, raw)),
            };
            physical.and_then(|s| s.cast(&dtype))
        }
        _ => {
            // Every value was range-checked above, so the strict cast cannot fail.
            let raw: Vec<Option<i64>> = ints
                .iter()
                .map(|v| v.and_then(|v| i64::try_from(v).ok()))
                .collect();
            if ty == ColumnType::UInt64 {
                let raw: Vec<Option<u64>> = ints
                    .iter()
                    .map(|v| v.and_then(|v| u64::try_from(v).ok()))
                    .collect();
                Ok(Series::new(name, raw))
            } else {
                Series::new(name, raw).strict_cast(&dtype)
            }
        }
    };
    built.unwrap_or_else(|_| Series::full_null(PlSmallStr::EMPTY, 0, &dtype))
}

fn fits(ty: ColumnType, v: i128) -> bool {
    let (lo, hi): (i128, i128) = match ty {
        ColumnType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        ColumnType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        ColumnType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        ColumnType::UInt8 => (0, u8::MAX.into()),
        ColumnType::UInt16 => (0, u16::MAX.into()),
        ColumnType::UInt32 => (0, u32::MAX.into()),
        ColumnType::UInt64 => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    (lo..=hi).contains(&v)
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((d - epoch).num_days()).unwrap_or(i32::MAX)
}

fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
