//! `str.to_titlecase` as py-polars 2 computes it. The engine's own kernel needs the `nightly`
//! feature (and a nightly toolchain), so this is a native Rust column function instead: lower
//! the whole string, then title-case each character that follows a non-alphabetic one, using
//! Unicode's title-case mapping where it differs from upper case (ß -> Ss, ǆ -> ǅ, ﬁ -> Fi).

use std::borrow::Cow;

use polars::prelude::{ChunkApply, Column, DataType, Expr, Field, IntoColumn, Schema};

/// Appends the title-case form of `c` (only differs from upper case for a few characters).
fn push_title(c: char, out: &mut String) {
    let special: Option<&str> = match c {
        'ß' => Some("Ss"),
        'ǆ' => Some("ǅ"),
        'ǉ' => Some("ǈ"),
        'ǌ' => Some("ǋ"),
        'ǳ' => Some("ǲ"),
        'ŉ' => Some("ʼN"),
        'ﬀ' => Some("Ff"),
        'ﬁ' => Some("Fi"),
        'ﬂ' => Some("Fl"),
        'ﬃ' => Some("Ffi"),
        'ﬄ' => Some("Ffl"),
        'ﬅ' | 'ﬆ' => Some("St"),
        'և' => Some("Եւ"),
        'ﬓ' => Some("Մն"),
        'ﬔ' => Some("Մե"),
        'ﬕ' => Some("Մի"),
        'ﬖ' => Some("Վն"),
        'ﬗ' => Some("Մխ"),
        'ᾳ' => Some("ᾼ"),
        'ῃ' => Some("ῌ"),
        'ῳ' => Some("ῼ"),
        _ => None,
    };
    if let Some(s) = special {
        out.push_str(s);
        return;
    }
    // Greek letters with ypogegrammeni: U+1F80..=U+1FAF, title case is +8 within each block of 16.
    let cp = u32::from(c);
    if (0x1F80..=0x1FAF).contains(&cp)
        && (cp & 0xF) < 8
        && let Some(t) = char::from_u32(cp + 8)
    {
        out.push(t);
        return;
    }
    out.extend(c.to_uppercase());
}

/// Title-cases one string.
pub(crate) fn titlecase_str(s: &str) -> String {
    let lower = s.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    let mut next_is_upper = true;
    for c in lower.chars() {
        if next_is_upper {
            push_title(c, &mut out);
        } else {
            out.push(c);
        }
        next_is_upper = !c.is_alphabetic();
    }
    out
}

/// `expr.str.to_titlecase()`.
pub(crate) fn titlecase(e: Expr) -> Expr {
    e.map(
        |c: Column| {
            let ca = c.str()?;
            let out = ca.apply_values(|s| Cow::Owned(titlecase_str(s)));
            Ok(out.into_column())
        },
        |_: &Schema, f: &Field| Ok(Field::new(f.name().clone(), DataType::String)),
    )
}

#[cfg(test)]
mod tests {
    use super::titlecase_str;

    #[test]
    fn matches_py_polars_2() {
        assert_eq!(titlecase_str("1abc d'ef x-y HELLO"), "1Abc D'Ef X-Y Hello");
        assert_eq!(titlecase_str("a.b.c"), "A.B.C");
        assert_eq!(titlecase_str("ümlaut ß"), "Ümlaut Ss");
        assert_eq!(titlecase_str("ßa ǆx"), "Ssa ǅx");
        assert_eq!(titlecase_str(""), "");
    }
}
