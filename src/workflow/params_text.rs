//! A run's parameter values as text: the `params_json` of `Execute` and `Validate` (read as
//! strictly as a workflow), and `--params FILE` / `--param NAME=VALUE` on the command line
//! (a value read by its declared type). Both end in [`bind`].

use serde_json::Value as Json;

use super::{ParamType, Params, Scalar, bind};
use crate::workflow::params::Bound;
use crate::workflow::problem::Problem;

/// Largest parameter object a run brings, bytes of JSON.
pub(crate) const MAX_PARAMS_BYTES: usize = 1 << 20;

/// [`bind`] from a run's JSON text (empty: no values). The text is read strictly, as a
/// workflow is (I-JSON: exact integers, no duplicate names).
pub(crate) fn bind_text(params: &Params, text: &str) -> Result<Bound, Vec<Problem>> {
    let refuse = |code: &'static str, why: String| vec![Problem::new(None, "params", code, why)];
    if text.trim().is_empty() {
        return bind(params, &Json::Null);
    }
    if text.len() > MAX_PARAMS_BYTES {
        return Err(refuse(
            "limit_exceeded",
            format!(
                "the parameters are {} bytes of JSON; the limit is {MAX_PARAMS_BYTES}",
                text.len()
            ),
        ));
    }
    let value = crate::workflow::hash::parse_strict(text).map_err(|e| {
        refuse(
            e.code(),
            "the run's parameters are not a valid JSON object".into(),
        )
    })?;
    bind(params, &value)
}

/// A run's values from the command line: the `--params` file's object (read strictly), then
/// each `NAME=VALUE` over it, the value read by the declared type (text for `str`, JSON for
/// the rest; a name the workflow does not declare is kept as text, for [`bind`] to refuse).
pub(crate) fn cli_values(
    params: &Params,
    file: Option<&str>,
    pairs: &[String],
) -> Result<Json, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut map = match file.map(crate::workflow::hash::parse_strict) {
        None => serde_json::Map::new(),
        Some(Ok(Json::Object(m))) => m,
        Some(Ok(_)) => {
            return Err(vec![Problem::new(
                None,
                "params",
                "param_type",
                "the parameters file holds a JSON object: name -> value",
            )]);
        }
        Some(Err(e)) => {
            return Err(vec![Problem::new(
                None,
                "params",
                e.code(),
                "the parameters file is not valid JSON",
            )]);
        }
    };
    for pair in pairs {
        let Some((name, text)) = pair.split_once('=') else {
            problems.push(Problem::new(
                None,
                "params",
                "invalid_value",
                "a parameter is given as NAME=VALUE",
            ));
            continue;
        };
        let value = match params.get(name).map(|p| p.ty) {
            Some(ParamType {
                scalar: Scalar::Str | Scalar::Date | Scalar::Datetime,
                list: false,
            })
            | None => Json::String(text.to_owned()),
            Some(_) => match crate::workflow::hash::parse_strict(text) {
                Ok(v) => v,
                // Not JSON: a string, which the type check then refuses by name.
                Err(_) => Json::String(text.to_owned()),
            },
        };
        map.insert(name.to_owned(), value);
    }
    if problems.is_empty() {
        Ok(Json::Object(map))
    } else {
        Err(problems)
    }
}

/// The `params_sha256` a run's parameter text is bound to: SHA-256 of the RFC 8785 form of
/// the object as sent, lowercase hex; no values (empty text, `null` or `{}`) is the empty
/// object's hash, [`NO_PARAMS_SHA256`](crate::token::NO_PARAMS_SHA256). `None` when the text
/// is not JSON (the run is refused by [`bind_text`] first).
pub(crate) fn params_sha256(text: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Some(crate::token::NO_PARAMS_SHA256.to_owned());
    }
    let canonical = crate::workflow::hash::canonical_json(text).ok()?;
    Some(hex::encode(Sha256::digest(canonical.as_bytes())))
}
