//! `hubworker keygen` and `hubworker hub ...` as real processes: keys on disk, users,
//! connections encrypted at rest, tokens a worker verifies, production refusals.

use std::path::Path;
use std::process::{Command, Output};

use hubworker::token::{Expect, KeySet, Policy, Scope, Verifier};

fn hw(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hubworker"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("HUBWORKER_ENV")
        .env_remove("CREDENTIALS_DIRECTORY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run hubworker")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn keygen_hub_commands_and_a_token_the_worker_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = hw(&["keygen", "--out", "keys"], d, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 5);
    let again = hw(&["keygen", "--out", "keys"], d, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("never overwrites"));

    let ok = |args: &[&str]| {
        let out = hw(args, d, &[("HUBWORKER_ENV", "production")]);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&["hub", "add-user", "--name", "alice", "--role", "user"]);
    ok(&["hub", "add-user", "--name", "root", "--role", "admin"]);
    ok(&["hub", "add-user", "--name", "audrey", "--role", "auditor"]);
    let dup = hw(
        &["hub", "add-user", "--name", "alice", "--role", "user"],
        d,
        &[],
    );
    assert_eq!(dup.status.code(), Some(2));
    // The security model's three roles only: the old run roles are gone too.
    for role in ["superuser", "analyst", "developer"] {
        let bad_role = hw(
            &["hub", "add-user", "--name", "eve", "--role", role],
            d,
            &[],
        );
        assert_eq!(bad_role.status.code(), Some(2), "{role}");
        assert!(
            text(&bad_role.stderr).contains("role must be one of admin, user, auditor"),
            "{}",
            text(&bad_role.stderr)
        );
    }
    std::fs::write(d.join("shop.json"), r#"{"connection": "shop", "dialect": "sqlite", "database": "/tmp/shop.db", "auth": {"kind": "none"}}"#).unwrap();
    ok(&[
        "hub",
        "add-connection",
        "--secrets",
        "keys",
        "--credential-file",
        "shop.json",
    ]);
    // At rest the credential is ciphertext: the path is not in the database file.
    let db = std::fs::read(d.join("hub.db")).unwrap();
    assert!(!db.windows(12).any(|w| w == b"/tmp/shop.db"));

    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/revenue_by_region.json");
    let token = ok(&[
        "hub",
        "issue-token",
        "--secrets",
        "keys",
        "--user",
        "alice",
        "--workflow",
        wf.to_str().unwrap(),
        "--audience",
        "pool-a",
    ]);
    let token = token.trim();
    let jwks = std::fs::read_to_string(d.join("keys/token-keys.jwks")).unwrap();
    let v = Verifier::new(
        Policy {
            issuer: "hubworker-reference-hub".into(),
            audiences: vec!["pool-a".into()],
            max_lifetime: hubworker::token::DEFAULT_MAX_LIFETIME,
            run_roles: hubworker::token::DEFAULT_RUN_ROLES
                .map(String::from)
                .to_vec(),
            hs256_secret: None,
        },
        KeySet::from_jwks(&jwks).unwrap(),
    );
    let hash =
        hubworker::workflow::workflow_sha256(&std::fs::read_to_string(&wf).unwrap()).unwrap();
    let expect = Expect {
        scope: Scope::Run,
        workflow_sha256: Some(&hash),
        params_sha256: None,
        connections: &["shop"],
        consume: true,
    };
    let verified = v.verify(token, &expect, hubworker::hub::now()).unwrap();
    assert_eq!(verified.claims.connections, ["shop"]);
    assert_eq!(verified.claims.sub, "alice");
    assert_eq!(verified.claims.role, "user");
    assert!(verified.claims.exp - verified.claims.iat <= 300);
    assert_eq!(
        verified.claims.params_sha256,
        hubworker::token::NO_PARAMS_SHA256
    );

    // Issue 21: `--param` binds the token to the values (SHA-256 of their RFC 8785 form),
    // each read by its declared type; values the declarations refuse get no token.
    let params_wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/region_orders.json");
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "hub",
            "issue-token",
            "--secrets",
            "keys",
            "--user",
            "alice",
            "--workflow",
            params_wf.to_str().unwrap(),
            "--audience",
            "pool-a",
        ];
        args.extend_from_slice(extra);
        hw(&args, d, &[])
    };
    let out = issue(&["--param", "region=north", "--param", "min_qty=3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let claims = crate::util::claims_of(text(&out.stdout).trim());
    use sha2::Digest as _;
    let want = hex::encode(sha2::Sha256::digest(br#"{"min_qty":3,"region":"north"}"#));
    assert_eq!(claims["params_sha256"], want.as_str());
    let out = issue(&["--param", "region=atlantis"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("param_choice"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
    // Tokens for unknown users or connections are refused.
    let nobody = hw(
        &[
            "hub",
            "issue-token",
            "--secrets",
            "keys",
            "--user",
            "mallory",
            "--workflow",
            wf.to_str().unwrap(),
        ],
        d,
        &[],
    );
    assert_eq!(nobody.status.code(), Some(2));
    assert!(text(&nobody.stderr).contains("[refused]"));
    // Admins and auditors get no run token.
    for user in ["root", "audrey"] {
        let refused = hw(
            &[
                "hub",
                "issue-token",
                "--secrets",
                "keys",
                "--user",
                user,
                "--workflow",
                wf.to_str().unwrap(),
            ],
            d,
            &[],
        );
        assert_eq!(refused.status.code(), Some(2), "{user}");
        assert!(
            text(&refused.stderr).contains("may not run workflows [refused]"),
            "{}",
            text(&refused.stderr)
        );
    }
    // The store is private to the Hub's user (its -wal and -shm, which SQLite removes on a
    // clean close, are checked while a Hub runs: hub_security).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("hub.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn production_refuses_weak_secrets_naming_the_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(hw(&["keygen", "--out", "keys"], d, &[]).status.success());
    std::fs::write(
        d.join("keys/registration.secret"),
        "CHANGE_ME_IN_PRODUCTION",
    )
    .unwrap();
    std::fs::write(d.join("keys/connection-encryption.key"), "tooshort1").unwrap();
    let out = hw(
        &[
            "hub",
            "serve",
            "--secrets",
            "keys",
            "--listen",
            "127.0.0.1:0",
        ],
        d,
        &[("HUBWORKER_ENV", "production")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("registration.secret: still the default placeholder"),
        "{err}"
    );
    assert!(
        err.contains("connection-encryption.key: too short"),
        "{err}"
    );
    assert!(!err.contains("tooshort1"), "{err}");
}
