//! Owns the guard's judgement of functions and relations by what the servers' catalogs say
//! they are: the static layer (generated lists in `catalog_data.rs`, used with no database) and
//! the decisions the connector's run-time catalog check asks for. Must never talk to a server
//! itself: the connector does that and hands the catalog's answers here.
//!
//! # The model
//!
//! - **Functions.** PostgreSQL marks every function volatile, stable or immutable
//!   (`pg_proc.provolatile`); every built-in with a side effect is volatile, and so is every
//!   user-defined function unless its author declared otherwise. A query may call a volatile
//!   function only if it is a built-in (schema `pg_catalog`) on [`VOLATILE_ALLOWED`] or on the
//!   introspection allowlist of `functions.rs`: volatile because its answer changes, not
//!   because it changes anything. Statically (no database) the built-in list of
//!   `catalog_data.rs` applies to every dialect, like every other function rule; at run time
//!   the connector looks the called names up in the server's own catalog, which also covers
//!   user-defined functions and newer server versions. MySQL/MariaDB keep no volatility for
//!   built-ins (their side-effect functions are on the hand-kept lists of `functions.rs`); at
//!   run time stored functions declared `MODIFIES SQL DATA` are refused.
//! - **Relations.** PostgreSQL relations of `pg_catalog` that PUBLIC may not read (the
//!   server's own judgement: they expose configuration files, password hashes, internals) and
//!   the user-mapping views (foreign-server passwords) are refused, statically by name and at
//!   run time by asking the server which referenced relations PUBLIC may not read. On
//!   MySQL/MariaDB every relation of the `mysql` schema (accounts, password hashes, grants,
//!   federated servers' passwords) is refused.

use super::catalog_data::{PG_RESTRICTED_RELATIONS, PG_VOLATILE};
use super::error::{ErrorCode, SqlError};
use super::{Dialect, ObjectRef};

/// Volatile built-ins that only read (a clock, a random source): allowed although volatile.
/// The `pg_*` introspection helpers of `functions.rs` (sizes, recovery state, ...) are allowed
/// too: they are volatile because their answers change.
const VOLATILE_ALLOWED: &[&str] = &["clock_timestamp", "gen_random_uuid", "random", "timeofday"];

/// Whether `name` (lowercase) is a volatile PostgreSQL built-in the guard refuses.
pub(super) fn is_refused_volatile_builtin(name: &str) -> bool {
    PG_VOLATILE.binary_search(&name).is_ok() && !volatile_allowed(name)
}

fn volatile_allowed(name: &str) -> bool {
    VOLATILE_ALLOWED.contains(&name) || super::functions::is_allowed_introspection(name)
}

/// The run-time decision on a function the server's catalog marks volatile: allowed only for
/// the allowlisted built-ins of `pg_catalog`.
pub(crate) fn volatile_function_allowed(schema: &str, name: &str) -> bool {
    schema == "pg_catalog" && volatile_allowed(name)
}

/// The refusal of a function the catalog marks volatile.
pub(crate) fn volatile_function(schema: &str, name: &str) -> SqlError {
    SqlError::new(
        ErrorCode::ForbiddenFunction,
        format!(
            "function {schema}.{name} is not allowed: the database marks it volatile (it may \
             change data or state)"
        ),
    )
}

/// The refusal of a stored function declared to modify data (MySQL/MariaDB).
pub(crate) fn modifying_function(schema: &str, name: &str) -> SqlError {
    SqlError::new(
        ErrorCode::ForbiddenFunction,
        format!("function {schema}.{name} is not allowed: it is declared MODIFIES SQL DATA"),
    )
}

/// The refusal of a relation that exposes the server's files or secrets.
pub(crate) fn forbidden_relation(name: &str, why: &str) -> SqlError {
    SqlError::new(
        ErrorCode::ForbiddenRelation,
        format!("relation {name} is not allowed: {why}"),
    )
}

/// The static relation rules (see the module docs).
pub(super) fn check_relations(relations: &[ObjectRef], dialect: Dialect) -> Result<(), SqlError> {
    for r in relations {
        let name = r.name.to_ascii_lowercase();
        let schema = r.schema.as_deref().map(str::to_ascii_lowercase);
        let system_schema = match schema.as_deref() {
            None | Some("pg_catalog" | "information_schema") => true,
            Some(_) => false,
        };
        if system_schema
            && PG_RESTRICTED_RELATIONS
                .binary_search(&name.as_str())
                .is_ok()
        {
            return Err(forbidden_relation(
                &name,
                "a system relation that exposes the server's files or secrets",
            ));
        }
        if dialect == Dialect::Mysql && schema.as_deref() == Some("mysql") {
            return Err(forbidden_relation(
                &format!("mysql.{name}"),
                "the mysql schema holds accounts, password hashes and grants",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lists_are_sorted_lowercase_and_unique() {
        for list in [PG_VOLATILE, PG_RESTRICTED_RELATIONS] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            assert!(list.iter().all(|n| *n == n.to_ascii_lowercase()));
        }
        for name in VOLATILE_ALLOWED {
            assert!(
                PG_VOLATILE.contains(name),
                "{name} is not volatile: no entry needed"
            );
        }
    }

    #[test]
    fn the_side_effect_builtins_of_the_review_are_on_the_generated_list() {
        for name in [
            "brin_summarize_new_values",
            "gin_clean_pending_list",
            "nextval",
        ] {
            assert!(is_refused_volatile_builtin(name), "{name}");
        }
        for name in ["random", "clock_timestamp", "pg_relation_size"] {
            assert!(!is_refused_volatile_builtin(name), "{name}");
        }
        assert!(!is_refused_volatile_builtin("upper"));
        for name in [
            "pg_hba_file_rules",
            "pg_file_settings",
            "pg_authid",
            "pg_shadow",
        ] {
            assert!(PG_RESTRICTED_RELATIONS.contains(&name), "{name}");
        }
    }
}
