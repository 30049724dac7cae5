//! The worker's side of the audit trail: one record per task into the spool
//! ([`crate::audit::Auditor`]), and the task that takes spooled records to the Hub
//! (`Hub.Report`) in order, at least once: a record leaves the spool only when the Hub has
//! it, so a Hub outage loses nothing (records wait, up to `[audit] max_records`; then new
//! tasks are refused, counted and logged, never dropped silently).

use std::sync::Arc;
use std::time::Duration;

use super::{RunFailure, Worker};
use crate::audit::Entry;

/// Records per `Report` call.
const BATCH: usize = 64;

/// Longest pause between attempts while the Hub does not take records.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Worker {
    /// Whether the audit spool is full (new tasks are refused).
    pub(crate) fn audit_full(&self) -> bool {
        let full = self.audit.as_ref().is_some_and(|a| a.full());
        if full {
            self.metrics().audit_spool_full.inc();
            tracing::warn!(
                waiting = self.audit.as_ref().map_or(0, |a| a.waiting()),
                "the audit spool is full: new tasks are refused until the hub takes records"
            );
        }
        full
    }

    /// Spools the record of a task that ended (nothing when there is no audit trail).
    pub(crate) fn audit(&self, entry: Entry) {
        let Some(auditor) = &self.audit else {
            return;
        };
        match auditor.append(entry) {
            Ok(_) => {
                self.metrics().audit_waiting.set(auditor.waiting() as i64);
                self.audit_wake.notify_one();
            }
            Err(e) => {
                self.metrics().audit_spool_full.inc();
                tracing::error!("an audit record could not be spooled: {e}");
            }
        }
    }
}

/// The outcome code and sandbox exit class of a task's result.
pub(crate) fn outcome<T>(result: &Result<T, RunFailure>) -> (String, String) {
    match result {
        Ok(_) => ("ok".into(), String::new()),
        Err(f @ RunFailure::Sandbox(e)) => (f.code(), e.code().into()),
        Err(f) => (f.code(), String::new()),
    }
}

/// A task's record as far as its token tells, started now.
pub(crate) fn entry(kind: &'static str, run_id: &str, claims: &crate::token::Claims) -> Entry {
    Entry {
        kind,
        run_id: run_id.to_owned(),
        jti: claims.jti.clone(),
        sub: claims.sub.clone(),
        workflow_sha256: claims.workflow_sha256.clone(),
        params_sha256: claims.params_sha256.clone(),
        connections: claims.connections.clone(),
        started_at_ms: now_ms(),
        ..Entry::default()
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Starts the sender (nothing when there is no audit trail).
pub(super) fn start(worker: Arc<Worker>) {
    let Some(auditor) = worker.audit.clone() else {
        return;
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let records = match auditor.pending(BATCH) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("the audit spool cannot be read: {e}");
                    tokio::time::sleep(MAX_BACKOFF).await;
                    continue;
                }
            };
            let Some(last) = records.last().map(|r| r.seq) else {
                // Nothing waiting: until a record is spooled (or a second passes).
                let _ = tokio::time::timeout(Duration::from_secs(1), worker.audit_wake.notified())
                    .await;
                continue;
            };
            let n = records.len();
            match worker.hub.clone().report(records).await {
                Ok(answer) => {
                    if let Err(e) = auditor.acknowledge(last) {
                        tracing::error!("sent audit records cannot leave the spool: {e}");
                    }
                    worker.metrics().audit_waiting.set(auditor.waiting() as i64);
                    tracing::debug!(
                        sent = n,
                        stored = answer.stored,
                        duplicates = answer.duplicates,
                        "audit records delivered"
                    );
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    worker.metrics().audit_report_failures.inc();
                    tracing::warn!(
                        reason = %e.code(),
                        waiting = auditor.waiting(),
                        "audit records wait: the hub did not take them: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
}
