//! The review's SQL attacks replayed through the sandboxed worker over real gRPC, on the live
//! MariaDB and PostgreSQL servers: the MySQL Unicode-space comment bypass is refused before
//! anything is redeemed and can no longer be answered from another query's cache entry; a
//! volatile user-defined PostgreSQL function is refused by the catalog check at run time; a
//! healthy run beside them returns exact values from the cache that follows the query text. And
//! `hubworker query` on SQLite: the statement timeout interrupts an endless query.

// Test helpers unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use hubworker::creds::{Auth, Credential};
use hubworker::demo::Stack;
use hubworker::proto::{ExecuteRequest, ValidateRequest, execute_event::Event};
use hubworker::secret::Secret;
use hubworker::sql::Dialect;
use polars::prelude::*;
use sqlx::Connection;

/// A credential for the server at `url` (trust auth: the password is not checked).
fn credential(name: &str, dialect: Dialect, url: &str) -> Credential {
    let rest = url.split("://").nth(1).unwrap();
    let (auth, hostdb) = rest.split_once('@').unwrap();
    let user = auth.split(':').next().unwrap();
    let (hostport, database) = hostdb.split_once('/').unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    Credential {
        connection: name.into(),
        dialect,
        host: Some(host.into()),
        port: Some(port.parse().unwrap()),
        database: database.split('?').next().unwrap().into(),
        auth: Auth::Password {
            user: user.into(),
            password: Secret::new(String::new()),
        },
        role: None,
        tls: false,
    }
}

