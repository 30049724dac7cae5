//! What a tool compiles and builds: the artifacts validation keeps for a node ([`Compiled`]),
//! a node's inputs as lazy frames ([`Input`]) and its built outputs ([`Built`]). The same
//! builders (each tool's [`plan`](super::tools::ToolKind::plan)) serve schema prediction (over
//! empty frames of the predicted schemas) and execution (over the real plan), so a prediction
//! can never disagree with what runs. Nothing here knows a tool by name.

use polars::prelude::*;

/// A built node: its main output and, for a tool with two outputs (`filter`), the rows that
/// did not pass.
#[derive(Clone)]
pub(crate) struct Built {
    pub(crate) main: LazyFrame,
    pub(crate) rejected: Option<LazyFrame>,
}

impl Built {
    /// A node with one output.
    pub(crate) fn main(main: LazyFrame) -> Self {
        Built {
            main,
            rejected: None,
        }
    }
}

/// What validation compiled for a node, beyond its fields. The variants are kinds of
/// artifact, not tools: a new tool that compiles expressions keeps them in [`Compiled::Exprs`].
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    /// Nothing beyond the fields.
    Plain,
    /// A guarded query (`sql`).
    Query(crate::sql::ReadOnlyQuery),
    /// Rows typed in the document (`inline`).
    Frame(DataFrame),
    /// Compiled expressions, in the order of the fields they come from (`formula`, `filter`).
    Exprs(Vec<Expr>),
}

impl Compiled {
    /// The typed rows, if these are rows.
    pub(crate) fn frame(&self) -> Option<&DataFrame> {
        match self {
            Compiled::Frame(df) => Some(df),
            _ => None,
        }
    }
}

/// One input of a node: its frame and its (known) schema.
pub(crate) struct Input {
    pub(crate) frame: LazyFrame,
    pub(crate) schema: SchemaRef,
}

/// The one input of a single-input tool.
pub(crate) fn single(inputs: Vec<Input>) -> PolarsResult<Input> {
    inputs
        .into_iter()
        .next()
        .ok_or_else(|| polars_err!(ComputeError: "node has no input"))
}

/// The error of a node asked to build what it cannot (a source, or a node whose compiled
/// artifacts are not its own; validation never lets either happen).
pub(crate) fn not_built(tool: &str) -> PolarsError {
    polars_err!(ComputeError: "{} is not built from inputs", tool)
}

/// The typed empty frame a prediction starts from.
pub(crate) fn empty(schema: &SchemaRef) -> LazyFrame {
    DataFrame::empty_with_schema(schema).lazy()
}
