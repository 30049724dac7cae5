//! The reference Hub: a real, small Hub for development, the demo and the tests, and the
//! executable description of the contract for Hub implementers. It stores users, connections
//! (credentials encrypted at rest) and tokens in SQLite, issues EdDSA server tokens, and serves
//! the `Hub` gRPC service (`Register`, `Redeem`, `Heartbeat`, `Deregister`). Credentials leave
//! it only sealed to a registered worker's transport key; a worker's registration changes only
//! with proof that the caller is that worker (`workers.rs`), and guesses of the registration
//! secret back off per peer (`limiter.rs`).

mod ai_cli;
pub mod audit;
mod audit_cli;
pub mod commands;
pub(crate) mod config;
pub mod dispatch;
pub(crate) mod limiter;
pub mod pick;
mod providers;
mod schema;
pub mod service;
pub(crate) mod signing;
pub(crate) mod store;
pub(crate) mod workers;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::creds::TransportKey;
use crate::secret::Secret;
use crate::token::{Audience, Claims};
pub use store::{Store, StoreError};

/// Heartbeat interval asked of workers.
pub(crate) const HEARTBEAT_SECS: u32 = 15;

/// Why the Hub refused something; each has a stable reason code.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Registration secret wrong.
    #[error("registration refused: wrong registration secret")]
    BadRegistrationSecret,
    /// Too many wrong registration secrets from this peer: refused without checking.
    #[error(
        "too many failed registrations from this address; retry in {} ms",
        .0.as_millis().max(1)
    )]
    RegistrationBackoff(Duration),
    /// The worker secret (issued at `Register`) is missing or wrong.
    #[error("the worker secret is missing or wrong")]
    BadWorkerSecret,
    /// The worker id is registered with another transport key, and the worker secret that
    /// would allow changing it was not presented.
    #[error(
        "this worker id is registered with another transport key; changing it needs the worker secret"
    )]
    WorkerKeyMismatch,
    /// Bad registration fields.
    #[error("registration refused: {0}")]
    BadRegistration(String),
    /// The worker is not registered.
    #[error("unknown worker")]
    UnknownWorker,
    /// The token does not verify, has expired, or is not for this worker.
    #[error("the token is not valid for this worker: {0}")]
    InvalidToken(String),
    /// The token was never issued here.
    #[error("unknown token")]
    UnknownToken,
    /// The token was redeemed before (or expired before redemption).
    #[error("the token was already redeemed")]
    AlreadyRedeemed,
    /// Issuing refused (unknown user, role that may not run, unknown connection).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubError {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::BadRegistrationSecret => "bad_registration_secret",
            HubError::RegistrationBackoff(_) => "registration_backoff",
            HubError::BadWorkerSecret => "bad_worker_secret",
            HubError::WorkerKeyMismatch => "worker_key_mismatch",
            HubError::BadRegistration(_) => "bad_registration",
            HubError::UnknownWorker => "unknown_worker",
            HubError::InvalidToken(_) => "invalid_token",
            HubError::UnknownToken => "unknown_token",
            HubError::AlreadyRedeemed => "already_redeemed",
            HubError::Refused(_) => "refused",
            HubError::Store(_) => "hub_store",
        }
    }
}

/// The Hub's keys and identity. Tokens are signed with the current key; the previous one (after
/// `hub rotate-key`) still verifies, and both are in the JWKS workers get.
pub struct HubKeys {
    /// The tokens' `iss`.
    pub hub_id: String,
    /// Signing key id (the current key).
    pub kid: String,
    signing: EncodingKey,
    signing_pem: Secret,
    /// The public key, base64url (the JWKS `x`).
    pub public_x: String,
    /// The previous key after a rotation: its kid and public key (base64url).
    previous: Option<(String, String)>,
    /// Public keys (JWKS) workers verify with: the current key, and the previous one.
    pub jwks: String,
    /// `CONNECTION_ENCRYPTION_KEY`: credentials and worker keys at rest.
    pub at_rest: TransportKey,
    /// Registration secret; `None` means open registration (dev only; warned about).
    pub registration_secret: Option<Secret>,
}

