//! Issue 21, point 5: parameter values, query results, connection secrets and tokens never
//! reach a log line (at trace level), an error a client gets, or a metrics label. A real
//! `hubworker serve` runs parameterised workflows (successful, cached, failing in the
//! database, refused for a value, refused for a swapped value) with a marker planted in each;
//! its whole log, every error returned and its metrics are searched.

// Test helpers (not only #[test] fns) unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, execute_event::Event};

use crate::daemon::{Daemon, add_postgres_with};

fn doc(query: &str) -> String {
    serde_json::json!({"version": 1,
        "params": {"tag": {"type": "str", "pattern": "^[A-Za-z0-9]+$"},
                   "n": {"type": "int", "default": 7}},
        "nodes": [
            {"id": "q", "tool": "sql", "connection": "marked", "dialect": "postgres",
             "query": query},
            {"id": "f", "tool": "formula", "input": "q", "formulas": [
                {"column": "echo", "expression": "pl.param(\"tag\")"}]},
            {"id": "o", "tool": "output", "input": "f", "name": "out"}]})
    .to_string()
}

/// Runs `doc` with `params` on a token bound to `token_params`; every error message the
/// client sees (the call's status, error events), and the rows' IPC bytes.
async fn run(
    stack: &Stack,
    daemon: &Daemon,
    doc: &str,
    token_params: &str,
    params: &str,
) -> (Vec<String>, Vec<u8>, String) {
    let token = stack
        .token_with_params("alice", doc, token_params, &["marked"])
        .await
        .unwrap();
    let mut client = daemon.client().await;
    let req = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        params_json: params.to_owned(),
        ..Default::default()
    };
    let (mut errors, mut ipc) = (Vec::new(), Vec::new());
    match client.execute(req).await {
        Err(s) => errors.push(format!("{:?} {}", s.code(), s.message())),
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(e)) => match e.event {
                        Some(Event::Error(e)) => errors.push(format!("{} {}", e.code, e.message)),
                        Some(Event::Result(r)) => ipc.extend_from_slice(&r.arrow_ipc),
                        _ => {}
                    },
                    Ok(None) => break,
                    Err(s) => {
                        errors.push(format!("{:?} {}", s.code(), s.message()));
                        break;
                    }
                }
            }
        }
    }
    (errors, ipc, token.expose().to_owned())
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issue21_planted_markers_never_reach_logs_errors_or_metrics() {
    let pid = std::process::id();
    let password = format!("PWMARK{pid}q");
    let value = format!("PARAMMARK{pid}q");
    // Built by the database: the query text holds only its pieces.
    let cell = format!("CELLMARK{pid}");
    let ok = doc("SELECT concat('CELL', 'MARK', :n::text) AS cell, length(:tag::text) AS len");
    let failing = doc("SELECT 1 / (length(:tag::text) - length(:tag::text)) AS boom");
    let good = serde_json::json!({"tag": value, "n": pid}).to_string();

    for (name, extra) in [
        ("process", ""),
        ("inline", "[sandbox]\nisolation = \"inline\"\n"),
    ] {
        let stack = Stack::start(1, &crate::util::sandboxed("")).await.unwrap();
        add_postgres_with(&stack, "marked", &password).await;
        let id = format!("redaction-{name}");
        let daemon = Daemon::start_logging(&stack, &id, 2, extra, "trace").await;
        let mut errors = Vec::new();
        let mut tokens = Vec::new();

        // A run that succeeds, and the same values again (served from the cache).
        for _ in 0..2 {
            let (e, ipc, token) = run(&stack, &daemon, &ok, &good, &good).await;
            assert!(e.is_empty(), "{name}: {e:?}");
            // The markers do travel where they belong: back to the client, as data.
            assert_eq!(count(&ipc, &cell), 1, "{name}: the result cell");
            assert_eq!(count(&ipc, &value), 1, "{name}: the parameter's echo");
            tokens.push(token);
        }
        // The database fails on the value (division by zero).
        let (e, _, token) = run(&stack, &daemon, &failing, &good, &good).await;
        assert!(
            !e.is_empty() && e.iter().all(|m| m.contains("query_failed")),
            "{name}: {e:?}"
        );
        errors.extend(e);
        tokens.push(token);
        // A value its pattern refuses.
        let refused = serde_json::json!({"tag": format!("{value}-!")}).to_string();
        let (e, _, token) = run(&stack, &daemon, &ok, &refused, &refused).await;
        assert!(
            e[0].contains("param_pattern") || e[0].contains("does not match"),
            "{e:?}"
        );
        errors.extend(e);
        tokens.push(token);
        // A token issued for other values.
        let other = serde_json::json!({"tag": format!("{value}x")}).to_string();
        let (e, _, token) = run(&stack, &daemon, &ok, &good, &other).await;
        assert!(e[0].contains("bound to other parameter values"), "{e:?}");
        errors.extend(e);
        tokens.push(token);

        let metrics = daemon.scrape();
        let log = daemon.log();
        // The scan sees what the daemon logs at trace level.
        assert!(
            log.contains("TRACE") && log.lines().count() > 20,
            "{name}: {log}"
        );
        assert!(log.contains(&id), "{name}: the worker's id is in its log");
        if std::env::var_os("HUBWORKER_TEST_SHOW_LOG").is_some() {
            eprintln!("{log}");
        }
        let mut found = Vec::new();
        let mut markers = vec![
            ("password", password.clone()),
            ("parameter value", value.clone()),
            ("result cell", cell.clone()),
        ];
        for t in &tokens {
            markers.push(("token", t.clone()));
            // The signature alone, too.
            markers.push(("token signature", t.rsplit('.').next().unwrap().to_owned()));
        }
        for (what, marker) in &markers {
            for (place, text) in [
                ("log", log.as_str()),
                ("metrics", metrics.as_str()),
                ("errors", &errors.join("\n")),
            ] {
                if count(text.as_bytes(), marker) > 0 {
                    found.push(format!("{name}: {what} in {place}"));
                }
            }
        }
        assert!(found.is_empty(), "{found:?}");
        drop(daemon);
        stack.shutdown().await;
    }
}
