//! Server tokens, worker side: verify a Hub-issued JWT before anything else happens (size cap,
//! algorithm pinned, key by `kid`, signature, time, audience, issuer, workflow hash, connection
//! scope, role, replay). Every refusal has a stable reason code. This module never redeems
//! (that is the Hub client's job) and never logs a token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::secret::Secret;

mod reason;
pub use reason::Reason;

/// Largest token accepted, checked before any decoding.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest lifetime (`exp - iat`) accepted by default, whatever `exp` says.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated between Hub and worker.
pub(crate) const LEEWAY_SECS: i64 = 5;
/// Roles that never run anything: admins manage, auditors read.
pub(crate) const NEVER_RUN_ROLES: [&str; 2] = ["admin", "auditor"];
/// Roles allowed to run workflows unless configured otherwise: the Hub's security model names
/// three roles (admin, user, auditor), and only `user` runs.
pub const DEFAULT_RUN_ROLES: [&str; 1] = ["user"];
/// Longest `jti` and `sub` accepted, bytes (both must also be non-empty): the `jti` keys the
/// replay cache and the Hub's single use, the `sub` names the user in logs and records.
pub const MAX_ID_CLAIM_BYTES: usize = 128;

/// A refused token: the reason and a message that never quotes the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    /// Why.
    pub reason: Reason,
    /// For people; names claims, never the token or its signature.
    pub message: String,
}

/// Unix time now, whole seconds: what token claims and credential expiry are measured in.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn reject(reason: Reason, message: impl Into<String>) -> TokenError {
    TokenError {
        reason,
        message: message.into(),
    }
}

/// Problems with a worker's `[tokens]` run roles and audiences, each naming its config key:
/// at least one run role, none of [`NEVER_RUN_ROLES`], each 1 to 64 bytes; audiences (when
/// set) non-empty, each 1 to 128 printable ASCII characters without spaces, no duplicates,
/// and `registered` (`worker.audience`, what the worker registers with, so the Hub's tokens
/// for it verify) among them.
pub(crate) fn policy_problems(
    run_roles: &[String],
    audiences: Option<&[String]>,
    registered: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    if run_roles.is_empty() {
        problems.push("tokens.run_roles: at least one role".to_owned());
    }
    for r in run_roles {
        if NEVER_RUN_ROLES.contains(&r.as_str()) {
            problems.push(format!("tokens.run_roles: {r:?} may never run workflows"));
        } else if r.is_empty() || r.len() > 64 {
            problems.push("tokens.run_roles: each role is 1 to 64 bytes".to_owned());
        }
    }
    let Some(audiences) = audiences else {
        return problems;
    };
    if audiences.is_empty() {
        problems.push("tokens.audiences: at least one audience".to_owned());
        return problems;
    }
    for (i, a) in audiences.iter().enumerate() {
        if a.is_empty() || a.len() > 128 || !a.bytes().all(|b| b.is_ascii_graphic()) {
            problems.push(format!(
                "tokens.audiences: {a:?} is not 1 to 128 printable characters without spaces"
            ));
        } else if audiences[..i].contains(a) {
            problems.push(format!("tokens.audiences: {a:?} is listed twice"));
        }
    }
    if !audiences.iter().any(|a| a == registered) {
        problems.push(format!(
            "tokens.audiences: must include worker.audience ({registered:?}), the audience the worker registers with"
        ));
    }
    problems
}

/// `aud` is a string or an array of strings (RFC 7519).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(all) => all.iter().any(|a| a == aud),
        }
    }
}

/// `params_sha256` of a run without parameter values: SHA-256 of `{}`.
pub const NO_PARAMS_SHA256: &str =
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The hash an `ai` token binds (its `workflow_sha256` claim): SHA-256, lowercase hex, of the
/// provider name, the method, the path and the body, each but the body followed by a newline.
pub fn request_sha256(provider: &str, method: &str, path: &str, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [provider, method, path] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    h.update(body);
    hex::encode(h.finalize())
}

fn no_params_sha256() -> String {
    NO_PARAMS_SHA256.to_owned()
}

