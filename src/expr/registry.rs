//! The registry: every function and method an expression may call, as data. A name that is
//! not here does not exist for users: there is no fallback, no getattr, no eval.
//! Tables live beside their builders in `funcs/`; this file owns the shapes and the lookup.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::args::Call;
use super::error::Result;
use super::funcs;
use super::val::Built;

/// Turns bound, kind-checked arguments into a value. Trusts the binding; never re-checks kinds.
pub(crate) type Build = fn(&mut Call<'_>) -> Result<Built>;

/// Which receiver a name is looked up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    /// `pl.<name>(...)`
    Functions,
    /// `pl.<DataType>` and `pl.<DataType>(...)`
    DTypes,
    /// `<expr>.<name>(...)`
    Methods,
    /// `<expr>.str.<name>(...)`
    Str,
    /// `<expr>.dt.<name>(...)`
    Dt,
    /// `<expr>.list.<name>(...)`
    List,
    /// `<expr>.name.<name>(...)`
    Name,
    /// `<expr>.struct.<name>(...)`
    Struct,
}

impl Table {
    /// How the receiver is written in messages and docs.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Table::Functions | Table::DTypes => "pl.",
            Table::Methods => "Expr.",
            Table::Str => "Expr.str.",
            Table::Dt => "Expr.dt.",
            Table::List => "Expr.list.",
            Table::Name => "Expr.name.",
            Table::Struct => "Expr.struct.",
        }
    }

    /// The namespace attribute that leads to this table from an expression, if any.
    pub(crate) fn namespace(name: &str) -> Option<Table> {
        match name {
            "str" => Some(Table::Str),
            "dt" => Some(Table::Dt),
            "list" | "arr" => Some(Table::List),
            "name" => Some(Table::Name),
            "struct" => Some(Table::Struct),
            _ => None,
        }
    }

    /// All tables, in documentation order.
    pub(crate) const ALL: [Table; 8] = [
        Table::Functions,
        Table::DTypes,
        Table::Methods,
        Table::Str,
        Table::Dt,
        Table::List,
        Table::Name,
        Table::Struct,
    ];
}

/// What kind of value a parameter accepts. Checked once, when arguments are bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anything that becomes an expression; a Python `str` is a column name.
    Expr,
    /// Anything that becomes an expression; a Python `str` is a string literal.
    ExprLit,
    /// One expression or a list of them; `str` items are column names.
    Exprs,
    /// A Python `int` (a `bool` is an `int`, as in Python).
    Int,
    /// A Python `bool`.
    Bool,
    /// A Python `str`.
    Str,
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// A Polars data type (`pl.Int64`, `pl.Datetime("ms")`).
    DType,
    /// A list or tuple of constants, or an expression (`is_in`).
    Collection,
    /// `int` or expression (e.g. `shift(n)`); `str` is a column name.
    IntOrExpr,
    /// Column names or data types: a `str`, a data type, or a list of either (`pl.col`).
    Names,
    /// Any constant, list or expression (`pl.lit`).
    Any,
}

impl Kind {
    /// How the kind reads in messages and in the README.
    pub(crate) fn describe(self) -> String {
        match self {
            Kind::Expr => "expression (str = column name)".into(),
            Kind::ExprLit => "expression (str = literal)".into(),
            Kind::Exprs => "expression or list of expressions (str = column name)".into(),
            Kind::Int => "int".into(),
            Kind::Bool => "bool".into(),
            Kind::Str => "str".into(),
            Kind::Choice(c) => format!("one of {}", c.join(", ")),
            Kind::DType => "data type".into(),
            Kind::Collection => "list of constants or expression".into(),
            Kind::IntOrExpr => "int or expression".into(),
            Kind::Names => "column name(s) or data type(s)".into(),
            Kind::Any => "constant, list or expression".into(),
        }
    }
}

/// A parameter's default when the caller leaves it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Dflt {
    /// The caller must give it.
    Required,
    /// Python `None`.
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'static str),
}

/// One formal parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Dflt,
    /// May be `None` even though its kind is not `None`.
    pub nullable: bool,
}

/// Shorthand constructors keep the tables one line per parameter.
pub(crate) const fn req(name: &'static str, kind: Kind) -> Param {
    Param {
        name,
        kind,
        default: Dflt::Required,
        nullable: false,
    }
}

/// A parameter with a default value.
pub(crate) const fn opt(name: &'static str, kind: Kind, default: Dflt) -> Param {
    Param {
        name,
        kind,
        default,
        nullable: matches!(default, Dflt::None),
    }
}

/// A parameter that may be given as `None` explicitly (and defaults to something else).
pub(crate) const fn nullable(name: &'static str, kind: Kind, default: Dflt) -> Param {
    Param {
        name,
        kind,
        default,
        nullable: true,
    }
}

/// One callable: a Python signature and the builder that produces the Polars value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub name: &'static str,
    pub params: &'static [Param],
    /// How many leading params may be passed positionally (the rest are keyword-only).
    pub positional: usize,
    /// `*args` after the positional params, if the Python function has one.
    pub variadic: Option<Kind>,
    pub build: Build,
    /// One line for the README: what it does and how it differs from py-polars, if at all.
    pub doc: &'static str,
}

/// Declares a [`Spec`]: `spec!("name", [params], [@pos N,] [@var Kind,] builder, "doc")`.
/// `pos` is how many params may be passed positionally (default: all); `var` adds `*args`.
macro_rules! spec {
    (@pos) => { usize::MAX };
    (@pos $p:expr) => { $p };
    (@var) => { None };
    (@var $v:expr) => { Some($v) };
    ($name:literal, [$($p:expr),* $(,)?] $(, @pos $pos:expr)? $(, @var $v:expr)?, $build:expr, $doc:literal $(,)?) => {
        $crate::expr::registry::Spec {
            name: $name,
            params: &[$($p),*],
            positional: spec!(@pos $($pos)?),
            variadic: spec!(@var $($v)?),
            build: $build,
            doc: $doc,
        }
    };
}
pub(crate) use spec;

/// One name index per table, built once from the `funcs` tables.
type Index = HashMap<&'static str, &'static Spec, foldhash::fast::RandomState>;

static INDEX: LazyLock<[Index; 8]> = LazyLock::new(|| {
    Table::ALL.map(|table| {
        funcs::table(table)
            .iter()
            .map(|spec| (spec.name, spec))
            .collect()
    })
});

/// The spec for `name` on `table`, if the name exists there.
pub(crate) fn lookup(table: Table, name: &str) -> Option<&'static Spec> {
    INDEX[table as usize].get(name).copied()
}

/// The closest known name on `table` (and, for `pl.`, among data types), for a did-you-mean.
pub(crate) fn suggest(table: Table, name: &str) -> Option<&'static str> {
    let tables: &[Table] = match table {
        Table::Functions | Table::DTypes => &[Table::Functions, Table::DTypes],
        t => std::slice::from_ref(match t {
            Table::Methods => &Table::Methods,
            Table::Str => &Table::Str,
            Table::Dt => &Table::Dt,
            Table::Name => &Table::Name,
            Table::Struct => &Table::Struct,
            _ => &Table::List,
        }),
    };
    let lower = name.to_ascii_lowercase();
    tables
        .iter()
        .flat_map(|t| funcs::table(*t).iter())
        .map(|s| {
            (
                strsim::jaro_winkler(&lower, &s.name.to_ascii_lowercase()),
                s.name,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}
