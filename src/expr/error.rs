//! Expression rejections as values: a stable code, a message a user understands, a byte span.
//! Never carries data values or anything from the process environment.

use std::fmt;

/// Stable machine-readable reason for rejecting an expression.
///
/// The string form (see [`ErrorCode::as_str`]) is a contract: the Hub, the CLI's JSONL
/// answers and tests match on it. Add codes; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The text is not a single Python expression (includes empty input and statements).
    Syntax,
    /// An AST node kind outside the allowlist (lambda, comprehension, subscript, ...).
    ForbiddenNode,
    /// A bare name other than `pl` (builtins, modules, variables).
    ForbiddenName,
    /// An attribute or keyword that starts and ends with a double underscore.
    DunderAttribute,
    /// An identifier with non-ASCII characters (Python would NFKC-fold it into another name).
    NonAsciiIdentifier,
    /// `and` / `or` / `not` on expressions: Python would call `bool()` on an expression.
    BooleanOperator,
    /// `a < b < c`: Python expands it into `and`.
    ChainedComparison,
    /// A function or method that is not in the registry.
    UnsupportedMethod,
    /// Wrong number, name or kind of arguments for a known function or method.
    BadArguments,
    /// A value of the wrong kind where an expression, data type or constant was expected.
    TypeMismatch,
    /// A size, depth, count or constant bound was exceeded.
    LimitExceeded,
    /// Constant arithmetic that Python itself would reject (division by zero, ...).
    ConstantError,
    /// The expression passed the checker but Polars rejected it against the data.
    Eval,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Syntax,
        ErrorCode::ForbiddenNode,
        ErrorCode::ForbiddenName,
        ErrorCode::DunderAttribute,
        ErrorCode::NonAsciiIdentifier,
        ErrorCode::BooleanOperator,
        ErrorCode::ChainedComparison,
        ErrorCode::UnsupportedMethod,
        ErrorCode::BadArguments,
        ErrorCode::TypeMismatch,
        ErrorCode::LimitExceeded,
        ErrorCode::ConstantError,
        ErrorCode::Eval,
    ];

    /// The stable string form of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Syntax => "syntax",
            ErrorCode::ForbiddenNode => "forbidden_node",
            ErrorCode::ForbiddenName => "forbidden_name",
            ErrorCode::DunderAttribute => "dunder_attribute",
            ErrorCode::NonAsciiIdentifier => "non_ascii_identifier",
            ErrorCode::BooleanOperator => "boolean_operator",
            ErrorCode::ChainedComparison => "chained_comparison",
            ErrorCode::UnsupportedMethod => "unsupported_method",
            ErrorCode::BadArguments => "bad_arguments",
            ErrorCode::TypeMismatch => "type_mismatch",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::ConstantError => "constant_error",
            ErrorCode::Eval => "eval_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Byte range `[start, end)` into the expression source.
pub(crate) type Span = (u32, u32);

/// Why an expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ExprError {
    /// Stable reason code.
    pub code: ErrorCode,
    /// Human-readable explanation, naming the offending construct.
    pub message: String,
    /// Byte span of the offending node in the source.
    pub span: Span,
}

impl ExprError {
    /// A new rejection.
    pub fn new(code: ErrorCode, message: impl Into<String>, span: Span) -> Self {
        ExprError {
            code,
            message: message.into(),
            span,
        }
    }

    /// The stable code string.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }
}

/// Shorthand used throughout the compiler.
pub(crate) type Result<T> = std::result::Result<T, ExprError>;
