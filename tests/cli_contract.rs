use polars::prelude::*;
use serde_json::{Value, json};

use crate::util::{answers, run, sample_parquet};

#[test]
fn check_jsonl_answers_every_line_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = [
        r#"{"id": "ok1", "expr": "pl.col(\"a\") + 1"}"#,
        r#"{"id": 7, "expr": "eval(\"1\")"}"#,
        "not json at all",
        "",
        r#"{"id": "no-expr"}"#,
        r#"{"id": "big", "expr": "pl.lit(9**9**9)"}"#,
    ]
    .join("\n");
    let out = run(&["check", "expr", "--jsonl"], &input, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = answers(&out);
    assert_eq!(a.len(), 5, "one answer per non-blank line: {a:?}");
    assert_eq!(a[0], json!({"id": "ok1", "ok": true}));
    assert_eq!(a[1]["id"], json!(7));
    assert_eq!(a[1]["ok"], json!(false));
    assert_eq!(a[1]["code"], json!("forbidden_name"));
    assert_eq!(a[1]["span"], json!([0, 4]));
    assert_eq!(a[2]["id"], Value::Null);
    assert_eq!(a[2]["code"], json!("bad_request"));
    assert_eq!(a[3]["code"], json!("bad_request"));
    assert_eq!(a[4]["id"], json!("big"));
    assert_eq!(a[4]["code"], json!("limit_exceeded"));
}

#[test]
fn check_single_expression_is_human_readable() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(
        &["check", "expr", "pl.col(\"a\").frobnicate()"],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[unsupported_method]"), "{err}");
    assert!(err.contains("^^^^^^^^^^"), "{err}");
    let out = run(&["check", "expr", "pl.col(\"a\") * 2"], "", dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn eval_jsonl_writes_results_and_answers_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = sample_parquet(dir.path());
    let out_dir = dir.path().join("out");
    let lines = [
        r#"{"id": "sel", "expr": "pl.col(\"a\") * 2", "mode": "select"}"#,
        r#"{"id": "flt", "expr": "pl.col(\"b\") > 2", "mode": "filter"}"#,
        r#"{"id": "bad", "expr": "pl.col(\"a\") or pl.col(\"b\")", "mode": "filter"}"#,
        r#"{"id": "err", "expr": "pl.col(\"missing\")", "mode": "select"}"#,
        r#"{"id": "../escape", "expr": "pl.col(\"a\")", "mode": "select"}"#,
    ]
    .join("\n");
    let out = run(
        &[
            "eval",
            "--input",
            input.to_str().expect("utf8"),
            "--jsonl",
            "--out-dir",
            out_dir.to_str().expect("utf8"),
        ],
        &lines,
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = answers(&out);
    assert_eq!(a.len(), 5);
    assert_eq!(a[0], json!({"id": "sel", "ok": true, "rows": 5}));
    assert_eq!(a[1], json!({"id": "flt", "ok": true, "rows": 2}));
    assert_eq!(a[2]["code"], json!("boolean_operator"));
    assert_eq!(a[3]["code"], json!("eval_error"));
    assert_eq!(a[4]["code"], json!("bad_request"));
    assert!(!dir.path().join("escape.parquet").exists());
    let sel = ParquetReader::new(std::fs::File::open(out_dir.join("sel.parquet")).expect("open"))
        .finish()
        .expect("read");
    assert_eq!(sel.get_column_names(), ["result"]);
    let ca = sel.column("result").expect("c").i64().expect("i64").clone();
    let v: Vec<Option<i64>> = (0..ca.len()).map(|i| ca.get(i)).collect();
    assert_eq!(v, vec![Some(2), Some(-14), None, Some(20), Some(0)]);
    let flt = ParquetReader::new(std::fs::File::open(out_dir.join("flt.parquet")).expect("open"))
        .finish()
        .expect("read");
    assert_eq!(flt.width(), 5, "filter keeps every input column");
    assert!(!out_dir.join("bad.parquet").exists());
}

#[test]
fn eval_one_off_prints_a_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = sample_parquet(dir.path());
    let out = run(
        &[
            "eval",
            "--input",
            input.to_str().expect("utf8"),
            "--expr",
            "pl.col(\"s\").str.to_uppercase()",
        ],
        "",
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("APPLE") && text.contains("HELLO WORLD"),
        "{text}"
    );
    let out = run(
        &[
            "eval",
            "--input",
            input.to_str().expect("utf8"),
            "--expr",
            "open('x')",
        ],
        "",
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a rejected expression is a usage error"
    );
}

#[test]
fn check_sql_jsonl_answers_every_line_with_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = [
        r#"{"id": "q1", "sql": "SELECT n_name FROM nation WHERE n_comment = 'please delete'"}"#,
        r#"{"id": "q2", "sql": "SELECT pg_sleep(10)"}"#,
        r#"{"id": "q3", "sql": "DELETE FROM nation"}"#,
        r#"{"id": "q4", "sql": "SELECT 1; SELECT 2"}"#,
        r#"{"id": "q5", "sql": "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"}"#,
        r#"{"sql": 42}"#,
    ]
    .join("\n");
    let out = run(
        &["check", "sql", "--dialect", "postgres", "--jsonl"],
        &input,
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = answers(&out);
    assert_eq!(a.len(), 6);
    assert_eq!(a[0], json!({"id": "q1", "ok": true}));
    assert_eq!(a[1]["code"], json!("forbidden_function"));
    assert_eq!(a[2]["code"], json!("not_read_only"));
    assert_eq!(a[3]["code"], json!("multiple_statements"));
    assert_eq!(a[4]["code"], json!("data_modifying_cte"));
    assert_eq!(a[5]["code"], json!("bad_request"));
    let out = run(
        &[
            "check",
            "sql",
            "--dialect",
            "sqlite",
            "SELECT load_extension('x')",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[forbidden_function]"));
}

#[test]
fn query_reads_the_url_from_stdin_and_refuses_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("q.db");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            use sqlx::{Connection, Executor};
            let mut c =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display()))
                    .await
                    .expect("create");
            c.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (41), (42);")
                .await
                .expect("setup");
        });
    }
    let url = format!("sqlite://{}", db.display());
    let out = run(
        &[
            "query",
            "--url-file",
            "-",
            "--sql",
            "SELECT x + 1 AS y FROM t ORDER BY x",
        ],
        &url,
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("42") && text.contains("43"), "{text}");
    let out = run(
        &["query", "--url-file", "-", "--sql", "DELETE FROM t"],
        &url,
        dir.path(),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "the guard rejects it as a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("[not_read_only]"));
}

