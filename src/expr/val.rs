//! What a checked sub-expression evaluates to while walking: a constant, a Polars expression,
//! a data type, or one of the few intermediate objects py-polars has (the `pl` module, a bound
//! method, a namespace, a `when` chain). Converting to a Polars `Expr` follows py-polars'
//! `parse_into_expression` exactly, so literals get the same (dynamic) types.

use polars::prelude::{DataType, Expr, NULL, NamedFrom, Series, lit, when as pl_when};

use super::error::{ErrorCode, ExprError, Result, Span};
use super::exprs::{ExprId, Exprs};
use super::registry::{Spec, Table};
use super::value::Const;

/// A value with the span of the source that produced it.
#[derive(Debug)]
pub(crate) struct Arg {
    pub val: Val,
    pub span: Span,
}

/// A `pl.when(...)` chain under construction; its expressions stay in the walk's [`Exprs`]
/// until the chain is finished.
#[derive(Debug, Default)]
pub(crate) struct WhenChain {
    /// Completed `when(cond).then(value)` pairs, in order (the usual few inline).
    pub branches: smallvec::SmallVec<[(ExprId, ExprId); 2]>,
    /// A `when(cond)` still waiting for its `.then(...)`.
    pub pending: Option<ExprId>,
}

impl WhenChain {
    /// The chain as an expression: `otherwise(None)` unless given, like py-polars' `Then`.
    pub(crate) fn finish(self, otherwise: Expr, x: &mut Exprs) -> Expr {
        let mut branches = self.branches.into_iter();
        let Some((c0, v0)) = branches.next() else {
            return otherwise;
        };
        let (c0, v0) = (x.take(c0), x.take(v0));
        let mut chained = match branches.next() {
            None => return pl_when(c0).then(v0).otherwise(otherwise),
            Some((c1, v1)) => pl_when(c0).then(v0).when(x.take(c1)).then(x.take(v1)),
        };
        for (c, v) in branches {
            chained = chained.when(x.take(c)).then(x.take(v));
        }
        chained.otherwise(otherwise)
    }
}

/// The value of a checked node. Small: expressions live in the walk's [`Exprs`].
#[derive(Debug)]
pub(crate) enum Val {
    /// A Python constant (already folded).
    Const(Const),
    /// A Python list or tuple literal.
    Seq(Vec<Arg>),
    /// A Python dict literal (only mappings for `replace` use it).
    Dict(Vec<(Arg, Arg)>),
    /// A Polars expression (in the walk's [`Exprs`]).
    Expr(ExprId),
    /// A Polars data type.
    DType(DataType),
    /// The `pl` module itself.
    Pl,
    /// `pl.<function>` or `pl.<DataType>` not yet called.
    Func(&'static Spec, Table),
    /// `<expr>.<method>` (or a namespace method) not yet called.
    Method(ExprId, &'static Spec, Table),
    /// `<expr>.str`, `<expr>.dt`, `<expr>.list`.
    Namespace(ExprId, Table),
    /// `pl.when(...)...`; `pending` set means it still needs `.then(...)`.
    When(WhenChain),
    /// `<when-chain>.when` / `.then` / `.otherwise` not yet called.
    WhenMethod(WhenChain, WhenStep),
}

/// What a builder makes: a new Polars expression (the walk stores it in its [`Exprs`]) or
/// another value.
#[derive(Debug)]
pub(crate) enum Built {
    Expr(Expr),
    Val(Val),
}

impl From<Val> for Built {
    fn from(v: Val) -> Built {
        Built::Val(v)
    }
}

impl Built {
    /// The built value as a walk value, storing a new expression in `x`.
    #[inline]
    pub(crate) fn into_val(self, x: &mut Exprs) -> Val {
        match self {
            Built::Expr(e) => Val::Expr(x.put(e)),
            Built::Val(v) => v,
        }
    }
}

/// The three methods of a when-chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenStep {
    When,
    Then,
    Otherwise,
}

/// How a Python `str` becomes an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrAs {
    Column,
    Literal,
}

impl Val {
    /// A short description for messages ("an expression", "a str constant", ...).
    pub(crate) fn describe(&self) -> String {
        match self {
            Val::Const(c) => format!("a {} constant", c.type_name()),
            Val::Seq(_) => "a list".into(),
            Val::Dict(_) => "a dict".into(),
            Val::Expr(_) => "an expression".into(),
            Val::DType(_) => "a data type".into(),
            Val::Pl => "the pl module".into(),
            Val::Func(spec, table) => format!("the function {}{}", table.prefix(), spec.name),
            Val::Method(_, spec, table) => format!("the method {}{}", table.prefix(), spec.name),
            Val::Namespace(_, table) => format!("the namespace {}", table.prefix()),
            Val::When(w) if w.pending.is_some() => "pl.when(...) without .then(...)".into(),
            Val::When(_) => "an expression".into(),
            Val::WhenMethod(..) => "a when/then method".into(),
        }
    }

