//! Owns the rules every outbound HTTP request of the worker must pass (issue 22): which URLs,
//! which host names and which addresses. Knows nothing of HTTP clients, gRPC or the proxy.
//!
//! A URL is parsed as a browser parses it (WHATWG, the `url` crate): a host written as an IP
//! address in any notation the OS would accept (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
//! `[::ffff:127.0.0.1]`) becomes that address, and a name is lowercased and IDNA-mapped
//! (full-width and other look-alike forms of `localhost` become `localhost`). Then:
//!
//! 1. the scheme: `https`; `http` only for hosts the operator lists (development);
//! 2. no user name or password in the URL;
//! 3. the name (a trailing dot removed): no single-label names (`localhost`, `metadata`), no
//!    internal suffixes (`.localhost`, `.local`, `.internal`, `.localdomain`, `.home.arpa`),
//!    no known metadata names;
//! 4. the address: resolved **once** (an injectable resolver), and **every** answer checked
//!    against [`ranges`]; one blocked answer refuses the request. The vetted address is what
//!    the connection must use (the request keeps the name for SNI, certificates and `Host`),
//!    so a second lookup can never change the target (DNS rebinding).
//!
//! Each refusal has a stable code (README: "Outbound requests"). [`client`] sends a request
//! that passed, to exactly the vetted address, within caps and a header allowlist
//! ([`headers`]).

pub(crate) mod client;
pub(crate) mod headers;
mod ranges;

pub(crate) use client::{Client, Limits, Network, Outbound, SystemNetwork, Upstream};

use std::net::{IpAddr, SocketAddr};

/// Longest URL considered.
pub(crate) const MAX_URL_BYTES: usize = 8 * 1024;

/// Most resolver answers considered (all are checked).
pub(crate) const MAX_ANSWERS: usize = 64;

/// Known metadata service names (compared after normalisation).
const METADATA_NAMES: [&str; 7] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.packet.net",
    "metadata.tencentyun.com",
];

/// Name suffixes that only resolve inside a network.
const INTERNAL_SUFFIXES: [&str; 6] = [
    ".localhost",
    ".local",
    ".internal",
    ".localdomain",
    ".home.arpa",
    ".intranet",
];

/// What the operator allows beyond the defaults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// Hosts (normalised names or addresses as written in URLs) that may be reached over plain
    /// `http` (development only); their addresses are still checked.
    pub(crate) http_hosts: Vec<String>,
}

/// A refused target: a stable code and a message (no query string, no user info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// Stable code.
    pub(crate) code: &'static str,
    /// What was refused and why.
    pub(crate) message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A target that passed: where to connect, and the name the request keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vetted {
    /// The normalised host (a name, or the address as the URL gives it).
    pub(crate) host: String,
    /// The address the connection must use (the first vetted answer).
    pub(crate) connect: SocketAddr,
    /// Every vetted answer, in the resolver's order.
    pub(crate) addresses: Vec<IpAddr>,
    /// `https` (else the operator allowed `http` for this host).
    pub(crate) tls: bool,
    /// The URL, parsed.
    pub(crate) url: url::Url,
}

/// Answers a name: its addresses, in order, or why it cannot be resolved.
pub(crate) type Resolver<'a> = dyn FnMut(&str) -> Result<Vec<IpAddr>, String> + 'a;

/// Vets `raw` against the rules; `resolve` is asked once, for a name only.
pub(crate) fn vet(raw: &str, rules: &Rules, resolve: &mut Resolver<'_>) -> Result<Vetted, Refusal> {
    let target = parse(raw, rules)?;
    let answers = match target.literal {
        Some(ip) => vec![ip],
        None => resolve(&target.host).map_err(|e| {
            refuse(
                "resolve_failed",
                format!("{} does not resolve: {e}", target.host),
            )
        })?,
    };
    target.check(answers)
}

/// A URL that passed every rule but the address rules: its host still to be resolved (unless
/// it is an address) and every answer checked ([`Target::check`]).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The normalised host.
    pub(crate) host: String,
    /// The address when the URL gives one (never resolved).
    pub(crate) literal: Option<IpAddr>,
    port: u16,
    tls: bool,
    url: url::Url,
}

/// The rules that need no resolver: length, syntax, scheme, user info, name.
pub(crate) fn parse(raw: &str, rules: &Rules) -> Result<Target, Refusal> {
    if raw.len() > MAX_URL_BYTES {
        return Err(refuse(
            "bad_url",
            format!(
                "the URL is {} bytes; the limit is {MAX_URL_BYTES}",
                raw.len()
            ),
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| refuse("bad_url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(refuse(
            "scheme_not_allowed",
            format!("scheme {:?} is not allowed (https only)", url.scheme()),
        ));
    }
    let (host, literal) = match url.host() {
        Some(url::Host::Domain(d)) => (d.strip_suffix('.').unwrap_or(d).to_owned(), None),
        Some(url::Host::Ipv4(a)) => (a.to_string(), Some(IpAddr::V4(a))),
        Some(url::Host::Ipv6(a)) => (format!("[{a}]"), Some(IpAddr::V6(a))),
        None => return Err(refuse("bad_url", "the URL has no host")),
    };
    let tls = match url.scheme() {
        "https" => true,
        "http"
            if rules
                .http_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&host)) =>
        {
            false
        }
        _ => {
            return Err(refuse(
                "scheme_not_allowed",
                format!("plain http to {host} is not allowed (https only)"),
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "credentials_in_url",
            "a user name or password in the URL is not allowed",
        ));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| refuse("bad_url", "the URL has no port"))?;
    if literal.is_none() {
        check_name(&host)?;
    }
    Ok(Target {
        host,
        literal,
        port,
        tls,
        url,
    })
}

impl Target {
    /// Checks every answer (the resolver's, in its order; the literal's own for an address
    /// URL): one blocked address refuses the target.
    pub(crate) fn check(self, answers: Vec<IpAddr>) -> Result<Vetted, Refusal> {
        let Target {
            host,
            literal,
            port,
            tls,
            url,
        } = self;
        let addresses: Vec<IpAddr> = answers.into_iter().take(MAX_ANSWERS).collect();
        for ip in &addresses {
            if let Some((code, what)) = ranges::classify(*ip) {
                let via = match literal {
                    None => format!("{host} resolves to {ip}"),
                    Some(_) => format!("{ip}"),
                };
                return Err(refuse(code, format!("{via}: {what}")));
            }
        }
        let first = *addresses
            .first()
            .ok_or_else(|| refuse("resolve_failed", format!("{host} has no addresses")))?;
        Ok(Vetted {
            connect: SocketAddr::new(first, port),
            addresses,
            host,
            tls,
            url,
        })
    }
}

/// A URL for logs and messages: no query string, fragment or user info.
pub(crate) fn without_query(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Refuses names that can only mean something inside a network.
fn check_name(host: &str) -> Result<(), Refusal> {
    if host.is_empty() {
        return Err(refuse("bad_url", "the URL has an empty host"));
    }
    if METADATA_NAMES.contains(&host) {
        return Err(refuse(
            "metadata_name",
            format!("{host} is a cloud metadata service"),
        ));
    }
    if !host.contains('.') {
        return Err(refuse(
            "internal_name",
            format!("{host} is a single-label name (only meaningful inside a network)"),
        ));
    }
    if let Some(suffix) = INTERNAL_SUFFIXES.iter().find(|s| host.ends_with(*s)) {
        return Err(refuse(
            "internal_name",
            format!("{host} is an internal name ({suffix})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
