//! The registry's tables, one file per family, each entry beside its builder:
//! `functions` (pl.*), `dtypes` (pl.<DataType>), `general` (Expr methods: math, nulls, casts,
//! membership), `agg` (aggregations, windows, cumulative), `string` (Expr.str), `temporal`
//! (Expr.dt), `list` (Expr.list). A name absent from these tables cannot be called.

mod agg;
mod common;
mod dtypes;
mod functions;
mod general;
mod list;
mod string;
mod temporal;
mod titlecase;

use std::fmt::Write as _;

pub(crate) use functions::{WHEN_OTHERWISE, WHEN_THEN, WHEN_WHEN};

use super::registry::{Dflt, Spec, Table};

/// Expression methods: the general ones and the aggregation/window family.
static METHODS: std::sync::LazyLock<Vec<Spec>> = std::sync::LazyLock::new(|| {
    general::METHODS
        .iter()
        .chain(agg::METHODS)
        .copied()
        .collect()
});

/// The entries of one table.
pub(crate) fn table(t: Table) -> &'static [Spec] {
    match t {
        Table::Functions => functions::FUNCTIONS,
        Table::DTypes => dtypes::DTYPES,
        Table::Methods => &METHODS,
        Table::Str => string::STR,
        Table::Dt => temporal::DT,
        Table::List => list::LIST,
    }
}

fn signature(spec: &Spec) -> String {
    let mut parts = Vec::new();
    for (i, p) in spec.params.iter().enumerate() {
        if i == spec.positional && spec.variadic.is_none() {
            parts.push("*".to_owned());
        }
        let d = match p.default {
            Dflt::Required => String::new(),
            Dflt::None => "=None".into(),
            Dflt::Bool(b) => format!("={}", if b { "True" } else { "False" }),
            Dflt::Int(i) => format!("={i}"),
            Dflt::Float(f) => format!("={f:?}"),
            Dflt::Str(s) => format!("=\"{s}\""),
        };
        parts.push(format!("{}{d}", p.name));
        if i + 1 == spec.positional.min(spec.params.len()) {
            if let Some(_k) = spec.variadic {
                parts.push("*more".into());
            }
        }
    }
    if spec.params.is_empty() && spec.variadic.is_some() {
        parts.push("*exprs".into());
    }
    parts.join(", ")
}

/// The expression language reference as Markdown, generated from the registry (the README's
/// reference section is this text; a test keeps them in sync).
pub fn reference_markdown() -> String {
    let mut out = String::new();
    for t in Table::ALL {
        let title = match t {
            Table::Functions => "Functions (`pl.*`)",
            Table::DTypes => "Data types (`pl.*`)",
            Table::Methods => "Expression methods (`Expr.*`)",
            Table::Str => "String methods (`Expr.str.*`)",
            Table::Dt => "Temporal methods (`Expr.dt.*`)",
            Table::List => "List methods (`Expr.list.*`)",
        };
        let _ = writeln!(out, "#### {title}\n");
        let _ = writeln!(out, "| call | notes |\n| --- | --- |");
        let mut specs: Vec<&Spec> = table(t).iter().collect();
        specs.sort_by_key(|s| s.name);
        for s in specs {
            let _ = writeln!(
                out,
                "| `{}{}({})` | {} |",
                t.prefix(),
                s.name,
                signature(s),
                s.doc
            );
        }
        out.push('\n');
    }
    out
}
