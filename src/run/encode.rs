//! Outputs as Arrow IPC streams, encoded batch by batch as the engine produces them and
//! reported in pieces of at most the run's chunk size, so an output's bytes leave while the
//! plan still runs and no more than one piece (plus one batch) of it waits here.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use polars::prelude::*;
use polars_arrow::io::ipc::write::{StreamWriter, WriteOptions};

use super::{Events, RunEvent, TaskFailure};

/// Rows per IPC record batch (as polars-io writes streams).
const BATCH_ROWS: usize = 512 * 512;

/// The bytes a stream writer has written and nobody has taken yet.
#[derive(Clone, Default)]
struct Buffer(Rc<RefCell<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One output's stream.
struct Stream {
    name: String,
    writer: StreamWriter<Buffer>,
    buffer: Buffer,
}

/// Every output of one task, each one Arrow IPC stream, in pieces.
pub(crate) struct Encoder {
    /// Largest piece (0: one piece per output, at its end).
    chunk: usize,
    streams: Vec<Stream>,
}

impl Encoder {
    pub(crate) fn new(chunk: usize) -> Self {
        Encoder {
            chunk,
            streams: Vec::new(),
        }
    }

    /// Encodes `rows` as the next record batches of output `name` (its stream starts, with
    /// the rows' schema, at its first batch) and reports every full piece.
    pub(crate) fn rows(
        &mut self,
        events: &mut dyn Events,
        name: &str,
        mut rows: DataFrame,
    ) -> Result<(), TaskFailure> {
        let at = match self.streams.iter().position(|s| s.name == name) {
            Some(at) => at,
            None => {
                let buffer = Buffer::default();
                let mut writer =
                    StreamWriter::new(buffer.clone(), WriteOptions { compression: None });
                writer
                    .start(&rows.schema().to_arrow(CompatLevel::oldest()), None)
                    .map_err(|_| ENCODING)?;
                self.streams.push(Stream {
                    name: name.to_owned(),
                    writer,
                    buffer,
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[at];
        let batches = polars_core::frame::chunk_df_for_writing(&mut rows, BATCH_ROWS)
            .map_err(|_| ENCODING)?;
        for batch in batches.iter_chunks(CompatLevel::oldest(), true) {
            stream.writer.write(&batch, None).map_err(|_| ENCODING)?;
        }
        drop(batches);
        drop(rows);
        if self.chunk > 0 {
            let stream = &self.streams[at];
            loop {
                let piece = {
                    let mut bytes = stream.buffer.0.borrow_mut();
                    if bytes.len() < self.chunk {
                        break;
                    }
                    let rest = bytes.split_off(self.chunk);
                    std::mem::replace(&mut *bytes, rest)
                };
                events.emit(RunEvent::Output {
                    name: name.to_owned(),
                    ipc: piece,
                    last: false,
                })?;
            }
        }
        Ok(())
    }

    /// Ends output `name`'s stream and reports what is left of it, the last piece marked.
    pub(crate) fn end(&mut self, events: &mut dyn Events, name: &str) -> Result<(), TaskFailure> {
        let Some(at) = self.streams.iter().position(|s| s.name == name) else {
            return Err(TaskFailure::Internal("an output ended before it began"));
        };
        let mut stream = self.streams.swap_remove(at);
        stream.writer.finish().map_err(|_| ENCODING)?;
        drop(stream.writer);
        let bytes = std::mem::take(&mut *stream.buffer.0.borrow_mut());
        let size = if self.chunk == 0 {
            bytes.len().max(1)
        } else {
            self.chunk
        };
        let mut pieces = bytes.chunks(size).peekable();
        while let Some(piece) = pieces.next() {
            events.emit(RunEvent::Output {
                name: name.to_owned(),
                ipc: piece.to_vec(),
                last: pieces.peek().is_none(),
            })?;
        }
        Ok(())
    }
}

const ENCODING: TaskFailure = TaskFailure::Internal("encoding rows as Arrow IPC");
