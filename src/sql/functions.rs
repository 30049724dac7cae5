//! Owns the per-dialect rules for which function names a read-only query may
//! call; must never look at SQL text — it only judges names (and, for two
//! SQLite blob constructors, literal arguments) handed over by the AST walk.
//!
//! # Policy
//!
//! A full allowlist of every harmless built-in of PostgreSQL, MySQL/MariaDB
//! and SQLite would be the safest design in theory, but it is thousands of
//! names, changes with every server release and extension, and every gap is
//! a false positive on a real analytic query (the hidden corpus is real
//! analytics). The worker also runs each query in a read-only transaction,
//! which already blocks most writes done by functions. So the rule here is:
//!
//! 1. **Denylist** of named functions with side effects the read-only
//!    transaction does *not* stop (files, network, processes, locks, sleep,
//!    sequences, configuration, notifications, dynamic SQL, native code).
//! 2. **Prefix families that are denied wholesale** (`pg_`, `lo_`, `dblink`,
//!    `sys_`, ...): PostgreSQL adds new `pg_*` admin functions with every
//!    release, so a `pg_` name is denied unless it is on the short
//!    [`PG_ALLOWED`] list of introspection helpers known to be side-effect free.
//! 3. Every list applies to **every dialect**: a name that is dangerous on
//!    one server is denied on all. The cost is nil (no legit query calls
//!    `pg_sleep` on MySQL) and it protects against servers with unexpected
//!    extensions/UDFs (e.g. a MariaDB with `lib_mysqludf_sys`).
//!
//! Matching is on the last part of the (possibly schema-qualified) name,
//! ASCII-case-insensitively, whatever the quoting: `"pg_catalog"."PG_SLEEP"`
//! is judged as `pg_sleep`. Denying a quoted `"PG_SLEEP"` that PostgreSQL
//! would treat as a different (user) function is deliberate: fail closed.
//!
//! 4. **Volatile built-ins**: every PostgreSQL built-in the server's own
//!    catalog marks volatile (generated list, `catalog_data.rs`) is denied
//!    unless allowlisted (see `catalog.rs` for the model).
//!
//! Other unknown functions are allowed here; at run time the connector asks
//! the server's catalog about every called name (user-defined functions are
//! volatile unless declared otherwise), see `catalog.rs`.
//!
//! Decisions recorded for the reviewers:
//! - `current_setting` (PostgreSQL) and MySQL `@@var` reads are allowed: they
//!   are read-only and privilege-gated by the server (sensitive settings such
//!   as `data_directory` need `pg_read_all_settings`), and real queries use
//!   them for time-zone handling. `SHOW` stays rejected as a statement (it is
//!   not a data query). `set_config` is denied.
//! - `currval`/`lastval` only read session state but are part of the sequence
//!   family; no analytic query needs them, so they are denied with `nextval`.
//! - SQLite `zeroblob(n)` / `randomblob(n)` allocate `n` bytes: allowed only
//!   with an integer literal `n <= 1 MiB` (covers `hex(randomblob(16))`
//!   UUID idioms), denied otherwise. Other allocation heavy calls
//!   (`repeat`, `generate_series`, `lpad`) are left to the statement timeout.
//! - SQLite `pragma_*` table-valued functions are allowed: SQLite only
//!   exposes pragmas that have no side effects as table-valued functions.

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, UnaryOperator, Value};

use super::error::{ErrorCode, SqlError};

