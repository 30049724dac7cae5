//! Assembling the worker daemon: secrets, registration with the Hub, the `Worker` service with
//! its limits, the standard health service and server reflection v1 and v1alpha (so `grpcurl`
//! works without proto files), the heartbeat task, and a shutdown that drains and then ends
//! within [`STOP_DEADLINE`] whatever streams are still open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Worker;
use super::service::WorkerService;
use crate::config::Config;
use crate::hub_client::{HubClient, Identity};
use crate::keys::{Env, SecretProblem};
use crate::proto::worker_server::{SERVICE_NAME as WORKER, WorkerServer};
use crate::token::{Policy, Verifier};

/// How long the server gets, once told to stop (after the drain), to close its connections
/// gracefully; then it is stopped hard, so no open stream (a health `Watch`, a client that
/// never reads) holds the process.
pub(crate) const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// Secrets missing or weak (names the settings, never values).
    #[error("refusing to start:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Secrets(Vec<SecretProblem>),
    /// The listen address is unusable.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// TLS material is unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// Registration failed in a way waiting cannot fix.
    #[error("registration with the hub failed: {0}")]
    Register(#[from] crate::hub_client::HubCallError),
    /// The sandbox does not work on this host (process isolation).
    #[error("the run sandbox does not work here: {0}")]
    Sandbox(crate::sandbox::Exit),
    /// The audit spool cannot be opened.
    #[error("{0}")]
    Audit(String),
}

impl StartError {
    /// Whether the configuration (or its secrets) is at fault, not the moment: a usage error
    /// (exit 2) rather than a failure to retry (exit 1).
    pub(crate) fn is_config(&self) -> bool {
        match self {
            StartError::Secrets(_) | StartError::Tls(_) => true,
            StartError::Register(e) => e.is_config(),
            StartError::Listen(..) | StartError::Sandbox(_) | StartError::Audit(_) => false,
        }
    }
}

impl From<StartError> for crate::Error {
    fn from(e: StartError) -> crate::Error {
        crate::Error::Start {
            config: e.is_config(),
            message: e.to_string(),
        }
    }
}

/// A running worker daemon.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The shared state.
    pub worker: Arc<Worker>,
    health: crate::introspection::Health,
    stop: Option<oneshot::Sender<()>>,
    stop_metrics: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    metrics: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Runs still in flight when the grace period ended, cancelled then.
    pub(crate) cancelled: usize,
}

