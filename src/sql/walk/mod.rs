//! Owns the AST walk that decides whether one parsed statement is a
//! read-only query; must never look at SQL text (only the AST) and must never
//! let an AST node through without having looked at it.
//!
//! # Why a hand-written walk and not `sqlparser::ast::Visitor`
//!
//! The `visitor` feature is not used (it needs `sqlparser_derive`, and its
//! default methods silently recurse, so a missed override is a silent
//! bypass). Instead every enum the walk touches is matched **exhaustively,
//! without a `_` arm** (sqlparser's AST enums are not `#[non_exhaustive]`):
//! when a sqlparser upgrade adds a variant, this module stops compiling and the
//! new syntax must be judged explicitly. The only `_` arm is on `Statement`,
//! where anything but a query / plain EXPLAIN is rejected by default.
//! Struct fields are destructured with all fields named (no `..`) for the
//! same reason: a new field that may hold an expression is a compile error.
//!
//! Constructs of other dialects that sqlparser happens to accept (pipe
//! syntax, PIVOT, MATCH_RECOGNIZE, SETTINGS, ...) are rejected as
//! `unsupported` rather than vetted.
//!
//! Stack use: recursion is bounded by [`MAX_WALK_DEPTH`]; the two shapes the
//! parser builds without recursing (left-deep chains of binary operators and
//! of UNION/EXCEPT/INTERSECT) are walked iteratively along their left spine,
//! so long `a OR b OR ...` / `UNION ALL` lists do not count against it.
//!
//! Layout: this file holds the entry point [`check_statement`], the
//! [`Walker`] state and the shared helpers; `query.rs` walks queries, set
//! operations and SELECT, `relation.rs` walks FROM items and joins,
//! `expr.rs` walks expressions and function calls. Each adds its own
//! `impl Walker` block.

mod expr;
mod query;
mod relation;

use sqlparser::ast::{Expr, FunctionArg, ObjectName, ObjectNamePart, Statement};

// The submodules import these (and the private helpers below) via `super::`.
use super::error::{ErrorCode, SqlError};
use super::functions;

/// Deepest recursion of the walk. The parser's own limit already caps
/// parenthesised / subquery nesting far below this; what remains are
/// postfix chains (`x::int::text...`, `x IS NULL IS NULL ...`) that no real
/// query nests hundreds deep.
pub(crate) const MAX_WALK_DEPTH: usize = 200;

type Outcome = Result<(), SqlError>;

fn err(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Err(SqlError::new(code, message))
}

fn unsupported(what: &str) -> Outcome {
    err(
        ErrorCode::Unsupported,
        format!("{what} is not supported by the read-only guard"),
    )
}

/// The names a statement uses, collected by the walk for the catalog checks.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Every called function's name.
    pub(crate) functions: Vec<ObjectName>,
    /// Every relation named in FROM, `TABLE t` or `IN t`.
    pub(crate) relations: Vec<ObjectName>,
    /// Every `:name` placeholder: the name, and where the placeholder is in the text.
    pub(crate) placeholders: Vec<(String, sqlparser::tokenizer::Span)>,
}

/// Judges one top-level statement; returns the names it uses.
pub(crate) fn check_statement(stmt: &Statement) -> Result<Names, SqlError> {
    let mut walker = Walker::default();
    walker.statement(stmt)?;
    Ok(walker.names)
}

