//! Owns the two table tasks: inspect (the tables and columns of one connection, as typed
//! values) and preview (the first rows of one table). Every database call goes through the
//! task's [`InputSource`]; never caches, never builds SQL (the connector's inspect module does,
//! through the guard).

use polars::prelude::*;

use super::{InputSource, TaskFailure};
use crate::connector::{self, QueryOptions, TableRef, Target};
use crate::workflow::RunControl;

/// One table of a connection and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableInfo {
    /// The schema (PostgreSQL), database (MySQL) or attached database (SQLite).
    pub(crate) schema: String,
    /// The table or view.
    pub(crate) name: String,
    /// Its columns, in order.
    pub(crate) columns: Vec<ColumnInfo>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    /// Its name.
    pub(crate) name: String,
    /// The database's name for its type.
    pub(crate) kind: String,
}

impl TableInfo {
    /// Bytes it holds, roughly (for the event channel's budget).
    pub(crate) fn weight(&self) -> usize {
        64 + self.schema.len()
            + self.name.len()
            + self
                .columns
                .iter()
                .map(|c| 32 + c.name.len() + c.kind.len())
                .sum::<usize>()
    }
}

/// The strings of one column of a catalog frame (empty if absent).
fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|s| s.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
        })
        .unwrap_or_default()
}

/// Every table of the connection with its columns.
pub(super) fn inspect(
    target: &Target,
    options: QueryOptions,
    control: &RunControl,
    inputs: &mut dyn InputSource,
) -> Result<Vec<TableInfo>, TaskFailure> {
    let tables = inputs.call(
        Box::pin(connector::inspect::tables(target, options)),
        control,
    )?;
    let mut out = Vec::new();
    for (schema, name) in strings(&tables, "schema")
        .into_iter()
        .zip(strings(&tables, "table"))
    {
        let table = TableRef {
            schema: (!schema.is_empty()).then(|| schema.clone()),
            name: name.clone(),
        };
        let columns = {
            let call = Box::pin(connector::inspect::columns(target, &table, options));
            inputs.call(call, control)?
        };
        let columns = strings(&columns, "column")
            .into_iter()
            .zip(strings(&columns, "type"))
            .map(|(name, kind)| ColumnInfo { name, kind })
            .collect();
        out.push(TableInfo {
            schema,
            name,
            columns,
        });
    }
    Ok(out)
}

/// The first `rows` rows of `table` (clamped to the preview limit).
pub(super) fn preview(
    target: &Target,
    table: &TableRef,
    rows: usize,
    options: QueryOptions,
    control: &RunControl,
    inputs: &mut dyn InputSource,
) -> Result<DataFrame, TaskFailure> {
    let rows = rows.clamp(1, connector::inspect::MAX_PREVIEW_ROWS);
    inputs.call(
        Box::pin(connector::inspect::preview(target, table, rows, options)),
        control,
    )
}
