//! Polars duration strings (`"1mo2d"`, `"-3h"`, `"15m"`), checked before they reach Polars.
//! The grammar is polars-time 0.55's `Duration::parse` (non-interval form), byte for byte, but
//! with checked arithmetic: Polars accumulates in `i64` without overflow checks, so a long
//! number wraps (or, in `offset_by`, reaches a calendar year chrono cannot build and panics).
//! Never allocates in proportion to the input beyond an error message.

use super::limits::MAX_DURATION_NS;

/// Nanoseconds per unit, as Polars counts them when it parses.
const NS_MICROSECOND: i128 = 1_000;
const NS_MILLISECOND: i128 = 1_000_000;
const NS_SECOND: i128 = 1_000_000_000;
const NS_MINUTE: i128 = 60 * NS_SECOND;
const NS_HOUR: i128 = 60 * NS_MINUTE;

/// The longest each calendar unit can be, as Polars' not-to-exceed estimates count it
/// (`nte_duration_ns`): a day 25 hours (and 1 ns), a week 6 days and such a day, a month
/// 31 days and 1 hour. A duration whose units, each counted at its longest, fit in
/// [`MAX_DURATION_NS`] fits every conversion Polars makes (ns, us, ms; fixed or estimated).
const NTE_NS_DAY: i128 = 25 * NS_HOUR + 1;
const NTE_NS_WEEK: i128 = 6 * 24 * NS_HOUR + NTE_NS_DAY;
const NTE_NS_MONTH: i128 = (31 * 24 + 1) * NS_HOUR;

/// A parsed duration: the parts Polars keeps, as magnitudes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Parsed {
    pub(crate) months: i128,
    pub(crate) weeks: i128,
    pub(crate) days: i128,
    pub(crate) nsecs: i128,
    pub(crate) negative: bool,
}

impl Parsed {
    /// The duration in nanoseconds with every calendar unit at its longest.
    pub(crate) fn longest_ns(&self) -> i128 {
        // Each part is at most MAX_DURATION_NS (about 9.2e18, checked while parsing) and each
        // factor under 1e16, so the sum stays far below i128::MAX (1.7e38).
        self.months * NTE_NS_MONTH + self.weeks * NTE_NS_WEEK + self.days * NTE_NS_DAY + self.nsecs
    }
}

/// Why a duration string is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Polars would reject it too (the message is close to Polars' own).
    Grammar(String),
    /// It parses, but is longer than [`MAX_DURATION_NS`] with its units at their longest.
    TooLong,
}

/// Parses `s` exactly as Polars would and checks its magnitude.
pub(crate) fn check(s: &str) -> Result<Parsed, Refused> {
    let parsed = parse(s)?;
    if parsed.longest_ns() > i128::from(MAX_DURATION_NS) {
        return Err(Refused::TooLong);
    }
    Ok(parsed)
}

fn grammar(msg: String) -> Refused {
    Refused::Grammar(msg)
}

