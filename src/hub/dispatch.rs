//! Dispatch over the pool (issue 24): the reference Hub's way of driving a fleet, used by
//! `hub dispatch`, the fleet tests and `hubworker bench fleet`.
//!
//! For each run the dispatcher reads the registered workers (the Hub's store, kept current by
//! `Register`, `Heartbeat` and `Deregister`), keeps those that accept the token's audience, and
//! orders them by [`pick::order`]: cache affinity, bounded by free slots.
//! It calls `Execute` on the first; a refusal **before redemption** moves the same token to the
//! next:
//!
//! - `RESOURCE_EXHAUSTED` `over_capacity` or `audit_spool_full`, `UNAVAILABLE` `draining`: the
//!   worker checked the token and refused before its stream began, so nothing was redeemed;
//! - a connection that cannot be opened (the worker is gone): the worker is passed over until
//!   the Hub hears from it again.
//!
//! When every worker is busy the run waits (woken when one of this dispatcher's runs ends, or
//! after a short backoff) and tries again, up to `max_attempts` calls and `patience`; then it
//! is reported as `no_worker_available`. Any other refusal is the run's answer and is not
//! retried. Once a worker has accepted a run, the run is never sent anywhere else: if that
//! worker dies, the client gets `worker_lost`. A run cannot execute twice anyway: redemption is
//! single-use at the Hub, so a token that somehow reached a second worker would be refused
//! there as replayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use super::pick::{self, Live};
use super::{Store, StoreError};
use crate::proto::worker_client::WorkerClient;
use crate::proto::{ExecuteEvent, ExecuteRequest};
use crate::secret::Secret;

/// How long the worker may take to accept or refuse a run (its checks, not the run).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection to a worker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the list of workers read from the store is reused.
const REFRESH: Duration = Duration::from_millis(200);
/// Waits between tries while every worker is busy: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

/// How workers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Cache affinity by rendezvous hashing, bounded by free slots (the reference policy).
    Affinity,
    /// A random live worker with a free slot per run (the comparison in `bench fleet`).
    Random,
}

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// A worker not heard from for longer is dropped from the pool (default: three heartbeat
    /// intervals).
    pub fresh_secs: i64,
    /// `Execute` calls at most per run, over all workers.
    pub max_attempts: u32,
    /// How long a run may wait for a free worker.
    pub patience: Duration,
    /// How workers are chosen.
    pub policy: Policy,
}

impl Default for DispatchOptions {
    fn default() -> DispatchOptions {
        DispatchOptions {
            fresh_secs: 3 * i64::from(super::HEARTBEAT_SECS),
            max_attempts: 200,
            patience: Duration::from_secs(60),
            policy: Policy::Affinity,
        }
    }
}

/// One run to dispatch.
#[derive(Debug)]
pub struct Job {
    /// The server token (its audience must be the pool for retries to go elsewhere).
    pub token: Secret,
    /// The token's audience: workers registered with it (or with it as their id) are tried.
    pub audience: String,
    /// The workflow document.
    pub workflow_json: String,
    /// The run's parameter values (JSON object, or empty).
    pub params_json: String,
    /// Runs with the same key prefer the same worker ([`pick::affinity_key`]).
    pub affinity: String,
}

impl Job {
    /// A job for `workflow_json` with `params_json`, reading `connections`; the affinity key
    /// is derived from the three. `None` if the workflow or the parameters are not JSON.
    pub fn new(
        token: Secret,
        audience: &str,
        workflow_json: String,
        params_json: String,
        connections: &[String],
    ) -> Option<Job> {
        let workflow = crate::workflow::workflow_sha256(&workflow_json).ok()?;
        let params = crate::workflow::params::params_sha256(&params_json)?;
        Some(Job {
            token,
            audience: audience.to_owned(),
            affinity: pick::affinity_key(&workflow, &params, connections),
            workflow_json,
            params_json,
        })
    }
}

/// A refusal that moved the run to the next worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The worker that refused.
    pub worker_id: String,
    /// Its reason code (`over_capacity`, `draining`, `audit_spool_full`, `unreachable`).
    pub reason: String,
}

