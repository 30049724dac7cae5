//! Unit and property tests of the guard; they must never depend on a
//! database server (the corpus in /work/shared/corpus/sql covers servers).

use super::*;
use proptest::prelude::*;

const ALL: [Dialect; 3] = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];

fn code(sql: &str, dialect: Dialect) -> Option<&'static str> {
    guard(sql, dialect).err().map(|e| e.code.as_str())
}

#[track_caller]
fn rejects(dialect: Dialect, sql: &str, want: &str) {
    assert_eq!(code(sql, dialect), Some(want), "{dialect}: {sql}");
}

#[track_caller]
fn accepts(dialect: Dialect, sql: &str) {
    if let Err(e) = guard(sql, dialect) {
        panic!("{dialect}: {sql}: rejected with {e}");
    }
}

#[test]
fn dialect_names() {
    for (name, d) in [
        ("postgres", Dialect::Postgres),
        ("PostgreSQL", Dialect::Postgres),
        ("mysql", Dialect::Mysql),
        ("mariadb", Dialect::Mysql),
        ("sqlite", Dialect::Sqlite),
    ] {
        assert_eq!(name.parse::<Dialect>(), Ok(d));
    }
    assert!("oracle".parse::<Dialect>().is_err());
}

#[test]
fn what_is_sent_is_the_rendering_without_comments_or_the_trailing_semicolon() {
    let q = guard("SELECT 1 ;", Dialect::Postgres).unwrap();
    assert_eq!(q.sql(), "SELECT 1");
    assert_eq!(q.dialect(), Dialect::Postgres);
    let q = guard("SELECT 'a;b' AS s; -- done\n", Dialect::Mysql).unwrap();
    assert_eq!(q.sql(), "SELECT 'a;b' AS s");
    let q = guard("SELECT é AS x\n;", Dialect::Sqlite).unwrap();
    assert_eq!(q.sql(), "SELECT é AS x");
    let q = guard("select  a   from t -- c", Dialect::Postgres).unwrap();
    assert_eq!(q.sql(), "SELECT a FROM t");
    // Literals and quoted identifiers are sent exactly as written.
    let q = guard(
        "select 'it''s', E'a\\'b', \"we\"\"ird\" /* x */ from t",
        Dialect::Postgres,
    )
    .unwrap();
    assert_eq!(q.sql(), "SELECT 'it''s', E'a\\'b', \"we\"\"ird\" FROM t");
    let q = guard(
        "select 'a\\'b', 'c\\\\', `x``y` # note\nfrom t",
        Dialect::Mysql,
    )
    .unwrap();
    assert_eq!(q.sql(), "SELECT 'a\\'b', 'c\\\\', `x``y` FROM t");
}

