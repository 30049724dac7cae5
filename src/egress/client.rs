//! Sends one outbound HTTP request that passed the rules, to exactly the vetted address.
//!
//! The name is resolved once (through the injectable [`Network`]), every answer is checked
//! ([`super::Target::check`]), and the connection goes to the first: reqwest gets a resolver
//! that knows only that one name and that one address and refuses every other lookup, so no
//! second lookup can happen (DNS rebinding), while the request keeps the name for SNI,
//! certificate verification and `Host`. No proxy from the environment is used, redirects are
//! never followed (a 3xx is refused with `redirect_not_followed`), only the headers of the
//! allowlist go out ([`super::headers`]), and the request size, the time to the response head,
//! the total time and the response size are capped. Every decision is counted by its code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;

use super::headers::{self, Injected};
use super::{Refusal, Rules, refuse};

/// The `decision` and `reason` labels of `hubworker_egress_decisions_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Decision {
    /// `allowed` or `refused`.
    pub decision: &'static str,
    /// `ok`, or the refusal's code.
    pub reason: &'static str,
}

/// Every refusal code an outbound request can end with (the metric's label values).
pub(crate) const CODES: [&str; 32] = [
    "bad_url",
    "scheme_not_allowed",
    "credentials_in_url",
    "internal_name",
    "metadata_name",
    "resolve_failed",
    "metadata",
    "loopback",
    "unspecified",
    "private",
    "cgnat",
    "link_local",
    "unique_local",
    "multicast",
    "broadcast",
    "documentation",
    "reserved",
    "header_not_allowed",
    "internal_token",
    "request_too_large",
    "response_too_large",
    "upstream_timeout",
    "connect_failed",
    "upstream_error",
    "redirect_not_followed",
    "path_not_allowed",
    "method_not_allowed",
    "unknown_provider",
    "no_provider_key",
    "tls_config",
    "bad_header",
    "too_many_headers",
];

/// Caps on one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most bytes of request body.
    pub request_bytes: usize,
    /// Most bytes of response body.
    pub response_bytes: u64,
    /// From sending to the last byte of the response.
    pub total: Duration,
    /// From sending to the response's status line and headers.
    pub first_byte: Duration,
}

/// Name resolution and connection routing, injectable: the system's resolver and the vetted
/// address itself in the worker; simulated answers and a loopback listener in tests.
pub(crate) trait Network: Send + Sync + 'static {
    /// The addresses of `host`, in order (asked once per request, never for an address).
    fn resolve(&self, host: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, String>>;
    /// Where a connection to the vetted address goes (the system: that address; the port is
    /// always the URL's).
    fn route(&self, vetted: IpAddr) -> IpAddr {
        vetted
    }
}

/// The host's resolver; connections go to the vetted address.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemNetwork;

/// Longest wait for the system resolver.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Network for SystemNetwork {
    fn resolve(&self, host: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        let host = host.to_owned();
        Box::pin(async move {
            let answers = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 0)))
                .await
                .map_err(|_| "the resolver did not answer in time".to_owned())?
                .map_err(|e| e.to_string())?;
            Ok(answers.map(|a| a.ip()).collect())
        })
    }
}

/// Test builds only (`[ai.simulate]`): answers from a table, every connection to one address.
#[cfg(feature = "testing")]
#[derive(Debug, Clone)]
pub(crate) struct Simulated {
    /// Each name's answers.
    pub answers: std::collections::BTreeMap<String, Vec<IpAddr>>,
    /// Where every connection goes (the port is the URL's).
    pub connect: IpAddr,
}

#[cfg(feature = "testing")]
impl Network for Simulated {
    fn resolve(&self, host: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        let answer = self
            .answers
            .get(host)
            .cloned()
            .ok_or_else(|| "no simulated answer".to_owned());
        Box::pin(async move { answer })
    }

    fn route(&self, _: IpAddr) -> IpAddr {
        self.connect
    }
}