/// A run a worker accepted: read its events to the end.
#[derive(Debug)]
pub struct Dispatched {
    /// The worker running it.
    pub worker_id: String,
    /// Its address.
    pub address: String,
    /// The refusals before it.
    pub attempts: Vec<Attempt>,
    /// The run's events (`Accepted`, progress, results, then `Finished` or `Error`).
    pub events: tonic::Streaming<ExecuteEvent>,
    _running: Running,
}

/// How a dispatched run ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The worker that ran it.
    pub worker_id: String,
    /// The run id from `Accepted`.
    pub run_id: String,
    /// The refusals before it was accepted.
    pub attempts: Vec<Attempt>,
    /// Ended with `Finished`.
    pub finished: bool,
    /// Else the reason code and message: the run's `Error` event, or the stream's failure
    /// (`worker_lost` when the worker went away mid-run).
    pub error: Option<(String, String)>,
    /// `sql` nodes that finished, and how many of them were served from the worker's cache.
    pub sql_nodes: u32,
    /// See `sql_nodes`.
    pub from_cache: u32,
    /// Each output's Arrow IPC stream.
    pub outputs: Vec<(String, Vec<u8>)>,
}

impl Dispatched {
    /// Reads the run's events to the end.
    pub async fn finish(mut self) -> Outcome {
        use crate::proto::execute_event::Event;
        let mut out = Outcome {
            worker_id: std::mem::take(&mut self.worker_id),
            attempts: std::mem::take(&mut self.attempts),
            ..Outcome::default()
        };
        loop {
            match self.events.message().await {
                Ok(Some(event)) => match event.event {
                    Some(Event::Accepted(a)) => out.run_id = a.run_id,
                    Some(Event::Progress(p))
                        if p.tool == "sql"
                            && p.state() == crate::proto::progress::State::Finished =>
                    {
                        out.sql_nodes += 1;
                        out.from_cache += u32::from(p.from_cache);
                    }
                    Some(Event::Result(r)) => {
                        match out.outputs.iter_mut().find(|(n, _)| *n == r.output) {
                            Some((_, bytes)) => bytes.extend_from_slice(&r.arrow_ipc),
                            None => out.outputs.push((r.output, r.arrow_ipc)),
                        }
                    }
                    Some(Event::Finished(_)) => out.finished = true,
                    Some(Event::Error(e)) => out.error = Some((e.code, e.message)),
                    _ => {}
                },
                Ok(None) => break,
                Err(status) => {
                    if out.error.is_none() {
                        out.error = Some(crate::client::stream_failure(&status));
                    }
                    break;
                }
            }
        }
        if !out.finished && out.error.is_none() {
            out.error = Some(("worker_lost".into(), "the run's stream ended early".into()));
        }
        out
    }
}

/// Why a run was not dispatched.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No worker took the run within the bounds.
    #[error(
        "no worker took the run ({} refusals{}){}",
        .attempts.len(),
        last_reason(.attempts),
        if *.registered { "" } else { ": no registered worker accepts this audience" }
    )]
    NoWorkerAvailable {
        /// The refusals, in order.
        attempts: Vec<Attempt>,
        /// Whether any registered worker (live or not) accepts the audience.
        registered: bool,
    },
    /// A worker refused the run for a reason another worker would share (the token, the
    /// workflow, ...): the run's answer.
    #[error("worker {worker_id} refused the run: [{reason}] {message}")]
    Refused {
        /// The worker.
        worker_id: String,
        /// Its reason code (`hubworker-reason`), or the gRPC code's name without one.
        reason: String,
        /// Its message.
        message: String,
    },
    /// The Hub's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn last_reason(attempts: &[Attempt]) -> String {
    attempts
        .last()
        .map_or(String::new(), |a| format!(", the last {}", a.reason))
}

impl DispatchError {
    /// Stable reason code.
    pub fn code(&self) -> &str {
        match self {
            DispatchError::NoWorkerAvailable { .. } => "no_worker_available",
            DispatchError::Refused { reason, .. } => reason,
            DispatchError::Store(_) => "hub_store",
        }
    }
}

