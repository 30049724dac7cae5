//! The config's unit tests: defaults, problems, the production switch, instances.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

/// Parses with no `HUBWORKER_ENV` (tests never read the real environment).
fn parse(text: &str) -> Result<Config, ConfigProblems> {
    Config::parse(text, &HashMap::new())
}

/// Parses with `HUBWORKER_ENV` set to `mode`.
fn parse_in(text: &str, mode: &str) -> Result<Config, ConfigProblems> {
    Config::parse(text, &crate::keys::env_of(&[("HUBWORKER_ENV", mode)]))
}

const MINIMAL: &str = r#"
[worker]
id = "w1"
listen = "127.0.0.1:0"
audience = "pool-a"

[hub]
url = "http://127.0.0.1:7100"
issuer = "hub"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.worker.capacity, 2);
    assert_eq!(c.tokens.max_lifetime_secs, 300);
    assert_eq!(c.cache.ttl_secs, 300);
    assert_eq!(c.cache_ttl("shop"), Duration::from_secs(300));
    assert_eq!(c.limits.result_chunk_bytes, 1 << 20);
}

#[test]
fn unknown_keys_and_all_problems_are_reported() {
    let e = parse(&format!("{MINIMAL}\n[cache]\nttl = 5\n")).unwrap_err();
    assert_eq!(e.0, ["cache.ttl: unknown key"], "{e}");
    let bad = MINIMAL
        .replace("id = \"w1\"", "id = \"has space\"\ncapacity = 0")
        .replace("http://127", "ftp://127")
        + "\n[tokens]\nrun_roles = [\"admin\"]\nmax_lifetime_secs = 0\n";
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.0.len(), 5, "{e}");
    assert!(e.0.iter().any(|p| p.starts_with("worker.id")));
    assert!(e.0.iter().any(|p| p.starts_with("worker.capacity")));
    assert!(e.0.iter().any(|p| p.starts_with("hub.url")));
    assert!(e.0.iter().any(|p| p.contains("\"admin\" may never run")));
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("tokens.max_lifetime_secs"))
    );
}

#[test]
fn token_audiences_default_to_pool_and_id_and_roles_to_user() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.token_audiences(), ["pool-a", "w1"]);
    assert_eq!(c.tokens.run_roles, ["user"]);
    // An instance accepts its own id, suffix included.
    assert_eq!(
        c.clone().for_instance(2).unwrap().token_audiences(),
        ["pool-a", "w1@2"]
    );
    let set = parse(&format!(
        "{MINIMAL}\n[tokens]\naudiences = [\"pool-a\", \"pool-b\"]\nrun_roles = [\"user\", \"reporter\"]\n"
    ))
    .unwrap();
    assert_eq!(set.token_audiences(), ["pool-a", "pool-b"]);
    assert_eq!(set.tokens.run_roles, ["user", "reporter"]);
    let bad = parse(&format!(
        "{MINIMAL}\n[tokens]\naudiences = [\"pool-b\", \"pool-b\", \"\", \"a b\"]\nrun_roles = [\"auditor\", \"\"]\n"
    ))
    .unwrap_err();
    assert_eq!(
        bad.0,
        [
            "tokens.run_roles: \"auditor\" may never run workflows",
            "tokens.run_roles: each role is 1 to 64 bytes",
            "tokens.audiences: \"pool-b\" is listed twice",
            "tokens.audiences: \"\" is not 1 to 128 printable characters without spaces",
            "tokens.audiences: \"a b\" is not 1 to 128 printable characters without spaces",
            "tokens.audiences: must include worker.audience (\"pool-a\"), the audience the worker registers with",
        ],
        "{bad}"
    );
    let empty = parse(&format!(
        "{MINIMAL}\n[tokens]\naudiences = []\nrun_roles = []\n"
    ))
    .unwrap_err();
    assert_eq!(
        empty.0,
        [
            "tokens.run_roles: at least one role",
            "tokens.audiences: at least one audience"
        ]
    );
}

