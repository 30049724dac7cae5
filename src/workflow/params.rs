//! Run parameters (issue 21, first step): what a workflow declares under `params` (a name, a
//! type, a default or none, constraints), and the values one run brings, checked against
//! those declarations with every problem reported at once. A value becomes a typed [`Value`];
//! values are data, bound into queries and expressions, never spliced into their text.
//! Problems name the parameter and the rule, and never echo a value (a value may be long, or
//! something its sender would rather not see in a log).

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::sql::Bind;

use super::parse::did_you_mean;
use super::problem::Problem;

/// Most parameters one workflow declares.
pub(crate) const MAX_PARAMS: usize = 64;

/// Largest compiled `pattern`, bytes (the regex crate's own limit on a program's size).
const MAX_PATTERN_PROGRAM: usize = 1 << 20;

/// One declared parameter, as written (`params.<name>`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Declaration {
    /// `int`, `float`, `str`, `bool`, `date` (`YYYY-MM-DD`), `datetime`
    /// (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, no zone), or `list[T]` of one of those.
    #[serde(rename = "type")]
    #[schemars(regex(
        pattern = r"^(int|float|str|bool|date|datetime|list\[(int|float|str|bool|date|datetime)\])$"
    ))]
    pub(crate) ty: String,
    /// The value when a run brings none; without it the parameter is required.
    #[serde(default)]
    pub(crate) default: Option<Json>,
    /// Smallest value (numbers, dates, datetimes; for a list, each item).
    #[serde(default)]
    pub(crate) min: Option<Json>,
    /// Largest value (numbers, dates, datetimes; for a list, each item).
    #[serde(default)]
    pub(crate) max: Option<Json>,
    /// Most characters of a `str`, or most items of a list.
    #[serde(default)]
    pub(crate) max_length: Option<u64>,
    /// A regular expression (Rust `regex` syntax) the whole of a `str` (or each item of a
    /// `list[str]`) must match.
    #[serde(default)]
    pub(crate) pattern: Option<String>,
    /// The only values allowed (for a list, for each item).
    #[serde(default)]
    pub(crate) choices: Option<Vec<Json>>,
    /// What the parameter is for, for people.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "for people and the JSON Schema; nothing runs on it"
    )]
    pub(crate) description: Option<String>,
}

/// A scalar parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Text.
    Str,
    /// true/false.
    Bool,
    /// Calendar date.
    Date,
    /// Date and time, no zone.
    Datetime,
}

impl Scalar {
    fn parse(s: &str) -> Option<Scalar> {
        Some(match s {
            "int" => Scalar::Int,
            "float" => Scalar::Float,
            "str" => Scalar::Str,
            "bool" => Scalar::Bool,
            "date" => Scalar::Date,
            "datetime" => Scalar::Datetime,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scalar::Int => "an integer",
            Scalar::Float => "a number",
            Scalar::Str => "a string",
            Scalar::Bool => "true or false",
            Scalar::Date => "a date (YYYY-MM-DD)",
            Scalar::Datetime => "a datetime (YYYY-MM-DDTHH:MM:SS[.ffffff])",
        }
    }

    /// Whether `min`/`max` apply.
    fn ordered(self) -> bool {
        matches!(
            self,
            Scalar::Int | Scalar::Float | Scalar::Date | Scalar::Datetime
        )
    }

    /// `json` as a value of this type.
    fn value(self, json: &Json) -> Option<Bind> {
        Some(match (self, json) {
            (Scalar::Int, Json::Number(n)) => Bind::Int(n.as_i64()?),
            (Scalar::Float, Json::Number(n)) => Bind::Float(n.as_f64()?),
            (Scalar::Str, Json::String(s)) => Bind::Str(s.clone()),
            (Scalar::Bool, Json::Bool(b)) => Bind::Bool(*b),
            (Scalar::Date, Json::String(s)) => {
                Bind::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?)
            }
            (Scalar::Datetime, Json::String(s)) => {
                Bind::Datetime(NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()?)
            }
            _ => return None,
        })
    }
}

/// A parameter's type: a scalar, or a list of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParamType {
    /// The scalar (a list's item type).
    pub(crate) scalar: Scalar,
    /// A list of `scalar`.
    pub(crate) list: bool,
}

impl ParamType {
    fn parse(s: &str) -> Option<ParamType> {
        match s.strip_prefix("list[").and_then(|r| r.strip_suffix(']')) {
            Some(inner) => Some(ParamType {
                scalar: Scalar::parse(inner)?,
                list: true,
            }),
            None => Some(ParamType {
                scalar: Scalar::parse(s)?,
                list: false,
            }),
        }
    }
}

