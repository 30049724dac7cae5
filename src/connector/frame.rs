//! Rows to a Polars DataFrame: one typed builder per column, a row cap and a byte cap checked
//! while rows arrive (so a huge result is refused before it is all in memory), nulls kept.
//! Knows nothing about connections; each dialect module decodes values into these builders.

use polars::prelude::{
    Column, DataFrame, DataType, IntoColumn, NamedFrom, PlSmallStr, Series, TimeUnit, TimeZone,
};

use super::ConnectorError;

/// What a column becomes in Polars (the documented type mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// Exact decimal; the column's scale is the largest scale seen.
    Decimal,
    Str,
    Bin,
    Date,
    Time,
    /// Timestamp without time zone (microseconds).
    Timestamp,
    /// Timestamp with time zone, normalised to UTC (microseconds).
    TimestampTz,
    /// A list of scalars.
    List(super::decode::Elem),
}

/// Column values as they are decoded.
#[derive(Debug)]
pub(crate) enum Data {
    Bool(Vec<Option<bool>>),
    I16(Vec<Option<i16>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Decimal(Vec<Option<rust_decimal::Decimal>>),
    Str(Vec<Option<String>>),
    Bin(Vec<Option<Vec<u8>>>),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
    /// Nanoseconds since midnight.
    Time(Vec<Option<i64>>),
    /// Microseconds since the epoch; `true` when the source was zoned (values are UTC).
    Timestamp(Vec<Option<i64>>, bool),
    /// One Series per row (null for a NULL array).
    List(Vec<Option<Series>>, super::decode::Elem),
}

impl Data {
    pub(crate) fn new(kind: Kind) -> Data {
        match kind {
            Kind::Bool => Data::Bool(Vec::new()),
            Kind::I16 => Data::I16(Vec::new()),
            Kind::I32 => Data::I32(Vec::new()),
            Kind::I64 => Data::I64(Vec::new()),
            Kind::F32 => Data::F32(Vec::new()),
            Kind::F64 => Data::F64(Vec::new()),
            Kind::Decimal => Data::Decimal(Vec::new()),
            Kind::Str => Data::Str(Vec::new()),
            Kind::Bin => Data::Bin(Vec::new()),
            Kind::Date => Data::Date(Vec::new()),
            Kind::Time => Data::Time(Vec::new()),
            Kind::Timestamp => Data::Timestamp(Vec::new(), false),
            Kind::TimestampTz => Data::Timestamp(Vec::new(), true),
            Kind::List(e) => Data::List(Vec::new(), e),
        }
    }
}

/// Limits on one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLimits {
    /// Most rows accepted.
    pub max_rows: usize,
    /// Most bytes of decoded data accepted (fixed-width values count 8 bytes).
    pub max_bytes: usize,
}

impl Default for ResultLimits {
    fn default() -> Self {
        ResultLimits {
            max_rows: 5_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// Accumulates decoded rows under [`ResultLimits`].
#[derive(Debug)]
pub(crate) struct FrameBuilder {
    pub(crate) names: Vec<String>,
    pub(crate) data: Vec<Data>,
    rows: usize,
    bytes: usize,
    limits: ResultLimits,
}

impl FrameBuilder {
    pub(crate) fn new(columns: Vec<(String, Kind)>, limits: ResultLimits) -> Self {
        let (names, kinds): (Vec<String>, Vec<Kind>) = columns.into_iter().unzip();
        FrameBuilder {
            names,
            data: kinds.into_iter().map(Data::new).collect(),
            rows: 0,
            bytes: 0,
            limits,
        }
    }

    /// Accounts for one more row of `bytes` decoded bytes; refuses past the caps.
    pub(crate) fn row_done(&mut self, bytes: usize) -> Result<(), ConnectorError> {
        self.rows += 1;
        self.bytes += bytes;
        if self.rows > self.limits.max_rows {
            return Err(ConnectorError::ResultTooLarge(format!(
                "more than {} rows",
                self.limits.max_rows
            )));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(ConnectorError::ResultTooLarge(format!(
                "more than {} bytes",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    /// The finished frame.
    pub(crate) fn finish(self) -> Result<DataFrame, ConnectorError> {
        let mut cols: Vec<Column> = Vec::with_capacity(self.data.len());
        for (name, data) in self.names.into_iter().zip(self.data) {
            cols.push(series(PlSmallStr::from_string(name), data)?.into_column());
        }
        DataFrame::new_infer_height(cols).map_err(|e| ConnectorError::Decode(e.to_string()))
    }
}

fn series(name: PlSmallStr, data: Data) -> Result<Series, ConnectorError> {
    let cast = |s: Series, dt: DataType| {
        s.cast(&dt)
            .map_err(|e| ConnectorError::Decode(e.to_string()))
    };
    Ok(match data {
        Data::Bool(v) => Series::new(name, v),
        Data::I16(v) => Series::new(name, v),
        Data::I32(v) => Series::new(name, v),
        Data::I64(v) => Series::new(name, v),
        Data::F32(v) => Series::new(name, v),
        Data::F64(v) => Series::new(name, v),
        Data::Str(v) => Series::new(name, v),
        Data::Bin(v) => Series::new(name, v),
        Data::Date(v) => cast(Series::new(name, v), DataType::Date)?,
        Data::Time(v) => cast(Series::new(name, v), DataType::Time)?,
        Data::Timestamp(v, zoned) => {
            let tz = zoned.then_some(TimeZone::UTC);
            cast(
                Series::new(name, v),
                DataType::Datetime(TimeUnit::Microseconds, tz),
            )?
        }
        Data::Decimal(v) => decimal(name, v)?,
        Data::List(v, elem) => {
            use super::decode::Elem;
            let inner = match elem {
                Elem::Bool => DataType::Boolean,
                Elem::I16 => DataType::Int16,
                Elem::I32 => DataType::Int32,
                Elem::I64 => DataType::Int64,
                Elem::F32 => DataType::Float32,
                Elem::F64 => DataType::Float64,
                Elem::Str => DataType::String,
            };
            // Empty arrays and all-null rows still get the column's element type.
            let v: Vec<Option<Series>> = v
                .into_iter()
                .map(|s| s.map(|s| s.cast(&inner).unwrap_or(s)))
                .collect();
            cast(Series::new(name, v), DataType::List(Box::new(inner)))?
        }
    })
}

/// Exact decimals: every value rescaled to the column's largest scale, stored as Decimal(38, s).
fn decimal(
    name: PlSmallStr,
    v: Vec<Option<rust_decimal::Decimal>>,
) -> Result<Series, ConnectorError> {
    let scale = v.iter().flatten().map(|d| d.scale()).max().unwrap_or(0);
    let mut mantissas = Vec::with_capacity(v.len());
    for d in v {
        mantissas.push(match d {
            None => None,
            Some(mut d) => {
                d.rescale(scale);
                Some(d.mantissa())
            }
        });
    }
    Series::new(name, mantissas)
        .into_decimal(38, scale as usize)
        .map_err(|e| ConnectorError::Decode(e.to_string()))
}