/// The claims contract (README: "Server tokens"). Unknown claims are ignored.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Claims {
    /// The Hub.
    pub iss: String,
    /// The worker pool or worker id.
    pub aud: Audience,
    /// The user.
    pub sub: String,
    /// Unique token id (single use).
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// The workflow's canonical hash, lowercase hex.
    pub workflow_sha256: String,
    /// SHA-256 of the RFC 8785 form of the run's parameter object, lowercase hex (a token
    /// without the claim is bound to the empty object, `{}`).
    #[serde(default = "no_params_sha256")]
    pub params_sha256: String,
    /// Connection ids the run may use.
    pub connections: Vec<String>,
    /// `run` or `inspect`.
    pub scope: String,
    /// The user's role.
    pub role: String,
}

/// What the call at hand needs from the token.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// Execute or Validate a workflow.
    Run,
    /// Inspect or Preview a connection.
    Inspect,
    /// Send one request through the AI proxy (`Proxy`): `connections` names the provider,
    /// `workflow_sha256` holds the request's hash ([`request_sha256`]).
    Ai,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Run => "run",
            Scope::Inspect => "inspect",
            Scope::Ai => "ai",
        }
    }
}

/// What a token must match for one call.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The scope the call needs.
    pub scope: Scope,
    /// The dispatched workflow's hash (runs).
    pub workflow_sha256: Option<&'a str>,
    /// The hash of the run's parameter values (runs, once they are read).
    pub params_sha256: Option<&'a str>,
    /// Connections the call will use; each must be in the token's `connections`.
    pub connections: &'a [&'a str],
    /// Mark the `jti` as used (Execute, Inspect, Preview); a dry run (Validate) does not.
    pub consume: bool,
}

/// Public token keys by `kid` (from a JWKS document).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

