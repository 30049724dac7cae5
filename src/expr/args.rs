//! Binding call arguments to a registry signature, Python-style: positional, then keywords,
//! defaults filled, arity and kinds checked once. Builders then read typed values through
//! [`Call`]'s accessors, which cannot fail on kind (binding already checked it).

use polars::prelude::{DataType, Expr};

use super::error::{ErrorCode, ExprError, Result, Span};
use super::limits::MAX_WIDTH;
use super::registry::{Dflt, Kind, Param, Spec, Table};
use super::val::{Arg, StrAs, Val, WhenChain, seq_literal, to_expr};
use super::value::Const;

/// A call ready to build: receiver, one slot per parameter (defaults filled), extra `*args`.
#[derive(Debug)]
pub(crate) struct Call {
    pub spec: &'static Spec,
    pub table: Table,
    pub recv: Option<Expr>,
    pub args: Vec<Arg>,
    /// Which slots the caller gave explicitly.
    pub given: Vec<bool>,
    pub rest: Vec<Arg>,
    pub span: Span,
    /// The when-chain a `.when/.then/.otherwise` call continues.
    pub chain: Option<Box<WhenChain>>,
}

fn bad(msg: String, span: Span) -> ExprError {
    ExprError::new(ErrorCode::BadArguments, msg, span)
}

