use std::sync::Arc;

use hubworker::expr::{ErrorCode, ExprCache, check, limits};

fn code(src: &str) -> ErrorCode {
    match check(src) {
        Ok(_) => panic!("accepted but should be rejected: {src:?}"),
        Err(e) => e.code,
    }
}

#[test]
fn rejections_have_exact_codes() {
    use ErrorCode::*;
    let cases: &[(&str, ErrorCode)] = &[
        // Escapes through dunders and private attributes.
        ("{}.__class__.__mro__[-1].__subclasses__()", DunderAttribute),
        ("pl.lit.__globals__", DunderAttribute),
        ("pl.col(\"units\").__class__.__bases__", DunderAttribute),
        ("pl.__file__", DunderAttribute),
        ("pl.col(\"a\")._pyexpr", DunderAttribute),
        ("(pl.col(\"units\")\n  .__class__)", DunderAttribute),
        // Names other than pl.
        ("getattr(pl.col(\"units\"), \"__class__\")", ForbiddenName),
        ("eval(\"1\")", ForbiddenName),
        ("__import__(\"subprocess\").run([\"id\"])", ForbiddenName),
        ("globals()[\"__builtins__\"]", ForbiddenNode),
        ("sys.exit(0)", ForbiddenName),
        ("polars.col(\"a\")", ForbiddenName),
        // Node kinds outside the allowlist.
        ("(lambda x: x)(pl.col(\"units\"))", ForbiddenNode),
        ("[c for c in \"abc\"]", ForbiddenNode),
        ("(n := 1)", ForbiddenNode),
        ("f\"{open('/etc/passwd').read()}\"", ForbiddenNode),
        ("pl.col(\"a\") if True else pl.col(\"b\")", ForbiddenNode),
        ("pl.col(\"a\")[0]", ForbiddenNode),
        ("pl.col(*[\"a\"])", ForbiddenNode),
        ("pl.col(**{\"name\": \"a\"})", ForbiddenNode),
        ("pl.col(\"a\").is_in({1, 2})", ForbiddenNode),
        ("b\"bytes\"", ForbiddenNode),
        ("pl.col(\"a\") in [1]", ForbiddenNode),
        ("pl.col(\"a\") is None", ForbiddenNode),
        // Python's bool() on expressions.
        (
            "(pl.col(\"units\") > 3) or pl.col(\"vip\")",
            BooleanOperator,
        ),
        ("pl.col(\"a\") and pl.col(\"b\")", BooleanOperator),
        ("not pl.col(\"a\")", BooleanOperator),
        ("1 < pl.col(\"a\") < 3", ChainedComparison),
        // Not in the registry: I/O, callbacks, global state, construction.
        ("pl.read_csv(\"data.csv\")", UnsupportedMethod),
        ("pl.scan_parquet(\"../secret.parquet\")", UnsupportedMethod),
        (
            "pl.DataFrame({\"a\": [1]}).write_ndjson(\"out.json\")",
            UnsupportedMethod,
        ),
        ("pl.sql(\"select 1\")", UnsupportedMethod),
        ("pl.col(\"units\").map_elements(print)", UnsupportedMethod),
        ("pl.col(\"units\").pipe(eval)", UnsupportedMethod),
        ("pl.Config.set_fmt_str_lengths(10)", UnsupportedMethod),
        ("pl.show_versions", UnsupportedMethod),
        ("pl.repeat(\"x\", 10)", UnsupportedMethod),
        ("pl.int_range(10)", UnsupportedMethod),
        ("pl.col(\"a\").str.no_such_thing()", UnsupportedMethod),
        ("\"{0.__globals__}\".format(pl.lit)", UnsupportedMethod),
        ("\"{}\".format(pl.lit(1))", UnsupportedMethod),
        // Bounded constants.
        ("pl.lit(9**9**9)", LimitExceeded),
        ("pl.col(\"name\") + \"x\" * 10**9", LimitExceeded),
        ("pl.lit(2**127)", LimitExceeded),
        (
            "pl.lit(999999999999999999999999999999999999999999)",
            LimitExceeded,
        ),
        ("pl.col(\"a\").is_in([2**64])", LimitExceeded),
        ("pl.col(\"s\").str.zfill(10**6)", LimitExceeded),
        ("pl.col(\"s\").str.pad_start(100000, \"x\")", LimitExceeded),
        // Constant errors Python itself would raise.
        ("pl.lit(1 / 0)", ConstantError),
        ("pl.lit(\"a\" - 1)", ConstantError),
        // Arguments.
        ("pl.col(\"a\").round(\"x\")", BadArguments),
        ("pl.col(\"a\").round(2, mode=\"up\")", BadArguments),
        ("pl.col(\"a\").round(decimal=2)", BadArguments),
        ("pl.col(\"a\").round(1, \"half_to_even\", 3)", BadArguments),
        ("pl.col(\"a\").is_between(1)", BadArguments),
        ("pl.col(\"a\").cast(\"Int64\")", BadArguments),
        ("pl.col(\"a\").alias(\"x\", name=\"y\")", BadArguments),
        ("pl.col(\"a\").round(-1)", BadArguments),
        ("pl.col(\"a\").fill_null()", BadArguments),
        ("pl.when()", BadArguments),
        // Values of the wrong kind.
        ("1 + 2", TypeMismatch),
        ("pl.col", TypeMismatch),
        ("pl.when(pl.col(\"a\") > 1)", TypeMismatch),
        ("pl.col(\"a\").is_in([1, \"x\"])", TypeMismatch),
        ("pl.col(\"a\").is_in([1, 2.5])", TypeMismatch),
        // Not an expression at all.
        ("import sys", Syntax),
        ("pl.lit(1); exec(\"x\")", Syntax),
        ("y = 1", Syntax),
        ("if True: pass", Syntax),
        ("   \n  ", Syntax),
        ("", Syntax),
        ("pl.col(\"a\"", Syntax),
        // Look-alike identifiers (Python folds them with NFKC).
        ("pl.col(\"units\").__ｄict__", NonAsciiIdentifier),
        ("pl.ｓcan_csv(\"x\")", NonAsciiIdentifier),
        ("ｇetattr(pl, \"scan_csv\")", NonAsciiIdentifier),
    ];
    let mut wrong = Vec::new();
    for (src, want) in cases {
        match check(src) {
            Ok(_) => wrong.push(format!("{src:?}: accepted, want {want}")),
            Err(e) if e.code != *want => wrong.push(format!(
                "{src:?}: got {} ({}), want {want}",
                e.code, e.message
            )),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "wrong codes:\n{}", wrong.join("\n"));
}

#[test]
fn messages_name_the_construct_and_hint() {
    let e = check("pl.col(\"a\") and pl.col(\"b\")").unwrap_err();
    assert!(e.message.contains('&'), "{}", e.message);
    let e = check("pl.col(\"a\").str.to_upercase()").unwrap_err();
    assert!(
        e.message.contains("did you mean Expr.str.to_uppercase"),
        "{}",
        e.message
    );
    let e = check("pl.read_csv(\"x\")").unwrap_err();
    assert!(e.message.contains("pl.read_csv"), "{}", e.message);
    let e = check("pl.col(\"a\").round(decimal=2)").unwrap_err();
    assert!(
        e.message.contains("did you mean 'decimals'"),
        "{}",
        e.message
    );
}

#[test]
fn spans_point_at_the_offending_bytes() {
    let src = "pl.col(\"a\").frobnicate(1)";
    let e = check(src).unwrap_err();
    assert_eq!(&src[e.span.0 as usize..e.span.1 as usize], "frobnicate");
    let src = "pl.col(\"a\") + eval(\"1\")";
    let e = check(src).unwrap_err();
    assert_eq!(&src[e.span.0 as usize..e.span.1 as usize], "eval");
    let src = "pl.col(\"a\").round(\"x\")";
    let e = check(src).unwrap_err();
    assert_eq!(&src[e.span.0 as usize..e.span.1 as usize], "\"x\"");
    // Byte offsets, also after non-ASCII text.
    let src = "pl.col(\"größe\") + nope";
    let e = check(src).unwrap_err();
    assert_eq!(&src[e.span.0 as usize..e.span.1 as usize], "nope");
}

#[test]
fn legit_expressions_pass() {
    for src in [
        "pl.col(\"price\") * pl.col(\"qty\")",
        "(\n    pl.when(pl.col(\"d\") > 0.4)\n    .then(pl.lit(\"deep\"))\n    .when(pl.col(\"d\") > 0.1)\n    .then(pl.lit(\"normal\"))\n    .otherwise(pl.lit(\"tiny\"))\n)",
        "pl.concat_str([pl.col(\"region\"), pl.col(\"name\"),], separator=\",\",)",
        "pl.col('region') == '''East'''",
        "pl.col(\"units\") * 10**2",
        "-pl.col(\"a\")",
        "+pl.col(\"a\")",
        "~pl.col(\"flag\")",
        "pl.col(\"a\", \"b\").sum()",
        "pl.col([\"a\", \"b\"]).max()",
        "pl.col(pl.Int64).abs()",
        "pl.col(\"ts\").dt.truncate(\"1d\").dt.strftime(\"%Y\")",
        "pl.col(\"s\").str.strptime(pl.Datetime(\"ms\"), \"%Y-%m-%d %H:%M:%S\")",
        "pl.col(\"a\").cast(pl.Float64, strict=False).round(decimals=3)",
        "pl.len().over(\"store\")",
        "pl.col(\"a\").rank(\"dense\", descending=True)",
        "pl.col(\"a\").shift(-2, fill_value=0)",
        "pl.col(\"a\").rolling_mean(3, min_samples=1)",
        "pl.sum_horizontal(\"a\", \"b\", ignore_nulls=False)",
        "pl.format(\"{} - {}\", \"a\", pl.col(\"b\"))",
        "pl.duration(days=\"d\", hours=2)",
        "pl.date(2024, 1, pl.col(\"d\"))",
        "pl.col(\"a\").is_in([1, None, 3], nulls_equal=True)",
        "pl.col(\"s\").str.split(\",\").list.get(0, null_on_oob=True)",
        "pl.when(pl.col(\"a\") > 1).then(1).alias(\"x\")",
    ] {
        if let Err(e) = check(src) {
            panic!("rejected {src:?}: {} {}", e.code, e.message);
        }
    }
}

#[test]
fn limits_are_enforced_without_blowing_the_stack() {
    let big = format!(
        "pl.col(\"a\") + {}",
        "0 + ".repeat(limits::MAX_SOURCE_BYTES / 4)
    );
    assert_eq!(code(&big), ErrorCode::LimitExceeded);
    let deep = format!("{}pl.col(\"a\"){}", "(".repeat(50), ")".repeat(50));
    assert!(
        check(&deep).is_ok(),
        "parentheses alone do not nest the AST"
    );
    let deep = format!("{}pl.col(\"a\")", "-".repeat(limits::MAX_DEPTH + 5));
    assert_eq!(code(&deep), ErrorCode::LimitExceeded);
    let list = format!("pl.col(\"a\").is_in([{}])", "1,".repeat(limits::MAX_NODES));
    assert_eq!(code(&list), ErrorCode::LimitExceeded);
    // The worst shapes within the size limit, on a 512 KiB stack (tokio workers have 2 MiB).
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let n = limits::MAX_SOURCE_BYTES - 16;
            for src in [
                format!("{}pl.col(\"a\")", "~".repeat(n - 20)),
                format!("pl.col(\"a\"){}", "+0".repeat(n / 2 - 10)),
                format!("{}1{}", "[".repeat(n / 2 - 1), "]".repeat(n / 2 - 1)),
                "(".repeat(20_015),
            ] {
                let e = check(&src).expect_err("rejected");
                assert!(
                    matches!(e.code, ErrorCode::LimitExceeded | ErrorCode::Syntax),
                    "{}",
                    e.code
                );
            }
        })
        .expect("spawn");
    handle.join().expect("no stack overflow");
    // Parentheses do not nest the tree, but CPython refuses more than 200 of them, as do we.
    let parens = |n: usize| format!("pl.lit({}1{})", "(".repeat(n), ")".repeat(n));
    assert!(check(&parens(199)).is_ok());
    assert_eq!(code(&parens(201)), ErrorCode::LimitExceeded);
    // Brackets inside strings are not nesting.
    assert!(check(&format!("pl.lit(\"{}\")", "(".repeat(500))).is_ok());
}