#[test]
fn tricky_legit_queries_are_accepted() {
    for d in ALL {
        accepts(d, "SELECT id FROM events WHERE note = 'please delete'");
        accepts(d, "SELECT update_time, created_by FROM events");
        accepts(
            d,
            "SELECT 'x; DROP TABLE t; --' AS s, length('DELETE FROM t') AS n",
        );
        accepts(
            d,
            "-- do not UPDATE\nSELECT count(*) FROM t /* INSERT nothing */",
        );
        accepts(
            d,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n",
        );
        accepts(
            d,
            "SELECT a, sum(b) OVER (PARTITION BY a ORDER BY b ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t",
        );
        accepts(
            d,
            "SELECT CASE WHEN a > 1 THEN 'update' ELSE 'insert' END AS kind FROM t ORDER BY 1 LIMIT 3 OFFSET 1",
        );
        accepts(d, "SELECT * FROM (VALUES (1, 'AIR'), (2, 'RAIL')) AS m");
        accepts(d, "SELECT 1;");
        accepts(d, "EXPLAIN SELECT * FROM t WHERE a IN (SELECT b FROM u)");
    }
    let pg = Dialect::Postgres;
    accepts(pg, "SELECT $body$DELETE FROM lineitem;$body$ AS sql_text");
    accepts(pg, "SELECT E'\\'; DELETE FROM t; --' AS s");
    accepts(pg, "SELECT \"select\" + 1, \"drop\" IS NULL FROM events");
    accepts(
        pg,
        "SELECT created_by AS delete, count(*) AS update FROM events GROUP BY 1",
    );
    accepts(
        pg,
        "SELECT payload->'user'->>'tier', (payload->>'n')::numeric FROM events",
    );
    accepts(
        pg,
        "SELECT id FROM events WHERE tags @> ARRAY['a','b']::text[]",
    );
    accepts(
        pg,
        "SELECT count(*) FILTER (WHERE x > 1), percentile_disc(0.9) WITHIN GROUP (ORDER BY y) FROM t",
    );
    accepts(
        pg,
        "SELECT s.a FROM s, LATERAL (SELECT b FROM u WHERE u.a = s.a LIMIT 1) x",
    );
    accepts(
        pg,
        "SELECT pg_typeof(1), pg_catalog.pg_size_pretty(pg_total_relation_size('t'))",
    );
    accepts(pg, "SELECT current_setting('TimeZone')");
    accepts(pg, "SELECT * FROM generate_series(1, 3) g");
    accepts(pg, "EXPLAIN (FORMAT JSON, COSTS false) SELECT 1");
    accepts(pg, "SELECT 1 FROM pg_catalog.pg_class");
    let my = Dialect::Mysql;
    accepts(
        my,
        "SELECT `drop`, `select` FROM events WHERE deleted = FALSE",
    );
    accepts(my, "SELECT HIGH_PRIORITY SQL_CALC_FOUND_ROWS a FROM t");
    accepts(my, "SELECT a FROM t # trailing hash comment");
    accepts(my, "SELECT @@session.time_zone, @x");
    accepts(my, "SELECT a, SUM(b) FROM t GROUP BY a WITH ROLLUP");
    let lite = Dialect::Sqlite;
    accepts(lite, "EXPLAIN QUERY PLAN SELECT count(*) FROM nation");
    accepts(lite, "SELECT hex(randomblob(16)), zeroblob(16)");
    accepts(
        lite,
        "SELECT json_extract(payload, '$.a'), payload ->> 'kind' FROM events",
    );
}

#[test]
fn statement_shape_codes() {
    for d in ALL {
        rejects(d, "", "empty");
        rejects(d, "  ;  ", "empty");
        rejects(d, "/* nothing */", "empty");
        rejects(d, "SELECT 1; SELECT 2", "multiple_statements");
        rejects(d, "SELECT 1;;", "multiple_statements");
        rejects(d, "SELECT 'a--b'; DELETE FROM t", "multiple_statements");
        rejects(d, "SELEC 1", "parse_error");
        rejects(d, "INSERT INTO t VALUES (1)", "not_read_only");
        rejects(d, "UPDATE t SET a = 1", "not_read_only");
        rejects(d, "DELETE FROM t", "not_read_only");
        rejects(d, "DROP TABLE t", "not_read_only");
        rejects(d, "CREATE TABLE t (a int)", "not_read_only");
        rejects(d, "COMMIT", "not_read_only");
        rejects(d, "ROLLBACK", "not_read_only");
        rejects(d, "BEGIN", "not_read_only");
        rejects(d, "EXPLAIN DELETE FROM t", "not_read_only");
        rejects(d, "EXPLAIN ANALYZE SELECT 1", "explain_analyze");
        let big = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        rejects(d, &big, "too_large");
        let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        rejects(d, &deep, "too_deep");
    }
}

