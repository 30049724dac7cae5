//! Issue 16, points 6 and 11, against a real daemon process. `Cancel` needs the run's cancel
//! secret from its `Accepted` event (a run id alone, which is in log lines, cancels nothing),
//! and the secret never reaches the log. `Validate` does not consume its token, so each token
//! has a budget of validations; validations run on blocking threads behind a bound, and
//! `Status` keeps answering while many large ones run.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::{
    CancelRequest, ExecuteRequest, StatusRequest, ValidateRequest, execute_event::Event,
};

use crate::daemon::Daemon;
use crate::util::{cross_join, reason, sandboxed};

const REVENUE: &str = include_str!("../examples/revenue_by_region.json");

fn request(token: &hubworker::secret::Secret, doc: &str) -> ExecuteRequest {
    ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: false,
        update_cache: false,
        params_json: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_needs_the_runs_secret_and_the_secret_is_never_logged() {
    let stack = Stack::start(1, &sandboxed("")).await.unwrap();
    let daemon = Daemon::start(&stack, "cancel-worker", 2, "").await;
    // Two runs that take seconds each.
    let (doc_a, doc_b) = (cross_join(6_000), cross_join(5_999));
    let mut client = daemon.client().await;
    let token = stack.token("alice", &doc_a, &[]).await.unwrap();
    let mut a_stream = client
        .execute(request(&token, &doc_a))
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Accepted(a)) = a_stream.message().await.unwrap().unwrap().event else {
        panic!("Accepted first")
    };
    let token = stack.token("bob", &doc_b, &[]).await.unwrap();
    let mut b_stream = client
        .execute(request(&token, &doc_b))
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Accepted(b)) = b_stream.message().await.unwrap().unwrap().event else {
        panic!("Accepted first")
    };
    assert_eq!(a.cancel_secret.len(), 64);
    assert!(a.cancel_secret.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.cancel_secret, b.cancel_secret);

    // No secret, another run's secret, a secret one digit off: refused; the runs go on.
    let mut flipped = a.cancel_secret.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for secret in ["", b.cancel_secret.as_str(), flipped.as_str()] {
        let e = client
            .cancel(CancelRequest {
                run_id: a.run_id.clone(),
                cancel_secret: secret.to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (tonic::Code::PermissionDenied, "cancel_not_authorized")
        );
    }
    let status = client.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.runs_in_flight, 2);
    // An unknown run: nothing to cancel.
    let unknown = client
        .cancel(CancelRequest {
            run_id: "0123456789abcdef0123456789abcdef".into(),
            cancel_secret: a.cancel_secret.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.cancelled);

    // With its own secret, each run is cancelled.
    for (run, stream) in [(&a, &mut a_stream), (&b, &mut b_stream)] {
        let done = client
            .cancel(CancelRequest {
                run_id: run.run_id.clone(),
                cancel_secret: run.cancel_secret.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(done.cancelled);
        let mut code = None;
        while let Some(e) = stream.message().await.unwrap() {
            if let Some(Event::Error(e)) = e.event {
                code = Some(e.code);
                break;
            }
        }
        assert_eq!(code.as_deref(), Some("cancelled"));
        // The RunError is the last event; the status that ends the stream has the same code.
        let end = stream.message().await.unwrap_err();
        assert_eq!(
            (end.code(), reason(&end).as_str()),
            (tonic::Code::Cancelled, "cancelled")
        );
    }
    // The log has the runs (their ids) but never their secrets.
    let log = daemon.log();
    assert!(log.contains(&a.run_id), "{log}");
    for secret in [&a.cancel_secret, &b.cancel_secret] {
        assert!(!log.contains(secret.as_str()));
    }
}

/// A 2.4 MB workflow: 40,000 inline rows, then a formula, a filter and a summary.
fn large_document(tag: usize) -> String {
    let rows: Vec<String> = (0..40_000)
        .map(|i| {
            format!(
                "[\"customer-{:06}\", {i}, {}.25, \"region-{}\"]",
                i % 977,
                i % 1000,
                i % 7
            )
        })
        .collect();
    format!(
        r#"{{"version": 1, "nodes": [
          {{"id": "a", "tool": "inline", "columns": [{{"name": "c", "type": "String"}}, {{"name": "n", "type": "Int64"}}, {{"name": "p", "type": "Float64"}}, {{"name": "r", "type": "String"}}], "rows": [{}]}},
          {{"id": "f", "tool": "formula", "input": "a", "formulas": [{{"column": "v", "expression": "pl.col('p') * pl.col('n') + {tag}"}}]}},
          {{"id": "w", "tool": "filter", "input": "f", "expression": "pl.col('v') > 10"}},
          {{"id": "s", "tool": "summarize", "input": "w", "group_by": ["r"], "aggregations": [{{"op": "sum", "column": "v", "as": "total"}}]}},
          {{"id": "o", "tool": "output", "input": "s", "name": "out"}}]}}"#,
        rows.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validate_is_budgeted_per_token_and_bounded_off_the_runtime() {
    let stack = Stack::start(1, &sandboxed("")).await.unwrap();
    let daemon = Daemon::start(
        &stack,
        "validate-worker",
        2,
        "[limits]\nvalidations_per_token = 3\n",
    )
    .await;
    let mut client = daemon.client().await;
    let validate = |token: &hubworker::secret::Secret, doc: &str| ValidateRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        params_json: String::new(),
    };

    // Three validations per token; the fourth is refused with its code.
    let token = stack.token("alice", REVENUE, &["shop"]).await.unwrap();
    for _ in 0..3 {
        let v = client.validate(validate(&token, REVENUE)).await.unwrap();
        assert!(v.into_inner().valid);
    }
    let e = client
        .validate(validate(&token, REVENUE))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (
            tonic::Code::ResourceExhausted,
            "validation_budget_exhausted"
        )
    );
    // Invalid documents count too (the work was done), and the budget outlives them.
    let e = client.validate(validate(&token, "{}")).await.unwrap_err();
    assert_eq!(reason(&e), "validation_budget_exhausted");
    // The token was never consumed: it still runs, once.
    let mut stream = client
        .execute(request(&token, REVENUE))
        .await
        .unwrap()
        .into_inner();
    let mut finished = false;
    while let Some(e) = stream.message().await.unwrap() {
        finished |= matches!(e.event, Some(Event::Finished(_)));
    }
    assert!(finished);
    // Another token has its own budget.
    let other = stack.token("bob", REVENUE, &["shop"]).await.unwrap();
    assert!(
        client
            .validate(validate(&other, REVENUE))
            .await
            .unwrap()
            .into_inner()
            .valid
    );

    // Forty large validations at once (each with its own token): they run a few at a time on
    // blocking threads (the rest wait briefly or are refused as busy), and Status answers
    // throughout.
    let mut calls = Vec::new();
    for i in 0..40 {
        let doc = large_document(i);
        let token = stack.token("bob", &doc, &[]).await.unwrap();
        let mut client = daemon.client().await;
        calls.push(tokio::spawn(async move {
            client
                .validate(ValidateRequest {
                    token: token.expose().to_owned(),
                    workflow_json: doc,
                    params_json: String::new(),
                })
                .await
        }));
    }
    let mut answered = 0;
    while !calls.iter().all(|c| c.is_finished()) {
        let status = tokio::time::timeout(Duration::from_secs(5), client.status(StatusRequest {}))
            .await
            .expect("Status answers while validations run")
            .unwrap();
        assert_eq!(status.into_inner().worker_id, "validate-worker");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered > 0);
    let (mut valid, mut busy) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(v) => {
                assert!(v.into_inner().valid);
                valid += 1;
            }
            Err(e) => {
                assert_eq!(
                    (e.code(), reason(&e).as_str()),
                    (tonic::Code::ResourceExhausted, "validation_busy")
                );
                busy += 1;
            }
        }
    }
    assert_eq!(valid + busy, 40);
    assert!(valid >= 4, "{valid} validated, {busy} refused as busy");
}
