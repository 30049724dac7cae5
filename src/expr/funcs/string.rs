//! `Expr.str.*`: string methods. Patterns are Rust `regex` (linear time, no backtracking), so a
//! user pattern cannot hang a run. Where the engine's kernel differs from py-polars 2.x
//! (`$` in replacements, `zfill` on non-ASCII) the builder composes an equivalent expression.

use polars::lazy::dsl::string::StringNameSpace;
use polars::prelude::{DataType, Expr, NULL, StrptimeOptions, TimeUnit, lit, when};

use super::super::args::Call;
use super::super::error::{ErrorCode, ExprError, Result};
use super::super::registry::{Dflt, Kind, Spec, nullable, opt, req, spec};
use super::super::val::{Arg, Built, StrAs, Val, seq_literal};
use super::super::value::Const;
use super::common::{list_scalar, polars_error};
use super::growth;

fn s(c: &mut Call) -> StringNameSpace {
    c.recv().str()
}

fn unary(c: &mut Call, f: fn(StringNameSpace) -> Expr) -> Result<Built> {
    Ok(Built::Expr(f(s(c))))
}

/// `strip_chars`-style methods: `None` strips whitespace, a `str` is a set of characters.
fn strip(c: &mut Call, f: fn(StringNameSpace, Expr) -> Expr) -> Result<Built> {
    let chars = c.expr(0)?;
    Ok(Built::Expr(f(s(c), chars)))
}

/// One-argument methods whose argument is an expression (literal or column per its kind).
fn with_arg(c: &mut Call, f: fn(StringNameSpace, Expr) -> Expr) -> Result<Built> {
    let a = c.expr(0)?;
    Ok(Built::Expr(f(s(c), a)))
}

