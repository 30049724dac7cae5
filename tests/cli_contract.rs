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
    let mutual = format!(
        "{server_only}client_ca_file = {}\n\n[audit]\ndir = {}\n",
        path("clients-ca.pem"),
        path("audit")
    );
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

/// Issue 16, point 12: the review's expressions through the real CLI. `replace_all` with an
/// empty pattern and a 64 KiB value (65,537 times longer rows) and `offset_by("999999999y")`
/// (a panic inside polars-time) are refused by `check expr` with `limit_exceeded`; healthy
/// expressions beside them still pass.
#[test]
fn issue16_replace_growth_and_long_durations_are_refused_by_check_expr() {
    let dir = tempfile::tempdir().expect("tmp");
    let lines = [
        json!({"id": "growth", "expr": "pl.col(\"s\").str.replace_all(\"\", \"x\" * 65536)"}),
        json!({"id": "growth-n", "expr": "pl.col(\"s\").str.replace(\"\", \"x\" * 65536, n=-1)"}),
        json!({"id": "chain", "expr": "pl.col(\"s\").str.replace_all(\"a\", \"aaaaaaaa\").str.replace_all(\"a\", \"aaaaaaaaa\")"}),
        json!({"id": "data-value", "expr": "pl.col(\"s\").str.replace_all(\"a\", pl.col(\"t\"))"}),
        json!({"id": "offset", "expr": "pl.col(\"t\").dt.offset_by(\"999999999y\")"}),
        json!({"id": "truncate", "expr": "pl.col(\"t\").dt.truncate(pl.lit(\"1000000d\"))"}),
        json!({"id": "unit", "expr": "pl.col(\"t\").dt.round(\"1x\")"}),
        json!({"id": "ok-empty", "expr": "pl.col(\"s\").str.replace_all(\"\", \"-\")"}),
        json!({"id": "ok-once", "expr": "pl.col(\"s\").str.replace(\"\", \"x\" * 65536)"}),
        json!({"id": "ok-escape", "expr": "pl.col(\"s\").str.replace_all(\"&\", \"&amp;\").str.replace_all(\"<\", \"&lt;\")"}),
        json!({"id": "ok-offset", "expr": "pl.col(\"t\").dt.offset_by(\"-286y\")"}),
    ]
    .map(|l| l.to_string())
    .join("\n");
    let out = run(&["check", "expr", "--jsonl"], &lines, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = answers(&out);
    let got: Vec<(&str, &str, Value)> = a
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id"),
                a["code"].as_str().unwrap_or("ok"),
                a["span"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("growth", "limit_exceeded", json!([0, 44])),
            ("growth-n", "limit_exceeded", json!([0, 46])),
            ("chain", "limit_exceeded", json!([0, 78])),
            ("data-value", "limit_exceeded", json!([0, 45])),
            ("offset", "limit_exceeded", json!([25, 37])),
            ("truncate", "limit_exceeded", json!([24, 42])),
            ("unit", "bad_arguments", json!([21, 25])),
            ("ok-empty", "ok", Value::Null),
            ("ok-once", "ok", Value::Null),
            ("ok-escape", "ok", Value::Null),
            ("ok-offset", "ok", Value::Null),
        ]
    );
    assert_eq!(
        a[0]["message"],
        json!(
            "Expr.str.replace_all(): the pattern can match the empty string (or is not a \
             constant), so it matches at every character, and each match becomes 65536 bytes: \
             a row's text could grow 65537 times longer; the limit is 64 times per expression"
        )
    );
    assert_eq!(
        a[4]["message"],
        json!(
            "Expr.dt.offset_by(): duration \"999999999y\" is too long; the limit is about 292 \
             years (3,438 months or 102,481 days: a month counted as 31 days and an hour, a day \
             as 25 hours)"
        )
    );
    // The single-expression form exits 1 with the code.
    let out = run(
        &[
            "check",
            "expr",
            "pl.col(\"t\").dt.offset_by(\"999999999y\")",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[limit_exceeded]"));
}

/// Issue 16, point 12: a panic inside Polars while evaluating (a date offset leaving chrono's
/// calendar; a duration string that reaches Polars from data, where the checker cannot see
/// it) is answered `eval_error`, and the batch goes on with exact results; the refused
/// attacks are answered with their codes, never run.
#[test]
fn issue16_a_panic_inside_polars_is_an_eval_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = sample_parquet(dir.path());
    let out_dir = dir.path().join("out");
    let lines = [
        json!({"id": "growth", "expr": "pl.col(\"s\").str.replace_all(\"\", \"x\" * 65536)"}),
        json!({"id": "offset", "expr": "pl.date(2024, 1, 1).dt.offset_by(\"999999999y\")"}),
        json!({"id": "panic", "expr": "pl.date(262142, 12, 31).dt.offset_by(\"2y\")"}),
        json!({"id": "from-data", "expr": "pl.date(2024, 1, 1).dt.offset_by(pl.lit(\"999999999Y\").str.to_lowercase())"}),
        json!({"id": "healthy", "expr": "pl.col(\"s\").str.replace_all(\"\", \"-\")"}),
        json!({"id": "month", "expr": "pl.date(2024, 1, 31).dt.offset_by(\"1mo\")"}),
    ]
    .map(|l| l.to_string())
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
    let codes: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a["id"].as_str().expect("id"),
                a["code"].as_str().unwrap_or("ok"),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("growth", "limit_exceeded"),
            ("offset", "limit_exceeded"),
            ("panic", "eval_error"),
            ("from-data", "eval_error"),
            ("healthy", "ok"),
            ("month", "ok"),
        ]
    );
    assert_eq!(
        a[2]["message"],
        json!("the engine failed on this expression (internal error)")
    );
    let read = |id: &str| {
        let f = std::fs::File::open(out_dir.join(format!("{id}.parquet"))).expect("open");
        let df = ParquetReader::new(f).finish().expect("read");
        let c = df
            .column("result")
            .expect("c")
            .cast(&DataType::String)
            .expect("cast");
        c.str()
            .expect("str")
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let s = |v: &[Option<&str>]| v.iter().map(|o| o.map(str::to_owned)).collect::<Vec<_>>();
    assert_eq!(
        read("healthy"),
        s(&[
            Some("-a-p-p-l-e-"),
            Some("-ü-"),
            None,
            Some("---1-2-"),
            Some("-H-e-l-l-o- -W-o-r-l-d-")
        ])
    );
    assert_eq!(read("month"), s(&[Some("2024-02-29")]));
    for id in ["growth", "offset", "panic", "from-data"] {
        assert!(!out_dir.join(format!("{id}.parquet")).exists(), "{id}");
    }

    // One expression: a runtime failure (exit 1), never a crash (exit 101); also when the
    // result holds a date past the calendar that only printing it would trip over.
    for expr in [
        "pl.date(262142, 12, 31).dt.offset_by(\"2y\")",
        "pl.date(262142, 12, 31).dt.offset_by(\"1d\")",
    ] {
        let out = run(
            &[
                "eval",
                "--input",
                input.to_str().expect("utf8"),
                "--expr",
                expr,
            ],
            "",
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1), "{expr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("hubworker: execution failed: "),
            "{expr}: {err}"
        );
    }
    let out = run(
        &[
            "eval",
            "--input",
            input.to_str().expect("utf8"),
            "--expr",
            "pl.date(2024, 1, 31).dt.offset_by(\"1mo\")",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2024-02-29"));
}

/// Issue 20: `hubworker bench expr` runs the execution plan on both engines (three ways each,
/// the same groups every way) and, with `--python`, the same plan in py-polars on the same rows
/// with the ratio; where py-polars is missing, `--python` fails with a clear message.
#[test]
fn issue20_bench_expr_compares_the_engines_and_py_polars() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench", "expr", "--rows", "20000", "--runs", "1", "--exprs", "10", "--python",
    ];
    let out = crate::util::run(&args, "", dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let py_polars = std::process::Command::new("python3")
        .args(["-c", "import polars"])
        .status()
        .is_ok_and(|s| s.success());
    if !py_polars {
        assert!(!out.status.success());
        assert!(err.contains("is polars installed for python3?"), "{err}");
        return;
    }
    assert!(out.status.success(), "{err}");
    for engine in ["streaming", "in-memory"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(engine))
            .unwrap_or_else(|| panic!("no {engine} line: {text}"));
        assert_eq!(line.matches("(57 groups)").count(), 3, "{line}");
    }
    for engine in ["auto", "streaming", "in-memory"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(engine) && l.ends_with("ms (57 groups)")),
            "py-polars {engine}: {text}"
        );
    }
    assert!(text.contains("py-polars best: "), "{text}");
}

