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
mod error;
mod funcs;
pub mod limits;
mod ops;
mod registry;
mod tree;
mod val;
mod value;
mod walk;

use std::sync::Arc;

use polars::prelude::{Expr, NULL, lit};
use rustpython_parser::text_size::TextSize;

pub use cache::ExprCache;
pub use error::{ErrorCode, ExprError, Span};
pub use funcs::reference_markdown;

use limits::{DEEP_TREE_SOURCE_BYTES, MAX_SOURCE_BYTES};
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
    // Python's eval() accepts leading whitespace; the parser would call it an indent.
    let start = src.len() - src.trim_start().len();
    if src[start..].trim_end().is_empty() {
        return Err(ExprError::new(
            ErrorCode::Syntax,
            "empty expression",
            (0, len),
        ));
    }
    let offset = TextSize::try_from(start).unwrap_or_default();
    let tree =
        rustpython_parser::parse_expression_starts_at(&src[start..], "<expr>", offset).map_err(
            |e| {
                let at = e.offset.to_u32().min(len);
                ExprError::new(
                    ErrorCode::Syntax,
                    format!("not a valid Python expression: {}", e.error),
                    (at, at.saturating_add(1).min(len)),
                )
            },
        )?;
    let result = walk::Walker::default().eval(&tree, 0);
    if src.len() > DEEP_TREE_SOURCE_BYTES {
        tree::dismantle(tree);
    }
    let top = result?;
    let expr = match top.val {
        Val::Expr(e) => e,
        Val::When(w) if w.pending.is_none() => w.finish(lit(NULL)),
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

/// A shareable result of [`check`], as cached by [`ExprCache`].
pub type Checked = Result<Arc<CheckedExpr>, ExprError>;
