//! hubworker: a zero-trust worker that executes data workflows for a central Hub.
//!
//! The Hub dispatches runs; the worker verifies everything itself. This crate is the library
//! behind the `hubworker` binary; every subcommand is a thin shell over a module here.
//!
//! # Layout
//! From the top (what a command calls) down; each layer uses only the ones below it, and no
//! two top-level modules import each other. Modules the binary, the tests and the benches do
//! not name are `pub(crate)`; the rest show only what those need.
//!
//! **Commands.**
//! - [`cli`]: the command line (clap); `error`: the top-level error and the one map to exit
//!   codes (0 ok, 1 runtime failure, 2 usage or configuration).
//! - [`demo`]: `hubworker demo` and the local stack (Hub, worker) it, `bench dispatch` and the
//!   end-to-end tests run on; [`bench`](mod@bench): the benchmarks behind `hubworker bench`.
//! - `workflow_cli`: `hubworker validate` and `hubworker run`; [`batch`]: the JSONL commands
//!   (`check expr`, `eval`), one line in, one line out.
//! - `client`: the command line's side of the `Worker` service (`hubworker status`, the run
//!   half of `hub dispatch`); `manual`: shell completions and the man page, from clap.
//!
//! **The daemon and the reference Hub.**
//! - [`worker`]: admission (slots, draining, the cancel registry), each run's one snapshot of
//!   the configuration, the run starter and its forwarding to the client under every limit;
//!   `service.rs` only converts proto ↔ domain and maps failures to `Status` in one place.
//!   Never imports the reference Hub.
//! - [`sandbox`]: process supervision only: one confined child per task (spawner thread,
//!   pool, pipes, limits, kill, exit classes) and the child's side (jail, syscall policy as
//!   data, the pipe as the run's input source and event sink). Depends on `run`, never on
//!   `worker`.
//! - [`hub`]: the reference Hub (store, token issuing, the `Hub` gRPC service, its CLI);
//!   [`hub_client`]: the worker's side of the `Hub` service, whose reasons it parses into an
//!   enum.
//! - `config`: the worker's TOML configuration, checked once, every problem at once;
//!   `metrics`: the Prometheus series, the `process_*` collector and the two exposition
//!   formats chosen by `Accept`; [`telemetry`]: tracing setup and the log filter variable;
//!   `introspection`: the standard health and reflection (v1, v1alpha) services both gRPC
//!   servers add.
//!
//! **One task, for every caller.**
//! - `run`: a task (run, inspect, preview), its events and timings, a narrow failure type, and
//!   `run::execute`, which `hubworker run`, inline isolation and the sandbox child all call;
//!   the place it runs in supplies an `InputSource` (cache first, then fetch) and an event
//!   sink. Knows nothing of gRPC or processes.
//! - `cache`: the per-credential query-result cache (HMAC-keyed, TTL, byte budget,
//!   single-flight), holding rows as the child consumes them (Arrow IPC).
//! - [`workflow`]: the JSON model, one file per tool (`workflow/tools/`), validation, the
//!   canonical hash, one lazy plan per run.
//! - [`connector`]: read-only database sessions (PostgreSQL, MySQL/MariaDB, SQLite), the
//!   run-time catalog check, rows → DataFrames.
//!
//! **Leaves.**
//! - [`expr`]: py-polars expression source → checked → native Polars `Expr`; no eval, ever.
//! - [`sql`]: the read-only SQL guard (parsed with sqlparser, never string-scanned).
//! - `egress`: every outbound HTTP request (the AI proxy): the URL, name and address rules,
//!   and the client that connects to exactly the vetted address within caps and a header
//!   allowlist. `test_provider` (test builds only): a loopback HTTPS provider for its tests.
//! - [`token`], [`creds`], [`keys`], [`secret`], `locked`: trust material: verify, hold, open,
//!   wipe.
//! - [`proto`]: the generated gRPC contract; `frames`: input files; [`sample`]: the sample
//!   shop database behind `examples/`; [`alloc`]: the allocator (out of memory is a distinct
//!   exit code).

pub mod alloc;
pub mod audit;
pub mod batch;
pub mod bench;
pub(crate) mod cache;
pub mod cli;
pub(crate) mod client;
pub(crate) mod config;
pub mod connector;
pub mod creds;
pub mod demo;
pub(crate) mod egress;
pub(crate) mod error;
pub mod expr;
pub(crate) mod frames;
pub mod hub;
pub mod hub_client;
pub(crate) mod introspection;
pub mod keys;
pub(crate) mod locked;
pub(crate) mod manual;
pub(crate) mod metrics;
pub mod proto;
pub(crate) mod run;
pub mod sample;
pub mod sandbox;
pub mod secret;
pub mod sql;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod test_provider;
pub mod token;
pub mod worker;
pub mod workflow;
pub(crate) mod workflow_cli;

pub use error::Error;