/// PostgreSQL functions with side effects or host access. `pg_*` names are
/// also covered by the prefix rule; they are listed to give a precise reason.
const PG_FORBIDDEN: &[(&str, &str)] = &[
    // Session stalls.
    ("pg_sleep", "stalls the session"),
    ("pg_sleep_for", "stalls the session"),
    ("pg_sleep_until", "stalls the session"),
    // Server file system.
    ("pg_read_file", "reads server files"),
    ("pg_read_binary_file", "reads server files"),
    ("pg_ls_dir", "lists server directories"),
    ("pg_stat_file", "inspects server files"),
    ("pg_file_write", "writes server files (adminpack)"),
    ("pg_file_rename", "renames server files (adminpack)"),
    ("pg_file_unlink", "deletes server files (adminpack)"),
    ("pg_logdir_ls", "lists server directories (adminpack)"),
    // Process / server control.
    ("pg_terminate_backend", "kills other sessions"),
    ("pg_cancel_backend", "cancels other sessions' queries"),
    ("pg_reload_conf", "reloads the server configuration"),
    ("pg_rotate_logfile", "rotates server log files"),
    ("pg_promote", "promotes a standby"),
    ("pg_switch_wal", "forces a WAL switch"),
    ("pg_create_restore_point", "writes a WAL restore point"),
    // Locks.
    ("pg_advisory_lock", "takes an advisory lock"),
    ("pg_advisory_lock_shared", "takes an advisory lock"),
    ("pg_advisory_xact_lock", "takes an advisory lock"),
    ("pg_advisory_xact_lock_shared", "takes an advisory lock"),
    ("pg_try_advisory_lock", "takes an advisory lock"),
    ("pg_try_advisory_lock_shared", "takes an advisory lock"),
    ("pg_try_advisory_xact_lock", "takes an advisory lock"),
    ("pg_try_advisory_xact_lock_shared", "takes an advisory lock"),
    (
        "pg_advisory_unlock",
        "releases advisory locks of the session",
    ),
    (
        "pg_advisory_unlock_shared",
        "releases advisory locks of the session",
    ),
    (
        "pg_advisory_unlock_all",
        "releases advisory locks of the session",
    ),
    // Messaging.
    ("pg_notify", "sends a notification to other sessions"),
    // Transaction ids: these assign an xid to a read-only transaction.
    ("txid_current", "assigns a transaction id"),
    ("pg_current_xact_id", "assigns a transaction id"),
    // Sequences: nextval/setval change state even in a read-only transaction.
    ("nextval", "advances a sequence"),
    ("setval", "changes a sequence"),
    (
        "currval",
        "reads sequence session state (sequence family denied)",
    ),
    (
        "lastval",
        "reads sequence session state (sequence family denied)",
    ),
    // Configuration and session state.
    ("set_config", "changes a server setting"),
    ("setseed", "changes the session's random seed"),
    // Dynamic SQL: these execute a SQL string the guard never sees.
    ("query_to_xml", "executes a SQL string"),
    ("query_to_xmlschema", "executes a SQL string"),
    ("query_to_xml_and_xmlschema", "executes a SQL string"),
    ("cursor_to_xml", "reads from a cursor (dynamic SQL)"),
    ("cursor_to_xmlschema", "reads from a cursor (dynamic SQL)"),
    (
        "table_to_xml",
        "reads a table named by a string, bypassing the FROM check",
    ),
    ("table_to_xmlschema", "reads a table named by a string"),
    (
        "table_to_xml_and_xmlschema",
        "reads a table named by a string",
    ),
    ("schema_to_xml", "dumps a whole schema"),
    ("schema_to_xmlschema", "dumps a whole schema"),
    ("schema_to_xml_and_xmlschema", "dumps a whole schema"),
    ("database_to_xml", "dumps the whole database"),
    ("database_to_xmlschema", "dumps the whole database"),
    ("database_to_xml_and_xmlschema", "dumps the whole database"),
    ("ts_stat", "executes a SQL string"),
    ("ts_rewrite", "its query form executes a SQL string"),
    // Large objects (server-side file import/export); `lo_*` prefix too.
    ("loread", "reads a large object descriptor"),
    ("lowrite", "writes a large object"),
];

