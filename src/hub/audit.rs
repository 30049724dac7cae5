//! The audit trail in the reference Hub: each worker's Ed25519 audit keys (from `Register`),
//! its records (from `Report`) stored append-only (SQLite triggers refuse UPDATE and DELETE,
//! and nothing in the Hub's CLI edits or deletes a record), and the check of every chain:
//! each record signed by a key its worker registered, numbered 1, 2, 3, ..., and carrying
//! the hash of the one before.

use std::collections::HashMap;

use prost::Message as _;

use super::store::{Store, StoreError};
use crate::audit::{GENESIS, record_sha256, signed_by};
use crate::proto::AuditRecord;

/// A stored record.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The worker that reported it.
    pub worker_id: String,
    /// Its number in that worker's chain.
    pub seq: u64,
    /// Its run id.
    pub run_id: String,
    /// The record as received (protobuf).
    pub body: Vec<u8>,
    /// SHA-256 of `body` when received.
    pub sha256: String,
    /// What was wrong on receipt (`bad_signature`, `gap`, `fork`, `wrong_worker`).
    pub flag: Option<String>,
}

impl Stored {
    /// The record, decoded.
    pub fn record(&self) -> Option<AuditRecord> {
        AuditRecord::decode(self.body.as_slice()).ok()
    }
}

/// A row of `audit_records`: worker, seq, run id, body, sha256, flag.
type StoredRow = (String, i64, String, Vec<u8>, String, Option<String>);

impl Store {
    /// Keeps an audit key a worker registered (every key it ever registered is kept).
    pub(crate) async fn add_audit_key(
        &self,
        worker_id: &str,
        public_key: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR IGNORE INTO audit_keys (worker_id, public_key, registered_at) VALUES (?, ?, ?)",
        )
        .bind(worker_id)
        .bind(public_key)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every worker's audit keys.
    pub async fn audit_keys(&self) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT worker_id, public_key FROM audit_keys ORDER BY registered_at")
                .fetch_all(self.pool())
                .await?;
        let mut keys: HashMap<String, Vec<String>> = HashMap::new();
        for (worker, key) in rows {
            keys.entry(worker).or_default().push(key);
        }
        Ok(keys)
    }

    /// Stores a worker's reported records in order; a record whose run id is stored already
    /// is a duplicate (at-least-once delivery). Returns (stored, duplicates).
    pub(crate) async fn store_report(
        &self,
        worker_id: &str,
        records: &[AuditRecord],
        now: i64,
    ) -> Result<(u32, u32), StoreError> {
        let keys = self
            .audit_keys()
            .await?
            .remove(worker_id)
            .unwrap_or_default();
        let (mut stored, mut duplicates) = (0, 0);
        for r in records {
            let seen: Option<i64> =
                sqlx::query_scalar("SELECT id FROM audit_records WHERE run_id = ?")
                    .bind(&r.run_id)
                    .fetch_optional(self.pool())
                    .await?;
            if seen.is_some() {
                duplicates += 1;
                continue;
            }
            let last: Option<(i64, String)> = sqlx::query_as(
                "SELECT seq, sha256 FROM audit_records WHERE worker_id = ? ORDER BY seq DESC LIMIT 1",
            )
            .bind(worker_id)
            .fetch_optional(self.pool())
            .await?;
            let flag = if r.worker_id != worker_id {
                Some("wrong_worker")
            } else if !keys.iter().any(|k| signed_by(r, k)) {
                Some("bad_signature")
            } else {
                match last {
                    None if r.seq != 1 || r.prev_sha256 != GENESIS => Some("gap"),
                    None => None,
                    Some((seq, _)) if r.seq <= seq as u64 => Some("fork"),
                    Some((seq, _)) if r.seq != seq as u64 + 1 => Some("gap"),
                    Some((_, sha)) if r.prev_sha256 != sha => Some("fork"),
                    Some(_) => None,
                }
            };
            if let Some(flag) = flag {
                tracing::warn!(worker_id, seq = r.seq, run_id = %r.run_id, flag, "audit record flagged on receipt");
            }
            let inserted = sqlx::query(
                "INSERT INTO audit_records (worker_id, seq, run_id, body, sha256, flag, received_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(worker_id)
            .bind(r.seq as i64)
            .bind(&r.run_id)
            .bind(r.encode_to_vec())
            .bind(record_sha256(r))
            .bind(flag)
            .bind(now)
            .execute(self.pool())
            .await;
            match inserted {
                Ok(_) => stored += 1,
                // A concurrent report of the same record.
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => duplicates += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok((stored, duplicates))
    }

    /// Stored records, by worker and number (one worker's only, when given).
    pub async fn audit_records(&self, worker: Option<&str>) -> Result<Vec<Stored>, StoreError> {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT worker_id, seq, run_id, body, sha256, flag FROM audit_records \
             WHERE ?1 IS NULL OR worker_id = ?1 ORDER BY worker_id, seq, id",
        )
        .bind(worker)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(worker_id, seq, run_id, body, sha256, flag)| Stored {
                worker_id,
                seq: seq as u64,
                run_id,
                body,
                sha256,
                flag,
            })
            .collect())
    }
}

