//! Live tests of what the guard sends and of the catalog check, on the PostgreSQL and MariaDB
//! servers CI runs (and SQLite): the renderings of the public corpus and of TPC-H give the
//! original text's results; the review's attacks are refused and change nothing; a healthy
//! query beside them returns exact values.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};

use super::tests::{mysql_url, pg_url, rt, target};
use super::*;
use crate::sql::guard;

/// The URL with its database replaced by `db` (query parameters kept).
fn with_database(url: &str, db: &str) -> String {
    let (base, params) = url.split_once('?').map_or((url, ""), |(b, p)| (b, p));
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    if params.is_empty() {
        format!("{server}/{db}")
    } else {
        format!("{server}/{db}?{params}")
    }
}

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sql")
}

/// The TPC-H verification schema of the public SQL corpus for `dialect`, as SQL.
fn tpch_script(dialect: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg(corpus_dir().join("load_tpch.py"))
        .arg(dialect)
        .output()
        .expect("python3 runs load_tpch.py");
    assert!(out.status.success(), "load_tpch.py {dialect} failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// (id, sql) of every legit corpus query and TPC-H query of `dialect`.
fn cases(dialect: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in ["legit.jsonl", "tpch.jsonl"] {
        let text = std::fs::read_to_string(corpus_dir().join(file)).expect("corpus");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            if v["dialect"] == dialect {
                out.push((
                    v["id"].as_str().expect("id").to_owned(),
                    v["sql"].as_str().expect("sql").to_owned(),
                ));
            }
        }
    }
    out
}

/// Runs every case of `dialect` on `t` twice, from the caller's text and from the guard's
/// rendering, through the same read-only session, and asserts the same outcome: the same
/// values (and dtypes and column count), or the same error code. Returns how many produced
/// rows.
async fn same_results(t: &Target, dialect: &str) -> usize {
    let mut with_rows = 0;
    for (id, sql) in cases(dialect) {
        let checked = guard(&sql, t.dialect).unwrap_or_else(|e| panic!("{id}: {e}"));
        let original = run_sql(t, &sql, QueryOptions::default()).await;
        let rendered = run_sql(t, checked.sql(), QueryOptions::default()).await;
        let rendered_code = rendered.as_ref().err().map(ConnectorError::code);
        match (original, rendered) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.shape(), b.shape(), "{id}");
                assert_eq!(a.dtypes(), b.dtypes(), "{id}");
                for (x, y) in a.columns().iter().zip(b.columns()) {
                    assert!(
                        x.as_materialized_series()
                            .equals_missing(y.as_materialized_series()),
                        "{id}: column {} differs:\n{a}\n{b}",
                        x.name()
                    );
                }
                with_rows += usize::from(a.height() > 0);
            }
            (Err(a), Err(b)) => {
                eprintln!("{id}: both fail with {}", a.code());
                assert_eq!(a.code(), b.code(), "{id}");
            }
            (a, b) => panic!(
                "{id}: original {:?} vs rendering {:?}",
                a.map(|d| d.shape()),
                b.map(|d| d.shape())
            ),
        }
        // The full path (catalog check, COPY for PostgreSQL) agrees.
        let full = query(t, &checked, &[], QueryOptions::default()).await;
        assert_eq!(
            full.as_ref().err().map(ConnectorError::code),
            rendered_code,
            "{id}: {:?}",
            full.err()
        );
    }
    with_rows
}

#[test]
fn renderings_give_the_original_texts_results_on_live_servers() {
    rt().block_on(async {
        let db = format!("hw_guard_render_{}", std::process::id());
        // PostgreSQL.
        let admin = pg_url();
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("pg");
        c.execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await
            .expect("drop");
        c.execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .expect("create");
        let url = with_database(&admin, &db);
        let mut load = sqlx::PgConnection::connect(&url).await.expect("pg db");
        sqlx::raw_sql(&tpch_script("postgres"))
            .execute(&mut load)
            .await
            .expect("load");
        load.close().await.expect("close");
        let pg_rows = same_results(&target(&url), "postgres").await;
        c.execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
            .await
            .expect("drop");

        // MariaDB.
        let admin = mysql_url();
        let mut c = sqlx::MySqlConnection::connect(&admin).await.expect("mysql");
        c.execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
            .await
            .expect("drop");
        c.execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .expect("create");
        let url = with_database(&admin, &db);
        let mut load = sqlx::MySqlConnection::connect(&url).await.expect("db");
        sqlx::raw_sql(&tpch_script("mysql"))
            .execute(&mut load)
            .await
            .expect("load");
        load.close().await.expect("close");
        let my_rows = same_results(&target(&url), "mysql").await;
        c.execute(format!("DROP DATABASE IF EXISTS {db}").as_str())
            .await
            .expect("drop");

        // SQLite.
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("tpch.db").display());
        let mut load = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("sqlite");
        sqlx::raw_sql(&tpch_script("sqlite"))
            .execute(&mut load)
            .await
            .expect("load");
        load.close().await.expect("close");
        let lite_rows = same_results(&target(&url), "sqlite").await;

        // Most cases return rows (a case that returns none proves less).
        assert!(pg_rows >= 45, "postgres: {pg_rows} with rows");
        assert!(my_rows >= 25, "mysql: {my_rows} with rows");
        assert!(lite_rows >= 25, "sqlite: {lite_rows} with rows");
    });
}

