//! Binding call arguments to a registry signature, Python-style: positional, then keywords,
//! defaults filled, arity and kinds checked once ([`Bound`]). Builders then read typed values
//! through [`Call`]'s accessors, which cannot fail on kind (binding already checked it).

use std::ops::{Deref, DerefMut};

use polars::prelude::{DataType, Expr};

use super::error::{ErrorCode, ExprError, Result, Span};
use super::exprs::{ExprId, Exprs};
use super::limits::MAX_WIDTH;
use super::registry::{Dflt, Kind, Param, Spec, Table};
use super::val::{Arg, StrAs, Val, WhenChain, seq_literal, take_expr, to_expr};
use super::value::Const;

/// A call's arguments bound to its signature: receiver, one slot per parameter (defaults
/// filled), extra `*args`.
#[derive(Debug)]
pub(crate) struct Bound {
    pub spec: &'static Spec,
    pub table: Table,
    pub recv: Option<ExprId>,
    /// One value per parameter: the default until an argument is given (see `given`).
    /// Inline for the usual few parameters, so binding a call does not allocate.
    pub args: smallvec::SmallVec<[Arg; 3]>,
    /// Positional arguments seen so far.
    positional: usize,
    /// Which slots the caller gave explicitly (bit i = param i; signatures have < 64 params).
    pub given: u64,
    pub rest: smallvec::SmallVec<[Arg; 1]>,
    pub span: Span,
    /// The when-chain a `.when/.then/.otherwise` call continues.
    pub chain: Option<WhenChain>,
}

fn bad(msg: String, span: Span) -> ExprError {
    ExprError::new(ErrorCode::BadArguments, msg, span)
}

fn dflt_val(d: Dflt) -> Val {
    match d {
        Dflt::Required | Dflt::None => Val::Const(Const::None),
        Dflt::Bool(b) => Val::Const(Const::Bool(b)),
        Dflt::Int(i) => Val::Const(Const::Int(i128::from(i))),
        Dflt::Float(f) => Val::Const(Const::Float(f)),
        Dflt::Str(s) => Val::Const(Const::Str(std::borrow::Cow::Borrowed(s))),
    }
}

fn kind_ok(kind: Kind, val: &Val) -> bool {
    let exprlike = val.is_exprlike();
    match (kind, val) {
        (Kind::Expr | Kind::ExprLit, Val::Const(_)) => true,
        (Kind::Expr | Kind::ExprLit, _) => exprlike,
        (Kind::Exprs, Val::Seq(items)) => items
            .iter()
            .all(|a| a.val.is_exprlike() || matches!(a.val, Val::Const(_))),
        (Kind::Exprs, Val::Const(_)) => true,
        (Kind::Exprs, _) => exprlike,
        (Kind::Int, Val::Const(Const::Int(_) | Const::Bool(_))) => true,
        (Kind::Bool, Val::Const(Const::Bool(_))) => true,
        (Kind::Str, Val::Const(Const::Str(_))) => true,
        (Kind::Choice(options), Val::Const(Const::Str(s))) => options.contains(&s.as_ref()),
        (Kind::DType, Val::DType(_)) => true,
        (Kind::Collection, Val::Seq(_) | Val::Const(_) | Val::Dict(_)) => true,
        (Kind::Collection, _) => exprlike,
        (Kind::IntOrExpr, Val::Const(Const::Int(_) | Const::Str(_))) => true,
        (Kind::IntOrExpr, _) => exprlike,
        (Kind::Names, Val::Const(Const::Str(_)) | Val::DType(_)) => true,
        (Kind::Names, Val::Seq(items)) => items
            .iter()
            .all(|a| matches!(a.val, Val::Const(Const::Str(_)) | Val::DType(_))),
        (Kind::Any, Val::Const(_) | Val::Seq(_)) => true,
        (Kind::Any, _) => exprlike,
        _ => false,
    }
}

fn check_kind(spec: &Spec, table: Table, p: &Param, arg: &Arg) -> Result<()> {
    if p.nullable && matches!(arg.val, Val::Const(Const::None)) {
        return Ok(());
    }
    if kind_ok(p.kind, &arg.val) {
        return Ok(());
    }
    let wanted = match p.kind {
        Kind::Choice(options) => format!("one of {}", quoted(options)),
        k => k.describe(),
    };
    Err(ExprError::new(
        ErrorCode::BadArguments,
        format!(
            "{}{}(): argument '{}' must be {wanted}, found {}",
            table.prefix(),
            spec.name,
            p.name,
            arg.val.describe()
        ),
        arg.span,
    ))
}