/// One run's value of a parameter: one scalar (the SQL layer's typed value, whose `Debug`
/// shows the type only), or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A scalar type.
    One(Bind),
    /// `list[T]`.
    List(Vec<Bind>),
}

/// Order of two values of one ordered scalar type (`None` across types or for NaN).
fn order(a: &Bind, b: &Bind) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Bind::Int(a), Bind::Int(b)) => Some(a.cmp(b)),
        (Bind::Float(a), Bind::Float(b)) => a.partial_cmp(b),
        (Bind::Date(a), Bind::Date(b)) => Some(a.cmp(b)),
        (Bind::Datetime(a), Bind::Datetime(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// A checked declaration.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    /// The type.
    pub(crate) ty: ParamType,
    /// The default (already checked against the constraints).
    pub(crate) default: Option<Value>,
    min: Option<Bind>,
    max: Option<Bind>,
    max_length: Option<u64>,
    pattern: Option<regex::Regex>,
    choices: Vec<Bind>,
}

/// Why a value is refused: a stable code and what the rule is (never the value).
type Refusal = (&'static str, String);

impl Param {
    /// `json` as this parameter's value, or why not.
    fn check(&self, json: &Json) -> Result<Value, Refusal> {
        if !self.ty.list {
            return self.scalar(json).map(Value::One);
        }
        let Json::Array(items) = json else {
            return Err((
                "param_type",
                format!("must be a list of {}", self.ty.scalar.name()),
            ));
        };
        if let Some(max) = self.max_length
            && items.len() as u64 > max
        {
            return Err((
                "param_too_long",
                format!("has {} items; at most {max} are allowed", items.len()),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(
                self.scalar(item)
                    .map_err(|(code, why)| (code, format!("item {i} {why}")))?,
            );
        }
        Ok(Value::List(out))
    }

    /// One scalar value (a list's item) against the type and the constraints.
    fn scalar(&self, json: &Json) -> Result<Bind, Refusal> {
        let scalar = self.ty.scalar;
        let v = scalar
            .value(json)
            .ok_or_else(|| ("param_type", format!("must be {}", scalar.name())))?;
        if let Some(min) = &self.min
            && matches!(order(&v, min), Some(std::cmp::Ordering::Less) | None)
        {
            return Err(("param_out_of_range", "is below its minimum".into()));
        }
        if let Some(max) = &self.max
            && matches!(order(&v, max), Some(std::cmp::Ordering::Greater) | None)
        {
            return Err(("param_out_of_range", "is above its maximum".into()));
        }
        if let Bind::Str(s) = &v {
            if !self.ty.list
                && let Some(max) = self.max_length
            {
                let n = s.chars().count() as u64;
                if n > max {
                    return Err((
                        "param_too_long",
                        format!("has {n} characters; at most {max} are allowed"),
                    ));
                }
            }
            if let Some(p) = &self.pattern
                && !p.is_match(s)
            {
                return Err(("param_pattern", "does not match its pattern".into()));
            }
        }
        if !self.choices.is_empty() && !self.choices.contains(&v) {
            return Err(("param_choice", "is not one of its choices".into()));
        }
        Ok(v)
    }
}

/// A workflow's checked declarations, by name.
pub(crate) type Params = BTreeMap<String, Param>;

/// One run's values, by name (defaults filled in).
pub(crate) type Bound = BTreeMap<String, Value>;

pub(crate) use crate::expr::is_param_name;

/// Checks the document's `params` object; every problem is pushed, and the declarations that
/// are sound are returned.
pub(crate) fn declarations(raw: &Json, problems: &mut Vec<Problem>) -> Params {
    let mut out = Params::new();
    let Json::Object(map) = raw else {
        problems.push(Problem::new(
            None,
            "params",
            "invalid_value",
            "`params` is an object: parameter name -> declaration",
        ));
        return out;
    };
    if map.len() > MAX_PARAMS {
        problems.push(Problem::new(
            None,
            "params",
            "limit_exceeded",
            format!(
                "{} parameters are declared; the limit is {MAX_PARAMS}",
                map.len()
            ),
        ));
        return out;
    }
    for (name, decl) in map {
        let at = format!("params.{name}");
        if !is_param_name(name) {
            problems.push(Problem::new(
                None,
                at,
                "bad_param_name",
                format!(
                    "a parameter name is a letter or `_`, then letters, digits and `_`, at most {} bytes", crate::expr::MAX_PARAM_NAME
                ),
            ));
            continue;
        }
        let decl: Declaration = match serde_json::from_value(decl.clone()) {
            Ok(d) => d,
            Err(e) => {
                problems.push(Problem::new(None, at, "invalid_value", e.to_string()));
                continue;
            }
        };
        let before = problems.len();
        if let Some(param) = declaration(&at, &decl, problems)
            && problems.len() == before
        {
            out.insert(name.clone(), param);
        }
    }
    out
}

fn declaration(at: &str, d: &Declaration, problems: &mut Vec<Problem>) -> Option<Param> {
    let mut bad = |field: &str, why: String| {
        problems.push(Problem::new(
            None,
            format!("{at}.{field}"),
            "invalid_value",
            why,
        ));
    };
    let Some(ty) = ParamType::parse(&d.ty) else {
        bad(
            "type",
            "the type is one of int, float, str, bool, date, datetime, or list[T] of one of those"
                .into(),
        );
        return None;
    };
    let scalar = ty.scalar;
    let bound = |field: &str, v: &Option<Json>, bad: &mut dyn FnMut(&str, String)| match v {
        None => None,
        Some(_) if !scalar.ordered() => {
            bad(
                field,
                format!("`{field}` applies to numbers, dates and datetimes"),
            );
            None
        }
        Some(j) => {
            let v = scalar.value(j);
            if v.is_none() {
                bad(field, format!("`{field}` must be {}", scalar.name()));
            }
            v
        }
    };
    let min = bound("min", &d.min, &mut bad);
    let max = bound("max", &d.max, &mut bad);
    if let (Some(a), Some(b)) = (&min, &max)
        && order(a, b) == Some(std::cmp::Ordering::Greater)
    {
        bad("min", "`min` is above `max`".into());
    }
    if d.max_length.is_some() && !ty.list && scalar != Scalar::Str {
        bad(
            "max_length",
            "`max_length` applies to strings and lists".into(),
        );
    }
    let pattern = match &d.pattern {
        None => None,
        Some(_) if scalar != Scalar::Str => {
            bad("pattern", "`pattern` applies to strings".into());
            None
        }
        Some(p) => match regex::RegexBuilder::new(&format!("^(?:{p})$"))
            .size_limit(MAX_PATTERN_PROGRAM)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                bad("pattern", format!("not a valid regular expression: {e}"));
                None
            }
        },
    };
    let mut choices = Vec::new();
    if let Some(list) = &d.choices {
        if list.is_empty() {
            bad("choices", "`choices` lists at least one value".into());
        }
        for (i, c) in list.iter().enumerate() {
            match scalar.value(c) {
                Some(v) => choices.push(v),
                None => bad(
                    &format!("choices[{i}]"),
                    format!("a choice must be {}", scalar.name()),
                ),
            }
        }
    }
    let mut param = Param {
        ty,
        default: None,
        min,
        max,
        max_length: d.max_length,
        pattern,
        choices,
    };
    if let Some(default) = &d.default {
        match param.check(default) {
            Ok(v) => param.default = Some(v),
            Err((_, why)) => bad("default", format!("the default {why}")),
        }
    }
    Some(param)
}

/// One run's values (`{}` or `null` when it brings none), checked against `params`: unknown
/// names, missing required values, wrong types and broken constraints, all at once.
pub(crate) fn bind(params: &Params, values: &Json) -> Result<Bound, Vec<Problem>> {
    let empty = serde_json::Map::new();
    let map = match values {
        Json::Null => &empty,
        Json::Object(m) => m,
        _ => {
            return Err(vec![Problem::new(
                None,
                "params",
                "param_type",
                "a run's parameters are a JSON object: name -> value",
            )]);
        }
    };
    let mut problems = Vec::new();
    for name in map.keys() {
        if !params.contains_key(name) {
            let hint = did_you_mean(name, params.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let shown: String = name.chars().take(64).collect();
            problems.push(Problem::new(
                None,
                format!("params.{shown}"),
                "unknown_param",
                format!("the workflow declares no parameter {shown:?}{hint}"),
            ));
        }
    }
    let mut bound = Bound::new();
    for (name, param) in params {
        let at = format!("params.{name}");
        match (map.get(name), &param.default) {
            (Some(json), _) => match param.check(json) {
                Ok(v) => {
                    bound.insert(name.clone(), v);
                }
                Err((code, why)) => problems.push(Problem::new(
                    None,
                    at,
                    code,
                    format!("parameter `{name}` {why}"),
                )),
            },
            (None, Some(default)) => {
                bound.insert(name.clone(), default.clone());
            }
            (None, None) => problems.push(Problem::new(
                None,
                at,
                "missing_param",
                format!("parameter `{name}` is required and has no value"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(bound)
    } else {
        Err(problems)
    }
}

#[path = "params_text.rs"]
mod text;
#[path = "params_values.rs"]
mod values;
pub(crate) use text::{bind_text, cli_values, params_sha256};
pub(crate) use values::{binds, literals};

#[cfg(test)]
#[path = "tests_params.rs"]
mod tests;
