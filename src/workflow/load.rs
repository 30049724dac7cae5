//! Loading a workflow's `sql` inputs through the connector layer: one guarded, read-only
//! query per `sql` node, on the connection its name resolves to. The result is the frames
//! [`execute`](super::execute) takes; a cache can wrap this step without the executor knowing.

use std::collections::HashMap;

use polars::prelude::DataFrame;

use super::exec::{Event, RunControl, RunError};
use super::validate::Workflow;
use crate::connector::{self, ConnectorError, QueryOptions, Target};

/// Why an input could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The workflow names a connection that was not supplied.
    #[error("node {node:?}: no connection named {connection:?} was supplied")]
    UnknownConnection {
        /// The `sql` node.
        node: String,
        /// The connection name it uses.
        connection: String,
    },
    /// The connection is of another dialect than the node says.
    #[error("node {node:?}: connection {connection:?} is {actual}, the node says {declared}")]
    DialectMismatch {
        /// The `sql` node.
        node: String,
        /// The connection name.
        connection: String,
        /// What the node declares.
        declared: &'static str,
        /// What the connection is.
        actual: &'static str,
    },
    /// The query failed (the message never holds credentials).
    #[error("node {node:?}: {source}")]
    Query {
        /// The `sql` node.
        node: String,
        /// What failed.
        #[source]
        source: ConnectorError,
    },
    /// Cancelled or out of time while loading.
    #[error(transparent)]
    Stopped(#[from] RunError),
}

impl LoadError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::UnknownConnection { .. } => "unknown_connection",
            LoadError::DialectMismatch { .. } => "dialect_mismatch",
            LoadError::Query { source, .. } => source.code(),
            LoadError::Stopped(e) => e.code(),
        }
    }
}

/// Runs every `sql` node's query, one after another, with progress events. Connections are
/// checked (all of them) before the first query runs.
pub async fn load_inputs(
    workflow: &Workflow,
    connections: &HashMap<String, Target>,
    options: &QueryOptions,
    control: &RunControl,
    events: &mut dyn FnMut(Event),
) -> Result<HashMap<String, DataFrame>, LoadError> {
    for (node, name, query) in workflow.queries() {
        let Some(target) = connections.get(name) else {
            return Err(LoadError::UnknownConnection {
                node: node.to_owned(),
                connection: name.to_owned(),
            });
        };
        if target.dialect != query.dialect() {
            return Err(LoadError::DialectMismatch {
                node: node.to_owned(),
                connection: name.to_owned(),
                declared: query.dialect().as_str(),
                actual: target.dialect.as_str(),
            });
        }
    }
    let mut frames = HashMap::new();
    for (node, name, query) in workflow.queries() {
        control.check()?;
        let Some(target) = connections.get(name) else {
            continue;
        };
        events(Event::Started {
            node: node.to_owned(),
            tool: "sql",
        });
        let df = connector::query(target, query, *options)
            .await
            .map_err(|source| LoadError::Query {
                node: node.to_owned(),
                source,
            })?;
        events(Event::Finished {
            node: node.to_owned(),
            tool: "sql",
            rows: Some(df.height()),
        });
        frames.insert(node.to_owned(), df);
    }
    Ok(frames)
}
