//! `Expr.replace` and `Expr.replace_strict`: how py-polars turns their `old`/`new` arguments
//! (values, lists, a mapping) into what the Rust engine takes. Decides nothing about what is
//! allowed beyond the arguments' shapes.

use polars::prelude::{Expr, lit};

use super::super::args::Call;
use super::super::error::Result;
use super::super::val::{Arg, Built, StrAs, Val, seq_literal};
use super::super::value::Const;
use super::common::list_scalar;

/// `replace(old, new)` / `replace({old: new})`, as py-polars builds them: a mapping becomes two
/// list scalars; separate lists become Series literals for `replace` and list scalars for
/// `replace_strict`; a `str` is a literal. `default=None` is a real (null) default.
pub(super) fn replace(c: &mut Call, strict: bool) -> Result<Built> {
    let (old, new) = match std::mem::replace(&mut c.args[0].val, Val::Const(Const::None)) {
        Val::Dict(pairs) => {
            if c.given(1) {
                return Err(c.bad(1, "'new' cannot be given with a mapping"));
            }
            let span = c.span(0);
            let (keys, values): (Vec<Arg>, Vec<Arg>) = pairs.into_iter().unzip();
            let keys = seq_literal(&Arg {
                val: Val::Seq(keys),
                span,
            })?;
            let values = seq_literal(&Arg {
                val: Val::Seq(values),
                span,
            })?;
            (list_scalar(keys), list_scalar(values))
        }
        old => {
            if !c.given(1) {
                return Err(c.bad(1, "'new' is required unless 'old' is a mapping"));
            }
            let span = c.span(0);
            let old = side(c, Arg { val: old, span }, strict)?;
            let new_arg = std::mem::replace(&mut c.args[1].val, Val::Const(Const::None));
            let new = side(
                c,
                Arg {
                    val: new_arg,
                    span: c.span(1),
                },
                strict,
            )?;
            (old, new)
        }
    };
    let recv = c.recv();
    if !strict {
        return Ok(Built::Expr(recv.replace(old, new)));
    }
    let default = if c.given(2) { Some(c.expr(2)?) } else { None };
    let dtype = (!c.is_none(3)).then(|| c.dtype(3));
    Ok(Built::Expr(recv.replace_strict(old, new, default, dtype)))
}

fn side(c: &mut Call, arg: Arg, strict: bool) -> Result<Expr> {
    if matches!(arg.val, Val::Seq(_)) {
        let s = seq_literal(&arg)?;
        return Ok(if strict { list_scalar(s) } else { lit(s) });
    }
    c.expr_of(arg, StrAs::Literal)
}
