//! The allowlist walk over rustpython's AST. Every node kind is matched explicitly and anything
//! not listed is rejected; recursion is bounded by `MAX_DEPTH` and work by `MAX_NODES`.
//! This file decides what may appear; `funcs/` decides what a call means.

use rustpython_parser::ast::{self, Constant, Ranged};

use super::args::Bound;
use super::error::{ErrorCode, ExprError, Result, Span};
use super::exprs::{ExprId, Exprs};
use super::funcs::{WHEN_OTHERWISE, WHEN_THEN, WHEN_WHEN};
use super::limits::{MAX_DEPTH, MAX_NODES, MAX_STR_BYTES};
use super::ops;
use super::registry::{Spec, Table, lookup, suggest};
use super::val::{Arg, Val, WhenStep};
use super::value::{BinOp, CmpOp, Const, UnOp};

/// The byte span of a node.
pub(crate) fn span_of<T: Ranged>(node: &T) -> Span {
    let r = node.range();
    (r.start().to_u32(), r.end().to_u32())
}

#[cold]
#[inline(never)]
fn err(code: ErrorCode, msg: impl Into<String>, span: Span) -> ExprError {
    ExprError::new(code, msg, span)
}

#[cold]
#[inline(never)]
fn forbidden(what: &str, hint: &str, span: Span) -> ExprError {
    err(
        ErrorCode::ForbiddenNode,
        format!("{what} is not allowed in expressions{hint}"),
        span,
    )
}

/// Checks an identifier used as an attribute or keyword: ASCII, not dunder, not private.
#[inline]
fn check_ident(name: &str, span: Span) -> Result<()> {
    if name.is_ascii() && !name.starts_with('_') {
        return Ok(());
    }
    bad_ident(name, span)
}

#[cold]
#[inline(never)]
fn bad_ident(name: &str, span: Span) -> Result<()> {
    if !name.is_ascii() {
        return Err(err(
            ErrorCode::NonAsciiIdentifier,
            format!(
                "identifier '{name}' has non-ASCII characters (Python would NFKC-normalize it into \
                 another name)"
            ),
            span,
        ));
    }
    if name.starts_with("__") && name.ends_with("__") {
        return Err(err(
            ErrorCode::DunderAttribute,
            format!("'{name}': double-underscore attributes are not allowed"),
            span,
        ));
    }
    if name.starts_with('_') {
        return Err(err(
            ErrorCode::DunderAttribute,
            format!("'{name}': private attributes are not allowed"),
            span,
        ));
    }
    Ok(())
}

/// Why a well-known dangerous name is absent, for a clearer message.
fn absent_reason(table: Table, name: &str) -> Option<&'static str> {
    let io = ["read_", "scan_", "write_", "sink_", "from_"];
    if matches!(table, Table::Functions | Table::Methods) && io.iter().any(|p| name.starts_with(p))
    {
        return Some("expressions cannot read, write or construct data");
    }
    match name {
        "sql" | "SQLContext" => Some("SQL belongs in a sql node, not in an expression"),
        "DataFrame" | "LazyFrame" | "Series" => Some("expressions cannot construct frames"),
        "Config"
        | "thread_pool_size"
        | "show_versions"
        | "enable_string_cache"
        | "set_random_seed" => Some("expressions cannot read or change global state"),
        "plugins"
        | "register_plugin_function"
        | "map_elements"
        | "map_batches"
        | "pipe"
        | "map_groups"
        | "apply" => Some("expressions cannot run callbacks or plugins"),
        _ => None,
    }
}

#[cold]
#[inline(never)]
fn unsupported(table: Table, name: &str, span: Span) -> ExprError {
    let mut msg = format!("{}{name} is not supported", table.prefix());
    if let Some(reason) = absent_reason(table, name) {
        msg.push_str(": ");
        msg.push_str(reason);
    } else if let Some(s) = suggest(table, name) {
        msg.push_str(&format!(" (did you mean {}{s}?)", table.prefix()));
    }
    err(ErrorCode::UnsupportedMethod, msg, span)
}

