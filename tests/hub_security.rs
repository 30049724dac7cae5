//! The reference Hub under attack (issue 16, point 7), over real gRPC on loopback: heartbeats
//! and deregistrations without the worker secret, an existing worker id taken over with
//! another transport key, guesses of the registration secret, and the store's file modes;
//! each asserts the refusal code, that the Hub's stored state did not change, and that the
//! legitimate worker still works (a healthy run beside the attacks returns exact values).

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubworker::creds::{Auth, Credential, TransportKey};
use hubworker::hub::service::HubService;
use hubworker::hub::{HubKeys, Store, TokenRequest, now};
use hubworker::hub_client::{HubCallError, HubClient, Identity};
use hubworker::proto::hub_client::HubClient as RawClient;
use hubworker::proto::{DeregisterRequest, HeartbeatRequest, RegisterRequest};
use hubworker::secret::Secret;
use hubworker::sql::Dialect;
use hubworker::token::{Expect, Policy, Scope, Verifier};
use tonic::Code;

const PASSWORD: &str = "hub-security-pw-3kQ";
const WF: &str = "5d1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";

struct Env {
    dir: tempfile::TempDir,
    store: Store,
    keys: Arc<HubKeys>,
    service: HubService,
    endpoint: String,
    registration: Secret,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A Hub whose peers may fail `burst` registrations at once, then one per `refill`.
async fn start(burst: u32, refill: Duration) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("hub.db")).await.unwrap();
    let pair = hubworker::keys::generate_signing_pair().unwrap();
    let registration = hubworker::keys::random_secret();
    let keys = Arc::new(
        HubKeys::new(
            "hub-sec".into(),
            &pair.private_pem,
            &TransportKey::generate(),
            Some(registration.clone()),
        )
        .unwrap(),
    );
    store.add_user("alice", "user", now()).await.unwrap();
    let cred = Credential {
        connection: "shop".into(),
        dialect: Dialect::Postgres,
        host: Some("127.0.0.1".into()),
        port: Some(5432),
        database: "test".into(),
        auth: Auth::Password {
            user: "reader".into(),
            password: Secret::new(PASSWORD.into()),
        },
        role: None,
        tls: false,
    };
    store
        .add_connection(&cred, &keys.at_rest, now())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = HubService::new(store.clone(), keys.clone()).with_backoff(burst, refill);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s = service.clone();
    tokio::spawn(async move {
        let _ = hubworker::hub::commands::serve_service(s, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    Env {
        dir,
        store,
        keys,
        service,
        endpoint,
        registration,
        _stop: stop,
    }
}

async fn client(env: &Env, id: &str, transport: &Secret, registration: &Secret) -> HubClient {
    let identity = Identity {
        id: id.into(),
        address: format!("http://127.0.0.1:1/{id}"),
        audience: "pool-a".into(),
        capacity: 4,
        audit_public_key: String::new(),
    };
    HubClient::connect(
        env.endpoint.clone(),
        identity,
        transport.clone(),
        registration.clone(),
    )
    .await
    .unwrap()
}

async fn raw(env: &Env) -> RawClient<tonic::transport::Channel> {
    RawClient::connect(env.endpoint.clone()).await.unwrap()
}

fn register_req(env: &Env, id: &str, transport: &Secret, worker_secret: &str) -> RegisterRequest {
    RegisterRequest {
        registration_secret: env.registration.expose().into(),
        worker_id: id.into(),
        address: "http://127.0.0.1:9".into(),
        capacity: 2,
        version: "0.0.0".into(),
        transport_key: transport.expose().into(),
        audience: "pool-a".into(),
        worker_secret: worker_secret.into(),
        audit_public_key: String::new(),
    }
}

fn reason(s: &tonic::Status) -> &str {
    s.metadata()
        .get("hubworker-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// (code, reason) of a failed Hub call made through the worker's client.
fn refusal(e: HubCallError) -> (Code, String) {
    match e {
        HubCallError::Refused { code, reason, .. } => (code, reason.as_str().to_owned()),
        other => panic!("not a refusal: {other}"),
    }
}

/// What the Hub has stored about a worker: transport key, capacity, in flight, draining.
async fn stored(env: &Env, id: &str) -> Option<(String, u32, u32, bool)> {
    env.store
        .worker(id, &env.keys.at_rest)
        .await
        .unwrap()
        .map(|w| {
            (
                w.transport_key.expose().to_owned(),
                w.capacity,
                w.runs_in_flight,
                w.draining,
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_deregister_need_the_worker_secret() {
    let env = start(5, Duration::from_secs(1)).await;
    let key = TransportKey::generate();
    let mut legit = client(&env, "w1", &key, &env.registration).await;
    legit.register().await.unwrap();
    legit.heartbeat(2, false).await.unwrap();
    let before = stored(&env, "w1").await.unwrap();
    assert_eq!((before.1, before.2, before.3), (4, 2, false));

    // An attacker holding the registration secret, but not this worker's secret: through the
    // worker's own client (sends none) and raw, with a guess, and with another worker's
    // secret (it registers "w2" itself to get one).
    let mut attacker = client(&env, "w1", &TransportKey::generate(), &env.registration).await;
    assert_eq!(
        refusal(attacker.heartbeat(0, true).await.unwrap_err()),
        (Code::Unauthenticated, "bad_worker_secret".into())
    );
    let mut r = raw(&env).await;
    let other = r
        .register(register_req(&env, "w2", &TransportKey::generate(), ""))
        .await
        .unwrap()
        .into_inner()
        .worker_secret;
    assert_eq!(other.len(), 43);
    for secret in ["", "guess", other.as_str()] {
        let s = r
            .heartbeat(HeartbeatRequest {
                worker_id: "w1".into(),
                capacity: 10_000,
                runs_in_flight: 0,
                draining: true,
                worker_secret: secret.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (s.code(), reason(&s)),
            (Code::Unauthenticated, "bad_worker_secret")
        );
    }
    // Nothing changed: same load, not draining, still offered for dispatch.
    assert_eq!(stored(&env, "w1").await.unwrap(), before);
    let available = env.store.available_workers().await.unwrap();
    assert!(
        available
            .iter()
            .any(|(id, _, free)| id == "w1" && *free == 2),
        "{available:?}"
    );

    // Deregister: without the worker secret, or with another's, refused; still registered.
    assert_eq!(
        refusal(attacker.deregister().await.unwrap_err()),
        (Code::Unauthenticated, "bad_worker_secret".into())
    );
    let s = r
        .deregister(DeregisterRequest {
            registration_secret: env.registration.expose().into(),
            worker_id: "w1".into(),
            worker_secret: other.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s)),
        (Code::Unauthenticated, "bad_worker_secret")
    );
    assert_eq!(stored(&env, "w1").await.unwrap(), before);
    // Every failure was counted.
    assert_eq!(env.service.auth_stats().bad_worker_secret, 6);

    // The worker itself: its heartbeat is recorded, and it leaves with its secret.
    legit.heartbeat(1, true).await.unwrap();
    let after = stored(&env, "w1").await.unwrap();
    assert_eq!((after.1, after.2, after.3), (4, 1, true));
    assert!(legit.deregister().await.unwrap());
    assert!(stored(&env, "w1").await.is_none());
    // Unknown ids: heartbeat refused as before, deregister answers "not known".
    assert_eq!(
        refusal(legit.heartbeat(0, false).await.unwrap_err()),
        (Code::PermissionDenied, "unknown_worker".into())
    );
    assert!(!legit.deregister().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_worker_id_needs_proof_and_credentials_stay_sealed_to_the_worker() {
    let env = start(5, Duration::from_secs(1)).await;
    let key = TransportKey::generate();
    let mut legit = client(&env, "w1", &key, &env.registration).await;
    let verifier = Verifier::new(
        Policy {
            issuer: "hub-sec".into(),
            audiences: vec!["pool-a".into(), "w1".into()],
            max_lifetime: hubworker::token::DEFAULT_MAX_LIFETIME,
            run_roles: vec!["user".into()],
            hs256_secret: None,
        },
        legit.register().await.unwrap().keys,
    );
    let original = stored(&env, "w1").await.unwrap();
    assert_eq!(original.0, key.expose());

    // The attack: the registration secret, the worker's id, the attacker's own key.
    let evil_key = TransportKey::generate();
    let mut attacker = client(&env, "w1", &evil_key, &env.registration).await;
    assert_eq!(
        refusal(attacker.register().await.unwrap_err()),
        (Code::Unauthenticated, "worker_key_mismatch".into())
    );
    let mut r = raw(&env).await;
    let s = r
        .register(register_req(
            &env,
            "w1",
            &evil_key,
            "a-guessed-worker-secret",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s)),
        (Code::Unauthenticated, "worker_key_mismatch")
    );
    assert_eq!(env.service.auth_stats().worker_key_mismatch, 2);
    // The stored registration is untouched: same key, same load.
    assert_eq!(stored(&env, "w1").await.unwrap(), original);

    // Credentials are still sealed to the real worker: it opens them; what the attacker gets
    // by redeeming (as "w1") it cannot open.
    for (who, expect_open) in [("legit", true), ("attacker", false)] {
        let req = TokenRequest {
            user: "alice".into(),
            workflow_sha256: WF.into(),
            params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
            connections: vec!["shop".into()],
            scope: "run".into(),
            audience: "pool-a".into(),
            ttl: Duration::from_secs(120),
        };
        let token = hubworker::hub::issue(&env.store, &env.keys, &req, now())
            .await
            .unwrap();
        let expect = Expect {
            scope: Scope::Run,
            workflow_sha256: Some(WF),
            params_sha256: None,
            connections: &["shop"],
            consume: true,
        };
        let ok = verifier.verify(&token, &expect, now()).unwrap();
        let c = if expect_open {
            &mut legit
        } else {
            &mut attacker
        };
        let sealed = c.redeem_sealed(&ok).await.unwrap();
        match c.open(&sealed, Duration::from_secs(60)) {
            Ok(creds) if expect_open => {
                let Auth::Password { password, .. } = &creds[0].auth else {
                    panic!("password credential")
                };
                assert_eq!(password.expose(), PASSWORD);
            }
            Err(e) if !expect_open => assert!(!e.to_string().contains(PASSWORD)),
            other => panic!("{who}: {:?}", other.map(|c| c.len())),
        }
    }

    // A restart: a new process with the same key (no secret in memory) registers again; the
    // new secret works, the old process's secret is retired.
    let mut restarted = client(&env, "w1", &key, &env.registration).await;
    restarted.register().await.unwrap();
    restarted.heartbeat(3, false).await.unwrap();
    assert_eq!(
        refusal(legit.heartbeat(0, true).await.unwrap_err()),
        (Code::Unauthenticated, "bad_worker_secret".into())
    );
    assert_eq!(stored(&env, "w1").await.unwrap().2, 3);

    // Changing the key needs the current worker secret; a retired one is no proof.
    let (k1, k2, k3) = (
        TransportKey::generate(),
        TransportKey::generate(),
        TransportKey::generate(),
    );
    let first = r
        .register(register_req(&env, "w3", &k1, ""))
        .await
        .unwrap()
        .into_inner()
        .worker_secret;
    let second = r
        .register(register_req(&env, "w3", &k2, &first))
        .await
        .unwrap()
        .into_inner()
        .worker_secret;
    assert_ne!(first, second);
    assert_eq!(stored(&env, "w3").await.unwrap().0, k2.expose());
    let s = r
        .register(register_req(&env, "w3", &k3, &first))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "worker_key_mismatch");
    assert_eq!(stored(&env, "w3").await.unwrap().0, k2.expose());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registration_secrets_back_off_per_peer_and_are_counted() {
    let refill = Duration::from_secs(3);
    let env = start(3, refill).await;
    let wrong = Secret::new("not-the-registration-secret".into());
    let key = TransportKey::generate();
    let mut r = raw(&env).await;
    // 40 guesses as fast as one connection allows, then 40 more at once.
    let began = Instant::now();
    let mut codes = Vec::new();
    for i in 0..40 {
        let mut req = register_req(&env, &format!("g{i}"), &key, "");
        req.registration_secret = wrong.expose().into();
        let s = r.register(req).await.unwrap_err();
        codes.push((s.code(), reason(&s).to_owned(), s.message().to_owned()));
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut c = r.clone();
        let mut req = register_req(&env, &format!("p{i}"), &key, "");
        req.registration_secret = wrong.expose().into();
        tasks.push(tokio::spawn(async move {
            let s = c.register(req).await.unwrap_err();
            (s.code(), reason(&s).to_owned(), s.message().to_owned())
        }));
    }
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let elapsed = began.elapsed();
    let checked = codes
        .iter()
        .filter(|(c, r, _)| *c == Code::Unauthenticated && r == "bad_registration_secret")
        .count();
    let backoff: Vec<_> = codes
        .iter()
        .filter(|(c, r, _)| *c == Code::ResourceExhausted && r == "registration_backoff")
        .collect();
    assert_eq!(checked + backoff.len(), 80, "{codes:?}");
    // The burst, plus one per refill interval that passed: a handful, not 80.
    let refills = (elapsed.as_secs_f64() / refill.as_secs_f64()).ceil() as usize;
    assert!(
        (3..=3 + refills).contains(&checked),
        "{checked} in {elapsed:?}"
    );
    for (_, _, message) in &backoff {
        let ms: u64 = message
            .split("retry in ")
            .nth(1)
            .and_then(|m| m.strip_suffix(" ms"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3_000).contains(&ms), "{message}");
    }
    // Counted: exactly what the peer was told.
    let stats = env.service.auth_stats();
    assert_eq!(stats.bad_registration_secret as usize, checked);
    assert_eq!(stats.registration_backoff as usize, backoff.len());
    // While the peer backs off, the secret is not even checked: the right one is refused too
    // (a blocked attacker learns nothing from a right guess), and so is Deregister, which
    // takes the registration secret as well.
    let s = r
        .register(register_req(&env, "w1", &key, ""))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s)),
        (Code::ResourceExhausted, "registration_backoff")
    );
    let s = r
        .deregister(DeregisterRequest {
            registration_secret: wrong.expose().into(),
            worker_id: "w1".into(),
            worker_secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "registration_backoff");
    // Nobody got registered.
    assert!(env.store.available_workers().await.unwrap().is_empty());

    // The legitimate worker behind the same address gets in within one refill interval.
    let stopped = Instant::now();
    let mut legit = client(&env, "w1", &key, &env.registration).await;
    loop {
        match legit.register().await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), "registration_backoff");
                assert!(stopped.elapsed() < refill + Duration::from_secs(2));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    legit.heartbeat(1, false).await.unwrap();
    assert_eq!(stored(&env, "w1").await.unwrap().2, 1);
    // Successes cost nothing: the worker registers again and again (restarts, key reloads).
    for _ in 0..10 {
        legit.register().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_files_are_private_and_old_stores_are_narrowed_and_migrated() {
    let env = start(5, Duration::from_secs(1)).await;
    // The Hub has written (users, a connection, a registration): all three files exist.
    let mut legit = client(&env, "w1", &TransportKey::generate(), &env.registration).await;
    legit.register().await.unwrap();
    for f in ["hub.db", "hub.db-wal", "hub.db-shm"] {
        let meta = std::fs::metadata(env.dir.path().join(f)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }

    // A store written by an older Hub: world-readable files and the old run roles.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE users (name TEXT PRIMARY KEY,
                 role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'analyst', 'developer')),
                 created_at INTEGER NOT NULL);
             INSERT INTO users VALUES ('ann', 'analyst', 1), ('dev', 'developer', 1),
                 ('root', 'admin', 1), ('aud', 'auditor', 1);
             CREATE TABLE workers (id TEXT PRIMARY KEY, address TEXT NOT NULL,
                 audience TEXT NOT NULL, capacity INTEGER NOT NULL, version TEXT NOT NULL,
                 transport_key TEXT NOT NULL, registered_at INTEGER NOT NULL,
                 last_heartbeat INTEGER, runs_in_flight INTEGER NOT NULL DEFAULT 0,
                 draining INTEGER NOT NULL DEFAULT 0);",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&path).await.unwrap();
    store.add_user("new", "user", now()).await.unwrap();
    for f in ["old.db", "old.db-wal", "old.db-shm"] {
        let meta = std::fs::metadata(dir.path().join(f)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    for (user, role) in [
        ("ann", "user"),
        ("dev", "user"),
        ("root", "admin"),
        ("aud", "auditor"),
        ("new", "user"),
    ] {
        assert_eq!(
            store.role(user).await.unwrap().as_deref(),
            Some(role),
            "{user}"
        );
    }
    assert!(store.add_user("x", "analyst", now()).await.is_err());
}

/// The whole stack (Hub, sandboxed worker) while an attacker tries the same: the worker keeps
/// serving exact results, and its own heartbeat and deregistration (with the worker secret it
/// holds in memory) work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_run_beside_the_attacks() {
    use hubworker::proto::execute_event::Event;
    use polars::prelude::{IpcStreamReader, SerReader};
    let stack = hubworker::demo::Stack::start(2, &crate::util::sandboxed(""))
        .await
        .unwrap();
    let registration = hubworker::keys::read_secret_file(
        &stack
            .dir()
            .join("keys")
            .join(hubworker::keys::files::REGISTRATION_SECRET),
    )
    .unwrap();
    let mut r = RawClient::connect(stack.hub_url.clone()).await.unwrap();
    let s = r
        .heartbeat(HeartbeatRequest {
            worker_id: "demo-worker".into(),
            capacity: 0,
            runs_in_flight: 0,
            draining: true,
            worker_secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "bad_worker_secret");
    let s = r
        .register(RegisterRequest {
            registration_secret: registration.expose().into(),
            worker_id: "demo-worker".into(),
            address: "http://127.0.0.1:9".into(),
            capacity: 8,
            version: "0.0.0".into(),
            transport_key: TransportKey::generate().expose().into(),
            audience: "hubworker".into(),
            worker_secret: String::new(),
            audit_public_key: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "worker_key_mismatch");
    let listed = stack.store.available_workers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, "demo-worker");
    assert_eq!(listed[0].1, stack.worker_url);

    let doc = r#"{"version": 1, "nodes": [
      {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n, SUM(id) AS s FROM orders"},
      {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;
    let token = stack.token("alice", doc, &["shop"]).await.unwrap();
    let mut c = stack.client().await.unwrap();
    let mut stream = c
        .execute(hubworker::proto::ExecuteRequest {
            token: token.expose().into(),
            workflow_json: doc.into(),
            bypass_cache: false,
            update_cache: false,
            params_json: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut ipc = Vec::new();
    let mut finished = false;
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Result(chunk)) => ipc.extend_from_slice(&chunk.arrow_ipc),
            Some(Event::Finished(_)) => finished = true,
            Some(Event::Error(e)) => panic!("{} {}", e.code, e.message),
            _ => {}
        }
    }
    assert!(finished);
    let df = IpcStreamReader::new(std::io::Cursor::new(ipc))
        .finish()
        .unwrap();
    let get = |c: &str| df.column(c).unwrap().i64().unwrap().get(0);
    assert_eq!((get("n"), get("s")), (Some(1_000), Some(500_500)));
    // The worker's own calls carry its secret.
    stack.worker.worker.heartbeat().await.unwrap();
    assert!(stack.worker.worker.deregister().await.unwrap());
    assert!(stack.store.available_workers().await.unwrap().is_empty());
    stack.shutdown().await;
}
