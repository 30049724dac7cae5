//! Run parameters in SQL. A query names a parameter as `:name`; the guard parses it as a
//! placeholder (never as text), and the driver receives the statement with its own
//! placeholders in their place (`$1` PostgreSQL, `?` MySQL/MariaDB, `?1` SQLite) and the
//! values as bind parameters: a value is never part of the query text.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use sqlparser::tokenizer::{Location, Span};

use super::Dialect;
use super::error::{ErrorCode, SqlError};

/// One bound value (a run parameter's value). Its `Debug` shows the type only.
#[derive(Clone, PartialEq)]
pub enum Bind {
    /// 64-bit integer.
    Int(i64),
    /// 64-bit float.
    Float(f64),
    /// Text.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Date.
    Date(NaiveDate),
    /// Date and time without zone.
    Datetime(NaiveDateTime),
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Bind::Int(_) => "int",
            Bind::Float(_) => "float",
            Bind::Str(_) => "str",
            Bind::Bool(_) => "bool",
            Bind::Date(_) => "date",
            Bind::Datetime(_) => "datetime",
        };
        write!(f, "Bind({kind}, ***)")
    }
}

impl Bind {
    /// The values as one unambiguous text (type-tagged JSON), for a result cache's key: equal
    /// values give equal text, different values (or types) different text.
    pub(crate) fn key_text(binds: &[Bind]) -> String {
        let tagged: Vec<serde_json::Value> = binds
            .iter()
            .map(|b| match b {
                Bind::Int(v) => serde_json::json!(["int", v]),
                Bind::Float(v) => serde_json::json!(["float", v.to_bits()]),
                Bind::Str(v) => serde_json::json!(["str", v]),
                Bind::Bool(v) => serde_json::json!(["bool", v]),
                Bind::Date(v) => serde_json::json!(["date", v.to_string()]),
                Bind::Datetime(v) => serde_json::json!(["datetime", v.to_string()]),
            })
            .collect();
        serde_json::Value::Array(tagged).to_string()
    }
}

/// The guard's rendering with each `:name` replaced by the driver's placeholder, and the
/// parameter names in bind order. `spots` are the placeholders the walk found in `rendered`
/// (name, span); each span must cover exactly `:name` there, or nothing is sent.
pub(super) fn rewrite(
    rendered: &str,
    mut spots: Vec<(String, Span)>,
    dialect: Dialect,
) -> Result<(String, Vec<String>), SqlError> {
    spots.sort_by_key(|(_, span)| (span.start.line, span.start.column));
    let lines: Vec<usize> = std::iter::once(0)
        .chain(rendered.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |at: Location| -> Option<usize> {
        let start = *lines.get(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let line = &rendered[start..];
        let within = match line.char_indices().nth(col) {
            Some((i, _)) => i,
            None if line.chars().count() == col => line.len(),
            None => return None,
        };
        Some(start + within)
    };
    let mismatch = || {
        SqlError::new(
            ErrorCode::RenderMismatch,
            "the guard cannot place this query's parameters exactly; please rewrite it",
        )
    };
    let mut out = String::with_capacity(rendered.len());
    let mut order: Vec<String> = Vec::new();
    let mut done = 0;
    for (name, span) in &spots {
        let (start, end) = match (offset(span.start), offset(span.end)) {
            (Some(s), Some(e)) if s >= done && e > s => (s, e),
            _ => return Err(mismatch()),
        };
        if rendered.get(start..end) != Some(format!(":{name}").as_str()) {
            return Err(mismatch());
        }
        out.push_str(&rendered[done..start]);
        let position = match dialect {
            // One bind per occurrence, in text order.
            Dialect::Mysql => {
                order.push(name.clone());
                None
            }
            // Numbered: one bind per name, however often it is used.
            Dialect::Postgres | Dialect::Sqlite => {
                Some(match order.iter().position(|n| n == name) {
                    Some(i) => i + 1,
                    None => {
                        order.push(name.clone());
                        order.len()
                    }
                })
            }
        };
        match (dialect, position) {
            (Dialect::Postgres, Some(k)) => out.push_str(&format!("${k}")),
            (Dialect::Sqlite, Some(k)) => out.push_str(&format!("?{k}")),
            _ => out.push('?'),
        }
        done = end;
    }
    out.push_str(&rendered[done..]);
    Ok((out, order))
}