/// Issue 22, the CLI contract: `hubworker check egress --jsonl` answers every line in order
/// with the vetted connection or the refusal's code, using the simulated DNS answers only.
#[test]
fn check_egress_jsonl_answers_every_line_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = [
        r#"{"id": 1, "url": "https://api.openai.com/v1/chat/completions", "resolve": ["104.18.6.192", "104.18.7.192"]}"#,
        r#"{"id": 2, "url": "https://[2606:4700::6812:6c0]:8443/"}"#,
        r#"{"id": 3, "url": "https://rebind.example.com/", "resolve": ["104.18.6.192", "169.254.169.254"]}"#,
        r#"{"id": 4, "url": "https://0x7f.1/"}"#,
        r#"{"id": 5, "url": "https://[::ffff:10.0.0.1]/"}"#,
        r#"{"id": 6, "url": "http://api.openai.com/", "resolve": ["104.18.6.192"]}"#,
        r#"{"id": 7, "url": "https://metadata.google.internal/"}"#,
        r#"{"id": 8, "url": "https://no-answer.example.com/"}"#,
        r#"{"url": 42}"#,
    ]
    .join("\n");
    let out = run(&["check", "egress", "--jsonl"], &input, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = answers(&out);
    assert_eq!(a.len(), 9);
    assert_eq!(
        a[0],
        json!({"id": 1, "ok": true, "connect": "104.18.6.192:443"})
    );
    assert_eq!(
        a[1],
        json!({"id": 2, "ok": true, "connect": "[2606:4700::6812:6c0]:8443"})
    );
    let codes: Vec<&str> = a[2..]
        .iter()
        .map(|x| x["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "metadata",
            "loopback",
            "private",
            "scheme_not_allowed",
            "metadata_name",
            "resolve_failed",
            "bad_request"
        ]
    );
    assert!(a[2..].iter().all(|x| x["ok"] == json!(false)));
    // One URL: exit 0 and the connection, or exit 1 and the reason.
    let out = run(
        &[
            "check",
            "egress",
            "https://api.example.com/",
            "--resolve",
            "93.184.215.14",
        ],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok: connect 93.184.215.14:443\n"
    );
    let out = run(&["check", "egress", "https://2130706433/"], "", dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with("[loopback]\n"));
}
