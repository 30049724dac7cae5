//! Prometheus metrics: every series in one place, named by Prometheus conventions
//! (`hubworker_` prefix, `_total` counters, `_seconds` and `_bytes` units, the standard
//! `process_*` series). Labels only ever carry values from closed sets (reason codes of our own
//! enums, gRPC status names), never user data, ids or secrets, so no client can grow the series
//! without bound; every known label value is there from the start, at 0.
//!
//! Served on `GET /metrics` by [`serve`] (loopback by default; see `[metrics]` in the config)
//! in the format the scrape asks for: OpenMetrics 1.0.0 or the Prometheus text format 0.0.4
//! (`exposition.rs`).

mod exposition;
mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub(crate) use exposition::Format;

/// A `reason` label.
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

/// The labels of `hubworker_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
    protocol: &'static str,
    arch: &'static str,
}

/// Why `Execute` was refused before anything was checked: the `reason` label of
/// `hubworker_runs_refused_total`.
pub(crate) const OVER_CAPACITY: &str = "over_capacity";
/// A draining worker's refusal.
pub(crate) const DRAINING: &str = "draining";

/// The worker's series.
pub(crate) struct Metrics {
    registry: Registry,
    /// Runs accepted (token, workflow and slot all fine).
    pub runs_started: Counter,
    /// Runs ended, by outcome.
    pub runs_finished: Family<Outcome, Counter>,
    /// `Execute` calls refused at admission, by reason ([`OVER_CAPACITY`], [`DRAINING`]).
    pub runs_refused: Family<Reason, Counter>,
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
    /// Audit records waiting in the spool for the Hub.
    pub audit_waiting: Gauge,
    /// Tasks refused (or records not spooled) because the audit spool was full.
    pub audit_spool_full: Counter,
    /// `Report` calls the Hub did not answer or refused.
    pub audit_report_failures: Counter,
    /// Outbound requests (the AI proxy), by decision and reason.
    pub egress_decisions: Family<crate::egress::client::Decision, Counter>,
    /// Time to redeem a token with the Hub.
    pub redeem_duration: Histogram,
    /// Heartbeats the Hub did not answer or refused.
    pub hub_heartbeat_failures: Counter,
    /// 1 while the last call to the Hub's worker API (registration, heartbeat) succeeded.
    pub hub_connected: Gauge,
    /// Unix time of the last successful registration or heartbeat.
    pub hub_last_contact: Gauge<f64, AtomicU64>,
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
    /// Every series, registered, each labelled family with every known label value at 0.
    pub(crate) fn new() -> Metrics {
        let m = Metrics {
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            runs_refused: Family::default(),
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
            egress_decisions: Family::default(),
            audit_waiting: Gauge::default(),
            audit_spool_full: Counter::default(),
            audit_report_failures: Counter::default(),
            // 0.5 ms .. ~4 s.
            redeem_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            hub_heartbeat_failures: Counter::default(),
            hub_connected: Gauge::default(),
            hub_last_contact: Gauge::default(),
            registry: Registry::default(),
        };
        m.preinit();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::ProcessCollector));
        let r = registry.sub_registry_with_prefix("hubworker");
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
                protocol: "hubworker.v1",
                arch: std::env::consts::ARCH,
            })
            .set(1);
        r.register(
            "build_info",
            "The worker's version and protocol (always 1)",
            build,
        );
        r.register("runs_started", "Runs accepted", m.runs_started.clone());
        r.register(
            "runs_finished",
            "Runs ended, by outcome (ok, client_stalled, or the gRPC status name)",
            m.runs_finished.clone(),
        );
        r.register(
            "runs_refused",
            "Execute calls refused at admission, by reason (over_capacity: all slots taken, \
             try another worker; draining)",
            m.runs_refused.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Run wall time from acceptance to the last event",
            m.run_duration.clone(),
        );
        r.register(
            "runs_in_flight",
            "Runs executing now",
            m.runs_in_flight.clone(),
        );
        r.register("capacity", "Run slots of this worker", m.capacity.clone());
        r.register(
            "draining",
            "1 while the worker drains (no new runs)",
            m.draining.clone(),
        );
        r.register(
            "cache_hits",
            "Query results served from the cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Query results loaded from the database",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_size_bytes",
            "Bytes held by the result cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "cache_entries",
            "Entries in the result cache",
            m.cache_entries.clone(),
        );
        r.register(
            "token_rejections",
            "Server tokens refused, by reason",
            m.token_rejections.clone(),
        );
        r.register(
            "sql_rejections",
            "SQL refused by the guard, by code",
            m.sql_rejections.clone(),
        );
        r.register(
            "expression_rejections",
            "Expressions refused by the checker, by code",
            m.expression_rejections.clone(),
        );
        r.register(
            "sandbox_kills",
            "Run children ended by the sandbox or a limit, by reason",
            m.sandbox_kills.clone(),
        );
        r.register(
            "audit_records_waiting",
            "Audit records in the spool, not yet taken by the Hub",
            m.audit_waiting.clone(),
        );
        r.register(
            "audit_spool_full",
            "Tasks refused because the audit spool was full (the Hub has not taken records)",
            m.audit_spool_full.clone(),
        );
        r.register(
            "audit_report_failures",
            "Report calls (audit records to the Hub) that failed; the records wait",
            m.audit_report_failures.clone(),
        );
        r.register(
            "egress_decisions",
            "Outbound requests (the AI proxy), by decision (allowed, refused) and reason (ok, or \
             the refusal code)",
            m.egress_decisions.clone(),
        );
        r.register(
            "redeem_duration_seconds",
            "Time to redeem a server token with the Hub",
            m.redeem_duration.clone(),
        );
        r.register(
            "hub_heartbeat_failures",
            "Heartbeats the Hub did not answer or refused",
            m.hub_heartbeat_failures.clone(),
        );
        r.register(
            "hub_connected",
            "1 while the last registration or heartbeat with the Hub succeeded",
            m.hub_connected.clone(),
        );
        r.register(
            "hub_last_contact_timestamp_seconds",
            "Unix time of the last successful registration or heartbeat with the Hub",
            m.hub_last_contact.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Every known label value of every labelled family, at 0: a family is there (and
    /// `rate()` works) before its first event.
    fn preinit(&self) {
        fn zero<L>(family: &Family<L, Counter>, labels: L)
        where
            L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync,
        {
            drop(family.get_or_create(&labels));
        }
        let outcomes = (0..=16)
            .map(|c| outcome(tonic::Code::from_i32(c)))
            .chain([CLIENT_STALLED]);
        for outcome in outcomes {
            zero(&self.runs_finished, Outcome { outcome });
        }
        for reason in [OVER_CAPACITY, DRAINING] {
            zero(&self.runs_refused, Reason { reason });
        }
        for r in crate::token::Reason::ALL {
            zero(&self.token_rejections, Reason { reason: r.code() });
        }
        for c in crate::sql::ErrorCode::ALL {
            zero(&self.sql_rejections, Code { code: c.as_str() });
        }
        for c in crate::expr::ErrorCode::ALL {
            zero(&self.expression_rejections, Code { code: c.as_str() });
        }
        for reason in crate::sandbox::Exit::CODES {
            zero(&self.sandbox_kills, Reason { reason });
        }
        zero(
            &self.egress_decisions,
            crate::egress::client::Decision {
                decision: "allowed",
                reason: "ok",
            },
        );
        for reason in crate::egress::client::CODES {
            zero(
                &self.egress_decisions,
                crate::egress::client::Decision {
                    decision: "refused",
                    reason,
                },
            );
        }
    }

    /// A successful registration or heartbeat: connected, and when.
    pub(crate) fn hub_contact_ok(&self) {
        self.hub_connected.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.hub_last_contact.set(now);
    }

    /// A failed heartbeat.
    pub(crate) fn hub_contact_failed(&self) {
        self.hub_connected.set(0);
        self.hub_heartbeat_failures.inc();
    }

    /// Every series in `format`.
    pub(crate) fn render(&self, format: Format) -> String {
        exposition::render(&self.registry, format)
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
/// scrape to set the gauges. The format follows the scrape's `Accept` header.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    refresh: Arc<dyn Fn(&Metrics) + Send + Sync>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header::{ACCEPT, CONTENT_TYPE};
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (metrics, refresh) = (metrics.clone(), refresh.clone());
            async move {
                let accept: Vec<&str> = headers
                    .get_all(ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                let format = Format::negotiate(&accept.join(","));
                refresh(&metrics);
                (
                    [(CONTENT_TYPE, format.content_type())],
                    metrics.render(format),
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
    fn every_series_is_rendered_with_prometheus_names_in_both_formats() {
        let m = Metrics::new();
        m.runs_started.inc();
        m.runs_finished
            .get_or_create(&Outcome { outcome: "ok" })
            .inc();
        m.token_rejections
            .get_or_create(&Reason {
                reason: "token_expired",
            })
            .inc();
        m.run_duration.observe(0.2);
        let om = m.render(Format::OpenMetrics);
        let text = m.render(Format::Text);
        for needle in [
            "hubworker_runs_started_total 1\n",
            "hubworker_runs_finished_total{outcome=\"ok\"} 1\n",
            "hubworker_runs_finished_total{outcome=\"resource_exhausted\"} 0\n",
            "hubworker_runs_refused_total{reason=\"over_capacity\"} 0\n",
            "hubworker_token_rejections_total{reason=\"token_expired\"} 1\n",
            "hubworker_token_rejections_total{reason=\"unknown_kid\"} 0\n",
            "hubworker_sql_rejections_total{code=\"not_read_only\"} 0\n",
            "hubworker_expression_rejections_total{code=\"forbidden_name\"} 0\n",
            "hubworker_sandbox_kills_total{reason=\"memory_limit\"} 0\n",
            "hubworker_hub_heartbeat_failures_total 0\n",
            "hubworker_hub_connected 0\n",
            "hubworker_run_duration_seconds_bucket",
            "hubworker_capacity ",
            "hubworker_cache_size_bytes ",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(om.contains(needle), "{needle} missing from\n{om}");
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let build = format!(
            "hubworker_build_info{{version=\"{}\",protocol=\"hubworker.v1\",arch=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert!(om.contains(&build) && text.contains(&build), "{om}");
        // OpenMetrics: counter families are named without `_total`, and the text ends in EOF.
        assert!(
            om.contains("# TYPE hubworker_runs_started counter\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
        // 0.0.4: HELP and TYPE carry the sample's full name; no EOF.
        assert!(
            text.contains("# TYPE hubworker_runs_started_total counter\n")
                && text.contains("# HELP hubworker_runs_started_total Runs accepted.\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        assert_eq!(
            outcome(tonic::Code::ResourceExhausted),
            "resource_exhausted"
        );
    }

    #[test]
    fn hub_contact_sets_the_gauges() {
        let m = Metrics::new();
        m.hub_contact_ok();
        assert_eq!(m.hub_connected.get(), 1);
        assert!(m.hub_last_contact.get() > 1.6e9);
        m.hub_contact_failed();
        assert_eq!(m.hub_connected.get(), 0);
        assert_eq!(m.hub_heartbeat_failures.get(), 1);
    }
}
