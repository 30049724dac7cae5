//! Owns the walk of relations: FROM items, joins, table functions, table
//! samples and JSON paths; must never let a table factor through
//! unlooked-at (the `TableFactor` match has no `_` arm).

use sqlparser::ast::{
    Join, JoinConstraint, JoinOperator, JsonPath, JsonPathElem, TableFactor, TableFunctionArgs,
    TableSample, TableSampleKind, TableVersion, TableWithJoins,
};

use super::{Outcome, Walker, unsupported};

impl Walker {
    // ----- relations -----------------------------------------------------

    pub(super) fn table_with_joins(&mut self, table: &TableWithJoins) -> Outcome {
        let TableWithJoins { relation, joins } = table;
        self.table_factor(relation)?;
        for join in joins {
            self.join(join)?;
        }
        Ok(())
    }

    fn join(&mut self, join: &Join) -> Outcome {
        let Join {
            relation,
            global: _,
            join_operator,
        } = join;
        self.table_factor(relation)?;
        match join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::StraightJoin(c) => self.join_constraint(c),
            JoinOperator::AsOf {
                match_condition,
                constraint,
            } => {
                self.expr(match_condition)?;
                self.join_constraint(constraint)
            }
            JoinOperator::CrossApply
            | JoinOperator::OuterApply
            | JoinOperator::ArrayJoin
            | JoinOperator::LeftArrayJoin
            | JoinOperator::InnerArrayJoin => Ok(()),
        }
    }

    fn join_constraint(&mut self, constraint: &JoinConstraint) -> Outcome {
        match constraint {
            JoinConstraint::On(e) => self.expr(e),
            JoinConstraint::Using(_)
            | JoinConstraint::UsingAlias(_, _)
            | JoinConstraint::Natural
            | JoinConstraint::None => Ok(()),
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Outcome {
        self.deeper(|w| w.table_factor_inner(factor))
    }

    fn table_factor_inner(&mut self, factor: &TableFactor) -> Outcome {
        match factor {
            TableFactor::Table {
                name,
                alias: _,
                args,
                with_hints,
                version,
                with_ordinality: _,
                partitions: _,
                json_path,
                sample,
                index_directives: _,
                inheritance: _,
            } => {
                if let Some(TableFunctionArgs { args, settings }) = args {
                    // `FROM pg_ls_dir('/etc')`: a table function call.
                    if settings.is_some() {
                        return unsupported("SETTINGS in a table function");
                    }
                    self.call(name, Some(args))?;
                    self.function_args(args)?;
                } else {
                    self.relation(name)?;
                }
                self.exprs(with_hints)?;
                if let Some(version) = version {
                    match version {
                        TableVersion::ForSystemTimeAsOf(e)
                        | TableVersion::TimestampAsOf(e)
                        | TableVersion::VersionAsOf(e)
                        | TableVersion::Function(e) => self.expr(e)?,
                        TableVersion::Changes { changes, at, end } => {
                            self.expr(changes)?;
                            self.expr(at)?;
                            self.opt_expr(end.as_ref())?;
                        }
                    }
                }
                if let Some(path) = json_path {
                    self.json_path(path)?;
                }
                self.sample(sample.as_ref())
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias: _,
                sample,
            } => {
                self.query(subquery)?;
                self.sample(sample.as_ref())
            }
            TableFactor::TableFunction { expr, alias: _ } => self.expr(expr),
            TableFactor::Function {
                lateral: _,
                name,
                args,
                with_ordinality: _,
                alias: _,
            } => {
                self.call(name, Some(args))?;
                self.function_args(args)
            }
            TableFactor::UNNEST {
                alias: _,
                array_exprs,
                with_offset: _,
                with_offset_alias: _,
                with_ordinality: _,
            } => self.exprs(array_exprs),
            TableFactor::JsonTable {
                json_expr,
                json_path: _,
                columns: _,
                alias: _,
            } => self.expr(json_expr),
            TableFactor::OpenJsonTable {
                json_expr,
                json_path: _,
                columns: _,
                alias: _,
            } => self.expr(json_expr),
            TableFactor::NestedJoin {
                table_with_joins,
                alias: _,
            } => self.table_with_joins(table_with_joins),
            TableFactor::XmlTable {
                namespaces,
                row_expression,
                passing,
                columns,
                alias: _,
            } => {
                for ns in namespaces {
                    self.expr(&ns.uri)?;
                }
                self.expr(row_expression)?;
                for arg in &passing.arguments {
                    self.expr(&arg.expr)?;
                }
                for column in columns {
                    match &column.option {
                        sqlparser::ast::XmlTableColumnOption::NamedInfo {
                            r#type: _,
                            path,
                            default,
                            nullable: _,
                        } => {
                            self.opt_expr(path.as_ref())?;
                            self.opt_expr(default.as_ref())?;
                        }
                        sqlparser::ast::XmlTableColumnOption::ForOrdinality => {}
                    }
                }
                Ok(())
            }
            TableFactor::Pivot { .. } => unsupported("PIVOT"),
            TableFactor::Unpivot { .. } | TableFactor::UnpivotExpr { .. } => unsupported("UNPIVOT"),
            TableFactor::MatchRecognize { .. } => unsupported("MATCH_RECOGNIZE"),
            TableFactor::SemanticView { .. } => unsupported("SEMANTIC_VIEW"),
        }
    }

    fn sample(&mut self, sample: Option<&TableSampleKind>) -> Outcome {
        let Some(TableSampleKind::BeforeTableAlias(s) | TableSampleKind::AfterTableAlias(s)) =
            sample
        else {
            return Ok(());
        };
        let TableSample {
            modifier: _,
            name: _,
            quantity,
            seed: _,
            bucket,
            offset,
        } = s.as_ref();
        if let Some(q) = quantity {
            self.expr(&q.value)?;
        }
        if let Some(b) = bucket {
            self.opt_expr(b.on.as_ref())?;
        }
        self.opt_expr(offset.as_ref())
    }

    pub(super) fn json_path(&mut self, path: &JsonPath) -> Outcome {
        for elem in &path.path {
            match elem {
                JsonPathElem::Dot { key: _, quoted: _ } => {}
                JsonPathElem::Bracket { key } | JsonPathElem::ColonBracket { key } => {
                    self.expr(key)?
                }
            }
        }
        Ok(())
    }
}
