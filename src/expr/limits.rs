//! Bounds on expression sources, checked before or while walking: nothing here allocates
//! in proportion to an attacker's numbers.

/// Longest accepted source text in bytes. Real Formula expressions are well under 2 KiB.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// Deepest accepted AST nesting. The checker recurses at most this deep.
pub const MAX_DEPTH: usize = 100;

/// Deepest bracket nesting, as in CPython's tokenizer.
pub const MAX_BRACKET_DEPTH: usize = 200;

/// Most AST nodes in one expression (bounds list literals and long operator chains).
pub const MAX_NODES: usize = 20_000;

/// Longest string constant, also after folding `"ab" * n` or `"a" + "b"`.
pub const MAX_STR_BYTES: usize = 64 * 1024;

/// Widest padding or fill width (`str.zfill`, `str.pad_start`, ...): bounds the output per row.
pub const MAX_WIDTH: i64 = 10_000;

/// Sources longer than this are dismantled iteratively after parsing, because a deep tree's
/// recursive `Drop` could exhaust a small (e.g. 2 MiB tokio worker) stack.
pub(crate) const DEEP_TREE_SOURCE_BYTES: usize = 1024;
