//! The query-result cache: results of `sql` nodes keyed by a fingerprint of the credential
//! actually used (HMAC-SHA256 under a per-process random key over the connection id and the
//! credential material; never the raw secret), the connection and the normalised query. Two
//! users with different credentials never share an entry; users the Hub sends the same
//! credential do. Values are what a run child consumes: the rows as one Arrow IPC stream
//! (shared bytes, so a hit goes to the child without decoding or copying). Per-connection
//! TTL, a global byte budget (weighed by those bytes), and single-flight: concurrent identical
//! misses run the query once. Values hold no secrets.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use polars::prelude::{
    DataFrame, IpcStreamReader, IpcStreamWriter, PolarsResult, SerReader as _, SerWriter as _,
};
use prost::bytes::Bytes;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::creds::Credential;

/// How one run uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CacheMode {
    /// Read a fresh entry if there is one, else query and store.
    #[default]
    Normal,
    /// Neither read nor write (`bypass_cache`).
    Bypass,
    /// Query, then replace the entry (`update_cache`).
    Update,
}

/// A cache key. The fingerprint is an HMAC, so the key reveals nothing about the credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    fingerprint: [u8; 32],
    connection: String,
    query: String,
    binds: String,
}

impl CacheKey {
    /// A key from a credential fingerprint (see [`fingerprint`]), a connection, a query and
    /// the values bound to its parameters ([`Bind::key_text`](crate::sql::Bind::key_text)).
    pub(crate) fn new(
        fingerprint: [u8; 32],
        connection: &str,
        query: &str,
        binds: &str,
    ) -> CacheKey {
        CacheKey {
            fingerprint,
            connection: connection.to_owned(),
            query: query.to_owned(),
            binds: binds.to_owned(),
        }
    }
}

/// HMAC-SHA256 of a credential under `key`. The credential's full JSON (host, database, user,
/// secret, role...) is the material: any difference in what the database sees as "who" gives
/// another fingerprint, and the fingerprint reveals nothing about the secret.
pub(crate) fn fingerprint(key: &[u8], credential: &Credential) -> [u8; 32] {
    let material = Zeroizing::new(serde_json::to_vec(credential).unwrap_or_default());
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(credential.connection.as_bytes());
    mac.update(&[0]);
    mac.update(&material);
    mac.finalize().into_bytes().into()
}

/// Cached rows: one Arrow IPC stream and its row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rows {
    /// The Arrow IPC stream.
    pub ipc: Bytes,
    /// Its rows.
    pub rows: u64,
}

impl Rows {
    /// A frame's rows.
    pub(crate) fn encode(frame: &mut DataFrame) -> PolarsResult<Rows> {
        let mut ipc = Vec::new();
        IpcStreamWriter::new(&mut ipc).finish(frame)?;
        Ok(Rows {
            ipc: Bytes::from(ipc),
            rows: frame.height() as u64,
        })
    }

    /// The rows as a frame.
    pub(crate) fn decode(&self) -> PolarsResult<DataFrame> {
        IpcStreamReader::new(std::io::Cursor::new(&self.ipc[..])).finish()
    }
}

struct Entry {
    rows: Rows,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _k: &CacheKey,
        v: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _k: &CacheKey,
        v: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The cache.
pub(crate) struct ResultCache {
    inner: moka::future::Cache<CacheKey, Arc<Entry>>,
    hmac_key: Zeroizing<[u8; 32]>,
    /// The largest result kept, bytes.
    max_entry_bytes: u64,
}

/// Whether a result this size (in memory) fits under `max_entry_bytes` (the run child's
/// check, which has the number but not the cache).
pub(crate) fn keeps(frame: &polars::prelude::DataFrame, max_entry_bytes: u64) -> bool {
    frame.estimated_size() as u64 <= max_entry_bytes
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("entries", &self.inner.entry_count())
            .field("bytes", &self.inner.weighted_size())
            .finish_non_exhaustive()
    }
}

/// Whether a result came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Served from the cache.
    Hit,
    /// Queried (and stored, unless bypassed or uncacheable).
    Miss,
}

