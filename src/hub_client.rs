//! The worker's side of the `Hub` service: register (getting the key set and a worker secret),
//! redeem a verified token for its sealed credentials and open them, heartbeat, deregister.
//! Opened credentials exist only as [`Credential`]s (zeroizing secrets); the worker secret
//! lives in memory only, shared by every clone, and goes with each heartbeat and deregister.
//! This module never logs them or the token.

use std::time::Duration;

use tonic::transport::Channel;

use crate::creds::{CredError, Credential, TransportKey};
use crate::proto::hub_client::HubClient as Client;
use crate::proto::{
    DeregisterRequest, HeartbeatRequest, RedeemRequest, RegisterRequest, SealedCredential,
};
use crate::secret::Secret;
use crate::token::{KeySet, Verified};

/// Who this worker is, as it registers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Worker id.
    pub id: String,
    /// Where the Hub reaches this worker.
    pub address: String,
    /// The audience its tokens carry.
    pub audience: String,
    /// Runs at once.
    pub capacity: u32,
    /// The audit trail's public key (empty: no audit trail).
    pub audit_public_key: String,
}

/// Why a call to the Hub failed. Each message names the Hub's URL and the cause (the whole
/// chain of sources: "tcp connect error: Connection refused (os error 111)", not only
/// "transport error").
#[derive(Debug, thiserror::Error)]
pub enum HubCallError {
    /// Cannot reach the Hub (nothing listens, no route, TLS handshake failed, timeout).
    #[error("cannot reach the hub at {url}: {cause}")]
    Unreachable {
        /// The Hub's URL.
        url: String,
        /// What failed, with its sources.
        cause: String,
    },
    /// The Hub's URL (or the TLS settings for it) is unusable: a configuration error.
    #[error("the hub url {url:?} is unusable: {cause}")]
    BadEndpoint {
        /// The Hub's URL.
        url: String,
        /// Why.
        cause: String,
    },
    /// The Hub refused, with its reason.
    #[error("the hub at {url} refused ({reason}, {code:?}): {message}")]
    Refused {
        /// The Hub's URL.
        url: String,
        /// The Hub's reason, parsed.
        reason: HubReason,
        /// The gRPC status code.
        code: tonic::Code,
        /// The Hub's message, with the status's sources if any.
        message: String,
    },
    /// The Hub's answer is unusable (bad key set, a credential that does not open).
    #[error("the hub's answer is unusable: {0}")]
    BadAnswer(String),
    /// A credential could not be used.
    #[error(transparent)]
    Credential(#[from] CredError),
}

impl HubCallError {
    /// Stable code.
    pub fn code(&self) -> String {
        match self {
            HubCallError::Unreachable { .. } => "hub_unreachable".into(),
            HubCallError::BadEndpoint { .. } => "hub_bad_endpoint".into(),
            HubCallError::Refused { reason, .. } => reason.as_str().to_owned(),
            HubCallError::BadAnswer(_) => "hub_bad_answer".into(),
            HubCallError::Credential(e) => e.code().into(),
        }
    }

    /// Whether trying again later can succeed: the Hub is unreachable, busy, failing or asks
    /// to back off. Refusals that only a change of configuration or secrets fixes are not.
    pub fn is_transient(&self) -> bool {
        use tonic::Code;
        match self {
            HubCallError::Unreachable { .. } | HubCallError::BadAnswer(_) => true,
            HubCallError::BadEndpoint { .. } | HubCallError::Credential(_) => false,
            HubCallError::Refused { reason, code, .. } => match reason {
                HubReason::RegistrationBackoff => true,
                HubReason::BadRegistrationSecret
                | HubReason::WorkerKeyMismatch
                | HubReason::BadWorkerSecret => false,
                _ => matches!(
                    code,
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::ResourceExhausted
                        | Code::Aborted
                        | Code::Internal
                        | Code::Unknown
                        | Code::Cancelled
                ),
            },
        }
    }

    /// Whether this worker's configuration or secrets are at fault (a wrong URL, registration
    /// secret or transport key, a worker id held by another key, fields the Hub refuses).
    pub fn is_config(&self) -> bool {
        match self {
            HubCallError::BadEndpoint { .. } | HubCallError::Credential(_) => true,
            HubCallError::Refused { reason, code, .. } => {
                matches!(
                    reason,
                    HubReason::BadRegistrationSecret | HubReason::WorkerKeyMismatch
                ) || *code == tonic::Code::InvalidArgument
            }
            HubCallError::Unreachable { .. } | HubCallError::BadAnswer(_) => false,
        }
    }
}

/// An error and its sources, joined with ": " (a source whose text the previous one already
/// holds is skipped).
pub(crate) fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Why the Hub refused a call: its `hubworker-reason`, parsed once at this boundary so that
/// callers decide by kind, never by text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubReason {
    /// The token was redeemed already (single use).
    AlreadyRedeemed,
    /// The Hub does not know the token.
    UnknownToken,
    /// The token does not verify at the Hub.
    InvalidToken,
    /// The registration secret is wrong.
    BadRegistrationSecret,
    /// Too many wrong registration secrets from this peer: wait.
    RegistrationBackoff,
    /// The worker secret is missing or wrong.
    BadWorkerSecret,
    /// The worker id is registered with another transport key.
    WorkerKeyMismatch,
    /// The Hub does not know this worker.
    UnknownWorker,
    /// Any other reason (kept as the Hub said it).
    Other(String),
}