#[test]
fn cache_compiles_once_and_caches_rejections() {
    let cache = ExprCache::new(1 << 20);
    let a = cache.get("pl.col(\"a\") + 1").expect("ok");
    let b = cache.get("pl.col(\"a\") + 1").expect("ok");
    assert!(
        Arc::ptr_eq(&a, &b),
        "second lookup is the same compiled value"
    );
    let e1 = cache.get("eval(1)").unwrap_err();
    let e2 = cache.get("eval(1)").unwrap_err();
    assert_eq!(e1, e2);
    assert_eq!(e1.code, ErrorCode::ForbiddenName);
}

#[test]
fn every_code_has_a_distinct_stable_name() {
    let names: std::collections::HashSet<&str> =
        ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), ErrorCode::ALL.len());
    assert_eq!(ErrorCode::LimitExceeded.as_str(), "limit_exceeded");
    assert_eq!(ErrorCode::UnsupportedMethod.as_str(), "unsupported_method");
}

#[test]
fn readme_documents_every_registry_entry() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let reference = hubworker::expr::reference_markdown();
    assert!(
        readme.contains(reference.trim()),
        "README's expression reference is out of date: run `hubworker doc expr-reference` \
         and paste it between the markers"
    );
}

#[test]
fn indentation_is_python_s() {
    // As ast.parse(src, mode="eval") in CPython 3.11: an indented first line, or a last line of
    // only whitespace, is an IndentationError; blank lines and comments before are fine.
    for (src, span) in [
        ("  pl.col(\"a\")", (0, 1)),
        ("\tpl.col(\"a\")", (0, 1)),
        ("\n  pl.col(\"a\")", (1, 2)),
        ("# note\n  pl.col(\"a\")", (7, 8)),
        ("pl.col(\"a\")\n  ", (12, 14)),
    ] {
        let e = check(src).expect_err(src);
        assert_eq!((e.code, e.span), (ErrorCode::Syntax, span), "{src:?}");
        assert!(e.message.contains("unexpected indent"), "{}", e.message);
    }
    for src in [
        "  \npl.col(\"a\")",
        "\npl.col(\"a\")",
        "# note\npl.col(\"a\")",
        "pl.col(\"a\")  ",
        "pl.col(\"a\")\n  \n",
        "(\n    pl.col(\"a\")\n    + 1\n)",
    ] {
        assert!(check(src).is_ok(), "{src:?}");
    }
}

