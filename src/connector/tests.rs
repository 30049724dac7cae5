//! Connector tests against real databases: SQLite always, PostgreSQL and MariaDB at the URLs in
//! `HUBWORKER_TEST_PG_URL` / `HUBWORKER_TEST_MYSQL_URL` (defaulting to the local services, so a
//! missing server fails these tests loudly instead of skipping them).

use std::time::Duration;

use polars::prelude::*;
use sqlx::{Connection, Executor};

use super::*;
use crate::sql::guard;

pub(crate) fn pg_url() -> String {
    std::env::var("HUBWORKER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub(crate) fn mysql_url() -> String {
    std::env::var("HUBWORKER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub(super) fn target(url: &str) -> Target {
    Target::from_url(Secret::new(url.to_owned())).expect("target")
}

async fn guarded(
    t: &Target,
    sql: &str,
    options: QueryOptions,
) -> Result<DataFrame, ConnectorError> {
    let q = guard(sql, t.dialect).expect("passes the guard");
    query(t, &q, &[], options).await
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn short() -> QueryOptions {
    QueryOptions {
        timeout: Duration::from_millis(300),
        ..QueryOptions::default()
    }
}

#[test]
fn sqlite_types_nulls_and_read_only() {
    rt().block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.db");
        let url = format!("sqlite://{}", path.display());
        let mut rw = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("create");
        rw.execute(
            "CREATE TABLE t (id INTEGER, name TEXT, price REAL, blob BLOB, ok BOOLEAN);
             INSERT INTO t VALUES (1, 'a', 1.5, x'0102', 1), (2, NULL, NULL, NULL, 0);",
        )
        .await
        .expect("setup");
        rw.close().await.expect("close");
        let t = target(&url);
        let df = guarded(
            &t,
            "SELECT id, name, price, blob, ok FROM t ORDER BY id",
            QueryOptions::default(),
        )
        .await
        .expect("query");
        assert_eq!(df.shape(), (2, 5));
        assert_eq!(df.column("id").expect("id").dtype(), &DataType::Int64);
        assert_eq!(df.column("name").expect("n").str().expect("s").get(1), None);
        assert_eq!(
            df.column("price").expect("p").f64().expect("f").get(0),
            Some(1.5)
        );
        assert_eq!(df.column("blob").expect("b").dtype(), &DataType::Binary);
        assert_eq!(
            df.column("ok").expect("ok").bool().expect("b").get(0),
            Some(true)
        );
        // The database layer alone refuses writes (the guard is bypassed on purpose).
        let e = run_sql(&t, "DELETE FROM t", QueryOptions::default()).await;
        assert!(
            e.is_err(),
            "a read-only SQLite connection must refuse DELETE"
        );
        let df = guarded(&t, "SELECT count(*) AS n FROM t", QueryOptions::default())
            .await
            .expect("count");
        assert_eq!(df.column("n").expect("n").i64().expect("i").get(0), Some(2));
        // A row cap.
        let capped = QueryOptions {
            limits: ResultLimits {
                max_rows: 1,
                max_bytes: 1 << 20,
            },
            ..QueryOptions::default()
        };
        let e = guarded(&t, "SELECT * FROM t", capped).await.unwrap_err();
        assert_eq!(e.code(), "result_too_large");
        check_inspect(&t, None, "t", 5).await;
    });
}

#[test]
fn postgres_types_read_only_timeout_and_caps() {
    rt().block_on(async {
        let url = pg_url();
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable for these tests: {e}"));
        admin
            .execute(
                "DROP TABLE IF EXISTS hw_types;
                 CREATE TABLE hw_types (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
                   n numeric(12,3), t text, v varchar(10), b bool, d date, tm time,
                   ts timestamp, tz timestamptz, by bytea, j jsonb, u uuid);
                 INSERT INTO hw_types VALUES (1, 2, 3, 1.5, 2.25, 1234.567, 'x', 'y', true,
                   '2024-02-29', '13:45:30.5', '2024-02-29 13:45:30.123456',
                   '2024-02-29 13:45:30+01', '\\x0102', '{\"a\": 1}',
                   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
                 INSERT INTO hw_types (i4) VALUES (NULL);",
            )
            .await
            .expect("setup");
        let t = target(&url);
        let df = guarded(
            &t,
            "SELECT * FROM hw_types ORDER BY i2 NULLS LAST",
            QueryOptions::default(),
        )
        .await
        .expect("query");
        assert_eq!(df.shape(), (2, 16));
        let dt = |c: &str| df.column(c).expect(c).dtype().clone();
        assert_eq!(dt("i2"), DataType::Int16);
        assert_eq!(dt("i4"), DataType::Int32);
        assert_eq!(dt("i8"), DataType::Int64);
        assert_eq!(dt("f4"), DataType::Float32);
        assert_eq!(dt("n"), DataType::Decimal(38, 3));
        assert_eq!(dt("d"), DataType::Date);
        assert_eq!(dt("tm"), DataType::Time);
        assert_eq!(dt("ts"), DataType::Datetime(TimeUnit::Microseconds, None));
        assert_eq!(
            dt("tz"),
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        );
        assert_eq!(dt("by"), DataType::Binary);
        let s = |c: &str| {
            df.column(c)
                .expect(c)
                .str()
                .expect("str")
                .get(0)
                .map(str::to_owned)
        };
        assert_eq!(
            s("j").as_deref(),
            Some("{\"a\": 1}"),
            "jsonb as PostgreSQL renders it"
        );
        assert_eq!(
            s("u").as_deref(),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        let n = df
            .column("n")
            .expect("n")
            .cast(&DataType::Float64)
            .expect("cast");
        assert_eq!(n.f64().expect("f").get(0), Some(1234.567));
        let tz = df
            .column("tz")
            .expect("tz")
            .cast(&DataType::Int64)
            .expect("cast");
        assert_eq!(tz.i64().expect("i").get(0), Some(1_709_210_730_000_000));
        assert_eq!(df.column("i8").expect("i8").null_count(), 1);
        // Database layer alone: the read-only transaction refuses writes.
        let e = assert_delete_refused(&t, "hw_types", 2).await;
        assert!(e.to_string().contains("read-only"), "{e}");
        // The statement timeout is the database's.
        let e = run_sql(&t, "SELECT 1 AS x FROM pg_sleep(3)", short())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "timeout");
        // Caps.
        let capped = QueryOptions {
            limits: ResultLimits {
                max_rows: 10,
                max_bytes: 1 << 20,
            },
            ..QueryOptions::default()
        };
        let e = guarded(&t, "SELECT g FROM generate_series(1, 100) AS g", capped)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "result_too_large");
        let capped = QueryOptions {
            limits: ResultLimits {
                max_rows: 1000,
                max_bytes: 1000,
            },
            ..QueryOptions::default()
        };
        let e = guarded(
            &t,
            "SELECT repeat('x', 100) FROM generate_series(1, 50)",
            capped,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "result_too_large");
        check_inspect(&t, Some("public"), "hw_types", 16).await;
        // Arrays become lists (through the binary COPY path).
        let df = guarded(
            &t,
            "SELECT ARRAY[1, NULL, 3]::int4[] AS a, ARRAY['x', 'y'] AS s, '{}'::int8[] AS e, \
             NULL::float8[] AS n",
            QueryOptions::default(),
        )
        .await
        .expect("arrays");
        assert_eq!(
            df.column("a").expect("a").dtype(),
            &DataType::List(Box::new(DataType::Int32))
        );
        let a = df
            .column("a")
            .expect("a")
            .list()
            .expect("list")
            .get_as_series(0)
            .expect("row");
        assert_eq!(a.i32().expect("i32").get(2), Some(3));
        assert_eq!(a.null_count(), 1);
        assert_eq!(
            df.column("s").expect("s").dtype(),
            &DataType::List(Box::new(DataType::String))
        );
        let e = df
            .column("e")
            .expect("e")
            .list()
            .expect("list")
            .get_as_series(0)
            .expect("row");
        assert_eq!(e.len(), 0);
        assert_eq!(df.column("n").expect("n").null_count(), 1);
        admin.execute("DROP TABLE hw_types").await.expect("cleanup");
    });
}

#[test]
fn mariadb_types_read_only_and_timeout() {
    rt().block_on(async {
        let url = mysql_url();
        let mut admin = sqlx::MySqlConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("MariaDB must be reachable for these tests: {e}"));
        for stmt in [
            "DROP TABLE IF EXISTS hw_types",
            "CREATE TABLE hw_types (i INT, bi BIGINT, u INT UNSIGNED, f DOUBLE, dec_ DECIMAL(10,2),
               s VARCHAR(20), d DATE, dt DATETIME(6), bl BLOB, ok BOOLEAN)",
            "INSERT INTO hw_types VALUES (1, 9000000000, 4000000000, 2.5, 12.34, 'hé', '2024-02-29',
               '2024-02-29 13:45:30.123456', x'0102', TRUE), (NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL)",
        ] {
            admin.execute(stmt).await.expect("setup");
        }
        let t = target(&url);
        let df = guarded(
            &t,
            "SELECT * FROM hw_types ORDER BY i IS NULL, i",
            QueryOptions::default(),
        )
        .await
        .expect("query");
        assert_eq!(df.shape(), (2, 10));
        let dt = |c: &str| df.column(c).expect(c).dtype().clone();
        assert_eq!(dt("i"), DataType::Int64);
        assert_eq!(dt("u"), DataType::Int64);
        assert_eq!(dt("dec_"), DataType::Decimal(38, 2));
        assert_eq!(dt("d"), DataType::Date);
        assert_eq!(dt("dt"), DataType::Datetime(TimeUnit::Microseconds, None));
        assert_eq!(dt("bl"), DataType::Binary);
        assert_eq!(dt("ok"), DataType::Boolean);
        assert_eq!(
            df.column("u").expect("u").i64().expect("i").get(0),
            Some(4_000_000_000)
        );
        assert_eq!(
            df.column("s").expect("s").str().expect("s").get(0),
            Some("hé")
        );
        assert_eq!(df.column("bi").expect("bi").null_count(), 1);
        assert_delete_refused(&t, "hw_types", 2).await;
        let e = run_sql(&t, "SELECT SLEEP(3) FROM hw_types", short())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "timeout");
        admin.execute("DROP TABLE hw_types").await.expect("cleanup");
    });
}

