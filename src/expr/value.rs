//! Python constants and constant folding with Python's semantics, bounded.
//! Folding never allocates more than the limits allow and never panics: `9**9**9`,
//! `"x" * 10**9` and `1 / 0` become rejections before any work is done.

use std::borrow::Cow;

use super::error::{ErrorCode, ExprError, Result, Span};
use super::limits::MAX_STR_BYTES;

/// A folded Python constant. Integers are kept in `i128` (Polars' widest literal, as py-polars);
/// larger Python ints are rejected as `limit_exceeded`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Const {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Borrowed for defaults from the registry, owned for source literals.
    Str(Cow<'static, str>),
}

impl Const {
    /// Python's type name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Const::None => "None",
            Const::Bool(_) => "bool",
            Const::Int(_) => "int",
            Const::Float(_) => "float",
            Const::Str(_) => "str",
        }
    }

    /// The numeric view Python uses for arithmetic (`bool` is an `int`).
    fn num(&self) -> Option<Num> {
        match self {
            Const::Bool(b) => Some(Num::I(i128::from(*b))),
            Const::Int(i) => Some(Num::I(*i)),
            Const::Float(f) => Some(Num::F(*f)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            // Python converts int to float exactly where it can, rounding otherwise: `as` does that.
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

/// Binary arithmetic and bitwise operators that fold on constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    TrueDiv,
    FloorDiv,
    Mod,
    Pow,
    BitAnd,
    BitOr,
    BitXor,
    LShift,
    RShift,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::TrueDiv => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::LShift => "<<",
            BinOp::RShift => ">>",
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtE,
    Gt,
    GtE,
}

impl CmpOp {
    /// The operator with its operands swapped (`3 < x` is `x > 3`), as Python's reflection does.
    pub(crate) fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::NotEq => CmpOp::NotEq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::LtE => CmpOp::GtE,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::GtE => CmpOp::LtE,
        }
    }
}

fn overflow(span: Span, what: &str) -> ExprError {
    ExprError::new(
        ErrorCode::LimitExceeded,
        format!("constant {what} is out of the supported integer range (128-bit)"),
        span,
    )
}

fn type_error(op: &str, a: &Const, b: &Const, span: Span) -> ExprError {
    ExprError::new(
        ErrorCode::ConstantError,
        format!(
            "unsupported operand types for {op}: '{}' and '{}'",
            a.type_name(),
            b.type_name()
        ),
        span,
    )
}

fn zero_div(span: Span) -> ExprError {
    ExprError::new(
        ErrorCode::ConstantError,
        "division by zero in a constant",
        span,
    )
}

fn check_str_len(len: usize, span: Span) -> Result<()> {
    if len > MAX_STR_BYTES {
        return Err(ExprError::new(
            ErrorCode::LimitExceeded,
            format!("string constant would be {len} bytes; the limit is {MAX_STR_BYTES}"),
            span,
        ));
    }
    Ok(())
}

/// Python's `divmod` for floats (Objects/floatobject.c `float_divmod`).
fn float_divmod(a: f64, b: f64) -> (f64, f64) {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m += b;
            div -= 1.0;
        }
    } else {
        m = 0.0_f64.copysign(b);
    }
    let floordiv = if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 { f + 1.0 } else { f }
    } else {
        0.0_f64.copysign(a / b)
    };
    (floordiv, m)
}

