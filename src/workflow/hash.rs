//! The workflow's canonical hash: SHA-256 over the RFC 8785 (JSON Canonicalization Scheme)
//! form, lowercase hex. Server tokens are bound to it, so the worker and every Hub must compute
//! it identically: `tests/fixtures/workflow_hash_vectors.json` is the shared test vector set.
//! Input is capped in size, nesting is bounded by the JSON parser, and duplicate object keys
//! are refused (I-JSON, which JCS requires) rather than silently resolved.
//!
//! JCS writes every number as an IEEE double, while the worker reads integers exactly; the
//! two agree only on numbers a double holds exactly and distinctly. So, as I-JSON (RFC 7493
//! §2.2) says, an integer (written without a fraction or exponent) must lie in
//! [-(2^53)+1, 2^53-1], and `-0` (any spelling, or a negative number that rounds to zero) is
//! refused, since the canonical form writes it as `0`: `number_out_of_range`. Numbers beyond a
//! double's range (`1e400`) are not JSON to the parser (`invalid_json`).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest workflow document accepted, in bytes.
pub(crate) const MAX_WORKFLOW_BYTES: usize = 16 * 1024 * 1024;

/// Why a document cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Over `MAX_WORKFLOW_BYTES`.
    #[error("workflow is {0} bytes; the limit is {MAX_WORKFLOW_BYTES}")]
    TooLarge(usize),
    /// Not JSON, nested too deeply, or a duplicate key.
    #[error("not a valid workflow JSON document: {0}")]
    Json(#[from] serde_json::Error),
    /// A number the canonical form cannot tell from another (see the module docs).
    #[error("{0}")]
    NumberOutOfRange(String),
}

impl HashError {
    /// Stable error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HashError::TooLarge(_) => "too_large",
            HashError::Json(_) => "invalid_json",
            HashError::NumberOutOfRange(_) => "number_out_of_range",
        }
    }
}

/// A JSON value that refuses duplicate object keys while it is parsed.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses `doc` (strictly: no duplicate keys, size-capped) into a JSON value.
pub(crate) fn parse_strict(doc: &str) -> Result<Value, HashError> {
    if doc.len() > MAX_WORKFLOW_BYTES {
        return Err(HashError::TooLarge(doc.len()));
    }
    let Strict(v) = serde_json::from_str(doc)?;
    check_numbers(doc)?;
    Ok(v)
}