#[test]
fn connection_errors_never_show_the_password() {
    rt().block_on(async {
        let t = target("postgres://postgres:Sup3rSecretPw@127.0.0.1:1/test");
        let q = guard("SELECT 1", t.dialect).expect("guard");
        let e = query(&t, &q, &[], QueryOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "connect_failed");
        let shown = format!("{e} {e:?} {t:?}");
        assert!(!shown.contains("Sup3rSecretPw"), "{shown}");
        assert!(shown.contains("postgres:***@127.0.0.1:1/test"), "{shown}");
    });
}

/// `tables` lists the table, `columns` gives its columns in order, `preview` caps rows.
async fn check_inspect(t: &Target, schema: Option<&str>, table: &str, ncols: usize) {
    let o = QueryOptions::default();
    let schemas = inspect::schemas(t, o).await.expect("schemas");
    assert!(schemas.height() >= 1, "{schemas}");
    if let Some(s) = schema {
        let col = schemas
            .column("schema")
            .expect("schema")
            .str()
            .expect("str")
            .clone();
        assert!(
            (0..col.len()).any(|i| col.get(i) == Some(s)),
            "{s} not in {schemas}"
        );
    }
    let tables = inspect::tables(t, o).await.expect("tables");
    let names = tables
        .column("table")
        .expect("table")
        .str()
        .expect("str")
        .clone();
    assert!(
        (0..names.len()).any(|i| names.get(i) == Some(table)),
        "{table} not listed: {tables}"
    );
    let r = TableRef {
        schema: schema.map(str::to_owned),
        name: table.to_owned(),
    };
    let cols = inspect::columns(t, &r, o).await.expect("columns");
    assert_eq!(cols.height(), ncols, "{cols}");
    assert_eq!(cols.get_column_names(), ["column", "type", "nullable"]);
    let p = inspect::preview(t, &r, 1, o).await.expect("preview");
    assert_eq!(p.shape(), (1, ncols));
    // A hostile name is just a name that does not exist.
    let bad = TableRef {
        schema: None,
        name: format!("{table}\"; DELETE FROM {table}; --"),
    };
    assert!(inspect::preview(t, &bad, 1, o).await.is_err());
}

