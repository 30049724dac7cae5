//! Schema prediction: every step's output schema from its inputs' schemas, without data,
//! by building the tool over empty frames (the same builder that runs it). Column names and
//! types are checked here too, with did-you-mean. Used by validation (query schemas unknown)
//! and again by the executor once the queries' results are loaded.

use std::collections::HashSet;

use polars::prelude::*;

use super::model::{MissingColumns, Tool};
use super::parse;
use super::plan::{self, Compiled, Input};
use super::problem::{Problem, polars_problem};
use super::validate::Step;

/// Predicts every step's output schema. `source` gives the schema of a `sql` step where it
/// is known (at run time, from the loaded frame). Steps marked unusable, and their
/// dependants, get `None`.
pub(crate) fn predict(
    steps: &[Step],
    usable: &[bool],
    source: &dyn Fn(usize) -> Option<SchemaRef>,
    problems: &mut Vec<Problem>,
) -> Vec<Option<SchemaRef>> {
    let mut out: Vec<Option<SchemaRef>> = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let schema = if !usable[i] {
            None
        } else {
            match (&step.tool, &step.compiled) {
                (Tool::Sql(_), _) => source(i),
                (Tool::Inline(_), Compiled::Inline(df)) => Some(df.schema().clone()),
                _ => {
                    let inputs: Option<Vec<SchemaRef>> =
                        step.inputs.iter().map(|p| out[p.step].clone()).collect();
                    inputs.and_then(|inputs| predict_step(step, inputs, problems))
                }
            }
        };
        out.push(schema);
    }
    out
}

fn predict_step(
    step: &Step,
    inputs: Vec<SchemaRef>,
    problems: &mut Vec<Problem>,
) -> Option<SchemaRef> {
    let id = step.id.as_str();
    let before = problems.len();
    let first = inputs.first().cloned().unwrap_or_default();
    match (&step.tool, &step.compiled) {
        (Tool::Formula(f), Compiled::Formula(exprs)) => {
            let mut schema = first;
            for (i, (fc, e)) in f.formulas.iter().zip(exprs).enumerate() {
                match plan::empty(&schema)
                    .with_column(e.clone().alias(fc.column.as_str()))
                    .collect_schema()
                {
                    Ok(s) => schema = s,
                    Err(err) => {
                        let (code, message) = polars_problem(&err);
                        problems.push(Problem::new(
                            Some(id),
                            format!("formulas[{i}].expression"),
                            code,
                            message,
                        ));
                        return None;
                    }
                }
            }
            return Some(schema);
        }
        (Tool::Filter(_), Compiled::Filter(e)) => {
            match plan::empty(&first).select([e.clone()]).collect_schema() {
                Ok(s) => match s.get_at_index(0) {
                    Some((_, DataType::Boolean)) => return Some(first),
                    Some((_, dtype)) => problems.push(Problem::new(
                        Some(id),
                        "expression",
                        "type_mismatch",
                        format!("a filter expression must be Boolean; this one is {dtype}"),
                    )),
                    None => {}
                },
                Err(err) => {
                    let (code, message) = polars_problem(&err);
                    problems.push(Problem::new(Some(id), "expression", code, message));
                }
            }
            return None;
        }
        (Tool::Select(s), _) => {
            for (i, c) in s.columns.iter().flatten().enumerate() {
                need(problems, id, &first, c, format!("columns[{i}]"));
            }
            for (i, c) in s.drop.iter().enumerate() {
                need(problems, id, &first, c, format!("drop[{i}]"));
            }
            for c in s.cast.keys() {
                need(problems, id, &first, c, format!("cast.{c}"));
            }
            for c in s.rename.keys() {
                need(problems, id, &first, c, format!("rename.{c}"));
            }
        }
        (Tool::Sort(s), _) => {
            for (i, k) in s.by.iter().enumerate() {
                need(problems, id, &first, &k.column, format!("by[{i}].column"));
            }
        }
        (Tool::Join(j), _) => {
            let right = inputs.get(1).cloned().unwrap_or_default();
            for (i, k) in j.on.iter().enumerate() {
                let l = need(problems, id, &first, &k.left, format!("on[{i}].left"));
                let r = need(problems, id, &right, &k.right, format!("on[{i}].right"));
                if let (true, true, Some(lt), Some(rt)) =
                    (l, r, first.get(&k.left), right.get(&k.right))
                    && lt != rt
                {
                    problems.push(Problem::new(
                        Some(id),
                        format!("on[{i}]"),
                        "type_mismatch",
                        format!(
                            "key {:?} is {lt} but {:?} is {rt}; cast one with a select",
                            k.left, k.right
                        ),
                    ));
                }
            }
        }
        (Tool::Union(u), _) if u.missing == MissingColumns::Error => {
            let names: HashSet<&str> = first.iter_names().map(|n| n.as_str()).collect();
            for (i, s) in inputs.iter().enumerate().skip(1) {
                let other: HashSet<&str> = s.iter_names().map(|n| n.as_str()).collect();
                if other != names {
                    let mut missing: Vec<&str> = names.difference(&other).copied().collect();
                    let mut extra: Vec<&str> = other.difference(&names).copied().collect();
                    missing.sort_unstable();
                    extra.sort_unstable();
                    problems.push(Problem::new(Some(id), format!("inputs[{i}]"), "schema_mismatch", format!("columns differ from inputs[0]: missing {missing:?}, extra {extra:?}; set `missing` to \"null\" or \"drop\" to allow it")));
                }
            }
        }
        (Tool::Summarize(s), _) => {
            for (i, c) in s.group_by.iter().enumerate() {
                need(problems, id, &first, c, format!("group_by[{i}]"));
            }
            for (i, a) in s.aggregations.iter().enumerate() {
                let Some(c) = &a.column else { continue };
                if need(problems, id, &first, c, format!("aggregations[{i}].column"))
                    && let Some(dtype) = first.get(c)
                    && !plan::agg_accepts(a.op, dtype)
                {
                    problems.push(Problem::new(
                        Some(id),
                        format!("aggregations[{i}].op"),
                        "type_mismatch",
                        format!("`{}` needs a numeric column; {c:?} is {dtype}", a.op.name()),
                    ));
                }
            }
        }
        (Tool::Unique(u), _) => {
            for (i, c) in u.columns.iter().flatten().enumerate() {
                need(problems, id, &first, c, format!("columns[{i}]"));
            }
        }
        _ => {}
    }
    if problems.len() > before {
        return None;
    }
    let frames = inputs
        .into_iter()
        .map(|schema| Input {
            frame: plan::empty(&schema),
            schema,
        })
        .collect();
    let result =
        plan::build(&step.tool, &step.compiled, frames).and_then(|mut b| b.main.collect_schema());
    match result {
        Ok(s) => Some(s),
        Err(err) => {
            let (code, message) = polars_problem(&err);
            problems.push(Problem::new(Some(id), "", code, message));
            None
        }
    }
}

/// Whether `schema` has column `name`; if not, reports it with a did-you-mean.
fn need(problems: &mut Vec<Problem>, id: &str, schema: &Schema, name: &str, field: String) -> bool {
    if schema.contains(name) {
        return true;
    }
    let hint = parse::did_you_mean(name, schema.iter_names().map(|n| n.as_str()))
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    problems.push(Problem::new(
        Some(id),
        field,
        "unknown_column",
        format!("no column {name:?}{hint}"),
    ));
    false
}
