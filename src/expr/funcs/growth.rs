//! How much longer the text-rewriting calls (`str.replace`, `str.replace_all`,
//! `str.replace_many`) can make a row, counted from their constant arguments before anything
//! runs, and the bound on it ([`MAX_REPLACE_GROWTH`]). Padding and literals add at most a
//! fixed number of bytes to a row; a replacement repeated at every match multiplies it
//! (`replace_all("", "x" * 65536)` makes each character 65,537 bytes), and chained calls
//! multiply again. Never looks at data.
//!
//! A call's factor `g` bounds `output ≤ g · input + c` per row, in bytes, where `input` is
//! the longest text the call reads in that row and `c` at most [`MAX_STR_BYTES`]:
//! - a match count `n` with `n · |value| ≤ MAX_STR_BYTES` (`replace`'s default `n=1`) only
//!   adds bytes: `g = max(1, k)`, where `k` is the number of `$` in a regex replacement (each
//!   group reference repeats at most the match);
//! - otherwise, with matches of at least `m ≥ 1` bytes: `g = max(1, k + ⌈|value| / m⌉)`;
//! - with a pattern that can match the empty string (or one not known before the run):
//!   a match at every character, `g = max(1, k) + |value|`.
//!
//! A replacement taken from a column is data, not a constant: once per row (`n=1`,
//! `literal=True`) it adds at most its own length (`g = 2`); repeated at every match, or with
//! `$` groups it may hold, it would multiply two rows' lengths, so it is refused.

use polars::prelude::{AnyValue, Expr, LiteralValue};

use super::super::args::Call;
use super::super::error::{ErrorCode, ExprError, Result};
use super::super::limits::{MAX_REPLACE_GROWTH, MAX_STR_BYTES};
use super::common::literal_str;

/// How many matches a call replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// At most this many (`str.replace(..., n=k)`).
    Upto(u64),
    /// Every match.
    All,
}

impl Count {
    /// Polars' reading of `n`: negative means every match.
    pub(crate) fn from_n(n: i64) -> Count {
        u64::try_from(n).map_or(Count::All, Count::Upto)
    }
}

/// What the matches are replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    /// A constant text.
    Text(&'a str),
    /// A constant of another kind (null, a number): at most this many bytes of text.
    Other(usize),
    /// An expression over the data.
    Data,
}

fn value_of(e: &Expr) -> Value<'_> {
    if let Some(s) = literal_str(e) {
        return Value::Text(s);
    }
    match e {
        Expr::Literal(lv) if lv.is_null() => Value::Other(0),
        // Polars wants text here and fails on other kinds; counted as their printed form.
        Expr::Literal(lv) => Value::Other(format!("{lv:?}").len()),
        _ => Value::Data,
    }
}

/// Shortest match of a pattern, in bytes: its length when it is a literal (or has no regex
/// metacharacters, which the engine treats alike), else the regex's minimum (0 when the
/// pattern can match the empty string, or when it is not known before the run).
fn shortest_match(pattern: Option<&str>, literal: bool) -> usize {
    match pattern {
        None => 0,
        Some(p) if literal || !p.chars().any(|ch| ch.is_ascii_punctuation()) => p.len(),
        // A regex that cannot parse fails in Polars; a regex that can never match cannot
        // grow anything (counted as matches longer than any row).
        Some(p) => regex_syntax::Parser::new().parse(p).map_or(0, |hir| {
            hir.properties().minimum_len().unwrap_or(usize::MAX)
        }),
    }
}

/// The factor of one replacement: matches of at least `min_match` bytes each become
/// `value_len` bytes plus `refs` copies of the match, `count` times.
pub(crate) fn factor(min_match: usize, value_len: usize, refs: usize, count: Count) -> u64 {
    let (v, k) = (value_len as u64, refs as u64);
    if let Count::Upto(n) = count
        && n.saturating_mul(v) <= MAX_STR_BYTES as u64
    {
        return k.max(1);
    }
    match min_match {
        0 => k.max(1).saturating_add(v),
        m => k.saturating_add(v.div_ceil(m as u64)).max(1),
    }
}

/// Charges a call's factor to the expression's budget, or refuses it with `why`.
fn charge(c: &mut Call, g: u64, why: &dyn Fn() -> String) -> Result<()> {
    let total = c.charge_growth(g);
    if total <= MAX_REPLACE_GROWTH {
        return Ok(());
    }
    let name = format!("{}{}()", c.table.prefix(), c.spec.name);
    let msg = if g > MAX_REPLACE_GROWTH {
        format!(
            "{name}: {}: a row's text could grow {g} times longer; the limit is \
             {MAX_REPLACE_GROWTH} times per expression",
            why()
        )
    } else {
        format!(
            "{name}: with this expression's other replacements, a row's text could grow \
             {total} times longer; the limit is {MAX_REPLACE_GROWTH} times per expression \
             (str.replace_many does several replacements in one pass)"
        )
    };
    Err(ExprError::new(ErrorCode::LimitExceeded, msg, c.span))
}

fn data_refused(c: &Call, why: &str) -> ExprError {
    ExprError::new(
        ErrorCode::LimitExceeded,
        format!(
            "{}{}(): the replacement is not a constant, so {why}; a row's text could grow by \
             the product of two rows' lengths",
            c.table.prefix(),
            c.spec.name
        ),
        c.span,
    )
}

