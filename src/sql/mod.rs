//! Owns the read-only SQL guard: the only way to obtain a [`ReadOnlyQuery`]
//! (SQL vetted to be a single side-effect-free query) is [`guard`]. This
//! module must never judge SQL by scanning text: everything is decided on
//! sqlparser's tokens and AST, and whatever cannot be parsed is rejected.
//!
//! Layout: `error.rs` (codes), `walk/` (the AST walk), `functions.rs`
//! (per-dialect function rules as commented data). Only `super::`/`self::`
//! paths are used so the folder can be dropped into another crate as
//! `src/sql/`.
//!
//! Server-side assumptions (the guard lexes like the server only if these
//! hold; the worker's connection setup must keep them):
//! - PostgreSQL: `standard_conforming_strings = on` (the default since 9.1).
//! - MySQL/MariaDB: `sql_mode` without `NO_BACKSLASH_ESCAPES` and without
//!   `ANSI_QUOTES`; multi-statements disabled on the connection.

mod error;
mod functions;
mod walk;

use std::fmt;
use std::str::FromStr;

use sqlparser::dialect::{
    Dialect as ParserDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

pub use error::{ErrorCode, SqlError};

/// Inputs larger than this are rejected before any parsing.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// sqlparser's recursion limit (parenthesised expressions, subqueries, table
/// factors, data types). Real analytic queries stay far below; the parser's
/// default is 50.
const PARSER_RECURSION_LIMIT: usize = 64;

/// Inputs up to this size are guarded on the caller's thread. Larger ones run
/// on a helper thread with a stack sized to the input: sqlparser builds
/// left-deep chains (`1+1+1...`, `... UNION SELECT ...`) without recursion
/// and limit, and dropping such an AST recurses once per link. 16 KiB of SQL
/// yields at most ~8k links, well inside a 2 MiB thread stack.
const INLINE_MAX_BYTES: usize = 16 * 1024;

/// Stack bytes reserved per input byte on the helper thread (a chain link
/// costs at least two input bytes and well under 100 bytes of stack to drop
/// in a debug build), plus a fixed base for the parser itself.
const STACK_PER_INPUT_BYTE: usize = 64;
const STACK_BASE: usize = 8 << 20;

/// SQL dialect of the target server.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL, also used for MariaDB.
    #[serde(alias = "mariadb")]
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// Canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    fn parser_dialect(self) -> &'static dyn ParserDialect {
        match self {
            Dialect::Postgres => &PostgreSqlDialect {},
            Dialect::Mysql => &MySqlDialect {},
            Dialect::Sqlite => &SQLiteDialect {},
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Dialect::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown SQL dialect {0:?} (expected postgres, postgresql, mysql, mariadb or sqlite)")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::Mysql),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(UnknownDialect(s.to_owned())),
        }
    }
}

/// SQL that [`guard`] vetted as one read-only query. Fields are private so
/// that holding one proves the check ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlyQuery {
    sql: String,
    dialect: Dialect,
    normalized: String,
    explain: bool,
}

impl ReadOnlyQuery {
    /// The text to send to the server: the caller's SQL minus one trailing
    /// `;` (comments and formatting are kept).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Consumes the query, returning the text to send.
    pub fn into_sql(self) -> String {
        self.sql
    }

    /// The dialect it was vetted for.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the statement is a plain `EXPLAIN` (it cannot be wrapped in `COPY`, for example).
    pub fn is_explain(&self) -> bool {
        self.explain
    }

    /// The parsed statement re-rendered by sqlparser (comments and layout
    /// dropped): a cache key, never the text to execute.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }
}

/// Vets `sql` as a single read-only query for `dialect`.
///
/// Never panics: a panic inside the parser is caught and reported as
/// `parse_error` (when the binary unwinds on panic).
pub fn guard(sql: &str, dialect: Dialect) -> Result<ReadOnlyQuery, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::new(
            ErrorCode::TooLarge,
            format!(
                "SQL is {} bytes; the limit is {MAX_SQL_BYTES} bytes",
                sql.len()
            ),
        ));
    }
    if sql.len() <= INLINE_MAX_BYTES {
        return std::panic::catch_unwind(|| guard_inner(sql, dialect))
            .unwrap_or_else(|_| Err(internal_failure()));
    }
    let stack = STACK_BASE.saturating_add(sql.len().saturating_mul(STACK_PER_INPUT_BYTE));
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("sql-guard".to_owned())
            .stack_size(stack)
            .spawn_scoped(scope, || guard_inner(sql, dialect))
        {
            Ok(handle) => handle.join().unwrap_or_else(|_| Err(internal_failure())),
            // Fail closed when no thread can be had.
            Err(e) => Err(SqlError::new(
                ErrorCode::TooLarge,
                format!("no resources to check a {} byte statement: {e}", sql.len()),
            )),
        }
    })
}

fn internal_failure() -> SqlError {
    SqlError::new(ErrorCode::ParseError, "the SQL parser failed on this input")
}