fn quoted(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bound call being built: the binding and the walk's expressions, which the builder
/// consumes its expression arguments from.
#[derive(Debug)]
pub(crate) struct Call<'x> {
    bound: Bound,
    x: &'x mut Exprs,
}

impl Deref for Call<'_> {
    type Target = Bound;
    fn deref(&self) -> &Bound {
        &self.bound
    }
}

impl DerefMut for Call<'_> {
    fn deref_mut(&mut self) -> &mut Bound {
        &mut self.bound
    }
}

impl Bound {
    /// Starts binding a call to `spec`; arguments are added in source order, then [`finish`].
    ///
    /// [`finish`]: Bound::finish
    pub(crate) fn start(
        spec: &'static Spec,
        table: Table,
        recv: Option<ExprId>,
        span: Span,
    ) -> Bound {
        Bound {
            spec,
            table,
            recv,
            // Defaults are cheap constants (no allocation); arguments overwrite them in place,
            // so each value moves once into its slot.
            args: spec
                .params
                .iter()
                .map(|p| Arg {
                    val: dflt_val(p.default),
                    span,
                })
                .collect(),
            given: 0,
            positional: 0,
            rest: smallvec::SmallVec::new(),
            span,
            chain: None,
        }
    }

    fn name(&self) -> String {
        format!("{}{}()", self.table.prefix(), self.spec.name)
    }

    /// The next positional argument.
    #[inline]
    pub(crate) fn positional(&mut self, arg: Arg) -> Result<()> {
        let max_pos = self.spec.positional.min(self.spec.params.len());
        let i = self.positional;
        self.positional += 1;
        if i < max_pos {
            self.args[i] = arg;
            self.given |= 1 << i;
            return Ok(());
        }
        let Some(kind) = self.spec.variadic else {
            return Err(bad(
                format!(
                    "{} takes at most {max_pos} positional argument{}",
                    self.name(),
                    if max_pos == 1 { "" } else { "s" }
                ),
                arg.span,
            ));
        };
        if !kind_ok(kind, &arg.val) {
            return Err(bad(
                format!(
                    "{}: extra arguments must be {}, found {}",
                    self.name(),
                    kind.describe(),
                    arg.val.describe()
                ),
                arg.span,
            ));
        }
        self.rest.push(arg);
        Ok(())
    }

    /// A keyword argument.
    pub(crate) fn keyword(&mut self, kw: &str, arg: Arg, x: &mut Exprs) -> Result<()> {
        if self.spec.name == "when" && self.spec.params.is_empty() {
            // `pl.when(vip=True)` is py-polars' `pl.col("vip") == True` (a str value is text).
            let span = arg.span;
            let value = to_expr(arg, StrAs::Literal, x)?;
            self.rest.push(Arg {
                val: Val::Expr(x.put(polars::prelude::col(kw).eq(value))),
                span,
            });
            return Ok(());
        }
        let Some(i) = self.spec.params.iter().position(|p| p.name == kw) else {
            let hint = self
                .spec
                .params
                .iter()
                .map(|p| (strsim::jaro_winkler(kw, p.name), p.name))
                .filter(|(s, _)| *s > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!(" (did you mean '{k}'?)"))
                .unwrap_or_default();
            return Err(bad(
                format!(
                    "{} got an unexpected keyword argument '{kw}'{hint}",
                    self.name()
                ),
                arg.span,
            ));
        };
        if self.given(i) {
            return Err(bad(
                format!("{} got multiple values for argument '{kw}'", self.name()),
                arg.span,
            ));
        }
        self.args[i] = arg;
        self.given |= 1 << i;
        Ok(())
    }

    /// Checks the given arguments' kinds and that required parameters were given.
    pub(crate) fn finish(&self) -> Result<()> {
        let (spec, table, span) = (self.spec, self.table, self.span);
        for (i, (p, arg)) in spec.params.iter().zip(&self.args).enumerate() {
            if self.given(i) {
                check_kind(spec, table, p, arg)?;
            } else if p.default == Dflt::Required {
                return Err(bad(
                    format!("{} missing required argument '{}'", self.name(), p.name),
                    span,
                ));
            }
        }
        Ok(())
    }