    /// Is this usable as an expression operand (an expression or a finished when-chain)?
    pub(crate) fn is_exprlike(&self) -> bool {
        matches!(self, Val::Expr(_)) || matches!(self, Val::When(w) if w.pending.is_none())
    }
}

/// A Python constant as py-polars' `lit()` makes it: ints and floats are *dynamic* literals
/// (they take the other operand's type), `None` is a Null-typed null.
pub(crate) fn const_lit(c: &Const) -> Expr {
    match c {
        Const::None => lit(NULL),
        Const::Bool(b) => lit(*b),
        // polars' `Literal` impls for i64/f64 produce dynamic literals, as py-polars' `lit` does.
        Const::Int(i) => lit(*i),
        Const::Float(f) => lit(*f),
        Const::Str(s) => lit(s.as_ref()),
    }
}

fn not_expr(arg: &Arg, what: &str) -> ExprError {
    ExprError::new(
        ErrorCode::TypeMismatch,
        format!("expected {what}, found {}", arg.val.describe()),
        arg.span,
    )
}

/// [`to_expr`] on a borrowed argument: leaves a cheap placeholder; the walk does this on
/// every operand.
pub(crate) fn take_expr(arg: &mut Arg, str_as: StrAs, x: &mut Exprs) -> Result<Expr> {
    let owned = std::mem::replace(
        arg,
        Arg {
            val: Val::Const(Const::None),
            span: arg.span,
        },
    );
    to_expr(owned, str_as, x)
}

/// `parse_into_expression(value, str_as_lit=...)`: the value as a Polars expression.
pub(crate) fn to_expr(arg: Arg, str_as: StrAs, x: &mut Exprs) -> Result<Expr> {
    match arg.val {
        Val::Expr(id) => Ok(x.take(id)),
        Val::Const(Const::Str(s)) if str_as == StrAs::Column => {
            Ok(polars::prelude::col(s.as_ref()))
        }
        Val::Const(c) => Ok(const_lit(&c)),
        Val::When(w) if w.pending.is_none() => Ok(w.finish(lit(NULL), x)),
        _ => Err(not_expr(&arg, "an expression")),
    }
}

/// A list literal of constants as a Series, inferring the dtype as py-polars does for
/// `pl.Series([...])`: all ints Int64, any float Float64, str String, bool Boolean, all None Null.
pub(crate) fn seq_literal(arg: &Arg) -> Result<Series> {
    let Val::Seq(items) = &arg.val else {
        return Err(not_expr(arg, "a list"));
    };
    #[derive(PartialEq, Clone, Copy)]
    enum K {
        Null,
        Bool,
        Int,
        Float,
        Str,
    }
    let mut kind = K::Null;
    for item in items {
        let k = match &item.val {
            Val::Const(Const::None) => continue,
            Val::Const(Const::Bool(_)) => K::Bool,
            Val::Const(Const::Int(i)) if i64::try_from(*i).is_err() => {
                return Err(ExprError::new(
                    ErrorCode::LimitExceeded,
                    "list items must fit in 64 bits",
                    item.span,
                ));
            }
            Val::Const(Const::Int(_)) => K::Int,
            Val::Const(Const::Float(_)) => K::Float,
            Val::Const(Const::Str(_)) => K::Str,
            _ => return Err(not_expr(item, "a constant in the list")),
        };
        // The first non-null item fixes the dtype, as py-polars' strict Series constructor does:
        // [1.5, 2] is Float64, but [1, 2.5] is an error there too.
        kind = match (kind, k) {
            (K::Null, k) => k,
            (a, b) if a == b => a,
            (K::Float, K::Int) => K::Float,
            _ => {
                return Err(ExprError::new(
                    ErrorCode::TypeMismatch,
                    "list items must all be of the first item's type (py-polars raises here too; \
                     write 1.0 instead of 1 to make a float list)",
                    item.span,
                ));
            }
        };
    }
    let name = polars::prelude::PlSmallStr::EMPTY;
    let s = match kind {
        K::Null => Series::full_null(name, items.len(), &DataType::Null),
        K::Bool => Series::new(
            name,
            items
                .iter()
                .map(|a| match a.val {
                    Val::Const(Const::Bool(b)) => Some(b),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        K::Int => Series::new(
            name,
            items
                .iter()
                .map(|a| match a.val {
                    Val::Const(Const::Int(i)) => i64::try_from(i).ok(),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        K::Float => Series::new(
            name,
            items
                .iter()
                .map(|a| match a.val {
                    Val::Const(Const::Int(i)) => Some(i as f64),
                    Val::Const(Const::Float(f)) => Some(f),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        K::Str => Series::new(
            name,
            items
                .iter()
                .map(|a| match &a.val {
                    Val::Const(Const::Str(s)) => Some(s.as_ref()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    };
    Ok(s)
}
