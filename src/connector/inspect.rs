//! Inspect and preview: list tables and columns, and show a table's first rows. Every catalog
//! query is built here from quoted identifiers and escaped literals, then goes through the
//! same SQL guard and read-only session as user queries; nothing reaches the database
//! unchecked.

use polars::prelude::DataFrame;

use super::{ConnectorError, QueryOptions, Target, query};
use crate::sql::{Dialect, guard};

/// A table, optionally schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRef {
    /// Schema (PostgreSQL) or database (MySQL); `None` for the connection's default.
    pub schema: Option<String>,
    /// The table or view name.
    pub name: String,
}

/// Most rows a preview returns.
pub(crate) const MAX_PREVIEW_ROWS: usize = 10_000;

/// An identifier quoted for the dialect (quote characters doubled, so any name is safe).
fn ident(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A string literal for the dialect. MySQL treats backslashes as escapes (the session keeps
/// that mode, see the guard's assumptions), so they are doubled there.
fn literal(dialect: Dialect, value: &str) -> String {
    let v = value.replace('\'', "''");
    match dialect {
        Dialect::Mysql => format!("'{}'", v.replace('\\', "\\\\")),
        Dialect::Postgres | Dialect::Sqlite => format!("'{v}'"),
    }
}

async fn run(
    target: &Target,
    sql: &str,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    // A preview of a table the guard refuses (`mysql.user`, `pg_authid`) is refused like a
    // query reading it.
    let checked = guard(sql, target.dialect).map_err(ConnectorError::Refused)?;
    query(target, &checked, &[], options).await
}

#[cfg(test)]
/// Schemas (PostgreSQL), databases (MySQL) or attached databases (SQLite): column `schema`.
pub(crate) async fn schemas(
    target: &Target,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let sql = match target.dialect {
        Dialect::Postgres => {
            "SELECT schema_name::text AS schema FROM information_schema.schemata \
             WHERE schema_name NOT IN ('pg_catalog', 'information_schema') \
             AND schema_name NOT LIKE 'pg\\_%' ORDER BY 1"
        }
        Dialect::Mysql => {
            "SELECT schema_name AS `schema` FROM information_schema.schemata \
             WHERE schema_name NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') \
             ORDER BY 1"
        }
        Dialect::Sqlite => "SELECT name AS schema FROM pragma_database_list ORDER BY seq",
    };
    run(target, sql, options).await
}

/// Tables and views: columns `schema`, `table`, `kind`.
pub(crate) async fn tables(
    target: &Target,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let sql = match target.dialect {
        Dialect::Postgres => {
            "SELECT table_schema::text AS schema, table_name::text AS \"table\", \
             table_type::text AS kind FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        }
        Dialect::Mysql => {
            "SELECT table_schema AS `schema`, table_name AS `table`, table_type AS kind \
             FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 2"
        }
        Dialect::Sqlite => {
            "SELECT 'main' AS schema, name AS \"table\", type AS kind FROM sqlite_master \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY name"
        }
    };
    run(target, sql, options).await
}

/// A table's columns in order: `column`, `type` (the database's name), `nullable`.
pub(crate) async fn columns(
    target: &Target,
    table: &TableRef,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let d = target.dialect;
    let name = literal(d, &table.name);
    let sql = match d {
        Dialect::Postgres => {
            let schema = table
                .schema
                .as_deref()
                .map_or_else(|| "current_schema()".to_owned(), |s| literal(d, s));
            format!(
                "SELECT column_name::text AS \"column\", data_type::text AS type, \
                 (is_nullable = 'YES') AS nullable FROM information_schema.columns \
                 WHERE table_schema = {schema} AND table_name = {name} ORDER BY ordinal_position"
            )
        }
        Dialect::Mysql => {
            let schema = table
                .schema
                .as_deref()
                .map_or_else(|| "DATABASE()".to_owned(), |s| literal(d, s));
            format!(
                "SELECT column_name AS `column`, column_type AS type, \
                 (is_nullable = 'YES') AS nullable FROM information_schema.columns \
                 WHERE table_schema = {schema} AND table_name = {name} ORDER BY ordinal_position"
            )
        }
        Dialect::Sqlite => format!(
            "SELECT name AS \"column\", type AS type, (\"notnull\" = 0) AS nullable \
             FROM pragma_table_info({name}) ORDER BY cid"
        ),
    };
    run(target, &sql, options).await
}

/// The first `n` rows of a table (at most [`MAX_PREVIEW_ROWS`]).
pub(crate) async fn preview(
    target: &Target,
    table: &TableRef,
    n: usize,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let d = target.dialect;
    let qualified = match &table.schema {
        Some(s) => format!("{}.{}", ident(d, s), ident(d, &table.name)),
        None => ident(d, &table.name),
    };
    let sql = format!(
        "SELECT * FROM {qualified} LIMIT {}",
        n.min(MAX_PREVIEW_ROWS)
    );
    run(target, &sql, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_cannot_be_escaped() {
        assert_eq!(
            ident(Dialect::Postgres, "a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
        assert_eq!(ident(Dialect::Mysql, "a`b"), "`a``b`");
        assert_eq!(literal(Dialect::Mysql, "x\\' OR 1=1"), "'x\\\\'' OR 1=1'");
        assert_eq!(literal(Dialect::Postgres, "it's"), "'it''s'");
        // Whatever the name, the result is still one read-only query.
        let q = format!(
            "SELECT * FROM {} LIMIT 5",
            ident(Dialect::Postgres, "t\"; DELETE FROM t; --")
        );
        assert!(guard(&q, Dialect::Postgres).is_ok());
    }
}
