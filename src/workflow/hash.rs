//! The workflow's canonical hash: SHA-256 over the RFC 8785 (JSON Canonicalization Scheme)
//! form, lowercase hex. Server tokens are bound to it, so the worker and every Hub must compute
//! it identically: `tests/fixtures/workflow_hash_vectors.json` is the shared test vector set.
//! Input is capped in size, nesting is bounded by the JSON parser, and duplicate object keys
//! are refused (I-JSON, which JCS requires) rather than silently resolved.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest workflow document accepted, in bytes.
pub const MAX_WORKFLOW_BYTES: usize = 16 * 1024 * 1024;

/// Why a document cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Over [`MAX_WORKFLOW_BYTES`].
    #[error("workflow is {0} bytes; the limit is {MAX_WORKFLOW_BYTES}")]
    TooLarge(usize),
    /// Not JSON, nested too deeply, or a duplicate key.
    #[error("not a valid workflow JSON document: {0}")]
    Json(#[from] serde_json::Error),
}

impl HashError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            HashError::TooLarge(_) => "too_large",
            HashError::Json(_) => "invalid_json",
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
pub fn parse_strict(doc: &str) -> Result<Value, HashError> {
    if doc.len() > MAX_WORKFLOW_BYTES {
        return Err(HashError::TooLarge(doc.len()));
    }
    let Strict(v) = serde_json::from_str(doc)?;
    Ok(v)
}

/// The RFC 8785 canonical form of `doc`.
pub fn canonical_json(doc: &str) -> Result<String, HashError> {
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

    #[derive(serde::Deserialize)]
    struct Vector {
        name: String,
        input: String,
        canonical: String,
        sha256: String,
    }

    #[test]
    fn shared_test_vectors() {
        let raw = include_str!("../../tests/fixtures/workflow_hash_vectors.json");
        let vectors: Vec<Vector> = serde_json::from_str(raw).expect("vectors");
        assert!(vectors.len() >= 6);
        for v in vectors {
            assert_eq!(
                canonical_json(&v.input).expect(&v.name),
                v.canonical,
                "{}",
                v.name
            );
            assert_eq!(
                workflow_sha256(&v.input).expect(&v.name),
                v.sha256,
                "{}",
                v.name
            );
        }
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