/// `Expr.str.*` entries.
pub(crate) static STR: &[Spec] = &[
    spec!("contains", [req("pattern", Kind::ExprLit), opt("literal", Kind::Bool, Dflt::Bool(false)),
        opt("strict", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
            let pat = c.expr(0)?;
            let (literal, strict) = (c.bool(1), c.bool(2));
            let ns = s(c);
            Ok(Built::Expr(if literal { ns.contains_literal(pat) } else { ns.contains(pat, strict) }))
        }, "regex match (Rust regex syntax) or `literal=True` substring"),
    spec!(
        "starts_with",
        [req("prefix", Kind::ExprLit)],
        |c| with_arg(c, |n, a| n.starts_with(a)),
        "prefix test"
    ),
    spec!(
        "ends_with",
        [req("suffix", Kind::ExprLit)],
        |c| with_arg(c, |n, a| n.ends_with(a)),
        "suffix test"
    ),
    spec!("find", [req("pattern", Kind::ExprLit), opt("literal", Kind::Bool, Dflt::Bool(false)),
        opt("strict", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
            let pat = c.expr(0)?;
            let (literal, strict) = (c.bool(1), c.bool(2));
            let ns = s(c);
            Ok(Built::Expr(if literal { ns.find_literal(pat) } else { ns.find(pat, strict) }))
        }, "byte offset of the first match (UInt32), null if none"),
    spec!("count_matches", [req("pattern", Kind::ExprLit), opt("literal", Kind::Bool, Dflt::Bool(false))],
        @pos 1, |c| {
            let pat = c.expr(0)?;
            let literal = c.bool(1);
            Ok(Built::Expr(s(c).count_matches(pat, literal)))
        }, "number of non-overlapping matches (UInt32)"),
    spec!("contains_any", [req("patterns", Kind::Collection),
        opt("ascii_case_insensitive", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| {
            let pats = if c.is_seq(0) { list_scalar(c.series(0)?) } else { c.expr(0)? };
            let ci = c.bool(1);
            Ok(Built::Expr(s(c).contains_any(pats, ci)))
        }, "any of several literal substrings (Aho-Corasick)"),
    spec!(
        "to_uppercase",
        [],
        |c| unary(c, |n| n.to_uppercase()),
        "Unicode upper case"
    ),
    spec!(
        "to_lowercase",
        [],
        |c| unary(c, |n| n.to_lowercase()),
        "Unicode lower case"
    ),
    spec!(
        "to_titlecase",
        [],
        |c| Ok(Built::Expr(super::titlecase::titlecase(c.recv()))),
        "upper-case the first letter of each word, lower-case the rest"
    ),
    spec!(
        "strip_chars",
        [opt("characters", Kind::ExprLit, Dflt::None)],
        |c| strip(c, |n, a| n.strip_chars(a)),
        "strip whitespace, or any of the given characters, both ends"
    ),
    spec!(
        "strip_chars_start",
        [opt("characters", Kind::ExprLit, Dflt::None)],
        |c| strip(c, |n, a| n.strip_chars_start(a)),
        "strip at the start"
    ),
    spec!(
        "strip_chars_end",
        [opt("characters", Kind::ExprLit, Dflt::None)],
        |c| strip(c, |n, a| n.strip_chars_end(a)),
        "strip at the end"
    ),
    spec!(
        "strip_prefix",
        [req("prefix", Kind::ExprLit)],
        |c| with_arg(c, |n, a| n.strip_prefix(a)),
        "remove a prefix once"
    ),
    spec!(
        "strip_suffix",
        [req("suffix", Kind::ExprLit)],
        |c| with_arg(c, |n, a| n.strip_suffix(a)),
        "remove a suffix once"
    ),
    spec!(
        "len_chars",
        [],
        |c| unary(c, |n| n.len_chars()),
        "length in characters (UInt32)"
    ),
    spec!(
        "len_bytes",
        [],
        |c| unary(c, |n| n.len_bytes()),
        "length in UTF-8 bytes (UInt32)"
    ),
    spec!(
        "slice",
        [
            req("offset", Kind::Expr),
            opt("length", Kind::Expr, Dflt::None)
        ],
        |c| {
            let off = c.expr(0)?;
            let len = c.expr(1)?;
            Ok(Built::Expr(s(c).slice(off, len)))
        },
        "characters from offset (negative counts from the end)"
    ),
    spec!(
        "head",
        [req("n", Kind::Expr)],
        |c| with_arg(c, |ns, n| ns.head(n)),
        "first n characters (negative: all but the last n)"
    ),
    spec!(
        "tail",
        [req("n", Kind::Expr)],
        |c| with_arg(c, |ns, n| ns.tail(n)),
        "last n characters (negative: all but the first n)"
    ),
    spec!(
        "reverse",
        [],
        |c| unary(c, |n| n.reverse()),
        "reverse by grapheme"
    ),
    spec!(
        "escape_regex",
        [],
        |c| unary(c, |n| n.escape_regex()),
        "escape regex metacharacters"
    ),
    spec!("replace", [req("pattern", Kind::ExprLit), req("value", Kind::ExprLit),
        opt("literal", Kind::Bool, Dflt::Bool(false)), opt("n", Kind::Int, Dflt::Int(1))], @pos 2,
        |c| replace(c, false), "replace the first n matches; `$1` refers to groups unless `literal=True`"),
    spec!("replace_all", [req("pattern", Kind::ExprLit), req("value", Kind::ExprLit),
        opt("literal", Kind::Bool, Dflt::Bool(false))], @pos 2, |c| replace(c, true),
        "replace every match"),
    spec!("split_exact", [req("by", Kind::ExprLit), req("n", Kind::Int),
        opt("inclusive", Kind::Bool, Dflt::Bool(false))], @pos 2, split_exact,
        "a struct of n + 1 fields `field_0`, `field_1`, ... (null where a part is missing); read them with `.struct.field`"),
    spec!(
        "splitn",
        [req("by", Kind::ExprLit), req("n", Kind::Int)],
        splitn,
        "a struct of at most n fields; the last keeps the rest of the string"
    ),
    spec!(
        "extract_groups",
        [req("pattern", Kind::Str)],
        extract_groups,
        "a struct of the pattern's capture groups: named groups by name, others `\"1\"`, `\"2\"`, ..."
    ),
    spec!("replace_many", [req("patterns", Kind::Collection), opt("replace_with", Kind::Collection, Dflt::None),
        opt("ascii_case_insensitive", Kind::Bool, Dflt::Bool(false)),
        opt("leftmost", Kind::Bool, Dflt::Bool(false))], @pos 2, replace_many,
        "replace literal substrings (Aho-Corasick); `patterns` a list, or a dict of pattern to replacement; a `str` pattern is a column name"),
    spec!(
        "zfill",
        [req("length", Kind::Expr)],
        zfill,
        "pad with zeros after the sign, counting characters like py-polars 2"
    ),
    spec!(
        "pad_start",
        [
            req("length", Kind::Expr),
            opt("fill_char", Kind::Str, Dflt::Str(" "))
        ],
        |c| pad(c, true),
        "pad on the left to a length in characters"
    ),
    spec!(
        "pad_end",
        [
            req("length", Kind::Expr),
            opt("fill_char", Kind::Str, Dflt::Str(" "))
        ],
        |c| pad(c, false),
        "pad on the right to a length in characters"
    ),
    spec!("split", [req("by", Kind::ExprLit), opt("inclusive", Kind::Bool, Dflt::Bool(false)),
        opt("literal", Kind::Bool, Dflt::Bool(true)), opt("strict", Kind::Bool, Dflt::Bool(true))],
        @pos 1, split, "split into a list; `literal=False` splits on a regex"),
    spec!(
        "extract",
        [
            req("pattern", Kind::ExprLit),
            opt("group_index", Kind::Int, Dflt::Int(1))
        ],
        |c| {
            let pat = c.expr(0)?;
            let group = c.count::<usize>(1)?;
            Ok(Built::Expr(s(c).extract(pat, group)))
        },
        "a capture group of the first match, null if none"
    ),
    spec!(
        "extract_all",
        [req("pattern", Kind::ExprLit)],
        |c| with_arg(c, |n, a| n.extract_all(a)),
        "every match as a list"
    ),
    spec!("to_integer", [opt("base", Kind::Expr, Dflt::Int(10)), opt("dtype", Kind::DType, Dflt::None),
        opt("strict", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
            let base = c.expr(0)?;
            let dtype = (!c.is_none(1)).then(|| c.dtype(1));
            let strict = c.bool(2);
            Ok(Built::Expr(s(c).to_integer(base, dtype, strict)))
        }, "parse integers in a base (Int64 unless `dtype`)"),
    spec!("join", [opt("delimiter", Kind::Str, Dflt::Str("")), opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))],
        @pos 1, |c| {
            let d = c.str(0).to_owned();
            let ig = c.bool(1);
            Ok(Built::Expr(s(c).join(&d, ig)))
        }, "concatenate all values into one string"),
    spec!("to_date", [opt("format", Kind::Str, Dflt::None), opt("strict", Kind::Bool, Dflt::Bool(true)),
        opt("exact", Kind::Bool, Dflt::Bool(true)), opt("cache", Kind::Bool, Dflt::Bool(true))], @pos 1,
        |c| {
            let o = options(c, 0, 1, 2, 3);
            Ok(Built::Expr(s(c).to_date(o)))
        }, "parse dates (chrono format; inferred when omitted)"),
    spec!("to_datetime", [opt("format", Kind::Str, Dflt::None),
        nullable("time_unit", Kind::Choice(super::common::TIME_UNITS), Dflt::None),
        opt("time_zone", Kind::Str, Dflt::None), opt("strict", Kind::Bool, Dflt::Bool(true)),
        opt("exact", Kind::Bool, Dflt::Bool(true)), opt("cache", Kind::Bool, Dflt::Bool(true)),
        opt("ambiguous", Kind::ExprLit, Dflt::Str("raise"))], @pos 1, to_datetime,
        "parse datetimes (chrono format; inferred when omitted)"),
    spec!("to_time", [opt("format", Kind::Str, Dflt::None), opt("strict", Kind::Bool, Dflt::Bool(true)),
        opt("cache", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
            let mut o = options(c, 0, 1, usize::MAX, 2);
            o.exact = true;
            Ok(Built::Expr(s(c).to_time(o)))
        }, "parse times of day"),
    spec!("strptime", [req("dtype", Kind::DType), opt("format", Kind::Str, Dflt::None),
        opt("strict", Kind::Bool, Dflt::Bool(true)), opt("exact", Kind::Bool, Dflt::Bool(true)),
        opt("cache", Kind::Bool, Dflt::Bool(true)), opt("ambiguous", Kind::ExprLit, Dflt::Str("raise"))],
        @pos 2, strptime, "parse into `pl.Date`, `pl.Datetime(...)` or `pl.Time`"),
];

fn options(c: &Call, format: usize, strict: usize, exact: usize, cache: usize) -> StrptimeOptions {
    StrptimeOptions {
        format: c.opt_str(format).map(Into::into),
        strict: c.bool(strict),
        exact: exact == usize::MAX || c.bool(exact),
        cache: c.bool(cache),
    }
}

/// Whether the engine would treat `pat` as a plain substring (no ASCII punctuation at all).
fn plain_pattern(pat: &str) -> bool {
    !pat.chars().any(|ch| ch.is_ascii_punctuation())
}

fn replace(c: &mut Call, all: bool) -> Result<Built> {
    let literal = c.bool(2);
    let n = if all { -1 } else { c.int(3) };
    // py-polars 2 expands `$` groups in the value even when the pattern has no metacharacters;
    // the 0.55 kernel takes a plain-substring path there. `(?:pat)` forces the regex path with
    // the same matches.
    let wraps = !literal
        && c.opt_str(1).is_some_and(|v| v.contains('$'))
        && c.opt_str(0).is_some_and(plain_pattern);
    let pat = if wraps {
        if n > 1 {
            return Err(c.bad(
                3,
                "a regex replacement with '$' groups and n > 1 is not supported; use replace_all",
            ));
        }
        lit(format!("(?:{})", c.str(0)))
    } else {
        c.expr(0)?
    };
    let value = c.expr(1)?;
    growth::replace(c, &pat, &value, literal, growth::Count::from_n(n))?;
    Ok(Built::Expr(s(c).replace_n(pat, value, literal, n)))
}

/// `str.replace_many(patterns, replace_with)` or `str.replace_many({pattern: replacement})`,
/// as py-polars parses them: lists become list scalars, a `str` pattern is a column name and a
/// `str` replacement a literal; an empty mapping changes nothing.
fn replace_many(c: &mut Call) -> Result<Built> {
    let (case, leftmost) = (c.bool(2), c.bool(3));
    let (patterns, with) = match std::mem::replace(&mut c.args[0].val, Val::Const(Const::None)) {
        Val::Dict(pairs) => {
            if c.given(1) {
                return Err(c.bad(1, "'replace_with' cannot be given with a mapping"));
            }
            if pairs.is_empty() {
                return Ok(Built::Expr(c.recv()));
            }
            let span = c.span(0);
            let (keys, values): (Vec<Arg>, Vec<Arg>) = pairs.into_iter().unzip();
            let side = |items| {
                seq_literal(&Arg {
                    val: Val::Seq(items),
                    span,
                })
                .map(list_scalar)
            };
            (side(keys)?, side(values)?)
        }
        patterns => {
            if !c.given(1) {
                return Err(c.bad(
                    1,
                    "'replace_with' is required unless 'patterns' is a mapping",
                ));
            }
            let with = std::mem::replace(&mut c.args[1].val, Val::Const(Const::None));
            let patterns = many_side(
                c,
                Arg {
                    val: patterns,
                    span: c.span(0),
                },
                StrAs::Column,
            )?;
            (
                patterns,
                many_side(
                    c,
                    Arg {
                        val: with,
                        span: c.span(1),
                    },
                    StrAs::Literal,
                )?,
            )
        }
    };
    growth::replace_many(c, &patterns, &with)?;
    Ok(Built::Expr(
        s(c).replace_many(patterns, with, case, leftmost),
    ))
}

/// `str.split_exact(by, n)`: `n` is bounded like a width, so a struct cannot be made huge.
fn split_exact(c: &mut Call) -> Result<Built> {
    let n = c.width(1)?;
    let inclusive = c.bool(2);
    let by = c.expr(0)?;
    let s = s(c);
    Ok(Built::Expr(if inclusive {
        s.split_exact_inclusive(by, n)
    } else {
        s.split_exact(by, n)
    }))
}

fn splitn(c: &mut Call) -> Result<Built> {
    let n = c.width(1)?;
    let by = c.expr(0)?;
    Ok(Built::Expr(s(c).splitn(by, n)))
}

fn extract_groups(c: &mut Call) -> Result<Built> {
    let pattern = c.str(0).to_owned();
    let span = c.span(0);
    s(c).extract_groups(&pattern)
        .map(Built::Expr)
        .map_err(|e| polars_error(e, span))
}

/// One side of `replace_many`: a list literal is a list scalar, anything else an expression.
fn many_side(c: &mut Call, arg: Arg, str_as: StrAs) -> Result<Expr> {
    if matches!(arg.val, Val::Seq(_)) {
        return seq_literal(&arg).map(list_scalar);
    }
    c.expr_of(arg, str_as)
}

fn fill_char(c: &Call, i: usize) -> Result<char> {
    let mut chars = c.str(i).chars();
    match (chars.next(), chars.next()) {
        (Some(ch), None) => Ok(ch),
        _ => Err(c.bad(i, "'fill_char' must be a single character")),
    }
}

/// A literal width, bounded; an expression width is the engine's business (cast to UInt64).
fn width(c: &mut Call, i: usize) -> Result<Expr> {
    if let Val::Const(super::super::value::Const::Int(_)) = c.args[i].val {
        let w = c.width(i)?;
        return Ok(lit(w as i64));
    }
    c.expr(i)
}

fn pad(c: &mut Call, start: bool) -> Result<Built> {
    let ch = fill_char(c, 1)?;
    let len = width(c, 0)?;
    let ns = s(c);
    Ok(Built::Expr(if start {
        ns.pad_start(len, ch)
    } else {
        ns.pad_end(len, ch)
    }))
}

/// `zfill` as py-polars 2 computes it: lengths in characters, zeros after a leading `+`/`-`.
fn zfill(c: &mut Call) -> Result<Built> {
    let len = width(c, 0)?;
    let x = c.recv();
    let signed = x
        .clone()
        .str()
        .starts_with(lit("-"))
        .or(x.clone().str().starts_with(lit("+")));
    let body = x.clone().str().slice(lit(1_i64), lit(NULL));
    let sign = x.clone().str().head(lit(1_i64));
    let padded_signed = polars::prelude::concat_str(
        [sign, body.str().pad_start(len.clone() - lit(1_i64), '0')],
        "",
        false,
    );
    let expr = when(x.clone().str().len_chars().gt_eq(len.clone()))
        .then(x.clone())
        .when(signed)
        .then(padded_signed)
        .otherwise(x.str().pad_start(len, '0'));
    Ok(Built::Expr(expr))
}

fn split(c: &mut Call) -> Result<Built> {
    let by = c.expr(0)?;
    let (inclusive, literal, strict) = (c.bool(1), c.bool(2), c.bool(3));
    let ns = s(c);
    Ok(Built::Expr(match (literal, inclusive) {
        (true, false) => ns.split(by),
        (true, true) => ns.split_inclusive(by),
        (false, false) => ns.split_regex(by, strict),
        (false, true) => ns.split_regex_inclusive(by, strict),
    }))
}

fn to_datetime(c: &mut Call) -> Result<Built> {
    let unit = c.opt_str(1).map(super::common::time_unit);
    let tz = match c.opt_str(2) {
        Some(tz) => polars::prelude::TimeZone::opt_try_new(Some(tz))
            .map_err(|e| super::common::polars_error(e, c.span(2)))?,
        None => None,
    };
    let o = options(c, 0, 3, 4, 5);
    let ambiguous = c.expr(6)?;
    Ok(Built::Expr(s(c).to_datetime(unit, tz, o, ambiguous)))
}

fn strptime(c: &mut Call) -> Result<Built> {
    let dtype = c.dtype(0);
    let o = options(c, 1, 2, 3, 4);
    let ambiguous = c.expr(5)?;
    let ns = s(c);
    match dtype {
        DataType::Date => Ok(Built::Expr(ns.to_date(o))),
        DataType::Time => Ok(Built::Expr(ns.to_time(o))),
        DataType::Datetime(unit, tz) => {
            // A bare `pl.Datetime` lets the format pick the unit; we cannot tell the class from a
            // default instance here, so microseconds it is unless the format says otherwise.
            let unit = infer_unit(o.format.as_deref()).unwrap_or(unit);
            Ok(Built::Expr(ns.to_datetime(Some(unit), tz, o, ambiguous)))
        }
        other => Err(ExprError::new(
            ErrorCode::BadArguments,
            format!("Expr.str.strptime(): dtype must be Date, Datetime or Time, got {other}"),
            c.span(0),
        )),
    }
}

/// The unit py-polars infers from a format's fractional-second directive.
fn infer_unit(format: Option<&str>) -> Option<TimeUnit> {
    let f = format?;
    if f.contains("%.9f") || f.contains("%9f") {
        Some(TimeUnit::Nanoseconds)
    } else if f.contains("%.3f") || f.contains("%3f") {
        Some(TimeUnit::Milliseconds)
    } else {
        None
    }
}
