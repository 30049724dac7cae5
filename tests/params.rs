//! Issue 21, first step: a workflow declares run parameters; a run's values come with
//! `Execute` and `Validate` (`params_json`) and are checked against the declarations before
//! anything is redeemed, every problem at once, with stable codes and messages that name the
//! parameter and never echo a value.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, ValidateRequest, execute_event::Event};

use crate::util::{jti_of, reason, sandboxed};

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
    let good = r#"{"region": "south", "limit": 10}"#;
    let token = stack
        .token_with_params("alice", &doc, good, &[])
        .await
        .unwrap();
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

/// The parameterised example: `:region` and `:since` bound in SQL, `pl.param("min_qty")` in
/// a filter.
const REGION_ORDERS: &str = include_str!("../examples/region_orders.json");

/// Runs `doc` with `params`; (rows of the output's `orders` column summed, whether the sql
/// input came from the cache).
async fn run_with(
    client: &mut hubworker::proto::worker_client::WorkerClient<tonic::transport::Channel>,
    token: &hubworker::secret::Secret,
    params: &str,
) -> (i64, bool) {
    let mut stream = client
        .execute(execute(token, REGION_ORDERS, params))
        .await
        .unwrap()
        .into_inner();
    let (mut ipc, mut cached) = (Vec::new(), None);
    while let Some(e) = stream.message().await.unwrap() {
        match e.event {
            Some(Event::Progress(p)) if p.tool == "sql" && p.rows.is_some() => {
                cached = Some(p.from_cache);
            }
            Some(Event::Result(r)) => ipc.extend_from_slice(&r.arrow_ipc),
            Some(Event::Error(e)) => panic!("the run failed: {e:?}"),
            _ => {}
        }
    }
    let df = polars::prelude::IpcStreamReader::new(std::io::Cursor::new(ipc))
        .finish()
        .unwrap();
    use polars::prelude::SerReader as _;
    let orders: i64 = df
        .column("orders")
        .unwrap()
        .cast(&polars::prelude::DataType::Int64)
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .sum();
    (orders, cached.expect("the sql node finished"))
}

/// The token binds the values: the same token with other values is refused as
/// `params_mismatch` and stays unredeemed in the Hub; with its own values it runs, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue21_a_token_runs_only_with_the_values_it_was_issued_for() {
    let stack = Stack::start(2, &sandboxed("")).await.unwrap();
    let north = r#"{"region": "north", "min_qty": 3}"#;
    let token = stack
        .token_with_params("alice", REGION_ORDERS, north, &["shop"])
        .await
        .unwrap();
    let jti = jti_of(token.expose());
    let mut client = stack.client().await.unwrap();
    for other in [
        r#"{"region": "south", "min_qty": 3}"#,
        r#"{"region": "north"}"#,
        r#"{"region": "north", "min_qty": 3, "since": "2024-01-01"}"#,
    ] {
        let e = client
            .execute(execute(&token, REGION_ORDERS, other))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (tonic::Code::PermissionDenied, "params_mismatch"),
            "{other}"
        );
        assert!(!e.message().contains("north"), "{}", e.message());
        assert!(
            !stack.store.token(&jti).await.unwrap().unwrap().1,
            "a refused run redeemed the token"
        );
    }
    // The same values in another order and spacing are the same object (RFC 8785).
    let reordered = r#"{ "min_qty" : 3, "region" : "north" }"#;
    let (orders, _) = run_with(&mut client, &token, reordered).await;
    assert!(orders > 0);
    assert!(stack.store.token(&jti).await.unwrap().unwrap().1);
    let e = client
        .execute(execute(&token, REGION_ORDERS, north))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "token_replayed");
    stack.shutdown().await;
}

/// The result cache keys on the bound values, in both isolations: other values never share
/// an entry, equal values do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue21_the_cache_keeps_one_entry_per_value() {
    for config in [
        "[sandbox]\nisolation = \"inline\"\n".to_owned(),
        sandboxed(""),
    ] {
        let stack = Stack::start(2, &config).await.unwrap();
        let mut client = stack.client().await.unwrap();
        let mut seen = Vec::new();
        for region in ["north", "south", "north", "south", "east"] {
            let params = format!(r#"{{"region": "{region}"}}"#);
            let token = stack
                .token_with_params("alice", REGION_ORDERS, &params, &["shop"])
                .await
                .unwrap();
            seen.push((region, run_with(&mut client, &token, &params).await));
        }
        let cached: Vec<bool> = seen.iter().map(|(_, (_, c))| *c).collect();
        assert_eq!(cached, [false, false, true, true, false], "{config}");
        // Each region's rows are its own, from the database and from the cache alike.
        assert_eq!(seen[0].1.0, seen[2].1.0);
        assert_eq!(seen[1].1.0, seen[3].1.0);
        assert_ne!(
            seen[0].1.0, seen[1].1.0,
            "north and south have other orders"
        );
        stack.shutdown().await;
    }
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
