//! The reference Hub's gRPC `Hub` service: proto in, store and keys, proto out. Refusals carry
//! their reason code at the start of the status message (`[already_redeemed] ...`) and in the
//! `hubworker-reason` metadata entry; nothing sent back holds a secret except the sealed
//! credentials of a successful `Redeem` and the worker secret of a successful `Register`.
//! Authentication failures are counted ([`HubService::auth_stats`]) and logged with their
//! totals; guesses of the registration secret back off per peer address.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status};

use super::limiter::{Attempt, Limiter};
use super::store::WorkerFields;
use super::workers::{AuthCounters, AuthStats};
use super::{HEARTBEAT_SECS, HubError, HubKeys, Store, now};
use crate::creds::TransportKey;
use crate::proto::hub_server::Hub;
use crate::proto::{
    DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, RedeemRequest,
    RedeemResponse, RegisterRequest, RegisterResponse, SealedCredential,
};
use crate::secret::Secret;
use crate::token::{Claims, MAX_TOKEN_BYTES};

/// The `Hub` service over a store and the Hub's keys. Clones share the backoff state, the
/// counters and the keys in force (which follow rotations stored in the database).
#[derive(Debug, Clone)]
pub struct HubService {
    store: Store,
    /// The keys from the secrets (`token-signing.pem`): in force until a rotation.
    file_keys: Arc<HubKeys>,
    /// The keys in force.
    keys: Arc<RwLock<Arc<HubKeys>>>,
    heartbeat_secs: u32,
    limiter: Arc<Limiter>,
    counters: Arc<AuthCounters>,
}

impl HubService {
    /// A service over `store` with `keys`, and the default backoff for wrong registration
    /// secrets (`limiter::DEFAULT_BURST` failures at once,
    /// then one per `limiter::DEFAULT_REFILL` per peer).
    pub fn new(store: Store, keys: Arc<HubKeys>) -> HubService {
        HubService {
            store,
            keys: Arc::new(RwLock::new(keys.clone())),
            file_keys: keys,
            heartbeat_secs: HEARTBEAT_SECS,
            limiter: Arc::new(Limiter::default()),
            counters: Arc::new(AuthCounters::default()),
        }
    }

    /// The same service with another backoff: `burst` failures at once per peer, then one per
    /// `refill`.
    pub fn with_backoff(mut self, burst: u32, refill: Duration) -> HubService {
        self.limiter = Arc::new(Limiter::new(burst, refill));
        self
    }

    /// The same service asking workers for a heartbeat every `secs` seconds (default 15).
    pub fn with_heartbeat_secs(mut self, secs: u32) -> HubService {
        self.heartbeat_secs = secs.max(1);
        self
    }

    /// The keys in force (as last looked up).
    fn keys(&self) -> Arc<HubKeys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The keys in force after looking at the database: a rotation made there since the last
    /// look (`hub rotate-key`) is picked up. The look costs one small query; keys are only
    /// decrypted when they changed. A failing database keeps the keys in force.
    async fn current_keys(&self) -> Arc<HubKeys> {
        let cached = self.keys();
        let stored = match super::signing::stored_kids(&self.store).await {
            Ok(stored) if super::signing::matches(&cached, &stored) => return cached,
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(
                    "cannot look for rotated signing keys; keeping the current ones: {e}"
                );
                return cached;
            }
        };
        let fresh = match super::signing::resolve(&self.store, &self.file_keys).await {
            Ok(Some(keys)) => Arc::new(keys),
            Ok(None) => self.file_keys.clone(),
            Err(e) => {
                tracing::warn!(
                    ?stored,
                    "cannot load rotated signing keys; keeping the current ones: {e}"
                );
                return cached;
            }
        };
        tracing::info!(kid = %fresh.kid, previous_kid = fresh.previous_kid().unwrap_or(""), "signing keys rotated");
        if let Ok(mut k) = self.keys.write() {
            *k = fresh.clone();
        }
        fresh
    }

    /// Authentication failures so far.
    pub fn auth_stats(&self) -> AuthStats {
        self.counters.stats()
    }

    /// The tonic server for this service.
    pub(crate) fn server(self) -> crate::proto::hub_server::HubServer<HubService> {
        crate::proto::hub_server::HubServer::new(self)
    }

    async fn redeem_inner(&self, req: RedeemRequest) -> Result<Vec<SealedCredential>, HubError> {
        if req.token.len() > MAX_TOKEN_BYTES {
            return Err(HubError::InvalidToken("too large".into()));
        }
        let worker = self
            .store
            .worker(&req.worker_id, &self.file_keys.at_rest)
            .await?
            .ok_or(HubError::UnknownWorker)?;
        // The Hub checks its own token too: signature (current or previous key), expiry,
        // issuer, and that it was issued for the redeeming worker: its audience (pool) or its
        // id. A kid not in force here may be a rotation this process has not seen yet.
        let mut keys = self.keys();
        let kid = jsonwebtoken::decode_header(&req.token)
            .ok()
            .and_then(|h| h.kid)
            .unwrap_or_default();
        if keys.public_key_of(&kid).is_none() {
            keys = self.current_keys().await;
        }
        let claims = verify_own(&req.token, &keys, &[&worker.audience, &worker.id])?;
        if !self.store.consume(&claims.jti, &worker.id, now()).await? {
            return Err(match self.store.token(&claims.jti).await? {
                None => HubError::UnknownToken,
                Some(_) => HubError::AlreadyRedeemed,
            });
        }
        let at_rest = &self.file_keys.at_rest;
        let transport = TransportKey::new(&worker.transport_key).map_err(|_| {
            HubError::BadRegistration("the worker's transport key is unusable".into())
        })?;
        let mut out = Vec::with_capacity(claims.connections.len());
        for name in &claims.connections {
            // An `ai` token's connection is a provider: its key goes out sealed instead.
            let sealed = if claims.scope == "ai" {
                let key = self.store.provider_key(name, at_rest).await?;
                key.seal(&transport)
            } else {
                let cred = self.store.credential(name, at_rest).await?;
                crate::creds::seal(&transport, &cred)
            }
            .map_err(|e| HubError::Refused(e.to_string()))?;
            out.push(SealedCredential {
                connection: name.clone(),
                sealed,
            });
        }
        Ok(out)
    }
}

