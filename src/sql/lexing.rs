//! Owns the places where a server lexes SQL text differently from sqlparser: it refuses what
//! cannot be made to agree and rewrites the one construct the guard can lex exactly as the
//! server does (PostgreSQL `U&"..."` identifiers). Must never judge what a query does; that is
//! the walk's job, on the tokens this module hands back.
//!
//! What reaches the server is the guard's own rendering of the parsed statement (see
//! [`super::guard`]), so comments, layout and the original spelling of keywords never reach it;
//! what remains here are the characters and tokens whose *boundaries* the two lexers draw
//! differently, because those decide what the parsed statement is in the first place.

use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};

use super::Dialect;
use super::error::{ErrorCode, SqlError};

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer ones are silently truncated
/// by the server, so the name the guard judges would not be the name that runs.
const PG_MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks the token stream of `sql` and returns it, with PostgreSQL `U&"..."` identifiers
/// folded into the one identifier the server reads.
pub(super) fn reconcile(
    sql: &str,
    tokens: Vec<TokenWithSpan>,
    dialect: Dialect,
) -> Result<Vec<TokenWithSpan>, SqlError> {
    if !sql.is_ascii() {
        non_ascii_whitespace(sql, &tokens)?;
    }
    let tokens = if dialect == Dialect::Postgres {
        fold_unicode_identifiers(tokens)?
    } else {
        tokens
    };
    for t in &tokens {
        match &t.token {
            // MariaDB executes `/*M! ... */`; sqlparser sees a comment. (`/*! ... */` is
            // expanded into tokens by sqlparser itself.)
            Token::Whitespace(Whitespace::MultiLineComment(body))
                if dialect == Dialect::Mysql && body.starts_with("M!") =>
            {
                return Err(mismatch("MariaDB executable comment /*M!", t));
            }
            Token::Word(w)
                if dialect == Dialect::Postgres && w.value.len() > PG_MAX_IDENTIFIER_BYTES =>
            {
                return Err(mismatch(
                    "an identifier longer than 63 bytes (the server truncates it)",
                    t,
                ));
            }
            _ => {}
        }
    }
    Ok(tokens)
}

/// The characters a token keeps as data, exactly as written (the tokenizer does not unescape):
/// a string literal's or a quoted identifier's. `U&'...'` literals are left out: sqlparser
/// decodes their escapes, so their value is not what was written.
fn data_text(token: &Token) -> Option<&str> {
    match token {
        Token::Word(w) if w.quote_style.is_some() => Some(&w.value),
        Token::DollarQuotedString(d) => Some(&d.value),
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::TripleSingleQuotedString(s)
        | Token::TripleDoubleQuotedString(s)
        | Token::SingleQuotedByteStringLiteral(s)
        | Token::DoubleQuotedByteStringLiteral(s)
        | Token::TripleSingleQuotedByteStringLiteral(s)
        | Token::TripleDoubleQuotedByteStringLiteral(s)
        | Token::SingleQuotedRawStringLiteral(s)
        | Token::DoubleQuotedRawStringLiteral(s)
        | Token::TripleSingleQuotedRawStringLiteral(s)
        | Token::TripleDoubleQuotedRawStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s) => Some(s),
        _ => None,
    }
}

fn unicode_space(c: char) -> bool {
    !c.is_ascii() && c.is_whitespace()
}