#[test]
fn postgres_attacks() {
    let pg = Dialect::Postgres;
    for (sql, want) in [
        ("SELECT a INTO backup FROM t", "select_into"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d",
            "data_modifying_cte",
        ),
        (
            "WITH x AS (INSERT INTO t (a) SELECT 1 RETURNING 1) SELECT * FROM x",
            "data_modifying_cte",
        ),
        (
            "WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u",
            "data_modifying_cte",
        ),
        ("SELECT * FROM t FOR UPDATE", "locking_clause"),
        ("SELECT * FROM t FOR SHARE SKIP LOCKED", "locking_clause"),
        (
            "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
            "locking_clause",
        ),
        ("EXPLAIN (ANALYZE) SELECT 1", "explain_analyze"),
        ("EXPLAIN (ANALYZE false) SELECT 1", "explain_analyze"),
        ("EXPLAIN ANALYZE UPDATE t SET a = a + 1", "explain_analyze"),
        ("COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'", "not_read_only"),
        ("COPY t TO '/tmp/x.csv'", "not_read_only"),
        ("SET search_path = pg_temp, public", "not_read_only"),
        ("RESET statement_timeout", "not_read_only"),
        ("END", "not_read_only"),
        ("LISTEN jobs", "not_read_only"),
        ("UNLISTEN *", "not_read_only"),
        ("NOTIFY jobs", "not_read_only"),
        ("LOCK TABLE t", "not_read_only"),
        ("PREPARE q AS SELECT 1", "not_read_only"),
        ("EXECUTE q", "not_read_only"),
        ("DEALLOCATE PREPARE q", "not_read_only"),
        ("VACUUM FULL t", "not_read_only"),
        ("ANALYZE t", "not_read_only"),
        ("GRANT SELECT ON t TO bob", "not_read_only"),
        ("CALL p()", "not_read_only"),
        ("SHOW ALL", "not_read_only"),
        ("DO $$BEGIN PERFORM 1; END$$", "parse_error"),
        ("SELECT pg_sleep(1)", "forbidden_function"),
        (
            "SELECT \"pg_catalog\".\"PG_SLEEP\"(1)",
            "forbidden_function",
        ),
        ("SELECT pg_read_file('/etc/passwd')", "forbidden_function"),
        ("SELECT * FROM pg_ls_dir('/etc') f", "forbidden_function"),
        (
            "SELECT * FROM t, LATERAL pg_ls_dir('/') f",
            "forbidden_function",
        ),
        ("SELECT lo_import('/etc/hostname')", "forbidden_function"),
        (
            "SELECT dblink_exec('dbname=x', 'UP' || 'DATE t SET a = 1')",
            "forbidden_function",
        ),
        (
            "SELECT * FROM dblink('dbname=x', 'SELECT 1') AS r(a int)",
            "forbidden_function",
        ),
        (
            "SELECT nextval('s') FROM generate_series(1, 3)",
            "forbidden_function",
        ),
        (
            "SELECT set_config('work_mem', '8MB', false)",
            "forbidden_function",
        ),
        ("SELECT pg_advisory_lock(1)", "forbidden_function"),
        (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "forbidden_function",
        ),
        ("SELECT pg_notify('c', 'x')", "forbidden_function"),
        (
            "SELECT query_to_xml('select pg_sleep(9)', true, true, '')",
            "forbidden_function",
        ),
        ("SELECT pg_stat_reset()", "forbidden_function"),
        ("SELECT txid_current()", "forbidden_function"),
        // Every expression position.
        (
            "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM t",
            "forbidden_function",
        ),
        (
            "SELECT array_agg(a ORDER BY pg_sleep(1)) FROM t",
            "forbidden_function",
        ),
        (
            "SELECT sum(a) OVER (PARTITION BY pg_sleep(1)) FROM t",
            "forbidden_function",
        ),
        ("SELECT a FROM t ORDER BY pg_sleep(1)", "forbidden_function"),
        (
            "SELECT a FROM t GROUP BY a HAVING max(pg_sleep(1)::text) > ''",
            "forbidden_function",
        ),
        (
            "SELECT a FROM t JOIN u ON pg_sleep(1) IS NULL",
            "forbidden_function",
        ),
        (
            "SELECT a FROM t LIMIT (SELECT nextval('s'))",
            "forbidden_function",
        ),
        (
            "SELECT CASE WHEN a THEN pg_sleep(1) END FROM t",
            "forbidden_function",
        ),
        ("SELECT ARRAY[pg_sleep(1)]", "forbidden_function"),
        ("SELECT (pg_sleep(1))::text", "forbidden_function"),
        (
            "SELECT a FROM t WHERE a IN (SELECT pg_sleep(1))",
            "forbidden_function",
        ),
        ("VALUES (1), (nextval('s'))", "forbidden_function"),
        (
            "WITH x AS (SELECT pg_sleep(1)) SELECT * FROM x",
            "forbidden_function",
        ),
        (
            "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT pg_sleep(1)",
            "forbidden_function",
        ),
        (
            "SELECT pg_sleep(1) UNION ALL SELECT 2 UNION ALL SELECT 3",
            "forbidden_function",
        ),
        (
            "SELECT a + b + pg_sleep(1) + c FROM t",
            "forbidden_function",
        ),
        ("SELECT pg_sleep(1) + b + c FROM t", "forbidden_function"),
        ("EXPLAIN SELECT pg_sleep(1)", "forbidden_function"),
        // Lexing differentials.
        // Lexing differentials: read as PostgreSQL reads them.
        ("SELECT U&\"pg\\005fsleep\"(1)", "forbidden_function"),
        (
            "SELECT 1 /* /* */ ' */, pg_sleep(10) --'",
            "forbidden_function",
        ),
    ] {
        rejects(pg, sql, want);
    }
}

