//! `pl.param("name")`: a run parameter's value in an expression (hubworker's one addition to
//! the expression language). The compiler never sees a value: the call compiles to a marker, a
//! column reference under a reserved name, which the workflow replaces with a typed literal of
//! the declared type once a run's values are checked ([`bind`]). A value therefore never passes
//! through the parser, and a compiled expression (and the expression cache) holds no value.

use polars::prelude::{Expr, PlSmallStr, col};

/// The reserved column-name prefix of a parameter marker (a NUL byte first: no SQL result
/// or `inline` column is named like this by accident, and a name written this way by hand
/// only ever means the same parameter).
const MARKER: &str = "\u{0}hubworker.param:";

/// Longest parameter name.
pub const MAX_PARAM_NAME: usize = 64;

/// Whether `s` is a valid parameter name: a letter or `_`, then letters, digits and `_`, at
/// most [`MAX_PARAM_NAME`] bytes (so `:name` in SQL and `pl.param("name")` can always name it).
pub fn is_param_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= MAX_PARAM_NAME
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The marker `pl.param(name)` compiles to.
pub(crate) fn marker(name: &str) -> Expr {
    col(format!("{MARKER}{name}").as_str())
}

fn name_of(column: &PlSmallStr) -> Option<&str> {
    column.as_str().strip_prefix(MARKER)
}

/// The parameter names `expr` refers to, sorted, without duplicates.
pub fn param_names(expr: &Expr) -> Vec<String> {
    let mut names: Vec<String> = expr
        .into_iter()
        .filter_map(|e| match e {
            Expr::Column(c) => name_of(c).map(str::to_owned),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `expr` with every parameter marker replaced by `value(name)`; the first name `value` has
/// nothing for is the error.
pub fn bind(expr: Expr, value: &dyn Fn(&str) -> Option<Expr>) -> Result<Expr, String> {
    if param_names(&expr).is_empty() {
        return Ok(expr);
    }
    let mut missing = None;
    let bound = expr.map_expr(|e| {
        let name = match &e {
            Expr::Column(c) => name_of(c).map(str::to_owned),
            _ => None,
        };
        match name {
            Some(name) => match value(&name) {
                Some(v) => v,
                None => {
                    missing.get_or_insert(name);
                    e
                }
            },
            None => e,
        }
    });
    match missing {
        Some(name) => Err(name),
        None => Ok(bound),
    }
}
