//! Dropping a parsed tree without recursion. rustpython's AST drops recursively, so a
//! 60 KiB chain like `~~~~...x` or `x+0+0+...` could exhaust a small thread stack on drop;
//! this moves children onto a heap stack and drops nodes one at a time.

use rustpython_parser::ast::{self, Constant, Expr};

fn placeholder() -> Expr {
    Expr::Constant(ast::ExprConstant {
        range: Default::default(),
        value: Constant::None,
        kind: None,
    })
}

fn take(b: &mut Box<Expr>, out: &mut Vec<Expr>) {
    out.push(std::mem::replace(b.as_mut(), placeholder()));
}

fn take_opt(b: &mut Option<Box<Expr>>, out: &mut Vec<Expr>) {
    if let Some(b) = b.take() {
        out.push(*b);
    }
}

fn take_args(a: &mut ast::Arguments, out: &mut Vec<Expr>) {
    for group in [&mut a.posonlyargs, &mut a.args, &mut a.kwonlyargs] {
        for arg in group.drain(..) {
            if let Some(d) = arg.default {
                out.push(*d);
            }
            if let Some(an) = arg.def.annotation {
                out.push(*an);
            }
        }
    }
    for arg in [a.vararg.take(), a.kwarg.take()].into_iter().flatten() {
        if let Some(an) = arg.annotation {
            out.push(*an);
        }
    }
}

fn take_gens(gens: &mut Vec<ast::Comprehension>, out: &mut Vec<Expr>) {
    for g in gens.drain(..) {
        out.push(g.target);
        out.push(g.iter);
        out.extend(g.ifs);
    }
}

/// Drops `root` iteratively.
pub(crate) fn dismantle(root: Expr) {
    let mut stack = vec![root];
    while let Some(mut e) = stack.pop() {
        let out = &mut stack;
        match &mut e {
            Expr::BoolOp(x) => out.append(&mut x.values),
            Expr::NamedExpr(x) => {
                take(&mut x.target, out);
                take(&mut x.value, out);
            }
            Expr::BinOp(x) => {
                take(&mut x.left, out);
                take(&mut x.right, out);
            }
            Expr::UnaryOp(x) => take(&mut x.operand, out),
            Expr::Lambda(x) => {
                take_args(&mut x.args, out);
                take(&mut x.body, out);
            }
            Expr::IfExp(x) => {
                take(&mut x.test, out);
                take(&mut x.body, out);
                take(&mut x.orelse, out);
            }
            Expr::Dict(x) => {
                out.extend(x.keys.drain(..).flatten());
                out.append(&mut x.values);
            }
            Expr::Set(x) => out.append(&mut x.elts),
            Expr::ListComp(x) => {
                take(&mut x.elt, out);
                take_gens(&mut x.generators, out);
            }
            Expr::SetComp(x) => {
                take(&mut x.elt, out);
                take_gens(&mut x.generators, out);
            }
            Expr::DictComp(x) => {
                take(&mut x.key, out);
                take(&mut x.value, out);
                take_gens(&mut x.generators, out);
            }
            Expr::GeneratorExp(x) => {
                take(&mut x.elt, out);
                take_gens(&mut x.generators, out);
            }
            Expr::Await(x) => take(&mut x.value, out),
            Expr::Yield(x) => take_opt(&mut x.value, out),
            Expr::YieldFrom(x) => take(&mut x.value, out),
            Expr::Compare(x) => {
                take(&mut x.left, out);
                out.append(&mut x.comparators);
            }
            Expr::Call(x) => {
                take(&mut x.func, out);
                out.append(&mut x.args);
                out.extend(x.keywords.drain(..).map(|k| k.value));
            }
            Expr::FormattedValue(x) => {
                take(&mut x.value, out);
                take_opt(&mut x.format_spec, out);
            }
            Expr::JoinedStr(x) => out.append(&mut x.values),
            Expr::Attribute(x) => take(&mut x.value, out),
            Expr::Subscript(x) => {
                take(&mut x.value, out);
                take(&mut x.slice, out);
            }
            Expr::Starred(x) => take(&mut x.value, out),
            Expr::List(x) => out.append(&mut x.elts),
            Expr::Tuple(x) => out.append(&mut x.elts),
            Expr::Slice(x) => {
                take_opt(&mut x.lower, out);
                take_opt(&mut x.upper, out);
                take_opt(&mut x.step, out);
            }
            Expr::Constant(_) | Expr::Name(_) => {}
        }
        drop(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_trees_drop_on_a_small_stack() {
        // 60k nested unary operators and a 30k-term sum, dropped on a 256 KiB stack.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                for src in [
                    "~".repeat(60_000) + "x",
                    "x".to_string() + &"+0".repeat(30_000),
                ] {
                    let tree = <Expr as rustpython_parser::Parse>::parse(&src, "<t>");
                    // The parser itself must not recurse either.
                    let tree = tree.expect("parses");
                    dismantle(tree);
                }
            })
            .expect("spawn");
        handle.join().expect("no stack overflow");
    }
}
