//! Each tool as a Polars lazy operation. The same builders serve schema prediction (over
//! empty frames of the predicted schemas) and execution (over the real plan), so a prediction
//! can never disagree with what runs. Builders trust validation: names were checked already.

use polars::prelude::*;

use super::model::{AggOp, ColumnType, Join, JoinHow, Keep, MissingColumns, Tool};

/// A built node: its main output and, for `filter`, the rows that did not pass.
#[derive(Clone)]
pub(crate) struct Built {
    pub(crate) main: LazyFrame,
    pub(crate) rejected: Option<LazyFrame>,
}

/// What validation compiled for a node, beyond its fields.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    /// Nothing beyond the fields.
    Plain,
    /// A guarded query.
    Sql(crate::sql::ReadOnlyQuery),
    /// The typed rows.
    Inline(DataFrame),
    /// One compiled expression per formula.
    Formula(Vec<Expr>),
    /// The compiled predicate.
    Filter(Expr),
}

/// One input of a node: its frame and its (known) schema.
pub(crate) struct Input {
    pub(crate) frame: LazyFrame,
    pub(crate) schema: SchemaRef,
}

/// Builds a non-source node over its inputs (sources are frames already).
pub(crate) fn build(
    tool: &Tool,
    compiled: &Compiled,
    mut inputs: Vec<Input>,
) -> PolarsResult<Built> {
    let single = |inputs: &mut Vec<Input>| -> PolarsResult<Input> {
        polars_ensure!(!inputs.is_empty(), ComputeError: "node has no input");
        Ok(inputs.swap_remove(0))
    };
    let main = match (tool, compiled) {
        (Tool::Formula(f), Compiled::Formula(exprs)) => {
            let mut lf = single(&mut inputs)?.frame;
            for (fc, e) in f.formulas.iter().zip(exprs) {
                lf = lf.with_column(e.clone().alias(fc.column.as_str()));
            }
            lf
        }
        (Tool::Filter(_), Compiled::Filter(e)) => {
            let lf = single(&mut inputs)?.frame;
            let rejected = lf.clone().filter(e.clone().fill_null(lit(false)).not());
            return Ok(Built {
                main: lf.filter(e.clone()),
                rejected: Some(rejected),
            });
        }
        (Tool::Select(s), _) => {
            let input = single(&mut inputs)?;
            let names: Vec<PlSmallStr> = match &s.columns {
                Some(cols) => cols.iter().map(|c| PlSmallStr::from_str(c)).collect(),
                None => input.schema.iter_names().cloned().collect(),
            };
            let exprs: Vec<Expr> = names
                .iter()
                .filter(|n| !s.drop.iter().any(|d| d.as_str() == n.as_str()))
                .map(|n| {
                    let mut e = col(n.clone());
                    if let Some(t) = s.cast.get(n.as_str()) {
                        let text = input.schema.get(n) == Some(&DataType::String);
                        e = if text && t.dtype().is_temporal() && *t != ColumnType::Duration {
                            // Text to dates and times is parsing (the format inferred from
                            // the values, strictly), not a cast; Polars deprecates the cast.
                            let options = StrptimeOptions {
                                strict: true,
                                ..StrptimeOptions::default()
                            };
                            e.str().strptime(t.dtype(), options, lit("raise"))
                        } else {
                            e.strict_cast(t.dtype())
                        };
                    }
                    if let Some(to) = s.rename.get(n.as_str()) {
                        e = e.alias(to.as_str());
                    }
                    e
                })
                .collect();
            input.frame.select(exprs)
        }
        (Tool::Sort(s), _) => {
            let lf = single(&mut inputs)?.frame;
            let by: Vec<Expr> = s.by.iter().map(|k| col(k.column.as_str())).collect();
            let options = SortMultipleOptions::default()
                .with_order_descending_multi(s.by.iter().map(|k| k.descending))
                .with_nulls_last_multi(s.by.iter().map(|k| k.nulls_last))
                .with_maintain_order(true);
            lf.sort_by_exprs(by, options)
        }
        (Tool::Join(j), _) => {
            polars_ensure!(inputs.len() == 2, ComputeError: "join needs two inputs");
            let right = inputs.swap_remove(1).frame;
            let left = inputs.swap_remove(0).frame;
            join(j, left, right)
        }
        (Tool::Union(u), _) => union(u.missing, inputs)?,
        (Tool::Summarize(s), _) => {
            let lf = single(&mut inputs)?.frame;
            let aggs: Vec<Expr> = s.aggregations.iter().map(aggregation).collect();
            if s.group_by.is_empty() {
                lf.select(aggs)
            } else {
                let keys: Vec<Expr> = s.group_by.iter().map(|c| col(c.as_str())).collect();
                lf.group_by_stable(keys).agg(aggs)
            }
        }
        (Tool::Unique(u), _) => {
            let lf = single(&mut inputs)?.frame;
            let subset = u
                .columns
                .as_ref()
                .map(|cols| cols.iter().map(|c| col(c.as_str())).collect());
            let keep = match u.keep {
                Keep::First => UniqueKeepStrategy::First,
                Keep::Last => UniqueKeepStrategy::Last,
                Keep::None => UniqueKeepStrategy::None,
            };
            lf.unique_stable_generic(subset, keep)
        }
        (Tool::Limit(l), _) => {
            let lf = single(&mut inputs)?.frame;
            let offset = i64::try_from(l.offset).unwrap_or(i64::MAX);
            let n = IdxSize::try_from(l.n).unwrap_or(IdxSize::MAX);
            lf.slice(offset, n)
        }
        (Tool::Sample(s), _) => {
            let lf = single(&mut inputs)?.frame;
            // Every column draws with the same seed over the same length, so they draw the
            // same row positions: rows stay whole (a test asserts it).
            let e = match (s.n, s.fraction) {
                (Some(n), _) => {
                    all()
                        .as_expr()
                        .sample_n(lit(n), s.with_replacement, Some(false), Some(s.seed))
                }
                (None, Some(f)) => all().as_expr().sample_frac(
                    lit(f),
                    s.with_replacement,
                    Some(false),
                    Some(s.seed),
                ),
                (None, None) => polars_bail!(ComputeError: "sample needs `n` or `fraction`"),
            };
            lf.select([e])
        }
        (Tool::Output(_), _) => single(&mut inputs)?.frame,
        (tool, _) => polars_bail!(ComputeError: "{} is not built from inputs", tool.name()),
    };
    Ok(Built {
        main,
        rejected: None,
    })
}