/// Why a key set was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// Not a JWKS document.
    #[error("not a JWKS document: {0}")]
    Json(#[from] serde_json::Error),
    /// An entry is unusable.
    #[error("key {index}: {why}")]
    Entry {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// No Ed25519 key at all.
    #[error("the key set has no OKP/Ed25519 key")]
    Empty,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl KeySet {
    /// Reads a JWKS document (RFC 7517): `OKP`/`Ed25519` entries with a `kid` and `x`. Other
    /// key types are skipped (RFC 7517 §5); duplicate kids are refused.
    pub fn from_jwks(json: &str) -> Result<KeySet, KeySetError> {
        let doc: Jwks = serde_json::from_str(json)?;
        let mut keys = HashMap::new();
        for (index, k) in doc.keys.iter().enumerate() {
            let field = |name: &str| k.get(name).and_then(|v| v.as_str());
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                continue;
            }
            let entry = |why: &str| KeySetError::Entry {
                index,
                why: why.to_owned(),
            };
            if field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            if field("alg").is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                return Err(entry("alg must be EdDSA"));
            }
            let kid = field("kid")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| entry("missing kid"))?;
            let x = field("x").ok_or_else(|| entry("missing x"))?;
            let raw = URL_SAFE_NO_PAD
                .decode(x)
                .map_err(|_| entry("x is not base64url"))?;
            if raw.len() != 32 {
                return Err(entry("x is not a 32-byte Ed25519 public key"));
            }
            let key = DecodingKey::from_ed_components(x).map_err(|_| entry("x is not a key"))?;
            if keys.insert(kid.to_owned(), key).is_some() {
                return Err(entry("duplicate kid"));
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        Ok(KeySet { keys })
    }

    /// The key ids, sorted.
    pub(crate) fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Expected `iss`.
    pub issuer: String,
    /// The audiences this worker accepts (by default its pool and its own id); a token's `aud`
    /// must name at least one of them.
    pub audiences: Vec<String>,
    /// Longest accepted `exp - iat`.
    pub max_lifetime: Duration,
    /// Roles that may run workflows (`NEVER_RUN_ROLES` never may).
    pub run_roles: Vec<String>,
    /// HS256 shared secret: only when explicitly configured; EdDSA otherwise.
    pub hs256_secret: Option<Secret>,
}

/// Verifies tokens; holds the key set (replaceable for rotation) and the replay cache.
pub struct Verifier {
    policy: Policy,
    keys: RwLock<Arc<KeySet>>,
    seen: moka::sync::Cache<String, ()>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.policy.issuer)
            .field("audiences", &self.policy.audiences)
            .field("hs256", &self.policy.hs256_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// A token that passed every check, with its claims and its text (for `Redeem`).
#[derive(Debug, Clone)]
pub struct Verified {
    /// The claims.
    pub claims: Claims,
    /// The token itself (a bearer credential until redeemed).
    pub token: Secret,
}

impl Verifier {
    /// A verifier with `keys` (replace them later with `set_keys`).
    pub fn new(policy: Policy, keys: KeySet) -> Verifier {
        // Replay entries only need to outlive the longest token they could match.
        let ttl = policy.max_lifetime + Duration::from_secs(2 * LEEWAY_SECS as u64);
        Verifier {
            policy,
            keys: RwLock::new(Arc::new(keys)),
            seen: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Rotates the key set (tokens signed with removed kids stop verifying at once); a change
    /// of kids is logged at INFO (kids only: public key ids).
    pub(crate) fn set_keys(&self, keys: KeySet) {
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(keys);
        }
    }

    /// The kids of the current key set, sorted.
    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys
            .read()
            .map(|k| k.kids().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Verifies `token` for one call at time `now` (seconds since the epoch).
    pub fn verify(
        &self,
        token: &str,
        expect: &Expect<'_>,
        now: i64,
    ) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(reject(
                Reason::TooLarge,
                format!("token is over {MAX_TOKEN_BYTES} bytes"),
            ));
        }
        let header = header(token)?;
        let (algorithm, key) = self.key_for(&header)?;
        let mut validation = Validation::new(algorithm);
        // Time, audience and the rest are checked below, each with its own reason code.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => reject(Reason::BadSignature, "the signature does not verify"),
                K::InvalidAlgorithm => reject(Reason::AlgorithmNotAllowed, "algorithm mismatch"),
                K::Json(_) => reject(Reason::Malformed, "the claims are not the contract's (iss, aud, sub, jti, iat, nbf, exp, workflow_sha256, params_sha256, connections, scope, role)"),
                _ => reject(Reason::Malformed, "the token cannot be decoded"),
            }
        })?;
        let claims = data.claims;
        check_ids(&claims)?;
        self.check_claims(&claims, expect, now)?;
        if expect.consume {
            let entry = self.seen.entry(claims.jti.clone()).or_insert(());
            if !entry.is_fresh() {
                return Err(reject(Reason::Replayed, "this token was already used"));
            }
        }
        Ok(Verified {
            claims,
            token: Secret::new(token.to_owned()),
        })
    }

    fn key_for(&self, header: &Header) -> Result<(Algorithm, DecodingKey), TokenError> {
        match header.alg.as_str() {
            "EdDSA" => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| reject(Reason::UnknownKid, "the header has no kid"))?;
                let keys = self.keys.read().map(|k| Arc::clone(&k)).unwrap_or_default();
                let key = keys.keys.get(kid).cloned().ok_or_else(|| {
                    reject(
                        Reason::UnknownKid,
                        "no key with the header's kid (rotated out or never known)",
                    )
                })?;
                Ok((Algorithm::EdDSA, key))
            }
            "HS256" => match &self.policy.hs256_secret {
                Some(secret) => Ok((
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.expose().as_bytes()),
                )),
                None => Err(reject(
                    Reason::AlgorithmConfusion,
                    "HS256 is not enabled; tokens are verified with public keys only",
                )),
            },
            "HS384" | "HS512" => Err(reject(
                Reason::AlgorithmConfusion,
                "HMAC algorithms are not accepted with public keys",
            )),
            a if a.eq_ignore_ascii_case("none") => Err(reject(
                Reason::AlgNone,
                "unsigned tokens (alg: none) are refused",
            )),
            _ => Err(reject(
                Reason::AlgorithmNotAllowed,
                "only EdDSA (or HS256 where enabled) is accepted",
            )),
        }
    }

    fn check_claims(&self, c: &Claims, expect: &Expect<'_>, now: i64) -> Result<(), TokenError> {
        if c.exp <= now - LEEWAY_SECS {
            return Err(reject(Reason::Expired, "the token has expired"));
        }
        if c.nbf > now + LEEWAY_SECS || c.iat > now + LEEWAY_SECS {
            return Err(reject(
                Reason::NotYetValid,
                "the token is not valid yet (nbf or iat in the future)",
            ));
        }
        let max = i64::try_from(self.policy.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        if c.exp.saturating_sub(c.iat) > max || c.exp.saturating_sub(now) > max + LEEWAY_SECS {
            return Err(reject(
                Reason::LifetimeTooLong,
                format!("the token lives longer than {max} s"),
            ));
        }
        if !self.policy.audiences.iter().any(|a| c.aud.contains(a)) {
            return Err(reject(
                Reason::WrongAudience,
                "the token is for another audience",
            ));
        }
        if !bool::from(c.iss.as_bytes().ct_eq(self.policy.issuer.as_bytes())) {
            return Err(reject(
                Reason::WrongIssuer,
                "the token comes from another issuer",
            ));
        }
        if c.scope != expect.scope.as_str() {
            return Err(reject(
                Reason::WrongScope,
                format!("this call needs scope {:?}", expect.scope.as_str()),
            ));
        }
        if NEVER_RUN_ROLES.contains(&c.role.as_str())
            || !self.policy.run_roles.iter().any(|r| r == &c.role)
        {
            return Err(reject(
                Reason::RoleNotAllowed,
                format!("role {:?} may not run workflows", c.role),
            ));
        }
        if let Some(want) = expect.workflow_sha256
            && !bool::from(c.workflow_sha256.as_bytes().ct_eq(want.as_bytes()))
        {
            return Err(reject(
                Reason::WorkflowMismatch,
                match expect.scope {
                    Scope::Ai => "the token is bound to another request",
                    _ => "the token is bound to another workflow",
                },
            ));
        }
        if let Some(want) = expect.params_sha256
            && !bool::from(c.params_sha256.as_bytes().ct_eq(want.as_bytes()))
        {
            return Err(reject(
                Reason::ParamsMismatch,
                "the token is bound to other parameter values",
            ));
        }
        if let Some(missing) = expect
            .connections
            .iter()
            .find(|n| !c.connections.iter().any(|g| g == *n))
        {
            return Err(reject(
                Reason::ConnectionNotInScope,
                format!("the token does not grant connection {missing:?}"),
            ));
        }
        Ok(())
    }
}

