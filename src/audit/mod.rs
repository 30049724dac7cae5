//! The worker's audit trail (issue 23): one record per task, chained and signed, kept in a
//! bounded spool on disk until the Hub has it. Knows nothing of gRPC calls or the daemon: the
//! worker appends (`Auditor::append`) and a sender of its own takes `Auditor::pending`
//! records to the Hub and `Auditor::acknowledge`s them.
//!
//! Each record carries `seq` (1, 2, 3, ... for this worker) and `prev_sha256`, the SHA-256 of
//! the previous record as encoded (signature included), and is signed with the worker's
//! Ed25519 audit key over its encoding with an empty signature. The key lives beside the
//! spool (`audit.key`, 0600, made on first start) and the chain's head in `chain`, so a
//! restarted worker goes on with the same chain. A record never holds query text, result
//! values, parameter values or credentials: only the fields of `Entry`.

mod spool;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::proto::AuditRecord;

/// `prev_sha256` of a worker's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit trail cannot take a record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    /// The spool holds its maximum of records (the Hub has not taken them).
    #[error("the audit spool is full ({0} records waiting for the hub)")]
    Full(usize),
    /// The spool directory or a file in it.
    #[error("audit spool {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key or chain file is not what this worker wrote.
    #[error("audit spool {0}: unreadable (not written by this worker?)")]
    Corrupt(PathBuf),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the worker knows of a task when it ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub kind: &'static str,
    pub run_id: String,
    pub jti: String,
    pub sub: String,
    pub workflow_sha256: String,
    pub params_sha256: String,
    pub connections: Vec<String>,
    pub outcome: String,
    pub exit_class: String,
    pub started_at_ms: i64,
    pub duration_ms: u64,
    pub rows_out: u64,
    pub bytes_out: u64,
    pub inputs_cached: u32,
    pub inputs_fetched: u32,
}

#[cfg(test)]
impl Entry {
    /// A successful run's entry (tests).
    pub(crate) fn ok_run(run_id: &str) -> Entry {
        Entry {
            kind: "run",
            run_id: run_id.into(),
            outcome: "ok".into(),
            ..Entry::default()
        }
    }
}

/// SHA-256 (hex) of a record as encoded, signature included: the next record's
/// `prev_sha256`.
pub fn record_sha256(record: &AuditRecord) -> String {
    hex::encode(Sha256::digest(record.encode_to_vec()))
}

/// The bytes a record's signature covers: the record encoded with an empty signature.
fn signed_bytes(record: &AuditRecord) -> Vec<u8> {
    AuditRecord {
        signature: Vec::new(),
        ..record.clone()
    }
    .encode_to_vec()
}

/// Whether `record` is signed by `public_key` (URL-safe base64 of 32 bytes).
pub fn signed_by(record: &AuditRecord, public_key: &str) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(public_key.trim()) else {
        return false;
    };
    let (Ok(raw), Ok(sig)) = (
        <[u8; 32]>::try_from(raw.as_slice()),
        ed25519_dalek::Signature::from_slice(&record.signature),
    ) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&raw) else {
        return false;
    };
    key.verify(&signed_bytes(record), &sig).is_ok()
}

/// The chain's head: the last record's number and hash.
#[derive(Debug, Clone)]
struct Head {
    seq: u64,
    sha256: String,
}

/// The worker's audit trail.
pub(crate) struct Auditor {
    worker_id: String,
    key: SigningKey,
    spool: spool::Spool,
    head: Mutex<Head>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("worker_id", &self.worker_id)
            .field("dir", &self.spool.dir())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Opens (or creates, 0700) the spool in `dir` for `worker_id`, holding at most
    /// `max_records` records not yet taken by the Hub.
    pub(crate) fn open(
        dir: &Path,
        worker_id: &str,
        max_records: usize,
    ) -> Result<Auditor, AuditError> {
        let spool = spool::Spool::open(dir, max_records)?;
        let key = spool.key()?;
        let mut head = spool.head()?.unwrap_or(Head {
            seq: 0,
            sha256: GENESIS.to_owned(),
        });
        // Records written after the head was (a crash between the two writes).
        if let Some((seq, record)) = spool.last()?
            && seq > head.seq
        {
            head = Head {
                seq,
                sha256: record_sha256(&record),
            };
        }
        Ok(Auditor {
            worker_id: worker_id.to_owned(),
            key,
            spool,
            head: Mutex::new(head),
        })
    }

    /// The public key, as `Register` sends it.
    pub(crate) fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// Records waiting for the Hub.
    pub(crate) fn waiting(&self) -> usize {
        self.spool.count()
    }

    /// Whether the spool is full (new tasks are refused until the Hub takes records).
    pub(crate) fn full(&self) -> bool {
        self.spool.count() >= self.spool.max()
    }

    /// Chains, signs and spools one record (written and synced before this returns).
    pub(crate) fn append(&self, entry: Entry) -> Result<u64, AuditError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if self.full() {
            return Err(AuditError::Full(self.spool.count()));
        }
        let mut record = AuditRecord {
            worker_id: self.worker_id.clone(),
            seq: head.seq + 1,
            run_id: entry.run_id,
            kind: entry.kind.to_owned(),
            jti: entry.jti,
            sub: entry.sub,
            workflow_sha256: entry.workflow_sha256,
            params_sha256: entry.params_sha256,
            connections: entry.connections,
            outcome: entry.outcome,
            exit_class: entry.exit_class,
            started_at_ms: entry.started_at_ms,
            duration_ms: entry.duration_ms,
            rows_out: entry.rows_out,
            bytes_out: entry.bytes_out,
            inputs_cached: entry.inputs_cached,
            inputs_fetched: entry.inputs_fetched,
            prev_sha256: head.sha256.clone(),
            signature: Vec::new(),
        };
        record.signature = self.key.sign(&signed_bytes(&record)).to_bytes().to_vec();
        self.spool.write(record.seq, &record)?;
        let next = Head {
            seq: record.seq,
            sha256: record_sha256(&record),
        };
        self.spool.set_head(next.seq, &next.sha256)?;
        *head = next;
        Ok(record.seq)
    }

    /// Up to `max` records waiting for the Hub, oldest first.
    pub(crate) fn pending(&self, max: usize) -> Result<Vec<AuditRecord>, AuditError> {
        self.spool.oldest(max)
    }

    /// The Hub has every record up to `seq`: they leave the spool.
    pub(crate) fn acknowledge(&self, seq: u64) -> Result<(), AuditError> {
        self.spool.remove_through(seq)
    }
}

#[cfg(test)]
mod tests;
