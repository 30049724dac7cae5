//! hubworker: a zero-trust worker that executes data workflows for a central Hub.
//!
//! The Hub dispatches runs; the worker verifies everything itself. This crate is the library
//! behind the `hubworker` binary; every subcommand is a thin shell over a module here.
//!
//! # Layout
//! - [`expr`]: py-polars expression source → checked → native Polars `Expr`; no eval, ever.
//! - [`sql`]: the read-only SQL guard (parsed with sqlparser, never string-scanned).
//! - [`connector`]: read-only database sessions (PostgreSQL, MySQL/MariaDB, SQLite) → DataFrames.
//! - [`secret`]: the `Secret` type for credentials (redacted, zeroized, explicit expose).
//! - [`frames`]: reading input files into DataFrames and writing results.
//! - [`batch`]: the JSONL batch commands (`check expr`, `eval`): one line in, one line out.
//! - [`bench`](mod@bench): the expression benchmarks shared by `benches/` and `hubworker bench expr`.
//! - [`workflow`]: workflows: the JSON model, one file per tool (`workflow/tools/`), validation,
//!   the canonical hash, one lazy plan per run.
//! - [`workflow_cli`]: `hubworker validate` and `hubworker run`.
//! - [`sample`]: the deterministic sample shop database (SQLite) behind `examples/`.
//! - [`token`]: server-token verification in the worker (EdDSA, kid, claims, replay).
//! - [`creds`]: just-in-time credentials: Fernet-sealed by the Hub, opened into zeroizing secrets.
//! - [`keys`]: `hubworker keygen`, secret files, production strength checks.
//! - [`proto`]: the generated gRPC contract (`proto/hubworker/v1/hubworker.proto`).
//! - [`hub`]: the reference Hub (store, token issuing, the `Hub` gRPC service, its CLI).
//! - [`hub_client`]: the worker's side of the `Hub` service (register, redeem, heartbeat).
//! - [`config`]: the worker's TOML configuration, checked once, every problem at once.
//! - [`cache`]: the per-credential query-result cache (HMAC-keyed, TTL, byte budget, single-flight).
//! - [`worker`]: the daemon: the `Worker` gRPC service, the run lifecycle, health, reflection.
//! - [`sandbox`]: one confined child process per run (rlimits, seccomp, namespaces), sealed
//!   credentials opened only there, exits classified.
//! - [`locked`]: key material in locked (never swapped), zeroizing memory.
//! - [`alloc`]: the allocator (mimalloc; out of memory is a distinct exit code).
//! - [`metrics`]: the Prometheus series (names in one place, closed label sets).
//! - [`demo`]: `hubworker demo`, the whole security model end to end on loopback.
//! - [`cli`]: the command line (clap).
//! - [`error`]: the top-level error and its exit codes.
//! - [`telemetry`]: tracing setup; span fields never carry secrets.

pub mod alloc;
pub mod batch;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connector;
pub mod creds;
pub mod demo;
pub mod error;
pub mod expr;
pub mod frames;
pub mod hub;
pub mod hub_client;
pub mod keys;
pub mod locked;
pub mod metrics;
pub mod proto;
pub mod run;
pub mod sample;
pub mod sandbox;
pub mod secret;
pub mod sql;
pub mod telemetry;
pub mod token;
pub mod worker;
pub mod workflow;
pub mod workflow_cli;

pub use error::Error;