/// Folds `a <op> b` on two constants exactly as CPython would, within the limits.
pub(crate) fn fold_binop(op: BinOp, a: &Const, b: &Const, span: Span) -> Result<Const> {
    // str + str, str * int, int * str: the only non-numeric folds Python allows here.
    match (op, a, b) {
        (BinOp::Add, Const::Str(x), Const::Str(y)) => {
            check_str_len(x.len() + y.len(), span)?;
            return Ok(Const::Str(Cow::Owned(format!("{x}{y}"))));
        }
        (BinOp::Mul, Const::Str(s), n) | (BinOp::Mul, n, Const::Str(s))
            if matches!(n, Const::Int(_) | Const::Bool(_)) =>
        {
            let times = match n.num() {
                Some(Num::I(t)) => t.max(0),
                _ => 0,
            };
            let len = usize::try_from(times)
                .ok()
                .and_then(|t| s.len().checked_mul(t))
                .unwrap_or(usize::MAX);
            check_str_len(len, span)?;
            return Ok(Const::Str(Cow::Owned(s.repeat(times as usize))));
        }
        (BinOp::Mod, Const::Str(_), _) => {
            return Err(ExprError::new(
                ErrorCode::ForbiddenNode,
                "%-formatting of strings is not supported",
                span,
            ));
        }
        _ => {}
    }
    let (Some(x), Some(y)) = (a.num(), b.num()) else {
        return Err(type_error(op.symbol(), a, b, span));
    };
    let both_bool = matches!((a, b), (Const::Bool(_), Const::Bool(_)));
    match (x, y) {
        (Num::I(i), Num::I(j)) => fold_int(op, i, j, both_bool, span),
        _ => {
            let (f, g) = (x.f(), y.f());
            match op {
                BinOp::Add => Ok(Const::Float(f + g)),
                BinOp::Sub => Ok(Const::Float(f - g)),
                BinOp::Mul => Ok(Const::Float(f * g)),
                BinOp::TrueDiv => {
                    if g == 0.0 {
                        return Err(zero_div(span));
                    }
                    Ok(Const::Float(f / g))
                }
                BinOp::FloorDiv | BinOp::Mod => {
                    if g == 0.0 {
                        return Err(zero_div(span));
                    }
                    let (d, m) = float_divmod(f, g);
                    Ok(Const::Float(if op == BinOp::Mod { m } else { d }))
                }
                BinOp::Pow => fold_float_pow(f, g, span),
                _ => Err(type_error(op.symbol(), a, b, span)),
            }
        }
    }
}

fn fold_float_pow(f: f64, g: f64, span: Span) -> Result<Const> {
    if f == 0.0 && g < 0.0 {
        return Err(ExprError::new(
            ErrorCode::ConstantError,
            "0.0 cannot be raised to a negative power",
            span,
        ));
    }
    if f < 0.0 && g.fract() != 0.0 && g.is_finite() {
        return Err(ExprError::new(
            ErrorCode::ConstantError,
            "a negative number raised to a fractional power is complex",
            span,
        ));
    }
    let r = f.powf(g);
    if r.is_infinite() && f.is_finite() && g.is_finite() {
        return Err(ExprError::new(
            ErrorCode::LimitExceeded,
            "constant power overflows a float",
            span,
        ));
    }
    Ok(Const::Float(r))
}

