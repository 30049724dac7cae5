//! The tools, one file each: a tool's fields (its serde model, and so its part of the JSON
//! Schema), its checks, its schema prediction and its lazy plan, behind [`ToolKind`]. [`Tool`]
//! is the one dispatch point, generated from the list at the bottom: adding a tool is one new
//! file here plus one line in that list. A tool sees its own fields, its compiled artifacts and
//! its inputs' schemas or frames; it never sees the graph, other nodes, connections or data
//! sources (references, cycles and loading belong to `validate.rs`, `exec.rs` and the caller).
//!
//! Like mini-redis `cmd/`: one file per command, one `match` (here, generated) to dispatch.

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::parse::{self, FieldError};
use super::plan::{self, Built, Compiled, Input};
use super::problem::{ProblemSource, Report};

/// What a tool is to the graph and to the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role<'a> {
    /// Rows one query reads on connection `connection` before the plan runs: `check` compiles
    /// a [`Compiled::Query`], and the run's inputs bring the frame.
    Query {
        /// The connection name.
        connection: &'a str,
    },
    /// Rows typed in the document: `check` compiles a [`Compiled::Frame`]; the executor
    /// reports the node finished as the run starts.
    Rows,
    /// Rows built from its inputs, on one output.
    Transform,
    /// Rows built from its inputs, on two outputs: `ID` (or `ID.true`) and `ID.false`
    /// ([`Built::rejected`]).
    Split,
    /// A named result of the run; it has no rows to pass on.
    Output {
        /// The result name.
        name: &'a str,
    },
}

/// One tool: everything the workflow machinery asks of a node's fields.
pub(crate) trait ToolKind {
    /// The references this tool reads, each with the field it is written in (`input`,
    /// `inputs[1]`), in the order [`plan`](Self::plan) takes them.
    fn inputs(&self) -> Vec<(String, &str)>;

    /// What the tool is to the graph (default: a transform with one output).
    fn role(&self) -> Role<'_> {
        Role::Transform
    }

    /// The checks that need no schema (names, options, expressions, queries, typed rows),
    /// reporting every problem; returns what runs. The result is kept only if nothing was
    /// reported.
    fn check(&self, report: &mut Report<'_>) -> Compiled;

    /// The output schema from the inputs' schemas, reporting unknown columns and type
    /// mismatches. The default builds the plan over empty frames ([`by_plan`]), so prediction
    /// and execution cannot disagree. Never asked of a [`Role::Query`] node (its schema is
    /// the query result's).
    fn predict(
        &self,
        compiled: &Compiled,
        inputs: &[SchemaRef],
        report: &mut Report<'_>,
    ) -> Option<SchemaRef> {
        by_plan(self, compiled, inputs, report)
    }

    /// The tool as a lazy operation over its inputs' frames. Never asked of a source
    /// ([`Role::Query`], [`Role::Rows`]): the executor starts from its frame.
    fn plan(&self, compiled: &Compiled, inputs: Vec<Input>) -> PolarsResult<Built>;

    /// Its own weight in the plan-size bound (`size.rs`), beyond the 1 every node counts: the
    /// nodes of its expressions and the names it lists.
    fn weight(&self, _compiled: &Compiled) -> u64 {
        0
    }
}

/// The default prediction: the tool's plan over empty frames of its input schemas.
pub(crate) fn by_plan<T: ToolKind + ?Sized>(
    tool: &T,
    compiled: &Compiled,
    inputs: &[SchemaRef],
    report: &mut Report<'_>,
) -> Option<SchemaRef> {
    let frames = inputs
        .iter()
        .map(|schema| Input {
            frame: plan::empty(schema),
            schema: schema.clone(),
        })
        .collect();
    match tool
        .plan(compiled, frames)
        .and_then(|mut b| b.main.collect_schema())
    {
        Ok(s) => Some(s),
        Err(err) => {
            report.polars("", &err);
            None
        }
    }
}

/// The first input's schema (an empty one if there is none).
pub(crate) fn first(inputs: &[SchemaRef]) -> SchemaRef {
    inputs.first().cloned().unwrap_or_default()
}

/// Compiles one expression, reporting a refusal on `field` as the expression checker's. Goes
/// through the process-wide cache: a worker validates the same workflows again and again.
pub(crate) fn expression(report: &mut Report<'_>, src: &str, field: String) -> Option<Expr> {
    let compiled = crate::expr::global_cache().with(src, |checked| match checked {
        Ok(checked) => Ok(crate::expr::compile(checked)),
        Err(e) => Err((e.code(), e.message.clone())),
    });
    match compiled {
        Ok(expr) => {
            let names = crate::expr::param_names(&expr);
            declared(report, &field, &names, false).then_some(expr)
        }
        Err((code, message)) => {
            report.push_from(ProblemSource::Expression, field, code, message);
            None
        }
    }
}

