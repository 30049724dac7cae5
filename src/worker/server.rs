//! Assembling the worker daemon: secrets, registration with the Hub, the `Worker` service with
//! its limits, the standard health service and server reflection (so `grpcurl` works without
//! proto files), the heartbeat task, and a shutdown that drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Worker;
use super::service::WorkerService;
use crate::config::{Config, ModeSetting};
use crate::hub_client::{HubClient, Identity};
use crate::keys::{Env, SecretProblem};
use crate::proto::worker_server::WorkerServer;
use crate::token::{Policy, Verifier};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Secrets missing or weak (names the settings, never values).
    #[error("refusing to start:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Secrets(Vec<SecretProblem>),
    /// The listen address is unusable.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// TLS material is unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// Registration failed.
    #[error("registration with the hub failed: {0}")]
    Register(#[from] crate::hub_client::HubCallError),
}

/// A running worker daemon.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The shared state.
    pub worker: Arc<Worker>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets the server finish, and returns.
    pub async fn shutdown(mut self) {
        self.worker.drain();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.heartbeat.abort();
        let _ = (&mut self.server).await;
    }

    /// Waits until the server ends (it runs until [`shutdown`](Self::shutdown) or an error).
    pub async fn wait(&mut self) -> Result<(), String> {
        match (&mut self.server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Starts the daemon: loads secrets, binds, registers with the Hub, serves.
pub async fn start(config: Config, env: &dyn Env) -> Result<Running, StartError> {
    let mut env_map = std::collections::HashMap::new();
    if config.worker.mode == ModeSetting::Production {
        env_map.insert("HUBWORKER_ENV".to_owned(), "production".to_owned());
    }
    let layered = Layered {
        first: &env_map,
        then: env,
    };
    let (secrets, warnings) =
        crate::keys::load_worker_secrets(config.secrets.dir.clone(), &layered)
            .map_err(StartError::Secrets)?;
    for w in &warnings {
        tracing::warn!(setting = %w.setting, "{}", w.why);
    }
    let listener = tokio::net::TcpListener::bind(config.worker.listen)
        .await
        .map_err(|e| StartError::Listen(config.worker.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(config.worker.listen, e))?;
    let identity = Identity {
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
    let mut hub = HubClient::connect_tls(
        config.hub.url.clone(),
        hub_tls,
        identity,
        secrets.transport_key,
        secrets.registration_secret,
    )
    .await?;
    let registration = hub.register().await?;
    // A key set from a file wins over the one the Hub sends (pinning); else the Hub's.
    let keys = secrets.key_set.unwrap_or(registration.keys);
    let policy = Policy {
        issuer: config.hub.issuer.clone(),
        audience: config.worker.audience.clone(),
        max_lifetime: Duration::from_secs(config.tokens.max_lifetime_secs),
        run_roles: config.tokens.run_roles.clone(),
        hs256_secret: None,
    };
    let max_message = config.limits.max_message_bytes;
    let worker = Arc::new(Worker::new(config, Verifier::new(policy, keys), hub));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<WorkerServer<WorkerService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Listen(addr, std::io::Error::other(e.to_string())))?;
    let service = WorkerServer::new(WorkerService::new(worker.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &worker.config.tls {
        builder = builder
            .tls_config(server_tls(tls)?)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let reporter = health.clone();
    let server = tokio::spawn(
        builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
                reporter
                    .set_not_serving::<WorkerServer<WorkerService>>()
                    .await;
            }),
    );
    let heartbeat = {
        let worker = worker.clone();
        let every = registration.heartbeat;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = worker.heartbeat().await {
                    tracing::warn!(reason = %e.code(), "heartbeat failed");
                }
            }
        })
    };
    tracing::info!(worker_id = %worker.config.worker.id, %addr, capacity = worker.config.worker.capacity, "worker serving (isolation: inline, runs are not sandboxed)");
    Ok(Running {
        addr,
        worker,
        stop: Some(stop),
        server,
        heartbeat,
    })
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

/// Environment lookups that try one source, then another.
struct Layered<'a> {
    first: &'a dyn Env,
    then: &'a dyn Env,
}

impl Env for Layered<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.first.var(name).or_else(|| self.then.var(name))
    }
}