/// Largest integer magnitude I-JSON calls interoperable: 2^53 - 1.
pub(crate) const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// Refuses the numbers of `doc` the canonical form cannot represent exactly (see the module
/// docs). `doc` is valid JSON already, so outside strings a `-` or a digit starts a number
/// and the number runs over `[0-9+-.eE]`; integers are compared as digit strings, so no
/// length overflows anything.
fn check_numbers(doc: &str) -> Result<(), HashError> {
    let b = doc.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let text = &doc[start..i];
                if let Some(why) = number_problem(text) {
                    return Err(HashError::NumberOutOfRange(out_of_range(
                        doc, start, text, why,
                    )));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Why a JSON number (its text) is refused, if it is.
fn number_problem(text: &str) -> Option<&'static str> {
    let integer = !text.contains(['.', 'e', 'E']);
    let digits = text.trim_start_matches('-');
    if integer {
        // JSON integers have no leading zeros, so longer means larger.
        let max = MAX_EXACT_INTEGER.to_string();
        let too_big =
            digits.len() > max.len() || (digits.len() == max.len() && digits > max.as_str());
        if too_big {
            return Some(
                "is an integer outside [-(2^53)+1, 2^53-1] (I-JSON, RFC 7493): the canonical \
                 hash writes numbers as doubles and could not tell it from its neighbours",
            );
        }
    }
    let negative_zero = text.starts_with('-') && text.parse::<f64>().is_ok_and(|v| v == 0.0);
    negative_zero.then_some(
        "is a negative zero: the canonical hash writes it as 0 and could not tell the two apart",
    )
}

fn out_of_range(doc: &str, at: usize, text: &str, why: &str) -> String {
    let before = &doc.as_bytes()[..at];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    let shown: String = text.chars().take(40).collect();
    let more = if shown.len() < text.len() { "..." } else { "" };
    format!("the number {shown}{more} at line {line} column {column} {why}")
}

/// The RFC 8785 canonical form of `doc`.
pub(crate) fn canonical_json(doc: &str) -> Result<String, HashError> {
    let value = parse_strict(doc)?;
    Ok(serde_json_canonicalizer::to_string(&value)?)
}

/// SHA-256 of the canonical form, as 64 lowercase hex digits.
pub fn workflow_sha256(doc: &str) -> Result<String, HashError> {
    let canonical = canonical_json(doc)?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector: the canonical form and hash of `input`, or the code it is refused with.
    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        input: String,
        canonical: Option<String>,
        sha256: Option<String>,
        error: Option<String>,
    }

    #[test]
    fn shared_test_vectors() {
        let raw = include_str!("../../tests/fixtures/workflow_hash_vectors.json");
        let vectors: Vec<Vector> = serde_json::from_str(raw).expect("vectors");
        assert_eq!(vectors.len(), 13);
        let mut refused = 0;
        for v in vectors {
            let name = &v.name;
            if let Some(code) = v.error {
                refused += 1;
                assert_eq!(canonical_json(&v.input).unwrap_err().code(), code, "{name}");
                assert_eq!(
                    workflow_sha256(&v.input).unwrap_err().code(),
                    code,
                    "{name}"
                );
                assert!(v.canonical.is_none() && v.sha256.is_none(), "{name}");
                continue;
            }
            let canonical = canonical_json(&v.input).expect(name);
            assert_eq!(Some(canonical), v.canonical, "{name}");
            assert_eq!(
                Some(workflow_sha256(&v.input).expect(name)),
                v.sha256,
                "{name}"
            );
        }
        assert_eq!(refused, 7);
    }

    #[test]
    fn integers_beyond_2_pow_53_and_negative_zero_are_refused() {
        let code = |doc: &str| workflow_sha256(doc).map_err(|e| e.code());
        // The review's collision: both hashed as 9007199254740992.
        let e = workflow_sha256(
            r#"{"version": 1,
  "nodes": [], "x": 9007199254740993}"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), "number_out_of_range");
        assert_eq!(
            e.to_string(),
            "the number 9007199254740993 at line 2 column 21 is an integer outside \
             [-(2^53)+1, 2^53-1] (I-JSON, RFC 7493): the canonical hash writes numbers as \
             doubles and could not tell it from its neighbours"
        );
        assert_eq!(code("[9007199254740992]"), Err("number_out_of_range"));
        assert_eq!(code("[-9007199254740992]"), Err("number_out_of_range"));
        assert_eq!(code("[18446744073709551616]"), Err("number_out_of_range"));
        assert_eq!(
            code(&format!("[{}]", "9".repeat(300))),
            Err("number_out_of_range")
        );
        // An integer past a double's range is past what the parser reads at all.
        assert_eq!(code(&format!("[{}]", "9".repeat(400))), Err("invalid_json"));
        // The largest exact integers pass, and hash as themselves.
        let max = workflow_sha256("[9007199254740991, -9007199254740991]").expect("max");
        assert_eq!(
            max,
            hex::encode(Sha256::digest(b"[9007199254740991,-9007199254740991]"))
        );
        // Negative zero in every spelling; positive zero and small negatives are fine.
        for z in ["-0", "-0.0", "-0e7", "-0E-2", "-1e-400", "-0.000"] {
            let e = workflow_sha256(&format!("[{z}]")).unwrap_err();
            assert_eq!(e.code(), "number_out_of_range", "{z}");
            assert!(e.to_string().contains("negative zero"), "{z}: {e}");
        }
        assert!(code("[0, 0.0, 1e-400, -1e-300, -5, 1.5e300, 12345678901234567890.5]").is_ok());
        // Digits inside strings are text, escaped quotes included.
        assert!(code(r#"{"s": "9007199254740993 \" -0 \\", "k\"-0": 1}"#).is_ok());
        // Over a double's range is not JSON at all.
        assert_eq!(code("[1e400]"), Err("invalid_json"));
    }

    #[test]
    fn equivalent_documents_hash_alike_and_changes_do_not() {
        let a = workflow_sha256(r#"{"b": [1, 2.0], "a": "x"}"#).expect("a");
        let b = workflow_sha256("{\"a\":\"x\",\n\"b\":[1.0,2]}").expect("b");
        assert_eq!(a, b);
        let c = workflow_sha256(r#"{"a": "x", "b": [2, 1]}"#).expect("c");
        assert_ne!(a, c);
    }

    #[test]
    fn malformed_documents_are_refused() {
        let e = workflow_sha256(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        assert!(e.to_string().contains("duplicate key"), "{e}");
        assert_eq!(workflow_sha256("{").unwrap_err().code(), "invalid_json");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(workflow_sha256(&deep).unwrap_err().code(), "invalid_json");
        let big = " ".repeat(MAX_WORKFLOW_BYTES + 1);
        assert_eq!(workflow_sha256(&big).unwrap_err().code(), "too_large");
    }
}
