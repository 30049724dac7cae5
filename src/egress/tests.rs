//! The rules, table-driven: every notation and range the issue names, rebinding-shaped answers
//! (one blocked address among public ones), names, schemes and user info.

use std::net::IpAddr;

use super::*;

/// `vet` with a resolver that answers `answers` for any name and counts its calls.
fn vet_with(url: &str, answers: &[&str]) -> (Result<Vetted, Refusal>, usize) {
    let mut calls = 0;
    let mut resolve = |_: &str| -> Result<Vec<IpAddr>, String> {
        calls += 1;
        Ok(answers
            .iter()
            .map(|a| a.parse().expect("test address"))
            .collect())
    };
    let rules = Rules {
        http_hosts: vec!["dev.example.com".into()],
    };
    let r = vet(url, &rules, &mut resolve);
    (r, calls)
}

fn code(url: &str, answers: &[&str]) -> &'static str {
    match vet_with(url, answers).0 {
        Ok(v) => panic!("{url} was allowed ({})", v.connect),
        Err(r) => r.code,
    }
}

/// A public address (the simulated answer of allowed names).
pub(super) const PUBLIC: &str = "93.184.215.14";

/// Hostile targets: URL, simulated DNS answers, the refusal code.
pub(super) const HOSTILE: &[(&str, &[&str], &str)] = &[
    // IPv4 literals in every notation the OS accepts.
    ("https://127.0.0.1/", &[], "loopback"),
    ("https://2130706433/", &[], "loopback"),
    ("https://0x7f000001/", &[], "loopback"),
    ("https://0x7f.1/", &[], "loopback"),
    ("https://0177.0.0.1/", &[], "loopback"),
    ("https://127.1/", &[], "loopback"),
    ("https://127.0.1/", &[], "loopback"),
    ("https://0/", &[], "unspecified"),
    ("https://0.0.0.0/", &[], "unspecified"),
    ("https://0.1.2.3/", &[], "reserved"),
    ("https://10.0.0.1/", &[], "private"),
    ("https://012.0.0.1/", &[], "private"),
    ("https://172.16.5.4/", &[], "private"),
    ("https://172.31.255.255/", &[], "private"),
    ("https://192.168.1.1/", &[], "private"),
    ("https://3232235777/", &[], "private"),
    ("https://100.64.0.1/", &[], "cgnat"),
    ("https://100.127.255.254/", &[], "cgnat"),
    ("https://169.254.169.254/latest/meta-data/", &[], "metadata"),
    ("https://0xa9.0xfe.0xa9.0xfe/", &[], "metadata"),
    ("https://2852039166/", &[], "metadata"),
    ("https://169.254.170.2/", &[], "metadata"),
    ("https://100.100.100.200/", &[], "metadata"),
    ("https://169.254.1.1/", &[], "link_local"),
    ("https://192.0.0.8/", &[], "reserved"),
    ("https://192.0.2.1/", &[], "documentation"),
    ("https://198.51.100.7/", &[], "documentation"),
    ("https://203.0.113.9/", &[], "documentation"),
    ("https://198.18.0.1/", &[], "reserved"),
    ("https://224.0.0.1/", &[], "multicast"),
    ("https://239.255.255.250/", &[], "multicast"),
    ("https://240.0.0.1/", &[], "reserved"),
    ("https://255.255.255.255/", &[], "broadcast"),
    // IPv6 literals, and IPv6 forms of blocked IPv4 addresses.
    ("https://[::1]/", &[], "loopback"),
    ("https://[0:0:0:0:0:0:0:1]/", &[], "loopback"),
    ("https://[::]/", &[], "unspecified"),
    ("https://[::ffff:127.0.0.1]/", &[], "loopback"),
    ("https://[::ffff:7f00:1]/", &[], "loopback"),
    ("https://[::ffff:169.254.169.254]/", &[], "metadata"),
    ("https://[::ffff:10.1.2.3]/", &[], "private"),
    ("https://[::127.0.0.1]/", &[], "loopback"),
    ("https://[64:ff9b::a9fe:a9fe]/", &[], "metadata"),
    ("https://[64:ff9b::10.0.0.1]/", &[], "private"),
    ("https://[64:ff9b:1::1]/", &[], "private"),
    ("https://[2002:7f00:1::]/", &[], "loopback"),
    ("https://[2002:c0a8:101::1]/", &[], "private"),
    ("https://[fd00:ec2::254]/", &[], "metadata"),
    ("https://[fd12:3456::1]/", &[], "unique_local"),
    ("https://[fc00::1]/", &[], "unique_local"),
    ("https://[fe80::1]/", &[], "link_local"),
    ("https://[fec0::1]/", &[], "reserved"),
    ("https://[ff02::1]/", &[], "multicast"),
    ("https://[2001:db8::1]/", &[], "documentation"),
    ("https://[3fff::1]/", &[], "documentation"),
    ("https://[2001::1]/", &[], "reserved"),
    ("https://[100::1]/", &[], "reserved"),
    ("https://[4000::1]/", &[], "reserved"),
    // Names.
    ("https://localhost/", &[], "internal_name"),
    ("https://LOCALHOST./", &[], "internal_name"),
    ("https://ｌｏｃａｌｈｏｓｔ/", &[], "internal_name"),
    ("https://metadata/", &[], "internal_name"),
    (
        "https://metadata.google.internal/computeMetadata/v1/",
        &[],
        "metadata_name",
    ),
    ("https://METADATA.google.internal./", &[], "metadata_name"),
    ("https://instance-data.ec2.internal/", &[], "metadata_name"),
    ("https://db.prod.internal/", &[], "internal_name"),
    ("https://printer.local/", &[], "internal_name"),
    ("https://app.localhost/", &[], "internal_name"),
    ("https://router.home.arpa/", &[], "internal_name"),
    // Names whose answers are blocked: any one blocked answer refuses (rebinding-shaped
    // answers, private addresses among public ones).
    ("https://api.example.com/", &["127.0.0.1"], "loopback"),
    (
        "https://api.example.com/",
        &[PUBLIC, "169.254.169.254"],
        "metadata",
    ),
    ("https://api.example.com/", &["10.0.0.5", PUBLIC], "private"),
    (
        "https://api.example.com/",
        &[PUBLIC, "::ffff:127.0.0.1"],
        "loopback",
    ),
    ("https://api.example.com/", &["fd00:ec2::254"], "metadata"),
    ("https://api.example.com/", &[], "resolve_failed"),
    // Schemes and user info.
    ("http://api.example.com/", &[PUBLIC], "scheme_not_allowed"),
    ("ftp://api.example.com/", &[PUBLIC], "scheme_not_allowed"),
    ("file:///etc/passwd", &[], "scheme_not_allowed"),
    (
        "gopher://127.0.0.1:6379/_FLUSHALL",
        &[],
        "scheme_not_allowed",
    ),
    (
        "https://user:pw@api.example.com/",
        &[PUBLIC],
        "credentials_in_url",
    ),
    (
        "https://api.example.com@127.0.0.1/",
        &[],
        "credentials_in_url",
    ),
    ("not a url", &[], "bad_url"),
    ("https://", &[], "bad_url"),
    ("https://1.2.3.4.5/", &[], "bad_url"),
    ("https://[::1%25eth0]/", &[], "bad_url"),
];

