//! The workflow document, version 1: the tools and their fields, exactly as the JSON says.
//! Pure data with `deny_unknown_fields` everywhere; nothing here checks expressions, SQL,
//! references or schemas (that is `validate.rs`). The JSON Schema in `schema/` is generated
//! from these types (`hubworker doc workflow-schema`), so the two cannot drift.

use std::collections::BTreeMap;

use polars::prelude::{DataType, TimeUnit};
use schemars::JsonSchema;
use serde::Deserialize;

/// The only format version this worker runs.
pub const VERSION: u64 = 1;

/// One tool of the canvas, without its `id` (every node has one; `parse.rs` takes it off
/// first so that each tool's fields can refuse anything unknown).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum Tool {
    /// Read rows with one read-only SQL query on a named connection.
    Sql(Sql),
    /// Rows typed in the workflow itself (the Text Input tool).
    Inline(Inline),
    /// Compute columns from expressions, in order (later ones see earlier ones).
    Formula(Formula),
    /// Split rows by a boolean expression into a `true` and a `false` output.
    Filter(Filter),
    /// Keep, drop, rename, reorder and cast columns.
    Select(Select),
    /// Order rows (stable).
    Sort(Sort),
    /// Join two inputs.
    Join(Join),
    /// Stack inputs by column name.
    Union(Union),
    /// Group and aggregate.
    Summarize(Summarize),
    /// Drop duplicate rows (stable).
    Unique(Unique),
    /// The first `n` rows after `offset`.
    Limit(Limit),
    /// A seeded random sample of rows.
    Sample(Sample),
    /// A named result sent back to the caller.
    Output(Output),
}

impl Tool {
    /// The tool's name as written in the document.
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Sql(_) => "sql",
            Tool::Inline(_) => "inline",
            Tool::Formula(_) => "formula",
            Tool::Filter(_) => "filter",
            Tool::Select(_) => "select",
            Tool::Sort(_) => "sort",
            Tool::Join(_) => "join",
            Tool::Union(_) => "union",
            Tool::Summarize(_) => "summarize",
            Tool::Unique(_) => "unique",
            Tool::Limit(_) => "limit",
            Tool::Sample(_) => "sample",
            Tool::Output(_) => "output",
        }
    }

    /// The inputs this tool reads, with the field each comes from.
    pub fn inputs(&self) -> Vec<(String, &str)> {
        match self {
            Tool::Sql(_) | Tool::Inline(_) => Vec::new(),
            Tool::Formula(Formula { input, .. })
            | Tool::Filter(Filter { input, .. })
            | Tool::Select(Select { input, .. })
            | Tool::Sort(Sort { input, .. })
            | Tool::Summarize(Summarize { input, .. })
            | Tool::Unique(Unique { input, .. })
            | Tool::Limit(Limit { input, .. })
            | Tool::Sample(Sample { input, .. })
            | Tool::Output(Output { input, .. }) => vec![("input".to_owned(), input.as_str())],
            Tool::Join(j) => vec![
                ("left".to_owned(), j.left.as_str()),
                ("right".to_owned(), j.right.as_str()),
            ],
            Tool::Union(u) => u
                .inputs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("inputs[{i}]"), r.as_str()))
                .collect(),
        }
    }
}

/// `sql`: the query runs in a read-only transaction on the connection the Hub resolves
/// `connection` to; `dialect` must be that connection's.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sql {
    /// Connection name (as the Hub and the server token name it).
    pub connection: String,
    /// SQL dialect of the connection.
    pub dialect: crate::sql::Dialect,
    /// One read-only statement.
    pub query: String,
}

/// `inline`: typed rows in the document.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inline {
    /// Column names and types, in order.
    pub columns: Vec<InlineColumn>,
    /// Rows, each an array with one JSON value (or null) per column.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// One column of an `inline` node.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineColumn {
    /// Column name.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub dtype: ColumnType,
}

/// `formula`: `with_columns`, one expression after another.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Formula {
    /// Input reference.
    pub input: String,
    /// Columns to compute (a new name adds a column, an existing one replaces it).
    pub formulas: Vec<FormulaColumn>,
}

/// One computed column.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormulaColumn {
    /// Name of the column to write.
    pub column: String,
    /// A Polars expression in Python syntax, e.g. `pl.col("price") * pl.col("qty")`.
    pub expression: String,
}