fn pg_url() -> String {
    std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_url() -> String {
    std::env::var("HUBWORKER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

fn workflow(connection: &str, dialect: &str, query: &str) -> String {
    serde_json::json!({"version": 1, "nodes": [
        {"id": "q", "tool": "sql", "connection": connection, "dialect": dialect, "query": query},
        {"id": "o", "tool": "output", "input": "q", "name": "out"}]})
    .to_string()
}

/// One Execute: the output frame and whether its input came from the cache, or the error code
/// (a status's `hubworker-reason`, or a run's error event).
async fn execute(
    stack: &Stack,
    user: &str,
    doc: &str,
    conn: &str,
) -> Result<(DataFrame, bool), String> {
    let token = stack.token(user, doc, &[conn]).await.unwrap();
    let mut client = stack.client().await.unwrap();
    let request = ExecuteRequest {
        token: token.expose().to_owned(),
        workflow_json: doc.to_owned(),
        ..Default::default()
    };
    let reason = |s: &tonic::Status| {
        s.metadata()
            .get("hubworker-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut stream = client
        .execute(request)
        .await
        .map_err(|s| reason(&s))?
        .into_inner();
    let (mut ipc, mut cached) = (Vec::new(), false);
    while let Some(e) = stream.message().await.map_err(|s| reason(&s))? {
        match e.event {
            Some(Event::Result(r)) => ipc.extend_from_slice(&r.arrow_ipc),
            Some(Event::Progress(p)) if p.tool == "sql" => cached |= p.from_cache,
            Some(Event::Error(e)) => return Err(e.code),
            _ => {}
        }
    }
    Ok((
        IpcStreamReader::new(Cursor::new(ipc)).finish().unwrap(),
        cached,
    ))
}

fn ints(df: &DataFrame, column: &str) -> Vec<Option<i64>> {
    df.column(column).unwrap().i64().unwrap().iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mysql_comment_bypass_is_refused_and_never_served_from_the_cache() {
    let stack = Stack::start(4, &crate::util::sandboxed("")).await.unwrap();
    let cred = credential("my", Dialect::Mysql, &mysql_url());
    stack
        .store
        .add_connection(&cred, &stack.keys.at_rest, hubworker::hub::now())
        .await
        .unwrap();
    // A healthy query fills the cache.
    let healthy = workflow(
        "my",
        "mysql",
        "SELECT c, d FROM (SELECT 1 AS c, 2 AS d) AS t",
    );
    let (df, cached) = execute(&stack, "alice", &healthy, "my").await.unwrap();
    assert_eq!(
        (ints(&df, "c"), ints(&df, "d"), cached),
        (vec![Some(1)], vec![Some(2)], false)
    );

    // The attack, with several Unicode spaces: before the fix the guard read
    // `SELECT c, d FROM ...` (a cache hit on the entry above) while the server ran the rest.
    for sp in ['\u{a0}', '\u{2007}', '\u{3000}'] {
        let attack = workflow(
            "my",
            "mysql",
            &format!(
                "SELECT c, d --{sp}, SLEEP(2), GET_LOCK('hw_l',0), LOAD_FILE('/etc/hostname'), @v := 42\n\
                 FROM (SELECT 1 AS c, 2 AS d, 3 AS `{sp}`) AS t"
            ),
        );
        assert_eq!(
            execute(&stack, "alice", &attack, "my").await.unwrap_err(),
            "invalid_workflow"
        );
        // Validate names the problem.
        let token = stack.token("alice", &attack, &["my"]).await.unwrap();
        let v = stack
            .client()
            .await
            .unwrap()
            .validate(ValidateRequest {
                token: token.expose().to_owned(),
                workflow_json: attack.clone(),
                params_json: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!v.valid);
        assert_eq!(
            v.problems
                .iter()
                .map(|p| (p.field.as_str(), p.code.as_str()))
                .collect::<Vec<_>>(),
            [("query", "lexing_mismatch")]
        );
    }
    // The same query spelled differently (case, comments, layout) is the same rendering: a
    // legitimate hit. A different query is not.
    let same = workflow(
        "my",
        "mysql",
        "select c,d /* the same */ from (select 1 as c, 2 as d) as t -- really",
    );
    let (df, cached) = execute(&stack, "alice", &same, "my").await.unwrap();
    assert_eq!((ints(&df, "c"), cached), (vec![Some(1)], true));
    let other = workflow(
        "my",
        "mysql",
        "SELECT c, d, 5 AS e FROM (SELECT 1 AS c, 2 AS d) AS t",
    );
    let (df, cached) = execute(&stack, "alice", &other, "my").await.unwrap();
    assert_eq!((ints(&df, "e"), cached), (vec![Some(5)], false));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volatile_postgres_function_is_refused_at_run_time_by_the_catalog() {
    let mut admin = sqlx::PgConnection::connect(&pg_url()).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS hw_gw_brin CASCADE;
         DROP FUNCTION IF EXISTS hw_gw_touch();
         CREATE TABLE hw_gw_brin (id int, v text);
         CREATE INDEX hw_gw_brin_idx ON hw_gw_brin USING brin (id) WITH (pages_per_range = 1, autosummarize = off);
         INSERT INTO hw_gw_brin SELECT g, repeat('y', 500) FROM generate_series(1, 2000) g;
         CREATE FUNCTION hw_gw_touch() RETURNS int LANGUAGE sql
           AS $$ SELECT brin_summarize_new_values('hw_gw_brin_idx'::regclass) $$;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let stack = Stack::start(2, &crate::util::sandboxed("")).await.unwrap();
    let cred = credential("pg", Dialect::Postgres, &pg_url());
    stack
        .store
        .add_connection(&cred, &stack.keys.at_rest, hubworker::hub::now())
        .await
        .unwrap();
    let attack = workflow("pg", "postgres", "SELECT hw_gw_touch() AS n");
    assert_eq!(
        execute(&stack, "alice", &attack, "pg").await.unwrap_err(),
        "forbidden_function"
    );
    // Nothing was summarized.
    let n: i32 = sqlx::query_scalar("SELECT brin_summarize_new_values('hw_gw_brin_idx'::regclass)")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(n > 0, "the index was summarized by the attack ({n})");
    let healthy = workflow(
        "pg",
        "postgres",
        "SELECT count(*) AS n FROM hw_gw_brin WHERE id > 1000",
    );
    let (df, _) = execute(&stack, "alice", &healthy, "pg").await.unwrap();
    assert_eq!(ints(&df, "n"), [Some(1000)]);
    stack.shutdown().await;
    sqlx::raw_sql("DROP FUNCTION hw_gw_touch(); DROP TABLE hw_gw_brin")
        .execute(&mut admin)
        .await
        .unwrap();
}

/// `hubworker query` on SQLite with `--timeout-ms 3000` and an endless recursive CTE: the
/// statement is interrupted inside SQLite at the limit (it spun until killed at 40 s before),
/// the process says `timeout` and exits 1; a healthy query afterwards prints its exact value.
#[test]
fn the_sqlite_statement_timeout_interrupts_an_endless_query() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (41);")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
    let started = std::time::Instant::now();
    let out = crate::util::run(
        &[
            "query",
            "--url",
            &url,
            "--sql",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            "--timeout-ms",
            "3000",
        ],
        "",
        dir.path(),
    );
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("time limit"), "{stderr}");
    // Generous bound: interrupted at ~3 s, never left to spin.
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
    let out = crate::util::run(
        &["query", "--url", &url, "--sql", "SELECT x + 1 AS y FROM t"],
        "",
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
}
