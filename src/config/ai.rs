//! `[ai]`: the AI proxy's providers and the caps on every outbound request
//! (`hubworker_egress_*`, README: "The AI proxy").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[ai]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AiSection {
    /// The providers the proxy may reach, by name (`[ai.providers.<name>]`). None: the proxy
    /// refuses every request.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    /// Extra trusted CA certificates (PEM) beside the host's store, e.g. a private gateway's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Hosts that may be reached over plain http (development only; their addresses are still
    /// checked). Refused in production.
    #[serde(default)]
    pub http_hosts: Vec<String>,
    /// Most bytes of one request body.
    #[serde(default = "default_request_max_bytes")]
    pub request_max_bytes: usize,
    /// Most bytes of one response body.
    #[serde(default = "default_response_max_bytes")]
    pub response_max_bytes: u64,
    /// From sending a request to the last byte of its response, seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// From sending a request to its response head, seconds.
    #[serde(default = "default_first_byte_secs")]
    pub first_byte_secs: u64,
    /// Test builds only: simulated DNS answers and one address every connection goes to.
    #[cfg(feature = "testing")]
    #[serde(default)]
    pub simulate: Option<Simulate>,
}

/// `[ai.simulate]` (test builds only).
#[cfg(feature = "testing")]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Simulate {
    /// A name's answers.
    pub resolve: BTreeMap<String, Vec<std::net::IpAddr>>,
    /// Where every connection goes (the port is the URL's).
    pub connect: std::net::IpAddr,
}

/// `[ai.providers.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderSection {
    /// `https://api.openai.com` (no path, query or user info).
    pub base_url: String,
    /// The paths callers may use, exactly (`/v1/chat/completions`).
    pub paths: Vec<String>,
    /// Request headers allowed beyond the base list (`anthropic-version`).
    #[serde(default)]
    pub headers: Vec<String>,
    /// The header the worker puts the provider's key in.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// What comes before the key in that header (`"Bearer "`; `""` for `x-api-key`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_request_max_bytes() -> usize {
    1 << 20
}
fn default_response_max_bytes() -> u64 {
    16 << 20
}
fn default_timeout_secs() -> u64 {
    300
}
fn default_first_byte_secs() -> u64 {
    60
}
fn default_key_header() -> String {
    "authorization".into()
}
fn default_key_prefix() -> String {
    "Bearer ".into()
}

impl Default for AiSection {
    fn default() -> Self {
        AiSection {
            providers: BTreeMap::new(),
            ca_file: None,
            http_hosts: Vec::new(),
            request_max_bytes: default_request_max_bytes(),
            response_max_bytes: default_response_max_bytes(),
            timeout_secs: default_timeout_secs(),
            first_byte_secs: default_first_byte_secs(),
            #[cfg(feature = "testing")]
            simulate: None,
        }
    }
}

/// Header names no provider may add: the connection's own, and credentials of other kinds.
const NEVER_FORWARDED: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
    "proxy-authorization",
    "forwarded",
    "x-forwarded-for",
    "te",
];

impl AiSection {
    /// The egress rules these keys describe.
    pub(crate) fn rules(&self) -> crate::egress::Rules {
        crate::egress::Rules {
            http_hosts: self.http_hosts.clone(),
        }
    }

    /// The egress caps these keys describe.
    pub(crate) fn limits(&self) -> crate::egress::Limits {
        crate::egress::Limits {
            request_bytes: self.request_max_bytes,
            response_bytes: self.response_max_bytes,
            total: Duration::from_secs(self.timeout_secs),
            first_byte: Duration::from_secs(self.first_byte_secs),
        }
    }

    /// Every problem of `[ai]`.
    pub(crate) fn problems(&self, production: bool, problems: &mut Vec<String>) {
        if production && !self.http_hosts.is_empty() {
            problems.push("ai.http_hosts: plain http is for development only".to_owned());
        }
        if self.request_max_bytes == 0 || self.request_max_bytes > 64 << 20 {
            problems.push("ai.request_max_bytes: 1 to 67108864".to_owned());
        }
        if self.response_max_bytes == 0 {
            problems.push("ai.response_max_bytes: at least 1".to_owned());
        }
        if self.timeout_secs == 0 || self.first_byte_secs == 0 {
            problems.push("ai.timeout_secs, ai.first_byte_secs: at least 1".to_owned());
        }
        if let Some(ca) = &self.ca_file
            && let Err(e) = crate::egress::client::tls_config(Some(ca))
        {
            problems.push(format!("ai.ca_file: {e}"));
        }
        let rules = self.rules();
        for (name, p) in &self.providers {
            let key = format!("ai.providers.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                problems.push(format!("{key}: a name of 1-64 of a-z 0-9 - _"));
            }
            match crate::egress::parse(&p.base_url, &rules) {
                Err(r) => problems.push(format!("{key}.base_url: {} ({})", r.message, r.code)),
                Ok(_) => {
                    let url = url::Url::parse(&p.base_url).ok();
                    if url.is_none_or(|u| {
                        u.path() != "/" || u.query().is_some() || u.fragment().is_some()
                    }) {
                        problems.push(format!(
                            "{key}.base_url: scheme, host and port only (the paths go in `paths`)"
                        ));
                    }
                }
            }
            if p.paths.is_empty() {
                problems.push(format!("{key}.paths: at least one"));
            }
            for path in &p.paths {
                if !valid_path(path) {
                    problems.push(format!(
                        "{key}.paths: {path:?} is not an absolute path of a-z A-Z 0-9 / - _ . : (no \"..\", no query)"
                    ));
                }
            }
            for h in p.headers.iter().chain([&p.key_header]) {
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    || NEVER_FORWARDED.contains(&h.as_str())
                    || h.starts_with("proxy-")
                {
                    problems.push(format!(
                        "{key}: header {h:?} is not allowed (lowercase names; never {})",
                        NEVER_FORWARDED.join(", ")
                    ));
                }
            }
        }
    }
}

/// A path callers may ask for: absolute, of safe characters, no dot segments, no query.
pub(crate) fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 512
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b':'))
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && !path.contains("//")
}