/// Issue 16, point 5: production mode requires mutual TLS, as its refusal text says; the
/// config check (the unit's `ExecStartPre`) refuses a `[tls]` without `client_ca_file`.
#[test]
fn validate_config_refuses_production_without_mutual_tls() {
    let dir = tempfile::tempdir().expect("tmp");
    let keygen = run(&["keygen", "--out", "keys"], "", dir.path());
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    for f in ["server.pem", "server.key", "clients-ca.pem", "hub-ca.pem"] {
        std::fs::write(dir.path().join(f), "placeholder").expect("write");
    }
    let path = |f: &str| format!("{:?}", dir.path().join(f).display().to_string());
    let server_only = format!(
        "[worker]\nid = \"w1\"\nlisten = \"127.0.0.1:7443\"\naudience = \"pool-a\"\nmode = \"production\"\n\n\
         [hub]\nurl = \"https://hub.example:7100\"\nissuer = \"hub\"\nca_file = {}\n\n\
         [secrets]\ndir = {}\n\n[tls]\ncert_file = {}\nkey_file = {}\n",
        path("hub-ca.pem"),
        path("keys"),
        path("server.pem"),
        path("server.key"),
    );
    std::fs::write(dir.path().join("server-only.toml"), &server_only).expect("write");
    let out = run(
        &["validate-config", "--config", "server-only.toml"],
        "",
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tls.client_ca_file: required in production mode"),
        "{stderr}"
    );
    // With the client CA: the same file passes.
    let mutual = format!("{server_only}client_ca_file = {}\n", path("clients-ca.pem"));
    std::fs::write(dir.path().join("mutual.toml"), mutual).expect("write");
    let out = run(
        &["validate-config", "--config", "mutual.toml"],
        "",
        dir.path(),
    );
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        (Some(0), "ok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
