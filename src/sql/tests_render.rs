//! Tests of what the guard sends (its rendering), of the lexing differences it refuses or
//! reconciles, and of the catalog rules' static layer; no database (the connector's tests run
//! the renderings and the catalog checks on live servers).

use super::*;

const ALL: [Dialect; 3] = [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite];

/// Unicode characters `char::is_whitespace` (and so sqlparser) treats as whitespace and no
/// supported server does.
const UNICODE_SPACES: [char; 12] = [
    '\u{a0}', '\u{85}', '\u{1680}', '\u{2002}', '\u{2003}', '\u{2009}', '\u{200a}', '\u{2028}',
    '\u{202f}', '\u{205f}', '\u{3000}', '\u{2029}',
];

fn code(sql: &str, dialect: Dialect) -> Option<&'static str> {
    guard(sql, dialect).err().map(|e| e.code.as_str())
}

#[test]
fn the_mysql_comment_bypass_is_refused_with_every_unicode_space() {
    for sp in UNICODE_SPACES {
        let attack = format!(
            "SELECT c --{sp}, SLEEP(2), GET_LOCK('l',0), LOAD_FILE('/etc/hostname'), @v := 42 \
             FROM (SELECT 1 AS c, 2 AS `{sp}`) AS t"
        );
        let e = guard(&attack, Dialect::Mysql).expect_err("refused");
        assert_eq!(e.code, ErrorCode::LexingMismatch, "U+{:04X}", u32::from(sp));
        assert!(
            e.message
                .contains(&format!("U+{:04X} at line 1, column 12", u32::from(sp))),
            "{}",
            e.message
        );
        // The same trick inside INTO OUTFILE's neighbourhood, and in every other dialect.
        let outfile = format!("SELECT c --{sp}INTO OUTFILE '/tmp/x'\nFROM t");
        assert_eq!(code(&outfile, Dialect::Mysql), Some("lexing_mismatch"));
        for d in ALL {
            assert_eq!(
                code(&format!("SELECT 1{sp}AS x"), d),
                Some("lexing_mismatch")
            );
            assert_eq!(
                code(&format!("SELECT 1 /* a{sp}comment */"), d),
                Some("lexing_mismatch"),
                "{d}: inside a comment, whose end the server may see elsewhere"
            );
        }
    }
}

#[test]
fn unicode_spaces_inside_literals_and_quoted_identifiers_are_data() {
    for sp in UNICODE_SPACES {
        for d in ALL {
            let q = guard(&format!("SELECT 'a{sp}b' AS x"), d).expect("a literal");
            assert_eq!(q.sql(), format!("SELECT 'a{sp}b' AS x"));
        }
        let q = guard(&format!("SELECT 1 AS `{sp}`"), Dialect::Mysql).expect("quoted");
        assert_eq!(q.sql(), format!("SELECT 1 AS `{sp}`"));
        let q = guard(&format!("SELECT 1 AS \"x{sp}\""), Dialect::Postgres).expect("quoted");
        assert_eq!(q.sql(), format!("SELECT 1 AS \"x{sp}\""));
        let q = guard(&format!("SELECT $q$a{sp}$q$ AS x"), Dialect::Postgres).expect("dollar");
        assert_eq!(q.sql(), format!("SELECT $q$a{sp}$q$ AS x"));
    }
    // Multi-line: the position is found on the right line.
    let e = guard("SELECT 'x\u{a0}'\n,\u{a0}1", Dialect::Postgres).expect_err("refused");
    assert!(e.message.contains("line 2, column 2"), "{}", e.message);
}

#[test]
fn nested_comments_and_unicode_identifiers_are_read_as_postgres_reads_them() {
    let pg = Dialect::Postgres;
    let q = guard("SELECT 1 AS a /* a /* b */ c */", pg).expect("nested comment");
    assert_eq!(q.sql(), "SELECT 1 AS a");
    let q = guard("SELECT U&\"d\\0061t\\+000061\" FROM t", pg).expect("U&");
    assert_eq!(q.sql(), "SELECT \"data\" FROM t");
    let q = guard("SELECT u&\"d!0061t!!\" UESCAPE '!' FROM t", pg).expect("UESCAPE");
    assert_eq!(q.sql(), "SELECT \"dat!\" FROM t");
    let q = guard("SELECT U&\"a\\0022b\" FROM t", pg).expect("a quote inside");
    assert_eq!(q.sql(), "SELECT \"a\"\"b\" FROM t");
    assert_eq!(
        code("SELECT U&\"pg\\005fsleep\"(1)", pg),
        Some("forbidden_function")
    );
    assert_eq!(
        code("SELECT * FROM U&\"pg\\005fauthid\"", pg),
        Some("forbidden_relation")
    );
    for bad in [
        "SELECT U&\"\\0000\" FROM t",
        "SELECT U&\"\\zz\" FROM t",
        "SELECT U&\"a\" UESCAPE 'ab' FROM t",
        "SELECT U&\"a\" UESCAPE '+' FROM t",
    ] {
        assert_eq!(code(bad, pg), Some("lexing_mismatch"), "{bad}");
    }
    // `U & "x"` with spaces is an operator, not a Unicode identifier.
    let q = guard("SELECT u & \"x\" FROM t", pg).expect("an operator");
    assert_eq!(q.sql(), "SELECT u & \"x\" FROM t");
    // PostgreSQL truncates identifiers past 63 bytes: the name judged would not be the one run.
    let long = format!("SELECT {} FROM t", "a".repeat(64));
    assert_eq!(code(&long, pg), Some("lexing_mismatch"));
    assert!(guard(&format!("SELECT {} FROM t", "a".repeat(63)), pg).is_ok());
}