impl ResultCache {
    /// A cache holding at most `max_bytes` of rows, results of at most `max_entry_bytes`
    /// each, with a fresh random HMAC key.
    pub(crate) fn new(max_bytes: u64, max_entry_bytes: u64) -> ResultCache {
        use rand::RngCore;
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        ResultCache {
            inner: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &CacheKey, v: &Arc<Entry>| {
                    u32::try_from(v.rows.ipc.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
            hmac_key: key,
            max_entry_bytes,
        }
    }

    /// The largest result kept, bytes.
    pub(crate) fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// Whether a result this size (in memory) is kept: a larger one is used by its run and
    /// not encoded for the cache.
    pub(crate) fn keeps(&self, frame: &polars::prelude::DataFrame) -> bool {
        keeps(frame, self.max_entry_bytes)
    }

    /// The key for running `query` (normalised) with `credential`.
    #[cfg(test)]
    pub(crate) fn key(&self, credential: &Credential, query: &str) -> CacheKey {
        CacheKey::new(
            fingerprint(self.hmac_key.as_ref(), credential),
            &credential.connection,
            query,
            "[]",
        )
    }

    /// This process's fingerprint key, for a sandboxed run child that holds the credential
    /// the daemon never sees (it computes [`fingerprint`] and sends only the result).
    pub(crate) fn fingerprint_key(&self) -> &[u8] {
        self.hmac_key.as_ref()
    }

    /// The result for `key`: cached, or loaded by `load` (once, however many callers ask at
    /// the same moment) and kept for `ttl` (`0`: not cached).
    pub(crate) async fn get_or_load<E, F>(
        &self,
        key: CacheKey,
        ttl: Duration,
        mode: CacheMode,
        load: F,
    ) -> Result<(Rows, Source), Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<Rows, E>>,
    {
        if mode == CacheMode::Bypass || ttl.is_zero() {
            return load.await.map(|r| (r, Source::Miss)).map_err(Arc::new);
        }
        if mode == CacheMode::Update {
            let rows = load.await.map_err(Arc::new)?;
            let entry = Arc::new(Entry {
                rows: rows.clone(),
                ttl,
            });
            self.inner.insert(key, entry).await;
            return Ok((rows, Source::Miss));
        }
        let loaded = AtomicBool::new(false);
        let entry = self
            .inner
            .try_get_with(key, async {
                loaded.store(true, Ordering::SeqCst);
                load.await.map(|rows| Arc::new(Entry { rows, ttl }))
            })
            .await?;
        let source = if loaded.load(Ordering::SeqCst) {
            Source::Miss
        } else {
            Source::Hit
        };
        Ok((entry.rows.clone(), source))
    }

    /// Entries and bytes held, as of the last maintenance (no waiting).
    pub(crate) fn stats_now(&self) -> (u64, u64) {
        (self.inner.entry_count(), self.inner.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use polars::prelude::df;

    use super::*;
    use crate::creds::Auth;
    use crate::secret::Secret;
    use crate::sql::Dialect;

    fn cred(user: &str, password: &str) -> Credential {
        Credential {
            connection: "dw".into(),
            dialect: Dialect::Postgres,
            host: Some("db".into()),
            port: None,
            database: "sales".into(),
            auth: Auth::Password {
                user: user.into(),
                password: Secret::new(password.into()),
            },
            role: None,
            tls: false,
        }
    }

    fn frame(n: i64) -> Rows {
        Rows::encode(&mut df!("n" => [n]).unwrap()).unwrap()
    }

    fn n(rows: &Rows) -> Option<i64> {
        rows.decode()
            .unwrap()
            .column("n")
            .unwrap()
            .i64()
            .unwrap()
            .get(0)
    }

    #[test]
    fn credentials_isolate_entries_and_shared_credentials_share() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = ResultCache::new(1 << 20, 1 << 20);
            let calls = AtomicUsize::new(0);
            let q = "SELECT n FROM t";
            let load = |n: i64| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, String>(frame(n)) }
            };
            let alice = cache.key(&cred("alice", "pw-a"), q);
            let bob = cache.key(&cred("bob", "pw-b"), q);
            let alice_again = cache.key(&cred("alice", "pw-a"), q);
            let alice_new_pw = cache.key(&cred("alice", "pw-a2"), q);
            assert_eq!(alice, alice_again);
            assert_ne!(alice, bob);
            assert_ne!(alice, alice_new_pw);
            // The key holds no secret.
            assert!(!format!("{alice:?}").contains("pw-a"));
            let ttl = Duration::from_secs(60);
            let (a, s) = cache
                .get_or_load(alice.clone(), ttl, CacheMode::Normal, load(1))
                .await
                .unwrap();
            assert_eq!((n(&a), s), (Some(1), Source::Miss));
            let (b, s) = cache
                .get_or_load(bob, ttl, CacheMode::Normal, load(2))
                .await
                .unwrap();
            assert_eq!((n(&b), s), (Some(2), Source::Miss));
            let (a2, s) = cache
                .get_or_load(alice_again.clone(), ttl, CacheMode::Normal, load(3))
                .await
                .unwrap();
            assert_eq!((n(&a2), s), (Some(1), Source::Hit));
            // bypass neither reads nor writes; update replaces.
            let (x, s) = cache
                .get_or_load(alice_again.clone(), ttl, CacheMode::Bypass, load(4))
                .await
                .unwrap();
            assert_eq!((n(&x), s), (Some(4), Source::Miss));
            cache
                .get_or_load(alice_again.clone(), ttl, CacheMode::Update, load(5))
                .await
                .unwrap();
            let (y, s) = cache
                .get_or_load(alice_again, ttl, CacheMode::Normal, load(6))
                .await
                .unwrap();
            assert_eq!((n(&y), s), (Some(5), Source::Hit));
        });
    }

    #[test]
    fn expired_entries_query_again_and_misses_are_single_flight() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache = Arc::new(ResultCache::new(1 << 20, 1 << 20));
            let key = cache.key(&cred("alice", "pw"), "SELECT 1");
            let ttl = Duration::from_millis(300);
            let (_, s) = cache
                .get_or_load(key.clone(), ttl, CacheMode::Normal, async {
                    Ok::<_, String>(frame(1))
                })
                .await
                .unwrap();
            assert_eq!(s, Source::Miss);
            let (_, s) = cache
                .get_or_load(key.clone(), ttl, CacheMode::Normal, async {
                    Ok::<_, String>(frame(2))
                })
                .await
                .unwrap();
            assert_eq!(s, Source::Hit);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (df, s) = cache
                .get_or_load(key, ttl, CacheMode::Normal, async {
                    Ok::<_, String>(frame(3))
                })
                .await
                .unwrap();
            assert_eq!((n(&df), s), (Some(3), Source::Miss));

            // 20 concurrent identical misses: one load.
            let calls = Arc::new(AtomicUsize::new(0));
            let key = cache.key(&cred("carol", "pw"), "SELECT slow");
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
                tasks.push(tokio::spawn(async move {
                    cache
                        .get_or_load(
                            key,
                            Duration::from_secs(60),
                            CacheMode::Normal,
                            async move {
                                calls.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                Ok::<_, String>(frame(7))
                            },
                        )
                        .await
                        .map(|(_, s)| s)
                }));
            }
            let mut misses = 0;
            for t in tasks {
                if t.await.unwrap().unwrap() == Source::Miss {
                    misses += 1;
                }
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(misses, 1);
            // Errors are not cached.
            let key = cache.key(&cred("dave", "pw"), "SELECT broken");
            let e = cache
                .get_or_load(
                    key.clone(),
                    Duration::from_secs(60),
                    CacheMode::Normal,
                    async { Err::<Rows, _>("boom".to_owned()) },
                )
                .await;
            assert!(e.is_err());
            let (_, s) = cache
                .get_or_load(key, Duration::from_secs(60), CacheMode::Normal, async {
                    Ok::<_, String>(frame(8))
                })
                .await
                .unwrap();
            assert_eq!(s, Source::Miss);
        });
    }
}