/// Every problem of the stored chains: a record that does not decode, is not signed by a key
/// its worker registered, differs from what was received, or does not follow the record
/// before it; records missing from a chain (a gap: deleted or never delivered). Empty when
/// every chain is intact.
pub fn verify(records: &[Stored], keys: &HashMap<String, Vec<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut previous: Option<(&str, u64, String)> = None;
    for s in records {
        let at = format!("worker {} record {} (run {})", s.worker_id, s.seq, s.run_id);
        let Some(r) = s.record() else {
            problems.push(format!("{at}: unreadable (edited?)"));
            continue;
        };
        let worker_keys = keys.get(&s.worker_id).map(Vec::as_slice).unwrap_or(&[]);
        if !worker_keys.iter().any(|k| signed_by(&r, k)) {
            problems.push(format!("{at}: the signature does not verify (edited?)"));
        }
        if record_sha256(&r) != s.sha256 || r.seq != s.seq || r.run_id != s.run_id {
            problems.push(format!("{at}: differs from the record received (edited)"));
        }
        let (expected_seq, expected_prev) = match &previous {
            Some((w, seq, sha)) if *w == s.worker_id => (seq + 1, sha.clone()),
            _ => (1, GENESIS.to_owned()),
        };
        if s.seq > expected_seq {
            problems.push(format!(
                "worker {}: records {expected_seq}..{} are missing (a gap: deleted or never delivered)",
                s.worker_id,
                s.seq - 1
            ));
        } else if s.seq < expected_seq {
            problems.push(format!("{at}: a second record with this number (a fork)"));
        } else if r.prev_sha256 != expected_prev {
            problems.push(format!(
                "{at}: does not follow the record before it (a fork, or that record was edited)"
            ));
        }
        if let Some(flag) = &s.flag {
            problems.push(format!("{at}: flagged on receipt: {flag}"));
        }
        previous = Some((&s.worker_id, s.seq, hex::encode(sha2_of(&s.body))));
    }
    problems
}

fn sha2_of(body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(body).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Auditor, Entry};

    #[tokio::test]
    async fn reports_are_stored_once_and_what_does_not_chain_is_flagged() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("hub.db"))
            .await
            .expect("store");
        let auditor = Auditor::open(&dir.path().join("spool"), "w1", 100).expect("auditor");
        store
            .add_audit_key("w1", &auditor.public_key(), 1)
            .await
            .expect("key");
        for i in 1..=5 {
            auditor
                .append(Entry::ok_run(&format!("r{i}")))
                .expect("append");
        }
        let all = auditor.pending(10).expect("pending");
        // At least once: the same records again are duplicates.
        assert_eq!(
            store
                .store_report("w1", &all[..3], 1)
                .await
                .expect("report"),
            (3, 0)
        );
        assert_eq!(
            store
                .store_report("w1", &all[..3], 1)
                .await
                .expect("report"),
            (0, 3)
        );
        // Record 5 without 4: a gap. Then 4 after 5: its number is taken (a fork).
        assert_eq!(
            store
                .store_report("w1", &all[4..], 1)
                .await
                .expect("report"),
            (1, 0)
        );
        assert_eq!(
            store
                .store_report("w1", &all[3..4], 1)
                .await
                .expect("report"),
            (1, 0)
        );
        // Signed by another key; reported by another worker.
        let stranger = Auditor::open(&dir.path().join("other"), "w1", 10).expect("other");
        stranger.append(Entry::ok_run("x1")).expect("append");
        let forged = stranger.pending(1).expect("pending");
        assert_eq!(
            store.store_report("w1", &forged, 1).await.expect("report"),
            (1, 0)
        );
        let flags: Vec<(String, Option<String>)> = store
            .audit_records(Some("w1"))
            .await
            .expect("records")
            .into_iter()
            .map(|s| (s.run_id, s.flag))
            .collect();
        let flag = |run: &str| {
            flags
                .iter()
                .find(|(r, _)| r == run)
                .and_then(|(_, f)| f.clone())
        };
        assert_eq!(flag("r1"), None);
        assert_eq!(flag("r3"), None);
        assert_eq!(flag("r5").as_deref(), Some("gap"));
        assert_eq!(flag("r4").as_deref(), Some("fork"));
        assert_eq!(flag("x1").as_deref(), Some("bad_signature"));
        let keys = store.audit_keys().await.expect("keys");
        let problems = verify(
            &store.audit_records(Some("w1")).await.expect("records"),
            &keys,
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("flagged on receipt: bad_signature")),
            "{problems:#?}"
        );
    }
}