fn dflt_val(d: Dflt) -> Val {
    match d {
        Dflt::Required | Dflt::None => Val::Const(Const::None),
        Dflt::Bool(b) => Val::Const(Const::Bool(b)),
        Dflt::Int(i) => Val::Const(Const::Int(i)),
        Dflt::Float(f) => Val::Const(Const::Float(f)),
        Dflt::Str(s) => Val::Const(Const::Str(s.to_owned())),
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
        (Kind::Choice(options), Val::Const(Const::Str(s))) => options.contains(&s.as_str()),
        (Kind::DType, Val::DType(_)) => true,
        (Kind::Collection, Val::Seq(_) | Val::Const(_)) => true,
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

impl Call {
    /// Binds `positional` and `keywords` to `spec`'s parameters, checking arity and kinds.
    pub(crate) fn bind(
        spec: &'static Spec,
        table: Table,
        recv: Option<Expr>,
        positional: Vec<Arg>,
        keywords: Vec<(String, Arg)>,
        span: Span,
    ) -> Result<Call> {
        let name = || format!("{}{}()", table.prefix(), spec.name);
        let n = spec.params.len();
        let mut slots: Vec<Option<Arg>> = vec![None; n];
        let mut rest = Vec::new();
        let max_pos = spec.positional.min(n);
        for (i, arg) in positional.into_iter().enumerate() {
            if i < max_pos {
                slots[i] = Some(arg);
            } else if let Some(kind) = spec.variadic {
                if !kind_ok(kind, &arg.val) {
                    return Err(bad(
                        format!(
                            "{}: extra arguments must be {}, found {}",
                            name(),
                            kind.describe(),
                            arg.val.describe()
                        ),
                        arg.span,
                    ));
                }
                rest.push(arg);
            } else {
                return Err(bad(
                    format!(
                        "{} takes at most {max_pos} positional argument{}",
                        name(),
                        if max_pos == 1 { "" } else { "s" }
                    ),
                    arg.span,
                ));
            }
        }
        for (kw, arg) in keywords {
            let Some(i) = spec.params.iter().position(|p| p.name == kw) else {
                let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                let hint = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(&kw, k), *k))
                    .filter(|(s, _)| *s > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                return Err(bad(
                    format!("{} got an unexpected keyword argument '{kw}'{hint}", name()),
                    arg.span,
                ));
            };
            if slots[i].is_some() {
                return Err(bad(
                    format!("{} got multiple values for argument '{kw}'", name()),
                    arg.span,
                ));
            }
            slots[i] = Some(arg);
        }
        let mut args = Vec::with_capacity(n);
        let mut given = Vec::with_capacity(n);
        for (p, slot) in spec.params.iter().zip(slots) {
            match slot {
                Some(arg) => {
                    check_kind(spec, table, p, &arg)?;
                    args.push(arg);
                    given.push(true);
                }
                None if p.default == Dflt::Required => {
                    return Err(bad(
                        format!("{} missing required argument '{}'", name(), p.name),
                        span,
                    ));
                }
                None => {
                    args.push(Arg {
                        val: dflt_val(p.default),
                        span,
                    });
                    given.push(false);
                }
            }
        }
        Ok(Call {
            spec,
            table,
            recv,
            args,
            given,
            rest,
            span,
            chain: None,
        })
    }

    fn take(&mut self, i: usize) -> Arg {
        let span = self.args[i].span;
        std::mem::replace(
            &mut self.args[i],
            Arg {
                val: Val::Const(Const::None),
                span,
            },
        )
    }

    /// The receiver expression of a method call.
    pub(crate) fn recv(&mut self) -> Expr {
        // Methods always have a receiver; functions never call this.
        self.recv
            .take()
            .unwrap_or_else(|| polars::prelude::lit(polars::prelude::NULL))
    }

    /// The parameter's source span (the call's span for defaults).
    pub(crate) fn span(&self, i: usize) -> Span {
        self.args[i].span
    }

    /// Whether the caller passed parameter `i`.
    pub(crate) fn given(&self, i: usize) -> bool {
        self.given[i]
    }

    /// Whether parameter `i` is `None`.
    pub(crate) fn is_none(&self, i: usize) -> bool {
        matches!(self.args[i].val, Val::Const(Const::None))
    }

    /// Parameter `i` as an expression, with the parameter kind's rule for strings.
    pub(crate) fn expr(&mut self, i: usize) -> Result<Expr> {
        let str_as = match self.spec.params[i].kind {
            Kind::ExprLit => StrAs::Literal,
            _ => StrAs::Column,
        };
        let arg = self.take(i);
        to_expr(arg, str_as)
    }

    /// Parameter `i` as an expression, or `None` when it is Python `None`.
    pub(crate) fn opt_expr(&mut self, i: usize) -> Result<Option<Expr>> {
        if self.is_none(i) {
            return Ok(None);
        }
        self.expr(i).map(Some)
    }

    fn flatten(arg: Arg, out: &mut Vec<Expr>, str_as: StrAs) -> Result<()> {
        match arg.val {
            Val::Seq(items) => {
                for item in items {
                    out.push(to_expr(item, str_as)?);
                }
                Ok(())
            }
            _ => {
                out.push(to_expr(arg, str_as)?);
                Ok(())
            }
        }
    }

    /// Parameter `i` (one expression or a list) followed by the `*args`, flattened.
    pub(crate) fn exprs_and_rest(&mut self, i: usize, str_as: StrAs) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        if !self.is_none(i) {
            let arg = self.take(i);
            Self::flatten(arg, &mut out, str_as)?;
        }
        for arg in std::mem::take(&mut self.rest) {
            Self::flatten(arg, &mut out, str_as)?;
        }
        Ok(out)
    }

    /// The `*args` alone, flattened.
    pub(crate) fn rest_exprs(&mut self, str_as: StrAs) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        for arg in std::mem::take(&mut self.rest) {
            Self::flatten(arg, &mut out, str_as)?;
        }
        Ok(out)
    }

    /// Parameter `i` as an `i64`.
    pub(crate) fn int(&self, i: usize) -> i64 {
        match self.args[i].val {
            Val::Const(Const::Int(v)) => v,
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
                    self.spec.params[i].name
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
        matches!(self.args[i].val, Val::Const(Const::Bool(true)))
    }

    /// Parameter `i` as a string slice (empty when `None`).
    pub(crate) fn str(&self, i: usize) -> &str {
        match &self.args[i].val {
            Val::Const(Const::Str(s)) => s,
            _ => "",
        }
    }

    /// Parameter `i` as a string, `None` when Python `None`.
    pub(crate) fn opt_str(&self, i: usize) -> Option<&str> {
        match &self.args[i].val {
            Val::Const(Const::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Parameter `i` as a data type.
    pub(crate) fn dtype(&self, i: usize) -> DataType {
        match &self.args[i].val {
            Val::DType(d) => d.clone(),
            _ => DataType::Null,
        }
    }

    /// Parameter `i` (a list of constants) as a Series literal.
    pub(crate) fn series(&self, i: usize) -> Result<polars::prelude::Series> {
        seq_literal(&self.args[i])
    }

    /// Whether parameter `i` is a list/tuple literal.
    pub(crate) fn is_seq(&self, i: usize) -> bool {
        matches!(self.args[i].val, Val::Seq(_))
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
