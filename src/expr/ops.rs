//! Python operators on checked values, with py-polars' dunder semantics: which side becomes a
//! literal, whether a `str` operand is a literal or a column name, reflected operands, and
//! constant folding when both sides are constants.

use polars::prelude::{Expr, Operator, binary_expr};

use super::error::{ErrorCode, ExprError, Result, Span};
use super::exprs::Exprs;
use super::val::{Arg, StrAs, Val, take_expr, to_expr};
use super::value::{BinOp, CmpOp, UnOp, fold_binop, fold_compare, fold_unary};

fn operand_error(op: &str, arg: &Arg) -> ExprError {
    ExprError::new(
        ErrorCode::TypeMismatch,
        format!("operator {op} cannot be applied to {}", arg.val.describe()),
        arg.span,
    )
}

/// py-polars parses the other operand of `+` and comparisons with `str_as_lit=True`;
/// every other operator reads a `str` as a column name.
fn str_rule(op: BinOp) -> StrAs {
    match op {
        BinOp::Add => StrAs::Literal,
        _ => StrAs::Column,
    }
}

fn apply(op: BinOp, l: Expr, r: Expr) -> Expr {
    match op {
        BinOp::Add => binary_expr(l, Operator::Plus, r),
        BinOp::Sub => binary_expr(l, Operator::Minus, r),
        BinOp::Mul => binary_expr(l, Operator::Multiply, r),
        BinOp::TrueDiv => binary_expr(l, Operator::TrueDivide, r),
        BinOp::FloorDiv => binary_expr(l, Operator::FloorDivide, r),
        BinOp::Mod => binary_expr(l, Operator::Modulus, r),
        BinOp::Pow => l.pow(r),
        BinOp::BitAnd => l.and(r),
        BinOp::BitOr => l.or(r),
        BinOp::BitXor => l.xor(r),
        // Rejected before reaching here: polars expressions have no shift operators.
        BinOp::LShift | BinOp::RShift => l,
    }
}

/// `left <op> right`.
pub(crate) fn binary(
    op: BinOp,
    mut left: Arg,
    mut right: Arg,
    span: Span,
    x: &mut Exprs,
) -> Result<Val> {
    if let (Val::Const(a), Val::Const(b)) = (&left.val, &right.val) {
        return fold_binop(op, a, b, span).map(Val::Const);
    }
    let operand_ok = |a: &Arg| a.val.is_exprlike() || matches!(a.val, Val::Const(_));
    for side in [&left, &right] {
        if !operand_ok(side) {
            return Err(operand_error(op.symbol(), side));
        }
    }
    if matches!(op, BinOp::LShift | BinOp::RShift) {
        return Err(ExprError::new(
            ErrorCode::UnsupportedMethod,
            format!("operator {} is not supported on expressions", op.symbol()),
            span,
        ));
    }
    // Exactly one side may be a constant; Python dispatches to the expression's (reflected)
    // dunder, which parses the constant with that dunder's rule.
    let rule = str_rule(op);
    let l = take_expr(&mut left, rule, x)?;
    let r = take_expr(&mut right, rule, x)?;
    Ok(Val::Expr(x.put(apply(op, l, r))))
}

/// `left <cmp> right` (a single comparison; chains are rejected by the walker).
pub(crate) fn compare(op: CmpOp, left: Arg, right: Arg, span: Span, x: &mut Exprs) -> Result<Val> {
    if let (Val::Const(a), Val::Const(b)) = (&left.val, &right.val) {
        return fold_compare(op, a, b, span).map(Val::Const);
    }
    let operand_ok = |a: &Arg| a.val.is_exprlike() || matches!(a.val, Val::Const(_));
    for side in [&left, &right] {
        if !operand_ok(side) {
            return Err(operand_error("comparison", side));
        }
    }
    // `3 < pl.col("x")`: int.__lt__ gives NotImplemented, so Python calls Expr.__gt__(3).
    let (op, mut left, mut right) = if left.val.is_exprlike() {
        (op, left, right)
    } else {
        (op.swapped(), right, left)
    };
    let l = take_expr(&mut left, StrAs::Literal, x)?;
    let r = take_expr(&mut right, StrAs::Literal, x)?;
    Ok(Val::Expr(x.put(match op {
        CmpOp::Eq => l.eq(r),
        CmpOp::NotEq => l.neq(r),
        CmpOp::Lt => l.lt(r),
        CmpOp::LtE => l.lt_eq(r),
        CmpOp::Gt => l.gt(r),
        CmpOp::GtE => l.gt_eq(r),
    })))
}

/// A unary operator.
pub(crate) fn unary(op: UnOp, operand: Arg, span: Span, x: &mut Exprs) -> Result<Val> {
    if let Val::Const(c) = &operand.val {
        return fold_unary(op, c, span).map(Val::Const);
    }
    if !operand.val.is_exprlike() {
        return Err(operand_error("unary", &operand));
    }
    match op {
        UnOp::Not => Err(ExprError::new(
            ErrorCode::BooleanOperator,
            "'not' cannot be applied to an expression (Python would call bool() on it); use ~ \
             (or .not_()) instead",
            span,
        )),
        UnOp::Pos => Ok(operand.val),
        UnOp::Neg => {
            let e = -to_expr(operand, StrAs::Column, x)?;
            Ok(Val::Expr(x.put(e)))
        }
        UnOp::Invert => {
            let e = to_expr(operand, StrAs::Column, x)?.not();
            Ok(Val::Expr(x.put(e)))
        }
    }
}
