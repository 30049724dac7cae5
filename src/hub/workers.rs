//! Worker identity in the reference Hub. `Register` issues a **worker secret** (32 random bytes,
//! base64url) and returns it once; the Hub keeps only its SHA-256. `Heartbeat` and `Deregister`
//! must present it (compared in constant time), so nobody else can report a worker's load,
//! mark it draining or remove it. Registering an id that exists needs proof that the caller is
//! that worker: the same transport key (which the worker keeps on disk, so a restarted worker
//! proves itself without storing anything new; whoever holds that key can open the worker's
//! credentials anyway), or the current worker secret to change the key. Without proof the
//! registration is refused and the stored key stays, so credentials keep being sealed to the
//! real worker. Every registration issues a new secret and retires the old one. Never logs.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::store::WorkerFields;
use super::{HubError, Store};
use crate::creds::TransportKey;
use crate::secret::Secret;

/// Longest worker secret looked at (a real one is 43 characters).
const MAX_WORKER_SECRET_BYTES: usize = 256;

/// The stored form of a worker secret: SHA-256, hex. A plain hash suffices: the secret is 256
/// random bits, so there is nothing to brute-force from the digest.
fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `presented` is the secret whose digest is `stored`, in constant time.
fn matches(stored: Option<&str>, presented: &str) -> bool {
    let Some(stored) = stored else { return false };
    if presented.is_empty() || presented.len() > MAX_WORKER_SECRET_BYTES {
        return false;
    }
    digest(presented).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Registers `fields` with `transport` (already checked to be a Fernet key). `proof` is the
/// caller's current worker secret, if any (needed only to change the transport key). Returns
/// the new worker secret.
pub(crate) async fn register(
    store: &Store,
    at_rest: &TransportKey,
    fields: &WorkerFields<'_>,
    transport: &Secret,
    proof: &str,
    now: i64,
) -> Result<Secret, HubError> {
    // Every write is a compare-and-swap; a concurrent registration of the same id makes one
    // of them look again, and decide again on what is stored then.
    for _ in 0..3 {
        let secret = crate::keys::random_secret();
        let sha = digest(secret.expose());
        let written = match store.worker(fields.id, at_rest).await? {
            None => {
                store
                    .insert_worker(fields, transport, &sha, at_rest, now)
                    .await?
            }
            Some(existing) => {
                let same_key: bool = existing
                    .transport_key
                    .expose()
                    .as_bytes()
                    .ct_eq(transport.expose().as_bytes())
                    .into();
                if !same_key && !matches(existing.secret_sha256.as_deref(), proof) {
                    return Err(HubError::WorkerKeyMismatch);
                }
                let expected = existing.secret_sha256.as_deref();
                store
                    .replace_worker(fields, transport, expected, &sha, at_rest, now)
                    .await?
            }
        };
        if written {
            return Ok(secret);
        }
    }
    Err(HubError::BadRegistration(
        "concurrent registrations of this worker id; try again".into(),
    ))
}

/// The digest of `id`'s secret if `presented` is that secret.
pub(crate) async fn authenticate(
    store: &Store,
    id: &str,
    presented: &str,
) -> Result<String, HubError> {
    let stored = store
        .worker_secret_sha256(id)
        .await?
        .ok_or(HubError::UnknownWorker)?;
    stored
        .filter(|d| matches(Some(d), presented))
        .ok_or(HubError::BadWorkerSecret)
}

/// A heartbeat, if `presented` is the worker's current secret.
pub(crate) async fn heartbeat(
    store: &Store,
    id: &str,
    presented: &str,
    load: (u32, u32, bool),
    now: i64,
) -> Result<(), HubError> {
    let sha = authenticate(store, id, presented).await?;
    let (capacity, in_flight, draining) = load;
    // Registered again since the check: the secret just presented is no longer current.
    if !store
        .heartbeat(id, &sha, capacity, in_flight, draining, now)
        .await?
    {
        return Err(HubError::BadWorkerSecret);
    }
    Ok(())
}

/// Removes the worker if `presented` is its current secret; `false` if it was not registered.
pub(crate) async fn deregister(store: &Store, id: &str, presented: &str) -> Result<bool, HubError> {
    let sha = match authenticate(store, id, presented).await {
        Err(HubError::UnknownWorker) => return Ok(false),
        other => other?,
    };
    if store.remove_worker(id, &sha).await? {
        Ok(true)
    } else {
        Err(HubError::BadWorkerSecret)
    }
}

/// Authentication failures the Hub has seen since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Wrong registration secrets (`Register`, `Deregister`).
    pub bad_registration_secret: u64,
    /// Attempts refused without a check because their peer was backing off.
    pub registration_backoff: u64,
    /// Missing or wrong worker secrets (`Heartbeat`, `Deregister`).
    pub bad_worker_secret: u64,
    /// Registrations of an existing id with another transport key and no proof.
    pub worker_key_mismatch: u64,
}

/// The live counters behind [`AuthStats`].
#[derive(Debug, Default)]
pub(crate) struct AuthCounters {
    bad_registration_secret: AtomicU64,
    registration_backoff: AtomicU64,
    bad_worker_secret: AtomicU64,
    worker_key_mismatch: AtomicU64,
}

impl AuthCounters {
    /// Counts a refusal (those that are not authentication failures are ignored) and returns
    /// the new total of its kind.
    pub(crate) fn count(&self, e: &HubError) -> u64 {
        let c = match e {
            HubError::BadRegistrationSecret => &self.bad_registration_secret,
            HubError::RegistrationBackoff(_) => &self.registration_backoff,
            HubError::BadWorkerSecret => &self.bad_worker_secret,
            HubError::WorkerKeyMismatch => &self.worker_key_mismatch,
            _ => return 0,
        };
        c.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A snapshot.
    pub(crate) fn stats(&self) -> AuthStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuthStats {
            bad_registration_secret: get(&self.bad_registration_secret),
            registration_backoff: get(&self.registration_backoff),
            bad_worker_secret: get(&self.bad_worker_secret),
            worker_key_mismatch: get(&self.worker_key_mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_their_digest() {
        let s = crate::keys::random_secret();
        let d = digest(s.expose());
        assert_eq!(d.len(), 64);
        assert!(!d.contains(s.expose()));
        assert!(matches(Some(&d), s.expose()));
        assert!(!matches(Some(&d), ""));
        assert!(!matches(Some(&d), &d));
        assert!(!matches(None, s.expose()));
        let mut other = s.expose().to_owned();
        other.pop();
        assert!(!matches(Some(&d), &other));
        assert!(!matches(Some(&d), &"a".repeat(MAX_WORKER_SECRET_BYTES + 1)));
    }
}