impl HubReason {
    /// The reason from its wire code.
    pub fn parse(code: &str) -> HubReason {
        match code {
            "already_redeemed" => HubReason::AlreadyRedeemed,
            "unknown_token" => HubReason::UnknownToken,
            "invalid_token" => HubReason::InvalidToken,
            "bad_registration_secret" => HubReason::BadRegistrationSecret,
            "registration_backoff" => HubReason::RegistrationBackoff,
            "bad_worker_secret" => HubReason::BadWorkerSecret,
            "worker_key_mismatch" => HubReason::WorkerKeyMismatch,
            "unknown_worker" => HubReason::UnknownWorker,
            other => HubReason::Other(other.to_owned()),
        }
    }

    /// The wire code.
    pub fn as_str(&self) -> &str {
        match self {
            HubReason::AlreadyRedeemed => "already_redeemed",
            HubReason::UnknownToken => "unknown_token",
            HubReason::InvalidToken => "invalid_token",
            HubReason::BadRegistrationSecret => "bad_registration_secret",
            HubReason::RegistrationBackoff => "registration_backoff",
            HubReason::BadWorkerSecret => "bad_worker_secret",
            HubReason::WorkerKeyMismatch => "worker_key_mismatch",
            HubReason::UnknownWorker => "unknown_worker",
            HubReason::Other(code) => code,
        }
    }
}

impl std::fmt::Display for HubReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn refused(url: &str, s: tonic::Status) -> HubCallError {
    let reason = HubReason::parse(
        s.metadata()
            .get("hubworker-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("hub_error"),
    );
    let mut message = s.message().to_owned();
    if let Some(source) = std::error::Error::source(&s) {
        let chain = cause_chain(source);
        if !message.contains(&chain) {
            message = format!("{message}: {chain}");
        }
    }
    HubCallError::Refused {
        url: url.to_owned(),
        reason,
        code: s.code(),
        message,
    }
}

/// A connection to the Hub with this worker's identity and keys. Clones share the channel
/// (gRPC multiplexes calls over it), so concurrent runs redeem concurrently.
#[derive(Clone)]
pub struct HubClient {
    client: Client<Channel>,
    url: std::sync::Arc<str>,
    identity: Identity,
    transport_text: Secret,
    transport: std::sync::Arc<TransportKey>,
    registration_secret: Secret,
    /// The current registration's worker secret (empty before the first registration). Shared
    /// by clones: a re-registration (key reload) replaces it for the heartbeat task too.
    worker_secret: std::sync::Arc<std::sync::RwLock<Secret>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("url", &self.url)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What registration returned.
#[derive(Debug)]
pub struct Registration {
    /// The Hub's id (the tokens' `iss`).
    pub hub_id: String,
    /// The key set to verify tokens with.
    pub keys: KeySet,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

impl HubClient {
    /// Connects to the Hub at `endpoint` (`http://...`, or `https://...` with `tls`).
    pub async fn connect(
        endpoint: String,
        identity: Identity,
        transport_key: Secret,
        registration_secret: Secret,
    ) -> Result<HubClient, HubCallError> {
        Self::connect_tls(endpoint, None, identity, transport_key, registration_secret).await
    }

    /// [`connect`](Self::connect) with a TLS client configuration (CA, client identity).
    pub(crate) async fn connect_tls(
        endpoint: String,
        tls: Option<tonic::transport::ClientTlsConfig>,
        identity: Identity,
        transport_key: Secret,
        registration_secret: Secret,
    ) -> Result<HubClient, HubCallError> {
        let transport = TransportKey::new(&transport_key)?;
        let url = endpoint;
        let bad = |e: tonic::transport::Error| HubCallError::BadEndpoint {
            url: url.clone(),
            cause: cause_chain(&e),
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone()).map_err(bad)?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(bad)?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| HubCallError::Unreachable {
                url: url.clone(),
                cause: cause_chain(&e),
            })?;
        Ok(HubClient {
            client: Client::new(channel),
            url: url.into(),
            identity,
            transport_text: transport_key,
            transport: std::sync::Arc::new(transport),
            registration_secret,
            worker_secret: std::sync::Arc::new(std::sync::RwLock::new(Secret::new(String::new()))),
        })
    }

    /// The current worker secret, as sent on the wire.
    fn worker_secret(&self) -> String {
        self.worker_secret
            .read()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default()
    }