/// `filter`: rows where the expression is true go to `ID` (or `ID.true`); every other row
/// (false or null) goes to `ID.false`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Input reference.
    pub input: String,
    /// A boolean Polars expression in Python syntax.
    pub expression: String,
}

/// `select`: `columns` keeps and orders (all columns in input order when absent), then
/// `drop`, `cast` and `rename` apply, each naming input columns.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// Input reference.
    pub input: String,
    /// Columns to keep, in output order.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Columns to remove.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Column → new type (strict: a value that does not convert fails the run).
    #[serde(default)]
    pub cast: BTreeMap<String, ColumnType>,
    /// Column → new name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

/// `sort`: stable, by one or more columns.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sort {
    /// Input reference.
    pub input: String,
    /// Sort keys, most significant first.
    pub by: Vec<SortKey>,
}

/// One sort key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    /// Column name.
    pub column: String,
    /// Largest first.
    #[serde(default)]
    pub descending: bool,
    /// Nulls after every value (default: before, as Polars).
    #[serde(default)]
    pub nulls_last: bool,
}

/// `join`: rows of `left` matched with rows of `right` on key pairs. Row order is
/// deterministic: left order first (right order for `right` joins).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// Left input reference.
    pub left: String,
    /// Right input reference.
    pub right: String,
    /// Join kind.
    pub how: JoinHow,
    /// Key pairs (empty for `cross`, required otherwise).
    #[serde(default)]
    pub on: Vec<JoinKey>,
    /// Appended to right column names that clash with left ones.
    #[serde(default = "default_suffix")]
    pub suffix: String,
}

fn default_suffix() -> String {
    "_right".to_owned()
}

/// Join kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinHow {
    /// Matching rows only.
    Inner,
    /// Every left row.
    Left,
    /// Every right row.
    Right,
    /// Every row of both (key columns of both sides are kept).
    Full,
    /// Left rows that have a match (left columns only).
    Semi,
    /// Left rows without a match (left columns only).
    Anti,
    /// Every pair of rows (no keys).
    Cross,
}

/// One key pair.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinKey {
    /// Column of the left input.
    pub left: String,
    /// Column of the right input.
    pub right: String,
}

/// `union`: rows of every input, matched by column name, in input order.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Union {
    /// Input references (at least two).
    pub inputs: Vec<String>,
    /// What to do when the inputs' column names differ.
    #[serde(default)]
    pub missing: MissingColumns,
}

/// Union policy for columns absent from some inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissingColumns {
    /// Inputs must have the same column names (order may differ).
    #[default]
    Error,
    /// Keep every column; fill nulls where an input lacks one.
    Null,
    /// Keep only columns every input has.
    Drop,
}

/// `summarize`: group by columns (first-appearance order) and aggregate; without `group_by`,
/// one row over everything.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summarize {
    /// Input reference.
    pub input: String,
    /// Grouping columns.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Aggregations, in output order after the grouping columns.
    pub aggregations: Vec<Aggregation>,
}

/// One aggregation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// Aggregate function.
    pub op: AggOp,
    /// Input column (optional for `count`, which then counts rows).
    #[serde(default)]
    pub column: Option<String>,
    /// Output column name (default `COLUMN_OP`, or `count` for a row count).
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// Separator for `concat` (default `,`).
    #[serde(default)]
    pub separator: Option<String>,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggOp {
    /// Sum of non-null values.
    Sum,
    /// Mean of non-null values.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Non-null values (rows, without a column).
    Count,
    /// Distinct non-null values.
    CountDistinct,
    /// First value in input order.
    First,
    /// Last value in input order.
    Last,
    /// Median.
    Median,
    /// Sample standard deviation (ddof 1).
    Std,
    /// Non-null values as text, joined with `separator`, in input order.
    Concat,
}

impl AggOp {
    /// The op's name as written in the document.
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Mean => "mean",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::CountDistinct => "count_distinct",
            AggOp::First => "first",
            AggOp::Last => "last",
            AggOp::Median => "median",
            AggOp::Std => "std",
            AggOp::Concat => "concat",
        }
    }
}

/// `unique`: keeps one row per distinct value of `columns` (all columns when absent).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Unique {
    /// Input reference.
    pub input: String,
    /// Columns that define a duplicate.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Which of the duplicates to keep.
    #[serde(default)]
    pub keep: Keep,
}

