//! Tasks in the daemon's own process (`isolation = "inline"`: development and profiling only,
//! refused in production). Credentials are opened here and dropped as soon as the inputs are
//! loaded. Outputs leave in pieces through the run's byte-bounded channel, so a slow client
//! holds the run (which the forwarder's limits then stop) instead of piling results up.

use std::collections::HashMap;
use std::time::Duration;

use polars::prelude::*;

use super::{EventSender, RunEvent, RunFailure, RunTimings, Worker, wait_stopped};
use crate::cache::{CacheMode, Source};
use crate::connector::{QueryOptions, ResultLimits};
use crate::creds::Credential;
use crate::proto::sandbox::{InspectTask, PreviewTask, setup};
use crate::workflow::{self, Event, RunControl, RunError, Workflow};

/// Why a run must stop, as its control says (a closed event channel means it is stopping).
fn stop_error(control: &RunControl) -> RunFailure {
    RunFailure::Run(control.check().err().unwrap_or(RunError::Cancelled))
}

/// Sends one event, waiting for room; fails with the reason the run is being stopped.
async fn emit(
    events: &EventSender,
    control: &RunControl,
    event: RunEvent,
) -> Result<(), RunFailure> {
    events.send(event).await.map_err(|_| stop_error(control))
}

impl Worker {
    /// Runs a checked workflow here with opened credentials.
    pub(super) async fn run_inline(
        &self,
        wf: Workflow,
        credentials: Vec<Credential>,
        mode: CacheMode,
        control: &RunControl,
        events: &EventSender,
    ) -> Result<RunTimings, RunFailure> {
        let mut timings = RunTimings::default();
        let started = std::time::Instant::now();
        let config = self.config();
        let options = QueryOptions {
            limits: ResultLimits {
                max_rows: config.limits.max_rows_per_query,
                ..ResultLimits::default()
            },
            timeout: Duration::from_secs(config.limits.query_timeout_secs),
        };
        let by_name: HashMap<&str, &Credential> = credentials
            .iter()
            .map(|c| (c.connection.as_str(), c))
            .collect();
        let mut inputs = HashMap::new();
        for (node, connection, query) in wf.queries() {
            control.check().map_err(RunFailure::Run)?;
            let cred = by_name
                .get(connection)
                .ok_or_else(|| RunFailure::MissingCredential(connection.to_owned()))?;
            let target = cred
                .target(crate::hub::now())
                .map_err(RunFailure::Credential)?;
            if target.dialect != query.dialect() {
                return Err(RunFailure::DialectMismatch(node.to_owned()));
            }
            let started = Event::Started {
                node: node.to_owned(),
                tool: "sql",
            };
            emit(events, control, RunEvent::Progress(started)).await?;
            let key = self.cache.key(cred, query.sql());
            let ttl = config.cache_ttl(connection);
            let load = crate::connector::query_owned(target, query.clone(), options);
            let (frame, source) = tokio::select! {
                r = self.cache.get_or_load(key, ttl, mode, load) => r.map_err(|e| RunFailure::Query(e.code()))?,
                () = wait_stopped(control) => return Err(stop_error(control)),
            };
            let input = RunEvent::Input {
                node: node.to_owned(),
                rows: frame.height(),
                cached: source == Source::Hit,
            };
            emit(events, control, input).await?;
            inputs.insert(node.to_owned(), frame);
        }
        // The credentials are not needed for computing: drop (zeroize) them now.
        drop(by_name);
        drop(credentials);
        timings.load = started.elapsed();
        let started = std::time::Instant::now();

        // Progress events are few (two per node): they may wait unbounded for the forwarder.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let control_for_plan = control.clone();
        let plan = tokio::task::spawn_blocking(move || {
            workflow::execute(&wf, inputs, &control_for_plan, &mut |e| {
                let _ = tx.send(e);
            })
        });
        let mut plan = std::pin::pin!(plan);
        let outputs = loop {
            tokio::select! {
                Some(e) = rx.recv() => emit(events, control, RunEvent::Progress(e)).await?,
                done = &mut plan => {
                    while let Ok(e) = rx.try_recv() {
                        emit(events, control, RunEvent::Progress(e)).await?;
                    }
                    break done.map_err(|_| RunFailure::Internal)?.map_err(RunFailure::Run)?;
                }
            }
        };
        timings.compute = started.elapsed();
        let started = std::time::Instant::now();
        let mut encoded = Vec::with_capacity(outputs.len());
        for mut o in outputs {
            let mut ipc = Vec::new();
            IpcStreamWriter::new(&mut ipc)
                .finish(&mut o.frame)
                .map_err(|_| RunFailure::Internal)?;
            encoded.push((o.name, ipc));
        }
        timings.encode = started.elapsed();
        let chunk = config.limits.result_chunk_bytes.max(1);
        for (name, ipc) in encoded {
            let pieces: Vec<&[u8]> = if ipc.is_empty() {
                vec![&[]]
            } else {
                ipc.chunks(chunk).collect()
            };
            let last = pieces.len() - 1;
            for (i, piece) in pieces.into_iter().enumerate() {
                let piece = RunEvent::Output {
                    name: name.clone(),
                    ipc: piece.to_vec(),
                    last: i == last,
                };
                emit(events, control, piece).await?;
            }
        }
        Ok(timings)
    }
}

/// Inspect or preview in this process (inline isolation).
pub(super) async fn table_task(
    task: setup::Task,
    target: crate::connector::Target,
) -> Result<DataFrame, RunFailure> {
    let options = QueryOptions::default();
    let q = |e: crate::connector::ConnectorError| RunFailure::Query(e.code());
    match task {
        setup::Task::Inspect(InspectTask { .. }) => {
            crate::sandbox::child::inspect_owned(target, options).await
        }
        setup::Task::Preview(PreviewTask {
            schema,
            table,
            rows,
            ..
        }) => {
            let table = crate::connector::TableRef {
                schema: (!schema.is_empty()).then_some(schema),
                name: table,
            };
            let n = (rows as usize).clamp(1, crate::connector::inspect::MAX_PREVIEW_ROWS);
            crate::connector::preview_owned(target, table, n, options)
                .await
                .map_err(q)
        }
        setup::Task::Run(_) => Err(RunFailure::Internal),
    }
}
