//! Workflows: what the Hub dispatches. A versioned JSON graph of tools, validated completely
//! before any data is touched, hashed canonically (server tokens are bound to the hash), and
//! run as one Polars lazy plan over inputs loaded beforehand.
//!
//! - `model`: the document's types (and the JSON Schema generated from them);
//! - `parse`: text → nodes, every problem of every node;
//! - `validate`: references, cycles, expressions, queries;
//! - `predict`: columns and types, and each node's output schema without data;
//! - `plan`: each tool as a lazy operation (shared by prediction and execution);
//! - `size`: the bound on the plan's size once its inputs are unfolded;
//! - `exec`: one plan, one run, progress events, cancellation and a time limit;
//! - `hash`: the canonical hash.

pub mod exec;
pub mod hash;
mod inline;
pub mod model;
pub mod parse;
mod plan;
mod predict;
pub mod problem;
mod size;
pub mod validate;

pub use exec::{Event, Output, RunControl, RunError, execute};
pub use hash::{HashError, canonical_json, workflow_sha256};
pub use problem::{Problem, Problems};
pub use validate::{Workflow, validate};

#[cfg(test)]
mod tests;
