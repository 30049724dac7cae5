//! SQLite: the file is opened read-only (`SQLITE_OPEN_READONLY`) with `query_only` on, so no
//! statement can write even if one got past the guard. SQLite has no statement timeout, so a
//! progress handler interrupts the statement inside SQLite at the time limit (or when the query
//! is abandoned). Column types are dynamic: a column's mapping comes from its
//! declared type, else from its first non-null value.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::TryStreamExt;
use polars::prelude::DataFrame;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column, Connection, Executor, Row, TypeInfo, ValueRef};

use super::decode::{Dec, push_value};
use super::frame::FrameBuilder;
use super::{ConnectorError, QueryOptions, Target, query_error};
use crate::sql::Bind;

/// The decoding of a SQLite type name, or `None` when it says nothing (NULL).
fn plan(type_name: &str) -> Option<Dec> {
    Some(match type_name {
        "BOOLEAN" => Dec::Bool,
        "INTEGER" => Dec::I64,
        "REAL" => Dec::F64,
        "TEXT" => Dec::Str,
        "BLOB" => Dec::Bin,
        "DATE" => Dec::Date,
        "TIME" => Dec::Time,
        "DATETIME" => Dec::Timestamp,
        "NUMERIC" => Dec::F64,
        _ => return None,
    })
}

fn push_row(row: &SqliteRow, plans: &[Dec], b: &mut FrameBuilder) -> Result<(), ConnectorError> {
    let mut bytes = 0;
    for (i, (dec, data)) in plans.iter().zip(b.data.iter_mut()).enumerate() {
        bytes += push_value!(row, i, *dec, data);
    }
    b.row_done(bytes)
}

pub(super) async fn run(
    target: &Target,
    sql: &str,
    binds: &[Bind],
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let opts = SqliteConnectOptions::from_str(target.url.expose())
        .map_err(|_| ConnectorError::BadTarget("not a valid SQLite URL".into()))?
        .read_only(true)
        .create_if_missing(false)
        .pragma("query_only", "ON");
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(|_| ConnectorError::Connect(target.redacted()))?;
    // SQLite has no statement timeout, and the statement runs on the driver's own thread, so
    // dropping this future would not stop it: a progress handler interrupts the statement
    // inside SQLite once the time is up or once this future is gone (a cancelled run).
    let deadline = Instant::now() + options.timeout;
    let gone = Abandoned::default();
    let flag = gone.0.clone();
    conn.lock_handle()
        .await
        .map_err(query_error)?
        .set_progress_handler(PROGRESS_OPS, move || {
            !flag.load(Ordering::Relaxed) && Instant::now() < deadline
        });
    let result = fetch(&mut conn, sql, binds, options).await;
    let result = match result {
        Err(_) if Instant::now() >= deadline => Err(ConnectorError::Timeout),
        other => other,
    };
    let _ = conn.close().await;
    drop(gone);
    result
}

/// SQLite virtual-machine instructions between two looks at the clock (a few microseconds).
const PROGRESS_OPS: i32 = 1000;

/// Set when the query's future is dropped, so the progress handler interrupts the statement.
#[derive(Default)]
struct Abandoned(Arc<AtomicBool>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn fetch(
    conn: &mut SqliteConnection,
    sql: &str,
    binds: &[Bind],
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let mut state: Option<(Vec<Dec>, FrameBuilder)> = None;
    {
        let mut rows = super::bound_query!(sql, binds).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await.map_err(query_error)? {
            if state.is_none() {
                let mut plans = Vec::with_capacity(row.len());
                let mut columns = Vec::with_capacity(row.len());
                for (i, c) in row.columns().iter().enumerate() {
                    let declared = plan(c.type_info().name());
                    let value = row.try_get_raw(i).map_err(query_error)?;
                    let dec = declared
                        .or_else(|| plan(value.type_info().name()))
                        .unwrap_or(Dec::Str);
                    plans.push(dec);
                    columns.push((c.name().to_owned(), dec.kind()));
                }
                state = Some((plans, FrameBuilder::new(columns, options.limits)));
            }
            if let Some((plans, b)) = state.as_mut() {
                push_row(&row, plans, b)?;
            }
        }
    }
    if let Some((_, b)) = state {
        return b.finish();
    }
    // No rows, so no values to type by: declared types where known, text otherwise.
    let described = conn.describe(sql).await.map_err(query_error)?;
    let columns = described
        .columns()
        .iter()
        .map(|c| {
            let dec = plan(c.type_info().name()).unwrap_or(Dec::Str);
            (c.name().to_owned(), dec.kind())
        })
        .collect();
    FrameBuilder::new(columns, options.limits).finish()
}
