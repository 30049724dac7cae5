//! PostgreSQL: one connection per query, `BEGIN READ ONLY` with `statement_timeout`, the
//! catalog check of the query's names, the query sent as one prepared statement (the extended
//! protocol carries exactly one), then `ROLLBACK`. Types are mapped from the server's type names.

use std::str::FromStr;

use futures_util::TryStreamExt;
use polars::prelude::DataFrame;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgTypeInfo, Postgres};
use sqlx::{Connection, Executor};

use super::catalog::{Names, check_postgres};
use super::decode::{Dec, Elem, Planned, plan_columns, push_value};
use super::frame::FrameBuilder;
use super::pg_copy::CopyDecoder;
use super::{ConnectorError, QueryOptions, Target, query_error};
use crate::sql::Bind;

/// The decoding of a PostgreSQL type name, or `None` when unmapped.
fn plan(type_name: &str) -> Option<Dec> {
    Some(match type_name {
        "BOOL" => Dec::Bool,
        "INT2" => Dec::I16,
        "INT4" => Dec::I32,
        "INT8" => Dec::I64,
        "FLOAT4" => Dec::F32,
        "FLOAT8" => Dec::F64,
        "NUMERIC" => Dec::Decimal,
        "TEXT" | "VARCHAR" | "BPCHAR" | "CHAR" | "NAME" | "CITEXT" => Dec::Str,
        "JSON" => Dec::Json,
        "JSONB" => Dec::JsonB,
        "UUID" => Dec::Uuid,
        "BYTEA" => Dec::Bin,
        "DATE" => Dec::Date,
        "TIME" => Dec::Time,
        "TIMESTAMP" => Dec::Timestamp,
        "TIMESTAMPTZ" => Dec::TimestampTz,
        "BOOL[]" => Dec::Array(Elem::Bool),
        "INT2[]" => Dec::Array(Elem::I16),
        "INT4[]" => Dec::Array(Elem::I32),
        "INT8[]" => Dec::Array(Elem::I64),
        "FLOAT4[]" => Dec::Array(Elem::F32),
        "FLOAT8[]" => Dec::Array(Elem::F64),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" | "NAME[]" => Dec::Array(Elem::Str),
        _ => return None,
    })
}

fn push_row(row: &PgRow, plans: &[Dec], b: &mut FrameBuilder) -> Result<(), ConnectorError> {
    let mut bytes = 0;
    for (i, (dec, data)) in plans.iter().zip(b.data.iter_mut()).enumerate() {
        if let (Dec::Decimal, super::frame::Data::Decimal(v)) = (dec, &mut *data) {
            v.push(
                sqlx::Row::try_get::<Option<rust_decimal::Decimal>, _>(row, i)
                    .map_err(query_error)?,
            );
            bytes += 16;
            continue;
        }
        bytes += push_value!(row, i, *dec, data);
    }
    b.row_done(bytes)
}

fn db_error(e: sqlx::Error) -> ConnectorError {
    // 57014: query_canceled, which is what statement_timeout raises.
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("57014")
    {
        return ConnectorError::Timeout;
    }
    query_error(e)
}

/// Connect options from the target: URL, TLS requirement, client certificate.
fn options_for(target: &Target) -> Result<PgConnectOptions, ConnectorError> {
    let mut opts = PgConnectOptions::from_str(target.url.expose())
        .map_err(|_| ConnectorError::BadTarget("not a valid PostgreSQL URL".into()))?;
    if target.require_tls {
        opts = opts.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull);
    }
    if let Some(tls) = &target.client_tls {
        opts = opts
            .ssl_client_cert_from_pem(tls.certificate_pem.as_bytes())
            .ssl_client_key_from_pem(tls.private_key_pem.expose().as_bytes());
    }
    Ok(opts)
}

