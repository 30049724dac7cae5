//! What is wrong with a workflow: one [`Problem`] per finding, each naming the node, the
//! field, a stable code and (internally) the checker that found it; a tool files its node's
//! problems through a `Report`. Validation collects them all; nothing here decides anything.

use std::fmt;

use serde::Serialize;

/// Which checker found a problem. Internal: the JSON of `hubworker validate --json` and the
/// gRPC `Problem` message do not carry it; the worker's metrics route on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemSource {
    /// The workflow's own rules: the document, the graph, a tool's fields, columns and types
    /// (Polars' planning errors included, also on expression fields).
    Workflow,
    /// The SQL guard refused a `sql` node's query.
    Sql,
    /// The expression checker refused an expression.
    Expression,
}

/// One finding of validation (or of the schema check at run time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Problem {
    /// The node's id; `None` for document-level problems.
    pub node: Option<String>,
    /// The field inside the node (`formulas[1].expression`), or the document key.
    pub field: String,
    /// Stable reason code: a workflow code (see the README) or the expression / SQL
    /// checker's own code.
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// Which checker found it.
    #[serde(skip)]
    pub(crate) source: ProblemSource,
}

impl Problem {
    /// A problem of node `node` (or of the document when `None`).
    pub(crate) fn new(
        node: Option<&str>,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            node: node.map(str::to_owned),
            field: field.into(),
            code,
            message: message.into(),
            source: ProblemSource::Workflow,
        }
    }

    /// The same problem, found by `source`.
    pub(crate) fn with_source(mut self, source: ProblemSource) -> Self {
        self.source = source;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "node {node:?}")?,
            None => f.write_str("workflow")?,
        }
        if !self.field.is_empty() {
            write!(f, ", {}", self.field)?;
        }
        write!(f, ": {} [{}]", self.message, self.code)
    }
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The problems of one node, as a tool finds them: each is filed under the node's id.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    node: &'a str,
    problems: &'a mut Vec<Problem>,
    before: usize,
    params: Option<&'a super::params::Params>,
}

impl<'a> Report<'a> {
    /// Files the problems of node `node` into `problems`.
    pub(crate) fn new(node: &'a str, problems: &'a mut Vec<Problem>) -> Self {
        let before = problems.len();
        Report {
            node,
            problems,
            before,
            params: None,
        }
    }

    /// The same report, knowing the workflow's declared parameters (a node's own checks
    /// refer to them: `:name` in SQL, `pl.param("name")` in expressions).
    pub(crate) fn with_params(mut self, params: &'a super::params::Params) -> Self {
        self.params = Some(params);
        self
    }

    /// The declared parameters (none when the report was made without them).
    pub(crate) fn params(&self) -> Option<&'a super::params::Params> {
        self.params
    }

    /// A problem with the workflow's own rules.
    pub(crate) fn push(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.problems
            .push(Problem::new(Some(self.node), field, code, message));
    }

    /// A problem another checker (the SQL guard, the expression checker) found.
    pub(crate) fn push_from(
        &mut self,
        source: ProblemSource,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        let problem = Problem::new(Some(self.node), field, code, message).with_source(source);
        self.problems.push(problem);
    }

    /// A Polars planning error on `field` (its code and first paragraph).
    pub(crate) fn polars(&mut self, field: impl Into<String>, e: &polars::prelude::PolarsError) {
        let (code, message) = polars_problem(e);
        self.push(field, code, message);
    }

    /// Whether nothing was reported since this report was made.
    pub(crate) fn is_clean(&self) -> bool {
        self.problems.len() == self.before
    }
}

/// The code and first paragraph of a Polars planning error (the rest is a plan dump).
pub(crate) fn polars_problem(e: &polars::prelude::PolarsError) -> (&'static str, String) {
    use polars::prelude::PolarsError as P;
    let mut inner = e;
    while let P::Context { error, .. } | P::ExprContext { error, .. } = inner {
        inner = error;
    }
    let code = match inner {
        P::ColumnNotFound(_) => "unknown_column",
        P::Duplicate(_) => "duplicate_column",
        P::SchemaMismatch(_) | P::InvalidOperation(_) | P::SchemaFieldNotFound(_) => {
            "type_mismatch"
        }
        _ => "plan_error",
    };
    let text = e.to_string();
    let first = text.split("\n\n").next().unwrap_or_default().trim();
    (code, first.to_owned())
}
