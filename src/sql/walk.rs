//! Owns the AST walk that decides whether one parsed statement is a
//! read-only query; must never look at SQL text (only the AST) and must never
//! let an AST node through without having looked at it.
//!
//! # Why a hand-written walk and not `sqlparser::ast::Visitor`
//!
//! The `visitor` feature is not used (it needs `sqlparser_derive`, and its
//! default methods silently recurse, so a missed override is a silent
//! bypass). Instead every enum the walk touches is matched **exhaustively,
//! without a `_` arm** (sqlparser's AST enums are not `#[non_exhaustive]`):
//! when a sqlparser upgrade adds a variant, this file stops compiling and the
//! new syntax must be judged explicitly. The only `_` arm is on `Statement`,
//! where anything but a query / plain EXPLAIN is rejected by default.
//! Struct fields are destructured with all fields named (no `..`) for the
//! same reason: a new field that may hold an expression is a compile error.
//!
//! Constructs of other dialects that sqlparser happens to accept (pipe
//! syntax, PIVOT, MATCH_RECOGNIZE, SETTINGS, ...) are rejected as
//! `unsupported` rather than vetted.
//!
//! Stack use: recursion is bounded by [`MAX_WALK_DEPTH`]; the two shapes the
//! parser builds without recursing (left-deep chains of binary operators and
//! of UNION/EXCEPT/INTERSECT) are walked iteratively along their left spine,
//! so long `a OR b OR ...` / `UNION ALL` lists do not count against it.

use sqlparser::ast::{
    Array, BinaryOperator, CaseWhen, CeilFloorKind, ConnectByKind, Cte, DictionaryField, Distinct,
    ExcludeSelectItem, Expr, Fetch, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, GroupByWithModifier, HavingBound,
    InTarget, Interpolate, InterpolateExpr, Interval, Join, JoinConstraint, JoinOperator, JsonPath,
    JsonPathElem, LambdaFunction, LateralView, LimitClause, ListAggOnOverflow, Map, MapEntry,
    MemberOf, NamedWindowDefinition, NamedWindowExpr, ObjectName, ObjectNamePart, Offset, OrderBy,
    OrderByExpr, OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, Subscript, TableFactor, TableFunctionArgs, TableSample, TableSampleKind,
    TableVersion, TableWithJoins, Top, TopQuantity, Values, WildcardAdditionalOptions, WindowFrame,
    WindowFrameBound, WindowSpec, WindowType, With,
};

use super::error::{ErrorCode, SqlError};
use super::functions;

/// Deepest recursion of the walk. The parser's own limit already caps
/// parenthesised / subquery nesting far below this; what remains are
/// postfix chains (`x::int::text...`, `x IS NULL IS NULL ...`) that no real
/// query nests hundreds deep.
pub(crate) const MAX_WALK_DEPTH: usize = 200;

type Outcome = Result<(), SqlError>;

fn err(code: ErrorCode, message: impl Into<String>) -> Outcome {
    Err(SqlError::new(code, message))
}

fn unsupported(what: &str) -> Outcome {
    err(
        ErrorCode::Unsupported,
        format!("{what} is not supported by the read-only guard"),
    )
}

/// Judges one top-level statement.
pub(crate) fn check_statement(stmt: &Statement) -> Outcome {
    let mut walker = Walker::default();
    match stmt {
        Statement::Query(query) => walker.query(query),
        Statement::Explain {
            describe_alias: _,
            analyze,
            verbose: _,
            query_plan: _,
            estimate: _,
            statement,
            format: _,
            options,
        } => {
            if *analyze {
                return err(
                    ErrorCode::ExplainAnalyze,
                    "EXPLAIN ANALYZE executes the statement",
                );
            }
            for option in options.iter().flatten() {
                let name = option.name.value.to_ascii_lowercase();
                match name.as_str() {
                    "analyze" | "analyse" => {
                        return err(
                            ErrorCode::ExplainAnalyze,
                            "EXPLAIN (ANALYZE) executes the statement",
                        );
                    }
                    // Plan-only options (PostgreSQL). BUFFERS/WAL/TIMING/
                    // SUMMARY/SERIALIZE/MEMORY only add detail; without
                    // ANALYZE nothing is executed.
                    "verbose" | "costs" | "settings" | "generic_plan" | "buffers" | "wal"
                    | "timing" | "summary" | "memory" | "serialize" | "format" => {}
                    _ => {
                        return err(
                            ErrorCode::Unsupported,
                            format!("EXPLAIN option {} is not supported", option.name.value),
                        );
                    }
                }
            }
            match statement.as_ref() {
                Statement::Query(query) => walker.query(query),
                other => err(
                    ErrorCode::NotReadOnly,
                    format!(
                        "EXPLAIN is only allowed for a read-only query, not {}",
                        statement_label(other)
                    ),
                ),
            }
        }
        other => err(
            ErrorCode::NotReadOnly,
            format!("{} is not a read-only query", statement_label(other)),
        ),
    }
}

