//! A cache of checked expressions keyed by source text, so a workflow run many times compiles
//! each expression once. Rejections are cached too: a bad expression costs one parse.
//! Holds no data and no secrets: keys are expression sources, values compiled plans.

use std::sync::Arc;

use moka::sync::Cache;

use super::{Checked, check};

/// Default budget: bytes of source text kept (plus a fixed per-entry overhead).
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Per-entry overhead counted by the weigher: the compiled `Expr` tree and bookkeeping.
const ENTRY_OVERHEAD: u32 = 512;

/// Thread-safe compiled-expression cache (moka, TinyLFU admission, byte-weighted).
#[derive(Clone)]
pub struct ExprCache {
    inner: Cache<Arc<str>, Checked>,
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
            .weigher(|k: &Arc<str>, _v: &Checked| {
                u32::try_from(k.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .build();
        ExprCache { inner }
    }

    /// The checked expression for `src`, compiling it on a miss.
    pub fn get(&self, src: &str) -> Checked {
        if let Some(hit) = self.inner.get(src) {
            return hit;
        }
        let checked = check(src).map(Arc::new);
        self.inner.insert(Arc::from(src), checked.clone());
        checked
    }

    /// Number of cached entries (approximate while writes are pending).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}