/// Verifies a token this Hub issued, for a worker with one of `audiences`.
fn verify_own(token: &str, hub: &HubKeys, audiences: &[&str]) -> Result<Claims, HubError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| HubError::InvalidToken("malformed".into()))?;
    let public = match (header.alg, header.kid.as_deref()) {
        (Algorithm::EdDSA, Some(kid)) => hub.public_key_of(kid),
        _ => None,
    }
    .ok_or_else(|| HubError::InvalidToken("not signed by this Hub".into()))?;
    let key = DecodingKey::from_ed_components(public)
        .map_err(|_| HubError::InvalidToken("no key".into()))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[hub.hub_id.as_str()]);
    v.set_audience(audiences);
    v.leeway = crate::token::LEEWAY_SECS as u64;
    v.required_spec_claims = HashSet::from(["exp".to_owned(), "aud".to_owned(), "iss".to_owned()]);
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| HubError::InvalidToken(format!("{:?}", e.kind())))
}

/// The one map from Hub refusals to gRPC statuses.
pub(crate) fn status(e: &HubError) -> Status {
    use tonic::Code;
    let code = match e {
        HubError::BadRegistrationSecret
        | HubError::BadWorkerSecret
        | HubError::WorkerKeyMismatch => Code::Unauthenticated,
        HubError::RegistrationBackoff(_) => Code::ResourceExhausted,
        HubError::BadRegistration(_) | HubError::Refused(_) => Code::InvalidArgument,
        HubError::UnknownWorker => Code::PermissionDenied,
        HubError::InvalidToken(_) | HubError::UnknownToken => Code::Unauthenticated,
        HubError::AlreadyRedeemed => Code::FailedPrecondition,
        HubError::Store(_) => Code::Internal,
    };
    // Store errors stay in the Hub's log; the caller learns only that something failed.
    let message = match e {
        HubError::Store(_) => "the hub could not complete the request".to_owned(),
        other => other.to_string(),
    };
    let mut status = Status::new(code, format!("[{}] {message}", e.code()));
    if let Ok(v) = e.code().parse() {
        status.metadata_mut().insert("hubworker-reason", v);
    }
    status
}

fn valid_worker_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b':'))
}

