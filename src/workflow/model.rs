//! The workflow document, version 1: its top level, the shared column types, and the JSON
//! Schema generated from them and from each tool's fields (`tools/`). Pure data with
//! `deny_unknown_fields` everywhere; nothing here checks expressions, SQL, references or
//! schemas. The JSON Schema in `schema/` is generated from these types (`hubworker doc
//! workflow-schema`), so the two cannot drift.

use polars::prelude::{DataType, TimeUnit};
use schemars::JsonSchema;
use serde::Deserialize;

use super::tools::Tool;

/// The only format version this worker runs.
pub(crate) const VERSION: u64 = 1;

/// Column types for `inline` and `select.cast`, spelled as py-polars spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub(crate) enum ColumnType {
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
    pub(crate) fn dtype(self) -> DataType {
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
#[expect(dead_code, reason = "read by the schema generator only")]
#[schemars(
    title = "hubworker workflow",
    description = "A workflow the Hub dispatches to hubworker (version 1). Every integer in it \
                   lies in [-(2^53)+1, 2^53-1] and -0 is refused (I-JSON, RFC 7493), so the \
                   canonical hash covers exactly what runs."
)]
pub(crate) struct Document {
    /// Format version: 1.
    pub(crate) version: u64,
    /// Run parameters: name (a letter or `_`, then letters, digits and `_`) -> declaration.
    /// A run brings their values beside the document; queries and expressions refer to them
    /// (issue 21: being built).
    #[serde(default)]
    pub(crate) params: Option<std::collections::BTreeMap<String, super::params::Declaration>>,
    /// The tools; inputs refer to other nodes by id (`ID`, or `ID.true` / `ID.false` for a
    /// filter's outputs).
    pub(crate) nodes: Vec<NodeDoc>,
}

/// A node: `id` plus one tool's fields (schema only; see [`Tool`]).
#[derive(Debug, Deserialize, JsonSchema)]
#[expect(dead_code, reason = "read by the schema generator only")]
pub(crate) struct NodeDoc {
    /// Unique id: 1 to 64 of letters, digits, `_` and `-`.
    pub(crate) id: String,
    /// The tool and its fields.
    #[serde(flatten)]
    pub(crate) tool: Tool,
}

/// The JSON Schema (draft 2020-12) of the workflow format, pretty-printed.
pub(crate) fn json_schema() -> String {
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
