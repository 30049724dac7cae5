//! Rows to a Polars DataFrame: one typed builder per column, a row cap and a byte cap checked
//! while rows arrive (so a huge result is refused before it is all in memory), nulls kept.
//! Rows are built in batches: every [`BATCH_ROWS`] rows (or [`BATCH_BYTES`] decoded bytes) the
//! builders become Polars columns and start again, so decoding never holds more than one
//! batch in its row-shaped form (an `Option<i32>` per cell takes twice the column's bytes);
//! the result is one frame made of those batches, which the streaming engine reads batch by
//! batch. Knows nothing about connections; each dialect module decodes values into these
//! builders.

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

/// Rows per batch of a result.
pub(crate) const BATCH_ROWS: usize = 1 << 18;
/// Decoded bytes per batch of a result (wide text rows end a batch sooner).
pub(crate) const BATCH_BYTES: usize = 64 << 20;

impl Data {
    /// An empty builder of the same column type (a list's element type, a timestamp's zone).
    fn empty_like(&self) -> Data {
        match self {
            Data::Bool(_) => Data::Bool(Vec::new()),
            Data::I16(_) => Data::I16(Vec::new()),
            Data::I32(_) => Data::I32(Vec::new()),
            Data::I64(_) => Data::I64(Vec::new()),
            Data::F32(_) => Data::F32(Vec::new()),
            Data::F64(_) => Data::F64(Vec::new()),
            Data::Decimal(_) => Data::Decimal(Vec::new()),
            Data::Str(_) => Data::Str(Vec::new()),
            Data::Bin(_) => Data::Bin(Vec::new()),
            Data::Date(_) => Data::Date(Vec::new()),
            Data::Time(_) => Data::Time(Vec::new()),
            Data::Timestamp(_, zoned) => Data::Timestamp(Vec::new(), *zoned),
            Data::List(_, e) => Data::List(Vec::new(), *e),
        }
    }

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
    /// The batches built so far.
    batches: Vec<DataFrame>,
    /// Rows and bytes in `data` (the batch being built).
    batch_rows: usize,
    batch_bytes: usize,
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
            batches: Vec::new(),
            batch_rows: 0,
            batch_bytes: 0,
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
        self.batch_rows += 1;
        self.batch_bytes += bytes;
        if self.batch_rows >= BATCH_ROWS || self.batch_bytes >= BATCH_BYTES {
            self.end_batch()?;
        }
        Ok(())
    }

    /// Turns the rows built so far into one batch and starts the next.
    fn end_batch(&mut self) -> Result<(), ConnectorError> {
        let mut cols: Vec<Column> = Vec::with_capacity(self.data.len());
        for (name, data) in self.names.iter().zip(self.data.iter_mut()) {
            let fresh = data.empty_like();
            let full = std::mem::replace(data, fresh);
            cols.push(series(PlSmallStr::from_str(name), full)?.into_column());
        }
        let batch =
            DataFrame::new_infer_height(cols).map_err(|e| ConnectorError::Decode(e.to_string()))?;
        self.batches.push(batch);
        self.batch_rows = 0;
        self.batch_bytes = 0;
        Ok(())
    }

    /// The finished frame: its batches, one after the other (not copied into one).
    pub(crate) fn finish(mut self) -> Result<DataFrame, ConnectorError> {
        if self.batch_rows > 0 || self.batches.is_empty() {
            self.end_batch()?;
        }
        let mut batches = self.batches.into_iter();
        let Some(mut frame) = batches.next() else {
            return Err(ConnectorError::Decode("a result without columns".into()));
        };
        let rest: Vec<DataFrame> = batches.collect();
        if rest.is_empty() {
            return Ok(frame);
        }
        // Exact decimals take each batch's largest scale: every batch is brought to the
        // column's largest, as one batch would have been.
        let decimal_scales: Vec<(usize, usize)> = frame
            .columns()
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.dtype() {
                DataType::Decimal(_, _) => {
                    let scale = std::iter::once(&frame)
                        .chain(&rest)
                        .filter_map(|b| match b.columns().get(i).map(Column::dtype) {
                            Some(DataType::Decimal(_, s)) => Some(*s),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    Some((i, scale))
                }
                _ => None,
            })
            .collect();
        let rescale = |mut b: DataFrame| -> Result<DataFrame, ConnectorError> {
            for &(i, scale) in &decimal_scales {
                let rescaled = b.columns()[i]
                    .cast(&DataType::Decimal(38, scale))
                    .map_err(|e| ConnectorError::Decode(e.to_string()))?;
                b.replace_column(i, rescaled)
                    .map_err(|e| ConnectorError::Decode(e.to_string()))?;
            }
            Ok(b)
        };
        frame = rescale(frame)?;
        for b in rest {
            frame
                .vstack_mut_owned(rescale(b)?)
                .map_err(|e| ConnectorError::Decode(e.to_string()))?;
        }
        Ok(frame)
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
