//! The standard gRPC services every server of this crate serves beside its own: health
//! (`grpc.health.v1.Health`) and server reflection in both versions (`grpc.reflection.v1` and
//! `grpc.reflection.v1alpha`: grpcurl before 1.9 and other clients still in use ask for
//! v1alpha), so standard tools work without proto files. Each server advertises only the
//! services it serves (the worker never lists `hubworker.v1.Hub`, nor the Hub `Worker`).
//! Knows nothing of what those services do.

use std::sync::atomic::{AtomicBool, Ordering};

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;
use tonic_reflection::server::{v1, v1alpha};

/// The health service's name.
pub(crate) const HEALTH: &str = "grpc.health.v1.Health";
/// Reflection, v1.
pub(crate) const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
/// Reflection, v1alpha.
pub(crate) const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// The health statuses of a server (`""`) and its services, as one: SERVING from the start,
/// NOT_SERVING once (a drain, then the stop), then gone (the stop).
#[derive(Debug)]
pub(crate) struct Health {
    reporter: HealthReporter,
    services: &'static [&'static str],
    serving: AtomicBool,
}

impl Health {
    /// Health for the server (`""`) and each of `services`, all SERVING, and its service.
    pub(crate) async fn new(
        services: &'static [&'static str],
    ) -> (
        Health,
        HealthServer<impl tonic_health::pb::health_server::Health>,
    ) {
        let (reporter, server) = tonic_health::server::health_reporter();
        for name in services {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let health = Health {
            reporter,
            services,
            serving: AtomicBool::new(true),
        };
        (health, server)
    }

    /// The server (`""`) and the services.
    fn names(&self) -> impl Iterator<Item = &'static str> + use<> {
        std::iter::once("").chain(self.services.iter().copied())
    }

    /// NOT_SERVING for the server and every service (a drain): `Check` says so, and each open
    /// `Watch` stream gets the change, once.
    pub(crate) async fn not_serving(&self) {
        if self.serving.swap(false, Ordering::SeqCst) {
            for name in self.names() {
                self.reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        }
    }

    /// The server stops: NOT_SERVING (if not said already), then the statuses are dropped,
    /// which ends every open `Watch` stream, so none holds the server open.
    pub(crate) async fn stop(&mut self) {
        self.not_serving().await;
        for name in self.names() {
            self.reporter.clear_service_status(name).await;
        }
    }
}

/// Reflection v1 and v1alpha over this crate's contract, advertising exactly `services`,
/// health and the two reflection services.
#[allow(clippy::type_complexity)]
pub(crate) fn reflection(
    services: &[&str],
) -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            // Registered above, both versions, for both services.
            .include_reflection_service(false);
        for name in services
            .iter()
            .chain(&[HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA])
        {
            b = b.with_service_name(*name);
        }
        b
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
