//! Owns how a run's domain events look to a gRPC client: one conversion from
//! [`RunEvent`] to `ExecuteEvent`, numbering each output's chunks. Never counts, logs or
//! decides anything about the run.

use std::collections::HashMap;

use super::RunEvent;
use crate::proto::{ExecuteEvent, Progress, ResultChunk, execute_event, progress};

/// One proto event.
pub(super) fn event(e: execute_event::Event) -> ExecuteEvent {
    ExecuteEvent { event: Some(e) }
}

/// The next chunk number of each output.
#[derive(Debug, Default)]
pub(super) struct Chunks(HashMap<String, u32>);

/// A run event as the client sees it (`None` for events a run never streams).
pub(super) fn to_proto(e: RunEvent, chunks: &mut Chunks) -> Option<ExecuteEvent> {
    let progress = |node, tool, finished: bool, rows, from_cache| {
        let state = if finished {
            progress::State::Finished
        } else {
            progress::State::Started
        };
        event(execute_event::Event::Progress(Progress {
            node,
            tool,
            state: state as i32,
            rows,
            from_cache,
        }))
    };
    Some(match e {
        RunEvent::Progress {
            node,
            tool,
            finished,
            rows,
        } => progress(node, tool, finished, rows, false),
        RunEvent::Input { node, rows, cached } => {
            progress(node, "sql".to_owned(), true, Some(rows), cached)
        }
        RunEvent::Output { name, ipc, last } => {
            let n = chunks.0.entry(name.clone()).or_insert(0);
            let chunk = ResultChunk {
                output: name,
                seq: *n,
                arrow_ipc: ipc,
                last,
            };
            *n += 1;
            event(execute_event::Event::Result(chunk))
        }
        RunEvent::Tables(_) => return None,
    })
}
