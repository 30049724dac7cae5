//! The worker's token key set over its life. It comes from `Register`; then each heartbeat's
//! `HeartbeatResponse.jwks_json` replaces it when non-empty (empty: unchanged), so a Hub
//! rotates its signing keys with no reload and no credential file. A set that does not parse
//! (or holds no Ed25519 key) is refused: the old one stays, the refusal is logged and counted.
//! A token whose `kid` the worker does not know triggers one immediate refresh from the Hub (a
//! heartbeat), so tokens signed with a key published a moment ago verify at once; refreshes
//! run one at a time and at most one per [`REFRESH_EVERY`], so tokens with made-up kids cannot
//! turn into load on the Hub. A key set pinned by a file (`token-keys.jwks` in the secrets)
//! wins: the Hub's sets are then ignored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Worker;
use crate::hub_client::HubCallError;
use crate::token::KeySet;

/// At most one refresh for unknown kids per this interval.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The state behind key refreshes.
#[derive(Debug, Default)]
pub(crate) struct TokenKeys {
    /// Keys from a file: the Hub's sets are not applied.
    pinned: AtomicBool,
    /// Sets from the Hub refused so far.
    refused_sets: AtomicU64,
    /// Key sets applied so far (changes only).
    rotations: AtomicU64,
    /// When the last refresh for an unknown kid started. Heartbeats and refreshes hold the lock
    /// for their call, so they run one at a time and answers apply in the order the Hub gave
    /// them (a late answer cannot undo a newer set).
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// Where a key set came from, for the logs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    /// A regular heartbeat.
    Heartbeat,
    /// A refresh for a token with an unknown kid.
    UnknownKid,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Heartbeat => "heartbeat",
            Source::UnknownKid => "unknown_kid_refresh",
        }
    }
}

impl Worker {
    /// Marks the key set as pinned by a file (the Hub's sets are then ignored).
    pub(crate) fn pin_keys(&self, pinned: bool) {
        self.token_keys.pinned.store(pinned, Ordering::SeqCst);
    }

    /// One heartbeat (load, draining), and the key set its answer carries applied.
    pub(crate) async fn heartbeat_for_keys(&self) -> Result<(), HubCallError> {
        let _turn = self.token_keys.last_refresh.lock().await;
        let jwks = self
            .hub
            .clone()
            .heartbeat(self.in_flight(), self.draining())
            .await?;
        self.apply_hub_keys(&jwks, Source::Heartbeat);
        Ok(())
    }

    /// Applies a `jwks_json` from the Hub: empty is "unchanged"; a valid set replaces the
    /// current one (logged when its kids differ); an invalid one is refused, logged and
    /// counted, and the current set stays.
    pub(crate) fn apply_hub_keys(&self, jwks_json: &str, source: Source) {
        if jwks_json.is_empty() || self.token_keys.pinned.load(Ordering::SeqCst) {
            return;
        }
        match KeySet::from_jwks(jwks_json) {
            Ok(keys) => {
                let before = self.verifier.kids();
                let after: Vec<String> = keys.kids().into_iter().map(str::to_owned).collect();
                self.verifier.set_keys(keys);
                if before != after {
                    let total = self.token_keys.rotations.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::info!(
                        hub = %self.hub.url(),
                        source = source.as_str(),
                        kids = %after.join(","),
                        previous_kids = %before.join(","),
                        rotations_total = total,
                        "token keys rotated"
                    );
                }
            }
            Err(e) => {
                let total = self.token_keys.refused_sets.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    hub = %self.hub.url(),
                    source = source.as_str(),
                    refused_total = total,
                    "the hub sent an unusable token key set; keeping the current one: {e}"
                );
            }
        }
    }

    /// Before checking `token`: when its header names an EdDSA `kid` the worker does not know,
    /// asks the Hub for its current key set once (single-flight, at most one per
    /// [`REFRESH_EVERY`]). Failures are logged; the check that follows then refuses the token
    /// with `unknown_kid` as before.
    pub(crate) async fn learn_kid_of(&self, token: &str) {
        if self.token_keys.pinned.load(Ordering::SeqCst) {
            return;
        }
        let Some(kid) = unknown_kid(&self.verifier, token) else {
            return;
        };
        let mut last = self.token_keys.last_refresh.lock().await;
        // Another refresh may have brought the kid while this one waited for the lock.
        if unknown_kid(&self.verifier, token).is_none() {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        match self
            .hub
            .clone()
            .heartbeat(self.in_flight(), self.draining())
            .await
        {
            Ok(jwks) => self.apply_hub_keys(&jwks, Source::UnknownKid),
            Err(e) => tracing::warn!(
                kid = %kid.chars().take(64).collect::<String>(),
                reason = %e.code(),
                "a token names an unknown kid; asking the hub for its keys failed: {e}"
            ),
        }
    }
}

/// The `kid` of an EdDSA token whose kid is not in the verifier's key set (a key the worker
/// has not heard of yet, or a made-up one); `None` for anything else, including tokens that
/// will fail for another reason.
fn unknown_kid(verifier: &crate::token::Verifier, token: &str) -> Option<String> {
    if token.len() > crate::token::MAX_TOKEN_BYTES {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    let kid = header
        .kid
        .filter(|_| header.alg == jsonwebtoken::Algorithm::EdDSA)?;
    (!verifier.kids().contains(&kid)).then_some(kid)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::*;
    use crate::token::{KeySet, Policy, Verifier};

    #[test]
    fn only_eddsa_tokens_with_a_kid_outside_the_set_are_unknown() {
        let known = crate::keys::generate_signing_pair().unwrap();
        let other = crate::keys::generate_signing_pair().unwrap();
        let policy = Policy {
            issuer: "hub".into(),
            audiences: vec!["pool".into()],
            max_lifetime: Duration::from_secs(300),
            run_roles: vec!["user".into()],
            hs256_secret: None,
        };
        let v = Verifier::new(policy, KeySet::from_jwks(&known.jwks).unwrap());
        let claims = serde_json::json!({"sub": "x"});
        let sign = |pair: &crate::keys::SigningPair| {
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some(pair.kid.clone());
            let key = EncodingKey::from_ed_pem(pair.private_pem.expose().as_bytes()).unwrap();
            jsonwebtoken::encode(&h, &claims, &key).unwrap()
        };
        assert_eq!(unknown_kid(&v, &sign(&known)), None);
        assert_eq!(unknown_kid(&v, &sign(&other)), Some(other.kid.clone()));
        // Not a key-set question: another algorithm, no kid, not a token.
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("made-up".into());
        let hs = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(b"k")).unwrap();
        assert_eq!(unknown_kid(&v, &hs), None);
        let mut no_kid = sign(&other);
        no_kid.replace_range(..no_kid.find('.').unwrap(), "eyJhbGciOiJFZERTQSJ9");
        assert_eq!(unknown_kid(&v, &no_kid), None);
        assert_eq!(unknown_kid(&v, "not a token"), None);
        // Once the set has the key, it is known.
        v.set_keys(KeySet::from_jwks(&other.jwks).unwrap());
        assert_eq!(unknown_kid(&v, &sign(&other)), None);
        assert_eq!(unknown_kid(&v, &sign(&known)), Some(known.kid.clone()));
    }
}