impl Walker {
    fn statement(&mut self, stmt: &Statement) -> Outcome {
        let walker = self;
        match stmt {
            Statement::Query(query) => walker.query(query),
            Statement::Explain {
                describe_alias: _,
                analyze,
                verbose: _,
                query_plan: _,
                estimate: _,
                statement,
                format: _,
                options,
            } => {
                if *analyze {
                    return err(
                        ErrorCode::ExplainAnalyze,
                        "EXPLAIN ANALYZE executes the statement",
                    );
                }
                for option in options.iter().flatten() {
                    let name = option.name.value.to_ascii_lowercase();
                    match name.as_str() {
                        "analyze" | "analyse" => {
                            return err(
                                ErrorCode::ExplainAnalyze,
                                "EXPLAIN (ANALYZE) executes the statement",
                            );
                        }
                        // Plan-only options (PostgreSQL). BUFFERS/WAL/TIMING/
                        // SUMMARY/SERIALIZE/MEMORY only add detail; without
                        // ANALYZE nothing is executed.
                        "verbose" | "costs" | "settings" | "generic_plan" | "buffers" | "wal"
                        | "timing" | "summary" | "memory" | "serialize" | "format" => {}
                        _ => {
                            return err(
                                ErrorCode::Unsupported,
                                format!("EXPLAIN option {} is not supported", option.name.value),
                            );
                        }
                    }
                }
                match statement.as_ref() {
                    Statement::Query(query) => walker.query(query),
                    other => err(
                        ErrorCode::NotReadOnly,
                        format!(
                            "EXPLAIN is only allowed for a read-only query, not {}",
                            statement_label(other)
                        ),
                    ),
                }
            }
            other => err(
                ErrorCode::NotReadOnly,
                format!("{} is not a read-only query", statement_label(other)),
            ),
        }
    }
}

/// A short label for a rejected statement: its leading keywords as rendered
/// by sqlparser (e.g. `INSERT`, `SET`, `COPY`, `START TRANSACTION`).
fn statement_label(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        // sqlparser renders keywords in upper case, identifiers as written.
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(2)
        .collect();
    if words.is_empty() {
        "this statement".to_owned()
    } else {
        format!("statement {}", words.join(" "))
    }
}

#[derive(Default)]
struct Walker {
    depth: usize,
    /// >0 while inside a CTE body: DML there is a data-modifying CTE.
    in_cte: usize,
    /// What the statement calls and reads.
    names: Names,
}

impl Walker {
    /// Runs `f` one recursion level deeper, failing closed past the limit.
    fn deeper(&mut self, f: impl FnOnce(&mut Self) -> Outcome) -> Outcome {
        if self.depth >= MAX_WALK_DEPTH {
            return err(
                ErrorCode::TooDeep,
                format!("query nests deeper than {MAX_WALK_DEPTH} levels"),
            );
        }
        self.depth += 1;
        let outcome = f(self);
        self.depth -= 1;
        outcome
    }

    fn exprs<'a>(&mut self, exprs: impl IntoIterator<Item = &'a Expr>) -> Outcome {
        for e in exprs {
            self.expr(e)?;
        }
        Ok(())
    }

    /// Judges a call of `name` by the function rules and records it.
    fn call(&mut self, name: &ObjectName, args: Option<&[FunctionArg]>) -> Outcome {
        functions::check_call(plain_name(name)?, args)?;
        self.names.functions.push(name.clone());
        Ok(())
    }

    /// Records a relation the statement reads.
    fn relation(&mut self, name: &ObjectName) -> Outcome {
        plain_name(name)?;
        self.names.relations.push(name.clone());
        Ok(())
    }

    fn opt_expr(&mut self, e: Option<&Expr>) -> Outcome {
        match e {
            Some(e) => self.expr(e),
            None => Ok(()),
        }
    }
}

/// The last identifier of a (possibly qualified) name. Name parts that are
/// themselves function calls (Snowflake `IDENTIFIER(...)`) are rejected.
fn plain_name(name: &ObjectName) -> Result<&str, SqlError> {
    let mut last = None;
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => last = Some(ident.value.as_str()),
            ObjectNamePart::Function(_) => {
                return Err(SqlError::new(
                    ErrorCode::Unsupported,
                    format!("computed name {name} is not supported by the read-only guard"),
                ));
            }
        }
    }
    last.ok_or_else(|| SqlError::new(ErrorCode::ParseError, "empty object name"))
}