/// The database layer alone (guard bypassed on purpose) refuses a DELETE, and no row is gone.
async fn assert_delete_refused(t: &Target, table: &str, rows: i64) -> ConnectorError {
    let e = run_sql(t, &format!("DELETE FROM {table}"), QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "query_failed");
    let sql = format!("SELECT count(*) AS n FROM {table}");
    let df = guarded(t, &sql, QueryOptions::default())
        .await
        .expect("count");
    assert_eq!(
        df.column("n").expect("n").i64().expect("i").get(0),
        Some(rows)
    );
    e
}

#[test]
fn credentials_assume_their_role_and_bad_roles_are_refused() {
    rt().block_on(async {
        let mut admin = sqlx::PgConnection::connect(&pg_url()).await.expect("pg");
        admin
            .execute(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hubworker_reader') THEN
                     CREATE ROLE hubworker_reader NOLOGIN;
                   END IF;
                 END $$;",
            )
            .await
            .expect("role");
        let mut t = target(&pg_url());
        t.role = Some("hubworker_reader".into());
        let df = guarded(&t, "SELECT current_user AS who", short())
            .await
            .expect("query");
        let who: Vec<Option<&str>> = df.column("who").unwrap().str().unwrap().iter().collect();
        assert_eq!(who, [Some("hubworker_reader")]);
        // A role that does not exist fails the session (query_failed), never runs the query.
        t.role = Some("no_such_role_xyz".into());
        let e = guarded(&t, "SELECT 1", short()).await.unwrap_err();
        assert_eq!(e.code(), "query_failed");
        // Anything but a plain identifier is refused before connecting: no quoting games.
        for bad in ["x\"; DROP TABLE t; --", "role with space", "", "1abc"] {
            t.role = Some(bad.into());
            let e = guarded(&t, "SELECT 1", short()).await.unwrap_err();
            assert_eq!(e.code(), "bad_target", "{bad}");
        }
    });
}

