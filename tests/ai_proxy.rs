//! Issue 22: the AI proxy end to end. A real `hubworker serve` (test build: its egress network
//! answers `api.provider.test` with a public address and connects every request to a loopback
//! HTTPS provider with a throwaway CA), the reference Hub holding the provider's key, `ai`
//! tokens bound to one request, and the key planted as a marker that must appear nowhere but
//! at the provider.

use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::proxy_event::Event;
use hubworker::proto::{ProxyHeader, ProxyRequest};
use hubworker::secret::Secret;
use hubworker::test_provider::TestProvider;
use tonic::Code;

use crate::daemon::Daemon;

const HOST: &str = "api.provider.test";
/// The provider key: a marker searched for everywhere it must not be.
const KEY: &str = "sk-hubworker-MARKER-4f1c9e77";
/// A workflow, for a `run` token.
const RUN_DOC: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id FROM products"},
  {"id": "o", "tool": "output", "input": "q", "name": "ids"}]}"#;

fn ai_config(provider: &TestProvider) -> String {
    format!(
        "[ai]\nca_file = {:?}\nfirst_byte_secs = 2\n\n\
         [ai.providers.testai]\nbase_url = \"https://{HOST}:{port}\"\n\
         paths = [\"/v1/stream\", \"/v1/echo\", \"/v1/redirect\", \"/v1/slow\"]\n\
         headers = [\"anthropic-version\"]\n\n\
         [ai.simulate]\nresolve = {{ \"{HOST}\" = [\"93.184.215.14\"] }}\nconnect = \"127.0.0.1\"\n",
        provider.ca_file.display().to_string(),
        port = provider.port
    )
}

/// An `ai` token for exactly this request.
async fn ai_token(stack: &Stack, provider: &str, method: &str, path: &str, body: &[u8]) -> String {
    let req = hubworker::hub::TokenRequest {
        user: "alice".into(),
        workflow_sha256: hubworker::token::request_sha256(provider, method, path, body),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec![provider.into()],
        scope: "ai".into(),
        audience: "hubworker".into(),
        ttl: Duration::from_secs(60),
    };
    hubworker::hub::issue(&stack.store, &stack.keys, &req, hubworker::hub::now())
        .await
        .expect("issue")
}

