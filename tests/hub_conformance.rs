//! The Hub contract as a conformance suite (issue 18, point 11): what a Hub must answer, run
//! against the reference Hub over real gRPC on loopback with the generated client only (the
//! wire, not the worker's wrappers). A Hub implementer can read each test as one rule, and run
//! the same calls against their own Hub. The README's "The Hub protocol" says the same in
//! prose; `proto/hubworker/v1/hubworker.proto` has the messages.
//!
//! * **Errors.** Every refusal carries its reason code twice: in the `hubworker-reason`
//!   metadata entry (the worker decides by this alone) and at the start of the status
//!   message, `[code] ...`. The gRPC code is fixed per reason (the table in each test).
//! * **Register** answers the Hub's id (the tokens' `iss`), its public keys as a JWKS, the
//!   heartbeat interval in seconds (> 0) and a fresh worker secret (43 characters of URL-safe
//!   base64), and refuses: a wrong registration secret, a malformed registration, an id that is
//!   registered with another transport key unless the caller proves to be that worker (same
//!   key, or the current worker secret), and a peer that keeps guessing the secret.
//! * **Heartbeat** needs the current worker secret; it records the load (capacity, runs in
//!   flight, draining), which decides where the Hub dispatches. Its `jwks_json` is empty when
//!   the key set is unchanged, else the whole new set.
//! * **Redeem** is where the Hub enforces the token: the redeeming worker is registered; the
//!   token is the Hub's own (signature, `kid`, issuer, expiry), issued for that worker (its
//!   registered audience or its id), recorded when issued, and not redeemed before, decided
//!   atomically (of concurrent redemptions exactly one wins). Each refusal leaves the token
//!   unredeemed. The answer has exactly one credential per connection the token grants, each
//!   a Fernet token under the worker's transport key whose plaintext is the credential JSON.
//! * **Deregister** needs the registration secret and the worker secret; afterwards the
//!   worker's redemptions and heartbeats are refused (`unknown_worker`).
//! * **The worker's side.** After `Accepted`, a refused Redeem ends the run's stream like any
//!   failure: a `RunError` event with the code, then the status with the same code.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hubworker::creds::{Auth, Credential, TransportKey};
use hubworker::hub::service::HubService;
use hubworker::hub::{HubKeys, Store, TokenRequest, now};
use hubworker::proto::hub_client::HubClient;
use hubworker::proto::{
    DeregisterRequest, ExecuteRequest, HeartbeatRequest, RedeemRequest, RegisterRequest,
    RegisterResponse, execute_event::Event,
};
use hubworker::secret::Secret;
use hubworker::sql::Dialect;
use hubworker::token::{Audience, Claims};
use tonic::Code;
use tonic::transport::Channel;

/// The pool the test workers register for.
const POOL: &str = "pool-c";
/// The Hub's id.
const HUB_ID: &str = "conformance-hub";

/// A reference Hub on loopback with two connections (`shop`, SQLite; `dw`, PostgreSQL) and a
/// user `alice`.
struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    keys: Arc<HubKeys>,
    endpoint: String,
    registration: Secret,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts a Hub; `backoff` is (wrong registration secrets allowed at once, refill period).
