//! Owns the walk of queries: WITH, set operations, VALUES, SELECT and its
//! clauses, ORDER BY and LIMIT; must never let a clause through unlooked-at
//! (every struct is destructured with all fields named).

use sqlparser::ast::{
    ConnectByKind, Cte, Distinct, ExcludeSelectItem, Fetch, GroupByExpr, GroupByWithModifier,
    Interpolate, InterpolateExpr, LateralView, LimitClause, NamedWindowDefinition, NamedWindowExpr,
    Offset, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Top, TopQuantity, Values, WildcardAdditionalOptions,
    With,
};

use super::{ErrorCode, Outcome, Walker, err, plain_name, statement_label, unsupported};

impl Walker {
    // ----- queries -------------------------------------------------------

    pub(super) fn query(&mut self, q: &Query) -> Outcome {
        self.deeper(|w| w.query_inner(q))
    }

    fn query_inner(&mut self, q: &Query) -> Outcome {
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = q;
        if let Some(lock) = locks.first() {
            return err(
                ErrorCode::LockingClause,
                format!("locking clause {lock} takes row locks"),
            );
        }
        if for_clause.is_some() {
            return unsupported("FOR XML/JSON/BROWSE");
        }
        if settings.is_some() {
            return unsupported("a SETTINGS clause");
        }
        if format_clause.is_some() {
            return unsupported("a FORMAT clause");
        }
        if !pipe_operators.is_empty() {
            return unsupported("pipe syntax");
        }
        if let Some(With {
            with_token: _,
            recursive: _,
            cte_tables,
        }) = with
        {
            for cte in cte_tables {
                self.cte(cte)?;
            }
        }
        self.set_expr(body)?;
        if let Some(order_by) = order_by {
            self.order_by(order_by)?;
        }
        if let Some(limit) = limit_clause {
            self.limit_clause(limit)?;
        }
        if let Some(Fetch {
            with_ties: _,
            percent: _,
            quantity,
        }) = fetch
        {
            self.opt_expr(quantity.as_ref())?;
        }
        Ok(())
    }

    fn cte(&mut self, cte: &Cte) -> Outcome {
        let Cte {
            alias: _,
            query,
            from: _,
            materialized: _,
            closing_paren_token: _,
        } = cte;
        self.in_cte += 1;
        let outcome = self.query(query);
        self.in_cte -= 1;
        outcome
    }

    fn order_by(&mut self, order_by: &OrderBy) -> Outcome {
        let OrderBy { kind, interpolate } = order_by;
        match kind {
            OrderByKind::All(_) => {}
            OrderByKind::Expressions(exprs) => self.order_by_exprs(exprs)?,
        }
        if let Some(Interpolate { exprs }) = interpolate {
            for InterpolateExpr { column: _, expr } in exprs.iter().flatten() {
                self.opt_expr(expr.as_ref())?;
            }
        }
        Ok(())
    }

    pub(super) fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Outcome {
        for OrderByExpr {
            expr,
            options: _,
            with_fill,
        } in exprs
        {
            self.expr(expr)?;
            if let Some(fill) = with_fill {
                self.opt_expr(fill.from.as_ref())?;
                self.opt_expr(fill.to.as_ref())?;
                self.opt_expr(fill.step.as_ref())?;
            }
        }
        Ok(())
    }