/// One outbound request, as its caller asks for it.
#[derive(Clone)]
pub(crate) struct Outbound {
    /// The method.
    pub method: reqwest::Method,
    /// The whole URL.
    pub url: String,
    /// The caller's headers (lowercase names), checked against the allowlist.
    pub headers: Vec<(String, String)>,
    /// Header names allowed beyond the base list (a provider's own).
    pub extra_allowed: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("method", &self.method)
            .field("url", &super::without_query(&self.url))
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The egress client: the rules, the caps, the TLS roots, the network, the decision counter.
#[derive(Clone)]
pub(crate) struct Client {
    rules: Rules,
    limits: Limits,
    tls: Arc<rustls::ClientConfig>,
    network: Arc<dyn Network>,
    decisions: Family<Decision, Counter>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("rules", &self.rules)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// TLS for outbound requests: the host's trust store, plus the certificates of `extra_ca`
/// (PEM) when given; HTTP/1.1 only.
pub(crate) fn tls_config(
    extra_ca: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_, _) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Client {
    /// A client with every decision label at 0 in `decisions`.
    pub(crate) fn new(
        rules: Rules,
        limits: Limits,
        tls: rustls::ClientConfig,
        network: Arc<dyn Network>,
        decisions: Family<Decision, Counter>,
    ) -> Client {
        let _ = decisions.get_or_create(&Decision {
            decision: "allowed",
            reason: "ok",
        });
        for reason in CODES {
            let _ = decisions.get_or_create(&Decision {
                decision: "refused",
                reason,
            });
        }
        Client {
            rules,
            limits,
            tls: Arc::new(tls),
            network,
            decisions,
        }
    }

    /// Counts and logs a refusal decided by the caller (a provider rule), and returns it.
    pub(crate) fn refused(&self, url: &str, refusal: Refusal) -> Refusal {
        self.count(url, Err(&refusal));
        refusal
    }

    fn count(&self, url: &str, outcome: Result<(), &Refusal>) {
        let url = super::without_query(url);
        let label = match outcome {
            Ok(()) => {
                tracing::info!(target: "hubworker::egress", url = %url, "outbound request allowed");
                Decision {
                    decision: "allowed",
                    reason: "ok",
                }
            }
            Err(r) => {
                tracing::warn!(target: "hubworker::egress", url = %url, code = r.code, "outbound request refused: {}", r.message);
                Decision {
                    decision: "refused",
                    reason: r.code,
                }
            }
        };
        self.decisions.get_or_create(&label).inc();
    }

    /// Vets, sends, and returns the response head with its body still to be read. `key` is
    /// the header the worker injects (a provider key); the caller may not set it.
    pub(crate) async fn send(
        &self,
        request: Outbound,
        key: Option<Injected>,
    ) -> Result<Upstream, Refusal> {
        let url = request.url.clone();
        let outcome = self.send_inner(request, key).await;
        self.count(&url, outcome.as_ref().map(|_| ()));
        outcome
    }

    async fn send_inner(
        &self,
        request: Outbound,
        key: Option<Injected>,
    ) -> Result<Upstream, Refusal> {
        let started = Instant::now();
        if request.body.len() > self.limits.request_bytes {
            return Err(refuse(
                "request_too_large",
                format!(
                    "the request body is {} bytes; the limit is {}",
                    request.body.len(),
                    self.limits.request_bytes
                ),
            ));
        }
        let headers = headers::outgoing(&request.headers, &request.extra_allowed, key)?;
        let target = super::parse(&request.url, &self.rules)?;
        let answers = match target.literal {
            Some(ip) => vec![ip],
            None => self.network.resolve(&target.host).await.map_err(|e| {
                refuse(
                    "resolve_failed",
                    format!("{} does not resolve: {e}", target.host),
                )
            })?,
        };
        let vetted = target.check(answers)?;
        let mut url = vetted.url.clone();
        if target_is_name(&vetted) {
            // The name as vetted (a trailing dot removed): the pinned resolver knows only it.
            url.set_host(Some(&vetted.host))
                .map_err(|e| refuse("bad_url", format!("not a URL: {e}")))?;
        }
        let pinned = Arc::new(Pinned {
            host: vetted.host.clone(),
            addr: SocketAddr::new(
                self.network.route(vetted.connect.ip()),
                vetted.connect.port(),
            ),
        });
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(0)
            .connect_timeout(self.limits.first_byte)
            .dns_resolver(pinned.clone())
            .resolve(&vetted.host, pinned.addr)
            .build()
            .map_err(|e| refuse("tls_config", format!("the HTTP client: {e}")))?;
        let built = http
            .request(request.method, url)
            .headers(headers)
            .body(request.body)
            .build()
            .map_err(|e| refuse("bad_url", format!("the request: {e}")))?;
        let deadline = started + self.limits.total;
        let head_by = (started + self.limits.first_byte).min(deadline);
        let response = match tokio::time::timeout_at(head_by, http.execute(built)).await {
            Err(_) => {
                return Err(refuse(
                    "upstream_timeout",
                    format!(
                        "{} sent no response head within {} ms",
                        vetted.host,
                        head_by.duration_since(started).as_millis()
                    ),
                ));
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(refuse(
                    "connect_failed",
                    format!("connecting to {} ({}) failed", vetted.host, vetted.connect),
                ));
            }
            Ok(Err(e)) => {
                return Err(refuse(
                    "upstream_error",
                    format!("{}: {}", vetted.host, without_url(&e)),
                ));
            }
            Ok(Ok(r)) => r,
        };
        if response.status().is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(super::without_query)
                .unwrap_or_default();
            return Err(refuse(
                "redirect_not_followed",
                format!(
                    "{} answered {} (to {to:?}); redirects are not followed",
                    vetted.host,
                    response.status().as_u16()
                ),
            ));
        }
        if let Some(len) = response.content_length()
            && len > self.limits.response_bytes
        {
            return Err(too_large(self.limits.response_bytes));
        }
        Ok(Upstream {
            status: response.status().as_u16(),
            headers: headers::incoming(response.headers()),
            response,
            received: 0,
            limit: self.limits.response_bytes,
            deadline,
            host: vetted.host,
            decisions: self.decisions.clone(),
        })
    }
}

fn target_is_name(vetted: &super::Vetted) -> bool {
    matches!(vetted.url.host(), Some(url::Host::Domain(_)))
}

fn too_large(limit: u64) -> Refusal {
    refuse(
        "response_too_large",
        format!("the response is larger than {limit} bytes"),
    )
}

/// A reqwest error's text without its URL (which may hold a query string).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &super::without_query(url.as_str()));
    }
    text
}