/// A short label for a rejected statement: its leading keywords as rendered
/// by sqlparser (e.g. `INSERT`, `SET`, `COPY`, `START TRANSACTION`).
fn statement_label(stmt: &Statement) -> String {
    let text = stmt.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        // sqlparser renders keywords in upper case, identifiers as written.
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .take(2)
        .collect();
    if words.is_empty() {
        "this statement".to_owned()
    } else {
        format!("statement {}", words.join(" "))
    }
}

#[derive(Default)]
struct Walker {
    depth: usize,
    /// >0 while inside a CTE body: DML there is a data-modifying CTE.
    in_cte: usize,
}

impl Walker {
    /// Runs `f` one recursion level deeper, failing closed past the limit.
    fn deeper(&mut self, f: impl FnOnce(&mut Self) -> Outcome) -> Outcome {
        if self.depth >= MAX_WALK_DEPTH {
            return err(
                ErrorCode::TooDeep,
                format!("query nests deeper than {MAX_WALK_DEPTH} levels"),
            );
        }
        self.depth += 1;
        let outcome = f(self);
        self.depth -= 1;
        outcome
    }

    fn exprs<'a>(&mut self, exprs: impl IntoIterator<Item = &'a Expr>) -> Outcome {
        for e in exprs {
            self.expr(e)?;
        }
        Ok(())
    }

    fn opt_expr(&mut self, e: Option<&Expr>) -> Outcome {
        match e {
            Some(e) => self.expr(e),
            None => Ok(()),
        }
    }

    // ----- queries -------------------------------------------------------

    fn query(&mut self, q: &Query) -> Outcome {
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

    fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Outcome {
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
                    SetExpr::Table(_) => return Ok(()),
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

    fn wildcard_options(&mut self, options: &WildcardAdditionalOptions) -> Outcome {
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

    // ----- relations -----------------------------------------------------

    fn table_with_joins(&mut self, table: &TableWithJoins) -> Outcome {
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
                let last = plain_name(name)?;
                if let Some(TableFunctionArgs { args, settings }) = args {
                    // `FROM pg_ls_dir('/etc')`: a table function call.
                    if settings.is_some() {
                        return unsupported("SETTINGS in a table function");
                    }
                    functions::check_call(last, Some(args))?;
                    self.function_args(args)?;
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
                let last = plain_name(name)?;
                functions::check_call(last, Some(args))?;
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

    fn json_path(&mut self, path: &JsonPath) -> Outcome {
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
        let last = plain_name(name)?;
        let list = match args {
            FunctionArguments::List(list) => Some(list.args.as_slice()),
            FunctionArguments::None | FunctionArguments::Subquery(_) => None,
        };
        functions::check_call(last, list)?;
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

    fn function_args(&mut self, args: &[FunctionArg]) -> Outcome {
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

    fn window_spec(&mut self, spec: &WindowSpec) -> Outcome {
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

    fn expr(&mut self, e: &Expr) -> Outcome {
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
            Expr::Value(_) | Expr::TypedString(_) => Ok(()),
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
                    InTarget::Table { name, args } => {
                        let last = plain_name(name)?;
                        if let Some(args) = args {
                            functions::check_call(last, Some(args))?;
                            self.function_args(args)?;
                        }
                        Ok(())
                    }
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

/// The last identifier of a (possibly qualified) name. Name parts that are
/// themselves function calls (Snowflake `IDENTIFIER(...)`) are rejected.
fn plain_name(name: &ObjectName) -> Result<&str, SqlError> {
    let mut last = None;
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => last = Some(ident.value.as_str()),
            ObjectNamePart::Function(_) => {
                return Err(SqlError::new(
                    ErrorCode::Unsupported,
                    format!("computed name {name} is not supported by the read-only guard"),
                ));
            }
        }
    }
    last.ok_or_else(|| SqlError::new(ErrorCode::ParseError, "empty object name"))
}
