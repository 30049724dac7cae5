use hubworker::expr::check;
use proptest::prelude::*;

/// Fragments real expressions are made of; mutations recombine them.
const PIECES: &[&str] = &[
    "pl",
    ".",
    "col",
    "(",
    ")",
    "\"a\"",
    "'b'",
    ",",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "&",
    "|",
    "^",
    "~",
    "<",
    ">=",
    "==",
    "!=",
    "not ",
    " and ",
    " or ",
    " in ",
    " is ",
    "lit",
    "when",
    "then",
    "otherwise",
    "str",
    "dt",
    "list",
    "contains",
    "round",
    "cast",
    "pl.Int64",
    "[",
    "]",
    "{",
    "}",
    ":",
    "=",
    "lambda",
    "__class__",
    "1",
    "0",
    "-1",
    "9**9",
    "1e308",
    "None",
    "True",
    "\"x\"*",
    "f\"",
    "\\",
    "\n",
    " ",
    "...",
    "@",
    ";",
    "#",
    "\"\"\"",
    "é",
    "\u{feff}",
    "\0",
];

fn assemble(parts: Vec<usize>) -> String {
    parts
        .into_iter()
        .map(|i| PIECES[i % PIECES.len()])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}") {
        let _ = check(&s);
    }

    #[test]
    fn recombined_fragments_never_panic(parts in prop::collection::vec(0usize..1000, 0..60)) {
        let _ = check(&assemble(parts));
    }

    #[test]
    fn mutated_legit_expressions_never_panic(
        base in prop::sample::select(vec![
            "pl.col(\"a\").str.replace(\"l\", \"$0\", n=2)",
            "pl.when(pl.col(\"a\") > 1).then(\"b\").otherwise(pl.lit(None))",
            "pl.col(\"ts\").dt.truncate(\"1d\").dt.epoch(\"s\")",
            "pl.concat_str([pl.col(\"a\"), pl.lit(\"-\")], separator=\"/\")",
            "pl.col(\"x\").rolling_std(3, min_samples=1, ddof=0).over(\"g\")",
        ]),
        cut in 0usize..80,
        insert in 0usize..1000,
    ) {
        let mut s = base.to_string();
        let at = cut.min(s.len());
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.insert_str(at, PIECES[insert % PIECES.len()]);
        let _ = check(&s);
        s.truncate(at);
        let _ = check(&s);
    }
}