/// The text the server received is the rendering: MariaDB shows the statement it is running
/// in its process list, and PostgreSQL in pg_stat_activity.
#[test]
fn the_server_receives_the_rendering_not_the_callers_text() {
    rt().block_on(async {
        let t = target(&mysql_url());
        let q = guard(
            "select info /* hidden, sleep(1) */ from information_schema.processlist\n\
             where id = connection_id()  -- trailing",
            Dialect::Mysql,
        )
        .expect("accepted");
        let df = query(&t, &q, &[], QueryOptions::default())
            .await
            .expect("runs");
        let seen = df.column("info").expect("info").str().expect("str").get(0);
        assert_eq!(
            seen,
            Some("SELECT info FROM information_schema.processlist WHERE id = connection_id()")
        );

        let t = target(&pg_url());
        let q = guard(
            "select query /* note */ from pg_stat_activity where pid = pg_backend_pid()",
            Dialect::Postgres,
        )
        .expect("accepted");
        let df = query(&t, &q, &[], QueryOptions::default())
            .await
            .expect("runs");
        let seen = df
            .column("query")
            .expect("query")
            .str()
            .expect("str")
            .get(0);
        assert_eq!(
            seen,
            Some(
                "COPY (SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()) TO \
                 STDOUT (FORMAT binary)"
            )
        );
    });
}

/// The review's MySQL bypass, replayed with several Unicode spaces and several hidden calls:
/// the server really would run the hidden calls (shown on the raw session path), the guard
/// refuses every variant, no lock is held, nothing slept, and a healthy query returns exact
/// values.
#[test]
fn the_mysql_unicode_space_bypass_is_refused_and_runs_nothing() {
    rt().block_on(async {
        let t = target(&mysql_url());
        let hidden = |sp: char| {
            format!(
                "SELECT c --{sp}, SLEEP(0), IS_FREE_LOCK('hw_l'), @v := 42, 7 AS extra \
                 FROM (SELECT 1 AS c, 2 AS `{sp}`) AS t"
            )
        };
        // Without the guard the server reads the "comment" as code: more than one column.
        let raw = run_sql(&t, &hidden('\u{a0}'), QueryOptions::default())
            .await
            .expect("the server runs it");
        assert!(raw.width() > 2, "the server sees the hidden calls: {raw}");

        let started = Instant::now();
        for sp in ['\u{a0}', '\u{2003}', '\u{3000}', '\u{205f}', '\u{85}'] {
            let attack = format!(
                "SELECT c --{sp}, SLEEP(2), GET_LOCK('hw_l',0), LOAD_FILE('/etc/hostname'), \
                 @v := 42 FROM (SELECT 1 AS c, 2 AS `{sp}`) AS t"
            );
            let e = guard(&attack, Dialect::Mysql).expect_err("refused");
            assert_eq!(e.code.as_str(), "lexing_mismatch");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "nothing slept");
        // No session holds the lock the attack would have taken (asked on a raw session:
        // IS_FREE_LOCK is in the lock family the guard denies).
        let df = run_sql(
            &t,
            "SELECT IS_FREE_LOCK('hw_l') AS free",
            QueryOptions::default(),
        )
        .await
        .expect("probe");
        assert_eq!(
            df.column("free").expect("free").i64().expect("i64").get(0),
            Some(1)
        );

        let q = guard(
            "SELECT c, c * 6 AS six FROM (SELECT 7 AS c) AS t",
            Dialect::Mysql,
        )
        .expect("healthy");
        let df = query(&t, &q, &[], QueryOptions::default())
            .await
            .expect("runs");
        assert_eq!(
            df.column("six").expect("six").i64().expect("i64").get(0),
            Some(42)
        );
    });
}

