//! The `sql` tool: rows read with one read-only query, in a read-only transaction, on the
//! connection the Hub resolves `connection` to; `dialect` must be that connection's. Owns the
//! check of its connection name and the SQL guard's verdict on its query; it never opens a
//! connection (the caller loads the rows before the plan runs).

use polars::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Role, ToolKind};
use crate::workflow::parse;
use crate::workflow::plan::{self, Built, Compiled, Input};
use crate::workflow::problem::{ProblemSource, Report};

/// Read rows with one read-only SQL query on a named connection.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sql {
    /// Connection name (as the Hub and the server token name it).
    pub(crate) connection: String,
    /// SQL dialect of the connection.
    pub(crate) dialect: crate::sql::Dialect,
    /// One read-only statement.
    pub(crate) query: String,
}

/// The fields of a valid node of this tool (an input, if any, is `src`: columns `k: Int64` and
/// `v: String`); the registry's tests run every tool through the dispatch with it.
#[cfg(test)]
pub(super) const SAMPLE: &str = r#"{"connection": "shop", "dialect": "sqlite", "query": "SELECT k FROM t"}"#;

impl ToolKind for Sql {
    fn inputs(&self) -> Vec<(String, &str)> {
        Vec::new()
    }

    fn role(&self) -> Role<'_> {
        Role::Query {
            connection: &self.connection,
        }
    }

    fn check(&self, report: &mut Report<'_>) -> Compiled {
        if !parse::is_valid_name(&self.connection) {
            report.push(
                "connection",
                "bad_name",
                format!(
                    "connection name {:?} must be 1 to 64 of letters, digits, `_` and `-`",
                    self.connection
                ),
            );
        }
        match crate::sql::guard(&self.query, self.dialect) {
            Ok(checked) => {
                let mut names = checked.params().to_vec();
                names.sort_unstable();
                names.dedup();
                if super::declared(report, "query", &names, true) {
                    Compiled::Query(checked)
                } else {
                    Compiled::Plain
                }
            }
            Err(e) => {
                report.push_from(ProblemSource::Sql, "query", e.code.as_str(), e.message);
                Compiled::Plain
            }
        }
    }

    fn plan(&self, _compiled: &Compiled, _inputs: Vec<Input>) -> PolarsResult<Built> {
        Err(plan::not_built("sql"))
    }
}
