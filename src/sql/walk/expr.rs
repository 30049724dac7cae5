//! Owns the walk of expressions, function calls and window specs; must
//! never let an expression through unlooked-at (the `Expr` match has no
//! `_` arm) and hands every call to `functions::check_call`.

use sqlparser::ast::{
    Array, BinaryOperator, CaseWhen, CeilFloorKind, DictionaryField, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments, HavingBound,
    InTarget, Interval, LambdaFunction, ListAggOnOverflow, Map, MapEntry, MemberOf, Subscript,
    WindowFrame, WindowFrameBound, WindowSpec, WindowType,
};

use super::{ErrorCode, Outcome, Walker, err, plain_name};

impl Walker {
    // ----- functions -----------------------------------------------------

    fn function(&mut self, function: &Function) -> Outcome {
        let Function {
            name,
            uses_odbc_syntax: _,
            parameters,
            args,
            within_group,
            filter,
            null_treatment: _,
            over,
        } = function;
        let list = match args {
            FunctionArguments::List(list) => Some(list.args.as_slice()),
            FunctionArguments::None | FunctionArguments::Subquery(_) => None,
        };
        self.call(name, list)?;
        self.function_arguments(parameters)?;
        self.function_arguments(args)?;
        self.order_by_exprs(within_group)?;
        if let Some(filter) = filter {
            self.expr(filter)?;
        }
        match over {
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec),
            Some(WindowType::NamedWindow(_)) | None => Ok(()),
        }
    }

    fn function_arguments(&mut self, args: &FunctionArguments) -> Outcome {
        match args {
            FunctionArguments::None => Ok(()),
            FunctionArguments::Subquery(query) => self.query(query),
            FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: _,
                args,
                clauses,
            }) => {
                self.function_args(args)?;
                for clause in clauses {
                    match clause {
                        FunctionArgumentClause::IgnoreOrRespectNulls(_)
                        | FunctionArgumentClause::Separator(_)
                        | FunctionArgumentClause::JsonNullClause(_)
                        | FunctionArgumentClause::JsonReturningClause(_) => {}
                        FunctionArgumentClause::Where(e)
                        | FunctionArgumentClause::Limit(e)
                        | FunctionArgumentClause::Having(HavingBound(_, e)) => self.expr(e)?,
                        FunctionArgumentClause::OrderBy(exprs) => self.order_by_exprs(exprs)?,
                        FunctionArgumentClause::OnOverflow(overflow) => match overflow {
                            ListAggOnOverflow::Error => {}
                            ListAggOnOverflow::Truncate {
                                filler,
                                with_count: _,
                            } => self.opt_expr(filler.as_deref())?,
                        },
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) fn function_args(&mut self, args: &[FunctionArg]) -> Outcome {
        for arg in args {
            let arg_expr = match arg {
                FunctionArg::Named {
                    name: _,
                    arg,
                    operator: _,
                } => arg,
                FunctionArg::ExprNamed {
                    name,
                    arg,
                    operator: _,
                } => {
                    self.expr(name)?;
                    arg
                }
                FunctionArg::Unnamed(arg) => arg,
            };
            match arg_expr {
                FunctionArgExpr::Expr(e) => self.expr(e)?,
                FunctionArgExpr::QualifiedWildcard(name) => {
                    plain_name(name)?;
                }
                FunctionArgExpr::Wildcard => {}
                FunctionArgExpr::WildcardWithOptions(options) => self.wildcard_options(options)?,
            }
        }
        Ok(())
    }

    pub(super) fn window_spec(&mut self, spec: &WindowSpec) -> Outcome {
        let WindowSpec {
            window_name: _,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        self.exprs(partition_by)?;
        self.order_by_exprs(order_by)?;
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound) {
                match bound {
                    WindowFrameBound::CurrentRow => {}
                    WindowFrameBound::Preceding(e) | WindowFrameBound::Following(e) => {
                        self.opt_expr(e.as_deref())?
                    }
                }
            }
        }
        Ok(())
    }

    // ----- expressions ---------------------------------------------------

    pub(super) fn expr(&mut self, e: &Expr) -> Outcome {
        self.deeper(|w| w.expr_inner(e))
    }

    fn expr_inner(&mut self, e: &Expr) -> Outcome {
        match e {
            // Left-deep operator chains (`a + b + c ...`, `x OR y OR ...`) are
            // built by the parser without recursion; walk them iteratively.
            Expr::BinaryOp { .. } => {
                let mut current = e;
                while let Expr::BinaryOp { left, op, right } = current {
                    if *op == BinaryOperator::Assignment {
                        return err(
                            ErrorCode::VariableAssignment,
                            format!("assignment {current} changes a session variable"),
                        );
                    }
                    self.expr(right)?;
                    current = left;
                }
                self.expr(current)
            }
            // Column references and user/system variable reads (`@x`,
            // `@@time_zone`) only read.
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Ok(()),
            Expr::Value(v) => self.value(v),
            Expr::TypedString(_) => Ok(()),
            Expr::Wildcard(_) => Ok(()),
            Expr::QualifiedWildcard(name, _) => plain_name(name).map(|_| ()),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.expr(root)?;
                for access in access_chain {
                    match access {
                        sqlparser::ast::AccessExpr::Dot(e) => self.expr(e)?,
                        sqlparser::ast::AccessExpr::Subscript(s) => self.subscript(s)?,
                    }
                }
                Ok(())
            }
            Expr::JsonAccess { value, path } => {
                self.expr(value)?;
                self.json_path(path)
            }
            Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x)
            | Expr::Nested(x)
            | Expr::OuterJoin(x)
            | Expr::Prior(x) => self.expr(x),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::IsJson {
                expr,
                kind: _,
                unique_keys: _,
                negated: _,
            }
            | Expr::IsNormalized {
                expr,
                form: _,
                negated: _,
            } => self.expr(expr),
            Expr::In {
                expr,
                target,
                negated: _,
                global: _,
            } => {
                self.expr(expr)?;
                match target {
                    InTarget::List(list) => self.exprs(list),
                    InTarget::Subquery(query) => self.query(query),
                    InTarget::Unnest(array) => self.expr(array),
                    InTarget::Table { name, args } => match args {
                        Some(args) => {
                            self.call(name, Some(args))?;
                            self.function_args(args)
                        }
                        None => self.relation(name),
                    },
                }
            }
            Expr::Between {
                expr,
                negated: _,
                low,
                high,
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::Like {
                negated: _,
                any: _,
                expr,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated: _,
                any: _,
                expr,
                pattern,
                escape_char,
            }
            | Expr::SimilarTo {
                negated: _,
                expr,
                pattern,
                escape_char,
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt_expr(escape_char.as_deref())
            }
            Expr::RLike {
                negated: _,
                expr,
                pattern,
                regexp: _,
            } => {
                self.expr(expr)?;
                self.expr(pattern)
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                is_some: _,
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                if *compare_op == BinaryOperator::Assignment {
                    return err(
                        ErrorCode::VariableAssignment,
                        "assignment operator := changes a session variable",
                    );
                }
                self.expr(left)?;
                self.expr(right)
            }
            Expr::UnaryOp { op: _, expr } => self.expr(expr),
            Expr::Convert {
                is_try: _,
                expr,
                data_type: _,
                charset: _,
                target_before_value: _,
                styles,
            } => {
                self.expr(expr)?;
                self.exprs(styles)
            }
            Expr::Cast {
                kind: _,
                expr,
                data_type: _,
                format: _,
            } => self.expr(expr),
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.expr(timestamp)?;
                self.expr(time_zone)
            }
            Expr::Extract {
                field: _,
                syntax: _,
                expr,
            } => self.expr(expr),
            Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                match field {
                    CeilFloorKind::DateTimeField(_) | CeilFloorKind::Scale(_) => {}
                }
                self.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                special: _,
                shorthand: _,
            } => {
                self.expr(expr)?;
                self.opt_expr(substring_from.as_deref())?;
                self.opt_expr(substring_for.as_deref())
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr,
                trim_characters,
            } => {
                self.expr(expr)?;
                self.opt_expr(trim_what.as_deref())?;
                self.exprs(trim_characters.iter().flatten())
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.expr(expr)?;
                self.expr(overlay_what)?;
                self.expr(overlay_from)?;
                self.opt_expr(overlay_for.as_deref())
            }
            Expr::Collate { expr, collation: _ } => self.expr(expr),
            Expr::Prefixed { prefix: _, value } => self.expr(value),
            Expr::Function(function) => self.function(function),
            Expr::Case {
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                self.opt_expr(operand.as_deref())?;
                for CaseWhen { condition, result } in conditions {
                    self.expr(condition)?;
                    self.expr(result)?;
                }
                self.opt_expr(else_result.as_deref())
            }
            Expr::Exists {
                subquery,
                negated: _,
            } => self.query(subquery),
            Expr::Subquery(query) => self.query(query),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.exprs(sets.iter().flatten())
            }
            Expr::Tuple(exprs) => self.exprs(exprs),
            Expr::Struct { values, fields: _ } => self.exprs(values),
            Expr::Named { expr, name: _ } => self.expr(expr),
            Expr::Dictionary(fields) => {
                for DictionaryField { key: _, value } in fields {
                    self.expr(value)?;
                }
                Ok(())
            }
            Expr::Map(Map { entries }) => {
                for MapEntry { key, value } in entries {
                    self.expr(key)?;
                    self.expr(value)?;
                }
                Ok(())
            }
            Expr::Array(Array { elem, named: _ }) => self.exprs(elem),
            Expr::Interval(Interval {
                value,
                leading_field: _,
                leading_precision: _,
                last_field: _,
                fractional_seconds_precision: _,
            }) => self.expr(value),
            Expr::MatchAgainst {
                columns: _,
                match_value: _,
                opt_search_modifier: _,
            } => Ok(()),
            Expr::Lambda(LambdaFunction {
                params: _,
                body,
                syntax: _,
            }) => self.expr(body),
            Expr::MemberOf(MemberOf { value, array }) => {
                self.expr(value)?;
                self.expr(array)
            }
        }
    }

    /// A literal, or a placeholder: `:name` names a run parameter (bound by the driver,
    /// never interpolated); positional forms (`?`, `$1`) have nothing to bind and are refused.
    fn value(&mut self, v: &sqlparser::ast::ValueWithSpan) -> Outcome {
        let sqlparser::ast::Value::Placeholder(p) = &v.value else {
            return Ok(());
        };
        if let Some(name) = p.strip_prefix(':') {
            self.names.placeholders.push((name.to_owned(), v.span));
            return Ok(());
        }
        if p.starts_with('?') || p.starts_with('$') {
            return err(
                ErrorCode::Placeholder,
                format!("placeholder {p} has no value; name a run parameter as :name"),
            );
        }
        // `@x` (a PostgreSQL prefix operator use, an SQLite variable) is kept as it was.
        Ok(())
    }

    fn subscript(&mut self, subscript: &Subscript) -> Outcome {
        match subscript {
            Subscript::Index { index } => self.expr(index),
            Subscript::Slice {
                lower_bound,
                upper_bound,
                stride,
            } => {
                self.opt_expr(lower_bound.as_ref())?;
                self.opt_expr(upper_bound.as_ref())?;
                self.opt_expr(stride.as_ref())
            }
        }
    }
}