/// PostgreSQL's read-only sessions still let `brin_summarize_new_values` and
/// `gin_clean_pending_list` change index pages, and a user-defined (volatile) function can call
/// them; the config-file views return the server's files. All refused; the index stays as it
/// was; a healthy query returns exact values.
#[test]
fn postgres_volatile_functions_and_file_views_are_refused_and_change_nothing() {
    rt().block_on(async {
        let url = pg_url();
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("pg");
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS hw_brin CASCADE;
             DROP FUNCTION IF EXISTS hw_summarize();
             CREATE TABLE hw_brin (id int, v text);
             INSERT INTO hw_brin SELECT g, 'x' FROM generate_series(1, 200) g;
             CREATE INDEX hw_brin_idx ON hw_brin USING brin (id) WITH (pages_per_range = 1, autosummarize = off);
             INSERT INTO hw_brin SELECT g, repeat('y', 500) FROM generate_series(201, 2000) g;
             CREATE FUNCTION hw_summarize() RETURNS int LANGUAGE sql
               AS $$ SELECT brin_summarize_new_values('hw_brin_idx'::regclass) $$;",
        )
        .execute(&mut admin)
        .await
        .expect("setup");
        let t = target(&url);
        // Static layer (no database needed).
        for sql in [
            "SELECT brin_summarize_new_values('hw_brin_idx'::regclass)",
            "SELECT gin_clean_pending_list('hw_brin_idx'::regclass)",
        ] {
            let e = guard(sql, Dialect::Postgres).expect_err("refused");
            assert_eq!(e.code.as_str(), "forbidden_function", "{sql}");
        }
        for sql in [
            "SELECT * FROM pg_hba_file_rules",
            "SELECT sourcefile, name, setting FROM pg_file_settings",
        ] {
            let e = guard(sql, Dialect::Postgres).expect_err("refused");
            assert_eq!(e.code.as_str(), "forbidden_relation", "{sql}");
        }
        // Catalog layer: the user-defined function passes the static rules, and the server's
        // catalog says it is volatile.
        for sql in [
            "SELECT hw_summarize()",
            "SELECT public.hw_summarize() AS n",
            "SELECT id FROM hw_brin WHERE id = hw_summarize()",
        ] {
            let q = guard(sql, Dialect::Postgres).expect("statically unknown");
            let e = query(&t, &q, &[], QueryOptions::default())
                .await
                .expect_err("refused by the catalog");
            assert_eq!(e.code(), "forbidden_function", "{sql}");
            assert!(e.to_string().contains("public.hw_summarize"), "{e}");
        }
        // Nothing was summarized: the ranges are still there for the admin to summarize.
        let n: i32 = sqlx::query_scalar("SELECT brin_summarize_new_values('hw_brin_idx'::regclass)")
            .fetch_one(&mut admin)
            .await
            .expect("admin summarizes");
        assert!(n > 0, "the attack must not have summarized the index ({n})");
        // Allowlisted volatile built-ins and ordinary functions still run, with exact values.
        let q = guard(
            "SELECT count(*) AS n, max(id) AS top, random() < 2 AS r FROM hw_brin",
            Dialect::Postgres,
        )
        .expect("healthy");
        let df = query(&t, &q, &[], QueryOptions::default()).await.expect("runs");
        assert_eq!(df.column("n").expect("n").i64().expect("i64").get(0), Some(2000));
        assert_eq!(df.column("top").expect("t").i32().expect("i32").get(0), Some(2000));
        assert_eq!(df.column("r").expect("r").bool().expect("bool").get(0), Some(true));
        sqlx::raw_sql("DROP FUNCTION hw_summarize(); DROP TABLE hw_brin")
            .execute(&mut admin)
            .await
            .expect("cleanup");
    });
}

