//! Issue 21, first step: a workflow declares run parameters; a run's values come with
//! `Execute` and `Validate` (`params_json`) and are checked against the declarations before
//! anything is redeemed, every problem at once, with stable codes and messages that name the
//! parameter and never echo a value.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, ValidateRequest, execute_event::Event};

use crate::util::{reason, sandboxed};

fn doc() -> String {
    serde_json::json!({"version": 1,
        "params": {
            "region": {"type": "str", "choices": ["north", "south"],
                       "description": "sales region"},
            "limit": {"type": "int", "min": 1, "max": 10, "default": 5},
            "since": {"type": "date", "default": "2024-01-01"}},
        "nodes": [
            {"id": "a", "tool": "inline", "columns": [{"name": "x", "type": "Int64"}],
             "rows": [[1], [2]]},
            {"id": "o", "tool": "output", "input": "a", "name": "out"}]})
    .to_string()
}

fn execute(token: &hubworker::secret::Secret, doc: &str, params: &str) -> ExecuteRequest {
    ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        params_json: params.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue21_parameter_values_are_checked_before_the_token_is_redeemed() {
    let stack = Stack::start(2, &sandboxed("")).await.unwrap();
    let doc = doc();
    let token = stack.token("alice", &doc, &[]).await.unwrap();
    let mut client = stack.client().await.unwrap();

    // No values: the required one is missing.
    let e = client.execute(execute(&token, &doc, "")).await.unwrap_err();
    assert_eq!(
        (e.code(), reason(&e).as_str()),
        (tonic::Code::InvalidArgument, "missing_param")
    );
    assert!(e.message().contains("`region`"), "{}", e.message());

    // Every problem at once; a 70,000-character value is never echoed.
    let long = "Z".repeat(70_000);
    let bad = serde_json::json!({"region": long, "limit": 11, "regoin": "north",
                                 "since": "01/02/2024"})
    .to_string();
    let e = client
        .execute(execute(&token, &doc, &bad))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&e), "unknown_param");
    for part in [
        "params.regoin",
        "did you mean `region`?",
        "params.limit",
        "above its maximum",
        "params.region",
        "not one of its choices",
        "params.since",
    ] {
        assert!(e.message().contains(part), "{part}: {}", e.message());
    }
    assert!(!e.message().contains("ZZZZ"), "a value was echoed");
    assert!(e.message().len() < 2_000, "{}", e.message().len());
    // Not JSON at all.
    let e = client
        .execute(execute(&token, &doc, "{\"region\":"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "invalid_json");

    // Validate lists the same problems, with codes, and does not consume the token.
    let v = client
        .validate(ValidateRequest {
            token: token.expose().to_owned(),
            workflow_json: doc.clone(),
            params_json: bad,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    let mut got: Vec<(String, String)> = v
        .problems
        .iter()
        .map(|p| (p.field.clone(), p.code.clone()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        ("params.limit", "param_out_of_range"),
        ("params.region", "param_choice"),
        ("params.regoin", "unknown_param"),
        ("params.since", "param_type"),
    ]
    .iter()
    .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(got, want);

    // Nothing was redeemed by the refusals: the token runs now, once, with good values.
    let good = r#"{"region": "south", "limit": 10}"#;
    let mut stream = client
        .execute(execute(&token, &doc, good))
        .await
        .unwrap()
        .into_inner();
    let mut finished = false;
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Finished(_)) => finished = true,
            Some(Event::Error(e)) => panic!("the run failed: {e:?}"),
            _ => {}
        }
    }
    assert!(finished);
    let e = client
        .execute(execute(&token, &doc, good))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "token_replayed");
    stack.shutdown().await;
}

#[test]
fn issue21_hubworker_validate_checks_values_given_with_param_and_params() {
    let dir = tempfile::tempdir().unwrap();
    let doc = doc();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // Without values, the document alone is validated.
    let out = crate::util::run(&["validate", "-"], &doc, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = crate::util::run(
        &[
            "validate",
            "-",
            "--param",
            "region=SECRET-west-1234",
            "--param",
            "limit=11",
            "--param",
            "since=yesterday",
        ],
        &doc,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    for code in ["[param_choice]", "[param_out_of_range]", "[param_type]"] {
        assert!(stdout.contains(code), "{code}: {stdout}");
    }
    assert!(stdout.ends_with("invalid: 3 problems\n"), "{stdout}");
    assert!(!stdout.contains("SECRET"), "a value was echoed: {stdout}");

    // A file of values, a --param over it; values typed by their declaration.
    let file = dir.path().join("params.json");
    std::fs::write(&file, r#"{"region": "north", "limit": 99}"#).unwrap();
    let ok = crate::util::run(
        &[
            "validate",
            "-",
            "--params",
            file.to_str().unwrap(),
            "--param",
            "limit=3",
            "--param",
            "since=2024-02-29",
        ],
        &doc,
        dir.path(),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert!(
        text(&ok.stdout)
            .lines()
            .last()
            .unwrap()
            .starts_with("sha256:")
    );
    let out = crate::util::run(
        &[
            "validate",
            "--json",
            "-",
            "--params",
            file.to_str().unwrap(),
        ],
        &doc,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["problems"][0]["field"], "params.limit");
    assert_eq!(v["problems"][0]["code"], "param_out_of_range");
}
