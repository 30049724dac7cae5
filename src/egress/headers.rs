//! Which headers go out and which come back.
//!
//! Out: only the base allowlist ([`BASE`]) and the names a provider adds; any other name is
//! refused (`header_not_allowed`), as is an `authorization` value that is one of the
//! platform's internal tokens (`Bearer sw-...`: `internal_token`), a header the worker sets
//! itself (the provider key's), and malformed names or values (`bad_header`). The worker's
//! own header (a provider key) is added last, marked sensitive (never in Debug output).
//!
//! Back: only [`INCOMING`].

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::{Refusal, refuse};

/// Headers any caller may send.
pub(crate) const BASE: [&str; 5] = [
    "content-type",
    "accept",
    "accept-language",
    "user-agent",
    "authorization",
];

/// Response headers passed back to the caller.
pub(crate) const INCOMING: [&str; 5] = [
    "content-type",
    "retry-after",
    "x-request-id",
    "request-id",
    "openai-processing-ms",
];

/// Most headers one request may carry.
pub(crate) const MAX_HEADERS: usize = 32;

/// A header the worker sets: its name and its value (a key, zeroized when dropped).
pub(crate) struct Injected {
    /// Lowercase name.
    pub name: String,
    /// The whole value (e.g. `Bearer <key>`).
    pub value: Zeroizing<String>,
}

impl std::fmt::Debug for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injected")
            .field("name", &self.name)
            .field("value", &"***")
            .finish()
    }
}

/// Whether `value` is a platform token (`Bearer sw-...`, any case of `Bearer`, any spacing).
pub(crate) fn is_internal_token(value: &str) -> bool {
    let v = value.trim_start();
    let Some(scheme) = v.get(..6) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && v[6..].trim_start().starts_with("sw-")
}

/// The headers that go out, or why the request is refused.
pub(crate) fn outgoing(
    asked: &[(String, String)],
    extra_allowed: &[String],
    injected: Option<Injected>,
) -> Result<HeaderMap, Refusal> {
    if asked.len() > MAX_HEADERS {
        return Err(refuse(
            "too_many_headers",
            format!("{} headers; the limit is {MAX_HEADERS}", asked.len()),
        ));
    }
    let mut out = HeaderMap::new();
    for (name, value) in asked {
        let lower = name.to_ascii_lowercase();
        if lower == "authorization" && is_internal_token(value) {
            return Err(refuse(
                "internal_token",
                "an internal platform token (Bearer sw-...) is never sent upstream",
            ));
        }
        if injected.as_ref().is_some_and(|i| i.name == lower) {
            return Err(refuse(
                "header_not_allowed",
                format!("{lower:?} is set by the worker"),
            ));
        }
        if !BASE.contains(&lower.as_str()) && !extra_allowed.contains(&lower) {
            return Err(refuse(
                "header_not_allowed",
                format!("header {lower:?} is not allowed"),
            ));
        }
        let header = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| refuse("bad_header", format!("{lower:?} is not a header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| refuse("bad_header", format!("the value of {lower:?} is not valid")))?;
        out.append(header, value);
    }
    if let Some(i) = injected {
        let name = HeaderName::from_bytes(i.name.as_bytes())
            .map_err(|_| refuse("bad_header", format!("{:?} is not a header name", i.name)))?;
        let mut value = HeaderValue::from_str(&i.value).map_err(|_| {
            refuse(
                "bad_header",
                format!("the value of {:?} is not valid", i.name),
            )
        })?;
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(out)
}

/// The response headers passed back.
pub(crate) fn incoming(headers: &HeaderMap) -> Vec<(String, String)> {
    INCOMING
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), v.to_owned()))
        })
        .collect()
}