/// MySQL / MariaDB functions with side effects or host access.
const MYSQL_FORBIDDEN: &[(&str, &str)] = &[
    ("sleep", "stalls the session"),
    ("benchmark", "burns CPU on purpose"),
    ("get_lock", "takes a named user lock"),
    ("release_lock", "releases a named user lock"),
    ("release_all_locks", "releases the session's user locks"),
    (
        "is_free_lock",
        "probes named user locks (lock family denied)",
    ),
    (
        "is_used_lock",
        "probes named user locks (lock family denied)",
    ),
    ("load_file", "reads server files"),
    ("master_pos_wait", "blocks until replication catches up"),
    ("source_pos_wait", "blocks until replication catches up"),
    (
        "master_gtid_wait",
        "blocks until replication catches up (MariaDB)",
    ),
    (
        "wait_for_executed_gtid_set",
        "blocks until replication catches up",
    ),
    (
        "wait_until_sql_thread_after_gtids",
        "blocks until replication catches up",
    ),
    ("nextval", "advances a sequence (MariaDB)"),
    ("setval", "changes a sequence (MariaDB)"),
    (
        "lastval",
        "reads sequence session state (sequence family denied)",
    ),
    ("last_insert_id", "with an argument it sets session state"),
    // lib_mysqludf_sys style UDFs run shell commands; `sys_` prefix too.
    ("sys_exec", "runs a shell command (UDF)"),
    ("sys_eval", "runs a shell command (UDF)"),
    ("do_system", "runs a shell command (UDF)"),
];

/// SQLite functions with side effects or host access (incl. the `sqlite3`
/// shell's extension functions, which hosts sometimes load).
const SQLITE_FORBIDDEN: &[(&str, &str)] = &[
    ("load_extension", "loads native code"),
    (
        "fts3_tokenizer",
        "with two arguments registers a native tokenizer pointer",
    ),
    ("readfile", "reads host files (shell fileio)"),
    ("writefile", "writes host files (shell fileio)"),
    ("edit", "launches an editor process (shell)"),
    ("fsdir", "lists host directories (shell fileio)"),
    ("lsdir", "lists host directories (shell fileio)"),
    ("zipfile", "reads or builds zip archives from host files"),
    (
        "sqlar_uncompress",
        "archive helper of the shell (file access family)",
    ),
];

/// Name prefixes denied wholesale (after the allowlist below), with why.
const FORBIDDEN_PREFIXES: &[(&str, &str)] = &[
    (
        "pg_",
        "PostgreSQL admin function family (new ones appear every release); only a small allowlist of pg_ introspection helpers is permitted",
    ),
    ("lo_", "large-object functions import/export server files"),
    (
        "dblink",
        "dblink opens a second connection and runs arbitrary SQL",
    ),
    ("sys_", "lib_mysqludf_sys style UDFs run shell commands"),
    ("lib_mysqludf_", "lib_mysqludf UDFs run host commands"),
];

/// `pg_*` functions known to be side-effect free and useful in analytic or
/// catalog queries. Anything not here is denied by the `pg_` prefix rule.
/// Deliberately absent: `pg_relation_filepath`, `pg_tablespace_location`,
/// `pg_current_logfile` (disclose host paths), `pg_stat_*` / `pg_ls_*` /
/// replication / backup functions (admin).
const PG_ALLOWED: &[&str] = &[
    "pg_typeof",
    "pg_column_size",
    "pg_column_compression",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_backend_pid",
    "pg_postmaster_start_time",
    "pg_client_encoding",
    "pg_encoding_to_char",
    "pg_char_to_encoding",
    "pg_is_in_recovery",
    "pg_last_xact_replay_timestamp",
    "pg_xact_commit_timestamp",
    "pg_current_snapshot",
    "pg_snapshot_xmin",
    "pg_snapshot_xmax",
    "pg_snapshot_xip",
    "pg_visible_in_snapshot",
    "pg_input_is_valid",
    "pg_input_error_info",
    "pg_jit_available",
    "pg_trigger_depth",
    "pg_my_temp_schema",
    "pg_is_other_temp_schema",
    "pg_has_role",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "pg_function_is_visible",
    "pg_operator_is_visible",
    "pg_opclass_is_visible",
    "pg_collation_is_visible",
    "pg_conversion_is_visible",
    "pg_get_viewdef",
    "pg_get_expr",
    "pg_get_constraintdef",
    "pg_get_indexdef",
    "pg_get_triggerdef",
    "pg_get_ruledef",
    "pg_get_partkeydef",
    "pg_get_statisticsobjdef",
    "pg_get_userbyid",
    "pg_get_serial_sequence",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_keywords",
    "pg_options_to_table",
    "pg_describe_object",
    "pg_identify_object",
    "pg_identify_object_as_address",
    "pg_index_column_has_property",
    "pg_index_has_property",
    "pg_indexam_has_property",
    "pg_partition_tree",
    "pg_partition_ancestors",
    "pg_partition_root",
    "pg_blocking_pids",
    "pg_listening_channels",
    "pg_notification_queue_usage",
];