async fn start(backoff: (u32, Duration)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let pair = hubworker::keys::generate_signing_pair().unwrap();
    let registration = hubworker::keys::random_secret();
    let keys = Arc::new(
        HubKeys::new(
            HUB_ID.into(),
            &pair.private_pem,
            &TransportKey::generate(),
            Some(registration.clone()),
        )
        .unwrap(),
    );
    store.add_user("alice", "user", now()).await.unwrap();
    for cred in [sqlite("shop"), postgres("dw")] {
        store
            .add_connection(&cred, &keys.at_rest, now())
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = HubService::new(store.clone(), keys.clone()).with_backoff(backoff.0, backoff.1);
    tokio::spawn(async move {
        let _ = hubworker::hub::commands::serve_service(service, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    Env {
        _dir: dir,
        store,
        keys,
        endpoint,
        registration,
        _stop: stop,
    }
}

/// The default backoff of the reference Hub (5 at once, then one a second).
const DEFAULT_BACKOFF: (u32, Duration) = (5, Duration::from_secs(1));

fn sqlite(name: &str) -> Credential {
    Credential {
        connection: name.into(),
        dialect: Dialect::Sqlite,
        host: None,
        port: None,
        database: "/var/lib/hubworker/shop.db".into(),
        auth: Auth::None,
        role: None,
        tls: false,
    }
}

fn postgres(name: &str) -> Credential {
    Credential {
        connection: name.into(),
        dialect: Dialect::Postgres,
        host: Some("db.internal".into()),
        port: Some(5432),
        database: "sales".into(),
        auth: Auth::Password {
            user: "hub_reader".into(),
            password: Secret::new("conformance-password".into()),
        },
        role: Some("reporting".into()),
        tls: true,
    }
}

async fn client(env: &Env) -> HubClient<Channel> {
    HubClient::connect(env.endpoint.clone()).await.unwrap()
}

/// A refusal as the contract shapes it: (gRPC code, reason). The reason must be in the
/// `hubworker-reason` metadata and, the same, at the start of the message.
fn refusal(s: tonic::Status) -> (Code, String) {
    let reason = s
        .metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no hubworker-reason metadata: {s:?}"))
        .to_owned();
    assert!(
        s.message().starts_with(&format!("[{reason}] ")),
        "the message does not start with [{reason}]: {s:?}"
    );
    (s.code(), reason)
}

/// A worker's registration: id, transport key, pool `POOL`, capacity 4.
fn registration(env: &Env, id: &str, transport: &Secret) -> RegisterRequest {
    RegisterRequest {
        registration_secret: env.registration.expose().to_owned(),
        worker_id: id.into(),
        address: "http://127.0.0.1:1".into(),
        capacity: 4,
        version: "0.0.0-conformance".into(),
        transport_key: transport.expose().to_owned(),
        audience: POOL.into(),
        worker_secret: String::new(),
        audit_public_key: String::new(),
    }
}

/// Registers `id` with a new transport key: (its key, the Hub's answer).
async fn register(env: &Env, id: &str) -> (Secret, RegisterResponse) {
    let transport = TransportKey::generate();
    let answer = client(env)
        .await
        .register(registration(env, id, &transport))
        .await
        .unwrap()
        .into_inner();
    (transport, answer)
}

fn heartbeat(id: &str, secret: &str, in_flight: u32, draining: bool) -> HeartbeatRequest {
    HeartbeatRequest {
        worker_id: id.into(),
        capacity: 4,
        runs_in_flight: in_flight,
        draining,
        worker_secret: secret.into(),
    }
}

/// A token the Hub issues for `audience`, granting `connections`.
async fn issue(env: &Env, audience: &str, connections: &[&str]) -> String {
    let req = TokenRequest {
        user: "alice".into(),
        workflow_sha256: "0".repeat(64),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: connections.iter().map(|c| (*c).to_owned()).collect(),
        scope: "run".into(),
        audience: audience.into(),
        ttl: Duration::from_secs(120),
    };
    hubworker::hub::issue(&env.store, &env.keys, &req, now())
        .await
        .unwrap()
}

/// Claims the Hub would issue for `POOL`.
fn claims() -> Claims {
    let t = now();
    Claims {
        iss: HUB_ID.into(),
        aud: Audience::One(POOL.into()),
        sub: "alice".into(),
        jti: hubworker::hub::random_id(),
        iat: t,
        nbf: t,
        exp: t + 120,
        workflow_sha256: "0".repeat(64),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec!["shop".into()],
        scope: "run".into(),
        role: "user".into(),
    }
}

fn redeem(token: &str, worker_id: &str) -> RedeemRequest {
    RedeemRequest {
        token: token.into(),
        worker_id: worker_id.into(),
    }
}

fn jti_of(token: &str) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<Claims>(&raw).unwrap().jti
}

/// Whether the Hub's store has the token as redeemed.
async fn redeemed(env: &Env, token: &str) -> bool {
    env.store
        .token(&jti_of(token))
        .await
        .unwrap()
        .is_some_and(|(_, r)| r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_the_hub_id_its_keys_the_interval_and_a_worker_secret() {
    let env = start(DEFAULT_BACKOFF).await;
    let (_, answer) = register(&env, "c1@1").await;
    assert_eq!(answer.hub_id, HUB_ID);
    // Heartbeat every this many seconds (> 0).
    assert_eq!(answer.heartbeat_interval_secs, 15);
    // 32 random bytes, URL-safe base64 without padding.
    assert_eq!(answer.worker_secret.len(), 43);
    assert!(
        answer
            .worker_secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // A standard JWKS: OKP / Ed25519 keys, each with its kid; the key the Hub signs with.
    let jwks: serde_json::Value = serde_json::from_str(&answer.jwks_json).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
        assert!(k["x"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
    }
    assert!(keys.iter().any(|k| k["kid"] == env.keys.kid.as_str()));
    hubworker::token::KeySet::from_jwks(&answer.jwks_json).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_refusals_and_taking_over_a_registered_id() {
    let env = start(DEFAULT_BACKOFF).await;
    let mut hub = client(&env).await;
    let key = TransportKey::generate();
    let other_client = hub.clone();
    let refused = move |req: RegisterRequest| {
        let mut hub = other_client.clone();
        async move { refusal(hub.register(req).await.unwrap_err()) }
    };
    let bad = (Code::InvalidArgument, "bad_registration".to_owned());
    let mut r = registration(&env, "c2@1", &key);
    r.worker_id = "has space".into();
    assert_eq!(refused(r).await, bad);
    let mut r = registration(&env, "c2@1", &key);
    r.capacity = 0;
    assert_eq!(refused(r).await, bad);
    let mut r = registration(&env, "c2@1", &key);
    r.audience = String::new();
    assert_eq!(refused(r).await, bad);
    let mut r = registration(&env, "c2@1", &key);
    r.transport_key = "not-a-fernet-key".into();
    assert_eq!(refused(r).await, bad);
    let mut r = registration(&env, "c2@1", &key);
    r.registration_secret = "wrong".into();
    assert_eq!(
        refused(r).await,
        (Code::Unauthenticated, "bad_registration_secret".into())
    );

    // Registered; the same id with another transport key and no proof: refused, and the stored
    // registration is unchanged (its worker secret still works).
    let first = hub
        .register(registration(&env, "c2@1", &key))
        .await
        .unwrap()
        .into_inner();
    let other = TransportKey::generate();
    assert_eq!(
        refused(registration(&env, "c2@1", &other)).await,
        (Code::Unauthenticated, "worker_key_mismatch".into())
    );
    hub.heartbeat(heartbeat("c2@1", &first.worker_secret, 0, false))
        .await
        .unwrap();
    // The same key proves a restarted worker: a new secret, and the old one is retired.
    let second = hub
        .register(registration(&env, "c2@1", &key))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.worker_secret, first.worker_secret);
    assert_eq!(
        refusal(
            hub.heartbeat(heartbeat("c2@1", &first.worker_secret, 0, false))
                .await
                .unwrap_err()
        ),
        (Code::Unauthenticated, "bad_worker_secret".into())
    );
    // The current worker secret proves it too, and allows a new transport key.
    let mut change = registration(&env, "c2@1", &other);
    change.worker_secret = second.worker_secret.clone();
    let third = hub.register(change).await.unwrap().into_inner();
    hub.heartbeat(heartbeat("c2@1", &third.worker_secret, 0, false))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_guessing_the_registration_secret_backs_off() {
    let env = start((2, Duration::from_secs(600))).await;
    let key = TransportKey::generate();
    let mut hub = client(&env).await;
    let mut wrong = registration(&env, "c3@1", &key);
    wrong.registration_secret = "guess".into();
    for _ in 0..2 {
        assert_eq!(
            refusal(hub.register(wrong.clone()).await.unwrap_err()),
            (Code::Unauthenticated, "bad_registration_secret".into())
        );
    }
    // Refused without looking at the secret, the right one included.
    let blocked = refusal(
        hub.register(registration(&env, "c3@1", &key))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        blocked,
        (Code::ResourceExhausted, "registration_backoff".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_needs_the_current_worker_secret_and_records_the_load() {
    let env = start(DEFAULT_BACKOFF).await;
    let (_, answer) = register(&env, "c4@1").await;
    let mut hub = client(&env).await;
    let beat = hub
        .heartbeat(heartbeat("c4@1", &answer.worker_secret, 1, false))
        .await
        .unwrap()
        .into_inner();
    // The reference Hub answers every heartbeat with its whole current key set (a non-empty
    // value replaces the worker's set; an empty one would mean "unchanged").
    let jwks: serde_json::Value = serde_json::from_str(&beat.jwks_json).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [env.keys.kid.as_str()]);
    let free = |list: Vec<(String, String, i64)>| {
        list.into_iter()
            .find(|(id, _, _)| id == "c4@1")
            .map(|(_, _, free)| free)
    };
    assert_eq!(free(env.store.available_workers().await.unwrap()), Some(3));
    // Draining: no longer offered runs.
    hub.heartbeat(heartbeat("c4@1", &answer.worker_secret, 1, true))
        .await
        .unwrap();
    assert_eq!(free(env.store.available_workers().await.unwrap()), None);

    // Refusals record nothing.
    for secret in ["", "not-the-secret"] {
        assert_eq!(
            refusal(
                hub.heartbeat(heartbeat("c4@1", secret, 0, false))
                    .await
                    .unwrap_err()
            ),
            (Code::Unauthenticated, "bad_worker_secret".into())
        );
    }
    assert_eq!(free(env.store.available_workers().await.unwrap()), None);
    // An id the Hub does not know (never registered, or deregistered): register again.
    assert_eq!(
        refusal(
            hub.heartbeat(heartbeat("nobody@1", &answer.worker_secret, 0, false))
                .await
                .unwrap_err()
        ),
        (Code::PermissionDenied, "unknown_worker".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeem_seals_each_granted_credential_to_the_worker_exactly_once() {
    let env = start(DEFAULT_BACKOFF).await;
    let (transport, _) = register(&env, "c5@1").await;
    let mut hub = client(&env).await;
    let token = issue(&env, POOL, &["shop", "dw"]).await;
    let answer = hub
        .redeem(redeem(&token, "c5@1"))
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&str> = answer
        .credentials
        .iter()
        .map(|c| c.connection.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["dw", "shop"]);
    // Each is a Fernet token under the worker's transport key (the worker opens it within
    // 60 s of sealing), whose plaintext is the credential JSON for that connection.
    let fernet = fernet::Fernet::new(transport.expose()).unwrap();
    for sealed in &answer.credentials {
        let plain = fernet.decrypt_with_ttl(&sealed.sealed, 60).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(json["connection"], sealed.connection.as_str());
        match sealed.connection.as_str() {
            // SQLite: the file path and auth "none"; nothing else is needed.
            "shop" => {
                assert_eq!(json["dialect"], "sqlite");
                assert_eq!(json["database"], "/var/lib/hubworker/shop.db");
                assert_eq!(json["auth"], serde_json::json!({"kind": "none"}));
            }
            _ => {
                assert_eq!(json["dialect"], "postgres");
                assert_eq!(json["host"], "db.internal");
                assert_eq!(json["auth"]["kind"], "password");
                assert_eq!(json["auth"]["user"], "hub_reader");
            }
        }
        let cred: Credential = serde_json::from_slice(&plain).unwrap();
        cred.target(now()).unwrap();
    }
    assert!(redeemed(&env, &token).await);
    // Single use.
    assert_eq!(
        refusal(hub.redeem(redeem(&token, "c5@1")).await.unwrap_err()),
        (Code::FailedPrecondition, "already_redeemed".into())
    );

    // Of concurrent redemptions of one token, exactly one wins.
    let token = issue(&env, POOL, &["shop"]).await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (mut hub, token) = (hub.clone(), token.clone());
            tokio::spawn(async move { hub.redeem(redeem(&token, "c5@1")).await })
        })
        .collect();
    let mut won = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok(_) => won += 1,
            Err(s) => assert_eq!(
                refusal(s),
                (Code::FailedPrecondition, "already_redeemed".into())
            ),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_checks_the_worker_and_the_token_and_a_refusal_consumes_nothing() {
    let env = start(DEFAULT_BACKOFF).await;
    let _ = register(&env, "c6@1").await;
    let mut hub = client(&env).await;
    let token = issue(&env, POOL, &["shop"]).await;
    let invalid = (Code::Unauthenticated, "invalid_token".to_owned());

    // The redeeming worker must be registered.
    assert_eq!(
        refusal(hub.redeem(redeem(&token, "nobody@1")).await.unwrap_err()),
        (Code::PermissionDenied, "unknown_worker".into())
    );
    // Issued for another pool (neither the worker's audience nor its id).
    let elsewhere = issue(&env, "pool-other", &["shop"]).await;
    assert_eq!(
        refusal(hub.redeem(redeem(&elsewhere, "c6@1")).await.unwrap_err()),
        invalid
    );
    // Another issuer; expired; signed with a key that is not the Hub's; oversized.
    let mut other_issuer = claims();
    other_issuer.iss = "another-hub".into();
    env.store.record_token(&other_issuer, POOL).await.unwrap();
    let other_issuer = env.keys.sign(&other_issuer).unwrap();
    let mut expired = claims();
    (expired.iat, expired.nbf, expired.exp) = (now() - 200, now() - 200, now() - 100);
    env.store.record_token(&expired, POOL).await.unwrap();
    let expired = env.keys.sign(&expired).unwrap();
    let stranger = HubKeys::new(
        HUB_ID.into(),
        &hubworker::keys::generate_signing_pair()
            .unwrap()
            .private_pem,
        &TransportKey::generate(),
        None,
    )
    .unwrap();
    let forged = claims();
    env.store.record_token(&forged, POOL).await.unwrap();
    let forged = stranger.sign(&forged).unwrap();
    // Tokens are at most 8 KiB.
    let oversized = format!("{token}{}", "A".repeat(8 * 1024));
    for bad in [&other_issuer, &expired, &forged, &oversized] {
        assert_eq!(
            refusal(hub.redeem(redeem(bad, "c6@1")).await.unwrap_err()),
            invalid
        );
    }
    // Signed by the Hub, but never issued (not in its records).
    let unrecorded = env.keys.sign(&claims()).unwrap();
    assert_eq!(
        refusal(hub.redeem(redeem(&unrecorded, "c6@1")).await.unwrap_err()),
        (Code::Unauthenticated, "unknown_token".into())
    );
    // None of that consumed the real token: its worker redeems it.
    assert!(!redeemed(&env, &token).await);
    hub.redeem(redeem(&token, "c6@1")).await.unwrap();
    // A token issued for the worker's own id is the worker's too.
    let own = issue(&env, "c6@1", &["shop"]).await;
    hub.redeem(redeem(&own, "c6@1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregister_needs_both_secrets_and_ends_the_workers_calls() {
    let env = start(DEFAULT_BACKOFF).await;
    let (_, answer) = register(&env, "c7@1").await;
    let mut hub = client(&env).await;
    let leave = |registration: &str, secret: &str| DeregisterRequest {
        registration_secret: registration.into(),
        worker_id: "c7@1".into(),
        worker_secret: secret.into(),
    };
    let reg = env.registration.expose().to_owned();
    assert_eq!(
        refusal(
            hub.deregister(leave("wrong", &answer.worker_secret))
                .await
                .unwrap_err()
        ),
        (Code::Unauthenticated, "bad_registration_secret".into())
    );
    assert_eq!(
        refusal(hub.deregister(leave(&reg, "wrong")).await.unwrap_err()),
        (Code::Unauthenticated, "bad_worker_secret".into())
    );
    // Still registered after both refusals.
    hub.heartbeat(heartbeat("c7@1", &answer.worker_secret, 0, false))
        .await
        .unwrap();
    let token = issue(&env, POOL, &["shop"]).await;
    assert!(
        hub.deregister(leave(&reg, &answer.worker_secret))
            .await
            .unwrap()
            .into_inner()
            .known
    );
    // Gone: a second Deregister says so; Redeem and Heartbeat are refused.
    assert!(
        !hub.deregister(leave(&reg, &answer.worker_secret))
            .await
            .unwrap()
            .into_inner()
            .known
    );
    assert_eq!(
        refusal(hub.redeem(redeem(&token, "c7@1")).await.unwrap_err()),
        (Code::PermissionDenied, "unknown_worker".into())
    );
    assert_eq!(
        refusal(
            hub.heartbeat(heartbeat("c7@1", &answer.worker_secret, 0, false))
                .await
                .unwrap_err()
        ),
        (Code::PermissionDenied, "unknown_worker".into())
    );
    assert!(!redeemed(&env, &token).await);
}

#[test]
fn the_credential_json_per_dialect() {
    let target = |json: &str| {
        serde_json::from_str::<Credential>(json)
            .map_err(|e| e.to_string())
            .and_then(|c| c.target(now()).map_err(|e| e.code().to_owned()))
    };
    // SQLite needs only the connection, the dialect, the file's path and auth "none".
    assert!(
        target(r#"{"connection": "shop", "dialect": "sqlite", "database": "/srv/shop.db", "auth": {"kind": "none"}}"#)
            .is_ok()
    );
    // ... and takes no user.
    assert_eq!(
        target(r#"{"connection": "shop", "dialect": "sqlite", "database": "/srv/shop.db", "auth": {"kind": "password", "user": "u", "password": "p"}}"#)
            .unwrap_err(),
        "credential_invalid"
    );
    // PostgreSQL and MySQL need a host and a user (password, key pair or OAuth token); the
    // port defaults to the dialect's.
    for dialect in ["postgres", "mysql"] {
        assert!(
            target(&format!(r#"{{"connection": "dw", "dialect": "{dialect}", "host": "db.internal", "database": "sales", "auth": {{"kind": "password", "user": "u", "password": "p"}}}}"#))
                .is_ok(),
            "{dialect}"
        );
        assert_eq!(
            target(&format!(r#"{{"connection": "dw", "dialect": "{dialect}", "database": "sales", "auth": {{"kind": "password", "user": "u", "password": "p"}}}}"#))
                .unwrap_err(),
            "credential_invalid",
            "{dialect}"
        );
        assert_eq!(
            target(&format!(r#"{{"connection": "dw", "dialect": "{dialect}", "host": "db.internal", "database": "sales", "auth": {{"kind": "none"}}}}"#))
                .unwrap_err(),
            "credential_invalid",
            "{dialect}"
        );
    }
    // An expired OAuth token: the user must re-authenticate at the Hub.
    assert_eq!(
        target(r#"{"connection": "dw", "dialect": "postgres", "host": "db.internal", "database": "sales", "auth": {"kind": "oauth", "user": "u", "access_token": "t", "expires_at": 1}}"#)
            .unwrap_err(),
        "credential_expired"
    );
    // Unknown fields are refused (a typo never silently drops a setting).
    assert!(
        target(r#"{"connection": "shop", "dialect": "sqlite", "database": "/srv/shop.db", "auth": {"kind": "none"}, "sslmode": "require"}"#)
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_accepted_a_refused_redeem_ends_the_stream_with_a_run_error_and_the_same_status() {
    let stack = hubworker::demo::Stack::start(1, &crate::util::sandboxed(""))
        .await
        .unwrap();
    let doc = r#"{"version": 1, "nodes": [
      {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id FROM orders"},
      {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;
    let token = stack.token("alice", doc, &["shop"]).await.unwrap();
    // Someone redeems the token first (the Hub sees one redemption; the worker's own checks
    // all pass).
    HubClient::connect(stack.hub_url.clone())
        .await
        .unwrap()
        .redeem(redeem(token.expose(), "demo-worker"))
        .await
        .unwrap();
    let mut worker = stack.client().await.unwrap();
    let mut stream = worker
        .execute(ExecuteRequest {
            token: token.expose().to_owned(),
            workflow_json: doc.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(Event::Accepted(_)) = stream.message().await.unwrap().unwrap().event else {
        panic!("Accepted first")
    };
    let Some(Event::Error(e)) = stream.message().await.unwrap().unwrap().event else {
        panic!("a RunError next")
    };
    assert_eq!(e.code, "already_redeemed");
    // The Hub's FAILED_PRECONDITION is the client's UNAUTHENTICATED: the token is spent.
    let end = stream.message().await.unwrap_err();
    assert_eq!(
        refusal(end),
        (Code::Unauthenticated, "already_redeemed".into())
    );
    stack.shutdown().await;
}
