//! A cache of checked expressions keyed by source text, so a workflow run many times compiles
//! each expression once. Rejections are cached too: a bad expression costs one parse.
//! Holds no data and no secrets: keys are expression sources, values compiled plans.
//!
//! Two levels: a small set-associative cache per thread (no locks, no atomics) in front of a
//! shared moka cache (TinyLFU admission, byte-weighted). Checking is a pure function of the
//! source text, so no level ever needs invalidating; a hit always compares the full text, so
//! a hash collision can only cost a miss, never a wrong answer.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;

use moka::sync::Cache;

use super::{Checked, check};

/// Default budget: bytes of source text kept (plus a fixed per-entry overhead).
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Per-entry overhead counted by the weigher: the compiled `Expr` tree and bookkeeping.
const ENTRY_OVERHEAD: u32 = 512;

/// Sets of the per-thread cache (a power of two); each set holds two entries.
const L1_SETS: usize = 2048;

/// Sources longer than this skip the per-thread cache (they would evict short ones for little).
const L1_MAX_SOURCE: usize = 4096;

/// One way of a set: a source and its answer.
type Way = Option<(Arc<str>, Checked)>;

/// The per-thread level. A probe reads one 16-byte tag pair (the tags of all sets fit in
/// 32 KiB) and touches an entry only when a tag matches.
#[derive(Default)]
struct Level1 {
    /// Slot hashes of each set's two ways (meaningless where the way is empty).
    tags: Vec<[u64; 2]>,
    /// Each set's two entries and the way used last (the other is replaced on a miss).
    sets: Vec<([Way; 2], usize)>,
}

impl Level1 {
    /// Runs `f` on the entry for `src` in set `idx`, or gives `f` back on a miss.
    #[inline]
    fn lend<R, F: FnOnce(&Checked) -> R>(
        &mut self,
        idx: usize,
        h: u64,
        src: &str,
        f: F,
    ) -> Result<R, F> {
        let (Some(tags), Some((ways, recent))) = (self.tags.get(idx), self.sets.get_mut(idx))
        else {
            return Err(f);
        };
        // Both ways: sources with the same sketch carry the same tag.
        let found = (0..2).find(|&w| {
            tags.get(w) == Some(&h) && matches!(ways.get(w), Some(Some((key, _))) if **key == *src)
        });
        match found.and_then(|w| Some((w, ways.get(w)?.as_ref()?))) {
            Some((w, (_, val))) => {
                *recent = w;
                Ok(f(val))
            }
            None => Err(f),
        }
    }

    /// Whether `src` is held in this thread's level (for tests).
    #[cfg(test)]
    fn holds(&mut self, src: &str) -> bool {
        let h = l1_hash(src);
        self.lend((h as usize) & (L1_SETS - 1), h, src, |_| ())
            .is_ok()
    }

    /// Keeps `(key, val)` in set `idx`, replacing the way not used last.
    fn keep(&mut self, idx: usize, h: u64, key: Arc<str>, val: Checked) {
        if self.sets.is_empty() {
            self.tags = vec![[0; 2]; L1_SETS];
            self.sets = std::iter::repeat_with(Default::default)
                .take(L1_SETS)
                .collect();
        }
        if let (Some(tags), Some((ways, recent))) = (self.tags.get_mut(idx), self.sets.get_mut(idx))
        {
            let victim = 1 - (*recent & 1);
            tags[victim] = h;
            ways[victim] = Some((key, val));
            *recent = victim;
        }
    }
}

thread_local! {
    // Constant-initialised (no lazy-init check on each access); the sets are allocated on the
    // thread's first miss.
    static L1: RefCell<Level1> = const {
        RefCell::new(Level1 { tags: Vec::new(), sets: Vec::new() })
    };
}

/// Sources up to this length index the per-thread level by a hash of every byte.
const L1_WHOLE_HASH: usize = 128;

/// Interior 8-byte words sampled from longer sources, besides their first and last 32 bytes.
const L1_SAMPLES: usize = 8;

/// The per-thread slot of a source. Short sources hash whole; longer ones hash their length,
/// both ends and [`L1_SAMPLES`] evenly spaced interior words, so a hit reads the text once (in
/// the full comparison) instead of twice. Sources that agree on every sampled byte share a
/// set and may evict each other: that costs a visit to the shared level, never a wrong
/// answer. One fixed hasher: a predictable slot can only make an attacker's own lookups miss.
#[inline]
fn l1_hash(src: &str) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(0x6875_6277_6f72_6b72);
    let b = src.as_bytes();
    if b.len() <= L1_WHOLE_HASH {
        return state.hash_one(b);
    }
    // Gather the samples into one buffer and hash that once.
    let mut sketch = [0u8; 64 + 8 * L1_SAMPLES];
    let (ends, words) = sketch.split_at_mut(64);
    let (head, tail) = ends.split_at_mut(32);
    if let (Some(h), Some(t)) = (b.get(..32), b.get(b.len() - 32..)) {
        head.copy_from_slice(h);
        tail.copy_from_slice(t);
    }
    let step = (b.len() - 8) / (L1_SAMPLES + 1);
    for (k, word) in words.chunks_exact_mut(8).enumerate() {
        let at = (k + 1) * step;
        if let Some(w) = b.get(at..at + 8) {
            word.copy_from_slice(w);
        }
    }
    state.hash_one((b.len(), sketch))
}

