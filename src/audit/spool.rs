//! The spool: a private directory (0700) holding the audit key (`audit.key`, 0600), the
//! chain's head (`chain`: `SEQ SHA256`) and one file per record not yet taken by the Hub
//! (`r<seq, 20 digits>.pb`, the record encoded). Every file is written to a temporary name,
//! synced and renamed, so a crash leaves the old file or the new one, never half of one.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use prost::Message as _;
use zeroize::Zeroizing;

use super::{AuditError, Head, io};
use crate::proto::AuditRecord;

const KEY: &str = "audit.key";
const CHAIN: &str = "chain";

#[derive(Debug)]
pub(super) struct Spool {
    dir: PathBuf,
    max: usize,
    count: AtomicUsize,
}

fn record_name(seq: u64) -> String {
    format!("r{seq:020}.pb")
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix('r')?.strip_suffix(".pb")?.parse().ok()
}

/// Writes `bytes` to `path` (mode 0600) through a synced temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AuditError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Spool {
    pub(super) fn open(dir: &Path, max: usize) -> Result<Spool, AuditError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let spool = Spool {
            dir: dir.to_owned(),
            max: max.max(1),
            count: AtomicUsize::new(0),
        };
        let n = spool.seqs()?.len();
        spool.count.store(n, Ordering::SeqCst);
        Ok(spool)
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The signing key: read, or made and written on first use.
    pub(super) fn key(&self) -> Result<SigningKey, AuditError> {
        let path = self.dir.join(KEY);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let raw = Zeroizing::new(
                    URL_SAFE_NO_PAD
                        .decode(text.trim())
                        .map_err(|_| AuditError::Corrupt(path.clone()))?,
                );
                let bytes: [u8; 32] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| AuditError::Corrupt(path.clone()))?;
                Ok(SigningKey::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let text = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.to_bytes()));
                write_atomic(&path, text.as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The chain's head as last written.
    pub(super) fn head(&self) -> Result<Option<Head>, AuditError> {
        let path = self.dir.join(CHAIN);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (seq, sha256) = text
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| AuditError::Corrupt(path.clone()))?;
                let seq = seq.parse().map_err(|_| AuditError::Corrupt(path.clone()))?;
                Ok(Some(Head {
                    seq,
                    sha256: sha256.to_owned(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub(super) fn set_head(&self, seq: u64, sha256: &str) -> Result<(), AuditError> {
        write_atomic(
            &self.dir.join(CHAIN),
            format!("{seq} {sha256}\n").as_bytes(),
        )
    }

    /// The numbers of the spooled records, in order.
    fn seqs(&self) -> Result<Vec<u64>, AuditError> {
        let mut seqs: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(seq_of))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn read(&self, seq: u64) -> Result<AuditRecord, AuditError> {
        let path = self.dir.join(record_name(seq));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        AuditRecord::decode(bytes.as_slice()).map_err(|_| AuditError::Corrupt(path))
    }

    pub(super) fn write(&self, seq: u64, record: &AuditRecord) -> Result<(), AuditError> {
        write_atomic(&self.dir.join(record_name(seq)), &record.encode_to_vec())?;
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The last spooled record.
    pub(super) fn last(&self) -> Result<Option<(u64, AuditRecord)>, AuditError> {
        match self.seqs()?.last() {
            Some(&seq) => Ok(Some((seq, self.read(seq)?))),
            None => Ok(None),
        }
    }

    pub(super) fn oldest(&self, max: usize) -> Result<Vec<AuditRecord>, AuditError> {
        self.seqs()?
            .into_iter()
            .take(max)
            .map(|seq| self.read(seq))
            .collect()
    }

    pub(super) fn remove_through(&self, seq: u64) -> Result<(), AuditError> {
        for s in self.seqs()?.into_iter().take_while(|s| *s <= seq) {
            let path = self.dir.join(record_name(s));
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}
