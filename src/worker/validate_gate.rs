//! What a `Validate` may cost. A validation consumes nothing (the token still runs once
//! afterwards), so without a gate one token buys unlimited full validations, each on the async
//! runtime's worker threads. Here: a budget per token (`jti`), kept until the token expires,
//! and a bound on validations running at once, on blocking threads, off the runtime's workers
//! (so that `Status`, health checks and the runs' streams keep being served).
//!
//! Over the per-token budget: `RESOURCE_EXHAUSTED` (`validation_budget_exhausted`). All
//! permits taken: the call waits up to [`QUEUE_WAIT`] for one, then `RESOURCE_EXHAUSTED`
//! (`validation_busy`), so a burst is smoothed while a flood is refused quickly. Never keeps
//! a token, only its id and expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{RunFailure, Worker};
use crate::token::{Expect, Scope};
use crate::workflow::{Problems, Workflow};

/// How long a validation waits for a free permit before it is refused.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Most token ids remembered at once (each until its token expires). Only tokens whose
/// signature verified get here, so only the Hub's issuance can fill it; full of live ids, the
/// gate refuses (`validation_busy`) rather than forget a budget.
const MAX_TRACKED: usize = 100_000;

/// Past this many remembered ids, expired ones are dropped before each charge.
const PRUNE_AT: usize = 1_024;

/// Validations used per token id, and when the token expires (Unix seconds).
#[derive(Debug, Default)]
struct Used {
    count: u32,
    expires: i64,
}

/// The gate in front of `Validate`.
#[derive(Debug)]
pub(crate) struct ValidateGate {
    permits: Arc<Semaphore>,
    used: Mutex<HashMap<String, Used>>,
}

impl ValidateGate {
    /// A gate letting `parallel` validations run at once (at least 1).
    pub(crate) fn new(parallel: usize) -> ValidateGate {
        ValidateGate {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one validation to token `jti` (which expires at `expires`); refused once the
    /// token has had `per_token`.
    pub(crate) fn charge(
        &self,
        jti: &str,
        expires: i64,
        now: i64,
        per_token: u32,
    ) -> Result<(), RunFailure> {
        let mut used = self.used.lock().map_err(|_| RunFailure::Internal)?;
        if used.len() >= PRUNE_AT {
            used.retain(|_, u| u.expires >= now);
        }
        if used.len() >= MAX_TRACKED && !used.contains_key(jti) {
            return Err(RunFailure::ValidationBusy);
        }
        let entry = used
            .entry(jti.to_owned())
            .or_insert_with(|| Used { count: 0, expires });
        if entry.count >= per_token {
            return Err(RunFailure::ValidationBudgetExhausted);
        }
        entry.count += 1;
        Ok(())
    }

    /// A permit to validate, waiting up to `wait` ([`QUEUE_WAIT`] in the service).
    pub(crate) async fn permit(&self, wait: Duration) -> Result<OwnedSemaphorePermit, RunFailure> {
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(RunFailure::Internal),
            Err(_) => Err(RunFailure::ValidationBusy),
        }
    }
}

/// What a validation found.
#[derive(Debug)]
pub(crate) enum Validated {
    /// A valid workflow (its node schemas predicted).
    Valid(Box<Workflow>),
    /// Problems, with the document's canonical hash.
    Invalid {
        /// The canonical hash, hex (empty if the document is not JSON at all).
        sha256: String,
        /// Every problem found.
        problems: Problems,
    },
}

impl Worker {
    /// A dry run of `doc` for `token` (which is not consumed): every problem, or the
    /// predicted schemas. The token's signature, time, audience, issuer, scope and role are
    /// checked first, cheaply, and the validation charged to its id; the full check (hash,
    /// workflow, connection scope) then runs on a blocking thread behind the gate's permits.
    pub(crate) async fn validate(
        self: &Arc<Self>,
        token: String,
        doc: String,
        params: String,
    ) -> Result<Validated, RunFailure> {
        self.learn_kid_of(&token).await;
        let now = crate::token::now();
        let who = Expect {
            scope: Scope::Run,
            workflow_sha256: None,
            params_sha256: None,
            connections: &[],
            consume: false,
        };
        let verified = self.verifier.verify(&token, &who, now).map_err(|e| {
            let f = RunFailure::Token(e);
            self.record_refusal(&f, &token);
            f
        })?;
        let per_token = self.config().limits.validations_per_token;
        self.validations
            .charge(&verified.claims.jti, verified.claims.exp, now, per_token)?;
        drop(verified);
        let permit = self.validations.permit(QUEUE_WAIT).await?;
        let worker = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match worker.check(&token, &doc, &params, false) {
                Ok((_, wf)) => Ok(Validated::Valid(Box::new(wf))),
                Err(
                    RunFailure::InvalidWorkflow(problems) | RunFailure::InvalidParams(problems),
                ) => Ok(Validated::Invalid {
                    sha256: crate::workflow::workflow_sha256(&doc).unwrap_or_default(),
                    problems,
                }),
                Err(f) => Err(f),
            }
        })
        .await
        .map_err(|_| RunFailure::Internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_gets_its_budget_and_expired_ids_are_forgotten() {
        let gate = ValidateGate::new(2);
        for _ in 0..3 {
            gate.charge("a", 100, 10, 3).expect("within budget");
        }
        assert!(matches!(
            gate.charge("a", 100, 10, 3),
            Err(RunFailure::ValidationBudgetExhausted)
        ));
        // Another token has its own budget.
        gate.charge("b", 50, 10, 3).expect("own budget");
        // Past PRUNE_AT ids, expired ones are forgotten.
        for i in 0..PRUNE_AT {
            gate.charge(&format!("x{i}"), 20, 10, 3)
                .expect("own budget");
        }
        gate.charge("c", 100, 60, 3).expect("own budget");
        let used = gate.used.lock().expect("lock");
        assert!(used.contains_key("a") && used.contains_key("c"));
        assert!(!used.contains_key("b") && !used.contains_key("x0"));
    }

    #[tokio::test]
    async fn permits_bound_the_validations_at_once_and_a_long_wait_is_refused() {
        let gate = ValidateGate::new(1);
        let wait = Duration::from_millis(50);
        let held = gate.permit(wait).await.expect("free");
        assert!(matches!(
            gate.permit(wait).await,
            Err(RunFailure::ValidationBusy)
        ));
        drop(held);
        let _free = gate.permit(wait).await.expect("free again");
    }
}