/// Refuses a non-ASCII whitespace character (U+00A0, U+2000..U+200A, U+3000, U+0085, ...)
/// anywhere but inside a string literal or a quoted identifier. sqlparser treats every Unicode
/// space as whitespace; no supported server does: MySQL/MariaDB start a `--` comment only
/// before an ASCII space or control character (so `--<U+00A0>` hides the rest of the line from
/// the guard but not from the server), and PostgreSQL, MySQL and SQLite all read such a
/// character as part of an identifier.
///
/// The decision counts: every such character of the input must be one that a data token kept
/// (the tokenizer keeps literals as written, so none is made or lost). Token positions only
/// serve the message: sqlparser re-tokenizes MySQL `/*! ... */` hints with shifted positions.
fn non_ascii_whitespace(sql: &str, tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    let total = sql.chars().filter(|&c| unicode_space(c)).count();
    if total == 0 {
        return Ok(());
    }
    let kept: usize = tokens
        .iter()
        .filter_map(|t| data_text(&t.token))
        .map(|s| s.chars().filter(|&c| unicode_space(c)).count())
        .sum();
    if kept == total {
        return Ok(());
    }
    let (ch, line, column) = first_outside_data(sql, tokens);
    Err(SqlError::new(
        ErrorCode::LexingMismatch,
        format!(
            "the character U+{:04X} at line {line}, column {column} is whitespace to the guard \
             but not to the server; use an ASCII space",
            u32::from(ch)
        ),
    ))
}

