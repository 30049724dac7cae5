//! Server-token claims end to end (issue 16, point 13): Hub-signed tokens sent to a sandboxed
//! worker over gRPC. An empty or overlong `jti` or `sub` is refused (`token_malformed`); the
//! worker's own id is an audience beside its pool, other ids are not (`wrong_audience`); only
//! the `user` role runs (`role_not_allowed` for admin and auditor, and the Hub issues them no
//! token). Every refused token is asserted unredeemed in the Hub's store, and every accepted
//! one runs with exact values.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::hub::{TokenRequest, now};
use hubworker::proto::ExecuteRequest;
use hubworker::proto::execute_event::Event;
use hubworker::token::{Audience, Claims, MAX_ID_CLAIM_BYTES};
use polars::prelude::{IpcStreamReader, SerReader};
use tonic::Code;

const DOC: &str = r#"{"version": 1, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT COUNT(*) AS n, SUM(id) AS s FROM orders"},
  {"id": "o", "tool": "output", "input": "q", "name": "out"}]}"#;

async fn stack() -> Stack {
    Stack::start(2, &crate::util::sandboxed("")).await.unwrap()
}

/// Runs `DOC` with `token`: the output's (n, s), or the refusal's (code, reason).
async fn run(stack: &Stack, token: &str) -> Result<(i64, i64), (Code, String)> {
    let mut client = stack.client().await.unwrap();
    let refused = |s: tonic::Status| {
        let reason = s
            .metadata()
            .get("hubworker-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (s.code(), reason)
    };
    let mut stream = client
        .execute(ExecuteRequest {
            token: token.into(),
            workflow_json: DOC.into(),
            bypass_cache: true,
            update_cache: false,
            params_json: String::new(),
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut ipc = Vec::new();
    while let Some(e) = stream.message().await.map_err(refused)? {
        match e.event {
            Some(Event::Result(chunk)) => ipc.extend_from_slice(&chunk.arrow_ipc),
            Some(Event::Error(e)) => return Err((Code::Aborted, e.code)),
            _ => {}
        }
    }
    let df = IpcStreamReader::new(std::io::Cursor::new(ipc))
        .finish()
        .unwrap();
    let get = |c: &str| df.column(c).unwrap().i64().unwrap().get(0).unwrap();
    Ok((get("n"), get("s")))
}

/// The exact values of `DOC` on the sample database (1,000 orders, ids 1 to 1,000).
const EXACT: (i64, i64) = (1_000, 500_500);

/// Claims as the stack's Hub would issue them for `DOC`, changed by `f`, then signed with the
/// Hub's key and recorded in its store as issued (unredeemed).
async fn signed(stack: &Stack, f: impl Fn(&mut Claims)) -> (String, String) {
    let t = now();
    let mut c = Claims {
        iss: "demo-hub".into(),
        aud: Audience::One("hubworker".into()),
        sub: "alice".into(),
        jti: hubworker::hub::random_id(),
        iat: t,
        nbf: t,
        exp: t + 120,
        workflow_sha256: hubworker::workflow::workflow_sha256(DOC).unwrap(),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec!["shop".into()],
        scope: "run".into(),
        role: "user".into(),
    };
    f(&mut c);
    stack.store.record_token(&c, "hubworker").await.unwrap();
    (stack.keys.sign(&c).unwrap(), c.jti)
}

async fn redeemed(stack: &Stack, jti: &str) -> bool {
    stack.store.token(jti).await.unwrap().unwrap().1
}

async fn issued(stack: &Stack, user: &str, audience: &str) -> Result<String, String> {
    let req = TokenRequest {
        user: user.into(),
        workflow_sha256: hubworker::workflow::workflow_sha256(DOC).unwrap(),
        params_sha256: hubworker::token::NO_PARAMS_SHA256.into(),
        connections: vec!["shop".into()],
        scope: "run".into(),
        audience: audience.into(),
        ttl: Duration::from_secs(120),
    };
    hubworker::hub::issue(&stack.store, &stack.keys, &req, now())
        .await
        .map_err(|e| e.code().to_owned())
}

fn claims_of(token: &str) -> Claims {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// A change to the claims of a forged token.
type Change = fn(&mut Claims);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_or_overlong_jti_and_sub_are_malformed_and_never_redeemed() {
    let stack = stack().await;
    let cases: [(&str, Change); 4] = [
        ("empty jti", |c| c.jti = String::new()),
        ("empty sub", |c| c.sub = String::new()),
        ("long jti", |c| c.jti = "x".repeat(MAX_ID_CLAIM_BYTES + 1)),
        ("long sub", |c| c.sub = "x".repeat(MAX_ID_CLAIM_BYTES + 1)),
    ];
    let mut refused = Vec::new();
    for (what, f) in cases {
        let (token, jti) = signed(&stack, f).await;
        assert_eq!(
            run(&stack, &token).await,
            Err((Code::Unauthenticated, "token_malformed".into())),
            "{what}"
        );
        assert!(
            !redeemed(&stack, &jti).await,
            "{what}: must not be redeemed"
        );
        refused.push(token);
    }
    // The empty-jti token again: still malformed (it was never taken as used).
    assert_eq!(
        run(&stack, &refused[0]).await.unwrap_err().1,
        "token_malformed"
    );
    // At the bound, both are accepted, and the run returns exact values.
    let (token, jti) = signed(&stack, |c| {
        c.jti = "j".repeat(MAX_ID_CLAIM_BYTES);
        c.sub = "s".repeat(MAX_ID_CLAIM_BYTES);
    })
    .await;
    assert_eq!(run(&stack, &token).await, Ok(EXACT));
    assert!(redeemed(&stack, &jti).await);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_id_is_an_audience_beside_the_pool_and_other_ids_are_not() {
    let stack = stack().await;
    // Issued by the Hub for the worker's id: the worker accepts it, the Hub redeems it.
    let token = issued(&stack, "alice", "demo-worker").await.unwrap();
    assert_eq!(claims_of(&token).aud, Audience::One("demo-worker".into()));
    assert_eq!(run(&stack, &token).await, Ok(EXACT));
    assert!(redeemed(&stack, &claims_of(&token).jti).await);
    // For the pool, as before.
    let token = issued(&stack, "alice", "hubworker").await.unwrap();
    assert_eq!(run(&stack, &token).await, Ok(EXACT));
    // An array naming the worker among others.
    let (token, jti) = signed(&stack, |c| {
        c.aud = Audience::Many(vec!["pool-x".into(), "demo-worker".into()]);
    })
    .await;
    assert_eq!(run(&stack, &token).await, Ok(EXACT));
    assert!(redeemed(&stack, &jti).await);
    // Another worker's id, another pool, an id that only resembles this one: refused.
    for aud in ["other-worker", "pool-x", "demo-worker@1", "Demo-Worker"] {
        let token = issued(&stack, "alice", aud).await.unwrap();
        assert_eq!(
            run(&stack, &token).await,
            Err((Code::Unauthenticated, "wrong_audience".into())),
            "{aud}"
        );
        assert!(!redeemed(&stack, &claims_of(&token).jti).await, "{aud}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_user_role_runs() {
    let stack = stack().await;
    // The Hub's roles: admins and auditors exist, but get no token.
    stack.store.add_user("root", "admin", now()).await.unwrap();
    stack
        .store
        .add_user("audrey", "auditor", now())
        .await
        .unwrap();
    for user in ["root", "audrey"] {
        assert_eq!(
            issued(&stack, user, "hubworker").await,
            Err("refused".into())
        );
    }
    // Hub-signed tokens that carry them anyway (or the old run roles) are refused.
    for role in ["admin", "auditor", "analyst", "developer"] {
        let (token, jti) = signed(&stack, |c| c.role = role.into()).await;
        assert_eq!(
            run(&stack, &token).await,
            Err((Code::PermissionDenied, "role_not_allowed".into())),
            "{role}"
        );
        assert!(!redeemed(&stack, &jti).await, "{role}");
    }
    // A user's token, as the Hub issues it: role "user", and it runs.
    let token = issued(&stack, "alice", "hubworker").await.unwrap();
    let claims = claims_of(&token);
    assert_eq!(
        (claims.sub.as_str(), claims.role.as_str()),
        ("alice", "user")
    );
    assert_eq!(run(&stack, &token).await, Ok(EXACT));
    assert!(redeemed(&stack, &claims.jti).await);
    stack.shutdown().await;
}