fn guard_inner(sql: &str, dialect: Dialect) -> Result<ReadOnlyQuery, SqlError> {
    let parser_dialect = dialect.parser_dialect();
    let tokens = Tokenizer::new(parser_dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::new(ErrorCode::ParseError, e.to_string()))?;
    check_lexing(&tokens, dialect)?;
    let semicolon = single_trailing_semicolon(sql, &tokens)?;

    let mut parser = Parser::new(parser_dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    // `TABLE t` is a query (PostgreSQL, MySQL 8), but sqlparser only knows it inside a query
    // body, so a statement starting with the TABLE keyword token is parsed as a query.
    let starts_with_table = matches!(
        &parser.peek_token_ref().token,
        Token::Word(w) if w.keyword == sqlparser::keywords::Keyword::TABLE
    ) && dialect != Dialect::Sqlite;
    let parsed = if starts_with_table {
        parser.parse_query().map(|q| {
            let _ = parser.consume_token(&Token::SemiColon);
            vec![sqlparser::ast::Statement::Query(q)]
        })
    } else {
        parser.parse_statements()
    };
    let statements = parsed.map_err(|e| match e {
        ParserError::RecursionLimitExceeded => SqlError::new(
            ErrorCode::TooDeep,
            format!("SQL nests deeper than the parser limit of {PARSER_RECURSION_LIMIT}"),
        ),
        other => SqlError::new(ErrorCode::ParseError, other.to_string()),
    })?;
    // parse_statements stops early at a stray `END` keyword; anything left
    // unparsed would still reach the server, so it is an error here.
    let rest = parser.peek_token_ref();
    if rest.token != Token::EOF {
        return Err(SqlError::new(
            ErrorCode::ParseError,
            format!(
                "unexpected {} at line {}, column {}",
                rest.token, rest.span.start.line, rest.span.start.column
            ),
        ));
    }
    let statement = match statements.as_slice() {
        [] => return Err(SqlError::new(ErrorCode::Empty, "no SQL statement")),
        [one] => one,
        _ => {
            return Err(SqlError::new(
                ErrorCode::MultipleStatements,
                format!("{} statements; exactly one is allowed", statements.len()),
            ));
        }
    };
    walk::check_statement(statement)?;

    let text = match semicolon {
        None => sql.to_owned(),
        Some(at) => {
            let mut text = String::with_capacity(sql.len());
            text.push_str(&sql[..at]);
            text.push_str(&sql[at + 1..]);
            text
        }
    };
    Ok(ReadOnlyQuery {
        sql: text,
        dialect,
        normalized: statement.to_string(),
        explain: matches!(statement, sqlparser::ast::Statement::Explain { .. }),
    })
}

/// Rejects token streams that the server would lex differently than
/// sqlparser does, so that what is vetted is what runs.
fn check_lexing(tokens: &[TokenWithSpan], dialect: Dialect) -> Result<(), SqlError> {
    if dialect == Dialect::Postgres {
        // PostgreSQL reads `U&"pg\005fsleep"` as ONE identifier (pg_sleep);
        // sqlparser reads `U & "pg\005fsleep"`, hiding the real name from
        // the function rules. Reject `U&` glued to a quoted identifier.
        for w in tokens.windows(3) {
            if let [
                TokenWithSpan {
                    token: Token::Word(u),
                    ..
                },
                TokenWithSpan {
                    token: Token::Ampersand,
                    ..
                },
                third,
            ] = w
                && u.quote_style.is_none()
                && u.value.eq_ignore_ascii_case("u")
                && matches!(&third.token, Token::Word(q) if q.quote_style.is_some())
            {
                return Err(lexing_error("Unicode-escaped identifier U&\"...\"", third));
            }
        }
    }
    for t in tokens {
        if let Token::Whitespace(Whitespace::MultiLineComment(body)) = &t.token {
            // PostgreSQL nests block comments, sqlparser's PostgreSQL dialect
            // does not: `/* /* */ ... */` would hide or reveal code.
            if dialect == Dialect::Postgres && body.contains("/*") {
                return Err(lexing_error("nested block comment", t));
            }
            // MariaDB executes `/*M! ... */`; sqlparser sees a comment.
            // (`/*! ... */` is expanded into tokens by sqlparser itself.)
            if dialect == Dialect::Mysql && body.starts_with("M!") {
                return Err(lexing_error("MariaDB executable comment /*M!", t));
            }
        }
    }
    Ok(())
}

fn lexing_error(what: &str, t: &TokenWithSpan) -> SqlError {
    SqlError::new(
        ErrorCode::ParseError,
        format!(
            "{what} at line {}, column {} is read differently by the server",
            t.span.start.line, t.span.start.column
        ),
    )
}

/// Finds the one `;` allowed after the statement and returns its byte offset
/// in the input; any other `;` means several (possibly empty) statements.
fn single_trailing_semicolon(
    sql: &str,
    tokens: &[TokenWithSpan],
) -> Result<Option<usize>, SqlError> {
    let significant: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .collect();
    let semicolons = significant
        .iter()
        .filter(|t| t.token == Token::SemiColon)
        .count();
    if semicolons == significant.len() {
        return Err(SqlError::new(ErrorCode::Empty, "no SQL statement"));
    }
    let location = match (semicolons, significant.last()) {
        (0, _) => return Ok(None),
        (1, Some(last)) if last.token == Token::SemiColon => last.span.start,
        _ => {
            return Err(SqlError::new(
                ErrorCode::MultipleStatements,
                "only one statement is allowed (a `;` may only end it)",
            ));
        }
    };
    // Token locations are 1-based (line, char column); map back to bytes the
    // way the tokenizer counts (only `\n` starts a new line) and make sure
    // the byte found really is the `;` (fail closed otherwise, e.g. for a
    // `;` produced inside a MySQL `/*! ... */` comment).
    let (mut line, mut column) = (1u64, 1u64);
    for (offset, ch) in sql.char_indices() {
        if line == location.line && column == location.column {
            return if ch == ';' {
                Ok(Some(offset))
            } else {
                Err(SqlError::new(
                    ErrorCode::ParseError,
                    "could not locate the trailing `;` in the input",
                ))
            };
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Err(SqlError::new(
        ErrorCode::ParseError,
        "could not locate the trailing `;` in the input",
    ))
}

#[cfg(test)]
mod tests;