/// Whether every parameter in `names` is declared (and, for SQL, is a scalar the driver can
/// bind); reports each one that is not on `field`.
pub(crate) fn declared(report: &mut Report<'_>, field: &str, names: &[String], sql: bool) -> bool {
    let mut ok = true;
    for name in names {
        let shown: String = name.chars().take(64).collect();
        match report.params().and_then(|p| p.get(name)) {
            None => {
                ok = false;
                let hint = report
                    .params()
                    .and_then(|p| parse::did_you_mean(name, p.keys().map(String::as_str)))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                report.push(
                    field,
                    "unknown_param",
                    format!("the workflow declares no parameter `{shown}`{hint}"),
                );
            }
            Some(p) if sql && p.ty.list => {
                ok = false;
                report.push(
                    field,
                    "param_type",
                    format!(
                        "`{shown}` is a list: SQL binds one value per parameter (filter on a \
                         list with `is_in(pl.param(\"{shown}\"))` in a filter node)"
                    ),
                );
            }
            Some(_) => {}
        }
    }
    ok
}

/// Whether `schema` has column `name`; if not, reports it on `field` with a did-you-mean.
pub(crate) fn need(report: &mut Report<'_>, schema: &Schema, name: &str, field: String) -> bool {
    if schema.contains(name) {
        return true;
    }
    let hint = parse::did_you_mean(name, schema.iter_names().map(|n| n.as_str()))
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    report.push(field, "unknown_column", format!("no column {name:?}{hint}"));
    false
}

/// The nodes of an expression, for [`ToolKind::weight`].
pub(crate) fn expr_nodes(e: &Expr) -> u64 {
    e.into_iter().count() as u64
}

/// Declares the tool modules and generates [`Tool`], its one dispatch `match` and its
/// parser from one list of `file: Type` lines. A tool's name is its file's name (and serde's
/// snake_case of its type, which a test checks). Each tool file also holds a `SAMPLE` node
/// for the tests, so a tool cannot be listed without one.
macro_rules! tools {
    ($($module:ident: $Type:ident,)*) => {
        $(mod $module;)*

        /// One tool of the canvas, without its `id` (every node has one; `parse.rs` takes it
        /// off first so that each tool's fields can refuse anything unknown). Each variant's
        /// description in the JSON Schema is its type's doc line.
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(tag = "tool", rename_all = "snake_case")]
        pub(crate) enum Tool {
            $($Type($module::$Type),)*
        }

        impl Tool {
            /// Every tool's name, in list order.
            pub(crate) const NAMES: &'static [&'static str] = &[$(stringify!($module)),*];

            /// The tool's name as written in the document.
            pub(crate) fn name(&self) -> &'static str {
                match self {
                    $(Tool::$Type(_) => stringify!($module),)*
                }
            }

            /// The one dispatch point: the tool behind its trait.
            pub(crate) fn kind(&self) -> &dyn ToolKind {
                match self {
                    $(Tool::$Type(t) => t,)*
                }
            }

            /// Deserializes the fields of tool `name` (without `id` and `tool`), each tool's
            /// struct directly (not through the internally tagged enum, which buffers and
            /// loses the path), so errors name the exact field. `None`: no such tool.
            pub(crate) fn parse(
                name: &str,
                fields: serde_json::Value,
            ) -> Option<Result<Tool, FieldError>> {
                $(
                    if name == stringify!($module) {
                        return Some(serde_path_to_error::deserialize(fields).map(Tool::$Type));
                    }
                )*
                None
            }
        }

        #[cfg(test)]
        impl Tool {
            /// Each tool's name and sample fields (its file's `SAMPLE`), in list order.
            pub(crate) const SAMPLES: &'static [(&'static str, &'static str)] =
                &[$((stringify!($module), $module::SAMPLE)),*];
        }
    };
}

// The tools, in the order the JSON Schema and the "unknown tool" message list them.
tools! {
    sql: Sql,
    inline: Inline,
    formula: Formula,
    filter: Filter,
    select: Select,
    sort: Sort,
    join: Join,
    union: Union,
    summarize: Summarize,
    unique: Unique,
    limit: Limit,
    sample: Sample,
    output: Output,
}

#[cfg(test)]
mod tests;
