//! Issue 23: the audit trail end to end. A worker with `[audit] dir` (in process, so a sandbox
//! fault can be planted) and the reference Hub: one record per run for a successful run, a
//! parameterised one, a run refused at Redeem, a cancelled, a timed-out and a sandbox-killed
//! run, each with exactly the documented fields; no query text or parameter value in any
//! record; `hub audit` for auditors only; an edited record named by `hub audit verify`, a
//! deleted one shown as a gap; the store refusing edits by itself.

use std::time::Duration;

use hubworker::demo::Stack;
use hubworker::proto::execute_event::Event;
use hubworker::proto::{AuditRecord, CancelRequest, ExecuteRequest};
use hubworker::sandbox::Fault;
use prost::Message as _;

use crate::util::{cross_join, jti_of, run, sandboxed};

const QUERY_MARKER: &str = "MARKER-QUERY-7731";
const PARAM_MARKER: &str = "MARKER-PARAM-5519";
/// In every result row, and nowhere in the query text (which has it in lower case).
const RESULT_MARKER: &str = "MARKER-RESULT-2604";

fn doc() -> String {
    format!(
        r#"{{"version": 1, "nodes": [
  {{"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id, name, upper('{result}') AS tag FROM products WHERE name <> '{QUERY_MARKER}'"}},
  {{"id": "o", "tool": "output", "input": "q", "name": "products"}}]}}"#,
        result = RESULT_MARKER.to_lowercase()
    )
}

const PARAM_DOC: &str = r#"{"version": 1, "params": {"name": {"type": "str"}}, "nodes": [
  {"id": "q", "tool": "sql", "connection": "shop", "dialect": "sqlite", "query": "SELECT id FROM products WHERE name <> :name"},
  {"id": "o", "tool": "output", "input": "q", "name": "ids"}]}"#;

/// How a run ended as its client saw it: its run id, `ok` or the error code, the rows of its
/// outputs and the Arrow IPC bytes received.
#[derive(Debug)]
struct Seen {
    run_id: String,
    outcome: String,
    rows: u64,
    bytes: u64,
    /// The results' Arrow IPC bytes.
    data: Vec<u8>,
}

async fn execute(
    stack: &Stack,
    token: &str,
    doc: &str,
    params: &str,
    cancel: bool,
    deadline: Option<Duration>,
) -> Seen {
    let mut client = stack.client().await.expect("client");
    let mut req = tonic::Request::new(ExecuteRequest {
        token: token.to_owned(),
        workflow_json: doc.to_owned(),
        bypass_cache: true,
        update_cache: false,
        params_json: params.to_owned(),
    });
    if let Some(d) = deadline {
        req.set_timeout(d);
    }
    let mut stream = client.execute(req).await.expect("accepted").into_inner();
    let mut seen = Seen {
        run_id: String::new(),
        outcome: String::new(),
        rows: 0,
        bytes: 0,
        data: Vec::new(),
    };
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e.event,
            Ok(None) => break,
            Err(s) => {
                if seen.outcome.is_empty() {
                    seen.outcome = crate::util::reason(&s);
                }
                break;
            }
        };
        match event {
            Some(Event::Accepted(a)) => {
                seen.run_id = a.run_id.clone();
                if cancel {
                    let mut c = stack.client().await.expect("client");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    c.cancel(CancelRequest {
                        run_id: a.run_id,
                        cancel_secret: a.cancel_secret,
                    })
                    .await
                    .expect("cancel");
                }
            }
            Some(Event::Progress(p))
                if p.tool == "output"
                    && p.state() == hubworker::proto::progress::State::Finished =>
            {
                seen.rows += p.rows.unwrap_or(0);
            }
            Some(Event::Result(r)) => {
                seen.bytes += r.arrow_ipc.len() as u64;
                seen.data.extend_from_slice(&r.arrow_ipc);
            }
            Some(Event::Finished(_)) => seen.outcome = "ok".into(),
            Some(Event::Error(e)) => seen.outcome = e.code,
            _ => {}
        }
    }
    seen
}

