//! Workflows: what the Hub dispatches. This module owns the workflow's canonical hash today;
//! the model, validation and the lazy plan arrive with the rest of issue #4.

pub mod hash;

pub use hash::{HashError, canonical_json, workflow_sha256};