impl Running {
    /// Stops taking runs and lets those in flight finish: new `Execute`s get UNAVAILABLE
    /// (`draining`), health says NOT_SERVING for the server (`""`) and `hubworker.v1.Worker`
    /// (open `Watch` streams get the change), the Hub hears it at once; after `grace` the runs
    /// left are cancelled. The server keeps answering (Status, health, the runs' streams).
    pub(crate) async fn drain(&self, grace: Duration) -> Drained {
        self.worker.drain();
        self.health.not_serving().await;
        if let Err(e) = self.worker.heartbeat().await {
            tracing::warn!(reason = %e.code(), "could not tell the hub about the drain: {e}");
        }
        let until = tokio::time::Instant::now() + grace;
        while self.worker.in_flight() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut cancelled = 0;
        if self.worker.in_flight() > 0 {
            cancelled = self.worker.cancel_all();
            tracing::warn!(
                cancelled,
                "drain grace period over: cancelling the runs left"
            );
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.worker.in_flight() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Drained { cancelled }
    }

    /// Whether the gRPC server task is still running (the watchdog asks).
    pub(crate) fn server_alive(&self) -> bool {
        !self.server.is_finished()
    }

    /// Stops accepting, ends the health `Watch` streams, lets the server finish what is open
    /// for at most [`STOP_DEADLINE`], then stops it hard, and returns.
    pub(crate) async fn shutdown(mut self) {
        self.worker.drain();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_metrics.take() {
            let _ = stop.send(());
        }
        self.heartbeat.abort();
        self.health.stop().await;
        let deadline = tokio::time::Instant::now() + STOP_DEADLINE;
        if tokio::time::timeout_at(deadline, &mut self.server)
            .await
            .is_err()
        {
            tracing::warn!(
                deadline_secs = STOP_DEADLINE.as_secs(),
                "streams still open at the stop deadline: closing them"
            );
            self.server.abort();
        }
        if let Some(mut m) = self.metrics.take()
            && tokio::time::timeout_at(deadline, &mut m).await.is_err()
        {
            m.abort();
        }
    }
}

/// Starts the daemon: loads secrets, binds, registers with the Hub (waiting for it while it
/// cannot be reached; `waiting` hears of each failed attempt), serves.
pub(crate) async fn start(
    config: Config,
    env: &dyn Env,
    waiting: &(dyn Fn(&super::register::Waiting<'_>) + Sync),
) -> Result<Running, StartError> {
    // The daemon holds the transport key: no core dumps, no /proc/<pid>/mem for same-user
    // processes (run children included).
    if let Err(e) = crate::locked::set_non_dumpable() {
        tracing::warn!(error = %e, "cannot make the daemon non-dumpable");
    }
    let secrets = secrets(&config, env)?;
    let listener = tokio::net::TcpListener::bind(config.worker.listen)
        .await
        .map_err(|e| StartError::Listen(config.worker.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(config.worker.listen, e))?;
    let auditor = match &config.audit.dir {
        Some(dir) => Some(Arc::new(
            crate::audit::Auditor::open(dir, &config.worker.id, config.audit.max_records)
                .map_err(|e| StartError::Audit(e.to_string()))?,
        )),
        None => {
            tracing::warn!("no audit trail: [audit] dir is not set (development only)");
            None
        }
    };
    let identity = Identity {
        audit_public_key: auditor.as_ref().map(|a| a.public_key()).unwrap_or_default(),
        id: config.worker.id.clone(),
        address: config
            .worker
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        audience: config.worker.audience.clone(),
        capacity: config.worker.capacity,
    };
    let hub_tls = hub_tls(&config.hub)?;
    // An unreachable Hub is waited for (backoff with jitter), never fatal: see `register.rs`.
    let (hub, registration) = super::register::register(
        &config.hub.url,
        || {
            HubClient::connect_tls(
                config.hub.url.clone(),
                hub_tls.clone(),
                identity.clone(),
                secrets.transport_key.clone(),
                secrets.registration_secret.clone(),
            )
        },
        super::register::Backoff::new(
            Duration::from_millis(config.hub.register_backoff_initial_ms),
            Duration::from_millis(config.hub.register_backoff_max_ms),
        ),
        waiting,
    )
    .await?;
    tracing::info!(hub = %crate::secret::redact_url(&config.hub.url), worker_id = %config.worker.id, "registered with the hub");
    // A key set from a file wins over the one the Hub sends (pinning); else the Hub's, which
    // its heartbeats then keep current (rotation).
    let pinned = secrets.key_set.is_some();
    let keys = secrets.key_set.unwrap_or(registration.keys);
    let policy = Policy {
        issuer: config.hub.issuer.clone(),
        audiences: config.token_audiences(),
        max_lifetime: Duration::from_secs(config.tokens.max_lifetime_secs),
        run_roles: config.tokens.run_roles.clone(),
        hs256_secret: None,
    };
    let max_message = config.limits.max_message_bytes;
    let worker = Arc::new(Worker::new(
        config,
        Verifier::new(policy, keys),
        hub,
        auditor,
    ));
    worker.pin_keys(pinned);
    worker.metrics().hub_contact_ok();
    let confinements = worker.probe_sandbox().await.map_err(StartError::Sandbox)?;

    let (health, health_service) = crate::introspection::Health::new(&[WORKER]).await;
    let (reflection, reflection_v1alpha) = crate::introspection::reflection(&[WORKER])
        .map_err(|e| StartError::Listen(addr, std::io::Error::other(e.to_string())))?;
    let service = WorkerServer::new(WorkerService::new(worker.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &worker.config().tls.clone() {
        builder = builder
            .tls_config(server_tls(tls)?)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    // The metrics endpoint listens before the gRPC service answers: whoever sees the worker
    // serve can scrape it (and a metrics port that cannot be bound starts nothing).
    let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
    let metrics = serve_metrics(&worker, async move {
        let _ = metrics_stopped.await;
    })
    .await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(
        builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            }),
    );
    let heartbeat = heartbeat_task(worker.clone(), registration.heartbeat);
    super::audit_sender::start(worker.clone());
    announce(&worker, addr, &confinements);
    Ok(Running {
        addr,
        worker,
        health,
        stop: Some(stop),
        stop_metrics: Some(stop_metrics),
        server,
        metrics,
        heartbeat,
    })
}

/// The worker's secrets, checked, and the warnings `validate-config` prints too (one function
/// for both: [`crate::config::preflight`]).
fn secrets(config: &Config, env: &dyn Env) -> Result<crate::keys::WorkerSecrets, StartError> {
    let preflight = crate::config::preflight::check(config, env).map_err(StartError::Secrets)?;
    for w in &preflight.warnings {
        tracing::warn!("{w}");
    }
    Ok(preflight.secrets)
}

/// The metrics endpoint, when enabled: its task.
async fn serve_metrics(
    worker: &Arc<Worker>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>, StartError> {
    if !worker.config().metrics.enabled {
        return Ok(None);
    }
    let listen = worker.config().metrics.listen;
    let listener = crate::metrics::bind(listen)
        .await
        .map_err(|e| StartError::Listen(listen, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Listen(listen, e))?;
    let w = worker.clone();
    let refresh: Arc<dyn Fn(&crate::metrics::Metrics) + Send + Sync> = Arc::new(move |m| {
        let config = w.config();
        m.runs_in_flight.set(i64::from(w.in_flight()));
        m.capacity.set(i64::from(config.worker.capacity));
        m.draining.set(i64::from(w.draining()));
        let (entries, bytes) = w.cache_stats_now();
        m.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        m.cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    });
    let task = tokio::spawn(crate::metrics::serve(
        listener,
        worker.metrics().clone(),
        refresh,
        stopped,
    ));
    tracing::info!(addr = %bound, "metrics endpoint listening");
    Ok(Some(task))
}

/// Reports load to the Hub every `every`, for the daemon's life.
fn heartbeat_task(worker: Arc<Worker>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = worker.heartbeat().await {
                tracing::warn!(reason = %e.code(), "heartbeat failed: {e}");
            }
        }
    })
}

/// Says how the worker serves (loudly when runs are not sandboxed).
fn announce(worker: &Worker, addr: SocketAddr, confinements: &crate::sandbox::Confinements) {
    let config = worker.config();
    match worker.isolation() {
        crate::config::Isolation::Process => tracing::info!(
            worker_id = %config.worker.id,
            %addr,
            capacity = config.worker.capacity,
            confinements = %confinements.active().join(","),
            landlock_abi = confinements.landlock_abi,
            "worker serving; each run in a sandboxed process"
        ),
        crate::config::Isolation::Inline => tracing::warn!(
            worker_id = %config.worker.id,
            %addr,
            capacity = config.worker.capacity,
            "worker serving with isolation \"inline\": runs are NOT sandboxed (development only)"
        ),
    }
}

/// The rustls server config from the `[tls]` files (mutual TLS with a client CA).
fn server_tls(
    tls: &crate::config::TlsSection,
) -> Result<tonic::transport::ServerTlsConfig, StartError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
    };
    let cert = read(&tls.cert_file)?;
    let key = zeroize::Zeroizing::new(read(&tls.key_file)?);
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key.as_slice()));
    if let Some(ca) = &tls.client_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// The TLS client config for an `https://` Hub (CA, optional client identity).
fn hub_tls(
    hub: &crate::config::HubSection,
) -> Result<Option<tonic::transport::ClientTlsConfig>, StartError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let Some(ca) = &hub.ca_file else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&hub.client_cert_file, &hub.client_key_file) {
        let key = zeroize::Zeroizing::new(read(key)?);
        tls = tls.identity(Identity::from_pem(read(cert)?, key.as_slice()));
    }
    Ok(Some(tls))
}