fn binop(op: &ast::Operator, span: Span) -> Result<BinOp> {
    Ok(match op {
        ast::Operator::Add => BinOp::Add,
        ast::Operator::Sub => BinOp::Sub,
        ast::Operator::Mult => BinOp::Mul,
        ast::Operator::Div => BinOp::TrueDiv,
        ast::Operator::FloorDiv => BinOp::FloorDiv,
        ast::Operator::Mod => BinOp::Mod,
        ast::Operator::Pow => BinOp::Pow,
        ast::Operator::BitAnd => BinOp::BitAnd,
        ast::Operator::BitOr => BinOp::BitOr,
        ast::Operator::BitXor => BinOp::BitXor,
        ast::Operator::LShift => BinOp::LShift,
        ast::Operator::RShift => BinOp::RShift,
        ast::Operator::MatMult => return Err(forbidden("the @ operator", "", span)),
    })
}

/// Walks one parsed expression, producing its checked value.
#[derive(Debug, Default)]
pub(crate) struct Walker {
    nodes: usize,
    /// The expressions built so far; values refer to them by id.
    exprs: Exprs,
}

impl Walker {
    /// A walker for a source of `len` bytes.
    pub(crate) fn for_source(len: usize) -> Walker {
        Walker {
            nodes: 0,
            exprs: Exprs::for_source(len),
        }
    }

    /// The walk's expressions (to finish a when-chain result).
    pub(crate) fn exprs(&mut self) -> &mut Exprs {
        &mut self.exprs
    }

    /// Moves a built expression out (the walk's result).
    pub(crate) fn take(&mut self, id: ExprId) -> polars::prelude::Expr {
        self.exprs.take(id)
    }