fn fold_int(op: BinOp, i: i128, j: i128, both_bool: bool, span: Span) -> Result<Const> {
    let int = |v: Option<i128>, what: &str| v.map(Const::Int).ok_or_else(|| overflow(span, what));
    match op {
        BinOp::Add => int(i.checked_add(j), "sum"),
        BinOp::Sub => int(i.checked_sub(j), "difference"),
        BinOp::Mul => int(i.checked_mul(j), "product"),
        BinOp::TrueDiv => {
            if j == 0 {
                return Err(zero_div(span));
            }
            Ok(Const::Float(i as f64 / j as f64))
        }
        BinOp::FloorDiv | BinOp::Mod => {
            if j == 0 {
                return Err(zero_div(span));
            }
            // Python floors; Rust truncates. i128::MIN // -1 overflows.
            let q = i.checked_div(j).ok_or_else(|| overflow(span, "quotient"))?;
            let r = i - q * j;
            let (q, r) = if r != 0 && ((r < 0) != (j < 0)) {
                (q - 1, r + j)
            } else {
                (q, r)
            };
            Ok(Const::Int(if op == BinOp::Mod { r } else { q }))
        }
        BinOp::Pow => {
            if j < 0 {
                return fold_float_pow(i as f64, j as f64, span);
            }
            let e = u32::try_from(j).map_err(|_| overflow(span, "power"))?;
            int(i.checked_pow(e), "power")
        }
        BinOp::BitAnd if both_bool => Ok(Const::Bool(i & j != 0)),
        BinOp::BitOr if both_bool => Ok(Const::Bool((i | j) != 0)),
        BinOp::BitXor if both_bool => Ok(Const::Bool((i ^ j) != 0)),
        BinOp::BitAnd => Ok(Const::Int(i & j)),
        BinOp::BitOr => Ok(Const::Int(i | j)),
        BinOp::BitXor => Ok(Const::Int(i ^ j)),
        BinOp::LShift | BinOp::RShift => {
            if j < 0 {
                return Err(ExprError::new(
                    ErrorCode::ConstantError,
                    "negative shift count",
                    span,
                ));
            }
            if op == BinOp::RShift {
                return Ok(Const::Int(if j >= 128 {
                    if i < 0 { -1 } else { 0 }
                } else {
                    i >> j
                }));
            }
            let shifted = u32::try_from(j)
                .ok()
                .filter(|s| *s < 127)
                .and_then(|s| i.checked_mul(1_i128 << s));
            int(shifted, "shift")
        }
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Pos,
    Invert,
    Not,
}

/// Folds a unary operator on a constant as CPython would.
pub(crate) fn fold_unary(op: UnOp, c: &Const, span: Span) -> Result<Const> {
    let bad = || {
        ExprError::new(
            ErrorCode::ConstantError,
            format!("bad operand type for unary operator: '{}'", c.type_name()),
            span,
        )
    };
    match op {
        UnOp::Not => Ok(Const::Bool(!truthy(c))),
        UnOp::Neg => match c.num().ok_or_else(bad)? {
            Num::I(i) => i
                .checked_neg()
                .map(Const::Int)
                .ok_or_else(|| overflow(span, "negation")),
            Num::F(f) => Ok(Const::Float(-f)),
        },
        UnOp::Pos => match c.num().ok_or_else(bad)? {
            Num::I(i) => Ok(Const::Int(i)),
            Num::F(f) => Ok(Const::Float(f)),
        },
        UnOp::Invert => match c.num().ok_or_else(bad)? {
            Num::I(i) => Ok(Const::Int(!i)),
            Num::F(_) => Err(bad()),
        },
    }
}

fn truthy(c: &Const) -> bool {
    match c {
        Const::None => false,
        Const::Bool(b) => *b,
        Const::Int(i) => *i != 0,
        Const::Float(f) => *f != 0.0,
        Const::Str(s) => !s.is_empty(),
    }
}

/// Folds a comparison between constants as CPython would.
pub(crate) fn fold_compare(op: CmpOp, a: &Const, b: &Const, span: Span) -> Result<Const> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Const::Str(x), Const::Str(y)) => Some(x.cmp(y)),
        _ => match (a.num(), b.num()) {
            (Some(Num::I(i)), Some(Num::I(j))) => Some(i.cmp(&j)),
            (Some(x), Some(y)) => x.f().partial_cmp(&y.f()),
            _ => {
                // Mixed kinds: equality is defined (False), ordering is a TypeError.
                return match op {
                    CmpOp::Eq => Ok(Const::Bool(a == b)),
                    CmpOp::NotEq => Ok(Const::Bool(a != b)),
                    _ => Err(type_error("comparison", a, b, span)),
                };
            }
        },
    };
    let r = match (op, ord) {
        (CmpOp::Eq, o) => o == Some(Ordering::Equal),
        (CmpOp::NotEq, o) => o != Some(Ordering::Equal),
        (_, None) => false, // NaN compares false
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::LtE, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::GtE, Some(o)) => o != Ordering::Less,
    };
    Ok(Const::Bool(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Span = (0, 0);

    fn f(op: BinOp, a: Const, b: Const) -> Result<Const> {
        fold_binop(op, &a, &b, S)
    }

    #[test]
    fn python_floor_division_and_modulo() {
        assert_eq!(
            f(BinOp::FloorDiv, Const::Int(-7), Const::Int(2)),
            Ok(Const::Int(-4))
        );
        assert_eq!(
            f(BinOp::Mod, Const::Int(-7), Const::Int(2)),
            Ok(Const::Int(1))
        );
        assert_eq!(
            f(BinOp::Mod, Const::Int(7), Const::Int(-2)),
            Ok(Const::Int(-1))
        );
        assert_eq!(
            f(BinOp::FloorDiv, Const::Float(-7.5), Const::Float(2.0)),
            Ok(Const::Float(-4.0))
        );
        assert_eq!(
            f(BinOp::Mod, Const::Float(-7.5), Const::Float(2.0)),
            Ok(Const::Float(0.5))
        );
        assert_eq!(
            f(BinOp::TrueDiv, Const::Int(7), Const::Int(2)),
            Ok(Const::Float(3.5))
        );
    }

    #[test]
    fn huge_powers_and_repetitions_are_limits() {
        let e = f(BinOp::Pow, Const::Int(9), Const::Int(387_420_489)).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        let e = f(
            BinOp::Mul,
            Const::Str("x".into()),
            Const::Int(1_000_000_000),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert_eq!(
            f(BinOp::Pow, Const::Int(10), Const::Int(2)),
            Ok(Const::Int(100))
        );
        assert_eq!(
            f(BinOp::Pow, Const::Int(2), Const::Int(-1)),
            Ok(Const::Float(0.5))
        );
        assert_eq!(
            f(BinOp::Mul, Const::Str("ab".into()), Const::Int(3)),
            Ok(Const::Str("ababab".into()))
        );
        assert_eq!(
            f(BinOp::Mul, Const::Int(-1), Const::Str("ab".into())),
            Ok(Const::Str(Cow::Borrowed("")))
        );
    }

    #[test]
    fn errors_python_would_raise() {
        assert_eq!(
            f(BinOp::TrueDiv, Const::Int(1), Const::Int(0))
                .unwrap_err()
                .code,
            ErrorCode::ConstantError
        );
        assert_eq!(
            f(BinOp::Add, Const::Str("a".into()), Const::Int(1))
                .unwrap_err()
                .code,
            ErrorCode::ConstantError
        );
        assert_eq!(
            f(BinOp::FloorDiv, Const::Int(i128::MIN), Const::Int(-1))
                .unwrap_err()
                .code,
            ErrorCode::LimitExceeded
        );
    }

    #[test]
    fn bools_are_ints() {
        assert_eq!(
            f(BinOp::Add, Const::Bool(true), Const::Int(1)),
            Ok(Const::Int(2))
        );
        assert_eq!(
            f(BinOp::BitAnd, Const::Bool(true), Const::Bool(false)),
            Ok(Const::Bool(false))
        );
        assert_eq!(
            fold_unary(UnOp::Invert, &Const::Bool(true), S),
            Ok(Const::Int(-2))
        );
        assert_eq!(
            fold_unary(UnOp::Not, &Const::Int(0), S),
            Ok(Const::Bool(true))
        );
    }

    #[test]
    fn comparisons() {
        assert_eq!(
            fold_compare(CmpOp::Lt, &Const::Int(1), &Const::Float(1.5), S),
            Ok(Const::Bool(true))
        );
        assert_eq!(
            fold_compare(CmpOp::Eq, &Const::Int(1), &Const::Str("1".into()), S),
            Ok(Const::Bool(false))
        );
        assert!(fold_compare(CmpOp::Lt, &Const::Int(1), &Const::Str("1".into()), S).is_err());
        assert_eq!(
            fold_compare(
                CmpOp::Eq,
                &Const::Float(f64::NAN),
                &Const::Float(f64::NAN),
                S
            ),
            Ok(Const::Bool(false))
        );
    }
}
