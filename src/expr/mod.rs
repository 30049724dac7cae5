//! The expression compiler: py-polars expression source (Python syntax) in, native Polars
//! `Expr` out. Parse with rustpython-parser, walk the tree against an allowlist, resolve every
//! call through the registry, and build the Polars expression. There is no eval, no Python,
//! no fallback: what is not in the registry does not exist.
//!
//! ```
//! let checked = hubworker::expr::check(r#"pl.col("price") * pl.col("qty")"#).unwrap();
//! let _expr: polars::prelude::Expr = hubworker::expr::compile(&checked);
//! ```

mod args;
mod cache;
mod duration;
mod error;
mod exprs;
mod funcs;
pub mod limits;
mod ops;
mod param;
mod registry;
mod tree;
mod val;
mod value;
mod walk;

use std::sync::Arc;

use polars::prelude::{Expr, NULL, lit};
use rustpython_parser::text_size::TextSize;
use rustpython_parser::{Parse, ast};

pub use cache::{ExprCache, global as global_cache};
pub use error::{ErrorCode, ExprError};
pub use funcs::reference_markdown;
pub use param::{MAX_PARAM_NAME, bind as bind_params, is_param_name, param_names};

use limits::{DEEP_TREE_SOURCE_BYTES, MAX_BRACKET_DEPTH, MAX_SOURCE_BYTES};
use val::Val;

/// An expression that passed every check. It can only be made by [`check`].
#[derive(Debug, Clone)]
pub struct CheckedExpr {
    expr: Expr,
}

impl CheckedExpr {
    /// The compiled Polars expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

/// Compiles a checked expression into a Polars expression (cheap: the work was done in `check`).
pub fn compile(checked: &CheckedExpr) -> Expr {
    checked.expr.clone()
}

/// Parses, checks and resolves `src`. Every rejection is an [`ExprError`] with a stable code.
pub fn check(src: &str) -> Result<CheckedExpr, ExprError> {
    let len = u32::try_from(src.len()).unwrap_or(u32::MAX);
    if src.len() > MAX_SOURCE_BYTES {
        return Err(ExprError::new(
            ErrorCode::LimitExceeded,
            format!(
                "expression is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                src.len()
            ),
            (0, len),
        ));
    }
    if src.trim().is_empty() {
        return Err(ExprError::new(
            ErrorCode::Syntax,
            "empty expression",
            (0, len),
        ));
    }
    check_bracket_nesting(src, len)?;
    check_last_line(src, len)?;
    // Parsed as written: like Python's ast.parse(src, mode="eval"), an indented first line is
    // an IndentationError (leading blank lines and comments are fine).
    let tree = parse_expression(src, TextSize::default()).map_err(|e| {
        let at = e.offset.to_u32().min(len);
        ExprError::new(
            ErrorCode::Syntax,
            format!("not a valid Python expression: {}", e.error),
            (at, at.saturating_add(1).min(len)),
        )
    })?;
    let mut tree = tree;
    let mut walker = walk::Walker::for_source(src.len());
    let result = walker.eval(&mut tree, 0);
    if src.len() > DEEP_TREE_SOURCE_BYTES {
        tree::dismantle(tree);
    }
    let top = result?;
    let expr = match top.val {
        Val::Expr(id) => walker.take(id),
        Val::When(w) if w.pending.is_none() => w.finish(lit(NULL), walker.exprs()),
        other => {
            return Err(ExprError::new(
                ErrorCode::TypeMismatch,
                format!(
                    "the expression must evaluate to a Polars expression, not {}{}",
                    other.describe(),
                    if matches!(other, Val::Const(_)) {
                        " (wrap constants in pl.lit(...))"
                    } else {
                        ""
                    }
                ),
                top.span,
            ));
        }
    };
    Ok(CheckedExpr { expr })
}

/// rustpython-parser's parse of one expression, exactly as [`check`] runs it (`offset` is
/// where `src` starts in the original text). One non-inlined function, so the benchmarks'
/// bare-parse baseline runs the very code `check` runs and the two differ only by the
/// checker's own work.
#[inline(never)]
pub fn parse_expression(
    src: &str,
    offset: TextSize,
) -> Result<ast::Expr, rustpython_parser::ParseError> {
    <ast::Expr as Parse>::parse_starts_at(src, "<expr>", offset)
}

/// CPython 3.11's tokenizer calls a last line of only spaces and tabs, with no newline after
/// it, an unexpected indent (`"x\n  "`); so does `ast.parse`, so we agree. rustpython would
/// accept it.
fn check_last_line(src: &str, len: u32) -> Result<(), ExprError> {
    if !src.ends_with([' ', '\t', '\x0c']) {
        return Ok(());
    }
    let Some(nl) = src.rfind('\n') else {
        return Ok(());
    };
    let last = &src[nl + 1..];
    if last.is_empty() || !last.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\x0c')) {
        return Ok(());
    }
    let at = u32::try_from(nl + 1).unwrap_or(len);
    Err(ExprError::new(
        ErrorCode::Syntax,
        "not a valid Python expression: unexpected indent (the last line holds only whitespace)",
        (at, len),
    ))
}

/// CPython refuses more than 200 nested brackets ("too many nested parentheses"); so do we,
/// before parsing. Parentheses do not nest the AST, so the walk's depth limit cannot see them.
/// Only sources with that many brackets at all pay for the extra lexing pass.
fn check_bracket_nesting(src: &str, len: u32) -> Result<(), ExprError> {
    use rustpython_parser::Tok;
    // Too few bytes to hold that many brackets: most expressions stop here.
    if src.len() <= MAX_BRACKET_DEPTH {
        return Ok(());
    }
    // Counted in byte-wide lanes so it vectorises: a chunk of 255 bytes holds at most 255
    // brackets (the three tests are exclusive), so a u8 sum cannot overflow.
    let brackets: usize = src
        .as_bytes()
        .chunks(255)
        .map(|chunk| {
            let n = chunk.iter().fold(0u8, |n, &b| {
                n + u8::from(b == b'(') + u8::from(b == b'[') + u8::from(b == b'{')
            });
            usize::from(n)
        })
        .sum();
    if brackets <= MAX_BRACKET_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    for item in rustpython_parser::lexer::lex(src, rustpython_parser::Mode::Expression) {
        // Lexing errors are the parser's to report, with its better message.
        let Ok((tok, range)) = item else {
            return Ok(());
        };
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    let at = range.start().to_u32();
                    return Err(ExprError::new(
                        ErrorCode::LimitExceeded,
                        format!("more than {MAX_BRACKET_DEPTH} nested brackets"),
                        (at, at.saturating_add(1).min(len)),
                    ));
                }
            }
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A shareable result of [`check`], as cached by [`ExprCache`].
pub(crate) type Checked = Result<Arc<CheckedExpr>, ExprError>;