/// The first Unicode space outside a data token by the tokens' positions (1-based line and
/// character column, only `\n` starting a line: the tokenizer's way of counting), or else the
/// first one at all.
fn first_outside_data(sql: &str, tokens: &[TokenWithSpan]) -> (char, u64, u64) {
    let (mut line, mut column) = (1u64, 1u64);
    let (mut first, mut at) = (None, 0usize);
    for ch in sql.chars() {
        if unicode_space(ch) {
            first.get_or_insert((ch, line, column));
            // Tokens are in order: advance to the first one that ends after this character.
            while tokens
                .get(at)
                .is_some_and(|t| (t.span.end.line, t.span.end.column) <= (line, column))
            {
                at += 1;
            }
            let inside = tokens.get(at).is_some_and(|t| {
                (t.span.start.line, t.span.start.column) <= (line, column)
                    && data_text(&t.token).is_some()
            });
            if !inside {
                return (ch, line, column);
            }
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    first.unwrap_or((' ', 1, 1))
}

/// PostgreSQL reads `U&"d\0061t\+000061"` (optionally followed by `UESCAPE 'c'`) as ONE
/// identifier with Unicode escapes; sqlparser reads `U`, `&`, `"..."`, which would hide the
/// real name (`U&"pg\005fsleep"` is `pg_sleep`) from the walk. The guard decodes it exactly as
/// the server does and hands the walk one quoted identifier; the rendering then spells it as a
/// plain quoted identifier, which the server reads the same way.
fn fold_unicode_identifiers(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, SqlError> {
    let is_u = |t: &Token| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"));
    let quoted = |t: &Token| matches!(t, Token::Word(w) if w.quote_style == Some('"'));
    if !tokens
        .windows(3)
        .any(|w| is_u(&w[0].token) && w[1].token == Token::Ampersand && quoted(&w[2].token))
    {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let here = &tokens[i];
        let body = match (tokens.get(i + 1), tokens.get(i + 2)) {
            (
                Some(amp),
                Some(TokenWithSpan {
                    token: Token::Word(w),
                    ..
                }),
            ) if is_u(&here.token)
                && amp.token == Token::Ampersand
                && quoted(&tokens[i + 2].token) =>
            {
                w.value.clone()
            }
            _ => {
                out.push(here.clone());
                i += 1;
                continue;
            }
        };
        // An optional `UESCAPE 'c'` (whitespace and comments may come between).
        let mut next = i + 3;
        let mut escape = '\\';
        let significant = |from: usize| {
            (from..tokens.len()).find(|&k| !matches!(tokens[k].token, Token::Whitespace(_)))
        };
        if let Some(k) = significant(next)
            && matches!(&tokens[k].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("uescape"))
        {
            let Some(c) = significant(k + 1) else {
                return Err(mismatch("UESCAPE without an escape character", &tokens[k]));
            };
            escape = match &tokens[c].token {
                Token::SingleQuotedString(s) => uescape_char(s)
                    .ok_or_else(|| mismatch("an invalid UESCAPE character", &tokens[c]))?,
                _ => return Err(mismatch("UESCAPE without an escape character", &tokens[k])),
            };
            next = c + 1;
        }
        // The tokenizer kept `""` doubled (it does not unescape); PostgreSQL undoubles before
        // decoding the escapes.
        let decoded = decode_unicode_escapes(&body.replace("\"\"", "\""), escape)
            .ok_or_else(|| mismatch("an invalid Unicode escape in U&\"...\"", &tokens[i + 2]))?;
        if decoded.is_empty() || decoded.contains('\0') {
            return Err(mismatch(
                "an empty or NUL identifier in U&\"...\"",
                &tokens[i + 2],
            ));
        }
        out.push(TokenWithSpan::new(
            Token::Word(Word {
                // Kept doubled, like every other quoted identifier of this token stream.
                value: decoded.replace('"', "\"\""),
                quote_style: Some('"'),
                keyword: sqlparser::keywords::Keyword::NoKeyword,
            }),
            here.span.union(&tokens[next - 1].span),
        ));
        i = next;
    }
    Ok(out)
}

/// The escape character of `UESCAPE 'c'`: one character, not a hex digit, `+`, `'`, `"` or
/// whitespace (PostgreSQL's rule).
fn uescape_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    let bad = chars.next().is_some()
        || c.is_ascii_hexdigit()
        || matches!(c, '+' | '\'' | '"')
        || c.is_whitespace();
    (!bad).then_some(c)
}

/// Decodes PostgreSQL Unicode escapes: `<e>XXXX`, `<e>+XXXXXX`, `<e><e>`; UTF-16 surrogate
/// pairs written as two escapes are joined. `None` for anything the server would refuse.
fn decode_unicode_escapes(body: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != escape {
            if high.is_some() {
                return None;
            }
            out.push(c);
            continue;
        }
        let code = match chars.peek() {
            Some(&e) if e == escape => {
                chars.next();
                if high.is_some() {
                    return None;
                }
                out.push(escape);
                continue;
            }
            Some('+') => {
                chars.next();
                hex_digits(&mut chars, 6)?
            }
            _ => hex_digits(&mut chars, 4)?,
        };
        match (high.take(), code) {
            (None, 0xD800..=0xDBFF) => high = Some(code),
            (Some(h), 0xDC00..=0xDFFF) => {
                out.push(char::from_u32(
                    0x10000 + ((h - 0xD800) << 10) + (code - 0xDC00),
                )?);
            }
            (None, _) => out.push(char::from_u32(code)?),
            (Some(_), _) => return None,
        }
    }
    high.is_none().then_some(out)
}

fn hex_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for _ in 0..n {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    Some(v)
}

fn mismatch(what: &str, t: &TokenWithSpan) -> SqlError {
    SqlError::new(
        ErrorCode::LexingMismatch,
        format!(
            "{what} at line {}, column {} is read differently by the server",
            t.span.start.line, t.span.start.column
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_escapes_decode_as_postgres_does() {
        assert_eq!(
            decode_unicode_escapes(r"pg\005fsleep", '\\').as_deref(),
            Some("pg_sleep")
        );
        assert_eq!(
            decode_unicode_escapes(r"d\0061t\+000061", '\\').as_deref(),
            Some("data")
        );
        assert_eq!(
            decode_unicode_escapes("a!!b!0063", '!').as_deref(),
            Some("a!bc")
        );
        assert_eq!(
            decode_unicode_escapes(r"\D83D\DE00", '\\').as_deref(),
            Some("\u{1F600}")
        );
        for bad in [r"\00", r"\zzzz", r"\D83D", r"\DE00", r"\D83Dx", r"\+110000"] {
            assert_eq!(decode_unicode_escapes(bad, '\\'), None, "{bad}");
        }
    }

    #[test]
    fn uescape_characters_follow_postgres_rules() {
        assert_eq!(uescape_char("!"), Some('!'));
        for bad in ["", "ab", "a", "+", "'", "\"", " "] {
            assert_eq!(uescape_char(bad), None, "{bad:?}");
        }
    }
}