impl std::fmt::Debug for HubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubKeys")
            .field("hub_id", &self.hub_id)
            .field("kid", &self.kid)
            .field(
                "registration",
                &self.registration_secret.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

impl HubKeys {
    /// From the signing key (PKCS#8 PEM), the at-rest key and the registration secret.
    pub fn new(
        hub_id: String,
        signing_pem: &Secret,
        connection_key: &Secret,
        registration_secret: Option<Secret>,
    ) -> Result<HubKeys, String> {
        let at_rest = TransportKey::new(connection_key)
            .map_err(|_| "CONNECTION_ENCRYPTION_KEY is not a Fernet key".to_owned())?;
        Self::assemble(
            hub_id,
            signing_pem,
            None,
            at_rest,
            registration_secret.filter(|s| !s.expose().is_empty()),
        )
    }

    /// The same Hub with another signing key (`current`) and, optionally, the key it replaced
    /// (`previous`, still verifying): what a rotation stored in the Hub's database selects.
    pub(crate) fn with_signing(
        &self,
        current: &Secret,
        previous: Option<&Secret>,
    ) -> Result<HubKeys, String> {
        Self::assemble(
            self.hub_id.clone(),
            current,
            previous,
            self.at_rest.clone(),
            self.registration_secret.clone(),
        )
    }

    fn assemble(
        hub_id: String,
        signing_pem: &Secret,
        previous_pem: Option<&Secret>,
        at_rest: TransportKey,
        registration_secret: Option<Secret>,
    ) -> Result<HubKeys, String> {
        use base64::Engine as _;
        let b64 = |k: &[u8; 32]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
        let (kid, public) = crate::keys::public_of(signing_pem)?;
        let signing = EncodingKey::from_ed_pem(signing_pem.expose().as_bytes())
            .map_err(|_| "the signing key is not an Ed25519 PEM key".to_owned())?;
        let mut published = vec![(kid.clone(), public)];
        let previous = match previous_pem {
            Some(pem) => {
                let (old_kid, old_public) = crate::keys::public_of(pem)?;
                if old_kid != kid {
                    published.push((old_kid.clone(), old_public));
                }
                Some((old_kid, b64(&old_public)))
            }
            None => None,
        };
        Ok(HubKeys {
            public_x: b64(&public),
            hub_id,
            jwks: crate::keys::jwks_for(&published),
            kid,
            signing,
            signing_pem: signing_pem.clone(),
            previous,
            at_rest,
            registration_secret,
        })
    }

    /// The public key (base64url) of `kid` if it is this Hub's current or previous key.
    pub(crate) fn public_key_of(&self, kid: &str) -> Option<&str> {
        if kid == self.kid {
            return Some(&self.public_x);
        }
        self.previous
            .as_ref()
            .filter(|(k, _)| k == kid)
            .map(|(_, x)| x.as_str())
    }

    /// The kid of the previous key, if a rotation left one.
    pub(crate) fn previous_kid(&self) -> Option<&str> {
        self.previous.as_ref().map(|(k, _)| k.as_str())
    }

    /// The current signing key (PKCS#8 PEM), to store when it is rotated out.
    pub(crate) fn signing_pem(&self) -> &Secret {
        &self.signing_pem
    }

    /// Signs `claims` (EdDSA, with this Hub's kid). Generic so conformance tests can sign
    /// claims that break the contract.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, HubError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| HubError::Refused(format!("cannot sign: {e}")))
    }
}

/// What a token is for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The user (must exist with role `user`; admins and auditors get no tokens).
    pub user: String,
    /// The workflow's canonical hash.
    pub workflow_sha256: String,
    /// The run's parameter values' hash ([`NO_PARAMS_SHA256`](crate::token::NO_PARAMS_SHA256)
    /// without values).
    pub params_sha256: String,
    /// Connections the run may use (must exist).
    pub connections: Vec<String>,
    /// `run`, `inspect` or `ai` (whose one connection is a provider).
    pub scope: String,
    /// Worker pool or worker id.
    pub audience: String,
    /// Lifetime.
    pub ttl: Duration,
}

/// Issues a server token and records it (single use).
pub async fn issue(
    store: &Store,
    keys: &HubKeys,
    req: &TokenRequest,
    now: i64,
) -> Result<String, HubError> {
    let role = store
        .role(&req.user)
        .await?
        .ok_or_else(|| HubError::Refused(format!("no user {:?}", req.user)))?;
    if crate::token::NEVER_RUN_ROLES.contains(&role.as_str()) {
        return Err(HubError::Refused(format!(
            "role {role:?} may not run workflows"
        )));
    }
    let (missing, what) = match req.scope.as_str() {
        "run" | "inspect" => (
            store.missing_connections(&req.connections).await?,
            "connection",
        ),
        "ai" if req.connections.len() == 1 => {
            (store.missing_providers(&req.connections).await?, "provider")
        }
        "ai" => {
            return Err(HubError::Refused(
                "an ai token names exactly one provider".into(),
            ));
        }
        _ => return Err(HubError::Refused("scope is run, inspect or ai".into())),
    };
    if !missing.is_empty() {
        return Err(HubError::Refused(format!(
            "no {what} {}",
            missing.join(", ")
        )));
    }
    let ttl = i64::try_from(req.ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = Claims {
        iss: keys.hub_id.clone(),
        aud: Audience::One(req.audience.clone()),
        sub: req.user.clone(),
        jti: random_id(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl),
        workflow_sha256: req.workflow_sha256.clone(),
        params_sha256: req.params_sha256.clone(),
        connections: req.connections.clone(),
        scope: req.scope.clone(),
        role,
    };
    let token = keys.sign(&claims)?;
    store.record_token(&claims, &req.audience).await?;
    Ok(token)
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    crate::token::now()
}

/// A random 128-bit id, hex.
pub fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}
