//! `:name` run parameters: found by the parser, never by text; rewritten to each driver's
//! placeholders in text order; positional placeholders refused.

use super::*;

fn bound(sql: &str, dialect: Dialect) -> (String, Vec<String>) {
    let q = guard(sql, dialect).unwrap_or_else(|e| panic!("{sql}: {e}"));
    (q.driver_sql().to_owned(), q.params().to_vec())
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn postgres_numbers_each_name_once() {
    let (sql, params) = bound(
        "SELECT a FROM t WHERE r = :region AND x > :min OR r2 = :region",
        Dialect::Postgres,
    );
    assert_eq!(sql, "SELECT a FROM t WHERE r = $1 AND x > $2 OR r2 = $1");
    assert_eq!(params, names(&["region", "min"]));
    let q = guard("SELECT a FROM t WHERE r = :region", Dialect::Postgres).unwrap();
    // The cache and the messages see the query as written (rendered), with its names.
    assert_eq!(q.sql(), "SELECT a FROM t WHERE r = :region");
}

#[test]
fn mysql_binds_each_occurrence_in_text_order() {
    let (sql, params) = bound(
        "SELECT a FROM t WHERE r = :region AND x > :min OR r2 = :region LIMIT :n",
        Dialect::Mysql,
    );
    assert_eq!(
        sql,
        "SELECT a FROM t WHERE r = ? AND x > ? OR r2 = ? LIMIT ?"
    );
    assert_eq!(params, names(&["region", "min", "region", "n"]));
}

#[test]
fn sqlite_numbers_each_name_once() {
    let (sql, params) = bound(
        "SELECT :b AS b, a FROM t WHERE r = :a AND s = :b",
        Dialect::Sqlite,
    );
    assert_eq!(sql, "SELECT ?1 AS b, a FROM t WHERE r = ?2 AND s = ?1");
    assert_eq!(params, names(&["b", "a"]));
}

#[test]
fn names_in_strings_comments_and_slices_are_not_parameters() {
    let (sql, params) = bound(
        "SELECT ':region' AS s, 'ä€ :x' AS u, arr[1:n] AS sl, :region AS r -- :y\nFROM t",
        Dialect::Postgres,
    );
    assert_eq!(
        sql,
        "SELECT ':region' AS s, 'ä€ :x' AS u, arr[1:n] AS sl, $1 AS r FROM t"
    );
    assert_eq!(params, names(&["region"]));
    // A cast of a parameter keeps the cast.
    let (sql, _) = bound("SELECT :d::date AS d", Dialect::Postgres);
    assert_eq!(sql, "SELECT $1::DATE AS d");
}

#[test]
fn queries_without_parameters_are_sent_as_rendered() {
    let q = guard("SELECT 1 AS one", Dialect::Postgres).unwrap();
    assert_eq!(q.driver_sql(), q.sql());
    assert!(q.params().is_empty());
}

#[test]
fn positional_placeholders_are_refused() {
    for (sql, dialect) in [
        ("SELECT a FROM t WHERE b = ?", Dialect::Mysql),
        ("SELECT a FROM t WHERE b = ?", Dialect::Sqlite),
        ("SELECT a FROM t WHERE b = ?1", Dialect::Sqlite),
        ("SELECT a FROM t WHERE b = $1", Dialect::Postgres),
    ] {
        let e = guard(sql, dialect).unwrap_err();
        assert_eq!(e.code, ErrorCode::Placeholder, "{sql}");
        assert_eq!(e.code.as_str(), "placeholder");
    }
}

#[test]
fn the_key_text_tells_values_and_types_apart() {
    let a = Bind::key_text(&[Bind::Str("1".into())]);
    let b = Bind::key_text(&[Bind::Int(1)]);
    let c = Bind::key_text(&[Bind::Str("1".into())]);
    assert_ne!(a, b);
    assert_eq!(a, c);
    assert_ne!(
        Bind::key_text(&[Bind::Str("a".into()), Bind::Str("b".into())]),
        Bind::key_text(&[Bind::Str("a\",\"b".into())])
    );
    assert_eq!(
        format!("{:?}", Bind::Str("secret".into())),
        "Bind(str, ***)"
    );
}
