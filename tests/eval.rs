use hubworker::batch::{Mode, apply};
use hubworker::expr::{check, compile};
use polars::prelude::*;

use crate::util::sample_frame;

fn select(src: &str) -> Column {
    let checked = check(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let df = apply(&sample_frame(), compile(&checked), Mode::Select)
        .unwrap_or_else(|e| panic!("{src}: {e}"));
    df.column("result").expect("result").clone()
}

fn i64s(c: &Column) -> Vec<Option<i64>> {
    let c = c.cast(&DataType::Int64).expect("cast");
    let ca = c.i64().expect("i64");
    (0..ca.len()).map(|i| ca.get(i)).collect()
}

fn f64s(c: &Column) -> Vec<Option<f64>> {
    let ca = c.f64().expect("f64");
    (0..ca.len()).map(|i| ca.get(i)).collect()
}

fn strs(c: &Column) -> Vec<Option<String>> {
    let ca = c.str().expect("str");
    (0..ca.len())
        .map(|i| ca.get(i).map(str::to_owned))
        .collect()
}

fn bools(c: &Column) -> Vec<Option<bool>> {
    let ca = c.bool().expect("bool");
    (0..ca.len()).map(|i| ca.get(i)).collect()
}

fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
    v.iter().map(|o| o.map(str::to_owned)).collect()
}

#[test]
fn python_division_semantics() {
    assert_eq!(select("pl.col(\"a\") // 0").null_count(), 5);
    assert_eq!(
        f64s(&select("pl.col(\"a\") / pl.col(\"b\")")),
        vec![Some(0.5), Some(-3.5), None, None, Some(0.0)]
    );
    assert_eq!(
        i64s(&select("pl.col(\"a\") // 2")),
        vec![Some(0), Some(-4), None, Some(5), Some(0)]
    );
    // `/` on two ints is true division (Float64), never Rust's integer division.
    assert_eq!(select("pl.col(\"a\") / 2").dtype(), &DataType::Float64);
}

#[test]
fn round_is_half_to_even() {
    let r = f64s(&select("pl.col(\"x\").round(1)"));
    assert_eq!(r[0], Some(2.5));
    assert!(r[1].is_some_and(f64::is_nan));
    assert_eq!(r[2], Some(-1.2));
    assert_eq!(r[3], None);
    assert_eq!(r[4], Some(12.2));
    assert_eq!(f64s(&select("pl.col(\"x\").round(0)"))[0], Some(2.0));
}

#[test]
fn strings_are_literals_or_columns_like_py_polars() {
    // `+` reads a str as a literal...
    assert_eq!(
        strs(&select("pl.col(\"s\") + \"x\"")),
        s(&[
            Some("applex"),
            Some("üx"),
            None,
            Some("-12x"),
            Some("Hello Worldx")
        ])
    );
    // ...then()/otherwise() read it as a column name.
    assert_eq!(
        strs(&select(
            "pl.when(pl.col(\"flag\")).then(\"s\").otherwise(pl.lit(\"no\"))"
        )),
        s(&[
            Some("apple"),
            Some("no"),
            Some("no"),
            Some("-12"),
            Some("no")
        ])
    );
    // A bare then() is otherwise(None).
    assert_eq!(
        strs(&select("pl.when(pl.col(\"flag\")).then(pl.lit(\"y\"))")),
        s(&[Some("y"), None, None, Some("y"), None])
    );
}

#[test]
fn reflected_comparison_keeps_the_column_on_the_left() {
    assert_eq!(
        bools(&select("3 < pl.col(\"a\")")),
        vec![Some(false), Some(false), None, Some(true), Some(false)]
    );
    assert_eq!(
        i64s(&select("10 - pl.col(\"a\")")),
        vec![Some(9), Some(17), None, Some(0), Some(10)]
    );
}

#[test]
fn literals_have_py_polars_types() {
    let c = select("pl.lit(7)");
    assert_eq!(c.dtype(), &DataType::Int32);
    assert_eq!(c.len(), 1);
    // A dynamic int keeps the column's type.
    assert_eq!(select("pl.col(\"b\") * 10**2").dtype(), &DataType::Int32);
    assert_eq!(select("pl.len()").dtype(), &DataType::UInt32);
}

#[test]
fn membership_and_nulls() {
    assert_eq!(
        bools(&select("pl.col(\"a\").is_in([1, 10])")),
        vec![Some(true), Some(false), None, Some(true), Some(false)]
    );
    assert_eq!(
        i64s(&select("pl.col(\"a\").fill_null(0).cum_sum()")),
        vec![Some(1), Some(-6), Some(-6), Some(4), Some(4)]
    );
    assert_eq!(
        bools(&select("pl.col(\"a\").is_between(0, 5)")),
        vec![Some(true), Some(false), None, Some(false), Some(true)]
    );
}

#[test]
fn string_methods_match_py_polars_2() {
    assert_eq!(
        strs(&select("pl.col(\"s\").str.zfill(4)")),
        s(&[
            Some("apple"),
            Some("000ü"),
            None,
            Some("-012"),
            Some("Hello World")
        ])
    );
    assert_eq!(
        strs(&select("pl.col(\"s\").str.replace(\"l\", \"[$0]\")")),
        s(&[
            Some("app[l]e"),
            Some("ü"),
            None,
            Some("-12"),
            Some("He[l]lo World")
        ])
    );
    assert_eq!(
        i64s(&select("pl.col(\"s\").str.len_chars()")),
        vec![Some(5), Some(1), None, Some(3), Some(11)]
    );
    assert_eq!(
        strs(&select("pl.col(\"s\").str.head(-3)")),
        s(&[Some("ap"), Some(""), None, Some(""), Some("Hello Wo")])
    );
}

#[test]
fn strict_cast_fails_and_filter_needs_booleans() {
    let df = sample_frame();
    let e = compile(&check("pl.col(\"a\").cast(pl.UInt8)").expect("ok"));
    assert!(
        apply(&df, e, Mode::Select).is_err(),
        "-7 does not fit UInt8: strict cast fails"
    );
    let e = compile(&check("pl.col(\"a\").cast(pl.UInt8, strict=False)").expect("ok"));
    let out = apply(&df, e, Mode::Select).expect("non-strict");
    assert_eq!(out.column("result").expect("col").null_count(), 2);
    let e = compile(&check("pl.col(\"b\") > 2").expect("ok"));
    assert_eq!(apply(&df, e, Mode::Filter).expect("filter").height(), 2);
    let e = compile(&check("pl.col(\"a\")").expect("ok"));
    assert!(
        apply(&df, e, Mode::Filter).is_err(),
        "an Int64 predicate is an error"
    );
    let e = compile(&check("pl.col(\"missing\").abs()").expect("ok"));
    assert!(
        apply(&df, e, Mode::Select).is_err(),
        "unknown column is an error at run time"
    );
}

#[test]
fn windows_and_aggregations() {
    let c = select("pl.col(\"a\").sum()");
    assert_eq!(i64s(&c), vec![Some(4)]);
    let c = select("pl.col(\"b\").max().over(\"flag\")");
    assert_eq!(i64s(&c), vec![Some(2), Some(5), Some(3), Some(2), Some(5)]);
    let c = select("pl.col(\"x\").quantile(0.5)");
    assert_eq!(f64s(&c).len(), 1);
}
