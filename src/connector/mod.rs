//! Database connectors: one guarded, read-only query in, a Polars DataFrame out.
//! Every query runs inside a database-enforced read-only session with a statement timeout
//! (PostgreSQL `BEGIN READ ONLY` + `statement_timeout`, MySQL/MariaDB `START TRANSACTION READ
//! ONLY` + `max_execution_time`, SQLite opened read-only with `query_only`), in addition to the
//! parser-level guard that produced the [`ReadOnlyQuery`]. Credentials stay in [`Secret`]s;
//! nothing here logs, prints or returns a connection URL or a driver's raw error text.

mod catalog;
mod decode;
mod frame;
pub(crate) mod inspect;
mod mysql;
mod pg_copy;
pub(crate) mod postgres;
mod sqlite;

use std::time::Duration;

use polars::prelude::DataFrame;

pub use frame::ResultLimits;
pub(crate) use inspect::TableRef;

use crate::secret::{Secret, redact_url};
use crate::sql::{Bind, Dialect, ReadOnlyQuery};

/// Where to connect: a dialect and a connection URL (which may hold a password), plus what a
/// just-in-time credential adds (a role to assume, TLS, a client certificate).
#[derive(Debug, Clone)]
pub struct Target {
    /// The SQL dialect (decides the driver and the guard).
    pub dialect: Dialect,
    /// `postgres://user:pass@host:port/db`, `mysql://...`, `sqlite:///path/to/file.db`.
    pub url: Secret,
    /// Role to assume right after connecting (`SET ROLE`); validated as an identifier.
    pub role: Option<String>,
    /// Refuse to talk to the server without TLS.
    pub require_tls: bool,
    /// TLS client certificate and key (key-pair credentials), in memory only.
    pub client_tls: Option<ClientTls>,
}

/// A TLS client certificate and its private key, PEM.
#[derive(Clone)]
pub struct ClientTls {
    /// Certificate chain, PEM.
    pub certificate_pem: String,
    /// Private key, PEM.
    pub private_key_pem: Secret,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls(***)")
    }
}

impl Target {
    /// A target from a URL, choosing the dialect by its scheme.
    pub fn from_url(url: Secret) -> Result<Target, ConnectorError> {
        let scheme = url.expose().split("://").next().unwrap_or_default();
        let dialect = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::Mysql,
            "sqlite" => Dialect::Sqlite,
            _ => {
                return Err(ConnectorError::BadTarget(
                    "unsupported URL scheme (expected postgres://, mysql:// or sqlite://)".into(),
                ));
            }
        };
        Ok(Target {
            dialect,
            url,
            role: None,
            require_tls: false,
            client_tls: None,
        })
    }

    /// The `SET ROLE` statement for the target's role, if any. The role was validated as a
    /// plain identifier (letters, digits, `_`), so quoting cannot be escaped.
    pub(crate) fn set_role(&self) -> Result<Option<String>, ConnectorError> {
        let Some(role) = &self.role else {
            return Ok(None);
        };
        if !is_valid_role(role) {
            return Err(ConnectorError::BadTarget(
                "role must be 1-63 of letters, digits and _".into(),
            ));
        }
        Ok(Some(match self.dialect {
            Dialect::Postgres => format!("SET ROLE \"{role}\""),
            Dialect::Mysql => format!("SET ROLE `{role}`"),
            Dialect::Sqlite => {
                return Err(ConnectorError::BadTarget("SQLite has no roles".into()));
            }
        }))
    }

    /// The URL with its password removed, for messages.
    pub(crate) fn redacted(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// A role name safe to put in `SET ROLE`: 1-63 of letters, digits and `_`, not starting with
/// a digit. Anything else is refused rather than quoted.
pub(crate) fn is_valid_role(role: &str) -> bool {
    let mut bytes = role.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && role.len() <= 63
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How one query may run.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Result caps.
    pub limits: ResultLimits,
    /// Statement timeout, enforced by the database (and by the worker for SQLite).
    pub timeout: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            limits: ResultLimits::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why a query did not produce a frame. Messages never contain credentials or raw driver text.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The target description is unusable.
    #[error("bad connection target: {0}")]
    BadTarget(String),
    /// Connecting or authenticating failed.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The database refused or failed the query (its message is kept for operators only).
    #[error("the database rejected the query ({0})")]
    Query(String),
    /// The statement timeout fired.
    #[error("the query exceeded its time limit")]
    Timeout,
    /// The result is over the row or byte cap.
    #[error("result_too_large: {0}")]
    ResultTooLarge(String),
    /// A column type we do not map.
    #[error("column {column}: unsupported database type {type_name}")]
    UnsupportedType {
        /// The column.
        column: String,
        /// The database's name for its type.
        type_name: String,
    },
    /// A value could not be decoded.
    #[error("cannot decode a value: {0}")]
    Decode(String),
    /// The server's catalog says the query calls or reads something the guard refuses (a
    /// volatile function, a relation that exposes files or secrets); nothing ran.
    #[error("{0}")]
    Refused(crate::sql::SqlError),
}

impl ConnectorError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectorError::BadTarget(_) => "bad_target",
            ConnectorError::Connect(_) => "connect_failed",
            ConnectorError::Query(_) => "query_failed",
            ConnectorError::Timeout => "timeout",
            ConnectorError::ResultTooLarge(_) => "result_too_large",
            ConnectorError::UnsupportedType { .. } => "unsupported_type",
            ConnectorError::Decode(_) => "decode_error",
            ConnectorError::Refused(e) => e.code.as_str(),
        }
    }
}

