//! Issue 21: run parameter values reach the database and the engine only as data. The same
//! workflow runs on SQLite, PostgreSQL and MariaDB with values built to break out of a
//! string literal, to comment out the rest of a query, to drop the table, to look like an
//! expression, and 64 KiB long: each run returns exactly the rows the value selects as
//! data, the engine gets it back unchanged, and the table is unchanged afterwards.

use std::time::Duration;

use polars::prelude::*;
use sqlx::{Connection as _, Executor};

use super::*;
use crate::secret::Secret;

/// The rows every table starts with (and must still hold at the end).
const ROWS: [(i64, &str); 4] = [(1, "o'brien"), (2, "plain"), (3, "a--b"), (4, "/*c*/")];

fn doc(dialect: &str, table: &str) -> String {
    serde_json::json!({"version": 1,
        "params": {"name": {"type": "str"}, "id": {"type": "int", "default": 2}},
        "nodes": [
            {"id": "q", "tool": "sql", "connection": "db", "dialect": dialect,
             "query": format!("SELECT id, name FROM {table} WHERE name = :name OR id = :id ORDER BY id")},
            {"id": "f", "tool": "formula", "input": "q", "formulas": [
                {"column": "echo", "expression": "pl.param(\"name\")"},
                {"column": "same", "expression": "pl.col(\"name\") == pl.param(\"name\")"}]},
            {"id": "o", "tool": "output", "input": "f", "name": "out"}]})
    .to_string()
}

/// Collects the one output's IPC pieces.
#[derive(Default)]
struct Collect(Vec<u8>);

impl Events for Collect {
    fn emit(&mut self, event: RunEvent) -> Result<(), TaskFailure> {
        if let RunEvent::Output { ipc, .. } = event {
            self.0.extend_from_slice(&ipc);
        }
        Ok(())
    }
}

fn run(url: &str, doc: &str, name: &str) -> DataFrame {
    let params = serde_json::json!({ "name": name }).to_string();
    let wf = crate::workflow::validate_bound(doc, &params).expect("valid and bound");
    let connection = Connection {
        name: "db".into(),
        target: crate::connector::Target::from_url(Secret::new(url.to_owned())).expect("url"),
        fingerprint: None,
    };
    let limits = Limits {
        query: crate::connector::QueryOptions::default(),
        chunk_bytes: 0,
        engine: crate::workflow::Engine::default(),
    };
    let mut out = Collect::default();
    execute(
        Task::Run(Box::new(wf)),
        vec![connection],
        &limits,
        &RunControl::with_timeout(Duration::from_secs(60)),
        &mut Direct::new().expect("runtime"),
        &mut out,
    )
    .expect("the run");
    from_ipc(&out.0).expect("rows")
}

/// What each value must select: the ids whose name equals it, and id 2 (`:id`'s default).
fn check(url: &str, dialect: &str, table: &str) {
    let doc = doc(dialect, table);
    let long = "'".repeat(65_536);
    let values: Vec<&str> = vec![
        "o'brien",
        "'; DROP TABLE hw_param_rows; --",
        "x' OR '1'='1",
        "a--b",
        "/*c*/",
        "\\'; SELECT 1; --",
        "pl.col(\"x\").map_elements(lambda v: __import__(\"os\").system(\"id\"))",
        ":name",
        &long,
    ];
    for value in values {
        let df = run(url, &doc, value);
        let mut want: Vec<i64> = ROWS
            .iter()
            .filter(|(id, n)| *n == value || *id == 2)
            .map(|(id, _)| *id)
            .collect();
        want.sort_unstable();
        let ids: Vec<i64> = df
            .column("id")
            .and_then(|c| c.cast(&DataType::Int64))
            .expect("id")
            .i64()
            .expect("ints")
            .into_no_null_iter()
            .collect();
        let shown: String = value.chars().take(30).collect();
        assert_eq!(ids, want, "{dialect}: {shown}");
        let echo = df.column("echo").expect("echo").str().expect("str").clone();
        assert!(echo.iter().all(|e| e == Some(value)), "{dialect}: {shown}");
        let same: Vec<bool> = df
            .column("same")
            .expect("same")
            .bool()
            .expect("bool")
            .iter()
            .map(|b| b.expect("not null"))
            .collect();
        let names: Vec<&str> = df
            .column("name")
            .expect("name")
            .str()
            .expect("str")
            .iter()
            .map(|n| n.expect("not null"))
            .collect();
        let want_same: Vec<bool> = names.iter().map(|n| *n == value).collect();
        assert_eq!(same, want_same, "{dialect}: {shown}");
    }
}

/// Creates `table` with [`ROWS`] (values bound, as a test should), runs `$body`, then checks
/// the table still holds exactly [`ROWS`] and drops it. One driver per expansion.
macro_rules! around {
    ($conn:ty, $url:expr, $table:expr, $placeholder:literal, $int:literal, $body:expr) => {{
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let table = $table;
        rt.block_on(async {
            let mut conn = <$conn>::connect($url).await.expect("connect");
            conn.execute(format!("DROP TABLE IF EXISTS {table}").as_str())
                .await
                .expect("drop");
            conn.execute(format!("CREATE TABLE {table} (id INTEGER, name TEXT)").as_str())
                .await
                .expect("create");
            for (id, name) in ROWS {
                let insert = format!(
                    "INSERT INTO {table} (id, name) VALUES ({id}, {})",
                    $placeholder
                );
                sqlx::query(&insert)
                    .bind(name)
                    .execute(&mut conn)
                    .await
                    .expect("insert");
            }
        });
        $body;
        rt.block_on(async {
            let mut conn = <$conn>::connect($url).await.expect("connect");
            let select = format!("SELECT CAST(id AS {}), name FROM {table} ORDER BY id", $int);
            let rows: Vec<(i64, String)> = sqlx::query_as(&select)
                .fetch_all(&mut conn)
                .await
                .expect("the table is still there");
            let want: Vec<(i64, String)> =
                ROWS.iter().map(|(i, n)| (*i, (*n).to_owned())).collect();
            assert_eq!(rows, want);
            conn.execute(format!("DROP TABLE {table}").as_str())
                .await
                .expect("drop");
        });
    }};
}

fn table() -> String {
    format!("hw_param_rows_{}", std::process::id())
}

#[test]
fn issue21_values_are_data_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("hw-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("t.db");
    std::fs::File::create(&path).expect("file");
    let url = format!("sqlite://{}", path.display());
    around!(
        sqlx::SqliteConnection,
        &url,
        table(),
        "?",
        "INTEGER",
        check(&url, "sqlite", &table())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn issue21_values_are_data_on_postgres() {
    let url = crate::connector::tests::pg_url();
    around!(
        sqlx::PgConnection,
        &url,
        table(),
        "$1",
        "BIGINT",
        check(&url, "postgres", &table())
    );
}

#[test]
fn issue21_values_are_data_on_mariadb() {
    let url = crate::connector::tests::mysql_url();
    around!(
        sqlx::MySqlConnection,
        &url,
        table(),
        "?",
        "SIGNED",
        check(&url, "mysql", &table())
    );
}