    /// Registers; returns the Hub's id and key set, and keeps the worker secret it issued.
    /// Registering again (a restart, a key reload) proves this is the same worker by its
    /// transport key; the Hub then issues a new worker secret, which replaces the old one.
    pub async fn register(&mut self) -> Result<Registration, HubCallError> {
        let resp = self
            .client
            .register(RegisterRequest {
                registration_secret: self.registration_secret.expose().to_owned(),
                worker_id: self.identity.id.clone(),
                address: self.identity.address.clone(),
                capacity: self.identity.capacity,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                transport_key: self.transport_text.expose().to_owned(),
                audience: self.identity.audience.clone(),
                worker_secret: self.worker_secret(),
                audit_public_key: self.identity.audit_public_key.clone(),
            })
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        let issued = Secret::new(resp.worker_secret);
        let keys = KeySet::from_jwks(&resp.jwks_json).map_err(|e| {
            HubCallError::BadAnswer(format!("the key set from the hub at {}: {e}", self.url))
        })?;
        // A Hub without worker secrets sends none; then none is presented either.
        if let Ok(mut current) = self.worker_secret.write() {
            *current = issued;
        }
        Ok(Registration {
            hub_id: resp.hub_id,
            keys,
            heartbeat: Duration::from_secs(u64::from(resp.heartbeat_interval_secs.max(1))),
        })
    }

    /// Redeems a verified token and opens its credentials (sealed at most `ttl` ago). Every
    /// connection the token grants must arrive, and nothing else.
    pub async fn redeem(
        &mut self,
        token: &Verified,
        ttl: Duration,
    ) -> Result<Vec<Credential>, HubCallError> {
        let sealed = self.redeem_sealed(token).await?;
        self.open(&sealed, ttl)
    }

    /// Redeems a verified token and returns its credentials still sealed, after checking that
    /// they are exactly the token's connections. With process isolation the daemon stops
    /// here: only the run child opens them.
    pub async fn redeem_sealed(
        &mut self,
        token: &Verified,
    ) -> Result<Vec<SealedCredential>, HubCallError> {
        let resp = self
            .client
            .redeem(RedeemRequest {
                token: token.token.expose().to_owned(),
                worker_id: self.identity.id.clone(),
            })
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        for sealed in &resp.credentials {
            if !token.claims.connections.contains(&sealed.connection) {
                return Err(HubCallError::BadAnswer(format!(
                    "a credential for {:?}, which the token does not grant",
                    sealed.connection
                )));
            }
        }
        for granted in &token.claims.connections {
            if !resp.credentials.iter().any(|c| &c.connection == granted) {
                return Err(HubCallError::BadAnswer(format!(
                    "no credential for {granted:?}"
                )));
            }
        }
        Ok(resp.credentials)
    }

    /// Opens sealed credentials with this worker's transport key (inline isolation only).
    pub fn open(
        &self,
        sealed: &[SealedCredential],
        ttl: Duration,
    ) -> Result<Vec<Credential>, HubCallError> {
        sealed
            .iter()
            .map(|s| {
                self.transport
                    .open(&s.connection, &s.sealed, ttl)
                    .map_err(HubCallError::from)
            })
            .collect()
    }

    /// The transport key, to hand to a run child over its pipe.
    pub(crate) fn transport_key(&self) -> &TransportKey {
        &self.transport
    }

    /// Leaves the Hub (after draining).
    pub async fn deregister(&mut self) -> Result<bool, HubCallError> {
        let resp = self
            .client
            .deregister(DeregisterRequest {
                registration_secret: self.registration_secret.expose().to_owned(),
                worker_id: self.identity.id.clone(),
                worker_secret: self.worker_secret(),
            })
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        Ok(resp.known)
    }

    /// The Hub's URL, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends audit records (in order); the Hub's counts of stored and duplicate records.
    pub async fn report(
        &mut self,
        records: Vec<crate::proto::AuditRecord>,
    ) -> Result<crate::proto::ReportResponse, HubCallError> {
        let resp = self
            .client
            .report(crate::proto::ReportRequest {
                worker_id: self.identity.id.clone(),
                worker_secret: self.worker_secret(),
                records,
            })
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        Ok(resp)
    }

    /// Reports load. Returns the Hub's `jwks_json`: its current token key set when it sends
    /// one (a rotation), empty when unchanged.
    pub async fn heartbeat(
        &mut self,
        in_flight: u32,
        draining: bool,
    ) -> Result<String, HubCallError> {
        let resp = self
            .client
            .heartbeat(HeartbeatRequest {
                worker_id: self.identity.id.clone(),
                capacity: self.identity.capacity,
                runs_in_flight: in_flight,
                draining,
                worker_secret: self.worker_secret(),
            })
            .await
            .map_err(|s| refused(&self.url, s))?
            .into_inner();
        Ok(resp.jwks_json)
    }
}