#[test]
fn results_arrive_in_batches_and_keep_every_value() {
    // 600,000 rows: three batches of at most 262,144. The decimal column's scale grows in the
    // later batches (0, then 12): every batch ends at the largest, as one batch would have.
    rt().block_on(async {
        let t = target(&pg_url());
        let df = guarded(
            &t,
            "SELECT g, CASE WHEN g > 300000 THEN g::numeric / 8 ELSE g::numeric END AS d, \
             CASE WHEN g % 3 = 0 THEN NULL ELSE 'v' || g END AS s \
             FROM generate_series(1, 600000) AS g ORDER BY g",
            QueryOptions::default(),
        )
        .await
        .expect("query");
        assert_eq!(df.height(), 600_000);
        assert_eq!(df.first_col_n_chunks(), 3);
        assert_eq!(
            df.column("d").expect("d").dtype(),
            &DataType::Decimal(38, 12)
        );
        let d = df
            .column("d")
            .expect("d")
            .cast(&DataType::Float64)
            .expect("cast");
        let d = d.f64().expect("f64");
        assert_eq!(d.get(4), Some(5.0));
        assert_eq!(d.get(300_007), Some(300_008.0 / 8.0));
        let s = df.column("s").expect("s").str().expect("str");
        assert_eq!(s.null_count(), 200_000);
        assert_eq!(s.get(599_999), None);
        assert_eq!(s.get(599_998), Some("v599999"));
        let g = df.column("g").expect("g").i32().expect("i32");
        assert!(g.iter().enumerate().all(|(i, v)| v == Some(i as i32 + 1)));
    });
}