/// MariaDB: stored functions declared `MODIFIES SQL DATA` and the `mysql.*` tables are refused;
/// the table the function would write is unchanged; a read-only stored function still runs.
#[test]
fn mariadb_modifying_functions_and_the_mysql_schema_are_refused() {
    rt().block_on(async {
        let url = mysql_url();
        let mut admin = sqlx::MySqlConnection::connect(&url).await.expect("mysql");
        for stmt in [
            "DROP FUNCTION IF EXISTS hw_bump",
            "DROP FUNCTION IF EXISTS hw_double",
            "DROP TABLE IF EXISTS hw_hits",
            "CREATE TABLE hw_hits (n INT) ENGINE=MyISAM",
            "INSERT INTO hw_hits VALUES (0)",
            "CREATE FUNCTION hw_bump() RETURNS INT MODIFIES SQL DATA \
             BEGIN UPDATE hw_hits SET n = n + 1; RETURN 1; END",
            "CREATE FUNCTION hw_double(x INT) RETURNS INT DETERMINISTIC NO SQL RETURN x * 2",
        ] {
            sqlx::raw_sql(stmt).execute(&mut admin).await.expect(stmt);
        }
        let t = target(&url);
        for sql in [
            "SELECT hw_bump()",
            "SELECT HW_BUMP() AS b",
            "SELECT test.hw_bump()",
        ] {
            let q = guard(sql, Dialect::Mysql).expect("statically unknown");
            let e = query(&t, &q, &[], QueryOptions::default())
                .await
                .expect_err("refused by the catalog");
            assert_eq!(e.code(), "forbidden_function", "{sql}");
        }
        let n: i32 = sqlx::query_scalar("SELECT n FROM hw_hits")
            .fetch_one(&mut admin)
            .await
            .expect("probe");
        assert_eq!(n, 0, "the function never ran");
        for sql in [
            "SELECT User, authentication_string FROM mysql.user",
            "SELECT * FROM mysql.global_priv",
        ] {
            let e = guard(sql, Dialect::Mysql).expect_err("refused");
            assert_eq!(e.code.as_str(), "forbidden_relation", "{sql}");
        }
        let q = guard("SELECT hw_double(21) AS v", Dialect::Mysql).expect("healthy");
        let df = query(&t, &q, &[], QueryOptions::default())
            .await
            .expect("runs");
        assert_eq!(
            df.column("v").expect("v").i64().expect("i64").get(0),
            Some(42)
        );
        for stmt in [
            "DROP FUNCTION hw_bump",
            "DROP FUNCTION hw_double",
            "DROP TABLE hw_hits",
        ] {
            sqlx::raw_sql(stmt).execute(&mut admin).await.expect(stmt);
        }
    });
}

/// A statement still running holds its read lock on the file; an exclusive lock (with a 5 s busy
/// timeout) is granted only once every reader has stopped.
async fn assert_no_reader_left(url: &str) {
    let mut rw = sqlx::SqliteConnection::connect(&format!("{url}?mode=rw"))
        .await
        .expect("open");
    sqlx::raw_sql("PRAGMA busy_timeout = 5000; BEGIN EXCLUSIVE; COMMIT;")
        .execute(&mut rw)
        .await
        .expect("no statement is left running: the exclusive lock is granted");
    rw.close().await.expect("close");
}

/// SQLite has no statement timeout; an endless recursive CTE under a 300 ms limit must be
/// interrupted inside SQLite (the call, which waits for the driver's thread to finish the
/// statement and close, returns), and a healthy query afterwards returns exact values.
#[test]
fn sqlite_timeouts_interrupt_the_statement() {
    rt().block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut rw = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("create");
        rw.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (41);")
            .await
            .expect("setup");
        rw.close().await.expect("close");
        let t = target(&url);
        let endless = guard(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT count(*) AS n FROM c",
            Dialect::Sqlite,
        )
        .expect("accepted");
        let options = QueryOptions {
            timeout: Duration::from_millis(300),
            ..QueryOptions::default()
        };
        let started = Instant::now();
        let e = query(&t, &endless, &[], options)
            .await
            .expect_err("stopped");
        assert!(matches!(e, ConnectorError::Timeout), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_no_reader_left(&url).await;
        // A query future dropped mid-statement (a cancelled run) stops the statement too.
        let long = QueryOptions {
            timeout: Duration::from_secs(3600),
            ..QueryOptions::default()
        };
        let dropped =
            tokio::time::timeout(Duration::from_millis(300), query(&t, &endless, &[], long));
        assert!(dropped.await.is_err(), "still running when dropped");
        assert_no_reader_left(&url).await;
        let q = guard("SELECT x + 1 AS y FROM t", Dialect::Sqlite).expect("healthy");
        let df = query(&t, &q, &[], QueryOptions::default())
            .await
            .expect("runs");
        assert_eq!(
            df.column("y").expect("y").i64().expect("i64").get(0),
            Some(42)
        );
    });
}

/// The two legitimate PostgreSQL queries the guard used to refuse (issue 16, point 14): a
/// nested block comment and a `U&"..."` identifier (with and without `UESCAPE`) run on the live
/// server with exact values.
#[test]
fn postgres_nested_comments_and_unicode_identifiers_run() {
    rt().block_on(async {
        let t = target(&pg_url());
        for (sql, column) in [
            ("SELECT 7 AS a /* a /* nested */ still a comment */", "a"),
            (
                "SELECT U&\"d\\0061t\\+000061\" FROM (SELECT 7 AS data) AS t",
                "data",
            ),
            (
                "SELECT U&\"d!0061ta\" UESCAPE '!' FROM (SELECT 7 AS data) AS t",
                "data",
            ),
        ] {
            let q = guard(sql, Dialect::Postgres).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let df = query(&t, &q, &[], QueryOptions::default())
                .await
                .expect(sql);
            assert_eq!(
                df.column(column).expect(sql).i32().expect("i32").get(0),
                Some(7),
                "{sql}"
            );
        }
    });
}
