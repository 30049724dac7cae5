//! Owns the run-time catalog check: before a guarded query runs, the connector asks the server
//! what the functions it calls and the relations it reads really are (the model is documented
//! in `sql/catalog.rs`, which also makes every decision). One round trip per query, on the
//! query's own connection, inside its read-only transaction; only names the query uses are
//! looked up. Must never send anything but these fixed catalog queries with bound parameters.

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

use super::{ConnectorError, query_error};
use crate::sql::catalog::{
    forbidden_relation, modifying_function, volatile_function, volatile_function_allowed,
};
use crate::sql::{ObjectRef, ReadOnlyQuery};

/// The names one query uses (empty for the guard-less session test path).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Names<'a> {
    functions: &'a [ObjectRef],
    relations: &'a [ObjectRef],
}

impl<'a> Names<'a> {
    /// The names a vetted query uses.
    pub(crate) fn of(query: &'a ReadOnlyQuery) -> Names<'a> {
        Names {
            functions: query.functions(),
            relations: query.relations(),
        }
    }
}

/// Volatile functions by the names called, and relations PUBLIC may not read (in the system
/// schemas) by the names read, each with its schema and whether that schema is on the
/// session's search path (which is where an unqualified name resolves).
const PG_LOOKUP: &str = "\
SELECT 'f'::text AS kind, n.nspname::text AS schema, p.proname::text AS name, \
       n.nspname = ANY (current_schemas(true)) AS visible \
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
WHERE p.provolatile = 'v' AND p.proname = ANY ($1::text[]) \
UNION ALL \
SELECT 'r', n.nspname::text, c.relname::text, n.nspname = ANY (current_schemas(true)) \
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE n.nspname IN ('pg_catalog', 'information_schema') AND c.relname = ANY ($2::text[]) \
  AND NOT has_table_privilege('public', c.oid, 'SELECT')";

/// Whether a catalog row (schema, name, on the search path) is the object `r` names.
fn names_it(r: &ObjectRef, schema: &str, name: &str, visible: bool) -> bool {
    r.name == name && r.schema.as_deref().map_or(visible, |s| s == schema)
}

/// PostgreSQL: refuses a called function the catalog marks volatile (unless it is an
/// allowlisted built-in) and a read relation that PUBLIC may not read.
pub(crate) async fn check_postgres(
    conn: &mut PgConnection,
    names: Names<'_>,
) -> Result<(), ConnectorError> {
    if names.functions.is_empty() && names.relations.is_empty() {
        return Ok(());
    }
    let functions: Vec<&str> = names.functions.iter().map(|f| f.name.as_str()).collect();
    let relations: Vec<&str> = names.relations.iter().map(|r| r.name.as_str()).collect();
    let rows: Vec<(String, String, String, bool)> = sqlx::query_as(PG_LOOKUP)
        .bind(&functions)
        .bind(&relations)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error)?;
    for (kind, schema, name, visible) in rows {
        if kind == "f" {
            let called = names
                .functions
                .iter()
                .any(|f| names_it(f, &schema, &name, visible));
            if called && !volatile_function_allowed(&schema, &name) {
                return Err(ConnectorError::Refused(volatile_function(&schema, &name)));
            }
        } else if names
            .relations
            .iter()
            .any(|r| names_it(r, &schema, &name, visible))
        {
            return Err(ConnectorError::Refused(forbidden_relation(
                &format!("{schema}.{name}"),
                "the server does not let PUBLIC read it (it exposes files or secrets)",
            )));
        }
    }
    Ok(())
}

/// MySQL/MariaDB: refuses a called stored function declared `MODIFIES SQL DATA`, and any
/// unqualified relation while the session's database is `mysql`.
pub(crate) async fn check_mysql(
    conn: &mut MySqlConnection,
    names: Names<'_>,
) -> Result<(), ConnectorError> {
    if names.functions.is_empty() && names.relations.is_empty() {
        return Ok(());
    }
    let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&mut *conn)
        .await
        .map_err(query_error)?;
    let database = database.unwrap_or_default();
    if database.eq_ignore_ascii_case("mysql")
        && let Some(r) = names.relations.iter().find(|r| r.schema.is_none())
    {
        return Err(ConnectorError::Refused(forbidden_relation(
            &format!("mysql.{}", r.name),
            "the mysql schema holds accounts, password hashes and grants",
        )));
    }
    if names.functions.is_empty() {
        return Ok(());
    }
    // Bound parameters only; the list's length is the only thing spliced in.
    let marks = vec!["?"; names.functions.len()].join(", ");
    let sql = format!(
        "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES \
         WHERE ROUTINE_TYPE = 'FUNCTION' AND SQL_DATA_ACCESS = 'MODIFIES SQL DATA' \
         AND ROUTINE_NAME IN ({marks})"
    );
    let mut lookup = sqlx::query_as::<_, (String, String)>(&sql);
    for f in names.functions {
        lookup = lookup.bind(f.name.as_str());
    }
    let rows = lookup.fetch_all(&mut *conn).await.map_err(query_error)?;
    for (schema, name) in rows {
        // Function and database names compare case-insensitively here (the collation of
        // information_schema, and MySQL's own rule for function names).
        let called = names.functions.iter().any(|f| {
            f.name.eq_ignore_ascii_case(&name)
                && f.schema
                    .as_deref()
                    .unwrap_or(&database)
                    .eq_ignore_ascii_case(&schema)
        });
        if called {
            return Err(ConnectorError::Refused(modifying_function(&schema, &name)));
        }
    }
    Ok(())
}