#[test]
fn process_isolation_is_the_default_and_required_in_production() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.sandbox.isolation, Isolation::Process);
    assert_eq!(c.sandbox.settings().limits.memory_bytes, 4 << 30);
    let inline = format!("{MINIMAL}\n[sandbox]\nisolation = \"inline\"\n");
    assert_eq!(parse(&inline).unwrap().sandbox.isolation, Isolation::Inline);
    let production = inline.replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nmode = \"production\"",
    );
    let e = parse(&production).unwrap_err();
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("sandbox.isolation: production")),
        "{e}"
    );
    let e = parse(&format!(
        "{MINIMAL}\n[sandbox]\nmemory_bytes = 1000\nopen_files = 3\ncpu_secs = 0\n"
    ))
    .unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    // Run children never keep root; `require` names confinements Status knows.
    let e = parse(&format!(
        "{MINIMAL}\n[sandbox]\nuid = 0\nrequire = [\"mount_namespace\", \"chroot\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("sandbox.uid: must not be 0")),
        "{e}"
    );
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("sandbox.require: unknown confinement \"chroot\"")),
        "{e}"
    );
    let ok = parse(&format!(
        "{MINIMAL}\n[sandbox]\nuid = 1234\ngid = 5678\nrequire = [\"empty_root\", \"landlock_network\"]\npool = 2\n"
    ))
    .unwrap();
    let settings = ok.sandbox.settings();
    assert_eq!((settings.identity.uid, settings.identity.gid), (1234, 5678));
    assert_eq!(settings.require, ["empty_root", "landlock_network"]);
}

#[test]
fn production_requires_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["server.pem", "server.key", "ca.pem", "hub-ca.pem"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let file = |f: &str| format!("{:?}", dir.path().join(f).display().to_string());
    let production = MINIMAL
        .replace(
            "audience = \"pool-a\"",
            "audience = \"pool-a\"\nmode = \"production\"",
        )
        .replace(
            "url = \"http://127.0.0.1:7100\"",
            &format!(
                "url = \"https://hub:7100\"\nca_file = {}",
                file("hub-ca.pem")
            ),
        )
        + "\n[audit]\ndir = \"/var/lib/hubworker\"\n";
    let server_only = format!(
        "{production}\n[tls]\ncert_file = {}\nkey_file = {}\n",
        file("server.pem"),
        file("server.key")
    );
    let e = parse(&server_only).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(
        e.0[0].starts_with("tls.client_ca_file: required in production mode"),
        "{e}"
    );
    let mutual = format!("{server_only}client_ca_file = {}\n", file("ca.pem"));
    assert!(parse(&mutual).is_ok());
    // In dev, TLS without a client CA (server authentication only) stays allowed.
    let dev = server_only.replace("mode = \"production\"", "mode = \"dev\"");
    assert!(parse(&dev).is_ok());
}

#[test]
fn send_and_validation_limits_have_defaults_and_bounds() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.send_timeout(), Duration::from_secs(30));
    assert_eq!(c.limits.validations_per_token, 5);
    assert_eq!(c.worker.validate_concurrency, 4);
    assert_eq!(c.limits.event_budget(), (2 << 20) + (64 << 10));
    let e = parse(
        &(MINIMAL.replace(
            "audience = \"pool-a\"",
            "audience = \"pool-a\"\nvalidate_concurrency = 0",
        ) + "\n[limits]\nsend_timeout_secs = 0\nvalidations_per_token = 0\n"),
    )
    .unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("limits.send_timeout_secs"))
    );
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("limits.validations_per_token"))
    );
    assert!(
        e.0.iter()
            .any(|p| p.starts_with("worker.validate_concurrency"))
    );
}

