//! The runs in flight that `Cancel` can reach, each behind its own cancel secret: a random
//! 256-bit value handed to the caller in `Accepted`, kept here only as its SHA-256 and compared
//! in constant time. A run id alone (it is in log lines) cancels nothing. Never logs,
//! formats or returns a secret except in the one `Accepted` event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{RunFailure, Worker};
use crate::workflow::RunControl;

/// A run's cancel secret as the client gets it (64 hex digits); wiped when dropped.
pub(crate) struct CancelSecret(Zeroizing<String>);

impl CancelSecret {
    fn random() -> CancelSecret {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        CancelSecret(Zeroizing::new(hex::encode(bytes.as_ref())))
    }

    /// The text, for the `Accepted` event only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CancelSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelSecret(<redacted>)")
    }
}

/// A new run id: 128 random bits, hex.
pub(super) fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// One cancellable run.
struct Entry {
    control: RunControl,
    secret: [u8; 32],
}

/// The table of cancellable runs.
#[derive(Default)]
pub(crate) struct Runs {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("Runs").field("len", &n).finish()
    }
}

impl Runs {
    /// Every run's control (for a drain's end).
    pub(crate) fn controls(&self) -> Vec<RunControl> {
        self.entries
            .lock()
            .map(|r| r.values().map(|e| e.control.clone()).collect())
            .unwrap_or_default()
    }
}

/// A run's entry in the worker's table of cancellable runs; dropping it removes the entry.
#[derive(Debug)]
pub(crate) struct Registration {
    worker: Arc<Worker>,
    run_id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut runs) = self.worker.runs.entries.lock() {
            runs.remove(&self.run_id);
        }
    }
}

impl Worker {
    /// Makes a run cancellable from the moment it is accepted (before its token is redeemed,
    /// while it runs, until it ends) by whoever holds the returned secret: Cancel finds it
    /// until the registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        run_id: &str,
        control: &RunControl,
    ) -> (Registration, CancelSecret) {
        let secret = CancelSecret::random();
        if let Ok(mut runs) = self.runs.entries.lock() {
            runs.insert(
                run_id.to_owned(),
                Entry {
                    control: control.clone(),
                    secret: digest(secret.expose()),
                },
            );
        }
        let registration = Registration {
            worker: self.clone(),
            run_id: run_id.to_owned(),
        };
        (registration, secret)
    }

    /// Cancels a run in flight: `Ok(false)` if there is none with that id, `Ok(true)` once
    /// told to stop, and [`RunFailure::CancelNotAuthorized`] for a missing or wrong secret.
    pub(crate) fn cancel(&self, run_id: &str, secret: &str) -> Result<bool, RunFailure> {
        let found = self.runs.entries.lock().ok().and_then(|r| {
            r.get(run_id).map(|e| {
                (
                    e.control.clone(),
                    bool::from(digest(secret).ct_eq(&e.secret)),
                )
            })
        });
        match found {
            None => Ok(false),
            Some((control, true)) => {
                control.cancel();
                Ok(true)
            }
            Some((_, false)) => Err(RunFailure::CancelNotAuthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_hex_and_never_shown_by_debug() {
        let (a, b) = (CancelSecret::random(), CancelSecret::random());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
        // Only the digest is kept; another secret has another digest.
        assert_ne!(digest(a.expose()), digest(b.expose()));
    }
}
