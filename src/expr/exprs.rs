//! The Polars expressions one walk builds, held in one place and addressed by a small index.
//! A Polars `Expr` is 144 bytes; the walk's values ([`super::val::Val`]) carry an [`ExprId`]
//! instead, so returning a value, binding it to a parameter or storing it in a list moves a
//! few bytes. Each expression moves twice: in when a builder makes it, out when a builder or
//! operator consumes it (straight into the Polars node that wraps it).

use polars::prelude::Expr;

/// An expression in [`Exprs`]. Deliberately neither `Copy` nor `Clone`: an id is consumed by
/// [`Exprs::take`], so each expression is taken at most once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExprId(u32);

/// The expressions of one walk. Taken slots hold a placeholder until the walk ends.
#[derive(Debug)]
pub(crate) struct Exprs {
    items: Vec<Expr>,
    /// The product of the text-growth factors charged so far (`funcs/growth.rs`).
    growth: u64,
}

impl Default for Exprs {
    fn default() -> Exprs {
        Exprs::for_source(0)
    }
}

impl Exprs {
    /// Room for about as many expressions as a source of `len` bytes builds.
    pub(crate) fn for_source(len: usize) -> Exprs {
        Exprs {
            items: Vec::with_capacity(len / 8 + 4),
            growth: 1,
        }
    }

    /// Multiplies the walk's text-growth product by `factor` (saturating); returns it.
    pub(crate) fn charge_growth(&mut self, factor: u64) -> u64 {
        self.growth = self.growth.saturating_mul(factor.max(1));
        self.growth
    }

    /// Stores `e`; its id is the only way back to it.
    #[inline]
    pub(crate) fn put(&mut self, e: Expr) -> ExprId {
        // The walk's node limit keeps the count far below u32::MAX.
        let id = ExprId(u32::try_from(self.items.len()).unwrap_or(u32::MAX));
        self.items.push(e);
        id
    }

    /// Moves the expression out (its id is spent).
    #[inline]
    pub(crate) fn take(&mut self, id: ExprId) -> Expr {
        match self.items.get_mut(id.0 as usize) {
            Some(slot) => std::mem::replace(slot, Expr::Len),
            // Ids come only from `put` on this arena; this arm only keeps the function total.
            None => polars::prelude::lit(polars::prelude::NULL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::col;

    #[test]
    fn put_and_take_return_the_same_expressions() {
        let mut x = Exprs::for_source(0);
        let a = x.put(col("a"));
        let b = x.put(col("b") + col("c"));
        assert_eq!(x.take(b), col("b") + col("c"));
        assert_eq!(x.take(a), col("a"));
    }
}