#[test]
fn volatile_builtins_and_secret_relations_are_refused_without_a_database() {
    let pg = Dialect::Postgres;
    for sql in [
        "SELECT brin_summarize_new_values('i'::regclass)",
        "SELECT gin_clean_pending_list('i'::regclass)",
        "SELECT brin_summarize_range('i'::regclass, 0)",
        "SELECT x FROM t WHERE gin_clean_pending_list('i') > 0",
        "SELECT txid_status(1)",
    ] {
        assert_eq!(code(sql, pg), Some("forbidden_function"), "{sql}");
    }
    for sql in [
        "SELECT * FROM pg_hba_file_rules",
        "SELECT * FROM pg_catalog.pg_file_settings",
        "SELECT sourcefile FROM PG_FILE_SETTINGS",
        "TABLE pg_authid",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM \"pg_shadow\")",
        "SELECT * FROM pg_user_mappings",
        "SELECT * FROM information_schema.user_mapping_options",
        "SELECT * FROM t JOIN pg_ident_file_mappings ON true",
    ] {
        assert_eq!(code(sql, pg), Some("forbidden_relation"), "{sql}");
    }
    for sql in [
        "SELECT random(), clock_timestamp(), gen_random_uuid(), timeofday()",
        "SELECT pg_relation_size('t'), pg_total_relation_size('t')",
        "SELECT * FROM public.pg_config",
        "SELECT * FROM mysql.user",
    ] {
        assert!(guard(sql, pg).is_ok(), "{sql}");
    }
    let my = Dialect::Mysql;
    for sql in [
        "SELECT * FROM mysql.user",
        "SELECT authentication_string FROM MySQL.global_priv",
        "SELECT u.User FROM t JOIN mysql.db AS u ON true",
        "TABLE mysql.servers",
    ] {
        assert_eq!(code(sql, my), Some("forbidden_relation"), "{sql}");
    }
    assert!(guard("SELECT * FROM test.user", my).is_ok());
    assert!(guard("SELECT RAND(), UUID()", my).is_ok());
}

#[test]
fn names_are_collected_for_the_catalog_check() {
    let q = guard(
        "SELECT public.f(x), \"Mixed\"(y), LOWER(z) FROM S.T JOIN u ON true \
         WHERE x IN (SELECT w FROM generate_series(1, 2) AS w)",
        Dialect::Postgres,
    )
    .expect("accepted");
    let r = |schema: Option<&str>, name: &str| ObjectRef {
        schema: schema.map(str::to_owned),
        name: name.to_owned(),
    };
    assert_eq!(
        q.functions(),
        [
            r(Some("public"), "f"),
            r(None, "Mixed"),
            r(None, "lower"),
            r(None, "generate_series")
        ]
    );
    assert_eq!(q.relations(), [r(Some("s"), "t"), r(None, "u")]);
    let q = guard("SELECT `Db`.`F`(1) FROM `a``b`", Dialect::Mysql).expect("accepted");
    assert_eq!(q.functions(), [r(Some("Db"), "F")]);
    assert_eq!(q.relations(), [r(None, "a`b")]);
}

/// Every legit query of the public corpus and every TPC-H query is accepted, and its rendering
/// is a fixed point: guarding the rendering gives the rendering back.
#[test]
fn corpus_renderings_are_accepted_and_stable() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sql");
    let mut seen = 0;
    for file in ["legit.jsonl", "tpch.jsonl"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("corpus file");
        for line in text.lines() {
            let case: serde_json::Value = serde_json::from_str(line).expect("json");
            let (Some(id), Some(d), Some(sql)) = (
                case["id"].as_str(),
                case["dialect"].as_str(),
                case["sql"].as_str(),
            ) else {
                panic!("bad case {line}");
            };
            let d: Dialect = d.parse().expect("dialect");
            let q = guard(sql, d).unwrap_or_else(|e| panic!("{id}: {e}"));
            let again = guard(q.sql(), d).unwrap_or_else(|e| panic!("{id} rendered: {e}"));
            assert_eq!(again.sql(), q.sql(), "{id}");
            seen += 1;
        }
    }
    assert_eq!(seen, 69 + 66);
}