/// `pl.col("x")` and `pl.lit(constant)` take a shortcut past argument binding; the keyword
/// form of the same call takes the registry path. Both must give the same expression, or the
/// same rejection, right up to the depth and node limits.
#[test]
fn common_calls_build_what_the_registry_builds() {
    let same = |fast: &str, general: &str| {
        let (a, b) = (check(fast), check(general));
        match (&a, &b) {
            (Ok(x), Ok(y)) => assert_eq!(x.expr(), y.expr(), "{fast} vs {general}"),
            // The keyword shifts later offsets: the span starts at the same place or covers
            // the same text.
            (Err(x), Err(y)) => {
                assert_eq!((x.code, &x.message), (y.code, &y.message), "{fast}");
                let text = |s: &str, e: &hubworker::expr::ExprError| {
                    s[e.span.0 as usize..e.span.1 as usize].to_owned()
                };
                assert!(
                    x.span.0 == y.span.0 || text(fast, x) == text(general, y),
                    "{fast}: {:?} vs {:?}",
                    x.span,
                    y.span
                );
            }
            _ => panic!("{fast} gave {a:?} but {general} gave {b:?}"),
        }
    };
    for (f, v) in [
        ("col", "\"a\""),
        ("col", "\"*\""),
        ("col", "\"^x_.*$\""),
        ("col", "''"),
        ("lit", "\"text\""),
        ("lit", "3"),
        ("lit", "1267650600228229401496703205376"),
        ("lit", "10000000000000000000000000000000000000000"),
        ("lit", "1.5"),
        ("lit", "1e308"),
        ("lit", "True"),
        ("lit", "None"),
        ("lit", "b\"x\""),
        ("lit", "3j"),
        ("col", "1"),
        ("col", "True"),
    ] {
        let param = if f == "col" { "name" } else { "value" };
        same(&format!("pl.{f}({v})"), &format!("pl.{f}({param}={v})"));
        same(
            &format!("pl.{f}({v}) + pl.{f}({v})"),
            &format!("pl.{f}({param}={v}) + pl.{f}({param}={v})"),
        );
    }
    for k in limits::MAX_DEPTH.saturating_sub(4)..=limits::MAX_DEPTH + 1 {
        let neg = "-".repeat(k);
        same(
            &format!("{neg}pl.col(\"a\")"),
            &format!("{neg}pl.col(name=\"a\")"),
        );
    }
    // A call is three nodes (call, `pl`, the constant). A list of n ones then one call is
    // n + 4 nodes; the limit falls inside the call for some n. `True` takes the shortcut and
    // `None` does not; both are four bytes, so the spans line up too.
    for n in (limits::MAX_NODES - 7)..limits::MAX_NODES {
        let ones = "1,".repeat(n);
        let fast = check(&format!("[{ones}pl.lit(True)]")).expect_err("a list");
        let general = check(&format!("[{ones}pl.lit(None)]")).expect_err("a list");
        assert_eq!(fast, general, "{n} ones");
        let expected = if n + 4 > limits::MAX_NODES {
            ErrorCode::LimitExceeded
        } else {
            ErrorCode::TypeMismatch
        };
        assert_eq!(fast.code, expected, "{n} ones");
    }
}