/// Counts a run in flight on a worker while it lives; when an accepted run ends, a run
/// waiting for a slot is woken.
#[derive(Debug)]
struct Running {
    count: Arc<AtomicU32>,
    freed: Arc<tokio::sync::Notify>,
    /// Not accepted: nothing to wake anyone for.
    quiet: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if !self.quiet {
            self.freed.notify_one();
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// One HTTP/2 connection per worker address.
    channels: HashMap<String, Channel>,
    /// This dispatcher's runs in flight, per worker id.
    running: HashMap<String, Arc<AtomicU32>>,
    /// Workers that could not be reached, with when the Hub had last heard from them then:
    /// passed over until it hears from them again.
    unreachable: HashMap<String, i64>,
    /// The workers as last read, and when.
    workers: Option<(Instant, Arc<Vec<Live>>)>,
}

/// Dispatches runs over the registered workers (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    options: DispatchOptions,
    state: Arc<Mutex<State>>,
    freed: Arc<tokio::sync::Notify>,
}

/// What one `Execute` call came to.
enum Tried {
    Accepted(Box<tonic::Streaming<ExecuteEvent>>),
    /// Refused before redemption: the next worker may take it.
    Retry(&'static str),
    Refused(tonic::Status),
}

impl Dispatcher {
    /// A dispatcher over the workers registered in `store`.
    pub fn new(store: Store, options: DispatchOptions) -> Dispatcher {
        Dispatcher {
            store,
            options,
            state: Arc::default(),
            freed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The registered workers (re-read from the store at most every 200 ms).
    async fn workers(&self) -> Result<Arc<Vec<Live>>, StoreError> {
        if let Some((at, ws)) = &self.state().workers
            && at.elapsed() < REFRESH
        {
            return Ok(ws.clone());
        }
        let ws = Arc::new(self.store.live_workers().await?);
        self.state().workers = Some((Instant::now(), ws.clone()));
        Ok(ws)
    }

    /// The workers a run for `audience` may go to now, with this dispatcher's own runs as
    /// their load: live (not draining, heard from within `fresh_secs`), reachable, accepting
    /// the audience.
    pub async fn live(&self, audience: &str) -> Result<Vec<Live>, StoreError> {
        Ok(self.candidates(audience).await?.0)
    }

    /// [`live`](Self::live), and whether any registered worker (live or not) accepts
    /// `audience`.
    async fn candidates(&self, audience: &str) -> Result<(Vec<Live>, bool), StoreError> {
        let workers = self.workers().await?;
        let now = super::now();
        let state = self.state();
        let mut known = false;
        let live = workers
            .iter()
            .filter(|w| w.audience == audience || w.id == audience)
            .inspect(|_| known = true)
            .filter(|w| !w.draining && now - w.last_seen <= self.options.fresh_secs)
            .filter(|w| {
                state
                    .unreachable
                    .get(&w.id)
                    .is_none_or(|at| w.last_seen > *at)
            })
            .map(|w| Live {
                in_flight: state
                    .running
                    .get(&w.id)
                    .map_or(0, |c| c.load(Ordering::Acquire)),
                ..w.clone()
            })
            .collect();
        Ok((live, known))
    }

    /// Sends `job` to a worker (see the module's documentation).
    pub async fn dispatch(&self, job: &Job) -> Result<Dispatched, DispatchError> {
        let started = Instant::now();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut backoff = BACKOFF.0;
        loop {
            let (live, registered) = self.candidates(&job.audience).await?;
            if !registered {
                return Err(DispatchError::NoWorkerAvailable {
                    attempts,
                    registered,
                });
            }
            let key = match self.options.policy {
                Policy::Affinity => job.affinity.clone(),
                Policy::Random => hex::encode(rand::random::<[u8; 16]>()),
            };
            // By this dispatcher's own count, workers without a free slot are not called.
            let order = pick::order(&live, &key, super::now(), self.options.fresh_secs);
            for w in order.into_iter().filter(|w| w.in_flight < w.capacity) {
                if attempts.len() >= self.options.max_attempts as usize {
                    return Err(DispatchError::NoWorkerAvailable {
                        attempts,
                        registered,
                    });
                }
                let mut running = self.start(&w.id);
                match self.try_one(w, job).await {
                    Tried::Accepted(events) => {
                        return Ok(Dispatched {
                            worker_id: w.id.clone(),
                            address: w.address.clone(),
                            attempts,
                            events: *events,
                            _running: running,
                        });
                    }
                    Tried::Retry(reason) => {
                        running.quiet = true;
                        if reason == "unreachable" {
                            self.state().unreachable.insert(w.id.clone(), w.last_seen);
                        }
                        tracing::debug!(worker = %w.id, reason, "run refused before redemption; trying the next worker");
                        attempts.push(Attempt {
                            worker_id: w.id.clone(),
                            reason: reason.to_owned(),
                        });
                    }
                    Tried::Refused(status) => {
                        running.quiet = true;
                        return Err(DispatchError::Refused {
                            worker_id: w.id.clone(),
                            reason: crate::client::reason_of(&status),
                            message: with_causes(&status),
                        });
                    }
                }
            }
            if started.elapsed() + backoff > self.options.patience {
                return Err(DispatchError::NoWorkerAvailable {
                    attempts,
                    registered: true,
                });
            }
            // Every worker is busy (or refused): wait for one of this dispatcher's runs to end,
            // or a little while (other Hubs' runs, heartbeats, new workers).
            let _ = tokio::time::timeout(backoff, self.freed.notified()).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Counts a run on `worker` (released when the returned guard drops).
    fn start(&self, worker: &str) -> Running {
        let count = self
            .state()
            .running
            .entry(worker.to_owned())
            .or_default()
            .clone();
        count.fetch_add(1, Ordering::AcqRel);
        Running {
            count,
            freed: self.freed.clone(),
            quiet: false,
        }
    }

    fn channel(&self, address: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = self.state().channels.get(address) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(address.to_owned())?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        self.state()
            .channels
            .insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    async fn try_one(&self, w: &Live, job: &Job) -> Tried {
        let channel = match self.channel(&w.address) {
            Ok(c) => c,
            Err(_) => return Tried::Retry("connect_failed"),
        };
        let request = ExecuteRequest {
            token: job.token.expose().to_owned(),
            workflow_json: job.workflow_json.clone(),
            bypass_cache: false,
            update_cache: false,
            params_json: job.params_json.clone(),
        };
        let mut client = WorkerClient::new(channel);
        let call = client.execute(request);
        match tokio::time::timeout(ACCEPT_TIMEOUT, call).await {
            Ok(Ok(response)) => Tried::Accepted(Box::new(response.into_inner())),
            Ok(Err(status)) => match retryable(&status) {
                Some(reason) => Tried::Retry(reason),
                None => Tried::Refused(status),
            },
            // Whether it was accepted is unknown: not retried (dropping the call cancels it).
            Err(_) => Tried::Refused(tonic::Status::deadline_exceeded(format!(
                "the worker did not answer within {} s",
                ACCEPT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Whether a refusal happened before redemption, so the token may go to another worker.
fn retryable(status: &tonic::Status) -> Option<&'static str> {
    let reason = status
        .metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok());
    match reason {
        Some("over_capacity") => Some("over_capacity"),
        Some("draining") => Some("draining"),
        Some("audit_spool_full") => Some("audit_spool_full"),
        Some(_) => None,
        // No worker answered. Retrying is safe even if one did and then broke off: a run
        // whose client went away is cancelled, and its token, if it was redeemed, is refused
        // everywhere else as replayed.
        None if transport_error(status) => Some("unreachable"),
        None => None,
    }
}

/// A status's message and its causes, `: `-separated (a transport error says little at the
/// top).
fn with_causes(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut next = std::error::Error::source(status);
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// Whether the call failed in the transport (the connection could not be opened, or broke
/// before the worker answered): tonic gives such statuses their cause as a source, statuses a
/// server sent have none.
fn transport_error(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}
