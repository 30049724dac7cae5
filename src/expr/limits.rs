//! Bounds on expression sources, checked before or while walking: nothing here allocates
//! in proportion to an attacker's numbers.

/// Longest accepted source text in bytes. Real Formula expressions are well under 2 KiB.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// Deepest accepted AST nesting. The checker recurses at most this deep.
pub const MAX_DEPTH: usize = 100;

/// Deepest bracket nesting, as in CPython's tokenizer.
pub(crate) const MAX_BRACKET_DEPTH: usize = 200;

/// Most AST nodes in one expression (bounds list literals and long operator chains).
pub const MAX_NODES: usize = 20_000;

/// Longest string constant, also after folding `"ab" * n` or `"a" + "b"`.
pub(crate) const MAX_STR_BYTES: usize = 64 * 1024;

/// Widest padding or fill width (`str.zfill`, `str.pad_start`, ...): bounds the output per row.
pub(crate) const MAX_WIDTH: i64 = 10_000;

/// Longest duration string (`dt.offset_by`, `dt.truncate`, `dt.round`), in nanoseconds with
/// every calendar unit at its longest (a month 31 days and 1 hour, a week 6 days and 25 hours,
/// a day 25 hours): about 292 years, or 3,438 months, or 102,481 days. Polars converts
/// durations to i64 nanoseconds (also for µs and ms columns) without overflow checks; a
/// longer one would wrap, and `offset_by` could reach a year chrono cannot build.
pub(crate) const MAX_DURATION_NS: i64 = i64::MAX;

/// Largest worst-case growth factor of one expression's `str.replace`, `str.replace_all`
/// and `str.replace_many` calls together (the product of each call's factor): how many times
/// longer, in bytes, a row's text can become. See `funcs/growth.rs` for how a call's factor
/// is counted.
pub(crate) const MAX_REPLACE_GROWTH: u64 = 64;

/// Sources longer than this are dismantled iteratively after parsing, because a deep tree's
/// recursive `Drop` could exhaust a small (e.g. 2 MiB tokio worker) stack.
pub(crate) const DEEP_TREE_SOURCE_BYTES: usize = 1024;