#[test]
fn mysql_attacks() {
    let my = Dialect::Mysql;
    for (sql, want) in [
        ("SELECT SLEEP(1.1)", "forbidden_function"),
        ("SELECT BENCHMARK(1000000, MD5('x'))", "forbidden_function"),
        ("SELECT LOAD_FILE('/etc/passwd') AS f", "forbidden_function"),
        ("SELECT GET_LOCK('job', 1)", "forbidden_function"),
        ("SELECT NEXTVAL(s)", "forbidden_function"),
        ("SELECT sys_exec('id')", "forbidden_function"),
        ("SELECT 1--sleep(5)", "forbidden_function"),
        ("SELECT 1 /*!99999 , sleep(1) */", "forbidden_function"),
        ("SELECT @x := 1", "variable_assignment"),
        (
            "SELECT a FROM t WHERE (@n := @n + 1) > 0",
            "variable_assignment",
        ),
        ("SELECT a INTO @v FROM t", "select_into"),
        ("SELECT * FROM t WHERE a = 2 FOR UPDATE", "locking_clause"),
        ("SELECT c FROM t INTO OUTFILE '/tmp/x.csv'", "parse_error"),
        ("SELECT c FROM t LOCK IN SHARE MODE", "parse_error"),
        ("SELECT 1 /*M! , sleep(5) */", "lexing_mismatch"),
        ("DO SLEEP(1)", "parse_error"),
        ("/*! UPDATE counters SET hits = 42 */", "not_read_only"),
        ("REPLACE INTO t (a) VALUES (1)", "not_read_only"),
        ("LOCK TABLES t READ", "not_read_only"),
        ("SET GLOBAL general_log = 'ON'", "not_read_only"),
        ("SET @x = 1", "not_read_only"),
        ("SHOW GRANTS", "not_read_only"),
        ("START TRANSACTION", "not_read_only"),
        ("KILL 12", "not_read_only"),
    ] {
        rejects(my, sql, want);
    }
}

#[test]
fn sqlite_attacks() {
    let lite = Dialect::Sqlite;
    for (sql, want) in [
        (
            "SELECT load_extension('mod_spatialite')",
            "forbidden_function",
        ),
        ("SELECT writefile('/tmp/x', 'hello')", "forbidden_function"),
        ("SELECT readfile('/etc/passwd')", "forbidden_function"),
        ("SELECT * FROM fsdir('/')", "forbidden_function"),
        (
            "SELECT fts3_tokenizer('simple', x'00')",
            "forbidden_function",
        ),
        ("SELECT zeroblob(1000000000)", "forbidden_function"),
        ("SELECT randomblob(a) FROM t", "forbidden_function"),
        ("ATTACH DATABASE ':memory:' AS scratch", "not_read_only"),
        ("DETACH DATABASE scratch", "parse_error"),
        ("PRAGMA user_version = 42", "not_read_only"),
        ("BEGIN IMMEDIATE", "not_read_only"),
        ("COMMIT TRANSACTION", "not_read_only"),
        ("ANALYZE t", "not_read_only"),
        ("REPLACE INTO t (a) VALUES (1)", "not_read_only"),
        (
            "SELECT '/*' AS a; REINDEX; SELECT '*/' AS b",
            "multiple_statements",
        ),
        ("VACUUM INTO '/tmp/copy.db'", "parse_error"),
    ] {
        rejects(lite, sql, want);
    }
}

#[test]
fn long_chains_neither_overflow_nor_count_as_deep() {
    // Left-deep chains are built without parser recursion; both the walk
    // and dropping the AST must survive them on a small stack.
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            for d in ALL {
                accepts(d, &format!("SELECT 1{}", " + 1".repeat(3000)));
                accepts(
                    d,
                    &format!(
                        "SELECT a FROM t WHERE {}",
                        "a = 1 OR ".repeat(2000) + "a = 2"
                    ),
                );
                accepts(d, &format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(500)));
                // Large inputs go to a helper thread with a big stack.
                let huge = format!("SELECT 1{}", "+1".repeat(400_000));
                accepts(d, &huge);
                rejects(d, &format!("SELECT 1{}", "::int".repeat(1000)), "too_deep");
                rejects(
                    d,
                    &format!("SELECT 1{}", " IS NULL".repeat(100_000)),
                    "too_deep",
                );
                rejects(
                    d,
                    &format!("SELECT 1{}", " IS NULL".repeat(1000)),
                    "too_deep",
                );
            }
        })
        .unwrap();
    handle.join().unwrap();
}