#[test]
fn hostile_targets_are_refused_with_their_reason() {
    let cases = HOSTILE;
    assert!(cases.len() >= 60, "{}", cases.len());
    let mut wrong = Vec::new();
    for (url, answers, want) in cases {
        let got = code(url, answers);
        if got != *want {
            wrong.push(format!("{url} {answers:?}: {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_name_is_resolved_once_and_the_connection_uses_that_answer() {
    let (v, calls) = vet_with(
        "https://api.example.com:8443/v1/chat?key=x",
        &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    );
    let v = v.expect("public answers");
    assert_eq!(calls, 1);
    assert_eq!(v.connect.to_string(), "93.184.215.14:8443");
    assert_eq!(v.addresses.len(), 2);
    assert_eq!(v.host, "api.example.com");
    assert!(v.tls);
    // An address literal is never resolved.
    let (v, calls) = vet_with("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", &[]);
    assert_eq!(calls, 0);
    assert_eq!(
        v.expect("public").connect.to_string(),
        "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443"
    );
    // A refused name is never resolved either.
    let (_, calls) = vet_with("https://metadata.google.internal/", &["8.8.8.8"]);
    assert_eq!(calls, 0);
}

#[test]
fn plain_http_only_for_listed_hosts_and_their_addresses_are_still_checked() {
    let (v, _) = vet_with("http://dev.example.com/x", &["93.184.215.14"]);
    let v = v.expect("listed");
    assert!(!v.tls);
    assert_eq!(v.connect.port(), 80);
    assert_eq!(code("http://dev.example.com/", &["127.0.0.1"]), "loopback");
}

#[test]
fn messages_carry_no_query_string_or_user_info() {
    let (r, _) = vet_with(
        "https://user:s3cret@api.example.com/?token=abc",
        &["8.8.8.8"],
    );
    let r = r.expect_err("credentials");
    assert!(
        !r.message.contains("s3cret") && !r.message.contains("abc"),
        "{}",
        r.message
    );
    let (r, _) = vet_with("https://api.example.com/?token=abc", &["10.0.0.1"]);
    let r = r.expect_err("private");
    assert!(!r.message.contains("abc"), "{}", r.message);
    assert!(r.message.contains("10.0.0.1"), "{}", r.message);
}
