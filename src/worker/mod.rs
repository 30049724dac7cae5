//! The worker daemon's core: its state (config, token verifier, Hub client, result cache,
//! capacity, runs in flight) and the lifecycle of one run, in the order the contract fixes:
//! token (locally) → workflow hash → full validation (nothing redeemed if any fails) → redeem
//! → open credentials → load inputs (guard, cache) → one plan → stream results → drop the
//! credentials. `service.rs` only translates proto to these calls and back.

mod audit_sender;
pub(crate) mod daemon;
mod events;
mod forward;
mod inline;
mod proxy;
mod refusal;
mod register;
mod reload;
mod runs;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod status;
mod token_keys;
mod validate_gate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::{CacheMode, ResultCache};
use crate::config::{Config, Isolation};
use crate::creds::Credential;
use crate::hub_client::HubClient;
use crate::proto::SealedCredential;
use crate::run::{Limits, TableInfo, Task, channel};
pub(crate) use crate::run::{RunEvent, RunTimings};
use crate::sandbox::{Job, Provisions, Sandbox, SandboxFailure};
use crate::token::{Expect, Scope, Verified, Verifier};
use crate::workflow::{self, RunControl, Workflow};

pub(crate) use status::RunFailure;
pub(crate) use validate_gate::Validated;

/// Where a run's progress, inputs and output pieces go: bounded in bytes.
pub(crate) type EventSender = channel::Sender<RunEvent>;

/// The worker's shared state.
pub struct Worker {
    config: std::sync::RwLock<Arc<Config>>,
    verifier: Verifier,
    hub: HubClient,
    cache: Arc<ResultCache>,
    slots: Arc<Semaphore>,
    runs: runs::Runs,
    validations: validate_gate::ValidateGate,
    draining: AtomicBool,
    sandbox: Option<Sandbox>,
    confinements: Mutex<crate::sandbox::Confinements>,
    metrics: Arc<crate::metrics::Metrics>,
    token_keys: token_keys::TokenKeys,
    /// Outbound requests (the AI proxy); why not, when `[ai]`'s TLS settings are unusable.
    egress: Result<crate::egress::Client, String>,
    /// The audit trail (`[audit] dir`), and what wakes its sender.
    audit: Option<Arc<crate::audit::Auditor>>,
    audit_wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.config().worker.id)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// A run slot; the run holds it until it ends.