/// The character at byte `pos` (for messages; Polars prints the byte as a char).
fn char_at(s: &str, pos: usize) -> char {
    s.get(pos..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or('?')
}

fn sign_error(ch: u8, leading: (bool, bool)) -> Refused {
    let (minus, plus) = leading;
    let previously = if ch == b'-' { minus } else { plus };
    if previously {
        return grammar(format!(
            "duration string can only have a single '{}' sign",
            ch as char
        ));
    }
    let sign = if ch == b'-' { "minus" } else { "plus" };
    grammar(format!(
        "only a single {sign} sign is allowed, at the front of the string"
    ))
}

/// polars-time's `Duration::_parse(s, as_interval = false)`, with checked arithmetic.
fn parse(s: &str) -> Result<Parsed, Refused> {
    let b = s.as_bytes();
    let leading = (b.first() == Some(&b'-'), b.first() == Some(&b'+'));
    let mut pos = usize::from(leading.0 || leading.1);
    let mut out = Parsed {
        negative: leading.0,
        ..Parsed::default()
    };
    // Every accumulator stays at most this, so the sums below cannot overflow an i128.
    let cap = i128::from(MAX_DURATION_NS);
    let too_long = |v: i128| {
        if v > cap {
            Err(Refused::TooLong)
        } else {
            Ok(v)
        }
    };
    while pos < b.len() {
        let ch = b[pos];
        if !ch.is_ascii_digit() {
            if ch == b'-' || ch == b'+' {
                return Err(sign_error(ch, leading));
            }
            return Err(grammar(format!(
                "expected leading integer in the duration string, found '{}'",
                char_at(s, pos)
            )));
        }
        let mut n: i128 = 0;
        while pos < b.len() && b[pos].is_ascii_digit() {
            n = too_long(n * 10 + i128::from(b[pos] - b'0'))?;
            pos += 1;
        }
        if pos >= b.len() {
            return Err(grammar(format!(
                "expected a valid unit to follow integer in the duration string '{s}'"
            )));
        }
        let unit_start = pos;
        while pos < b.len() && b[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        if unit_start == pos {
            return Err(grammar(format!(
                "expected a valid unit to follow integer in the duration string '{s}'"
            )));
        }
        if pos < b.len() && (b[pos] == b'-' || b[pos] == b'+') {
            return Err(sign_error(b[pos], leading));
        }
        let (slot, per) = match &b[unit_start..pos] {
            b"ns" | b"i" => (&mut out.nsecs, 1),
            b"us" => (&mut out.nsecs, NS_MICROSECOND),
            b"ms" => (&mut out.nsecs, NS_MILLISECOND),
            b"s" => (&mut out.nsecs, NS_SECOND),
            b"m" => (&mut out.nsecs, NS_MINUTE),
            b"h" => (&mut out.nsecs, NS_HOUR),
            b"d" => (&mut out.days, 1),
            b"w" => (&mut out.weeks, 1),
            b"mo" => (&mut out.months, 1),
            b"q" => (&mut out.months, 3),
            b"y" => (&mut out.months, 12),
            unit => {
                return Err(grammar(format!(
                    "unit: '{}' not supported; available units are: 'y', 'mo', 'q', 'w', 'd', \
                     'h', 'm', 's', 'ms', 'us', 'ns'",
                    String::from_utf8_lossy(unit)
                )));
            }
        };
        *slot = too_long(*slot + too_long(n * per)?)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Parsed {
        check(s).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn grammar_error(s: &str) -> String {
        match check(s) {
            Err(Refused::Grammar(m)) => m,
            other => panic!("{s:?}: expected a grammar error, got {other:?}"),
        }
    }

    #[test]
    fn parses_like_polars() {
        assert_eq!(
            ok("1mo2d"),
            Parsed {
                months: 1,
                days: 2,
                ..Parsed::default()
            }
        );
        assert_eq!(
            ok("-2d3h"),
            Parsed {
                days: 2,
                nsecs: 3 * NS_HOUR,
                negative: true,
                ..Parsed::default()
            }
        );
        assert_eq!(
            ok("+1y1q1w90m15s100ms7us3ns2i"),
            Parsed {
                months: 15,
                weeks: 1,
                nsecs: 90 * NS_MINUTE + 15 * NS_SECOND + 100 * NS_MILLISECOND + 7_000 + 3 + 2,
                ..Parsed::default()
            }
        );
        // Polars accepts an empty string and a lone sign (a zero duration) and repeated units.
        assert_eq!(ok(""), Parsed::default());
        assert_eq!(
            ok("-"),
            Parsed {
                negative: true,
                ..Parsed::default()
            }
        );
        assert_eq!(ok("1d1d").days, 2);
        assert_eq!(ok("0d"), Parsed::default());
    }

    #[test]
    fn refuses_what_polars_refuses() {
        assert_eq!(
            grammar_error("1x"),
            "unit: 'x' not supported; available units are: 'y', 'mo', 'q', 'w', 'd', 'h', 'm', \
             's', 'ms', 'us', 'ns'"
        );
        assert_eq!(
            grammar_error("12"),
            "expected a valid unit to follow integer in the duration string '12'"
        );
        assert_eq!(
            grammar_error("1 d"),
            "expected a valid unit to follow integer in the duration string '1 d'"
        );
        assert_eq!(
            grammar_error("d"),
            "expected leading integer in the duration string, found 'd'"
        );
        assert_eq!(
            grammar_error("1dé"),
            "expected leading integer in the duration string, found 'é'"
        );
        assert_eq!(
            grammar_error("--1d"),
            "duration string can only have a single '-' sign"
        );
        assert_eq!(
            grammar_error("1d-2h"),
            "only a single minus sign is allowed, at the front of the string"
        );
        assert_eq!(
            grammar_error("+1d+2h"),
            "duration string can only have a single '+' sign"
        );
        assert_eq!(
            grammar_error("1D"),
            "unit: 'D' not supported; available units are: 'y', 'mo', 'q', 'w', 'd', 'h', 'm', \
             's', 'ms', 'us', 'ns'"
        );
    }

    /// The bound: units at their longest must fit i64 nanoseconds. The largest accepted count
    /// of each unit, and one more.
    #[test]
    fn magnitude_bounds() {
        let max = i128::from(MAX_DURATION_NS);
        for (unit, per) in [
            ("mo", NTE_NS_MONTH),
            ("w", NTE_NS_WEEK),
            ("d", NTE_NS_DAY),
            ("h", NS_HOUR),
            ("ns", 1),
        ] {
            let n = max / per;
            assert!(check(&format!("{n}{unit}")).is_ok(), "{n}{unit}");
            assert_eq!(
                check(&format!("{}{unit}", n + 1)),
                Err(Refused::TooLong),
                "{}{unit}",
                n + 1
            );
        }
        assert_eq!(max / NTE_NS_MONTH, 3_438);
        assert_eq!(max / NTE_NS_DAY, 102_481);
        assert!(check("286y").is_ok());
        assert!(check("-286y").is_ok());
        assert_eq!(check("287y"), Err(Refused::TooLong));
        assert!(check("100000d").is_ok());
        assert_eq!(check("1000000d"), Err(Refused::TooLong));
        // The review's attack, and numbers that would wrap Polars' i64 accumulators.
        assert_eq!(check("999999999y"), Err(Refused::TooLong));
        assert_eq!(check("9223372036854775807ns").map(|p| p.nsecs), Ok(max));
        assert_eq!(check("9223372036854775808ns"), Err(Refused::TooLong));
        assert_eq!(
            check(&format!("{}d", "9".repeat(10_000))),
            Err(Refused::TooLong)
        );
        // Parts add up: each alone fits, together they do not.
        assert!(check("2000mo").is_ok());
        assert!(check("50000d").is_ok());
        assert_eq!(check("2000mo50000d"), Err(Refused::TooLong));
        // A grammar error after a huge number is still reported as too long (first found).
        assert_eq!(check("99999999999999999999999x"), Err(Refused::TooLong));
    }
}
