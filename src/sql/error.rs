//! Owns the guard's rejection type and its stable error codes; must never
//! carry anything but a code and a human-readable message (no AST, no spans
//! that could leak parser internals into the wire format).

use std::fmt;

/// Why a statement was rejected.
///
/// The string form ([`ErrorCode::as_str`]) is a contract with callers and the
/// corpus tooling: never rename a code, only add new ones (hence
/// `#[non_exhaustive]`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The parser could not parse the input (we fail closed).
    ParseError,
    /// No statement at all (only whitespace / comments / `;`).
    Empty,
    /// More than one statement.
    MultipleStatements,
    /// A statement that is not a query, or DML/DDL anywhere inside one.
    NotReadOnly,
    /// `SELECT ... INTO` (table or variables); MySQL `INTO OUTFILE` is a
    /// parse error because sqlparser does not know it.
    SelectInto,
    /// `FOR UPDATE` / `FOR SHARE` / `LOCK IN SHARE MODE` ...
    LockingClause,
    /// `INSERT` / `UPDATE` / `DELETE` / `MERGE` inside `WITH`.
    DataModifyingCte,
    /// `EXPLAIN ANALYZE` executes the explained statement.
    ExplainAnalyze,
    /// A function (or table function) on the deny rules of `functions.rs`, or
    /// one the database's catalog marks volatile (not on the short allowlist).
    ForbiddenFunction,
    /// MySQL `@var := expr` inside a query.
    VariableAssignment,
    /// The input is over [`super::MAX_SQL_BYTES`]; checked before parsing.
    TooLarge,
    /// Nesting deeper than the parser's or the walker's limit.
    TooDeep,
    /// A character or token the server lexes differently from the guard
    /// (non-ASCII whitespace outside literals, MariaDB `/*M!`, an identifier the
    /// server truncates, a malformed `U&"..."`).
    LexingMismatch,
    /// The guard's rendering of the statement (the text that is sent to the
    /// server) does not parse back to the statement that was checked.
    RenderMismatch,
    /// A relation that exposes the server's files or secrets (PostgreSQL
    /// `pg_hba_file_rules`, `pg_authid`, ...; MySQL/MariaDB `mysql.*`).
    ForbiddenRelation,
    /// Syntax sqlparser accepts (usually for another dialect) that the guard
    /// does not vet; rejected rather than guessed about.
    Unsupported,
    /// A positional placeholder (`?`, `$1`): only `:name` run parameters are bound.
    Placeholder,
}

impl ErrorCode {
    /// Every code, in declaration order (the metrics start each at 0).
    pub(crate) const ALL: [ErrorCode; 17] = [
        ErrorCode::ParseError,
        ErrorCode::Empty,
        ErrorCode::MultipleStatements,
        ErrorCode::NotReadOnly,
        ErrorCode::SelectInto,
        ErrorCode::LockingClause,
        ErrorCode::DataModifyingCte,
        ErrorCode::ExplainAnalyze,
        ErrorCode::ForbiddenFunction,
        ErrorCode::VariableAssignment,
        ErrorCode::TooLarge,
        ErrorCode::TooDeep,
        ErrorCode::LexingMismatch,
        ErrorCode::RenderMismatch,
        ErrorCode::ForbiddenRelation,
        ErrorCode::Unsupported,
        ErrorCode::Placeholder,
    ];

    /// The stable wire name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "parse_error",
            ErrorCode::Empty => "empty",
            ErrorCode::MultipleStatements => "multiple_statements",
            ErrorCode::NotReadOnly => "not_read_only",
            ErrorCode::SelectInto => "select_into",
            ErrorCode::LockingClause => "locking_clause",
            ErrorCode::DataModifyingCte => "data_modifying_cte",
            ErrorCode::ExplainAnalyze => "explain_analyze",
            ErrorCode::ForbiddenFunction => "forbidden_function",
            ErrorCode::VariableAssignment => "variable_assignment",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::LexingMismatch => "lexing_mismatch",
            ErrorCode::RenderMismatch => "render_mismatch",
            ErrorCode::ForbiddenRelation => "forbidden_relation",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Placeholder => "placeholder",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected statement: a stable [`ErrorCode`] and a message naming the
/// offending construct (safe to show to the workflow author).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SqlError {
    /// Stable, machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail, e.g. `function pg_sleep is not allowed: stalls the session`.
    pub message: String,
}

impl SqlError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SqlError {
            code,
            message: message.into(),
        }
    }
}