    /// Binds a call with no arguments (a bare `pl.Datetime`).
    pub(crate) fn bare(spec: &'static Spec, table: Table, span: Span) -> Result<Bound> {
        let call = Bound::start(spec, table, None, span);
        call.finish()?;
        Ok(call)
    }

    /// Runs the spec's builder on this binding, storing a new expression in `x`.
    #[inline(always)]
    pub(crate) fn build(self, x: &mut Exprs) -> Result<Val> {
        let build = self.spec.build;
        let mut call = Call { bound: self, x };
        let built = build(&mut call)?;
        Ok(built.into_val(call.x))
    }

    fn take(&mut self, i: usize) -> Arg {
        let span = self.span(i);
        let none = Arg {
            val: Val::Const(Const::None),
            span,
        };
        match self.args.get_mut(i) {
            Some(slot) => std::mem::replace(slot, none),
            None => none,
        }
    }

    /// Slot `i`'s value; `None` for a slot the signature lacks (a builder bug, never a panic).
    fn val(&self, i: usize) -> &Val {
        const NONE: Val = Val::Const(Const::None);
        self.args.get(i).map_or(&NONE, |a| &a.val)
    }

    /// The parameter's source span (the call's span for defaults).
    pub(crate) fn span(&self, i: usize) -> Span {
        self.args.get(i).map_or(self.span, |a| a.span)
    }

    /// Whether the caller passed parameter `i`.
    pub(crate) fn given(&self, i: usize) -> bool {
        i < 64 && self.given & (1 << i) != 0
    }

    /// Whether parameter `i` is `None`.
    pub(crate) fn is_none(&self, i: usize) -> bool {
        matches!(*self.val(i), Val::Const(Const::None))
    }

    /// Parameter `i` as an `i64`.
    pub(crate) fn int(&self, i: usize) -> i64 {
        match *self.val(i) {
            // Out-of-range values saturate; every caller bounds them again (`count`, `width`).
            Val::Const(Const::Int(v)) => {
                i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
            }
            Val::Const(Const::Bool(b)) => i64::from(b),
            _ => 0,
        }
    }

    /// Parameter `i` as an `i64`, `None` when Python `None`.
    pub(crate) fn opt_int(&self, i: usize) -> Option<i64> {
        (!self.is_none(i)).then(|| self.int(i))
    }

    /// Parameter `i` as a non-negative count that fits `T`, or `bad_arguments`.
    pub(crate) fn count<T: TryFrom<i64>>(&self, i: usize) -> Result<T> {
        let v = self.int(i);
        T::try_from(v).map_err(|_| {
            bad(
                format!(
                    "{}{}(): argument '{}' must be a non-negative integer in range, got {v}",
                    self.table.prefix(),
                    self.spec.name,
                    self.spec.params.get(i).map_or("?", |p| p.name)
                ),
                self.span(i),
            )
        })
    }

