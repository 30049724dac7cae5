//! Prometheus metrics: every series in one place, named by Prometheus conventions
//! (`hubworker_` prefix, `_total` counters, `_seconds` and `_bytes` units). Labels only ever carry
//! values from closed sets (reason codes of our own enums, gRPC status names), never user data,
//! ids or secrets, so no client can grow the series without bound.
//!
//! Served as OpenMetrics text on `GET /metrics` by [`serve`] (loopback by default; see
//! `[metrics]` in the config).

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `reason` or `code` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    /// The value (from a closed set).
    pub reason: &'static str,
}

/// The `outcome` label of finished runs: `ok`, [`CLIENT_STALLED`], or the gRPC status the run
/// failed with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    /// The value.
    pub outcome: &'static str,
}

/// The `code` label of rejections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Code {
    /// The value.
    pub code: &'static str,
}

/// The worker's series.
pub(crate) struct Metrics {
    registry: Registry,
    /// Runs accepted (token, workflow and slot all fine).
    pub runs_started: Counter,
    /// Runs ended, by outcome.
    pub runs_finished: Family<Outcome, Counter>,
    /// Run wall time, accepted to last event.
    pub run_duration: Histogram,
    /// Runs in flight (set at scrape time).
    pub runs_in_flight: Gauge,
    /// Run slots (set at scrape time).
    pub capacity: Gauge,
    /// 1 while draining.
    pub draining: Gauge,
    /// Query results served from the cache.
    pub cache_hits: Counter,
    /// Query results loaded from the database.
    pub cache_misses: Counter,
    /// Bytes held by the cache (set at scrape time).
    pub cache_bytes: Gauge,
    /// Entries in the cache (set at scrape time).
    pub cache_entries: Gauge,
    /// Tokens refused, by reason.
    pub token_rejections: Family<Reason, Counter>,
    /// SQL refused by the guard, by code.
    pub sql_rejections: Family<Code, Counter>,
    /// Expressions refused by the checker, by code.
    pub expression_rejections: Family<Code, Counter>,
    /// Run children ended by the sandbox or its limits, by reason.
    pub sandbox_kills: Family<Reason, Counter>,
    /// Time to redeem a token with the Hub.
    pub redeem_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series, registered.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hubworker");
        let m = Metrics {
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            // 10 ms .. ~170 min.
            run_duration: Histogram::new(exponential_buckets(0.01, 3.0, 14)),
            runs_in_flight: Gauge::default(),
            capacity: Gauge::default(),
            draining: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            token_rejections: Family::default(),
            sql_rejections: Family::default(),
            expression_rejections: Family::default(),
            sandbox_kills: Family::default(),
            // 0.5 ms .. ~4 s.
            redeem_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register("runs_started", "Runs accepted", m.runs_started.clone());
        registry.register(
            "runs_finished",
            "Runs ended, by outcome (ok, client_stalled, or the gRPC status name)",
            m.runs_finished.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "Run wall time from acceptance to the last event",
            m.run_duration.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs executing now",
            m.runs_in_flight.clone(),
        );
        registry.register("capacity", "Run slots of this worker", m.capacity.clone());
        registry.register(
            "draining",
            "1 while the worker drains (no new runs)",
            m.draining.clone(),
        );
        registry.register(
            "cache_hits",
            "Query results served from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Query results loaded from the database",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_size_bytes",
            "Bytes held by the result cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries in the result cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "token_rejections",
            "Server tokens refused, by reason",
            m.token_rejections.clone(),
        );
        registry.register(
            "sql_rejections",
            "SQL refused by the guard, by code",
            m.sql_rejections.clone(),
        );
        registry.register(
            "expression_rejections",
            "Expressions refused by the checker, by code",
            m.expression_rejections.clone(),
        );
        registry.register(
            "sandbox_kills",
            "Run children ended by the sandbox or a limit, by reason",
            m.sandbox_kills.clone(),
        );
        registry.register(
            "redeem_duration_seconds",
            "Time to redeem a server token with the Hub",
            m.redeem_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every series.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The outcome of a run whose client stopped reading (it lost the run after
/// `limits.send_timeout_secs`): told apart from the runs' own deadlines.
pub(crate) const CLIENT_STALLED: &str = "client_stalled";

/// The outcome label for a gRPC status code.
pub(crate) fn outcome(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Serves `GET /metrics` on `listener` until `stop` resolves; `refresh` runs before each
/// scrape to set the gauges.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    refresh: Arc<dyn Fn(&Metrics) + Send + Sync>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, refresh) = (metrics.clone(), refresh.clone());
            async move {
                refresh(&metrics);
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

/// Binds the metrics listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_rendered_with_prometheus_names() {
        let m = Metrics::new();
        m.runs_started.inc();
        m.runs_finished
            .get_or_create(&Outcome { outcome: "ok" })
            .inc();
        m.token_rejections
            .get_or_create(&Reason { reason: "expired" })
            .inc();
        m.run_duration.observe(0.2);
        let text = m.render();
        for needle in [
            "hubworker_runs_started_total 1",
            "hubworker_runs_finished_total{outcome=\"ok\"} 1",
            "hubworker_token_rejections_total{reason=\"expired\"} 1",
            "hubworker_run_duration_seconds_bucket",
            "hubworker_capacity ",
            "hubworker_cache_size_bytes ",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert_eq!(
            outcome(tonic::Code::ResourceExhausted),
            "resource_exhausted"
        );
    }
}