/// Which duplicate `unique` keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The first in input order.
    #[default]
    First,
    /// The last in input order.
    Last,
    /// Rows that have no duplicate at all.
    None,
}

/// `limit`: rows `offset .. offset + n`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Input reference.
    pub input: String,
    /// Most rows kept.
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub n: u64,
    /// Rows skipped first.
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub offset: u64,
}

/// `sample`: `n` rows or a `fraction` of them, reproducible for a given `seed`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Input reference.
    pub input: String,
    /// Number of rows (give this or `fraction`).
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub n: Option<u64>,
    /// Fraction of rows, 0 to 1 (or more with replacement).
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Random seed (default 0): the same seed and input give the same rows.
    #[serde(default)]
    #[schemars(range(max = 9_007_199_254_740_991u64))]
    pub seed: u64,
    /// Draw with replacement.
    #[serde(default)]
    pub with_replacement: bool,
}

/// `output`: a named result.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Input reference.
    pub input: String,
    /// Result name (unique; letters, digits, `_`, `-`).
    pub name: String,
}

/// Column types for `inline` and `select.cast`, spelled as py-polars spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum ColumnType {
    /// true/false.
    Boolean,
    /// 8-bit signed integer.
    Int8,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 8-bit unsigned integer.
    UInt8,
    /// 16-bit unsigned integer.
    UInt16,
    /// 32-bit unsigned integer.
    UInt32,
    /// 64-bit unsigned integer.
    UInt64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// Calendar date (`YYYY-MM-DD` in `inline`).
    Date,
    /// Date and time, microseconds, no time zone (`YYYY-MM-DDTHH:MM:SS[.ffffff]` in `inline`).
    Datetime,
    /// Time of day (`HH:MM:SS[.ffffff]` in `inline`).
    Time,
    /// Duration, microseconds (an integer in `inline`).
    Duration,
}

impl ColumnType {
    /// The Polars type.
    pub fn dtype(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::UInt8 => DataType::UInt8,
            ColumnType::UInt16 => DataType::UInt16,
            ColumnType::UInt32 => DataType::UInt32,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::String => DataType::String,
            ColumnType::Date => DataType::Date,
            ColumnType::Datetime => DataType::Datetime(TimeUnit::Microseconds, None),
            ColumnType::Time => DataType::Time,
            ColumnType::Duration => DataType::Duration(TimeUnit::Microseconds),
        }
    }
}

/// The document's top level, for the JSON Schema only (parsing goes node by node so that
/// every node's problems are reported).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "hubworker workflow",
    description = "A workflow the Hub dispatches to hubworker (version 1). Every integer in it \
                   lies in [-(2^53)+1, 2^53-1] and -0 is refused (I-JSON, RFC 7493), so the \
                   canonical hash covers exactly what runs."
)]
pub struct Document {
    /// Format version: 1.
    pub version: u64,
    /// The tools; inputs refer to other nodes by id (`ID`, or `ID.true` / `ID.false` for a
    /// filter's outputs).
    pub nodes: Vec<NodeDoc>,
}

/// A node: `id` plus one tool's fields (schema only; see [`Tool`]).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct NodeDoc {
    /// Unique id: 1 to 64 of letters, digits, `_` and `-`.
    pub id: String,
    /// The tool and its fields.
    #[serde(flatten)]
    pub tool: Tool,
}

/// The JSON Schema (draft 2020-12) of the workflow format, pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Document);
    let mut value = serde_json::to_value(&schema).unwrap_or_default();
    // `id` is flattened beside each tool's fields, which schemars cannot close; 2020-12's
    // `unevaluatedProperties` closes the node over `id` plus the chosen tool's fields.
    if let Some(node) = value
        .pointer_mut("/$defs/NodeDoc")
        .and_then(|v| v.as_object_mut())
    {
        node.insert("required".into(), serde_json::json!(["id", "tool"]));
        node.insert(
            "unevaluatedProperties".into(),
            serde_json::Value::Bool(false),
        );
    }
    if let Some(id) = value
        .pointer_mut("/$defs/NodeDoc/properties/id")
        .and_then(|v| v.as_object_mut())
    {
        id.insert("pattern".into(), "^[A-Za-z0-9_-]{1,64}$".into());
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
