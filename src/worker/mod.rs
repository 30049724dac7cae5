//! The worker daemon's core: its state (config, token verifier, Hub client, result cache,
//! capacity, runs in flight) and the lifecycle of one run, in the order the contract fixes:
//! token (locally) → workflow hash → full validation (nothing redeemed if any fails) → redeem
//! → open credentials → load inputs (guard, cache) → one plan → stream results → drop the
//! credentials. `service.rs` only translates proto to these calls and back.

pub mod server;
pub mod service;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polars::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{CacheMode, ResultCache, Source};
use crate::config::Config;
use crate::connector::{QueryOptions, ResultLimits};
use crate::creds::Credential;
use crate::hub_client::HubClient;
use crate::token::{Expect, Scope, Verified, Verifier};
use crate::workflow::{self, Event, RunControl, Workflow};
pub use status::RunFailure;

/// The worker's shared state.
pub struct Worker {
    /// The configuration (read-only).
    pub config: Config,
    verifier: Verifier,
    hub: HubClient,
    cache: ResultCache,
    slots: Arc<Semaphore>,
    runs: Mutex<HashMap<String, RunControl>>,
    draining: AtomicBool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.config.worker.id)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Something a run reports while it goes.
#[derive(Debug)]
pub enum RunEvent {
    /// The run has an id.
    Accepted(String),
    /// A node started or finished.
    Progress(Event),
    /// An `sql` node's rows are loaded.
    Input {
        /// The node.
        node: String,
        /// Rows.
        rows: usize,
        /// Served from the cache.
        cached: bool,
    },
    /// One output, as one Arrow IPC stream.
    Output {
        /// The output's name.
        name: String,
        /// The IPC bytes.
        ipc: Vec<u8>,
    },
}

/// Where one run's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunTimings {
    /// Loading inputs (queries or cache).
    pub load: Duration,
    /// The plan.
    pub compute: Duration,
    /// Encoding results as Arrow IPC.
    pub encode: Duration,
}