/// The process-wide cache the workflow validator uses, so a workflow run many times compiles
/// each expression once per process.
pub fn global() -> &'static ExprCache {
    static GLOBAL: std::sync::OnceLock<ExprCache> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(ExprCache::default)
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
    #[inline]
    pub fn get(&self, src: &str) -> Checked {
        self.with(src, Checked::clone)
    }

    /// Runs `f` on the checked expression for `src`, compiling it on a miss. A per-thread hit
    /// lends the cached value without touching its reference count, so this is the cheapest
    /// way to read a hit (for example to clone the compiled Polars `Expr` out of it).
    #[inline]
    pub fn with<R>(&self, src: &str, f: impl FnOnce(&Checked) -> R) -> R {
        if src.len() > L1_MAX_SOURCE {
            return f(&self.shared(src).1);
        }
        let h = l1_hash(src);
        let idx = (h as usize) & (L1_SETS - 1);
        let outcome = L1.with(move |l1| match l1.try_borrow_mut() {
            Ok(mut l1) => l1.lend(idx, h, src, f),
            Err(_) => Err(f),
        });
        match outcome {
            Ok(r) => r,
            Err(f) => f(&self.miss(src, h, idx)),
        }
    }

    /// A per-thread miss: ask the shared level, then keep the answer in this thread's set.
    #[cold]
    #[inline(never)]
    fn miss(&self, src: &str, h: u64, idx: usize) -> Checked {
        let (key, val) = self.shared(src);
        L1.with(|l1| {
            if let Ok(mut l1) = l1.try_borrow_mut() {
                l1.keep(idx, h, key, val.clone());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `pl.col(...)` source of exactly `len` bytes whose column name carries `mark` at byte
    /// `at` of the source.
    fn source(len: usize, at: usize, mark: char) -> String {
        let head = "pl.col(\"";
        let mut name = "a".repeat(len - head.len() - 2);
        name.replace_range(at - head.len()..=at - head.len(), &mark.to_string());
        format!("{head}{name}\")")
    }

    #[test]
    fn sources_that_share_a_slot_still_get_their_own_answers() {
        // 300 bytes: samples cover 0..32, 268..300 and 8 bytes every 32 from 32; byte 50 is
        // not sampled, so these three share a per-thread set of two ways.
        let srcs: Vec<String> = ['b', 'c', 'd']
            .iter()
            .map(|&m| source(300, 50, m))
            .collect();
        assert!(srcs.iter().all(|s| s.len() == 300));
        assert_eq!(l1_hash(&srcs[0]), l1_hash(&srcs[1]));
        assert_eq!(l1_hash(&srcs[1]), l1_hash(&srcs[2]));
        let cache = ExprCache::new(1 << 20);
        // Two of them fit the set's two ways: after one lap both are per-thread hits.
        for s in &srcs[..2] {
            let _ = cache.get(s);
        }
        L1.with(|l1| {
            let mut l1 = l1.borrow_mut();
            assert!(l1.holds(&srcs[0]) && l1.holds(&srcs[1]));
        });
        for _ in 0..5 {
            for s in &srcs {
                let want = format!("{:?}", check(s).expect("valid").expr());
                let got = cache.with(s, |c| format!("{:?}", c.as_ref().expect("valid").expr()));
                assert_eq!(got, want, "wrong compiled expression for {s}");
            }
        }
        // A byte that is sampled separates them.
        assert_ne!(
            l1_hash(&source(300, 33, 'b')),
            l1_hash(&source(300, 33, 'c'))
        );
    }

    #[test]
    fn a_lookup_inside_a_lookup_is_answered() {
        let cache = ExprCache::new(1 << 20);
        let outer = "pl.col(\"x\") * 2";
        let _ = cache.get(outer);
        let inner = cache.with(outer, |o| {
            assert!(o.is_ok());
            // The per-thread level is busy lending `o`: this one goes to the shared level.
            cache
                .get("pl.col(\"y\").sum()")
                .map(|c| format!("{:?}", c.expr()))
        });
        assert_eq!(
            inner.expect("valid"),
            format!("{:?}", check("pl.col(\"y\").sum()").expect("valid").expr())
        );
    }

    #[test]
    fn hits_and_misses_agree_with_check_for_every_size() {
        let cache = ExprCache::new(1 << 20);
        let long = format!("pl.col(\"a\"){}", ".abs()".repeat(700));
        let huge = format!("pl.col(\"a\"){}", " + 1".repeat(L1_MAX_SOURCE / 4 + 1));
        for src in ["pl.len()", "pl.col(\"a\") +", long.as_str(), huge.as_str()] {
            let want = check(src).map(|c| format!("{:?}", c.expr()));
            for _ in 0..3 {
                let got = cache.get(src).map(|c| format!("{:?}", c.expr()));
                assert_eq!(got, want);
            }
        }
    }
}
