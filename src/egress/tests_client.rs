//! The client against a loopback HTTPS provider ([`crate::test_provider`]), through a network
//! whose resolver answers what each test says and whose connections all go to the provider:
//! so an allowed request reaches it, and every hostile one is refused with its reason.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::egress::tests::{HOSTILE, PUBLIC};
use crate::test_provider::TestProvider;

const HOST: &str = "api.provider.test";

/// Answers from a queue (the last one repeats), routes every connection to loopback (the
/// port is the URL's), and records both.
struct Fake {
    answers: Mutex<VecDeque<Vec<IpAddr>>>,
    resolves: AtomicUsize,
    routed: Mutex<Vec<IpAddr>>,
}

impl Network for Fake {
    fn resolve(&self, _: &str) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        let mut q = self.answers.lock().expect("answers");
        let answer = if q.len() > 1 {
            q.pop_front()
        } else {
            q.front().cloned()
        };
        Box::pin(async move { answer.ok_or_else(|| "no answer".to_owned()) })
    }

    fn route(&self, vetted: IpAddr) -> IpAddr {
        self.routed.lock().expect("routed").push(vetted);
        IpAddr::from([127, 0, 0, 1])
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().expect("address")).collect()
}

fn fake(answers: &[&[&str]]) -> Arc<Fake> {
    Arc::new(Fake {
        answers: Mutex::new(answers.iter().map(|a| ips(a)).collect()),
        resolves: AtomicUsize::new(0),
        routed: Mutex::new(Vec::new()),
    })
}

const LIMITS: Limits = Limits {
    request_bytes: 1024 * 1024,
    response_bytes: 1024 * 1024,
    total: Duration::from_secs(10),
    first_byte: Duration::from_secs(1),
};

fn client(provider: &TestProvider, network: Arc<Fake>) -> (Client, Family<Decision, Counter>) {
    let decisions = Family::default();
    let tls = tls_config(Some(&provider.ca_file)).expect("tls");
    let c = Client::new(Rules::default(), LIMITS, tls, network, decisions.clone());
    (c, decisions)
}

fn post(provider: &TestProvider, path: &str, headers: &[(&str, &str)]) -> Outbound {
    Outbound {
        method: reqwest::Method::POST,
        url: format!("https://{HOST}:{}{path}", provider.port),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        extra_allowed: vec!["anthropic-version".into()],
        body: br#"{"model":"m","messages":[]}"#.to_vec(),
    }
}

fn key() -> Option<Injected> {
    Some(Injected {
        name: "authorization".into(),
        value: zeroize::Zeroizing::new("Bearer provider-key-1".into()),
    })
}

#[tokio::test]
async fn an_allowed_request_goes_to_the_vetted_address_keeps_its_name_and_streams_back() {
    let provider = TestProvider::start(HOST);
    let net = fake(&[&[PUBLIC]]);
    let (c, decisions) = client(&provider, net.clone());
    let request = post(
        &provider,
        "/v1/stream?trace=1",
        &[
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
    );
    let mut up = c.send(request, key()).await.expect("allowed");
    assert_eq!(up.status, 200);
    assert_eq!(
        up.headers,
        vec![("content-type".to_owned(), "text/event-stream".to_owned())]
    );
    // The first events arrive while the provider still holds back the last one.
    let mut got = String::new();
    while !got.contains("data: two") {
        let chunk = up.chunk().await.expect("chunk").expect("more");
        got.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert!(!got.contains("done"), "{got}");
    provider.release();
    while let Some(chunk) = up.chunk().await.expect("chunk") {
        got.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
    assert_eq!(got, "data: one\n\ndata: two\n\ndata: done\n\n");

    assert_eq!(net.resolves.load(Ordering::SeqCst), 1);
    assert_eq!(*net.routed.lock().expect("routed"), ips(&[PUBLIC]));
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.sni.as_deref(), Some(HOST));
    assert_eq!(s.path, "/v1/stream?trace=1");
    assert_eq!(
        s.header("host"),
        Some(format!("{HOST}:{}", provider.port).as_str())
    );
    assert_eq!(s.header("authorization"), Some("Bearer provider-key-1"));
    assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
    let mut names: Vec<&str> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "anthropic-version",
            "authorization",
            "content-length",
            "content-type",
            "host"
        ]
    );
    let allowed = Decision {
        decision: "allowed",
        reason: "ok",
    };
    assert_eq!(decisions.get_or_create(&allowed).get(), 1);
}

#[tokio::test]
async fn rebinding_cannot_change_the_target_the_name_is_resolved_once() {
    let provider = TestProvider::start(HOST);
    // First answer public, every later one the metadata address.
    let net = fake(&[&[PUBLIC], &["169.254.169.254"]]);
    let (c, _) = client(&provider, net.clone());
    let mut up = c
        .send(post(&provider, "/v1/echo", &[]), key())
        .await
        .expect("allowed");
    while up.chunk().await.expect("chunk").is_some() {}
    assert_eq!(net.resolves.load(Ordering::SeqCst), 1);
    assert_eq!(*net.routed.lock().expect("routed"), ips(&[PUBLIC]));
    // Response headers outside the allowlist (set-cookie) do not pass back.
    assert_eq!(
        up.headers,
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-request-id".to_owned(), "req-1".to_owned())
        ]
    );
}