/// A run slot; the run holds it until it ends.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Worker {
    /// A worker from its parts.
    pub fn new(config: Config, verifier: Verifier, hub: HubClient) -> Worker {
        let capacity = config.worker.capacity as usize;
        Worker {
            cache: ResultCache::new(config.cache.max_bytes),
            verifier,
            hub,
            slots: Arc::new(Semaphore::new(capacity)),
            runs: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            config,
        }
    }

    /// The token verifier (its key set can be rotated).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Runs in flight.
    pub fn in_flight(&self) -> u32 {
        let capacity = self.config.worker.capacity as usize;
        u32::try_from(capacity - self.slots.available_permits().min(capacity)).unwrap_or(u32::MAX)
    }

    /// Whether the worker is draining (no new runs).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stop accepting runs (runs in flight continue).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Takes a run slot now, or refuses: never queues.
    pub fn slot(&self) -> Result<Slot, RunFailure> {
        if self.draining() {
            return Err(RunFailure::Draining);
        }
        self.slots
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| RunFailure::OverCapacity)
    }

    /// Cancels a run in flight; `false` if there is none with that id.
    pub fn cancel(&self, run_id: &str) -> bool {
        match self.runs.lock().ok().and_then(|r| r.get(run_id).cloned()) {
            Some(control) => {
                control.cancel();
                true
            }
            None => false,
        }
    }

    /// Checks a token and a workflow for a run without redeeming anything: the token
    /// (signature, time, audience, issuer, role, scope, hash), then the workflow, then the
    /// token's connection scope. `consume` marks the token used (Execute) or not (Validate).
    pub fn check(
        &self,
        token: &str,
        doc: &str,
        consume: bool,
    ) -> Result<(Verified, Workflow), RunFailure> {
        let hash = workflow::workflow_sha256(doc)
            .map_err(|e| RunFailure::BadWorkflowDocument(e.to_string()))?;
        let now = crate::hub::now();
        let first = Expect {
            scope: Scope::Run,
            workflow_sha256: Some(&hash),
            connections: &[],
            consume: false,
        };
        self.verifier.verify(token, &first, now)?;
        let wf = workflow::validate(doc).map_err(RunFailure::InvalidWorkflow)?;
        let connections = wf.connections();
        let full = Expect {
            scope: Scope::Run,
            workflow_sha256: Some(&hash),
            connections: &connections,
            consume,
        };
        let verified = self.verifier.verify(token, &full, now)?;
        Ok((verified, wf))
    }

    /// Reports load to the Hub.
    pub async fn heartbeat(&self) -> Result<(), crate::hub_client::HubCallError> {
        self.hub
            .clone()
            .heartbeat(self.in_flight(), self.draining())
            .await
    }

    /// Redeems a verified token with the Hub and opens its credentials.
    pub async fn redeem(&self, token: &Verified) -> Result<Vec<Credential>, RunFailure> {
        let ttl = Duration::from_secs(self.config.tokens.credential_ttl_secs);
        self.hub
            .clone()
            .redeem(token, ttl)
            .await
            .map_err(RunFailure::Hub)
    }

    /// Runs a checked workflow with its opened credentials. Events go to `events`; the run
    /// stops when `control` is cancelled or its deadline passes. The credentials are dropped
    /// (zeroized) before this returns.
    pub async fn run(
        self: &Arc<Self>,
        run_id: &str,
        wf: Workflow,
        credentials: Vec<Credential>,
        mode: CacheMode,
        control: RunControl,
        events: tokio::sync::mpsc::Sender<RunEvent>,
    ) -> Result<RunTimings, RunFailure> {
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(run_id.to_owned(), control.clone());
        }
        let result = self
            .run_inner(wf, credentials, mode, &control, &events)
            .await;
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(run_id);
        }
        result
    }

    async fn run_inner(
        self: &Arc<Self>,
        wf: Workflow,
        credentials: Vec<Credential>,
        mode: CacheMode,
        control: &RunControl,
        events: &tokio::sync::mpsc::Sender<RunEvent>,
    ) -> Result<RunTimings, RunFailure> {
        let mut timings = RunTimings::default();
        let started = std::time::Instant::now();
        let options = QueryOptions {
            limits: ResultLimits {
                max_rows: self.config.limits.max_rows_per_query,
                ..ResultLimits::default()
            },
            timeout: Duration::from_secs(self.config.limits.query_timeout_secs),
        };
        let by_name: HashMap<&str, &Credential> = credentials
            .iter()
            .map(|c| (c.connection.as_str(), c))
            .collect();
        let mut inputs = HashMap::new();
        for (node, connection, query) in wf.queries() {
            control.check().map_err(RunFailure::Run)?;
            let cred = by_name
                .get(connection)
                .ok_or_else(|| RunFailure::MissingCredential(connection.to_owned()))?;
            let target = cred
                .target(crate::hub::now())
                .map_err(RunFailure::Credential)?;
            if target.dialect != query.dialect() {
                return Err(RunFailure::DialectMismatch(node.to_owned()));
            }
            let _ = events
                .send(RunEvent::Progress(Event::Started {
                    node: node.to_owned(),
                    tool: "sql",
                }))
                .await;
            let key = self.cache.key(cred, &query.normalized());
            let ttl = self.config.cache_ttl(connection);
            let load = crate::connector::query_owned(target, query.clone(), options);
            let (frame, source) = tokio::select! {
                r = self.cache.get_or_load(key, ttl, mode, load) => r.map_err(|e| RunFailure::Query(e.code()))?,
                () = wait_stopped(control) => return Err(RunFailure::Run(control.check().err().unwrap_or(workflow::RunError::Cancelled))),
            };
            let _ = events
                .send(RunEvent::Input {
                    node: node.to_owned(),
                    rows: frame.height(),
                    cached: source == Source::Hit,
                })
                .await;
            inputs.insert(node.to_owned(), frame);
        }
        // The credentials are not needed for computing: drop (zeroize) them now.
        drop(by_name);
        drop(credentials);
        timings.load = started.elapsed();
        let started = std::time::Instant::now();

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let control_for_plan = control.clone();
        let plan = tokio::task::spawn_blocking(move || {
            workflow::execute(&wf, inputs, &control_for_plan, &mut |e| {
                let _ = tx.send(e);
            })
        });
        let mut plan = std::pin::pin!(plan);
        let outputs = loop {
            tokio::select! {
                Some(e) = rx.recv() => { let _ = events.send(RunEvent::Progress(e)).await; }
                done = &mut plan => {
                    while let Ok(e) = rx.try_recv() {
                        let _ = events.send(RunEvent::Progress(e)).await;
                    }
                    break done.map_err(|_| RunFailure::Internal)?.map_err(RunFailure::Run)?;
                }
            }
        };
        timings.compute = started.elapsed();
        let started = std::time::Instant::now();
        let mut encoded = Vec::with_capacity(outputs.len());
        for mut o in outputs {
            let mut ipc = Vec::new();
            IpcStreamWriter::new(&mut ipc)
                .finish(&mut o.frame)
                .map_err(|_| RunFailure::Internal)?;
            encoded.push((o.name, ipc));
        }
        timings.encode = started.elapsed();
        for (name, ipc) in encoded {
            if events.send(RunEvent::Output { name, ipc }).await.is_err() {
                return Err(RunFailure::Run(workflow::RunError::Cancelled));
            }
        }
        Ok(timings)
    }
}

/// Resolves once the run must stop (cancelled or out of time).
async fn wait_stopped(control: &RunControl) {
    while control.check().is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