/// The response: its head, and its body read chunk by chunk within the caps.
pub(crate) struct Upstream {
    /// The status code.
    pub status: u16,
    /// The response headers that pass back ([`headers::incoming`]).
    pub headers: Vec<(String, String)>,
    response: reqwest::Response,
    received: u64,
    limit: u64,
    deadline: Instant,
    host: String,
    decisions: Family<Decision, Counter>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("status", &self.status)
            .field("host", &self.host)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The next piece of the body as it arrives; `None` at its end. A refusal here (a cap,
    /// the upstream failing) is counted and logged like one before sending.
    pub(crate) async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, Refusal> {
        let next = self.next_chunk().await;
        if let Err(r) = &next {
            tracing::warn!(target: "hubworker::egress", host = %self.host, code = r.code, "outbound response ended: {}", r.message);
            self.decisions
                .get_or_create(&Decision {
                    decision: "refused",
                    reason: r.code,
                })
                .inc();
        }
        next
    }

    async fn next_chunk(&mut self) -> Result<Option<bytes::Bytes>, Refusal> {
        let next = tokio::time::timeout_at(self.deadline, self.response.chunk())
            .await
            .map_err(|_| {
                refuse(
                    "upstream_timeout",
                    format!("{} did not finish its response in time", self.host),
                )
            })?
            .map_err(|e| {
                refuse(
                    "upstream_error",
                    format!("{}: {}", self.host, without_url(&e)),
                )
            })?;
        if let Some(bytes) = &next {
            self.received += bytes.len() as u64;
            if self.received > self.limit {
                return Err(too_large(self.limit));
            }
        }
        Ok(next)
    }
}

/// reqwest's resolver for one request: the vetted name answers the vetted address; any other
/// lookup is refused (there is no second lookup).
#[derive(Debug)]
struct Pinned {
    host: String,
    addr: SocketAddr,
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer = if name.as_str() == self.host {
            Ok(self.addr)
        } else {
            Err(format!("egress: {} was not vetted", name.as_str()))
        };
        Box::pin(async move {
            match answer {
                Ok(addr) => Ok(Box::new(std::iter::once(addr)) as reqwest::dns::Addrs),
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
#[path = "tests_client.rs"]
mod tests;