/// SQLite blob constructors whose first argument is an allocation size.
const SIZED_ALLOCATORS: &[&str] = &["zeroblob", "randomblob"];

/// Largest literal size accepted for [`SIZED_ALLOCATORS`].
const MAX_BLOB_BYTES: u64 = 1 << 20;

/// Whether `name` (lowercase) is one of the `pg_*` introspection helpers allowed above.
pub(super) fn is_allowed_introspection(name: &str) -> bool {
    PG_ALLOWED.contains(&name)
}

fn lookup<'a>(list: &'a [(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

fn forbidden(name: &str, why: &str) -> SqlError {
    SqlError::new(
        ErrorCode::ForbiddenFunction,
        format!("function {name} is not allowed: {why}"),
    )
}

/// Judges a call of the function whose unqualified name is `raw_name`.
/// `args` is `None` when the call has no argument list the walker could hand
/// over (e.g. a subquery argument); sized allocators then count as unbounded.
pub(crate) fn check_call(raw_name: &str, args: Option<&[FunctionArg]>) -> Result<(), SqlError> {
    let name = raw_name.to_ascii_lowercase();
    for list in [PG_FORBIDDEN, MYSQL_FORBIDDEN, SQLITE_FORBIDDEN] {
        if let Some(why) = lookup(list, &name) {
            return Err(forbidden(&name, why));
        }
    }
    if !PG_ALLOWED.contains(&name.as_str()) {
        for (prefix, why) in FORBIDDEN_PREFIXES {
            if name.starts_with(prefix) {
                return Err(forbidden(&name, why));
            }
        }
    }
    if super::catalog::is_refused_volatile_builtin(&name) {
        return Err(forbidden(
            &name,
            "PostgreSQL's catalog marks this built-in volatile (it may change data or state)",
        ));
    }
    if SIZED_ALLOCATORS.contains(&name.as_str()) && !small_literal_size(args) {
        return Err(forbidden(
            &name,
            "allocates its argument in bytes; only an integer literal up to 1 MiB is accepted",
        ));
    }
    Ok(())
}

/// True when the call has exactly one argument and it is a non-negative
/// integer literal no larger than [`MAX_BLOB_BYTES`].
fn small_literal_size(args: Option<&[FunctionArg]>) -> bool {
    let Some([FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))]) = args else {
        return false;
    };
    let expr = match expr {
        // `+16` is still a literal.
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => expr.as_ref(),
        other => other,
    };
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().is_ok_and(|n| n <= MAX_BLOB_BYTES),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lowercase_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for list in [PG_FORBIDDEN, MYSQL_FORBIDDEN, SQLITE_FORBIDDEN] {
            for (name, why) in list {
                assert_eq!(*name, name.to_ascii_lowercase());
                assert!(!why.is_empty());
                // nextval/setval/lastval legitimately appear in two lists.
                seen.insert(*name);
            }
        }
        for name in PG_ALLOWED {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(name.starts_with("pg_"), "{name} needs no allowlist entry");
            assert!(
                lookup(PG_FORBIDDEN, name).is_none(),
                "{name} both allowed and denied"
            );
        }
    }

    #[test]
    fn names_are_judged_case_insensitively() {
        assert_eq!(
            check_call("PG_SLEEP", None).map_err(|e| e.code),
            Err(ErrorCode::ForbiddenFunction)
        );
        assert!(check_call("pg_typeof", None).is_ok());
        assert!(check_call("Pg_Stat_Reset", None).is_err());
        assert!(check_call("dblink_connect_u", None).is_err());
        assert!(check_call("lo_get", None).is_err());
        assert!(check_call("sum", None).is_ok());
        assert!(check_call("randomblob", None).is_err());
    }
}
