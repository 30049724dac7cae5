//! Issue 18 point 2, with a real `hubworker serve` process: SIGTERM turns health NOT_SERVING
//! for the server (`""`) and for `hubworker.v1.Worker`, open `Watch` streams see it and then
//! end, and a stream that would never end by itself (a reflection stream whose client keeps
//! its side open) cannot hold the process: it exits 0 anyway, past the stop deadline.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use hubworker::demo::Stack;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::daemon::Daemon;

/// A connection of its own (a Watch and a reflection stream each hold theirs).
async fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Every status a `Watch` on `service` sends until its stream ends, and how it ends.
async fn watch(
    url: String,
    service: &'static str,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    tokio::task::JoinHandle<(Vec<ServingStatus>, Result<(), tonic::Status>)>,
) {
    let mut health = HealthClient::new(channel(&url).await);
    let mut stream = health
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut first_tx = Some(first_tx);
        loop {
            match stream.message().await {
                Ok(Some(r)) => {
                    seen.push(r.status());
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(None) => return (seen, Ok(())),
                Err(s) => return (seen, Err(s)),
            }
        }
    });
    (first, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_turns_health_not_serving_ends_watches_and_no_stream_holds_the_process() {
    let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
    let mut daemon = Daemon::start(&stack, "drain", 2, "").await;
    let url = daemon.url();

    // Both probes SERVING before.
    let mut health = HealthClient::new(channel(&url).await);
    for service in ["", "hubworker.v1.Worker"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    drop(health);
    let (server_first, server_watch) = watch(url.clone(), "").await;
    let (worker_first, worker_watch) = watch(url.clone(), "hubworker.v1.Worker").await;
    server_first.await.unwrap();
    worker_first.await.unwrap();

    // A reflection stream whose client never closes its side: only the stop deadline ends it.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
    };
    let (requests, rx) = tokio::sync::mpsc::channel::<ServerReflectionRequest>(4);
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .unwrap();
    let mut held = ServerReflectionClient::new(channel(&url).await)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert!(held.message().await.unwrap().is_some(), "the list answered");

    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();

    // Each Watch saw SERVING, then NOT_SERVING once, then its stream ended cleanly.
    for (service, task) in [("", server_watch), ("hubworker.v1.Worker", worker_watch)] {
        let (seen, end) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap_or_else(|_| panic!("the {service:?} Watch did not end: {}", daemon.log()))
            .unwrap();
        assert_eq!(
            seen,
            [ServingStatus::Serving, ServingStatus::NotServing],
            "{service:?}"
        );
        assert!(end.is_ok(), "{service:?}: {end:?}");
    }

    // The process exits 0 although the reflection stream is still open on the client's side.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = daemon.process().try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon is still running: {}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("streams still open at the stop deadline"),
        "the held stream was closed by the deadline: {log}"
    );
    assert!(held.message().await.is_err(), "the held stream was cut");
    drop(requests);
    stack.shutdown().await;
}
