//! Reading input files into DataFrames and writing results. The format is chosen by the file
//! extension (`.parquet`, `.csv`, `.arrow`/`.ipc`/`.feather`); nothing is guessed from content.

use std::fs::File;
use std::path::Path;

use polars::prelude::{
    CsvReadOptions, DataFrame, IpcReader, ParquetReader, ParquetWriter, PolarsError, SerReader,
};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The extension is not one we read.
    #[error("unsupported file type (expected .parquet, .csv or .arrow)")]
    UnsupportedType,
    /// Opening or creating the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file's content could not be decoded or encoded.
    #[error("{0}")]
    Polars(#[from] PolarsError),
}

/// File formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values with a header row.
    Csv,
    /// Arrow IPC file (Feather v2).
    Arrow,
}

impl Format {
    /// The format for a path, by extension.
    pub(crate) fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "arrow" | "ipc" | "feather" => Some(Format::Arrow),
            _ => None,
        }
    }
}

/// Reads a whole file into a DataFrame.
pub(crate) fn read(path: &Path) -> Result<DataFrame, FrameError> {
    let format = Format::of(path).ok_or(FrameError::UnsupportedType)?;
    let df = match format {
        Format::Parquet => ParquetReader::new(File::open(path)?).finish()?,
        Format::Arrow => IpcReader::new(File::open(path)?).finish()?,
        Format::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))?
            .finish()?,
    };
    Ok(df)
}

/// Writes `df` as Parquet (zstd) to `path`, replacing it atomically via a temporary sibling.
pub(crate) fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), FrameError> {
    let tmp = path.with_extension("parquet.tmp");
    {
        let file = File::create(&tmp)?;
        ParquetWriter::new(file).finish(df)?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The frame as a printed table. Formatting converts every date and time to chrono, which
/// panics on values outside its calendar (a date offset past year 262142, say); that becomes
/// an error instead of a crash.
pub(crate) fn render_guarded(df: &DataFrame) -> Result<String, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| df.to_string()))
        .map_err(|_| "the result cannot be printed: a value is outside the calendar".into())
}

/// Prints named outputs as tables, `== NAME (N rows)` above each (`hubworker run`, `hub
/// dispatch`). `Ok(false)` after saying so on stderr when one cannot be printed.
pub(crate) fn print_tables(
    outputs: &[(String, DataFrame)],
    out: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    for (name, frame) in outputs {
        let Ok(table) = render_guarded(frame) else {
            eprintln!(
                "run failed: output {name:?} has a value outside the calendar and cannot \
                 be printed; use --output DIR [execution_failed]"
            );
            return Ok(false);
        };
        writeln!(out, "== {} ({} rows)\n{table}", name, frame.height())?;
    }
    Ok(true)
}

/// An output's Arrow IPC stream (its result chunks, concatenated in order) as a frame.
pub(crate) fn from_ipc_stream(bytes: Vec<u8>) -> Result<DataFrame, PolarsError> {
    use polars::prelude::IpcStreamReader;
    IpcStreamReader::new(std::io::Cursor::new(bytes)).finish()
}