#[test]
fn an_instance_gets_its_own_id_and_ports() {
    let text = MINIMAL.replace("127.0.0.1:0", "127.0.0.1:7200").replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nadvertise = \"https://10.0.0.5:7200\"",
    );
    let c = parse(&text).unwrap();
    let three = c.clone().for_instance(3).unwrap();
    assert_eq!(three.worker.id, "w1@3");
    assert_eq!(three.worker.listen.port(), 7203);
    assert_eq!(
        three.worker.advertise.as_deref(),
        Some("https://10.0.0.5:7203")
    );
    assert_eq!(three.metrics.listen.port(), 9467);
    assert!(c.clone().for_instance(0).is_err());
    let mut high = c;
    high.worker.listen.set_port(65_535);
    assert!(high.for_instance(1).is_err());
}

/// Issue 18, point 6: the four problems that came one at a time (an unknown key, `listen`,
/// `audience`, `issuer`) and more, in one answer; unknown keys at every level.
#[test]
fn every_problem_comes_at_once_unknown_keys_at_every_level() {
    let text = r#"
colour = "blue"

[worker]
id = "w1"
listen = "not an address"
capacity = "eight"
flavour = 1

[hub]
url = "http://127.0.0.1:7100"

[cache]
ttl = 5
connection_ttl_secs = { live = "never" }

[sandbox]
isolation = "vm"
"#;
    let e = parse(text).unwrap_err();
    assert_eq!(
        e.0,
        [
            "colour: unknown key",
            "worker.flavour: unknown key",
            "worker.audience: missing (required)",
            "worker.capacity: invalid type: string \"eight\", expected u32",
            "worker.listen: invalid socket address syntax",
            "hub.issuer: missing (required)",
            "cache.ttl: unknown key",
            "cache.connection_ttl_secs.live: invalid type: string \"never\", expected u64",
            "sandbox.isolation: unknown variant `vm`, expected `process` or `inline`",
        ],
        "{e}"
    );
    // A section that is not a table, and a missing mandatory section.
    let e = parse("worker = 3\n").unwrap_err();
    assert_eq!(
        e.0,
        [
            "worker: must be a table ([worker])",
            "worker.id: missing (required)",
            "worker.listen: missing (required)",
            "worker.audience: missing (required)",
            "hub.url: missing (required)",
            "hub.issuer: missing (required)",
        ],
        "{e}"
    );
}

/// Issue 18, point 5: `mode = "production"` and `HUBWORKER_ENV=production` are one switch
/// with one set of rules; set both, they must agree.
#[test]
fn production_means_the_same_from_the_file_and_from_the_environment() {
    let plaintext_production = [
        "hub.url: production talks to the hub over https://",
        "tls: required in production mode (cert_file, key_file, client_ca_file)",
        "audit.dir: required in production (the audit trail's spool, e.g. /var/lib/hubworker)",
    ];
    let in_file = MINIMAL.replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nmode = \"production\"",
    );
    assert_eq!(parse(&in_file).unwrap_err().0, plaintext_production);
    for value in ["production", "prod"] {
        assert_eq!(
            parse_in(MINIMAL, value).unwrap_err().0,
            plaintext_production
        );
    }
    assert_eq!(
        parse_in(MINIMAL, "production").map(|c| c.worker.mode),
        parse(&in_file).map(|c| c.worker.mode)
    );
    // Both set and agreeing: the same; disagreeing: a problem of its own (and production
    // rules, so a conflict never loosens anything).
    assert_eq!(
        parse_in(&in_file, "production").unwrap_err().0,
        plaintext_production
    );
    let dev_in_file = MINIMAL.replace(
        "audience = \"pool-a\"",
        "audience = \"pool-a\"\nmode = \"dev\"",
    );
    let e = parse_in(&dev_in_file, "production").unwrap_err();
    assert_eq!(
        e.0[0],
        "worker.mode: \"dev\" in the file but HUBWORKER_ENV=production in the environment; \
         production is one switch: set it in one place, or the same in both"
    );
    assert_eq!(e.0[1..], plaintext_production);
    assert_eq!(
        parse_in(&in_file, "dev").unwrap_err().0[0],
        "worker.mode: \"production\" in the file but HUBWORKER_ENV=dev in the environment; \
         production is one switch: set it in one place, or the same in both"
    );
    assert_eq!(
        parse_in(MINIMAL, "staging").unwrap_err().0[0],
        "HUBWORKER_ENV: \"production\" or \"dev\", not \"staging\""
    );
    // Dev either way, or unset.
    for c in [
        parse(MINIMAL),
        parse_in(MINIMAL, "dev"),
        parse_in(&dev_in_file, "dev"),
    ] {
        assert_eq!(c.unwrap().worker.mode, ModeSetting::Dev);
    }
}

