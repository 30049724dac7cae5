//! `Expr.list.*`: methods on list values (mostly the result of `str.split`), the small
//! `Expr.name.*` namespace that renames outputs, and `Expr.struct.*` for the structs
//! `str.split_exact`, `str.splitn` and `str.extract_groups` return.

use polars::prelude::{Expr, ListNameSpace, SortOptions, element, lit};

use super::super::args::Call;
use super::super::error::Result;
use super::super::registry::{Dflt, Kind, Spec, opt, req, spec};
use super::super::val::{Built, Val};
use super::super::value::Const;

fn l(c: &mut Call) -> ListNameSpace {
    c.recv().list()
}

fn unary(c: &mut Call, f: fn(ListNameSpace) -> Expr) -> Result<Built> {
    Ok(Built::Expr(f(l(c))))
}

/// `Expr.list.*` entries.
pub(crate) static LIST: &[Spec] = &[
    spec!(
        "len",
        [],
        |c| unary(c, ListNameSpace::len),
        "number of elements (UInt32)"
    ),
    spec!(
        "first",
        [],
        |c| unary(c, |n| n.get(lit(0_i64), true)),
        "first element, null if empty"
    ),
    spec!(
        "last",
        [],
        |c| unary(c, |n| n.get(lit(-1_i64), true)),
        "last element, null if empty"
    ),
    spec!("get", [req("index", Kind::Expr), opt("null_on_oob", Kind::Bool, Dflt::Bool(false))], @pos 1, |c| {
        let i = c.expr(0)?;
        let oob = c.bool(1);
        Ok(Built::Expr(l(c).get(i, oob)))
    }, "element at an index (negative from the end); out of bounds is an error unless `null_on_oob`"),
    spec!("join", [req("separator", Kind::ExprLit), opt("ignore_nulls", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
        let sep = c.expr(0)?;
        let ig = c.bool(1);
        Ok(Built::Expr(l(c).join(sep, ig)))
    }, "join string elements with a separator"),
    spec!("contains", [req("item", Kind::ExprLit), opt("nulls_equal", Kind::Bool, Dflt::Bool(true))], @pos 1, |c| {
        let item = c.expr(0)?;
        let ne = c.bool(1);
        Ok(Built::Expr(l(c).contains(item, ne)))
    }, "membership test per list"),
    spec!(
        "sum",
        [],
        |c| unary(c, ListNameSpace::sum),
        "sum of elements"
    ),
    spec!(
        "mean",
        [],
        |c| unary(c, ListNameSpace::mean),
        "mean of elements"
    ),
    spec!(
        "min",
        [],
        |c| unary(c, ListNameSpace::min),
        "minimum element"
    ),
    spec!(
        "max",
        [],
        |c| unary(c, ListNameSpace::max),
        "maximum element"
    ),
    spec!("sort", [opt("descending", Kind::Bool, Dflt::Bool(false)), opt("nulls_last", Kind::Bool, Dflt::Bool(false))],
        @pos 0, |c| {
            let o = SortOptions::default().with_order_descending(c.bool(0)).with_nulls_last(c.bool(1));
            Ok(Built::Expr(l(c).sort(o)))
        }, "sort each list"),
    spec!(
        "reverse",
        [],
        |c| unary(c, |n| n.eval(element().reverse())),
        "reverse each list"
    ),
    spec!("unique", [opt("maintain_order", Kind::Bool, Dflt::Bool(false))], @pos 0, |c| {
        let stable = c.bool(0);
        let e = if stable { element().unique_stable() } else { element().unique() };
        Ok(Built::Expr(l(c).eval(e)))
    }, "distinct elements of each list"),
    spec!(
        "n_unique",
        [],
        |c| unary(c, |n| n.agg(element().n_unique())),
        "number of distinct elements"
    ),
    spec!(
        "slice",
        [
            req("offset", Kind::Expr),
            opt("length", Kind::Expr, Dflt::None)
        ],
        |c| {
            let off = c.expr(0)?;
            let len = c.expr(1)?;
            Ok(Built::Expr(l(c).slice(off, len)))
        },
        "a slice of each list"
    ),
    spec!(
        "head",
        [opt("n", Kind::Expr, Dflt::Int(5))],
        |c| {
            let n = c.expr(0)?;
            Ok(Built::Expr(l(c).slice(lit(0_i64), n)))
        },
        "first n elements"
    ),
    spec!(
        "tail",
        [opt("n", Kind::Expr, Dflt::Int(5))],
        |c| {
            let n = c.expr(0)?;
            Ok(Built::Expr(l(c).tail(n)))
        },
        "last n elements"
    ),
];

/// `Expr.struct.*` entries: read fields of a struct value.
pub(crate) static STRUCT: &[Spec] = &[spec!(
    "field",
    [req("name", Kind::Str)],
    @var Kind::Str,
    struct_field,
    "the named field(s); several names give several columns"
)];

fn struct_field(c: &mut Call) -> Result<Built> {
    let recv = c.recv();
    if c.rest.is_empty() {
        let name = c.str(0).to_owned();
        return Ok(Built::Expr(recv.struct_().field_by_name(&name)));
    }
    let mut names = vec![c.str(0).to_owned()];
    for arg in &c.rest {
        if let Val::Const(Const::Str(s)) = &arg.val {
            names.push(s.to_string());
        }
    }
    Ok(Built::Expr(recv.struct_().field_by_names(names)))
}

/// `Expr.name.*` entries: rename the output column.
pub(crate) static NAME: &[Spec] = &[
    spec!(
        "suffix",
        [req("suffix", Kind::Str)],
        |c| {
            let s = c.str(0).to_owned();
            Ok(Built::Expr(c.recv().name().suffix(&s)))
        },
        "append to the output name"
    ),
    spec!(
        "prefix",
        [req("prefix", Kind::Str)],
        |c| {
            let s = c.str(0).to_owned();
            Ok(Built::Expr(c.recv().name().prefix(&s)))
        },
        "prepend to the output name"
    ),
    spec!(
        "keep",
        [],
        |c| Ok(Built::Expr(c.recv().name().keep())),
        "keep the input column's name"
    ),
    spec!(
        "to_lowercase",
        [],
        |c| Ok(Built::Expr(c.recv().name().to_lowercase())),
        "lower-case the output name"
    ),
    spec!(
        "to_uppercase",
        [],
        |c| Ok(Built::Expr(c.recv().name().to_uppercase())),
        "upper-case the output name"
    ),
];
