//! The reference Hub and the worker's side of the protocol over real gRPC on loopback:
//! registration, single-use redemption (also under 100 concurrent attempts), sealed
//! credentials, the attack matrix with "not redeemed" asserted in the Hub's store, and planted
//! secrets that must never surface in logs, errors or Debug output.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::jti_of;
use hubworker::creds::{Auth, Credential, TransportKey};
use hubworker::hub::{HubKeys, Store, TokenRequest, now};
use hubworker::hub_client::{HubClient, Identity};
use hubworker::secret::Secret;
use hubworker::sql::Dialect;
use hubworker::token::{Audience, Claims, Expect, KeySet, Policy, Scope, Verifier};

const PLANTED_PASSWORD: &str = "PLANTED-pw-7Qz!x9@k/L";
/// A run of workflow `WF` using connection `shop`, marking the token used.
const RUN: Expect<'static> = Expect {
    scope: Scope::Run,
    workflow_sha256: Some(WF),
    params_sha256: None,
    connections: &["shop"],
    consume: true,
};
/// The same check without marking the token used.
const DRY: Expect<'static> = Expect {
    consume: false,
    ..RUN
};
const WF: &str = "9c1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    keys: Arc<HubKeys>,
    endpoint: String,
    registration: Secret,
    transport: Secret,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let pair = hubworker::keys::generate_signing_pair().unwrap();
    let registration = hubworker::keys::random_secret();
    let keys = Arc::new(
        HubKeys::new(
            "hub-test".into(),
            &pair.private_pem,
            &TransportKey::generate(),
            Some(registration.clone()),
        )
        .unwrap(),
    );
    store.add_user("alice", "user", now()).await.unwrap();
    store.add_user("root", "admin", now()).await.unwrap();
    for (name, password) in [("shop", PLANTED_PASSWORD), ("dw", "other-password")] {
        let cred = Credential {
            connection: name.into(),
            dialect: Dialect::Postgres,
            host: Some("127.0.0.1".into()),
            port: Some(5432),
            database: "test".into(),
            auth: Auth::Password {
                user: "postgres".into(),
                password: Secret::new(password.into()),
            },
            role: None,
            tls: false,
        };
        store
            .add_connection(&cred, &keys.at_rest, now())
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let (s, k) = (store.clone(), keys.clone());
    tokio::spawn(async move {
        let _ = hubworker::hub::commands::serve(s, k, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    Env {
        _dir: dir,
        store,
        keys,
        endpoint,
        registration,
        transport: TransportKey::generate(),
        _stop: stop,
    }
}

fn identity(id: &str) -> Identity {
    Identity {
        id: id.into(),
        address: "http://127.0.0.1:1".into(),
        audience: "pool-a".into(),
        capacity: 4,
        audit_public_key: String::new(),
    }
}

async fn worker(env: &Env, id: &str) -> HubClient {
    HubClient::connect(
        env.endpoint.clone(),
        identity(id),
        env.transport.clone(),
        env.registration.clone(),
    )
    .await
    .unwrap()
}

fn verifier(keys: KeySet) -> Verifier {
    Verifier::new(
        Policy {
            issuer: "hub-test".into(),
            audiences: vec!["pool-a".into()],
            max_lifetime: hubworker::token::DEFAULT_MAX_LIFETIME,
            run_roles: vec!["user".into()],
            hs256_secret: None,
        },
        keys,
    )
}

async fn issue(env: &Env, user: &str, connections: &[&str]) -> String {
    let req = TokenRequest {
        user: user.into(),
        workflow_sha256: WF.into(),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: connections.iter().map(|c| (*c).to_owned()).collect(),
        scope: "run".into(),
        audience: "pool-a".into(),
        ttl: Duration::from_secs(120),
    };
    hubworker::hub::issue(&env.store, &env.keys, &req, now())
        .await
        .unwrap()
}

async fn redeemed(env: &Env, token: &str) -> bool {
    env.store
        .token(&jti_of(token))
        .await
        .unwrap()
        .map(|(_, r)| r)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_verify_redeem_and_open_credentials() {
    let env = start().await;
    let mut client = worker(&env, "w1").await;
    let reg = client.register().await.unwrap();
    assert_eq!(reg.hub_id, "hub-test");
    let v = verifier(reg.keys);
    let token = issue(&env, "alice", &["shop", "dw"]).await;
    let ok = v.verify(&token, &RUN, now()).unwrap();
    assert!(!redeemed(&env, &token).await);
    let creds = client.redeem(&ok, Duration::from_secs(60)).await.unwrap();
    assert!(redeemed(&env, &token).await);
    let names: Vec<&str> = creds.iter().map(|c| c.connection.as_str()).collect();
    assert_eq!(names, ["shop", "dw"]);
    let Auth::Password { password, .. } = &creds[0].auth else {
        panic!("password credential")
    };
    assert_eq!(password.expose(), PLANTED_PASSWORD);
    // The credential becomes a target whose URL carries the password, percent-encoded.
    let target = creds[0].target(now()).unwrap();
    assert!(
        target
            .url
            .expose()
            .starts_with("postgres://postgres:PLANTED-pw-7Qz%21x9%40k%2FL@127.0.0.1:5432/test")
    );
    // Second redemption: refused by the Hub.
    let again = client
        .redeem(&ok, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(again.code(), "already_redeemed");
    // And the worker's own replay cache refuses the token before any call.
    assert_eq!(
        v.verify(&token, &RUN, now()).unwrap_err().reason.code(),
        "token_replayed"
    );
    // Heartbeats from a registered worker are accepted; from an unknown one refused.
    client.heartbeat(1, false).await.unwrap();
    let mut stranger = worker(&env, "never-registered").await;
    assert_eq!(
        stranger.heartbeat(0, false).await.unwrap_err().code(),
        "unknown_worker"
    );
    assert_eq!(
        stranger
            .redeem(&ok, Duration::from_secs(60))
            .await
            .unwrap_err()
            .code(),
        "unknown_worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_the_secret() {
    let env = start().await;
    let mut bad = HubClient::connect(
        env.endpoint.clone(),
        identity("w2"),
        env.transport.clone(),
        Secret::new("wrong".into()),
    )
    .await
    .unwrap();
    let e = bad.register().await.unwrap_err();
    assert_eq!(e.code(), "bad_registration_secret");
    assert!(matches!(
        e,
        hubworker::hub_client::HubCallError::Refused {
            code: tonic::Code::Unauthenticated,
            ..
        }
    ));
    let mut bad_id = HubClient::connect(
        env.endpoint.clone(),
        identity("no spaces"),
        env.transport.clone(),
        env.registration.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        bad_id.register().await.unwrap_err().code(),
        "bad_registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_redemptions_exactly_one_wins() {
    let env = start().await;
    let mut first = worker(&env, "w3").await;
    let v = verifier(first.register().await.unwrap().keys);
    let token = issue(&env, "alice", &["shop"]).await;
    let ok = v.verify(&token, &DRY, now()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let ok = ok.clone();
        let endpoint = env.endpoint.clone();
        let (t, r) = (env.transport.clone(), env.registration.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = HubClient::connect(endpoint, identity("w3"), t, r)
                .await
                .unwrap();
            c.redeem(&ok, Duration::from_secs(60))
                .await
                .map_err(|e| e.code())
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(creds) => {
                wins += 1;
                assert_eq!(creds.len(), 1);
            }
            Err(code) => assert_eq!(code, "already_redeemed"),
        }
    }
    assert_eq!(wins, 1);
}

/// Signs claims with the Hub's key and records them, as if the Hub had issued them: the
/// worker must still refuse them, and the Hub's record must show them unredeemed.
async fn recorded(env: &Env, f: impl Fn(&mut Claims)) -> String {
    let t = now();
    let mut c = Claims {
        iss: "hub-test".into(),
        aud: Audience::One("pool-a".into()),
        sub: "alice".into(),
        jti: hubworker::hub::random_id(),
        iat: t,
        nbf: t,
        exp: t + 120,
        workflow_sha256: WF.into(),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec!["shop".into()],
        scope: "run".into(),
        role: "user".into(),
    };
    f(&mut c);
    env.store.record_token(&c, "pool-a").await.unwrap();
    env.keys.sign(&c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_refused_locally_and_never_redeemed() {
    let env = start().await;
    let mut client = worker(&env, "w4").await;
    let v = verifier(client.register().await.unwrap().keys);
    let t = now();
    let cases: Vec<(&str, String)> = vec![
        (
            "token_expired",
            recorded(&env, |c| {
                c.iat = t - 400;
                c.nbf = t - 400;
                c.exp = t - 100
            })
            .await,
        ),
        (
            "token_not_yet_valid",
            recorded(&env, |c| c.nbf = t + 100).await,
        ),
        (
            "lifetime_too_long",
            recorded(&env, |c| c.exp = t + 3_600).await,
        ),
        (
            "wrong_audience",
            recorded(&env, |c| c.aud = Audience::One("pool-b".into())).await,
        ),
        (
            "wrong_issuer",
            recorded(&env, |c| c.iss = "other-hub".into()).await,
        ),
        (
            "workflow_mismatch",
            recorded(&env, |c| c.workflow_sha256 = "f".repeat(64)).await,
        ),
        (
            "connection_not_in_scope",
            recorded(&env, |c| c.connections = vec!["dw".into()]).await,
        ),
        (
            "wrong_scope",
            recorded(&env, |c| c.scope = "inspect".into()).await,
        ),
        (
            "role_not_allowed",
            recorded(&env, |c| c.role = "admin".into()).await,
        ),
        (
            "role_not_allowed",
            recorded(&env, |c| c.role = "auditor".into()).await,
        ),
    ];
    for (want, token) in &cases {
        let e = v.verify(token, &RUN, now()).unwrap_err();
        assert_eq!(e.reason.code(), *want);
        assert!(!redeemed(&env, token).await, "{want}: must not be redeemed");
    }
    // Forgeries the Hub never issued: refused by the worker, and by the Hub if sent anyway.
    let good = issue(&env, "alice", &["shop"]).await;
    let p: Vec<&str> = good.split('.').collect();
    let alg_none = format!("eyJhbGciOiJub25lIn0.{}.", p[1]);
    assert_eq!(
        v.verify(&alg_none, &RUN, now()).unwrap_err().reason.code(),
        "alg_none"
    );
    let mut sig: Vec<u8> = p[2].bytes().collect();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    let bad_sig = format!("{}.{}.{}", p[0], p[1], String::from_utf8(sig).unwrap());
    assert_eq!(
        v.verify(&bad_sig, &RUN, now()).unwrap_err().reason.code(),
        "bad_signature"
    );
    // The Hub checks on its own too: a forged token sent straight to Redeem is refused and
    // the real token stays redeemable.
    let forged = hubworker::token::Verified {
        claims: v.verify(&good, &DRY, now()).unwrap().claims,
        token: Secret::new(bad_sig.clone()),
    };
    assert_eq!(
        client
            .redeem(&forged, Duration::from_secs(60))
            .await
            .unwrap_err()
            .code(),
        "invalid_token"
    );
    assert!(!redeemed(&env, &good).await);
    // The Hub refuses to issue run tokens to admins.
    let req = TokenRequest {
        user: "root".into(),
        workflow_sha256: WF.into(),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec!["shop".into()],
        scope: "run".into(),
        audience: "pool-a".into(),
        ttl: Duration::from_secs(60),
    };
    assert_eq!(
        hubworker::hub::issue(&env.store, &env.keys, &req, now())
            .await
            .unwrap_err()
            .code(),
        "refused"
    );
}

/// A log sink shared with the tracing subscriber.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn planted_secrets_never_surface_in_logs_errors_or_debug() {
    // Thread-local subscribers miss events when other tests share callsites (tracing caches
    // interest per callsite), so the test body runs again in a child process of this test
    // binary, alone, with a process-wide trace-level subscriber.
    if std::env::var_os("HUBWORKER_LOG_CHILD").is_none() {
        let name = "hub::planted_secrets_never_surface_in_logs_errors_or_debug";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("HUBWORKER_LOG_CHILD", "1")
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{all}");
        assert!(all.contains("1 passed"), "{all}");
        return;
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let env = rt.block_on(async {
        let env = start().await;
        let mut client = worker(&env, "w5").await;
        let v = verifier(client.register().await.unwrap().keys);
        let token = issue(&env, "alice", &["shop"]).await;
        let ok = v.verify(&token, &RUN, now()).unwrap();
        let creds = client.redeem(&ok, Duration::from_secs(60)).await.unwrap();
        let again = client
            .redeem(&ok, Duration::from_secs(60))
            .await
            .unwrap_err();
        let target = creds[0].target(now()).unwrap();
        tracing::info!(
            ?creds,
            ?ok,
            ?target,
            ?client,
            "debug output of everything secret-bearing"
        );
        seen.push(format!(
            "{creds:?} {ok:?} {target:?} {client:?} {:?} {again} {again:?}",
            env.keys
        ));
        seen.push(format!("{:?}", TransportKey::new(&env.transport).unwrap()));
        // A refused registration with the real secret's neighbours in play.
        let mut wrong = HubClient::connect(
            env.endpoint.clone(),
            identity("w6"),
            env.transport.clone(),
            Secret::new("nope".into()),
        )
        .await
        .unwrap();
        let e = wrong.register().await.unwrap_err();
        seen.push(format!("{e} {e:?}"));
        // A connection error with a password in the URL.
        let bad = creds[0].clone();
        let t = hubworker::connector::Target {
            url: Secret::new(format!("postgres://u:{PLANTED_PASSWORD}@127.0.0.1:1/x")),
            ..bad.target(now()).unwrap()
        };
        let q = hubworker::sql::guard("SELECT 1", Dialect::Postgres).unwrap();
        let e = hubworker::connector::query(&t, &q, &[], Default::default())
            .await
            .unwrap_err();
        seen.push(format!("{e} {e:?}"));
        env
    });
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token redeemed"), "the capture works: {logs}");
    let transport = env.transport.expose().to_owned();
    let registration = env.registration.expose().to_owned();
    for secret in [
        PLANTED_PASSWORD,
        "PLANTED",
        transport.as_str(),
        registration.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs");
        for s in &seen {
            assert!(!s.contains(secret), "a secret is in: {s}");
        }
    }
}
