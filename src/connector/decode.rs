//! Decoding one row into the frame builders, shared by the dialects through a macro (each
//! dialect's row type is concrete, so the driver's type checks apply per dialect).

/// How a column's values are decoded (several decodings land in the same Polars type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dec {
    Bool,
    I16,
    I32,
    I64,
    /// Unsigned 32-bit (MySQL `INT UNSIGNED`), widened to Int64.
    U32AsI64,
    F32,
    F64,
    Decimal,
    Str,
    Json,
    /// PostgreSQL `jsonb` (a version byte before the text in its binary form).
    JsonB,
    Uuid,
    Bin,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    /// A one-dimensional PostgreSQL array (binary COPY only).
    Array(Elem),
}

/// Element types of the arrays we map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Str,
}

impl Dec {
    /// The Polars side of the mapping.
    pub(crate) fn kind(self) -> super::frame::Kind {
        use super::frame::Kind;
        match self {
            Dec::Bool => Kind::Bool,
            Dec::I16 => Kind::I16,
            Dec::I32 => Kind::I32,
            Dec::I64 | Dec::U32AsI64 => Kind::I64,
            Dec::F32 => Kind::F32,
            Dec::F64 => Kind::F64,
            Dec::Decimal => Kind::Decimal,
            Dec::Str | Dec::Json | Dec::JsonB | Dec::Uuid => Kind::Str,
            Dec::Bin => Kind::Bin,
            Dec::Date => Kind::Date,
            Dec::Time => Kind::Time,
            Dec::Timestamp => Kind::Timestamp,
            Dec::TimestampTz => Kind::TimestampTz,
            Dec::Array(e) => Kind::List(e),
        }
    }
}

/// Per column: how to decode it, and its (name, Polars kind).
pub(crate) type Planned = (Vec<Dec>, Vec<(String, super::frame::Kind)>);

/// Decodings and (name, Polars kind) pairs for described columns; an unmapped type is refused,
/// naming the column.
pub(crate) fn plan_columns<C: sqlx::Column>(
    columns: &[C],
    plan: fn(&str) -> Option<Dec>,
) -> Result<Planned, super::ConnectorError> {
    use sqlx::TypeInfo;
    let mut plans = Vec::with_capacity(columns.len());
    let mut named = Vec::with_capacity(columns.len());
    for c in columns {
        let type_name = c.type_info().name();
        let Some(dec) = plan(type_name) else {
            return Err(super::ConnectorError::UnsupportedType {
                column: c.name().to_owned(),
                type_name: type_name.to_owned(),
            });
        };
        plans.push(dec);
        named.push((c.name().to_owned(), dec.kind()));
    }
    Ok((plans, named))
}

/// Days from 1970-01-01.
pub(crate) fn days(d: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((d - epoch).num_days()).unwrap_or(i32::MAX)
}

/// Nanoseconds since midnight.
pub(crate) fn nanos_of_day(t: chrono::NaiveTime) -> i64 {
    use chrono::Timelike;
    i64::from(t.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(t.nanosecond())
}

/// Decodes column `i` of `$row` per `$dec` into `$data` and evaluates to the bytes it accounts
/// for. Types only some drivers have (decimal, unsigned) are decoded by the dialect itself. Used inside a function returning `Result<_, ConnectorError>` (errors propagate with `?`).
macro_rules! push_value {
    ($row:expr, $i:expr, $dec:expr, $data:expr) => {{
        use sqlx::Row as _;
        use $crate::connector::decode::{Dec, days, nanos_of_day};
        use $crate::connector::frame::Data;
        let row = $row;
        let i: usize = $i;
        let err = |e: sqlx::Error| $crate::connector::query_error(e);
        'done: {
            match ($dec, $data) {
                (Dec::Bool, Data::Bool(v)) => {
                    v.push(row.try_get::<Option<bool>, _>(i).map_err(err)?)
                }
                (Dec::I16, Data::I16(v)) => v.push(row.try_get::<Option<i16>, _>(i).map_err(err)?),
                (Dec::I32, Data::I32(v)) => v.push(row.try_get::<Option<i32>, _>(i).map_err(err)?),
                (Dec::I64, Data::I64(v)) => v.push(row.try_get::<Option<i64>, _>(i).map_err(err)?),
                (Dec::F32, Data::F32(v)) => v.push(row.try_get::<Option<f32>, _>(i).map_err(err)?),
                (Dec::F64, Data::F64(v)) => v.push(row.try_get::<Option<f64>, _>(i).map_err(err)?),
                (Dec::Str, Data::Str(v)) => {
                    let s = row.try_get::<Option<String>, _>(i).map_err(err)?;
                    let n = s.as_ref().map_or(0, String::len);
                    v.push(s);
                    break 'done n;
                }
                (Dec::Json | Dec::JsonB, Data::Str(v)) => {
                    let s = row
                        .try_get::<Option<serde_json::Value>, _>(i)
                        .map_err(err)?
                        .map(|j| j.to_string());
                    let n = s.as_ref().map_or(0, String::len);
                    v.push(s);
                    break 'done n;
                }
                (Dec::Uuid, Data::Str(v)) => v.push(
                    row.try_get::<Option<uuid::Uuid>, _>(i)
                        .map_err(err)?
                        .map(|u| u.to_string()),
                ),
                (Dec::Bin, Data::Bin(v)) => {
                    let b = row.try_get::<Option<Vec<u8>>, _>(i).map_err(err)?;
                    let n = b.as_ref().map_or(0, Vec::len);
                    v.push(b);
                    break 'done n;
                }
                (Dec::Date, Data::Date(v)) => v.push(
                    row.try_get::<Option<chrono::NaiveDate>, _>(i)
                        .map_err(err)?
                        .map(days),
                ),
                (Dec::Time, Data::Time(v)) => v.push(
                    row.try_get::<Option<chrono::NaiveTime>, _>(i)
                        .map_err(err)?
                        .map(nanos_of_day),
                ),
                (Dec::Timestamp, Data::Timestamp(v, _)) => v.push(
                    row.try_get::<Option<chrono::NaiveDateTime>, _>(i)
                        .map_err(err)?
                        .map(|t| t.and_utc().timestamp_micros()),
                ),
                (Dec::TimestampTz, Data::Timestamp(v, _)) => v.push(
                    row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i)
                        .map_err(err)?
                        .map(|t| t.timestamp_micros()),
                ),
                _ => {
                    return Err($crate::connector::ConnectorError::Decode(
                        "decoder and builder disagree".into(),
                    ));
                }
            }
            8usize
        }
    }};
}
pub(crate) use push_value;
