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

/// The physical value (days or time units since the epoch) and the dtype of a temporal column.
fn epoch(src: &str) -> (DataType, Vec<Option<i64>>) {
    let c = select(src);
    (c.dtype().clone(), i64s(&c.to_physical_repr()))
}

#[test]
fn from_epoch_scales_like_py_polars() {
    let us = DataType::Datetime(TimeUnit::Microseconds, None);
    assert_eq!(
        epoch("pl.from_epoch(pl.col(\"a\") * 86400)"),
        (
            us.clone(),
            vec![
                Some(86_400_000_000),
                Some(-604_800_000_000),
                None,
                Some(864_000_000_000),
                Some(0)
            ]
        )
    );
    assert_eq!(
        epoch("pl.from_epoch(\"a\", time_unit=\"ms\")"),
        (
            us,
            vec![Some(1_000), Some(-7_000), None, Some(10_000), Some(0)]
        )
    );
    assert_eq!(
        epoch("pl.from_epoch(\"a\", time_unit=\"d\")"),
        (
            DataType::Date,
            vec![Some(1), Some(-7), None, Some(10), Some(0)]
        )
    );
    assert_eq!(
        epoch("pl.from_epoch(\"a\", time_unit=\"ns\")"),
        (
            DataType::Datetime(TimeUnit::Nanoseconds, None),
            vec![Some(1), Some(-7), None, Some(10), Some(0)]
        )
    );
    // py-polars: 10**9 s is 2001-09-09 (3rd millennium); -7e9 s is 1748.
    let c = select("pl.from_epoch(pl.col(\"a\") * 10**9).dt.millennium()");
    assert_eq!(i64s(&c), vec![Some(3), Some(2), None, Some(3), Some(2)]);
    let c = select("pl.from_epoch(\"a\", time_unit=\"d\").dt.century()");
    assert_eq!(i64s(&c), vec![Some(20), Some(20), None, Some(20), Some(20)]);
    let e = check("pl.from_epoch(\"a\", time_unit=\"h\")").expect_err("bad unit");
    assert_eq!(e.code.as_str(), "bad_arguments");
}

#[test]
fn replace_many_takes_lists_or_a_mapping() {
    let c = select("pl.col(\"s\").str.replace_many([\"p\", \"l\"], [\"P\", \"L\"])");
    assert_eq!(
        strs(&c),
        s(&[
            Some("aPPLe"),
            Some("ü"),
            None,
            Some("-12"),
            Some("HeLLo WorLd")
        ])
    );
    // Overlapping patterns without leftmost=True: py-polars gives "app1e" here too.
    let c = select("pl.col(\"s\").str.replace_many({\"apple\": \"pear\", \"l\": \"1\"})");
    assert_eq!(
        strs(&c),
        s(&[
            Some("app1e"),
            Some("ü"),
            None,
            Some("-12"),
            Some("He11o Wor1d")
        ])
    );
    let c = select(
        "pl.col(\"s\").str.replace_many([\"A\", \"W\"], [\"_\"], ascii_case_insensitive=True)",
    );
    assert_eq!(
        strs(&c),
        s(&[
            Some("_pple"),
            Some("ü"),
            None,
            Some("-12"),
            Some("Hello _orld")
        ])
    );
    let c = select("pl.col(\"s\").str.replace_many({})");
    assert_eq!(
        strs(&c),
        s(&[
            Some("apple"),
            Some("ü"),
            None,
            Some("-12"),
            Some("Hello World")
        ])
    );
    let e = check("pl.col(\"s\").str.replace_many([\"a\"])").expect_err("no replacement");
    assert_eq!(e.code.as_str(), "bad_arguments");
}

#[test]
fn trigonometry_and_angles() {
    let c = select("pl.col(\"x\").arctan().round(6)");
    let got = f64s(&c);
    assert_eq!(got[0], Some(1.19029));
    assert!(got[1].is_some_and(f64::is_nan));
    assert_eq!(got[2..], [Some(-0.896055), None, Some(1.489344)]);
    let c = select("pl.col(\"b\").cot().round(6)");
    assert_eq!(
        f64s(&c),
        vec![
            Some(-0.457658),
            Some(-0.457658),
            Some(-7.015253),
            None,
            Some(-0.295813)
        ]
    );
    let c = select("pl.col(\"a\").degrees().radians()");
    assert_eq!(
        f64s(&c),
        vec![Some(1.0), Some(-7.0), None, Some(10.0), Some(0.0)]
    );
}

#[test]
fn struct_returning_string_methods_and_struct_field() {
    let c = select("pl.col(\"s\").str.split_exact(\"l\", 1).struct.field(\"field_1\")");
    assert_eq!(strs(&c), s(&[Some("e"), None, None, None, Some("")]));
    let c =
        select("pl.col(\"s\").str.split_exact(\"l\", 1, inclusive=True).struct.field(\"field_0\")");
    assert_eq!(
        strs(&c),
        s(&[Some("appl"), Some("ü"), None, Some("-12"), Some("Hel")])
    );
    let c = select("pl.col(\"s\").str.splitn(\"l\", 2).struct.field(\"field_1\")");
    assert_eq!(
        strs(&c),
        s(&[Some("e"), None, None, None, Some("lo World")])
    );
    let c =
        select("pl.col(\"s\").str.extract_groups(r\"(?<first>\\w)(\\w)\").struct.field(\"first\")");
    assert_eq!(strs(&c), s(&[Some("a"), None, None, Some("1"), Some("H")]));
    let c = select("pl.col(\"s\").str.extract_groups(r\"(?<first>\\w)(\\w)\").struct.field(\"2\")");
    assert_eq!(strs(&c), s(&[Some("p"), None, None, Some("2"), Some("e")]));
    assert!(
        check("pl.col(\"s\").str.split_exact(\" \", 1).struct.field(\"field_0\", \"field_1\")")
            .is_ok()
    );
    // A struct of a million fields is refused before anything is built.
    let e = check("pl.col(\"s\").str.split_exact(\"-\", 10**6)").expect_err("huge n");
    assert_eq!(e.code.as_str(), "limit_exceeded");
    let e = check("pl.col(\"s\").str.extract_groups(\"(\")").expect_err("bad regex");
    assert_eq!(e.code.as_str(), "bad_arguments");
}