/// A driver error reduced to its kind: the database's own message for query errors (it names
/// SQL constructs, not credentials), a fixed text otherwise.
pub(crate) fn query_error(e: sqlx::Error) -> ConnectorError {
    match e {
        sqlx::Error::Database(db) => ConnectorError::Query(db.message().to_owned()),
        sqlx::Error::ColumnDecode { index, .. } => {
            ConnectorError::Decode(format!("column {index}"))
        }
        sqlx::Error::PoolTimedOut => ConnectorError::Timeout,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            ConnectorError::Query("connection failure".into())
        }
        _ => ConnectorError::Query("driver error".into()),
    }
}

/// Runs one guarded query on `target` in a read-only session and returns its rows. `binds`
/// are the values of the query's `:name` parameters, in the query's bind order; they
/// travel as bind parameters, never in the text.
pub async fn query(
    target: &Target,
    query: &ReadOnlyQuery,
    binds: &[Bind],
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    if query.dialect() != target.dialect {
        return Err(ConnectorError::BadTarget(
            "the query was checked for another dialect".into(),
        ));
    }
    if binds.len() != query.params().len() {
        return Err(ConnectorError::BadTarget(format!(
            "the query binds {} parameters; {} values were given",
            query.params().len(),
            binds.len()
        )));
    }
    let names = catalog::Names::of(query);
    let sql = query.driver_sql();
    match target.dialect {
        // COPY takes no bind parameters and cannot wrap EXPLAIN: those use the row protocol.
        Dialect::Postgres => {
            let copy = !query.is_explain() && binds.is_empty();
            postgres::session(target, sql, binds, names, options, copy).await
        }
        Dialect::Mysql => mysql::run(target, sql, binds, names, options).await,
        Dialect::Sqlite => sqlite::run(target, sql, binds, options).await,
    }
}

/// `sqlx::query(sql)` with `binds` bound in order (one driver's query type per use).
macro_rules! bound_query {
    ($sql:expr, $binds:expr) => {{
        let mut q = sqlx::query($sql);
        for b in $binds {
            q = match b {
                $crate::sql::Bind::Int(v) => q.bind(*v),
                $crate::sql::Bind::Float(v) => q.bind(*v),
                $crate::sql::Bind::Str(v) => q.bind(v.as_str()),
                $crate::sql::Bind::Bool(v) => q.bind(*v),
                $crate::sql::Bind::Date(v) => q.bind(*v),
                $crate::sql::Bind::Datetime(v) => q.bind(*v),
            };
        }
        q
    }};
}
pub(crate) use bound_query;

/// The session layer alone: no guard and no catalog check. Only the tests that prove the
/// database layer refuses writes by itself may call it.
#[cfg(test)]
pub(crate) async fn run_sql(
    target: &Target,
    sql: &str,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let names = catalog::Names::default();
    match target.dialect {
        Dialect::Postgres => postgres::session(target, sql, &[], names, options, false).await,
        Dialect::Mysql => mysql::run(target, sql, &[], names, options).await,
        Dialect::Sqlite => sqlite::run(target, sql, &[], options).await,
    }
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_guard;