/// `str.replace` / `str.replace_all` with their built pattern and value.
pub(crate) fn replace(
    c: &mut Call,
    pattern: &Expr,
    value: &Expr,
    literal: bool,
    count: Count,
) -> Result<()> {
    let text = match value_of(value) {
        Value::Data => {
            return match count {
                Count::Upto(0) => Ok(()),
                Count::Upto(1) if literal => charge(c, 2, &String::new),
                Count::Upto(1) => Err(data_refused(
                    c,
                    "its `$` groups could each repeat the match (pass literal=True)",
                )),
                _ => Err(data_refused(c, "it could be repeated at every match")),
            };
        }
        Value::Other(len) => (len, 0),
        // `$` refers to a group only on the regex path; counting every `$` over-counts `$$`.
        Value::Text(s) => (s.len(), if literal { 0 } else { s.matches('$').count() }),
    };
    let (v, k) = text;
    let m = shortest_match(literal_str(pattern), literal);
    let g = factor(m, v, k, count);
    charge(c, g, &|| describe(m, v, k))
}

fn describe(m: usize, v: usize, k: usize) -> String {
    let groups = if k > 0 {
        format!(" and {k} `$` group reference(s) each repeating the match")
    } else {
        String::new()
    };
    match m {
        0 => format!(
            "the pattern can match the empty string (or is not a constant), so it matches at \
             every character, and each match becomes {v} bytes{groups}"
        ),
        1 => format!("each match of at least 1 byte becomes {v} bytes{groups}"),
        m => format!("each match of at least {m} bytes becomes {v} bytes{groups}"),
    }
}

/// The texts of a constant list (or one constant text); `None` for data.
fn texts(e: &Expr) -> Option<Vec<Option<&str>>> {
    if let Some(s) = literal_str(e) {
        return Some(vec![Some(s)]);
    }
    let Expr::Literal(LiteralValue::Scalar(sc)) = e else {
        return None;
    };
    match sc.value() {
        AnyValue::Null => Some(vec![None]),
        AnyValue::List(series) => match series.str() {
            Ok(ca) => Some(ca.iter().collect()),
            // Not text (Polars fails on it): counts as matching nothing and adding nothing.
            Err(_) => Some(Vec::new()),
        },
        _ => None,
    }
}

/// `str.replace_many(patterns, replace_with)`: literal patterns (Aho-Corasick), no groups.
pub(crate) fn replace_many(c: &mut Call, patterns: &Expr, with: &Expr) -> Result<()> {
    let Some(values) = texts(with) else {
        return Err(data_refused(c, "it could be repeated at every match"));
    };
    let v = values.iter().flatten().map(|s| s.len()).max().unwrap_or(0);
    // The shortest pattern; one from data may be empty.
    let m = match texts(patterns) {
        Some(ps) => ps
            .iter()
            .flatten()
            .map(|s| s.len())
            .min()
            .unwrap_or(usize::MAX),
        None => 0,
    };
    let g = factor(m, v, 0, Count::All);
    charge(c, g, &|| describe(m, v, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors() {
        // Shrinking or same-length rewrites do not grow.
        assert_eq!(factor(1, 0, 0, Count::All), 1);
        assert_eq!(factor(1, 1, 0, Count::All), 1);
        assert_eq!(factor(3, 2, 0, Count::All), 1);
        // Longer replacements grow by value / match, rounded up.
        assert_eq!(factor(1, 2, 0, Count::All), 2);
        assert_eq!(factor(1, 5, 0, Count::All), 5);
        assert_eq!(factor(2, 5, 0, Count::All), 3);
        // An empty match at every character: one more than the value.
        assert_eq!(factor(0, 1, 0, Count::All), 2);
        assert_eq!(factor(0, 65_536, 0, Count::All), 65_537);
        assert_eq!(factor(0, 0, 0, Count::All), 1);
        // Group references each repeat a match.
        assert_eq!(factor(1, 8, 2, Count::All), 10);
        assert_eq!(factor(0, 4, 3, Count::All), 7);
        // A bounded count only adds bytes, up to MAX_STR_BYTES per call.
        assert_eq!(factor(0, 65_536, 0, Count::Upto(1)), 1);
        assert_eq!(factor(0, 4, 3, Count::Upto(1)), 3);
        assert_eq!(factor(0, 1_000, 0, Count::Upto(65)), 1);
        assert_eq!(factor(0, 1_000, 0, Count::Upto(66)), 1_001);
        assert_eq!(factor(1, 1_000, 0, Count::Upto(u64::MAX)), 1_000);
        assert_eq!(factor(0, usize::MAX, usize::MAX, Count::All), u64::MAX);
    }

    #[test]
    fn counts_and_shortest_matches() {
        assert_eq!(Count::from_n(-1), Count::All);
        assert_eq!(Count::from_n(0), Count::Upto(0));
        assert_eq!(Count::from_n(3), Count::Upto(3));
        assert_eq!(shortest_match(None, false), 0);
        assert_eq!(shortest_match(Some(""), true), 0);
        assert_eq!(shortest_match(Some("abc"), false), 3);
        assert_eq!(shortest_match(Some("a.c"), true), 3);
        assert_eq!(shortest_match(Some("é"), false), 2);
        assert_eq!(shortest_match(Some(r"\d+"), false), 1);
        assert_eq!(shortest_match(Some(r"(\w+)-(\d{4})"), false), 6);
        assert_eq!(shortest_match(Some("a*"), false), 0);
        assert_eq!(shortest_match(Some(r"\b"), false), 0);
        assert_eq!(shortest_match(Some("^"), false), 0);
        assert_eq!(shortest_match(Some("(?:x)?"), false), 0);
        // Not a regex (Polars will fail on it): assumed to match anywhere.
        assert_eq!(shortest_match(Some("(("), false), 0);
        // Matches nothing at all.
        assert_eq!(shortest_match(Some("[^\\s\\S]"), false), usize::MAX);
    }
}