#[tokio::test]
async fn hostile_requests_are_refused_with_their_reason_and_the_provider_receives_none() {
    let provider = TestProvider::start(HOST);
    let mut wrong = Vec::new();
    let mut decisions_seen = 0;
    // Every hostile URL of the rules' table, through the client.
    for (url, answers, want) in HOSTILE {
        let net = fake(&[answers]);
        let (c, decisions) = client(&provider, net);
        let request = Outbound {
            url: (*url).to_owned(),
            ..post(&provider, "/", &[])
        };
        match c.send(request, key()).await {
            Ok(_) => wrong.push(format!("{url}: allowed")),
            Err(r) if r.code != *want => wrong.push(format!("{url}: {}, want {want}", r.code)),
            Err(r) => {
                let label = Decision {
                    decision: "refused",
                    reason: r.code,
                };
                decisions_seen += decisions.get_or_create(&label).get();
            }
        }
    }
    // Headers, platform tokens and sizes.
    let many: Vec<(String, String)> = (0..40)
        .map(|i| ("accept".to_owned(), format!("v{i}")))
        .collect();
    let cases: Vec<(&str, Outbound, &str)> = vec![
        (
            "x-forwarded-for",
            post(&provider, "/v1/echo", &[("x-forwarded-for", "10.0.0.1")]),
            "header_not_allowed",
        ),
        (
            "cookie",
            post(&provider, "/v1/echo", &[("cookie", "a=b")]),
            "header_not_allowed",
        ),
        (
            "host",
            post(&provider, "/v1/echo", &[("host", "169.254.169.254")]),
            "header_not_allowed",
        ),
        (
            "x-api-key",
            post(&provider, "/v1/echo", &[("x-api-key", "k")]),
            "header_not_allowed",
        ),
        (
            "proxy-authorization",
            post(
                &provider,
                "/v1/echo",
                &[("proxy-authorization", "Basic eA==")],
            ),
            "header_not_allowed",
        ),
        (
            "transfer-encoding",
            post(&provider, "/v1/echo", &[("transfer-encoding", "chunked")]),
            "header_not_allowed",
        ),
        (
            "the key header",
            post(&provider, "/v1/echo", &[("authorization", "Bearer mine")]),
            "header_not_allowed",
        ),
        (
            "Bearer sw-",
            post(
                &provider,
                "/v1/echo",
                &[("authorization", "Bearer sw-abc123")],
            ),
            "internal_token",
        ),
        (
            "bearer sw- (case, spaces)",
            post(
                &provider,
                "/v1/echo",
                &[("Authorization", "  bearer   sw-x")],
            ),
            "internal_token",
        ),
        (
            "BEARER sw-",
            post(&provider, "/v1/echo", &[("AUTHORIZATION", "BEARER sw-")]),
            "internal_token",
        ),
        (
            "bad value",
            post(&provider, "/v1/echo", &[("accept", "a\nb")]),
            "bad_header",
        ),
        (
            "too many",
            Outbound {
                headers: many,
                ..post(&provider, "/v1/echo", &[])
            },
            "too_many_headers",
        ),
        (
            "oversize body",
            Outbound {
                body: vec![b'x'; 1024 * 1024 + 1],
                ..post(&provider, "/v1/echo", &[])
            },
            "request_too_large",
        ),
        (
            "http",
            Outbound {
                url: format!("http://{HOST}:{}/v1/echo", provider.port),
                ..post(&provider, "/", &[])
            },
            "scheme_not_allowed",
        ),
    ];
    let n_header_cases = cases.len();
    for (what, request, want) in cases {
        let net = fake(&[&[PUBLIC]]);
        let (c, _) = client(&provider, net);
        match c.send(request, key()).await {
            Ok(_) => wrong.push(format!("{what}: allowed")),
            Err(r) if r.code != want => {
                wrong.push(format!("{what}: {} ({}), want {want}", r.code, r.message))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(decisions_seen, HOSTILE.len() as u64);
    assert!(HOSTILE.len() + n_header_cases >= 60);
    assert!(provider.seen().is_empty(), "{:?}", provider.seen());
}

#[tokio::test]
async fn what_the_upstream_does_wrong_never_reaches_the_caller() {
    let provider = TestProvider::start(HOST);
    let net = fake(&[&[PUBLIC]]);
    let (c, _) = client(&provider, net);
    // A redirect to the metadata address is not followed (and its query is not repeated).
    let r = c
        .send(post(&provider, "/v1/redirect", &[]), key())
        .await
        .expect_err("redirect");
    assert_eq!(r.code, "redirect_not_followed", "{}", r.message);
    assert!(
        r.message.contains("169.254.169.254") && !r.message.contains("token=abc"),
        "{}",
        r.message
    );
    // A response head later than the cap.
    let t = std::time::Instant::now();
    let r = c
        .send(post(&provider, "/v1/slow", &[]), key())
        .await
        .expect_err("slow");
    assert_eq!(r.code, "upstream_timeout", "{}", r.message);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    // A body past the cap ends with a refusal, after at most the cap.
    let mut up = c
        .send(post(&provider, "/v1/big", &[]), key())
        .await
        .expect("head");
    let mut got = 0u64;
    let end = loop {
        match up.chunk().await {
            Ok(Some(b)) => got += b.len() as u64,
            Ok(None) => break None,
            Err(r) => break Some(r),
        }
    };
    assert_eq!(end.map(|r| r.code), Some("response_too_large"));
    assert!(got <= LIMITS.response_bytes, "{got}");
    // Nothing listening at the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = closed.local_addr().expect("addr").port();
    drop(closed);
    let (c, _) = client(&provider, fake(&[&[PUBLIC]]));
    let request = Outbound {
        url: format!("https://{HOST}:{gone}/v1/echo"),
        ..post(&provider, "/", &[])
    };
    let r = c.send(request, key()).await.expect_err("closed");
    assert_eq!(r.code, "connect_failed", "{}", r.message);
}
