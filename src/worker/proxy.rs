//! The AI proxy (`Proxy`): one request to an operator-configured provider, authorised by an
//! `ai` token bound to that request, with the provider's key from the Hub injected here.
//!
//! Order: the provider, the method, the path, the headers and the body size (nothing is
//! redeemed when one fails); the token (scope `ai`, the provider in `connections`, the
//! request's hash in `workflow_sha256`), consumed; Redeem (the sealed key, opened here and
//! never sent back); then [`crate::egress::Client::send`] (the address rules, the caps). The
//! caller gets the response head and the body as it arrives.

use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{RunFailure, Worker};
use crate::config::Config;
use crate::creds::ProviderKey;
use crate::egress::headers::Injected;
use crate::egress::{Client, Outbound, Refusal, Upstream};
use crate::proto::ProxyRequest;
use crate::token::{Expect, Scope};

/// The egress client the worker's `[ai]` section describes, counting into `metrics`.
pub(super) fn egress_client(
    config: &Config,
    metrics: &crate::metrics::Metrics,
) -> Result<Client, String> {
    let ai = &config.ai;
    let tls = crate::egress::client::tls_config(ai.ca_file.as_deref())?;
    let network: Arc<dyn crate::egress::Network> = network(config);
    Ok(Client::new(
        ai.rules(),
        ai.limits(),
        tls,
        network,
        metrics.egress_decisions.clone(),
    ))
}

#[cfg(feature = "testing")]
fn network(config: &Config) -> Arc<dyn crate::egress::Network> {
    match &config.ai.simulate {
        Some(s) => Arc::new(crate::egress::client::Simulated {
            answers: s.resolve.clone(),
            connect: s.connect,
        }),
        None => Arc::new(crate::egress::SystemNetwork),
    }
}

#[cfg(not(feature = "testing"))]
fn network(_: &Config) -> Arc<dyn crate::egress::Network> {
    Arc::new(crate::egress::SystemNetwork)
}

fn refusal(code: &'static str, message: String) -> Refusal {
    Refusal { code, message }
}

impl Worker {
    /// Checks, redeems and sends one proxy request; the response is still to be read. Once
    /// the token is accepted, `record` holds the request's audit record.
    pub(crate) async fn proxy(
        &self,
        req: ProxyRequest,
        record: &mut Option<crate::audit::Entry>,
    ) -> Result<Upstream, RunFailure> {
        let config = self.config();
        let egress = self.egress.as_ref().map_err(|e| {
            tracing::error!("the AI proxy's TLS settings are unusable: {e}");
            RunFailure::Egress(refusal("tls_config", "the proxy is not usable here".into()))
        })?;
        let ProxyRequest {
            token,
            provider: name,
            method,
            path,
            headers,
            body,
        } = req;
        let Some(provider) = config.ai.providers.get(&name) else {
            return Err(RunFailure::Egress(egress.refused(
                "",
                refusal(
                    "unknown_provider",
                    format!("no provider {name:?} is configured on this worker"),
                ),
            )));
        };
        let url = format!("{}{path}", provider.base_url.trim_end_matches('/'));
        let refuse =
            |code, message| RunFailure::Egress(egress.refused(&url, refusal(code, message)));
        let method = match method.as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            other => {
                return Err(refuse(
                    "method_not_allowed",
                    format!("method {other:?} is not allowed (GET, POST)"),
                ));
            }
        };
        if !provider.paths.contains(&path) {
            return Err(refuse(
                "path_not_allowed",
                format!("path {path:?} is not one of provider {name:?}'s paths"),
            ));
        }
        if body.len() > config.ai.request_max_bytes {
            return Err(refuse(
                "request_too_large",
                format!(
                    "the request body is {} bytes; the limit is {}",
                    body.len(),
                    config.ai.request_max_bytes
                ),
            ));
        }
        let headers: Vec<(String, String)> =
            headers.into_iter().map(|h| (h.name, h.value)).collect();
        // The headers are checked before the token is consumed (the key's header stands in
        // with an empty value).
        let placeholder = Injected {
            name: provider.key_header.clone(),
            value: Zeroizing::new(String::new()),
        };
        if let Err(r) =
            crate::egress::headers::outgoing(&headers, &provider.headers, Some(placeholder))
        {
            return Err(RunFailure::Egress(egress.refused(&url, r)));
        }
        let hash = crate::token::request_sha256(&name, method.as_str(), &path, &body);
        let key = self
            .provider_key(&config, &token, &name, &hash, record)
            .await?;
        let injected = Injected {
            name: provider.key_header.clone(),
            value: Zeroizing::new(format!("{}{}", provider.key_prefix, key.api_key.expose())),
        };
        drop(key);
        let outbound = Outbound {
            method,
            url,
            headers,
            extra_allowed: provider.headers.clone(),
            body,
        };
        egress
            .send(outbound, Some(injected))
            .await
            .map_err(RunFailure::Egress)
    }

    /// Verifies the `ai` token for this provider and request, redeems it, and opens the
    /// provider's key.
    async fn provider_key(
        &self,
        config: &Config,
        token: &str,
        provider: &str,
        hash: &str,
        record: &mut Option<crate::audit::Entry>,
    ) -> Result<ProviderKey, RunFailure> {
        let expect = Expect {
            scope: Scope::Ai,
            workflow_sha256: Some(hash),
            params_sha256: None,
            connections: &[provider],
            consume: true,
        };
        self.learn_kid_of(token).await;
        let verified = self
            .verifier()
            .verify(token, &expect, crate::token::now())
            .map_err(|e| {
                let f = RunFailure::Token(e);
                self.record_refusal(&f, token);
                f
            })?;
        *record = Some(super::audit_sender::entry(
            "proxy",
            &super::runs::random_id(),
            &verified.claims,
        ));
        let sealed = self.redeem(&verified).await?;
        let Some(sealed) = sealed.iter().find(|s| s.connection == provider) else {
            return Err(RunFailure::Hub(crate::hub_client::HubCallError::BadAnswer(
                format!("no key for provider {provider:?}"),
            )));
        };
        let ttl = Duration::from_secs(config.tokens.credential_ttl_secs);
        ProviderKey::open(self.hub.transport_key(), provider, &sealed.sealed, ttl)
            .map_err(|e| RunFailure::Hub(e.into()))
    }
}