/// `jti` and `sub` must be non-empty and at most [`MAX_ID_CLAIM_BYTES`]: an empty `jti` would
/// make every such token share one replay entry (or none, in a Hub that skips empty keys), an
/// empty `sub` runs for nobody.
fn check_ids(c: &Claims) -> Result<(), TokenError> {
    for (name, value) in [("jti", &c.jti), ("sub", &c.sub)] {
        if value.is_empty() || value.len() > MAX_ID_CLAIM_BYTES {
            return Err(reject(
                Reason::Malformed,
                format!("{name} must be 1 to {MAX_ID_CLAIM_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// The parts of a JOSE header this module reads.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Decodes the header ourselves, so `alg: none` and unknown algorithms get their own codes
/// instead of a generic parse error.
fn header(token: &str) -> Result<Header, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(
            Reason::Malformed,
            "a token has three dot-separated parts",
        ));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| reject(Reason::Malformed, "the header is not base64url"))?;
    serde_json::from_slice(&raw)
        .map_err(|_| reject(Reason::Malformed, "the header is not a JOSE header"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubKeys;

    const NOW: i64 = 1_800_000_000;
    const WF: &str = "3b7e1f7f0e0c3d1c2b6f3a2e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c";

    fn new_hub() -> HubKeys {
        let pair = crate::keys::generate_signing_pair().unwrap();
        HubKeys::new(
            "hub-1".into(),
            &pair.private_pem,
            &crate::creds::TransportKey::generate(),
            None,
        )
        .unwrap()
    }

    fn claims() -> Claims {
        Claims {
            iss: "hub-1".into(),
            aud: Audience::One("pool-a".into()),
            sub: "alice".into(),
            jti: "jti-1".into(),
            iat: NOW - 10,
            nbf: NOW - 10,
            exp: NOW + 200,
            workflow_sha256: WF.into(),
            params_sha256: crate::token::NO_PARAMS_SHA256.into(),
            connections: vec!["shop".into(), "dw".into()],
            scope: "run".into(),
            role: "user".into(),
        }
    }

    fn verifier(hub: &HubKeys) -> Verifier {
        let policy = Policy {
            issuer: "hub-1".into(),
            audiences: vec!["pool-a".into(), "w-1".into()],
            max_lifetime: DEFAULT_MAX_LIFETIME,
            run_roles: DEFAULT_RUN_ROLES.iter().map(|r| (*r).to_owned()).collect(),
            hs256_secret: None,
        };
        Verifier::new(policy, KeySet::from_jwks(&hub.jwks).unwrap())
    }

    const RUN: Expect<'static> = Expect {
        scope: Scope::Run,
        workflow_sha256: Some(WF),
        params_sha256: None,
        connections: &["shop"],
        consume: true,
    };

    fn code(v: &Verifier, token: &str) -> &'static str {
        match v.verify(token, &RUN, NOW) {
            Ok(_) => "ok",
            Err(e) => e.reason.code(),
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn a_good_token_verifies_once() {
        let hub = new_hub();
        let v = verifier(&hub);
        let token = hub.sign(&claims()).unwrap();
        let ok = v.verify(&token, &RUN, NOW).unwrap();
        assert_eq!(ok.claims, claims());
        assert_eq!(code(&v, &token), "token_replayed");
        // A dry run does not consume.
        let mut c = claims();
        c.jti = "jti-2".into();
        let t2 = hub.sign(&c).unwrap();
        let dry = Expect {
            consume: false,
            ..RUN
        };
        assert!(v.verify(&t2, &dry, NOW).is_ok());
        assert!(v.verify(&t2, &dry, NOW).is_ok());
        assert!(v.verify(&t2, &RUN, NOW).is_ok());
        assert_eq!(code(&v, &t2), "token_replayed");
    }

    #[test]
    fn every_attack_has_its_reason() {
        let hub = new_hub();
        let v = verifier(&hub);
        let with = |f: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            f(&mut c);
            hub.sign(&c).unwrap()
        };
        assert_eq!(code(&v, &with(&|c| c.exp = NOW - 60)), "token_expired");
        assert_eq!(
            code(&v, &with(&|c| c.nbf = NOW + 60)),
            "token_not_yet_valid"
        );
        assert_eq!(
            code(&v, &with(&|c| c.iat = NOW + 60)),
            "token_not_yet_valid"
        );
        assert_eq!(
            code(
                &v,
                &with(&|c| {
                    c.iat = NOW - 10;
                    c.exp = NOW + 3_600
                })
            ),
            "lifetime_too_long"
        );
        assert_eq!(
            code(&v, &with(&|c| c.aud = Audience::One("pool-b".into()))),
            "wrong_audience"
        );
        assert_eq!(
            code(
                &v,
                &with(&|c| c.aud = Audience::Many(vec!["x".into(), "pool-a".into()]))
            ),
            "ok"
        );
        assert_eq!(
            code(&v, &with(&|c| c.iss = "evil-hub".into())),
            "wrong_issuer"
        );
        assert_eq!(
            code(&v, &with(&|c| c.workflow_sha256 = "0".repeat(64))),
            "workflow_mismatch"
        );
        assert_eq!(
            code(&v, &with(&|c| c.connections = vec!["dw".into()])),
            "connection_not_in_scope"
        );
        assert_eq!(
            code(&v, &with(&|c| c.scope = "inspect".into())),
            "wrong_scope"
        );
        assert_eq!(
            code(&v, &with(&|c| c.role = "admin".into())),
            "role_not_allowed"
        );
        assert_eq!(
            code(&v, &with(&|c| c.role = "auditor".into())),
            "role_not_allowed"
        );
        assert_eq!(
            code(&v, &with(&|c| c.role = "intern".into())),
            "role_not_allowed"
        );

        let good = with(&|c| c.jti = "fresh".into());
        let parts: Vec<&str> = good.split('.').collect();
        // Signature of another token, or a flipped byte.
        let other = with(&|c| c.jti = "other".into());
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.split('.').nth(2).unwrap()
        );
        assert_eq!(code(&v, &forged), "bad_signature");
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        assert_eq!(
            code(
                &v,
                &format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig))
            ),
            "bad_signature"
        );
        // Claims swapped under a valid header and signature.
        let mut c = claims();
        c.connections.push("secret-db".into());
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(code(&v, &swapped), "bad_signature");

        // alg: none, in any spelling.
        for alg in ["none", "None", "NONE"] {
            let t = format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": alg, "typ": "JWT"})),
                parts[1]
            );
            assert_eq!(code(&v, &t), "alg_none", "{alg}");
        }
        // HS256 "signed" with the public key (the classic confusion attack).
        let public = URL_SAFE_NO_PAD.decode(&hub.public_x).unwrap();
        for secret in [
            public.as_slice(),
            hub.public_x.as_bytes(),
            hub.jwks.as_bytes(),
        ] {
            let t = jsonwebtoken::encode(
                &jsonwebtoken::Header {
                    kid: Some(hub.kid.clone()),
                    ..jsonwebtoken::Header::new(Algorithm::HS256)
                },
                &claims(),
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert_eq!(code(&v, &t), "algorithm_confusion");
        }
        let rs = format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "RS256", "kid": hub.kid})),
            parts[1],
            parts[2]
        );
        assert_eq!(code(&v, &rs), "algorithm_not_allowed");
        // Unknown kid: a key the worker does not know (another Hub's), or none at all.
        let stranger = new_hub();
        assert_eq!(code(&v, &stranger.sign(&claims()).unwrap()), "unknown_kid");
        let no_kid = format!(
            "{}.{}.{}",
            b64(&serde_json::json!({"alg": "EdDSA"})),
            parts[1],
            parts[2]
        );
        assert_eq!(code(&v, &no_kid), "unknown_kid");
        // Shape and size.
        assert_eq!(code(&v, "a.b"), "token_malformed");
        assert_eq!(code(&v, "!!!.e30.e30"), "token_malformed");
        assert_eq!(
            code(&v, &"a".repeat(MAX_TOKEN_BYTES + 1)),
            "token_too_large"
        );
        // Claims that miss a contract field.
        let mut c = serde_json::to_value(claims()).unwrap();
        c.as_object_mut().unwrap().remove("workflow_sha256");
        assert_eq!(code(&v, &hub.sign(&c).unwrap()), "token_malformed");
        // Finally the untouched good token still verifies: nothing above consumed it.
        assert_eq!(code(&v, &good), "ok");
    }

    #[test]
    fn ids_are_bounded_audiences_are_a_set_and_only_run_roles_run() {
        let hub = new_hub();
        let v = verifier(&hub);
        let with = |f: &dyn Fn(&mut Claims)| {
            let mut c = claims();
            c.jti = random_jti();
            f(&mut c);
            hub.sign(&c).unwrap()
        };
        // jti and sub: non-empty, at most MAX_ID_CLAIM_BYTES (a boundary test both ways).
        assert_eq!(
            code(&v, &with(&|c| c.jti = String::new())),
            "token_malformed"
        );
        assert_eq!(
            code(&v, &with(&|c| c.sub = String::new())),
            "token_malformed"
        );
        let long = "j".repeat(MAX_ID_CLAIM_BYTES + 1);
        assert_eq!(
            code(&v, &with(&|c| c.jti = long.clone())),
            "token_malformed"
        );
        assert_eq!(
            code(&v, &with(&|c| c.sub = long.clone())),
            "token_malformed"
        );
        assert_eq!(
            code(&v, &with(&|c| c.jti = "j".repeat(MAX_ID_CLAIM_BYTES))),
            "ok"
        );
        assert_eq!(
            code(&v, &with(&|c| c.sub = "s".repeat(MAX_ID_CLAIM_BYTES))),
            "ok"
        );
        // An empty jti refused is not remembered: the same token stays refused, not replayed.
        let empty = with(&|c| c.jti = String::new());
        assert_eq!(code(&v, &empty), "token_malformed");
        assert_eq!(code(&v, &empty), "token_malformed");
        // Any of the configured audiences (pool or worker id) is accepted, nothing else.
        assert_eq!(
            code(&v, &with(&|c| c.aud = Audience::One("w-1".into()))),
            "ok"
        );
        assert_eq!(
            code(&v, &with(&|c| c.aud = Audience::Many(vec!["w-1".into()]))),
            "ok"
        );
        assert_eq!(
            code(&v, &with(&|c| c.aud = Audience::One("w-2".into()))),
            "wrong_audience"
        );
        assert_eq!(
            code(&v, &with(&|c| c.aud = Audience::Many(vec![]))),
            "wrong_audience"
        );
        // Roles: `user` by default; the old names and the never-run roles are refused.
        assert_eq!(DEFAULT_RUN_ROLES, ["user"]);
        for role in ["admin", "auditor", "analyst", "developer", ""] {
            assert_eq!(
                code(&v, &with(&|c| c.role = role.into())),
                "role_not_allowed",
                "{role}"
            );
        }
        // A configured admin still never runs, whatever the policy says.
        let policy = Policy {
            issuer: "hub-1".into(),
            audiences: vec!["pool-a".into()],
            max_lifetime: DEFAULT_MAX_LIFETIME,
            run_roles: vec!["admin".into(), "reporter".into()],
            hs256_secret: None,
        };
        let custom = Verifier::new(policy, KeySet::from_jwks(&hub.jwks).unwrap());
        assert_eq!(
            code(&custom, &with(&|c| c.role = "admin".into())),
            "role_not_allowed"
        );
        assert_eq!(code(&custom, &with(&|c| c.role = "reporter".into())), "ok");
        assert_eq!(
            code(&custom, &with(&|c| c.role = "user".into())),
            "role_not_allowed"
        );
    }

    fn random_jti() -> String {
        crate::hub::random_id()
    }

    #[test]
    fn hs256_only_when_configured() {
        let hub = new_hub();
        let secret = crate::keys::random_secret();
        let mut policy = Policy {
            issuer: "hub-1".into(),
            audiences: vec!["pool-a".into()],
            max_lifetime: DEFAULT_MAX_LIFETIME,
            run_roles: vec!["user".into()],
            hs256_secret: Some(secret.clone()),
        };
        let v = Verifier::new(policy.clone(), KeySet::from_jwks(&hub.jwks).unwrap());
        let sign = |key: &[u8]| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims(),
                &jsonwebtoken::EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        assert_eq!(code(&v, &sign(b"wrong-secret")), "bad_signature");
        assert_eq!(code(&v, &sign(secret.expose().as_bytes())), "ok");
        policy.hs256_secret = None;
        let v = Verifier::new(policy, KeySet::from_jwks(&hub.jwks).unwrap());
        assert_eq!(
            code(&v, &sign(secret.expose().as_bytes())),
            "algorithm_confusion"
        );
    }

    #[test]
    fn key_rotation_and_key_sets() {
        let old = new_hub();
        let new = new_hub();
        let v = verifier(&old);
        let mut c = claims();
        c.jti = "a".into();
        assert_eq!(code(&v, &new.sign(&c).unwrap()), "unknown_kid");
        v.set_keys(KeySet::from_jwks(&new.jwks).unwrap());
        c.jti = "b".into();
        assert_eq!(code(&v, &new.sign(&c).unwrap()), "ok");
        c.jti = "c".into();
        assert_eq!(code(&v, &old.sign(&c).unwrap()), "unknown_kid");
        // JWKS parsing: other key types are skipped, bad Ed25519 entries refused.
        assert!(matches!(
            KeySet::from_jwks(r#"{"keys": []}"#),
            Err(KeySetError::Empty)
        ));
        assert!(matches!(
            KeySet::from_jwks(r#"{"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "kid": "r"}]}"#),
            Err(KeySetError::Empty)
        ));
        assert!(
            KeySet::from_jwks(
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k"}]}"#
            )
            .is_err()
        );
        assert!(KeySet::from_jwks(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).is_err());
        let ks = KeySet::from_jwks(&old.jwks).unwrap();
        assert_eq!(ks.kids(), [old.kid.as_str()]);
        assert!(!format!("{ks:?}").contains(&old.public_x));
    }
}