impl HubService {
    /// The registration secret, compared in constant time (open registration: anything),
    /// unless `peer` is backing off after wrong ones.
    fn check_registration_secret(
        &self,
        secret: &Secret,
        worker_id: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Status> {
        let Some(expected) = &self.file_keys.registration_secret else {
            return Ok(());
        };
        let attempt = self.limiter.attempt(peer, || {
            secret
                .expose()
                .as_bytes()
                .ct_eq(expected.expose().as_bytes())
                .into()
        });
        let e = match attempt {
            Attempt::Passed => return Ok(()),
            Attempt::Failed => HubError::BadRegistrationSecret,
            Attempt::Blocked(wait) => HubError::RegistrationBackoff(wait),
        };
        let total = self.counters.count(&e);
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        match e {
            // At most the limiter's rate per peer: worth a line each.
            HubError::BadRegistrationSecret => {
                tracing::warn!(%worker_id, %peer, failures_total = total, "refused: wrong registration secret");
            }
            // As fast as an attacker sends: one line per hundred.
            _ if total % 100 == 1 => {
                tracing::warn!(%peer, refusals_total = total, "refused registrations: the peer is backing off after wrong secrets");
            }
            _ => {}
        }
        Err(status(&e))
    }

    /// Counts and logs a worker-authentication refusal, then maps it.
    fn refuse_worker(&self, e: HubError, call: &'static str, worker_id: &str) -> Status {
        let total = self.counters.count(&e);
        if matches!(e, HubError::BadWorkerSecret | HubError::WorkerKeyMismatch) {
            tracing::warn!(%worker_id, call, reason = e.code(), failures_total = total, "refused: no proof of being this worker");
        }
        status(&e)
    }
}

#[tonic::async_trait]
impl Hub for HubService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let req = request.into_inner();
        let registration = Secret::new(req.registration_secret);
        self.check_registration_secret(&registration, &req.worker_id, peer)?;
        if !valid_worker_id(&req.worker_id) {
            return Err(status(&HubError::BadRegistration(
                "worker_id must be 1-128 of A-Z a-z 0-9 . _ - @ :".into(),
            )));
        }
        if req.audience.is_empty() || req.address.is_empty() || req.capacity == 0 {
            return Err(status(&HubError::BadRegistration(
                "address, audience and a capacity > 0 are required".into(),
            )));
        }
        let transport = Secret::new(req.transport_key);
        if TransportKey::new(&transport).is_err() {
            return Err(status(&HubError::BadRegistration(
                "transport_key is not a Fernet key".into(),
            )));
        }
        let proof = Secret::new(req.worker_secret);
        let fields = WorkerFields {
            id: &req.worker_id,
            address: &req.address,
            audience: &req.audience,
            capacity: req.capacity,
            version: &req.version,
        };
        let secret = super::workers::register(
            &self.store,
            &self.file_keys.at_rest,
            &fields,
            &transport,
            proof.expose(),
            now(),
        )
        .await
        .map_err(|e| self.refuse_worker(e, "register", &req.worker_id))?;
        if !req.audit_public_key.is_empty() {
            let valid = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                req.audit_public_key.trim(),
            )
            .is_ok_and(|k| k.len() == 32);
            if !valid {
                return Err(status(&HubError::BadRegistration(
                    "audit_public_key is not an Ed25519 public key (32 bytes, URL-safe base64)"
                        .into(),
                )));
            }
            self.store
                .add_audit_key(&req.worker_id, req.audit_public_key.trim(), now())
                .await
                .map_err(|e| status(&e.into()))?;
        }
        tracing::info!(worker_id = %req.worker_id, address = %req.address, capacity = req.capacity, "worker registered");
        let keys = self.current_keys().await;
        Ok(Response::new(RegisterResponse {
            hub_id: keys.hub_id.clone(),
            jwks_json: keys.jwks.clone(),
            heartbeat_interval_secs: self.heartbeat_secs,
            worker_secret: secret.expose().to_owned(),
        }))
    }

    async fn redeem(
        &self,
        request: Request<RedeemRequest>,
    ) -> Result<Response<RedeemResponse>, Status> {
        let req = request.into_inner();
        let worker_id = req.worker_id.clone();
        match self.redeem_inner(req).await {
            Ok(credentials) => {
                tracing::info!(%worker_id, connections = credentials.len(), "token redeemed");
                Ok(Response::new(RedeemResponse { credentials }))
            }
            Err(e) => {
                tracing::warn!(%worker_id, reason = e.code(), "redeem refused");
                Err(status(&e))
            }
        }
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let req = request.into_inner();
        let registration = Secret::new(req.registration_secret);
        self.check_registration_secret(&registration, &req.worker_id, peer)?;
        let presented = Secret::new(req.worker_secret);
        let known = super::workers::deregister(&self.store, &req.worker_id, presented.expose())
            .await
            .map_err(|e| self.refuse_worker(e, "deregister", &req.worker_id))?;
        tracing::info!(worker_id = %req.worker_id, known, "worker deregistered");
        Ok(Response::new(DeregisterResponse { known }))
    }

    async fn report(
        &self,
        request: Request<crate::proto::ReportRequest>,
    ) -> Result<Response<crate::proto::ReportResponse>, Status> {
        let req = request.into_inner();
        let presented = Secret::new(req.worker_secret);
        super::workers::authenticate(&self.store, &req.worker_id, presented.expose())
            .await
            .map_err(|e| self.refuse_worker(e, "report", &req.worker_id))?;
        let (stored, duplicates) = self
            .store
            .store_report(&req.worker_id, &req.records, now())
            .await
            .map_err(|e| status(&e.into()))?;
        Ok(Response::new(crate::proto::ReportResponse {
            stored,
            duplicates,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let presented = Secret::new(req.worker_secret);
        super::workers::heartbeat(
            &self.store,
            &req.worker_id,
            presented.expose(),
            (req.capacity, req.runs_in_flight, req.draining),
            now(),
        )
        .await
        .map_err(|e| self.refuse_worker(e, "heartbeat", &req.worker_id))?;
        // The key set in force with every answer (non-empty replaces the worker's set), so a
        // rotation reaches every worker within one heartbeat interval.
        Ok(Response::new(HeartbeatResponse {
            jwks_json: self.current_keys().await.jwks.clone(),
        }))
    }
}