    /// Checks and evaluates `e` at nesting `depth`.
    /// The tree is taken mutably only to move string constants out instead of copying them.
    pub(crate) fn eval(&mut self, e: &mut ast::Expr, depth: usize) -> Result<Arg> {
        let span = span_of(e);
        if depth > MAX_DEPTH {
            return Err(err(
                ErrorCode::LimitExceeded,
                format!("expression is nested deeper than {MAX_DEPTH} levels"),
                span,
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(err(
                ErrorCode::LimitExceeded,
                format!("expression has more than {MAX_NODES} syntax nodes"),
                span,
            ));
        }
        let d = depth + 1;
        let val = match e {
            ast::Expr::Constant(c) => Val::Const(constant(&mut c.value, span)?),
            ast::Expr::Name(n) => name(n.id.as_str(), span)?,
            ast::Expr::Attribute(a) => {
                check_ident(a.attr.as_str(), attr_span(a.attr.as_str(), span))?;
                let recv = self.eval(&mut a.value, d)?;
                attribute(recv, a.attr.as_str(), span, &mut self.exprs)?
            }
            ast::Expr::Call(c) => self.call(c, d, span)?,
            ast::Expr::BinOp(b) => {
                let op = binop(&b.op, span)?;
                let l = self.eval(&mut b.left, d)?;
                let r = self.eval(&mut b.right, d)?;
                ops::binary(op, l, r, span, &mut self.exprs)?
            }
            ast::Expr::UnaryOp(u) => {
                let op = match u.op {
                    ast::UnaryOp::Invert => UnOp::Invert,
                    ast::UnaryOp::Not => UnOp::Not,
                    ast::UnaryOp::UAdd => UnOp::Pos,
                    ast::UnaryOp::USub => UnOp::Neg,
                };
                let operand = self.eval(&mut u.operand, d)?;
                ops::unary(op, operand, span, &mut self.exprs)?
            }
            ast::Expr::Compare(c) => self.compare(c, d, span)?,
            ast::Expr::BoolOp(b) => {
                let word = match b.op {
                    ast::BoolOp::And => "'and' (use & instead)",
                    ast::BoolOp::Or => "'or' (use | instead)",
                };
                return Err(err(
                    ErrorCode::BooleanOperator,
                    format!(
                        "{word}: Python would call bool() on an expression, which py-polars \
                         refuses; combine conditions with & and | and wrap each in parentheses"
                    ),
                    span,
                ));
            }
            ast::Expr::List(l) => Val::Seq(self.items(&mut l.elts, d)?),
            ast::Expr::Dict(m) => {
                let mut pairs = Vec::with_capacity(m.values.len());
                for (k, v) in m.keys.iter_mut().zip(&mut m.values) {
                    let Some(k) = k else {
                        return Err(forbidden("**unpacking in a dict", "", span));
                    };
                    pairs.push((self.eval(k, d)?, self.eval(v, d)?));
                }
                Val::Dict(pairs)
            }
            ast::Expr::Tuple(t) => Val::Seq(self.items(&mut t.elts, d)?),
            ast::Expr::NamedExpr(_)
            | ast::Expr::Lambda(_)
            | ast::Expr::IfExp(_)
            | ast::Expr::Set(_)
            | ast::Expr::ListComp(_)
            | ast::Expr::SetComp(_)
            | ast::Expr::DictComp(_)
            | ast::Expr::GeneratorExp(_)
            | ast::Expr::Await(_)
            | ast::Expr::Yield(_)
            | ast::Expr::YieldFrom(_)
            | ast::Expr::FormattedValue(_)
            | ast::Expr::JoinedStr(_)
            | ast::Expr::Subscript(_)
            | ast::Expr::Starred(_)
            | ast::Expr::Slice(_) => return Err(reject_node(e, span)),
        };
        Ok(Arg { val, span })
    }

    fn items(&mut self, elts: &mut [ast::Expr], depth: usize) -> Result<Vec<Arg>> {
        elts.iter_mut().map(|e| self.eval(e, depth)).collect()
    }

    #[inline(always)]
    fn compare(&mut self, c: &mut ast::ExprCompare, depth: usize, span: Span) -> Result<Val> {
        if c.ops.len() != 1 || c.comparators.len() != 1 {
            return Err(err(
                ErrorCode::ChainedComparison,
                "chained comparisons like a < b < c expand to 'and', which py-polars refuses; \
                 write (a < b) & (b < c)",
                span,
            ));
        }
        let op = match c.ops[0] {
            ast::CmpOp::Eq => CmpOp::Eq,
            ast::CmpOp::NotEq => CmpOp::NotEq,
            ast::CmpOp::Lt => CmpOp::Lt,
            ast::CmpOp::LtE => CmpOp::LtE,
            ast::CmpOp::Gt => CmpOp::Gt,
            ast::CmpOp::GtE => CmpOp::GtE,
            ast::CmpOp::In | ast::CmpOp::NotIn => {
                return Err(forbidden("'in'", " (use .is_in([...]))", span));
            }
            ast::CmpOp::Is | ast::CmpOp::IsNot => {
                return Err(forbidden(
                    "'is'",
                    " (use .is_null() / .is_not_null())",
                    span,
                ));
            }
        };
        let l = self.eval(&mut c.left, depth)?;
        let r = self.eval(&mut c.comparators[0], depth)?;
        ops::compare(op, l, r, span, &mut self.exprs)
    }

    /// `pl.col("name")` and `pl.lit(constant)`, the most common calls by far, built directly:
    /// the same expressions the registry's `col` and `lit` build, without binding a call.
    /// Anything else, including every case that would be an error, takes the general path.
    fn common_call(&mut self, c: &mut ast::ExprCall, depth: usize, span: Span) -> Option<Val> {
        if c.args.len() != 1
            || !c.keywords.is_empty()
            || depth + 1 > MAX_DEPTH
            || self.nodes + 2 > MAX_NODES
        {
            return None;
        }
        let ast::Expr::Attribute(a) = c.func.as_ref() else {
            return None;
        };
        let ast::Expr::Name(n) = a.value.as_ref() else {
            return None;
        };
        if n.id.as_str() != "pl" {
            return None;
        }
        let ast::Expr::Constant(k) = &mut c.args[0] else {
            return None;
        };
        let expr = match (a.attr.as_str(), &mut k.value) {
            ("col", Constant::Str(s)) if s.len() <= MAX_STR_BYTES => {
                polars::prelude::col(s.as_str())
            }
            (
                "lit",
                Constant::Str(_) | Constant::Int(_) | Constant::Float(_) | Constant::Bool(_),
            ) => super::val::const_lit(&constant(&mut k.value, span).ok()?),
            _ => return None,
        };
        self.nodes += 2;
        Some(Val::Expr(self.exprs.put(expr)))
    }

    #[inline(always)]
    fn call(&mut self, c: &mut ast::ExprCall, depth: usize, span: Span) -> Result<Val> {
        if let Some(v) = self.common_call(c, depth, span) {
            return Ok(v);
        }
        // The callee: attribute access resolved in call position (so `pl.Datetime(...)` is a
        // constructor call while a bare `pl.Datetime` is a data type).
        let func_span = span_of(c.func.as_ref());
        let callee = match c.func.as_mut() {
            ast::Expr::Attribute(a) => {
                let aspan = span_of(a);
                if depth > MAX_DEPTH {
                    return Err(err(
                        ErrorCode::LimitExceeded,
                        format!("expression is nested deeper than {MAX_DEPTH} levels"),
                        aspan,
                    ));
                }
                check_ident(a.attr.as_str(), attr_span(a.attr.as_str(), aspan))?;
                let recv = self.eval(&mut a.value, depth + 1)?;
                resolve(recv, a.attr.as_str(), aspan, true, &mut self.exprs)?
            }
            other => Resolved::Val(self.eval(other, depth)?.val),
        };
        let mut call = match callee {
            Resolved::Method(recv, spec, table) => Bound::start(spec, table, Some(recv), span),
            Resolved::Val(Val::Func(spec, table)) => Bound::start(spec, table, None, span),
            Resolved::Val(Val::Method(recv, spec, table)) => {
                Bound::start(spec, table, Some(recv), span)
            }
            Resolved::Val(Val::WhenMethod(chain, step)) => {
                let spec = match step {
                    WhenStep::When => &WHEN_WHEN,
                    WhenStep::Then => &WHEN_THEN,
                    WhenStep::Otherwise => &WHEN_OTHERWISE,
                };
                let mut call = Bound::start(spec, Table::Functions, None, span);
                call.chain = Some(chain);
                call
            }
            Resolved::Val(other) => {
                return Err(err(
                    ErrorCode::TypeMismatch,
                    format!("{} is not callable", other.describe()),
                    func_span,
                ));
            }
        };
        for a in &mut c.args {
            if let ast::Expr::Starred(s) = a {
                return Err(forbidden("*args unpacking", "", span_of(s)));
            }
            let arg = self.eval(a, depth)?;
            call.positional(arg)?;
        }
        for k in &mut c.keywords {
            let kspan = span_of(k);
            let Some(id) = &k.arg else {
                return Err(forbidden("**kwargs unpacking", "", kspan));
            };
            check_ident(id.as_str(), kspan)?;
            let arg = self.eval(&mut k.value, depth)?;
            call.keyword(id.as_str(), arg, &mut self.exprs)?;
        }
        call.finish()?;
        call.build(&mut self.exprs)
    }
}

/// The rejection for a node kind outside the allowlist (every kind is named explicitly).
#[cold]
#[inline(never)]
fn reject_node(e: &ast::Expr, span: Span) -> ExprError {
    let (what, hint) = match e {
        ast::Expr::NamedExpr(_) => ("the walrus operator :=", ""),
        ast::Expr::Lambda(_) => ("lambda", ""),
        ast::Expr::IfExp(_) => ("'x if c else y'", " (use pl.when(c).then(x).otherwise(y))"),
        ast::Expr::Dict(_) => ("a dict literal", ""),
        ast::Expr::Set(_) => ("a set literal", " (use a list)"),
        ast::Expr::ListComp(_)
        | ast::Expr::SetComp(_)
        | ast::Expr::DictComp(_)
        | ast::Expr::GeneratorExp(_) => ("a comprehension or generator", ""),
        ast::Expr::Await(_) => ("await", ""),
        ast::Expr::Yield(_) | ast::Expr::YieldFrom(_) => ("yield", ""),
        ast::Expr::FormattedValue(_) | ast::Expr::JoinedStr(_) => {
            ("an f-string", " (use pl.format or concat_str)")
        }
        ast::Expr::Subscript(_) => ("subscripting with [...]", ""),
        ast::Expr::Starred(_) => ("*unpacking", ""),
        ast::Expr::Slice(_) => ("a slice", ""),
        // The walk handles every other kind itself; this arm only keeps the match total.
        _ => ("this syntax", ""),
    };
    forbidden(what, hint, span)
}

fn constant(c: &mut Constant, span: Span) -> Result<Const> {
    match c {
        Constant::None => Ok(Const::None),
        Constant::Bool(b) => Ok(Const::Bool(*b)),
        Constant::Str(s) => {
            if s.len() > MAX_STR_BYTES {
                return Err(err(
                    ErrorCode::LimitExceeded,
                    format!("string literal longer than {MAX_STR_BYTES} bytes"),
                    span,
                ));
            }
            Ok(Const::Str(std::borrow::Cow::Owned(std::mem::take(s))))
        }
        Constant::Int(i) => i128::try_from(&*i).map(Const::Int).map_err(|_| {
            err(
                ErrorCode::LimitExceeded,
                "integer literal is out of the supported range (128-bit)",
                span,
            )
        }),
        Constant::Float(f) => Ok(Const::Float(*f)),
        Constant::Bytes(_) => Err(forbidden("a bytes literal", "", span)),
        Constant::Complex { .. } => Err(forbidden("a complex number", "", span)),
        Constant::Ellipsis => Err(forbidden("'...'", "", span)),
        Constant::Tuple(_) => Err(forbidden("a constant tuple", "", span)),
    }
}

fn name(id: &str, span: Span) -> Result<Val> {
    if id == "pl" {
        return Ok(Val::Pl);
    }
    if !id.is_ascii() {
        return Err(err(
            ErrorCode::NonAsciiIdentifier,
            format!("name '{id}' has non-ASCII characters"),
            span,
        ));
    }
    Err(err(
        ErrorCode::ForbiddenName,
        format!(
            "name '{id}' is not available: expressions may only use pl (with True, False, None)"
        ),
        span,
    ))
}

/// The span of an attribute's name: it ends where the attribute node ends.
fn attr_span(name: &str, span: Span) -> Span {
    let len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    (span.1.saturating_sub(len).max(span.0), span.1)
}

/// What an attribute resolves to: a value, or a method with its receiver.
enum Resolved {
    Val(Val),
    Method(ExprId, &'static Spec, Table),
}

/// Resolves `recv.name` as a value (the name is already checked).
fn attribute(recv: Arg, name: &str, span: Span, x: &mut Exprs) -> Result<Val> {
    Ok(match resolve(recv, name, span, false, x)? {
        Resolved::Val(v) => v,
        Resolved::Method(e, spec, table) => Val::Method(e, spec, table),
    })
}

/// Resolves `recv.name` (the name is already checked); `callee` says it is called right away.
fn resolve(recv: Arg, name: &str, span: Span, callee: bool, x: &mut Exprs) -> Result<Resolved> {
    let nspan = attr_span(name, span);
    match recv.val {
        Val::Pl => {
            // Functions first: they are far more common than data types (names are disjoint).
            if let Some(spec) = lookup(Table::Functions, name) {
                return Ok(Resolved::Val(Val::Func(spec, Table::Functions)));
            }
            let Some(spec) = lookup(Table::DTypes, name) else {
                return Err(unsupported(Table::Functions, name, nspan));
            };
            if callee {
                return Ok(Resolved::Val(Val::Func(spec, Table::DTypes)));
            }
            Bound::bare(spec, Table::DTypes, span)?
                .build(x)
                .map(Resolved::Val)
        }
        Val::When(chain) => {
            let step = match name {
                "then" if chain.pending.is_some() => Some(WhenStep::Then),
                "when" if chain.pending.is_none() => Some(WhenStep::When),
                "otherwise" if chain.pending.is_none() => Some(WhenStep::Otherwise),
                _ => None,
            };
            if let Some(step) = step {
                return Ok(Resolved::Val(Val::WhenMethod(chain, step)));
            }
            if chain.pending.is_some() {
                return Err(err(
                    ErrorCode::UnsupportedMethod,
                    format!("pl.when(...).{name}: a when must be followed by .then(...)"),
                    nspan,
                ));
            }
            let expr = chain.finish(polars::prelude::lit(polars::prelude::NULL), x);
            expr_attribute(x.put(expr), name, nspan)
        }
        Val::Expr(expr) => expr_attribute(expr, name, nspan),
        Val::Namespace(expr, table) => match lookup(table, name) {
            Some(spec) => Ok(Resolved::Method(expr, spec, table)),
            None => Err(unsupported(table, name, nspan)),
        },
        other => Err(err(
            ErrorCode::UnsupportedMethod,
            format!(
                "{} has no supported attribute '{name}' (wrap constants in pl.lit(...))",
                other.describe()
            ),
            nspan,
        )),
    }
}

fn expr_attribute(expr: ExprId, name: &str, nspan: Span) -> Result<Resolved> {
    if let Some(table) = Table::namespace(name) {
        return Ok(Resolved::Val(Val::Namespace(expr, table)));
    }
    match lookup(Table::Methods, name) {
        Some(spec) => Ok(Resolved::Method(expr, spec, Table::Methods)),
        None => Err(unsupported(Table::Methods, name, nspan)),
    }
}