    /// Parameter `i` as a width (padding, fill), bounded by [`MAX_WIDTH`].
    pub(crate) fn width(&self, i: usize) -> Result<usize> {
        let v = self.int(i);
        if !(0..=MAX_WIDTH).contains(&v) {
            return Err(ExprError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{}{}(): width {v} is outside 0..={MAX_WIDTH}",
                    self.table.prefix(),
                    self.spec.name
                ),
                self.span(i),
            ));
        }
        Ok(v as usize)
    }

    /// Parameter `i` as a `bool`.
    pub(crate) fn bool(&self, i: usize) -> bool {
        matches!(*self.val(i), Val::Const(Const::Bool(true)))
    }

    /// Parameter `i` as a string slice (empty when `None`).
    pub(crate) fn str(&self, i: usize) -> &str {
        match self.val(i) {
            Val::Const(Const::Str(s)) => s,
            _ => "",
        }
    }

    /// Parameter `i` as a string, `None` when Python `None`.
    pub(crate) fn opt_str(&self, i: usize) -> Option<&str> {
        match self.val(i) {
            Val::Const(Const::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Parameter `i` as a data type.
    pub(crate) fn dtype(&self, i: usize) -> DataType {
        match self.val(i) {
            Val::DType(d) => d.clone(),
            _ => DataType::Null,
        }
    }

    /// Parameter `i` (a list of constants) as a Series literal.
    pub(crate) fn series(&self, i: usize) -> Result<polars::prelude::Series> {
        match self.args.get(i) {
            Some(arg) => seq_literal(arg),
            None => Err(self.bad(i, "missing list argument")),
        }
    }

    /// Whether parameter `i` is a list/tuple literal.
    pub(crate) fn is_seq(&self, i: usize) -> bool {
        matches!(*self.val(i), Val::Seq(_))
    }

    /// A `bad_arguments` error about parameter `i`.
    pub(crate) fn bad(&self, i: usize, msg: impl Into<String>) -> ExprError {
        bad(
            format!(
                "{}{}(): {}",
                self.table.prefix(),
                self.spec.name,
                msg.into()
            ),
            self.span(i),
        )
    }
}

impl Call<'_> {
    /// The receiver expression of a method call.
    pub(crate) fn recv(&mut self) -> Expr {
        // Methods always have a receiver; functions never call this.
        match self.bound.recv.take() {
            Some(id) => self.x.take(id),
            None => polars::prelude::lit(polars::prelude::NULL),
        }
    }

    /// A value as a stored expression: an expression argument keeps its id (nothing moves).
    pub(crate) fn expr_id_of(&mut self, arg: Arg, str_as: StrAs) -> Result<ExprId> {
        match arg.val {
            Val::Expr(id) => Ok(id),
            _ => {
                let e = to_expr(arg, str_as, self.x)?;
                Ok(self.x.put(e))
            }
        }
    }

    /// Parameter `i` as a stored expression (see [`Call::expr_id_of`]).
    pub(crate) fn expr_id(&mut self, i: usize) -> Result<ExprId> {
        let str_as = match self.spec.params.get(i).map_or(Kind::Expr, |p| p.kind) {
            Kind::ExprLit => StrAs::Literal,
            _ => StrAs::Column,
        };
        let arg = self.bound.take(i);
        self.expr_id_of(arg, str_as)
    }

    /// Charges a text-growth factor to this expression's budget; returns the product so far.
    pub(crate) fn charge_growth(&mut self, factor: u64) -> u64 {
        self.x.charge_growth(factor)
    }

    /// Stores a new expression.
    pub(crate) fn put_expr(&mut self, e: Expr) -> ExprId {
        self.x.put(e)
    }

    /// Finishes a when-chain with `otherwise`.
    pub(crate) fn finish_when(&mut self, chain: WhenChain, otherwise: Expr) -> Expr {
        chain.finish(otherwise, self.x)
    }

    /// A value as an expression (`parse_into_expression`), consuming it.
    pub(crate) fn expr_of(&mut self, arg: Arg, str_as: StrAs) -> Result<Expr> {
        to_expr(arg, str_as, self.x)
    }

    /// Parameter `i` as an expression, with the parameter kind's rule for strings.
    pub(crate) fn expr(&mut self, i: usize) -> Result<Expr> {
        let str_as = match self.spec.params.get(i).map_or(Kind::Expr, |p| p.kind) {
            Kind::ExprLit => StrAs::Literal,
            _ => StrAs::Column,
        };
        match self.bound.args.get_mut(i) {
            Some(arg) => take_expr(arg, str_as, self.x),
            None => {
                let arg = self.bound.take(i);
                to_expr(arg, str_as, self.x)
            }
        }
    }

    /// Parameter `i` as an expression, or `None` when it is Python `None`.
    pub(crate) fn opt_expr(&mut self, i: usize) -> Result<Option<Expr>> {
        if self.is_none(i) {
            return Ok(None);
        }
        self.expr(i).map(Some)
    }

    fn flatten(&mut self, arg: Arg, out: &mut Vec<Expr>, str_as: StrAs) -> Result<()> {
        match arg.val {
            Val::Seq(items) => {
                for item in items {
                    out.push(to_expr(item, str_as, self.x)?);
                }
                Ok(())
            }
            _ => {
                out.push(to_expr(arg, str_as, self.x)?);
                Ok(())
            }
        }
    }

    /// Parameter `i` (one expression or a list) followed by the `*args`, flattened.
    pub(crate) fn exprs_and_rest(&mut self, i: usize, str_as: StrAs) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        if !self.is_none(i) {
            let arg = self.bound.take(i);
            self.flatten(arg, &mut out, str_as)?;
        }
        for arg in std::mem::take(&mut self.bound.rest) {
            self.flatten(arg, &mut out, str_as)?;
        }
        Ok(out)
    }

    /// The `*args` alone, flattened.
    pub(crate) fn rest_exprs(&mut self, str_as: StrAs) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        for arg in std::mem::take(&mut self.bound.rest) {
            self.flatten(arg, &mut out, str_as)?;
        }
        Ok(out)
    }
}