#[derive(Debug)]
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Worker {
    /// A worker from its parts.
    pub(crate) fn new(
        config: Config,
        verifier: Verifier,
        hub: HubClient,
        audit: Option<Arc<crate::audit::Auditor>>,
    ) -> Worker {
        let capacity = config.worker.capacity as usize;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Worker {
            audit,
            audit_wake: tokio::sync::Notify::new(),
            egress: proxy::egress_client(&config, &metrics),
            cache: Arc::new(ResultCache::new(
                config.cache.max_bytes,
                config.cache.entry_bytes(),
            )),
            verifier,
            hub,
            slots: Arc::new(Semaphore::new(capacity)),
            runs: runs::Runs::default(),
            validations: validate_gate::ValidateGate::new(config.worker.validate_concurrency),
            draining: AtomicBool::new(false),
            sandbox: (config.sandbox.isolation == Isolation::Process)
                .then(|| Sandbox::new(config.sandbox.settings())),
            metrics,
            confinements: Mutex::new(crate::sandbox::Confinements::default()),
            token_keys: token_keys::TokenKeys::default(),
            config: std::sync::RwLock::new(Arc::new(config)),
        }
    }

    /// The configuration in force (a reload swaps it; runs keep the one they started with).
    pub(crate) fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Cancels every run in flight (the end of a drain's grace period).
    pub(crate) fn cancel_all(&self) -> usize {
        let runs = self.runs.controls();
        for r in &runs {
            r.cancel();
        }
        runs.len()
    }

    /// Metrics.
    pub(crate) fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Cache entries and bytes as last maintained (no waiting; for scrapes).
    pub(crate) fn cache_stats_now(&self) -> (u64, u64) {
        self.cache.stats_now()
    }

    /// Reloads the token key set: the secrets directory's `token-keys.jwks` when there is
    /// one (pinned keys), else the Hub's current set (by registering again). Returns the kids.
    pub(crate) async fn reload_keys(&self, config: &Config) -> Result<Vec<String>, String> {
        let mut env = HashMap::new();
        if config.worker.mode == crate::config::ModeSetting::Production {
            env.insert("HUBWORKER_ENV".to_owned(), "production".to_owned());
        }
        let layered = crate::keys::Layered {
            first: &env,
            then: &crate::keys::ProcessEnv,
        };
        let (secrets, _) = crate::keys::load_worker_secrets(config.secrets.dir.clone(), &layered)
            .map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let pinned = secrets.key_set.is_some();
        let keys = match secrets.key_set {
            Some(keys) => keys,
            None => {
                self.hub
                    .clone()
                    .register()
                    .await
                    .map_err(|e| format!("registering again failed: {e}"))?
                    .keys
            }
        };
        let kids: Vec<String> = keys.kids().into_iter().map(str::to_owned).collect();
        let before = self.verifier.kids();
        self.verifier.set_keys(keys);
        if before != kids {
            tracing::info!(
                source = "reload",
                kids = %kids.join(","),
                previous_kids = %before.join(","),
                "token keys rotated"
            );
        }
        self.pin_keys(pinned);
        Ok(kids)
    }

    /// Leaves the Hub (after draining).
    pub async fn deregister(&self) -> Result<bool, crate::hub_client::HubCallError> {
        self.hub.clone().deregister().await
    }

    /// The sandbox (`None` with `isolation = "inline"`).
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }

    /// `process` or `inline`.
    pub(crate) fn isolation(&self) -> Isolation {
        self.config().sandbox.isolation
    }

    /// The confinements run children reported most recently (empty when inline).
    pub(crate) fn confinements(&self) -> crate::sandbox::Confinements {
        self.confinements
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Starts one child that confines itself and stops: proves the sandbox works on this host
    /// before the worker accepts runs, and learns which confinements are in force.
    pub(crate) async fn probe_sandbox(
        &self,
    ) -> Result<crate::sandbox::Confinements, crate::sandbox::Exit> {
        let Some(sandbox) = &self.sandbox else {
            return Ok(crate::sandbox::Confinements::default());
        };
        let found = sandbox.probe().await?;
        if let Ok(mut c) = self.confinements.lock() {
            c.clone_from(&found);
        }
        Ok(found)
    }

    /// The token verifier (its key set can be rotated).
    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Runs in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        let capacity = self.config().worker.capacity as usize;
        u32::try_from(capacity - self.slots.available_permits().min(capacity)).unwrap_or(u32::MAX)
    }

    /// Whether the worker is draining (no new runs).
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stop accepting runs (runs in flight continue).
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Takes a run slot now, or refuses: never queues.
    pub(crate) fn slot(&self) -> Result<Slot, RunFailure> {
        let slot = if self.draining() {
            Err(RunFailure::Draining)
        } else if self.audit_full() {
            Err(RunFailure::AuditSpoolFull)
        } else {
            self.slots
                .clone()
                .try_acquire_owned()
                .map(Slot)
                .map_err(|_| RunFailure::OverCapacity)
        };
        if let Err(f) = &slot {
            self.record_admission_refusal(f);
        }
        slot
    }

    /// Checks a token and a workflow for a run without redeeming anything: the token
    /// (signature, time, audience, issuer, role, scope, hash), then the workflow, then the
    /// token's connection scope. `consume` marks the token used (Execute) or not (Validate).
    pub(crate) fn check(
        &self,
        token: &str,
        doc: &str,
        params: &str,
        consume: bool,
    ) -> Result<(Verified, Workflow), RunFailure> {
        let checked = self.check_inner(token, doc, params, consume);
        if let Err(f) = &checked {
            self.record_refusal(f, token);
        }
        checked
    }

    /// [`check`](Self::check) on a blocking thread: a full validation (large documents,
    /// Polars building plans) never occupies one of the runtime's worker threads.
    pub(crate) async fn check_off_runtime(
        self: &Arc<Self>,
        token: String,
        doc: String,
        params: String,
        consume: bool,
    ) -> Result<(Verified, Workflow), RunFailure> {
        self.learn_kid_of(&token).await;
        let worker = self.clone();
        tokio::task::spawn_blocking(move || worker.check(&token, &doc, &params, consume))
            .await
            .map_err(|_| RunFailure::Internal)?
    }

    fn check_inner(
        &self,
        token: &str,
        doc: &str,
        params: &str,
        consume: bool,
    ) -> Result<(Verified, Workflow), RunFailure> {
        let hash = workflow::workflow_sha256(doc).map_err(RunFailure::BadWorkflowDocument)?;
        let now = crate::token::now();
        let first = Expect {
            scope: Scope::Run,
            workflow_sha256: Some(&hash),
            params_sha256: None,
            connections: &[],
            consume: false,
        };
        self.verifier.verify(token, &first, now)?;
        let wf = workflow::validate(doc).map_err(RunFailure::InvalidWorkflow)?;
        // The run's parameter values, checked before anything is redeemed.
        let bound = workflow::params::bind_text(wf.params(), params)
            .map_err(|p| RunFailure::InvalidParams(workflow::Problems(p)))?;
        let params_hash = workflow::params::params_sha256(params).ok_or(RunFailure::Internal)?;
        let connections = wf.connections();
        let full = Expect {
            scope: Scope::Run,
            workflow_sha256: Some(&hash),
            params_sha256: Some(&params_hash),
            connections: &connections,
            consume,
        };
        let verified = self.verifier.verify(token, &full, now)?;
        let mut wf = wf;
        wf.bind(bound, params).map_err(RunFailure::InvalidParams)?;
        Ok((verified, wf))
    }

    /// Reports load to the Hub, and takes the key set its answer carries (rotation).
    pub async fn heartbeat(&self) -> Result<(), crate::hub_client::HubCallError> {
        let beat = self.heartbeat_for_keys().await;
        match &beat {
            Ok(()) => self.metrics.hub_contact_ok(),
            Err(_) => self.metrics.hub_contact_failed(),
        }
        beat
    }

    /// Redeems a verified token with the Hub; the credentials stay sealed.
    pub(crate) async fn redeem(
        &self,
        token: &Verified,
    ) -> Result<Vec<SealedCredential>, RunFailure> {
        self.hub
            .clone()
            .redeem_sealed(token)
            .await
            .map_err(RunFailure::Hub)
    }

    /// Opens sealed credentials in this process (inline isolation only).
    fn open(
        &self,
        config: &Config,
        sealed: &[SealedCredential],
    ) -> Result<Vec<Credential>, RunFailure> {
        let ttl = Duration::from_secs(config.tokens.credential_ttl_secs);
        self.hub.open(sealed, ttl).map_err(RunFailure::Hub)
    }

    /// The limits of a task under `config`.
    fn limits(config: &Config) -> Limits {
        Limits {
            query: crate::connector::QueryOptions {
                limits: crate::connector::ResultLimits {
                    max_rows: config.limits.max_rows_per_query,
                    ..crate::connector::ResultLimits::default()
                },
                timeout: Duration::from_secs(config.limits.query_timeout_secs),
            },
            chunk_bytes: config.limits.result_chunk_bytes.max(1),
            engine: config.limits.engine,
        }
    }

    /// Runs one task with its still-sealed credentials under one snapshot of the config: in a
    /// sandboxed child (process isolation), or here (inline). Events go to `events`; the task
    /// stops when `control` is cancelled or its deadline passes. Opened credentials never
    /// outlive it. `fault_key` selects a fault planted by the sandbox's tests.
    async fn task(self: &Arc<Self>, request: TaskRequest<'_>) -> Result<RunTimings, RunFailure> {
        let TaskRequest {
            task,
            fault_key,
            sealed,
            mode,
            config,
            control,
            events,
        } = request;
        // Cancelled (or out of time) while the token was being redeemed: nothing starts, and
        // the sealed credentials are dropped unopened.
        control
            .check()
            .map_err(|e| RunFailure::Task(crate::run::TaskFailure::Engine(e)))?;
        let limits = Self::limits(config);
        match &self.sandbox {
            Some(sandbox) => {
                let ttl = |connection: &str| config.cache_ttl(connection);
                let job = Job {
                    task: &task,
                    provisions: Provisions {
                        sealed,
                        transport_key: self.hub.transport_key().text(),
                        fingerprint_key: self.cache.fingerprint_key(),
                        cache_entry_max_bytes: self.cache.max_entry_bytes(),
                        credential_ttl: Duration::from_secs(config.tokens.credential_ttl_secs),
                        limits,
                        now: crate::token::now(),
                    },
                    fault_key,
                    cache: &self.cache,
                    mode,
                    ttl: &ttl,
                    control,
                    events: &events,
                };
                match sandbox.run(job).await {
                    Ok(finished) => {
                        self.note_confinements(finished.confinements);
                        Ok(finished.timings)
                    }
                    Err(SandboxFailure::Task(f)) => Err(RunFailure::Task(f)),
                    Err(SandboxFailure::Exit(exit)) => {
                        self.metrics
                            .sandbox_kills
                            .get_or_create(&crate::metrics::Reason {
                                reason: exit.code(),
                            })
                            .inc();
                        Err(RunFailure::Sandbox(exit))
                    }
                }
            }
            None => {
                let credentials = self.open(config, &sealed)?;
                drop(sealed);
                inline::run(inline::Inline {
                    task,
                    credentials,
                    now: crate::token::now(),
                    limits,
                    mode,
                    cache: self.cache.clone(),
                    config: config.clone(),
                    control: control.clone(),
                    events,
                })
                .await
                .map_err(RunFailure::Task)
            }
        }
    }

    /// Runs an inspect or preview task for one connection; what it answered.
    pub(crate) async fn table_task(
        self: &Arc<Self>,
        task: Task,
        connection: &str,
        sealed: Vec<SealedCredential>,
    ) -> Result<TableAnswer, RunFailure> {
        let config = self.config();
        let control = RunControl::with_timeout(config.run_timeout());
        let (tx, mut rx) = channel::channel::<RunEvent>(config.limits.event_budget());
        let collect = tokio::spawn(async move {
            let mut answer = TableAnswer::default();
            while let Some(e) = rx.recv().await {
                match e {
                    RunEvent::Output { ipc, last, .. } => {
                        answer.ipc.extend_from_slice(&ipc);
                        answer.complete |= last;
                    }
                    RunEvent::Tables(t) => {
                        answer.tables = t;
                        answer.complete = true;
                    }
                    _ => {}
                }
            }
            answer
        });
        let finished = self
            .task(TaskRequest {
                task,
                fault_key: connection,
                sealed,
                mode: CacheMode::Bypass,
                config: &config,
                control: &control,
                events: tx,
            })
            .await;
        let answer = collect.await.map_err(|_| RunFailure::Internal)?;
        finished?;
        if !answer.complete {
            return Err(RunFailure::Internal);
        }
        Ok(answer)
    }

    fn note_confinements(&self, found: crate::sandbox::Confinements) {
        if let Ok(mut c) = self.confinements.lock()
            && *c != found
        {
            *c = found;
        }
    }

    /// Runs a checked workflow with its still-sealed credentials (see [`Worker::task`]).
    /// Cancel by id reaches it through the run registry.
    pub(crate) async fn run(
        self: &Arc<Self>,
        wf: Workflow,
        sealed: Vec<SealedCredential>,
        mode: CacheMode,
        config: Arc<Config>,
        control: RunControl,
        events: EventSender,
    ) -> Result<RunTimings, RunFailure> {
        let fault_key = wf.sha256().to_owned();
        let task = Task::Run(Box::new(wf));
        self.task(TaskRequest {
            task,
            fault_key: &fault_key,
            sealed,
            mode,
            config: &config,
            control: &control,
            events,
        })
        .await
    }
}

/// One task to run, with everything it runs under.
struct TaskRequest<'a> {
    task: Task,
    /// Selects a fault planted by the sandbox's tests.
    fault_key: &'a str,
    sealed: Vec<SealedCredential>,
    mode: CacheMode,
    /// The run's one snapshot of the configuration.
    config: &'a Arc<Config>,
    control: &'a RunControl,
    events: EventSender,
}

/// What an inspect or preview answered.
#[derive(Debug, Default)]
pub(crate) struct TableAnswer {
    /// An inspect's tables.
    pub(crate) tables: Vec<TableInfo>,
    /// A preview's rows, one Arrow IPC stream.
    pub(crate) ipc: Vec<u8>,
    /// Whether the answer arrived whole.
    complete: bool,
}

/// Resolves once the run must stop (cancelled or out of time).
pub(crate) async fn wait_stopped(control: &RunControl) {
    while control.check().is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