/// Issue 18, point 10: the sample config parses, and documents every key there is (set, or
/// commented out), so it cannot fall behind the sections.
#[test]
fn the_example_config_parses_and_names_every_key() {
    let text = include_str!("../../examples/worker.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.worker.listen.to_string(), "127.0.0.1:7200");
    let sections: [(&str, &[&str]); 11] = [
        ("worker", schema::fields_of::<WorkerSection>()),
        ("hub", schema::fields_of::<HubSection>()),
        ("secrets", schema::fields_of::<SecretsSection>()),
        ("tokens", schema::fields_of::<TokensSection>()),
        ("limits", schema::fields_of::<LimitsSection>()),
        ("cache", schema::fields_of::<CacheSection>()),
        ("tls", schema::fields_of::<TlsSection>()),
        ("sandbox", schema::fields_of::<SandboxSection>()),
        ("metrics", schema::fields_of::<MetricsSection>()),
        ("ai", schema::fields_of::<super::AiSection>()),
        ("audit", schema::fields_of::<super::AuditSection>()),
    ];
    // `[ai.providers.<name>]` tables document `providers`; `simulate` exists in test builds
    // only.
    assert!(text.contains("\n# [ai.providers.openai]"));
    let named_otherwise = ["providers", "simulate"];
    let mut top: Vec<&str> = schema::fields_of::<Config>().to_vec();
    let mut listed: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
    top.sort_unstable();
    listed.sort_unstable();
    assert_eq!(top, listed);
    for (section, keys) in sections {
        let at = text
            .find(&format!("\n[{section}]"))
            .or_else(|| text.find(&format!("\n# [{section}]")))
            .unwrap_or_else(|| panic!("[{section}] missing"));
        let rest = &text[at + 1..];
        let end = [rest.find("\n["), rest.find("\n# [")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let body = &rest[..end];
        for key in keys.iter().filter(|k| !named_otherwise.contains(k)) {
            assert!(
                body.lines().any(|l| {
                    let l = l.trim_start_matches('#').trim_start();
                    l.starts_with(&format!("{key} ="))
                }),
                "{section}.{key} is not in examples/worker.toml"
            );
        }
    }
}

#[test]
fn the_engine_is_streaming_unless_configured_in_memory() {
    use crate::workflow::Engine;
    assert_eq!(parse(MINIMAL).unwrap().limits.engine, Engine::Streaming);
    let c = parse(&(MINIMAL.to_owned() + "\n[limits]\nengine = \"in-memory\"\n")).unwrap();
    assert_eq!(c.limits.engine, Engine::InMemory);
    let e = parse(&(MINIMAL.to_owned() + "\n[limits]\nengine = \"gpu\"\n")).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(e.0[0].starts_with("limits.engine"), "{e}");
}

#[test]
fn the_largest_cached_result_defaults_to_an_eighth_of_the_budget() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.cache.entry_bytes(), (256 << 20) / 8);
    let c = parse(&(MINIMAL.to_owned() + "\n[cache]\nmax_bytes = 8000\n")).unwrap();
    assert_eq!(c.cache.entry_bytes(), 1000);
    let c = parse(&(MINIMAL.to_owned() + "\n[cache]\nmax_entry_bytes = 4096\n")).unwrap();
    assert_eq!(c.cache.entry_bytes(), 4096);
}