    fn limit_clause(&mut self, limit: &LimitClause) -> Outcome {
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                self.opt_expr(limit.as_ref())?;
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
                self.exprs(limit_by)
            }
            LimitClause::OffsetCommaLimit { offset, limit } => {
                self.expr(offset)?;
                self.expr(limit)
            }
        }
    }

    fn set_expr(&mut self, body: &SetExpr) -> Outcome {
        self.deeper(|w| {
            // Left-deep UNION/EXCEPT/INTERSECT chains are walked iteratively.
            let mut current = body;
            loop {
                match current {
                    SetExpr::SetOperation {
                        left,
                        op: _,
                        set_quantifier: _,
                        right,
                    } => {
                        w.set_expr(right)?;
                        current = left;
                    }
                    SetExpr::Select(select) => return w.select(select),
                    SetExpr::Query(query) => return w.query(query),
                    SetExpr::Values(values) => return w.values(values),
                    // `TABLE t` reads a table; its locks live on the Query.
                    SetExpr::Table(table) => {
                        let sqlparser::ast::Table {
                            table_name,
                            schema_name,
                        } = table.as_ref();
                        let Some(table_name) = table_name else {
                            return Ok(());
                        };
                        let parts = schema_name
                            .iter()
                            .chain(std::iter::once(table_name))
                            .map(|i| sqlparser::ast::ObjectNamePart::Identifier(i.clone()))
                            .collect();
                        return w.relation(&sqlparser::ast::ObjectName(parts));
                    }
                    SetExpr::Insert(stmt)
                    | SetExpr::Update(stmt)
                    | SetExpr::Delete(stmt)
                    | SetExpr::Merge(stmt) => {
                        let label = statement_label(stmt);
                        return if w.in_cte > 0 {
                            err(
                                ErrorCode::DataModifyingCte,
                                format!("{label} inside WITH modifies data"),
                            )
                        } else {
                            err(ErrorCode::NotReadOnly, format!("{label} modifies data"))
                        };
                    }
                }
            }
        })
    }

    fn values(&mut self, values: &Values) -> Outcome {
        let Values {
            explicit_row: _,
            value_keyword: _,
            rows,
        } = values;
        for row in rows {
            self.exprs(&row.content)?;
        }
        Ok(())
    }

    fn select(&mut self, select: &Select) -> Outcome {
        let Select {
            select_token: _,
            // Optimizer hints (`/*+ ... */`) steer the planner only.
            optimizer_hints: _,
            distinct,
            // HIGH_PRIORITY, SQL_CALC_FOUND_ROWS, SQL_NO_CACHE, ...: harmless.
            select_modifiers: _,
            top,
            top_before_distinct: _,
            projection,
            exclude: _,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode: _,
            flavor: _,
        } = select;
        if let Some(into) = into {
            return err(
                ErrorCode::SelectInto,
                format!("{into} writes its result into a table or variables"),
            );
        }
        if let Some(Distinct::On(exprs)) = distinct {
            self.exprs(exprs)?;
        }
        if let Some(Top {
            with_ties: _,
            percent: _,
            quantity,
        }) = top
        {
            match quantity {
                Some(TopQuantity::Expr(e)) => self.expr(e)?,
                Some(TopQuantity::Constant(_)) | None => {}
            }
        }
        for item in projection {
            self.select_item(item)?;
        }
        for table in from {
            self.table_with_joins(table)?;
        }
        for LateralView {
            lateral_view,
            lateral_view_name: _,
            lateral_col_alias: _,
            outer: _,
        } in lateral_views
        {
            self.expr(lateral_view)?;
        }
        self.opt_expr(prewhere.as_ref())?;
        self.opt_expr(selection.as_ref())?;
        for kind in connect_by {
            match kind {
                ConnectByKind::ConnectBy {
                    connect_token: _,
                    nocycle: _,
                    relationships,
                } => self.exprs(relationships)?,
                ConnectByKind::StartWith {
                    start_token: _,
                    condition,
                } => self.expr(condition)?,
            }
        }
        let modifiers = match group_by {
            GroupByExpr::All(modifiers) => modifiers,
            GroupByExpr::Expressions(exprs, modifiers) => {
                self.exprs(exprs)?;
                modifiers
            }
        };
        for modifier in modifiers {
            match modifier {
                GroupByWithModifier::Rollup
                | GroupByWithModifier::Cube
                | GroupByWithModifier::Totals => {}
                GroupByWithModifier::GroupingSets(e) => self.expr(e)?,
            }
        }
        self.exprs(cluster_by)?;
        self.exprs(distribute_by)?;
        self.order_by_exprs(sort_by)?;
        self.opt_expr(having.as_ref())?;
        for NamedWindowDefinition(_, window) in named_window {
            match window {
                NamedWindowExpr::NamedWindow(_) => {}
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        self.opt_expr(qualify.as_ref())
    }

    fn select_item(&mut self, item: &SelectItem) -> Outcome {
        match item {
            SelectItem::UnnamedExpr(e)
            | SelectItem::ExprWithAlias { expr: e, alias: _ }
            | SelectItem::ExprWithAliases {
                expr: e,
                aliases: _,
            } => self.expr(e),
            SelectItem::QualifiedWildcard(kind, options) => {
                match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        plain_name(name)?;
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => self.expr(e)?,
                }
                self.wildcard_options(options)
            }
            SelectItem::Wildcard(options) => self.wildcard_options(options),
        }
    }

    pub(super) fn wildcard_options(&mut self, options: &WildcardAdditionalOptions) -> Outcome {
        let WildcardAdditionalOptions {
            wildcard_token: _,
            opt_ilike: _,
            opt_exclude,
            opt_except: _,
            opt_replace,
            opt_rename: _,
            opt_alias: _,
        } = options;
        match opt_exclude {
            Some(ExcludeSelectItem::Single(name)) => {
                plain_name(name)?;
            }
            Some(ExcludeSelectItem::Multiple(names)) => {
                for name in names {
                    plain_name(name)?;
                }
            }
            None => {}
        }
        if let Some(replace) = opt_replace {
            for element in &replace.items {
                self.expr(&element.expr)?;
            }
        }
        Ok(())
    }
}
