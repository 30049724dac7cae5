//! A cache of checked expressions keyed by source text, so a workflow run many times compiles
//! each expression once. Rejections are cached too: a bad expression costs one parse.
//! Holds no data and no secrets: keys are expression sources, values compiled plans.
//!
//! Two levels: a small direct-mapped cache per thread (no locks, no atomics but the `Arc`
//! clone) in front of a shared moka cache (TinyLFU admission, byte-weighted). Checking is a
//! pure function of the source text, so no level ever needs invalidating; a hit always
//! compares the full text, so a hash collision can only cost a miss, never a wrong answer.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use moka::sync::Cache;

use super::{Checked, check};

/// Default budget: bytes of source text kept (plus a fixed per-entry overhead).
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Per-entry overhead counted by the weigher: the compiled `Expr` tree and bookkeeping.
const ENTRY_OVERHEAD: u32 = 512;

/// Sets of the per-thread cache (a power of two); each set holds two entries.
const L1_SETS: usize = 2048;

/// Sources longer than this skip the per-thread cache (they would evict short ones for little).
const L1_MAX_SOURCE: usize = 4096;

type Entry = Option<(u64, Arc<str>, Checked)>;

/// Two ways and which one was used last (the other is replaced on a miss).
#[derive(Default)]
struct Set {
    ways: [Entry; 2],
    recent: usize,
}

thread_local! {
    static L1: RefCell<Vec<Set>> =
        RefCell::new(std::iter::repeat_with(Set::default).take(L1_SETS).collect());
}

/// One fixed hasher for the per-thread slots: keys are compared in full on every hit, so a
/// predictable hash can only make an attacker's own lookups miss.
fn l1_hash(src: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x6875_6277_6f72_6b72).hash_one(src)
}

/// Thread-safe compiled-expression cache.
#[derive(Clone)]
pub struct ExprCache {
    inner: Cache<Arc<str>, (Arc<str>, Checked), foldhash::fast::RandomState>,
}

impl std::fmt::Debug for ExprCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExprCache")
            .field("entries", &self.inner.entry_count())
            .field("weighted_bytes", &self.inner.weighted_size())
            .finish()
    }
}

impl Default for ExprCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BYTES)
    }
}

impl ExprCache {
    /// A cache holding about `max_bytes` of expression sources.
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, _v: &(Arc<str>, Checked)| {
                u32::try_from(k.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        ExprCache { inner }
    }

    /// The checked expression for `src`, compiling it on a miss.
    pub fn get(&self, src: &str) -> Checked {
        if src.len() > L1_MAX_SOURCE {
            return self.shared(src).1;
        }
        let h = l1_hash(src);
        let idx = (h as usize) & (L1_SETS - 1);
        let hit = L1.with(|l1| {
            let mut l1 = l1.borrow_mut();
            let set = l1.get_mut(idx)?;
            let way = set
                .ways
                .iter()
                .position(|w| matches!(w, Some((wh, key, _)) if *wh == h && **key == *src))?;
            set.recent = way;
            set.ways[way].as_ref().map(|(_, _, val)| val.clone())
        });
        if let Some(val) = hit {
            return val;
        }
        let (key, val) = self.shared(src);
        L1.with(|l1| {
            if let Some(set) = l1.borrow_mut().get_mut(idx) {
                let victim = 1 - set.recent;
                set.ways[victim] = Some((h, key, val.clone()));
                set.recent = victim;
            }
        });
        val
    }

    /// The shared level: a hit, or a fresh check inserted for everyone.
    fn shared(&self, src: &str) -> (Arc<str>, Checked) {
        if let Some(hit) = self.inner.get(src) {
            return hit;
        }
        let key: Arc<str> = Arc::from(src);
        let checked = check(src).map(Arc::new);
        self.inner
            .insert(key.clone(), (key.clone(), checked.clone()));
        (key, checked)
    }

    /// Number of entries in the shared level (approximate while writes are pending).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}
