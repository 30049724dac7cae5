//! Issue 18, points 5, 6 and 10, as an operator meets them: the real binary's
//! `validate-config` (every problem at once, one production switch, the same warnings as
//! `serve`), the sample config, `status`, `hub dispatch` tables, `issue-token --scope inspect`,
//! completions, the man page, the LICENSE.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hubworker")
}

/// The binary with a clean environment for the switches under test, plus `env`.
fn hw(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env_remove("HUBWORKER_ENV")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("HUBWORKER_TEST_CGROUP_ROOT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run hubworker")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(b: &[u8]) -> Vec<String> {
    text(b).lines().map(str::to_owned).collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const DEV: &str = r#"[worker]
id = "w1"
listen = "127.0.0.1:0"
audience = "pool-a"

[hub]
url = "http://127.0.0.1:1"
issuer = "hub"

[secrets]
dir = "keys"

[metrics]
enabled = false
"#;

/// A directory with `keys/` from `hubworker keygen`.
fn with_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let out = hw(&["keygen", "--out", "keys"], dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

/// Point 6: the problems that came one at a time (an unknown key, then `listen`, then
/// `audience`, then `issuer`) and the secrets, in one answer; exit 2.
#[test]
fn validate_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = r#"colour = "blue"

[worker]
id = "w1"
listen = "127.0.0.1"
capacity = 0

[hub]
url = "http://127.0.0.1:7100"
issuer = ""

[cache]
ttl = 5

[secrets]
dir = "no-such-keys"
"#;
    std::fs::write(dir.path().join("bad.toml"), bad).expect("write");
    let out = hw(&["validate-config", "bad.toml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        lines(&out.stderr),
        [
            "hubworker: bad.toml: 7 problems",
            "  colour: unknown key",
            "  worker.audience: missing (required)",
            "  worker.listen: invalid socket address syntax",
            "  cache.ttl: unknown key",
            "  worker.capacity: 1 to 10000",
            "  hub.issuer: must not be empty",
            "  secrets: transport.key: missing",
        ]
    );
}

/// Point 5: `HUBWORKER_ENV=production` applies the rules `mode = "production"` does, in
/// `validate-config` too: a plain-text production worker is refused either way; the two
/// disagreeing is a problem of its own.
#[test]
fn one_production_switch_refuses_a_plaintext_worker_either_way() {
    let dir = with_keys();
    let d = dir.path();
    std::fs::write(d.join("dev.toml"), DEV).expect("write");
    let out = hw(&["validate-config", "dev.toml"], d, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");

    let refused = [
        "  hub.url: production talks to the hub over https://",
        "  tls: required in production mode (cert_file, key_file, client_ca_file)",
        "  audit.dir: required in production (the audit trail's spool, e.g. /var/lib/hubworker)",
    ];
    let by_env = hw(
        &["validate-config", "dev.toml"],
        d,
        &[("HUBWORKER_ENV", "production")],
    );
    assert_eq!(by_env.status.code(), Some(2));
    let mut expected = vec!["hubworker: dev.toml: 3 problems".to_owned()];
    expected.extend(refused.iter().map(|s| (*s).to_owned()));
    assert_eq!(lines(&by_env.stderr), expected);

    let in_file = DEV.replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nmode = \"production\"",
    );
    std::fs::write(d.join("prod.toml"), in_file).expect("write");
    let by_file = hw(&["validate-config", "prod.toml"], d, &[]);
    assert_eq!(by_file.status.code(), Some(2));
    assert_eq!(
        lines(&by_file.stderr)[1..],
        lines(&by_env.stderr)[1..],
        "the file and the environment apply the same rules"
    );

    let dev_in_file = DEV.replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nmode = \"dev\"",
    );
    std::fs::write(d.join("dev-mode.toml"), dev_in_file).expect("write");
    let conflict = hw(
        &["validate-config", "dev-mode.toml"],
        d,
        &[("HUBWORKER_ENV", "production")],
    );
    assert_eq!(conflict.status.code(), Some(2));
    let mut expected = vec![
        "hubworker: dev-mode.toml: 4 problems".to_owned(),
        "  worker.mode: \"dev\" in the file but HUBWORKER_ENV=production in the environment; \
         production is one switch: set it in one place, or the same in both"
            .to_owned(),
    ];
    expected.extend(refused.iter().map(|s| (*s).to_owned()));
    assert_eq!(lines(&conflict.stderr), expected);

    // `serve` refuses the same file for the same reasons before it binds anything.
    let serve = hw(
        &["serve", "--config", "dev.toml"],
        d,
        &[("HUBWORKER_ENV", "production")],
    );
    assert_eq!(serve.status.code(), Some(2), "{}", text(&serve.stderr));
    for line in refused {
        assert!(
            text(&serve.stderr).contains(line.trim()),
            "{}",
            text(&serve.stderr)
        );
    }
}

/// The cgroup membership of this process (the binary inherits it): the `0::` path.
fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .unwrap_or_else(|| "/".to_owned())
}

/// Point 6: `validate-config` prints exactly what `serve` warns about (one function makes
/// both): here an empty dev registration secret and capacity × memory above the cgroup's
/// `memory.max` (a fake cgroup2 tree, through the test build's override).
#[test]
fn validate_config_warns_about_what_serve_warns_about() {
    let dir = with_keys();
    let d = dir.path();
    std::fs::write(d.join("keys/registration.secret"), "").expect("write");
    std::fs::write(d.join("dev.toml"), DEV).expect("write");
    let root = d.join("cgroup");
    let unit = root.join(own_cgroup().trim_start_matches('/'));
    std::fs::create_dir_all(&unit).expect("mkdir");
    std::fs::write(unit.join("memory.max"), "4294967296\n").expect("write");
    let root_s = root.to_str().expect("utf-8");
    let env = [("HUBWORKER_TEST_CGROUP_ROOT", root_s)];
    let out = hw(&["validate-config", "dev.toml"], d, &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
    let warnings = lines(&out.stderr);
    assert_eq!(
        warnings,
        [
            "warning: registration.secret: empty: registration only works with a hub whose \
             registration is open"
                .to_owned(),
            format!(
                "warning: worker.capacity × sandbox.memory_bytes: 2 × 4294967296 = 8589934592 \
                 bytes, above the cgroup's memory.max of 4294967296 bytes ({}): full load would \
                 end in the OOM killer; lower one of them or raise the unit's MemoryMax=",
                unit.join("memory.max").display()
            ),
        ]
    );
    // `serve` logs the same lines (then fails on the unreachable Hub, or keeps retrying it:
    // it is stopped once both are seen).
    let mut child = Command::new(bin())
        .args(["serve", "--config", "dev.toml"])
        .current_dir(d)
        .env_remove("HUBWORKER_ENV")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("HUBWORKER_TEST_CGROUP_ROOT", root_s)
        .env("HUBWORKER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut wanted: Vec<String> = warnings
        .iter()
        .map(|w| w.trim_start_matches("warning: ").to_owned())
        .collect();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("read");
        wanted.retain(|w| !line.contains(w.as_str()));
        seen.push(line);
        if wanted.is_empty() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        wanted.is_empty(),
        "serve did not warn {wanted:?}: {seen:#?}"
    );
}

/// Point 10: the sample config is accepted as it ships (CI also runs it in the README's
/// quickstart).
#[test]
fn the_sample_config_is_accepted() {
    let dir = with_keys();
    let example = repo().join("examples/worker.toml");
    let out = hw(
        &["validate-config", example.to_str().expect("utf-8")],
        dir.path(),
        &[],
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (Some(0), "ok\n".to_owned(), String::new())
    );
}

/// Point 10: `status` prints the worker's Status and health; `hub dispatch` finds the
/// audience by itself (the worker's id) and prints the same tables `hubworker run` prints.
#[test]
fn status_table_and_dispatch_tables_on_a_live_stack() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stack = rt
        .block_on(hubworker::demo::Stack::start(
            2,
            &crate::util::sandboxed(""),
        ))
        .expect("stack");
    let d = stack.dir().to_path_buf();
    let url = stack.worker_url.clone();
    let status = rt.block_on(async {
        let mut client = stack.client().await.expect("client");
        client
            .status(hubworker::proto::StatusRequest {})
            .await
            .expect("status")
            .into_inner()
    });
    let out = hw(&["status", "--worker", &url], &d, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Then every confinement of the run sandbox, on or off, with what it amounts to.
    let width = status
        .confinement_states
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let sandbox: Vec<String> = std::iter::once(format!(
        "run sandbox (Landlock ABI {}):",
        status.landlock_abi
    ))
    .chain(status.confinement_states.iter().map(|c| {
        let on = if c.active { "on " } else { "off" };
        format!("  {:<width$}  {on}  {}", c.name, c.detail)
            .trim_end()
            .to_owned()
    }))
    .collect();
    assert_eq!(sandbox.len(), 18);
    assert_eq!(
        lines(&out.stdout),
        [
            format!("worker                      {url}"),
            "worker id                   demo-worker".to_owned(),
            format!("version                     {}", env!("CARGO_PKG_VERSION")),
            "state                       serving".to_owned(),
            "runs in flight              0 of 2".to_owned(),
            "isolation                   process".to_owned(),
            format!(
                "confinements                {}",
                status.confinements.join(", ")
            ),
            "health                      SERVING".to_owned(),
            "health hubworker.v1.Worker  SERVING".to_owned(),
        ]
        .into_iter()
        .chain(sandbox)
        .collect::<Vec<_>>()
    );
    let unreachable = hw(&["status", "--worker", "http://127.0.0.1:1"], &d, &[]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        text(&unreachable.stderr)
            .starts_with("hubworker: cannot reach worker http://127.0.0.1:1: "),
        "{}",
        text(&unreachable.stderr)
    );

    let wf = repo().join("examples/revenue_by_region.json");
    let wf = wf.to_str().expect("utf-8");
    let keys = d.join("keys");
    let hub_db = d.join("hub.db");
    // `hub dispatch` of `wf` for alice to the worker, with `extra` flags.
    let dispatch = |wf: &str, extra: &[&str]| {
        let mut args = vec![
            "hub",
            "dispatch",
            "--db",
            hub_db.to_str().expect("utf-8"),
            "--secrets",
            keys.to_str().expect("utf-8"),
            "--hub-id",
            "demo-hub",
            "--user",
            "alice",
            "--workflow",
            wf,
            "--worker",
            &url,
        ];
        args.extend_from_slice(extra);
        hw(&args, &d, &[])
    };
    let out = dispatch(wf, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dispatched = text(&out.stdout);
    assert!(dispatched.starts_with("accepted: run "), "{dispatched}");
    assert!(!dispatched.contains("bytes)"), "{dispatched}");
    let local = hw(
        &[
            "run",
            wf,
            "--connection",
            &format!("shop=sqlite://{}", stack.db.display()),
        ],
        &d,
        &[],
    );
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let tables = text(&local.stdout);
    assert!(tables.starts_with("== "), "{tables}");
    let finished = dispatched.find("finished: run ").expect("finished line");
    let after = &dispatched[finished..];
    let after = &after[after.find('\n').expect("newline") + 1..];
    assert_eq!(after, tables, "dispatch prints the tables `run` prints");

    // Issue 21: `dispatch --param` binds the token to the values and sends them; the worker
    // prints what `run --param` prints locally.
    let wf = repo().join("examples/region_orders.json");
    let wf = wf.to_str().expect("utf-8");
    let params = ["--param", "region=east", "--param", "min_qty=2"];
    let out = dispatch(wf, &params);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dispatched = text(&out.stdout);
    let conn = format!("shop=sqlite://{}", stack.db.display());
    let mut args = vec!["run", wf, "--connection", &conn];
    args.extend(params);
    let local = hw(&args, &d, &[]);
    assert_eq!(local.status.code(), Some(0), "{}", text(&local.stderr));
    let tables = text(&local.stdout);
    assert!(tables.contains("east"), "{tables}");
    let finished = dispatched.find("finished: run ").expect("finished line");
    let after = &dispatched[finished..];
    assert_eq!(&after[after.find('\n').expect("newline") + 1..], tables);
    rt.block_on(stack.shutdown());
}

/// Point 10: an `inspect` token names connections, not a workflow; a `run` token still needs
/// one.
#[test]
fn issue_token_inspect_needs_no_workflow() {
    let dir = with_keys();
    let d = dir.path();
    let out = hw(
        &["hub", "add-user", "--name", "alice", "--role", "user"],
        d,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(
        d.join("shop.json"),
        r#"{"connection": "shop", "dialect": "sqlite", "database": "/tmp/shop.db", "auth": {"kind": "none"}}"#,
    )
    .expect("write");
    let out = hw(
        &[
            "hub",
            "add-connection",
            "--secrets",
            "keys",
            "--credential-file",
            "shop.json",
        ],
        d,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let issue = |extra: &[&str]| {
        let mut args = vec!["hub", "issue-token", "--secrets", "keys", "--user", "alice"];
        args.extend_from_slice(extra);
        hw(&args, d, &[])
    };
    let out = issue(&[
        "--scope",
        "inspect",
        "--connection",
        "shop",
        "--audience",
        "pool-a",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let jwks = std::fs::read_to_string(d.join("keys/token-keys.jwks")).expect("jwks");
    let verifier = hubworker::token::Verifier::new(
        hubworker::token::Policy {
            issuer: "hubworker-reference-hub".into(),
            audiences: vec!["pool-a".into()],
            max_lifetime: hubworker::token::DEFAULT_MAX_LIFETIME,
            run_roles: hubworker::token::DEFAULT_RUN_ROLES
                .map(String::from)
                .to_vec(),
            hs256_secret: None,
        },
        hubworker::token::KeySet::from_jwks(&jwks).expect("key set"),
    );
    let expect = hubworker::token::Expect {
        scope: hubworker::token::Scope::Inspect,
        workflow_sha256: None,
        params_sha256: None,
        connections: &["shop"],
        consume: true,
    };
    let verified = verifier
        .verify(text(&out.stdout).trim(), &expect, hubworker::hub::now())
        .expect("an inspect token");
    assert_eq!(verified.claims.scope, "inspect");
    assert_eq!(verified.claims.connections, ["shop"]);
    // Neither a workflow nor a connection: clap says so (exit 2).
    let out = issue(&["--scope", "inspect"]);
    assert_eq!(out.status.code(), Some(2));
    // A run token without a workflow: refused (exit 2).
    let out = issue(&["--connection", "shop"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "hubworker: a run token is bound to a workflow: give --workflow (only --scope inspect \
         goes without)\n"
    );
}

/// Point 10: completions for each shell and the man page, generated from clap: they name
/// every visible subcommand; bash's script parses.
#[test]
fn completions_and_man_page_come_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let commands = [
        "serve",
        "validate-config",
        "status",
        "completions",
        "man",
        "hub",
    ];
    for (shell, marker) in [
        ("bash", "complete -F _hubworker"),
        ("zsh", "#compdef hubworker"),
        ("fish", "complete -c hubworker"),
    ] {
        let out = hw(&["completions", shell], d, &[]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for c in commands {
            assert!(script.contains(c), "{shell} lacks {c}");
        }
    }
    let bash = hw(&["completions", "bash"], d, &[]);
    std::fs::write(d.join("hubworker.bash"), &bash.stdout).expect("write");
    let parsed = Command::new("bash")
        .args(["-n", "hubworker.bash"])
        .current_dir(d)
        .output()
        .expect("bash -n");
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
    assert_eq!(hw(&["completions", "tcsh"], d, &[]).status.code(), Some(2));

    let man = hw(&["man"], d, &[]);
    assert_eq!(man.status.code(), Some(0), "{}", text(&man.stderr));
    let page = text(&man.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq \\(aq") || page.starts_with(".TH"),
        "{page}"
    );
    assert!(page.contains(".TH hubworker 1"), "{page}");
    for section in [
        ".SH \"HUBWORKER SERVE\"",
        ".SH \"HUBWORKER VALIDATE-CONFIG\"",
        ".SH \"HUBWORKER STATUS\"",
        ".SH \"HUBWORKER HUB DISPATCH\"",
    ] {
        assert!(page.contains(section), "{section} missing");
    }
    assert!(!page.contains("__sandbox-child"));
}

/// Point 10: the LICENSE is the Apache License 2.0 Cargo.toml names, in full.
#[test]
fn the_license_is_the_full_apache_2_text() {
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    assert!(
        license.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    assert!(license.contains("APPENDIX: How to apply the Apache License to your work."));
    assert_eq!(license.lines().count(), 202);
}

/// Point 7: a worker host makes only its own transport key (the README's install step): no
/// signing key, no registration secret that could never match the Hub's; never overwritten.
#[test]
fn keygen_worker_makes_only_the_transport_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let out = hw(&["keygen", "--worker", "--out", "credentials"], d, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "wrote credentials/transport.key\n");
    let mut names: Vec<String> = std::fs::read_dir(d.join("credentials"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["transport.key"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("credentials/transport.key"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = hw(&["keygen", "--worker", "--out", "credentials"], d, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("never overwrites"));
}
