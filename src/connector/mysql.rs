//! MySQL and MariaDB: one connection per query; the session gets a statement time limit
//! (`max_execution_time` on MySQL, `max_statement_time` on MariaDB) and an `sql_mode` without
//! `ANSI_QUOTES`/`NO_BACKSLASH_ESCAPES` (the guard lexes strings that way), then
//! `START TRANSACTION READ ONLY`, the catalog check of the query's names, the query as one
//! prepared statement, and `ROLLBACK`.

use std::str::FromStr;

use futures_util::TryStreamExt;
use polars::prelude::DataFrame;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Connection, Executor, Row};

use super::catalog::{Names, check_mysql};
use super::decode::{Dec, plan_columns, push_value};
use super::frame::FrameBuilder;
use super::{ConnectorError, QueryOptions, Target, query_error};
use crate::sql::Bind;

/// The decoding of a MySQL/MariaDB type name, or `None` when unmapped.
fn plan(type_name: &str) -> Option<Dec> {
    Some(match type_name {
        "BOOLEAN" => Dec::Bool,
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => Dec::I64,
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => {
            Dec::U32AsI64
        }
        "FLOAT" => Dec::F32,
        "DOUBLE" => Dec::F64,
        "DECIMAL" => Dec::Decimal,
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Dec::Str
        }
        "JSON" => Dec::Json,
        "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => Dec::Bin,
        "DATE" => Dec::Date,
        "TIME" => Dec::Time,
        "DATETIME" => Dec::Timestamp,
        "TIMESTAMP" => Dec::TimestampTz,
        _ => return None,
    })
}

fn push_row(row: &MySqlRow, plans: &[Dec], b: &mut FrameBuilder) -> Result<(), ConnectorError> {
    let mut bytes = 0;
    for (i, (dec, data)) in plans.iter().zip(b.data.iter_mut()).enumerate() {
        if let (Dec::Decimal, super::frame::Data::Decimal(v)) = (dec, &mut *data) {
            v.push(
                row.try_get::<Option<rust_decimal::Decimal>, _>(i)
                    .map_err(query_error)?,
            );
            bytes += 16;
            continue;
        }
        if let (Dec::U32AsI64, super::frame::Data::I64(v)) = (dec, &mut *data) {
            v.push(
                row.try_get::<Option<u32>, _>(i)
                    .map_err(query_error)?
                    .map(i64::from),
            );
            bytes += 8;
            continue;
        }
        bytes += push_value!(row, i, *dec, data);
    }
    b.row_done(bytes)
}

fn db_error(e: sqlx::Error) -> ConnectorError {
    // 3024: MySQL ER_QUERY_TIMEOUT; 1969: MariaDB ER_STATEMENT_TIMEOUT.
    if let sqlx::Error::Database(db) = &e
        && let Some(code) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        && matches!(code.number(), 3024 | 1969)
    {
        return ConnectorError::Timeout;
    }
    query_error(e)
}

pub(super) async fn run(
    target: &Target,
    sql: &str,
    binds: &[Bind],
    names: Names<'_>,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let mut opts = MySqlConnectOptions::from_str(target.url.expose())
        .map_err(|_| ConnectorError::BadTarget("not a valid MySQL URL".into()))?;
    if target.require_tls {
        opts = opts.ssl_mode(sqlx::mysql::MySqlSslMode::VerifyIdentity);
    }
    if let Some(tls) = &target.client_tls {
        opts = opts
            .ssl_client_cert_from_pem(tls.certificate_pem.as_bytes())
            .ssl_client_key_from_pem(tls.private_key_pem.expose().as_bytes());
    }
    let mut conn = MySqlConnection::connect_with(&opts)
        .await
        .map_err(|_| ConnectorError::Connect(target.redacted()))?;
    if let Some(set_role) = target.set_role()? {
        sqlx::raw_sql(&set_role)
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
    }
    let version: String = sqlx::query("SELECT VERSION()")
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(query_error)?;
    let ms = options.timeout.as_millis().max(1);
    let limit = if version.contains("MariaDB") {
        format!("SET SESSION max_statement_time = {}", ms as f64 / 1000.0)
    } else {
        format!("SET SESSION max_execution_time = {ms}")
    };
    for stmt in [
        limit.as_str(),
        "SET SESSION sql_mode = REPLACE(REPLACE(@@sql_mode, 'ANSI_QUOTES', ''), \
         'NO_BACKSLASH_ESCAPES', '')",
        "START TRANSACTION READ ONLY",
    ] {
        sqlx::raw_sql(stmt)
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
    }
    let result = match check_mysql(&mut conn, names).await {
        Ok(()) => fetch(&mut conn, sql, binds, options).await,
        Err(e) => Err(e),
    };
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    result
}

async fn fetch(
    conn: &mut MySqlConnection,
    sql: &str,
    binds: &[Bind],
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let described = conn.describe(sql).await.map_err(db_error)?;
    let (plans, columns) = plan_columns(described.columns(), plan)?;
    let mut builder = FrameBuilder::new(columns, options.limits);
    let mut rows = super::bound_query!(sql, binds).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        push_row(&row, &plans, &mut builder)?;
    }
    builder.finish()
}
