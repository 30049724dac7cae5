//! The reference Hub's gRPC `Hub` service: proto in, store and keys, proto out. Refusals carry
//! their reason code at the start of the status message (`[already_redeemed] ...`) and in the
//! `hubworker-reason` metadata entry; nothing sent back holds a secret except the sealed
//! credentials of a successful `Redeem`.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;
use tonic::{Request, Response, Status};

use super::{HEARTBEAT_SECS, HubError, HubKeys, Store, now};
use crate::creds::TransportKey;
use crate::proto::hub_server::Hub;
use crate::proto::{
    DeregisterRequest, DeregisterResponse, HeartbeatRequest, HeartbeatResponse, RedeemRequest,
    RedeemResponse, RegisterRequest, RegisterResponse, SealedCredential,
};
use crate::secret::Secret;
use crate::token::{Claims, MAX_TOKEN_BYTES};

/// The `Hub` service over a store and the Hub's keys.
#[derive(Debug, Clone)]
pub struct HubService {
    store: Store,
    keys: Arc<HubKeys>,
}

impl HubService {
    /// A service over `store` with `keys`.
    pub fn new(store: Store, keys: Arc<HubKeys>) -> HubService {
        HubService { store, keys }
    }

    /// The tonic server for this service.
    pub fn server(self) -> crate::proto::hub_server::HubServer<HubService> {
        crate::proto::hub_server::HubServer::new(self)
    }

    async fn redeem_inner(&self, req: RedeemRequest) -> Result<Vec<SealedCredential>, HubError> {
        if req.token.len() > MAX_TOKEN_BYTES {
            return Err(HubError::InvalidToken("too large".into()));
        }
        let worker = self
            .store
            .worker(&req.worker_id, &self.keys.at_rest)
            .await?
            .ok_or(HubError::UnknownWorker)?;
        // The Hub checks its own token too: signature, expiry, issuer, and that it was issued
        // for the redeeming worker's audience.
        let claims = verify_own(&req.token, &self.keys, &worker.audience)?;
        if !self.store.consume(&claims.jti, &worker.id, now()).await? {
            return Err(match self.store.token(&claims.jti).await? {
                None => HubError::UnknownToken,
                Some(_) => HubError::AlreadyRedeemed,
            });
        }
        let transport = TransportKey::new(&worker.transport_key).map_err(|_| {
            HubError::BadRegistration("the worker's transport key is unusable".into())
        })?;
        let mut out = Vec::with_capacity(claims.connections.len());
        for name in &claims.connections {
            let cred = self.store.credential(name, &self.keys.at_rest).await?;
            let sealed = crate::creds::seal(&transport, &cred)
                .map_err(|e| HubError::Refused(e.to_string()))?;
            out.push(SealedCredential {
                connection: name.clone(),
                sealed,
            });
        }
        Ok(out)
    }
}

/// Verifies a token this Hub issued, for a worker with `audience`.
fn verify_own(token: &str, hub: &HubKeys, audience: &str) -> Result<Claims, HubError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| HubError::InvalidToken("malformed".into()))?;
    if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(hub.kid.as_str()) {
        return Err(HubError::InvalidToken("not signed by this Hub".into()));
    }
    let key = DecodingKey::from_ed_components(&hub.public_x)
        .map_err(|_| HubError::InvalidToken("no key".into()))?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&[hub.hub_id.as_str()]);
    v.set_audience(&[audience]);
    v.leeway = crate::token::LEEWAY_SECS as u64;
    v.required_spec_claims = HashSet::from(["exp".to_owned(), "aud".to_owned(), "iss".to_owned()]);
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| HubError::InvalidToken(format!("{:?}", e.kind())))
}

/// The one map from Hub refusals to gRPC statuses.
pub fn status(e: &HubError) -> Status {
    use tonic::Code;
    let code = match e {
        HubError::BadRegistrationSecret => Code::Unauthenticated,
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
    /// The registration secret, compared in constant time (open registration: anything).
    fn check_registration_secret(&self, secret: Secret, worker_id: &str) -> Result<(), Status> {
        if let Some(expected) = &self.keys.registration_secret {
            let ok: bool = secret
                .expose()
                .as_bytes()
                .ct_eq(expected.expose().as_bytes())
                .into();
            if !ok {
                tracing::warn!(%worker_id, "refused: wrong registration secret");
                return Err(status(&HubError::BadRegistrationSecret));
            }
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Hub for HubService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = request.into_inner();
        self.check_registration_secret(Secret::new(req.registration_secret), &req.worker_id)?;
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
        self.store
            .register_worker(
                &req.worker_id,
                &req.address,
                &req.audience,
                req.capacity,
                &req.version,
                &transport,
                &self.keys.at_rest,
                now(),
            )
            .await
            .map_err(|e| status(&HubError::Store(e)))?;
        tracing::info!(worker_id = %req.worker_id, address = %req.address, capacity = req.capacity, "worker registered");
        Ok(Response::new(RegisterResponse {
            hub_id: self.keys.hub_id.clone(),
            jwks_json: self.keys.jwks.clone(),
            heartbeat_interval_secs: HEARTBEAT_SECS,
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
        let req = request.into_inner();
        self.check_registration_secret(Secret::new(req.registration_secret), &req.worker_id)?;
        let known = self
            .store
            .remove_worker(&req.worker_id)
            .await
            .map_err(|e| status(&HubError::Store(e)))?;
        tracing::info!(worker_id = %req.worker_id, known, "worker deregistered");
        Ok(Response::new(DeregisterResponse { known }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let known = self
            .store
            .heartbeat(
                &req.worker_id,
                req.capacity,
                req.runs_in_flight,
                req.draining,
                now(),
            )
            .await
            .map_err(|e| status(&HubError::Store(e)))?;
        if !known {
            return Err(status(&HubError::UnknownWorker));
        }
        Ok(Response::new(HeartbeatResponse {
            jwks_json: String::new(),
        }))
    }
}