fn request(token: String, path: &str, headers: &[(&str, &str)], body: &[u8]) -> ProxyRequest {
    ProxyRequest {
        token,
        provider: "testai".into(),
        method: "POST".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ProxyHeader {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// A refused request: path, method, headers, the status code and reason expected.
type Refused = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    Code,
    &'static str,
);

fn reason(s: &tonic::Status) -> String {
    s.metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn setup() -> (Stack, TestProvider, Daemon) {
    let provider = TestProvider::start(HOST);
    let stack = Stack::start(1, &crate::util::sandboxed(""))
        .await
        .expect("stack");
    stack
        .store
        .add_provider(
            "testai",
            &Secret::new(KEY.into()),
            &stack.keys.at_rest,
            hubworker::hub::now(),
        )
        .await
        .expect("provider");
    let audit = format!(
        "\n[audit]\ndir = {:?}\n",
        stack.dir().join("w-ai-audit").display().to_string()
    );
    let config = format!("{}{audit}", ai_config(&provider));
    let daemon = Daemon::start_logging(&stack, "w-ai", 2, &config, "trace").await;
    (stack, provider, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_streams_the_answer_injects_the_key_and_the_key_shows_nowhere_else() {
    let (stack, provider, daemon) = setup().await;
    let mut client = daemon.client().await;
    let body = br#"{"model":"m","stream":true}"#;
    let token = ai_token(&stack, "testai", "POST", "/v1/stream", body).await;
    let mut stream = client
        .proxy(request(
            token.clone(),
            "/v1/stream",
            &[
                ("content-type", "application/json"),
                ("anthropic-version", "2023-06-01"),
            ],
            body,
        ))
        .await
        .expect("proxy")
        .into_inner();
    let Some(Event::Head(head)) = stream.message().await.expect("head").and_then(|e| e.event)
    else {
        panic!("no head first");
    };
    assert_eq!(head.status, 200);
    assert_eq!(head.headers.len(), 1);
    assert_eq!(head.headers[0].value, "text/event-stream");
    // Chunks arrive while the provider still holds back its last event.
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("data: two") {
        match stream.message().await.expect("chunk").and_then(|e| e.event) {
            Some(Event::Data(d)) => got.extend_from_slice(&d),
            other => panic!("expected data, got {other:?}"),
        }
    }
    provider.release();
    let end = loop {
        match stream.message().await.expect("chunk").and_then(|e| e.event) {
            Some(Event::Data(d)) => got.extend_from_slice(&d),
            Some(Event::End(e)) => break e,
            other => panic!("expected data or end, got {other:?}"),
        }
    };
    assert_eq!(got, b"data: one\n\ndata: two\n\ndata: done\n\n");
    assert_eq!(end.bytes, got.len() as u64);
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen[0].sni.as_deref(), Some(HOST));
    assert_eq!(seen[0].body, body);

    // Single use: the same token again is refused, and nothing reaches the provider.
    let again = client
        .proxy(request(token, "/v1/stream", &[], body))
        .await
        .expect_err("replay");
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");

    let mut statuses = vec![again];
    // A run token cannot use the proxy.
    let run = stack
        .token("alice", RUN_DOC, &["shop"])
        .await
        .expect("run token");
    let s = client
        .proxy(request(run.expose().to_owned(), "/v1/echo", &[], b"{}"))
        .await
        .expect_err("run token");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::PermissionDenied, "wrong_scope")
    );
    statuses.push(s);
    // A token bound to another request.
    let other = ai_token(&stack, "testai", "POST", "/v1/echo", b"{\"a\":1}").await;
    let s = client
        .proxy(request(other, "/v1/echo", &[], b"{\"a\":2}"))
        .await
        .expect_err("other request");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::PermissionDenied, "workflow_mismatch")
    );
    statuses.push(s);

    // Requests the proxy refuses before redeeming: their tokens stay unused.
    let cases: [Refused; 6] = [
        (
            "/v1/admin",
            "POST",
            &[],
            Code::InvalidArgument,
            "path_not_allowed",
        ),
        (
            "/v1/../v1/echo",
            "POST",
            &[],
            Code::InvalidArgument,
            "path_not_allowed",
        ),
        (
            "/v1/echo",
            "DELETE",
            &[],
            Code::InvalidArgument,
            "method_not_allowed",
        ),
        (
            "/v1/echo",
            "POST",
            &[("authorization", "Bearer sw-internal-1")],
            Code::InvalidArgument,
            "internal_token",
        ),
        (
            "/v1/echo",
            "POST",
            &[("x-forwarded-for", "10.0.0.1")],
            Code::InvalidArgument,
            "header_not_allowed",
        ),
        (
            "/v1/echo",
            "POST",
            &[("authorization", "Bearer mine")],
            Code::InvalidArgument,
            "header_not_allowed",
        ),
    ];
    for (path, method, headers, code, why) in cases {
        let token = ai_token(&stack, "testai", method, path, b"{}").await;
        let mut r = request(token, path, headers, b"{}");
        r.method = method.into();
        let s = client.proxy(r).await.expect_err(why);
        assert_eq!((s.code(), reason(&s).as_str()), (code, why), "{s:?}");
        statuses.push(s);
    }
    let s = client
        .proxy(ProxyRequest {
            provider: "elsewhere".into(),
            ..request(String::new(), "/v1/echo", &[], b"{}")
        })
        .await
        .expect_err("unknown provider");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::NotFound, "unknown_provider")
    );
    statuses.push(s);
    assert_eq!(provider.seen().len(), 1, "{:?}", provider.seen());

    // What the provider does wrong does not reach the caller.
    let token = ai_token(&stack, "testai", "POST", "/v1/redirect", b"{}").await;
    let s = client
        .proxy(request(token, "/v1/redirect", &[], b"{}"))
        .await
        .expect_err("redirect");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::FailedPrecondition, "redirect_not_followed")
    );
    statuses.push(s);
    let token = ai_token(&stack, "testai", "POST", "/v1/slow", b"{}").await;
    let s = client
        .proxy(request(token, "/v1/slow", &[], b"{}"))
        .await
        .expect_err("slow");
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (Code::DeadlineExceeded, "upstream_timeout")
    );
    statuses.push(s);

    // One audit record per request whose token was accepted, in order; the streamed one
    // carries the bytes sent.
    let mut records = Vec::new();
    for _ in 0..100 {
        records = stack
            .store
            .audit_records(Some("w-ai"))
            .await
            .expect("records");
        if records.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records: Vec<_> = records
        .iter()
        .map(|s| s.record().expect("record"))
        .collect();
    let summary: Vec<(&str, &str, u64)> = records
        .iter()
        .map(|r| (r.kind.as_str(), r.outcome.as_str(), r.bytes_out))
        .collect();
    assert_eq!(
        summary,
        [
            ("proxy", "ok", got.len() as u64),
            ("proxy", "redirect_not_followed", 0),
            ("proxy", "upstream_timeout", 0),
        ],
        "{records:#?}"
    );
    assert_eq!(records[0].connections, ["testai"]);
    assert_eq!(records[0].sub, "alice");
    for r in &records {
        assert!(!format!("{r:?}").contains("MARKER"));
    }

    // The key: at the provider only.
    for s in &statuses {
        assert!(!format!("{s:?}").contains(KEY), "{s:?}");
    }
    let log = daemon.log();
    assert!(log.contains("outbound request allowed"), "{log}");
    assert!(
        !log.contains(KEY) && !log.contains("MARKER"),
        "the key is in the log"
    );
    let metrics = daemon.scrape();
    assert!(!metrics.contains("MARKER"));
    for line in [
        "hubworker_egress_decisions_total{decision=\"allowed\",reason=\"ok\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"path_not_allowed\"} 2",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"internal_token\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"header_not_allowed\"} 2",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"method_not_allowed\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"unknown_provider\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"redirect_not_followed\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"upstream_timeout\"} 1",
        "hubworker_egress_decisions_total{decision=\"refused\",reason=\"loopback\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_ai_sends_one_request_through_a_worker() {
    let (stack, provider, daemon) = setup().await;
    let d = stack.dir().to_owned();
    std::fs::write(
        d.join("body.json"),
        br#"{"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .expect("body");
    let (db, keys, url) = (
        d.join("hub.db").display().to_string(),
        d.join("keys").display().to_string(),
        daemon.url(),
    );
    let out = tokio::task::spawn_blocking(move || {
        let args = [
            "hub",
            "ai",
            "--db",
            &db,
            "--secrets",
            &keys,
            "--hub-id",
            "demo-hub",
            "--user",
            "alice",
            "--provider",
            "testai",
            "--path",
            "/v1/echo",
            "--body",
            "body.json",
            "--header",
            "content-type: application/json",
            "--worker",
            &url,
        ];
        crate::util::run(&args, "", &d)
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        out.stdout,
        br#"{"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert!(
        stderr.starts_with("status 200\ncontent-type: application/json\nx-request-id: req-1\n"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY));
    assert_eq!(
        provider.seen()[0].header("content-type"),
        Some("application/json")
    );
    stack.shutdown().await;
}