fn join(j: &Join, left: LazyFrame, right: LazyFrame) -> LazyFrame {
    let suffix = Some(PlSmallStr::from_str(&j.suffix));
    if j.how == JoinHow::Cross {
        return left.cross_join(right, suffix);
    }
    let (how, order) = match j.how {
        JoinHow::Inner => (JoinType::Inner, MaintainOrderJoin::LeftRight),
        JoinHow::Left => (JoinType::Left, MaintainOrderJoin::LeftRight),
        JoinHow::Right => (JoinType::Right, MaintainOrderJoin::RightLeft),
        JoinHow::Full => (JoinType::Full, MaintainOrderJoin::LeftRight),
        JoinHow::Semi => (JoinType::Semi, MaintainOrderJoin::Left),
        JoinHow::Anti | JoinHow::Cross => (JoinType::Anti, MaintainOrderJoin::Left),
    };
    let mut args = JoinArgs::new(how).with_suffix(suffix);
    args.maintain_order = order;
    let left_on: Vec<Expr> = j.on.iter().map(|k| col(k.left.as_str())).collect();
    let right_on: Vec<Expr> = j.on.iter().map(|k| col(k.right.as_str())).collect();
    left.join(right, left_on, right_on, args)
}

fn union(policy: MissingColumns, inputs: Vec<Input>) -> PolarsResult<LazyFrame> {
    let args = UnionArgs {
        to_supertypes: true,
        maintain_order: true,
        ..UnionArgs::default()
    };
    match policy {
        MissingColumns::Null => concat_lf_diagonal(
            inputs.into_iter().map(|i| i.frame).collect::<Vec<_>>(),
            args,
        ),
        MissingColumns::Error | MissingColumns::Drop => {
            // Columns in the first input's order; validation made sure every input has them
            // (`error`), or this keeps only the shared ones (`drop`).
            let first = inputs.first().map(|i| i.schema.clone()).unwrap_or_default();
            let shared: Vec<Expr> = first
                .iter_names()
                .filter(|n| inputs.iter().all(|i| i.schema.contains(n)))
                .map(|n| col(n.clone()))
                .collect();
            let frames: Vec<LazyFrame> = inputs
                .into_iter()
                .map(|i| i.frame.select(shared.clone()))
                .collect();
            concat(frames, args)
        }
    }
}

/// Default output name of an aggregation.
pub(crate) fn aggregation_name(a: &super::model::Aggregation) -> String {
    match (&a.alias, &a.column) {
        (Some(alias), _) => alias.clone(),
        (None, Some(c)) => format!("{c}_{}", a.op.name()),
        (None, None) => a.op.name().to_owned(),
    }
}

fn aggregation(a: &super::model::Aggregation) -> Expr {
    let name = aggregation_name(a);
    let c = || col(a.column.as_deref().unwrap_or_default());
    let e = match a.op {
        AggOp::Count if a.column.is_none() => len(),
        AggOp::Count => c().count(),
        AggOp::Sum => c().sum(),
        AggOp::Mean => c().mean(),
        AggOp::Min => c().min(),
        AggOp::Max => c().max(),
        AggOp::CountDistinct => c().drop_nulls().n_unique(),
        AggOp::First => c().first(),
        AggOp::Last => c().last(),
        AggOp::Median => c().median(),
        AggOp::Std => c().std(1),
        AggOp::Concat => c()
            .cast(DataType::String)
            .str()
            .join(a.separator.as_deref().unwrap_or(","), true),
    };
    e.alias(name.as_str())
}

/// Whether `op` accepts a column of type `dtype` (the checks Polars itself would only make
/// while running).
pub(crate) fn agg_accepts(op: AggOp, dtype: &DataType) -> bool {
    match op {
        AggOp::Sum | AggOp::Mean | AggOp::Median | AggOp::Std => {
            dtype.is_primitive_numeric() || dtype.is_bool() || dtype.is_decimal()
        }
        _ => true,
    }
}

/// The typed empty frame a prediction starts from.
pub(crate) fn empty(schema: &SchemaRef) -> LazyFrame {
    DataFrame::empty_with_schema(schema).lazy()
}