/// Waits until the Hub holds `n` records.
async fn records(stack: &Stack, n: usize) -> Vec<hubworker::hub::audit::Stored> {
    for _ in 0..200 {
        let stored = stack.store.audit_records(None).await.expect("records");
        if stored.len() >= n {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hub did not get {n} audit records");
}

fn hw(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let db = stack.dir().join("hub.db").display().to_string();
    let mut all = vec!["hub", "audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--db", &db]);
    let out = run(&all, "", stack.dir());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_run_leaves_one_signed_chained_record_and_only_auditors_read_them() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = dir.path().join("audit");
    let extra = format!(
        "{}\n[audit]\ndir = {:?}\n",
        sandboxed(""),
        spool.display().to_string()
    );
    let stack = Stack::start(2, &extra).await.expect("stack");
    let now = hubworker::hub::now();
    stack
        .store
        .add_user("carol", "auditor", now)
        .await
        .expect("auditor");
    stack
        .store
        .add_user("adam", "admin", now)
        .await
        .expect("admin");
    let worker_id = "demo-worker";

    // 1. A run that succeeds.
    let doc = doc();
    let ok_token = stack.token("alice", &doc, &["shop"]).await.expect("token");
    let ok = execute(&stack, ok_token.expose(), &doc, "", false, None).await;
    assert_eq!(ok.outcome, "ok");
    // The result marker is in the results (so the check on the records below can fail).
    assert!(String::from_utf8_lossy(&ok.data).contains(RESULT_MARKER));
    // 2. With a parameter value.
    let params = format!(r#"{{"name": "{PARAM_MARKER}"}}"#);
    let p_token = stack
        .token_with_params("alice", PARAM_DOC, &params, &["shop"])
        .await
        .expect("token");
    let with_params = execute(&stack, p_token.expose(), PARAM_DOC, &params, false, None).await;
    assert_eq!(with_params.outcome, "ok");
    // 3. Refused at Redeem: another worker redeemed the token first.
    let other = crate::daemon::Daemon::start(&stack, "w-other", 1, "").await;
    let r_token = stack.token("alice", &doc, &["shop"]).await.expect("token");
    let mut oc = other.client().await;
    crate::util::run_to_end(&mut oc, r_token.expose(), &doc)
        .await
        .expect("the other worker runs it");
    let refused = execute(&stack, r_token.expose(), &doc, "", false, None).await;
    assert_eq!(refused.outcome, "already_redeemed");
    // 4. Cancelled, 5. past its deadline.
    let long = cross_join(6_000);
    let c_token = stack.token("alice", &long, &[]).await.expect("token");
    let cancelled = execute(&stack, c_token.expose(), &long, "", true, None).await;
    assert_eq!(cancelled.outcome, "cancelled");
    let t_token = stack.token("alice", &long, &[]).await.expect("token");
    let timed_out = execute(
        &stack,
        t_token.expose(),
        &long,
        "",
        false,
        Some(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(timed_out.outcome, "timeout");
    // 6. Killed by the sandbox (a planted crash).
    let crash_doc = doc.replace("products\"}", "crash\"}");
    let hash = hubworker::workflow::workflow_sha256(&crash_doc).expect("hash");
    stack
        .worker
        .worker
        .sandbox()
        .expect("process isolation")
        .plant_fault(&hash, Fault::Crash);
    let k_token = stack
        .token("alice", &crash_doc, &["shop"])
        .await
        .expect("token");
    let killed = execute(&stack, k_token.expose(), &crash_doc, "", false, None).await;
    assert_eq!(killed.outcome, "crashed");

    let stored = records(&stack, 6).await;
    assert_eq!(stored.len(), 6);
    let runs = [
        (&ok, &ok_token, &doc, "", vec!["shop"], "ok", ""),
        (
            &with_params,
            &p_token,
            &PARAM_DOC.to_owned(),
            params.as_str(),
            vec!["shop"],
            "ok",
            "",
        ),
        (
            &refused,
            &r_token,
            &doc,
            "",
            vec!["shop"],
            "already_redeemed",
            "",
        ),
        (
            &cancelled,
            &c_token,
            &long,
            "",
            vec![],
            "cancelled",
            "cancelled",
        ),
        (
            &timed_out,
            &t_token,
            &long,
            "",
            vec![],
            "timeout",
            "timeout",
        ),
        (
            &killed,
            &k_token,
            &crash_doc,
            "",
            vec!["shop"],
            "crashed",
            "crashed",
        ),
    ];
    for (i, (s, (seen, token, doc, params, conns, outcome, exit_class))) in
        stored.iter().zip(runs).enumerate()
    {
        let r = s.record().expect("decodes");
        let params_sha = crate::util::claims_of(token.expose())["params_sha256"]
            .as_str()
            .expect("params_sha256")
            .to_owned();
        assert_eq!(
            params.is_empty(),
            params_sha == hubworker::token::NO_PARAMS_SHA256,
            "{i}"
        );
        assert_eq!(r.worker_id, worker_id);
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.run_id, seen.run_id, "{i}");
        assert_eq!(r.kind, "run");
        assert_eq!(r.jti, jti_of(token.expose()));
        assert_eq!(r.sub, "alice");
        assert_eq!(
            r.workflow_sha256,
            hubworker::workflow::workflow_sha256(doc).expect("hash")
        );
        assert_eq!(r.params_sha256, params_sha);
        assert_eq!(r.connections, conns);
        assert_eq!(r.outcome, outcome, "{i}");
        assert_eq!(r.exit_class, exit_class, "{i}");
        assert_eq!((r.rows_out, r.bytes_out), (seen.rows, seen.bytes), "{i}");
        assert!(
            r.started_at_ms >= now * 1000 && r.duration_ms < 60_000,
            "{i}"
        );
        assert_eq!(s.flag, None);
        // What a record never holds.
        let bytes = r.encode_to_vec();
        for marker in [
            QUERY_MARKER,
            PARAM_MARKER,
            RESULT_MARKER,
            "SELECT",
            ok_token.expose(),
        ] {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(marker),
                "{i}: {marker}"
            );
        }
    }
    let first = stored[0].record().expect("record");
    assert_eq!((first.inputs_cached, first.inputs_fetched), (0, 1));
    assert!(first.rows_out > 0 && first.bytes_out > 0);

    // Auditors only.
    let (code, out, err) = hw(&stack, &["list", "--as", "carol"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(
        out.contains(&format!("\t{}\trun\talice\t", seen_id(&ok))),
        "{out}"
    );
    let (code, out, _) = hw(&stack, &["verify", "--as", "carol"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 6 records of 1 workers, every chain intact\n")
    );
    for who in ["adam", "alice"] {
        let (code, _, err) = hw(&stack, &["verify", "--as", who]);
        assert_eq!(code, 2, "{who}");
        assert!(err.contains("hub audit is for auditors"), "{err}");
    }

    // The store refuses edits and deletions by itself...
    let url = format!("sqlite://{}", stack.dir().join("hub.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.expect("hub db");
    let e = sqlx::query("UPDATE audit_records SET flag = 'x' WHERE seq = 3")
        .execute(&db)
        .await
        .expect_err("append-only");
    assert!(e.to_string().contains("append-only"), "{e}");
    // ...and whoever drops the triggers to edit one is named by verify.
    let mut edited: AuditRecord = stored[2].record().expect("record");
    edited.outcome = "ok".into();
    sqlx::raw_sql("DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete")
        .execute(&db)
        .await
        .expect("drop triggers");
    sqlx::query("UPDATE audit_records SET body = ? WHERE seq = 3")
        .bind(edited.encode_to_vec())
        .execute(&db)
        .await
        .expect("edit");
    let (code, out, _) = hw(&stack, &["verify", "--as", "carol"]);
    assert_eq!(code, 1, "{out}");
    let at3 = format!("worker {worker_id} record 3 (run {})", refused.run_id);
    assert!(
        out.contains(&format!("{at3}: the signature does not verify")),
        "{out}"
    );
    assert!(!out.contains("record 2 "), "{out}");
    // A deleted record is a gap (every opening of the store puts the triggers back).
    sqlx::raw_sql("DROP TRIGGER audit_records_no_delete")
        .execute(&db)
        .await
        .expect("drop trigger");
    sqlx::query("DELETE FROM audit_records WHERE seq = 5")
        .execute(&db)
        .await
        .expect("delete");
    let (code, out, _) = hw(&stack, &["verify", "--as", "carol"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("worker {worker_id}: records 5..5 are missing")),
        "{out}"
    );
    db.close().await;
    stack.shutdown().await;
}

fn seen_id(s: &Seen) -> &str {
    &s.run_id
}

/// A Hub outage in the middle of 50 runs: the records of the runs during it (which fail at
/// Redeem: `hub_error`) wait in the spool, and once the Hub is back every record arrives, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_outage_loses_no_record_and_duplicates_none() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = dir.path().join("audit");
    let extra = format!(
        "[sandbox]\nisolation = \"inline\"\n\n[audit]\ndir = {:?}\n",
        spool.display().to_string()
    );
    let mut stack = Stack::start(4, &extra).await.expect("stack");
    let doc = doc();
    let mut outcomes = Vec::new();
    for phase in 0..3 {
        if phase == 1 {
            stack.stop_hub().await;
        }
        if phase == 2 {
            stack.restart_hub().await.expect("restart");
        }
        let n = if phase == 1 { 10 } else { 20 };
        for _ in 0..n {
            // Issued from the store directly: during the outage the Hub's service is down,
            // its store is not.
            let token = stack.token("alice", &doc, &["shop"]).await.expect("token");
            let seen = execute(&stack, token.expose(), &doc, "", false, None).await;
            outcomes.push((seen.run_id, seen.outcome));
        }
        if phase == 1 {
            // Nothing reaches the Hub meanwhile: the records wait on disk.
            let waiting = std::fs::read_dir(&spool)
                .expect("spool")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".pb"))
                })
                .count();
            assert!(waiting >= 10, "{waiting} records in the spool");
        }
    }
    assert_eq!(outcomes.len(), 50);
    // The runs during the outage fail at Redeem (the Hub's address refuses connections).
    assert!(
        outcomes[20..30].iter().all(|(_, o)| o == "hub_error"),
        "{outcomes:?}"
    );
    assert!(
        outcomes[..20]
            .iter()
            .chain(&outcomes[30..])
            .all(|(_, o)| o == "ok"),
        "{outcomes:?}"
    );
    let stored = records(&stack, 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored_again = stack.store.audit_records(None).await.expect("records");
    assert_eq!(stored_again.len(), 50, "duplicates");
    for (i, (s, (run_id, outcome))) in stored.iter().zip(&outcomes).enumerate() {
        let r = s.record().expect("record");
        assert_eq!(
            (r.seq, &r.run_id, &r.outcome),
            (i as u64 + 1, run_id, outcome)
        );
        assert_eq!(s.flag, None);
    }
    let keys = stack.store.audit_keys().await.expect("keys");
    assert!(hubworker::hub::audit::verify(&stored, &keys).is_empty());
    stack.shutdown().await;
}
