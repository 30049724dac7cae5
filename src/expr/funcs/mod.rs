//! The registry's tables, one file per family, each entry beside its builder:
//! `functions` (`pl.*`), `dtypes` (`pl.<DataType>`), `general` (Expr methods: math, nulls, casts,
//! membership), `agg` (aggregations, windows, cumulative), `string` (Expr.str), `temporal`
//! (Expr.dt), `list` (Expr.list, Expr.name, Expr.struct). A name absent from these tables
//! cannot be called. `growth` is no family: it bounds how much the `str.replace*` builders
//! can grow a row.

mod agg;
mod common;
mod dtypes;
mod functions;
mod general;
mod growth;
mod list;
mod replace;
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
        Table::Name => list::NAME,
        Table::Struct => list::STRUCT,
    }
}

fn param_text(p: &super::registry::Param) -> String {
    let d = match p.default {
        Dflt::Required => String::new(),
        Dflt::None => "=None".into(),
        Dflt::Bool(b) => format!("={}", if b { "True" } else { "False" }),
        Dflt::Int(i) => format!("={i}"),
        Dflt::Float(f) => format!("={f:?}"),
        Dflt::Str(s) => format!("=\"{s}\""),
    };
    format!("{}{d}", p.name)
}

/// The Python signature: positional params, `*args` or a bare `*`, keyword-only params.
fn signature(spec: &Spec) -> String {
    let pos = spec.positional.min(spec.params.len());
    let mut parts: Vec<String> = spec.params[..pos].iter().map(param_text).collect();
    match spec.variadic {
        Some(super::registry::Kind::Str) => parts.push("*names".into()),
        Some(_) if pos > 0 => parts.push("*more".into()),
        Some(_) => parts.push("*exprs".into()),
        None if pos < spec.params.len() => parts.push("*".into()),
        None => {}
    }
    parts.extend(spec.params[pos..].iter().map(param_text));
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
            Table::Name => "Output-name methods (`Expr.name.*`)",
            Table::Struct => "Struct methods (`Expr.struct.*`)",
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

#[cfg(test)]
mod tests {
    use super::super::check;
    use super::super::registry::{Kind, Param, Table};
    use super::table;

    fn sample(kind: Kind) -> String {
        match kind {
            Kind::Expr => "pl.col(\"b\")".into(),
            Kind::ExprLit => "\"x\"".into(),
            Kind::Exprs => "[\"a\", \"b\"]".into(),
            Kind::Int | Kind::IntOrExpr => "1".into(),
            Kind::Bool => "True".into(),
            Kind::Str => "\"%Y\"".into(),
            Kind::Choice(c) => format!("\"{}\"", c[c.len() - 1]),
            Kind::DType => "pl.Int64".into(),
            Kind::Collection => "[1, 2]".into(),
            Kind::Names => "\"a\"".into(),
            Kind::Any => "1".into(),
        }
    }

    fn receiver(t: Table) -> &'static str {
        match t {
            Table::Functions | Table::DTypes => "pl.",
            Table::Methods => "pl.col(\"a\").",
            Table::Str => "pl.col(\"s\").str.",
            Table::Dt => "pl.col(\"t\").dt.",
            Table::List => "pl.col(\"l\").list.",
            Table::Name => "pl.col(\"a\").name.",
            Table::Struct => "pl.col(\"s\").str.split_exact(\"-\", 1).struct.",
        }
    }

    /// Every registry entry, called minimally, fully by keyword, and with `None`s, builds
    /// without panicking (a builder reading a slot its signature lacks would panic here).
    #[test]
    fn every_entry_builds_without_panicking() {
        let mut calls = 0;
        for t in Table::ALL {
            for spec in table(t) {
                let pos = spec.positional.min(spec.params.len());
                let required: Vec<&Param> = spec
                    .params
                    .iter()
                    .filter(|p| p.default == super::Dflt::Required)
                    .collect();
                let minimal: Vec<String> = required.iter().map(|p| sample(p.kind)).collect();
                let mut full: Vec<String> =
                    spec.params[..pos].iter().map(|p| sample(p.kind)).collect();
                if let Some(v) = spec.variadic {
                    full.push(sample(v));
                }
                full.extend(
                    spec.params[pos..]
                        .iter()
                        .map(|p| format!("{}={}", p.name, sample(p.kind))),
                );
                let nones: Vec<String> = spec
                    .params
                    .iter()
                    .map(|p| format!("{}=None", p.name))
                    .collect();
                for args in [minimal, full, nones] {
                    let src = format!("{}{}({})", receiver(t), spec.name, args.join(", "));
                    let _ = check(&src);
                    calls += 1;
                }
            }
        }
        assert!(calls > 300, "the registry is unexpectedly small: {calls}");
    }
}