/// Opens a connection for the load benchmark (the caller starts its own transaction).
pub(crate) async fn connect(target: &Target) -> Result<PgConnection, ConnectorError> {
    let opts = PgConnectOptions::from_str(target.url.expose())
        .map_err(|_| ConnectorError::BadTarget("not a valid PostgreSQL URL".into()))?;
    PgConnection::connect_with(&opts)
        .await
        .map_err(|_| ConnectorError::Connect(target.redacted()))
}

/// Connects, opens the read-only transaction, checks the query's names against the catalog,
/// fetches (through `COPY (sql) TO STDOUT (FORMAT binary)`, the fast path, when `copy`; else
/// with the driver's row protocol, which any read-only query including `EXPLAIN` can use),
/// rolls back and closes.
pub(super) async fn session(
    target: &Target,
    sql: &str,
    binds: &[Bind],
    names: Names<'_>,
    options: QueryOptions,
    copy: bool,
) -> Result<DataFrame, ConnectorError> {
    let opts = options_for(target)?;
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|_| ConnectorError::Connect(target.redacted()))?;
    if let Some(set_role) = target.set_role()? {
        sqlx::raw_sql(&set_role)
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
    }
    let timeout_ms = options.timeout.as_millis().max(1);
    // The guard lexes strings like a server with standard_conforming_strings on: keep it so.
    let setup = format!(
        "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {timeout_ms}; \
         SET LOCAL standard_conforming_strings = on"
    );
    sqlx::raw_sql(&setup)
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
    let result = match check_postgres(&mut conn, names).await {
        Err(e) => Err(e),
        Ok(()) if copy => fetch_copy(&mut conn, sql, options).await,
        Ok(()) => fetch(&mut conn, sql, binds, options).await,
    };
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    result
}

/// The PostgreSQL type a bind value is sent as.
fn bind_type(b: &Bind) -> PgTypeInfo {
    use sqlx::Type;
    match b {
        Bind::Int(_) => <i64 as Type<Postgres>>::type_info(),
        Bind::Float(_) => <f64 as Type<Postgres>>::type_info(),
        Bind::Str(_) => <&str as Type<Postgres>>::type_info(),
        Bind::Bool(_) => <bool as Type<Postgres>>::type_info(),
        Bind::Date(_) => <chrono::NaiveDate as Type<Postgres>>::type_info(),
        Bind::Datetime(_) => <chrono::NaiveDateTime as Type<Postgres>>::type_info(),
    }
}

/// Column names and decodings from the server's description of `sql`.
async fn describe(conn: &mut PgConnection, sql: &str) -> Result<Planned, ConnectorError> {
    let described = conn.describe(sql).await.map_err(db_error)?;
    plan_columns(described.columns(), plan)
}

pub(crate) async fn fetch_copy(
    conn: &mut PgConnection,
    sql: &str,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let (plans, columns) = describe(conn, sql).await?;
    let mut builder = FrameBuilder::new(columns, options.limits);
    let mut decoder = CopyDecoder::new(plans);
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let mut stream = conn.copy_out_raw(&copy).await.map_err(db_error)?;
    while let Some(chunk) = stream.try_next().await.map_err(db_error)? {
        decoder.feed(&chunk, &mut builder)?;
    }
    if !decoder.finished() {
        return Err(ConnectorError::Decode("binary COPY ended early".into()));
    }
    builder.finish()
}

pub(crate) async fn fetch(
    conn: &mut PgConnection,
    sql: &str,
    binds: &[Bind],
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let (plans, columns) = if binds.is_empty() {
        describe(conn, sql).await?
    } else {
        // Prepared with the values' own types, which the driver then reuses to send them
        // (a statement prepared without them gets the types the server infers, and a value
        // of another width is refused).
        let types: Vec<PgTypeInfo> = binds.iter().map(bind_type).collect();
        let prepared = conn.prepare_with(sql, &types).await.map_err(db_error)?;
        plan_columns(sqlx::Statement::columns(&prepared), plan)?
    };
    let mut builder = FrameBuilder::new(columns, options.limits);
    let mut rows = super::bound_query!(sql, binds).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        push_row(&row, &plans, &mut builder)?;
    }
    builder.finish()
}
