//! The integration test binary (one binary, many modules, as ripgrep does).

/// Runs the built binary, temp dirs, JSONL helpers.
mod util;

/// The expression checker through the library API: codes, spans, limits, semantics.
mod check_expr;

/// `hubworker check expr` and `hubworker eval` as real processes: the CLI contract.
mod cli_contract;

/// Expression results against exact values (py-polars semantics).
mod eval;

/// Property tests: no input makes the checker panic.
mod fuzzish;

/// `hubworker sample-db`, `validate` and `run` over `examples/` as real processes.
mod workflow_cli;

/// The reference Hub and the worker's protocol side over real gRPC on loopback: tokens,
/// single-use redemption, sealed credentials, attacks, planted secrets.
mod hub;

/// `hubworker keygen` and `hubworker hub ...` as real processes.
mod hub_cli;

/// The reference Hub under attack: worker secrets on Heartbeat/Deregister, taking over a worker
/// id, registration-secret backoff, private store files (issue 16, point 7).
mod hub_security;

/// Token claims end to end: bounded `jti`/`sub`, the worker's audiences, the `user` run role
/// (issue 16, point 13).
mod token_claims;

/// The worker daemon end to end over real gRPC with the reference Hub.
mod worker;

/// The run sandbox: hostile children and workflows, fail-closed confinement, memory hygiene.
mod sandbox;

/// A fleet member as a real process: systemd notify, SIGHUP key rotation, metrics, SIGTERM drain.
mod fleet;

/// Scaling the fleet: the Hub's dispatcher over worker processes, drains, joins, kills, retries.
mod fleet_scaling;

/// The review's SQL attacks through the sandboxed worker on live MariaDB and PostgreSQL, and
/// the SQLite statement timeout through `hubworker query`.
mod guard_worker;

/// A worker daemon as a real process: pid, log, metrics, children.
mod daemon;

/// Issue 16 point 2: clients that stop reading lose their runs; memory stays bounded.
mod stalled_clients;

/// Issue 16 point 3: run children follow the daemon process; their deaths are crashes.
mod run_children;

/// Issue 16 points 6 and 11: Cancel needs the run's secret; Validate is budgeted and bounded.
mod cancel_validate;

/// Issue 17: the CLI, inline and process isolation run one path (same outputs, progress,
/// error codes, cache hits).
mod one_path;

/// Issue 18 point 2: SIGTERM drains visibly to standard health probes; no open stream holds
/// the process.
mod health_drain;

/// Issue 18 point 11: the Hub contract as a conformance suite against the reference Hub.
mod hub_conformance;

/// Issue 18 points 4 and 8: serve waits for an unreachable Hub (backoff, STATUS=, watchdog,
/// SIGTERM exits 0; config refusals exit 2); Hub key rotation reaches workers by heartbeat
/// with no run refused.
mod lifecycle;

/// Issue 18 points 3 and 9: metrics in both exposition formats, refusals and Hub failures
/// counted; lifecycle logs, no ANSI in pipes, pure JSON, the filter validated, refused tokens.
mod observability;

/// Issue 18 points 5, 6, 10: `validate-config`, the production switch, the sample config,
/// `status`, `hub dispatch` tables, inspect tokens, completions, the man page, the LICENSE.
mod operator_cli;

/// Issue 20: a query result larger than the engine could hold twice runs on the streaming
/// engine under a 1 GiB limit; the in-memory engine runs out.
mod larger_than_memory;

/// Issue 21: declared run parameters; values checked before redemption, bound into the
/// token (`params_mismatch`), and the cache keyed on them.
mod params;

/// Issue 21: planted markers (parameter value, result cell, password, token) in no log line,
/// error or metrics label of a real `serve` at trace level.
mod redaction;

/// Issue 22: the AI proxy, end to end with a loopback HTTPS provider.
mod ai_proxy;

/// Issue 23: the audit trail: one signed, chained record per run at the Hub; auditors only;
/// edits and deletions found by `hub audit verify`.
mod audit;
