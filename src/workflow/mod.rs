//! Workflows: what the Hub dispatches. A versioned JSON graph of tools, validated completely
//! before any data is touched, hashed canonically (server tokens are bound to the hash), and
//! run as one Polars lazy plan over inputs loaded beforehand.
//!
//! - `tools/`: one file per tool (`tools/<tool>.rs`): its fields, its checks, its schema
//!   prediction and its lazy plan, behind one trait; `tools/mod.rs` is the one dispatch point,
//!   so adding a tool is one new file plus one line there;
//! - `model`: the document's top level and shared types (and the JSON Schema generated from
//!   them and the tools' fields);
//! - `parse`: text → nodes, every problem of every node;
//! - `params`: declared run parameters and one run's values checked against them;
//! - `validate`: the graph (references, cycles, depth, result names), each tool's checks;
//! - `predict`: each node's output schema without data, tool by tool;
//! - `plan`: what a tool compiles and builds (shared by prediction and execution);
//! - `size`: the bound on the plan's size once its inputs are unfolded;
//! - `problem`: what is wrong, with the checker that found it;
//! - `exec`: one plan, one run, progress events, rows as they come;
//! - `engine`: the plan on Polars' streaming engine (or its in-memory one), cancellation and
//!   a time limit;
//! - `hash`: the canonical hash.

mod engine;
pub(crate) mod exec;
pub(crate) mod hash;
pub(crate) mod model;
pub(crate) mod params;
pub(crate) mod parse;
mod plan;
mod predict;
pub(crate) mod problem;
mod size;
mod tools;
pub(crate) mod validate;

pub(crate) use engine::{Engine, collect};
#[cfg(test)]
use exec::Output;
pub(crate) use exec::{Event, RunControl, RunError, Sink, execute, stream};
pub use hash::{HashError, workflow_sha256};
pub(crate) use problem::Problems;
pub(crate) use validate::{Workflow, validate, validate_bound};

#[cfg(test)]
mod tests;