fn arb_ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,8}".prop_map(|s| format!("t_{s}"))
}

fn arb_write() -> impl Strategy<Value = String> {
    (arb_ident(), arb_ident(), 0i64..1000, 0usize..12).prop_map(|(t, c, n, k)| match k {
        0 => format!("INSERT INTO {t} ({c}) VALUES ({n})"),
        1 => format!("UPDATE {t} SET {c} = {n} WHERE {c} < {n}"),
        2 => format!("DELETE FROM {t} WHERE {c} = {n}"),
        3 => format!("DROP TABLE {t}"),
        4 => format!("CREATE TABLE {t} ({c} INT)"),
        5 => format!("ALTER TABLE {t} ADD COLUMN {c} INT"),
        6 => format!("TRUNCATE TABLE {t}"),
        7 => format!("CREATE INDEX {c} ON {t} ({c})"),
        8 => format!("CREATE VIEW {t} AS SELECT {n}"),
        9 => format!("DROP VIEW IF EXISTS {t}"),
        10 => format!("GRANT SELECT ON {t} TO {c}"),
        _ => format!("CREATE TABLE {t} AS SELECT {n} AS {c}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics(sql in "\\PC{0,200}", d in 0usize..3) {
        let _ = guard(&sql, ALL[d]);
    }

    #[test]
    fn mutated_queries_never_panic(
        base in prop::sample::select(vec![
            "SELECT a, sum(b) OVER (PARTITION BY a) FROM t WHERE c = 'x' GROUP BY a",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x JOIN y ON x.a = y.a",
            "SELECT $q$DELETE$q$, E'\\'', \"select\" FROM t /* c */ -- d",
            "SELECT `a` FROM t WHERE b REGEXP '^x' LIMIT 1, 2",
        ]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), any::<bool>()), 1..8),
        d in 0usize..3,
    ) {
        let mut chars: Vec<char> = base.chars().collect();
        for (at, ch, insert) in edits {
            let i = at.index(chars.len() + 1);
            if insert || i == chars.len() {
                chars.insert(i, ch);
            } else {
                chars[i] = ch;
            }
        }
        let sql: String = chars.into_iter().collect();
        let _ = guard(&sql, ALL[d]);
    }

    #[test]
    fn writes_are_always_rejected(stmt in arb_write(), d in 0usize..3, wrap in 0usize..4) {
        let sql = match wrap {
            0 => stmt.clone(),
            1 => format!("{stmt};"),
            2 => format!("SELECT 1; {stmt}"),
            _ => format!("EXPLAIN {stmt}"),
        };
        prop_assert!(guard(&sql, ALL[d]).is_err(), "accepted: {}", sql);
    }

    #[test]
    fn data_modifying_ctes_are_rejected(stmt in arb_write().prop_filter("DML only", |s| {
        s.starts_with("INSERT") || s.starts_with("UPDATE") || s.starts_with("DELETE")
    })) {
        let sql = format!("WITH w AS ({stmt} RETURNING 1) SELECT * FROM w");
        let err = guard(&sql, Dialect::Postgres);
        prop_assert_eq!(err.map_err(|e| e.code), Err(ErrorCode::DataModifyingCte));
    }
}

#[test]
fn standalone_table_is_a_query() {
    for d in [Dialect::Postgres, Dialect::Mysql] {
        assert!(guard("TABLE nation", d).is_ok(), "{d:?}");
        assert!(guard("TABLE nation;", d).is_ok(), "{d:?}");
        assert!(guard("TABLE nation ORDER BY 1 LIMIT 5", d).is_ok(), "{d:?}");
        assert_eq!(
            guard("TABLE nation; DELETE FROM nation", d)
                .unwrap_err()
                .code,
            ErrorCode::MultipleStatements
        );
    }
    assert!(guard("TABLE nation", Dialect::Sqlite).is_err());
}
