//! The `Worker` gRPC service: proto in → checked calls on [`Worker`] → proto out. No business
//! logic here. `Execute` streams through a bounded channel from a spawned producer, so a client
//! that goes away stops the run.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use polars::prelude::SerWriter as _;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::status::{RunFailure, to_status};
use super::{RunEvent, Worker};
use crate::cache::CacheMode;
use crate::proto::sandbox::{InspectTask, PreviewTask, setup};
use crate::proto::worker_server::Worker as WorkerApi;
use crate::proto::{
    Accepted, CancelRequest, CancelResponse, Column, ExecuteEvent, ExecuteRequest, Finished,
    InspectRequest, InspectResponse, NodeSchema, PreviewRequest, PreviewResponse, Problem,
    Progress, ResultChunk, RunError as ProtoRunError, StatusRequest, StatusResponse, Table,
    ValidateRequest, ValidateResponse, execute_event, progress,
};
use crate::token::{Expect, Scope};
use crate::workflow::{Event, RunControl};

/// The service over a shared [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerService {
    worker: Arc<Worker>,
}

impl WorkerService {
    /// A service for `worker`.
    pub fn new(worker: Arc<Worker>) -> WorkerService {
        WorkerService { worker }
    }
}

/// The request's gRPC deadline (`grpc-timeout` header), if any.
fn deadline_of<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Counts a run's end in the metrics.
fn finish(worker: &Worker, started: Instant, code: tonic::Code) {
    let m = worker.metrics();
    m.runs_finished
        .get_or_create(&crate::metrics::Outcome {
            outcome: crate::metrics::outcome(code),
        })
        .inc();
    m.run_duration.observe(started.elapsed().as_secs_f64());
}

fn event(e: execute_event::Event) -> ExecuteEvent {
    ExecuteEvent { event: Some(e) }
}

fn progress(e: &Event) -> ExecuteEvent {
    let (node, tool, state, rows) = match e {
        Event::Started { node, tool } => (node, tool, progress::State::Started, None),
        Event::Finished { node, tool, rows } => (
            node,
            tool,
            progress::State::Finished,
            rows.map(|r| r as u64),
        ),
    };
    event(execute_event::Event::Progress(Progress {
        node: node.clone(),
        tool: (*tool).to_owned(),
        state: state as i32,
        rows,
        from_cache: false,
    }))
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ExecuteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerApi for WorkerService {
    type ExecuteStream = EventStream;

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let deadline = deadline_of(&request);
        let req = request.into_inner();
        let worker = self.worker.clone();
        let slot = worker.slot().map_err(|f| to_status(&f))?;
        let checking = Instant::now();
        let (verified, wf) = worker
            .check(&req.token, &req.workflow_json, true)
            .map_err(|f| to_status(&f))?;
        let check_us = checking.elapsed().as_micros() as u64;
        worker.metrics().runs_started.inc();
        let limit = deadline.map_or(worker.config().run_timeout(), |d| {
            d.min(worker.config().run_timeout())
        });
        let control = RunControl::with_timeout(limit);
        let run_id = crate::hub::random_id();
        let mode = match (req.bypass_cache, req.update_cache) {
            (true, _) => CacheMode::Bypass,
            (false, true) => CacheMode::Update,
            (false, false) => CacheMode::Normal,
        };
        let chunk = worker.config().limits.result_chunk_bytes;
        let (out, rx) = tokio::sync::mpsc::channel::<Result<ExecuteEvent, Status>>(64);
        let span = tracing::info_span!("run", %run_id, worker_id = %worker.config().worker.id);
        // Cancellable from the Accepted event on, redeem included: a Cancel that arrives
        // before the run starts still stops it (the control stays cancelled).
        let registration = worker.register(&run_id, &control);
        tokio::spawn(
            async move {
                let (_slot, _registration) = (slot, registration);
                let started = Instant::now();
                let _ = out
                    .send(Ok(event(execute_event::Event::Accepted(Accepted {
                        run_id: run_id.clone(),
                    }))))
                    .await;
                // A client that goes away cancels the run.
                let watcher = {
                    let (out, control) = (out.clone(), control.clone());
                    tokio::spawn(async move {
                        out.closed().await;
                        control.cancel();
                    })
                };
                let redeeming = Instant::now();
                let sealed = match worker.redeem(&verified).await {
                    Ok(c) => c,
                    Err(f) => {
                        tracing::warn!(reason = %f.code(), "redeem failed");
                        finish(&worker, started, f.grpc_code());
                        let _ = out.send(Err(to_status(&f))).await;
                        watcher.abort();
                        return;
                    }
                };
                let redeem_us = redeeming.elapsed().as_micros() as u64;
                worker
                    .metrics()
                    .redeem_duration
                    .observe(redeeming.elapsed().as_secs_f64());
                let (tx, mut events) = tokio::sync::mpsc::channel::<RunEvent>(64);
                let run = {
                    let worker = worker.clone();
                    let control = control.clone();
                    tokio::spawn(async move { worker.run(wf, sealed, mode, control, tx).await })
                };
                while let Some(e) = events.recv().await {
                    let sent = match e {
                        RunEvent::Accepted(_) => Ok(()),
                        RunEvent::Progress(p) => out.send(Ok(progress(&p))).await,
                        RunEvent::ChildProgress {
                            node,
                            tool,
                            finished,
                            rows,
                        } => {
                            let state = if finished {
                                progress::State::Finished
                            } else {
                                progress::State::Started
                            };
                            let p = Progress {
                                node,
                                tool,
                                state: state as i32,
                                rows,
                                from_cache: false,
                            };
                            out.send(Ok(event(execute_event::Event::Progress(p)))).await
                        }
                        RunEvent::Input { node, rows, cached } => {
                            if cached {
                                worker.metrics().cache_hits.inc();
                            } else {
                                worker.metrics().cache_misses.inc();
                            }
                            let p = Progress {
                                node,
                                tool: "sql".to_owned(),
                                state: progress::State::Finished as i32,
                                rows: Some(rows as u64),
                                from_cache: cached,
                            };
                            out.send(Ok(event(execute_event::Event::Progress(p)))).await
                        }
                        RunEvent::Output { name, ipc } => {
                            let pieces: Vec<&[u8]> = if ipc.is_empty() {
                                vec![&[][..]]
                            } else {
                                ipc.chunks(chunk).collect()
                            };
                            let last = pieces.len().saturating_sub(1);
                            let mut r = Ok(());
                            for (seq, piece) in pieces.into_iter().enumerate() {
                                let c = ResultChunk {
                                    output: name.clone(),
                                    seq: seq as u32,
                                    arrow_ipc: piece.to_vec(),
                                    last: seq == last,
                                };
                                r = out.send(Ok(event(execute_event::Event::Result(c)))).await;
                                if r.is_err() {
                                    break;
                                }
                            }
                            r
                        }
                    };
                    if sent.is_err() {
                        control.cancel();
                    }
                }
                let result = run.await.unwrap_or(Err(RunFailure::Internal));
                watcher.abort();
                match result {
                    Ok(t) => {
                        finish(&worker, started, tonic::Code::Ok);
                        tracing::info!(
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "run finished"
                        );
                        let _ = out
                            .send(Ok(event(execute_event::Event::Finished(Finished {
                                run_id,
                                elapsed_ms: started.elapsed().as_millis() as u64,
                                check_us,
                                redeem_us,
                                load_us: t.load.as_micros() as u64,
                                compute_us: t.compute.as_micros() as u64,
                                encode_us: t.encode.as_micros() as u64,
                            }))))
                            .await;
                    }
                    Err(f) => {
                        finish(&worker, started, f.grpc_code());
                        tracing::warn!(reason = %f.code(), "run failed");
                        let _ = out
                            .send(Ok(event(execute_event::Event::Error(ProtoRunError {
                                code: f.code(),
                                message: f.message(),
                            }))))
                            .await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let cancelled = self.worker.cancel(&request.into_inner().run_id);
        Ok(Response::new(CancelResponse { cancelled }))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let req = request.into_inner();
        let sha = crate::workflow::workflow_sha256(&req.workflow_json).unwrap_or_default();
        match self.worker.check(&req.token, &req.workflow_json, false) {
            Ok((_, wf)) => Ok(Response::new(ValidateResponse {
                valid: true,
                problems: Vec::new(),
                nodes: wf
                    .schemas()
                    .map(|(id, tool, schema)| NodeSchema {
                        id: id.to_owned(),
                        tool: tool.to_owned(),
                        known: schema.is_some(),
                        columns: schema
                            .map(|s| {
                                s.iter()
                                    .map(|(n, t)| Column {
                                        name: n.to_string(),
                                        r#type: t.to_string(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect(),
                workflow_sha256: wf.sha256().to_owned(),
            })),
            Err(RunFailure::InvalidWorkflow(problems)) => Ok(Response::new(ValidateResponse {
                valid: false,
                problems: problems
                    .0
                    .into_iter()
                    .map(|p| Problem {
                        node: p.node.unwrap_or_default(),
                        field: p.field,
                        code: p.code.to_owned(),
                        message: p.message,
                    })
                    .collect(),
                nodes: Vec::new(),
                workflow_sha256: sha,
            })),
            Err(f) => Err(to_status(&f)),
        }
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let req = request.into_inner();
        let sealed = self
            .redeem_for(&req.token, &req.connection)
            .await
            .map_err(|f| to_status(&f))?;
        let task = setup::Task::Inspect(InspectTask {
            connection: req.connection.clone(),
        });
        let df = self
            .worker
            .table_task(task, &req.connection, sealed)
            .await
            .map_err(|f| to_status(&f))?;
        let col = |name: &str| -> Vec<Option<String>> {
            df.column(name)
                .ok()
                .and_then(|c| {
                    c.str()
                        .ok()
                        .map(|s| s.iter().map(|v| v.map(str::to_owned)).collect())
                })
                .unwrap_or_default()
        };
        let mut tables: Vec<Table> = Vec::new();
        for (((schema, name), column), kind) in col("schema")
            .into_iter()
            .zip(col("table"))
            .zip(col("column"))
            .zip(col("type"))
        {
            let (schema, name) = (schema.unwrap_or_default(), name.unwrap_or_default());
            if tables
                .last()
                .is_none_or(|t| t.schema != schema || t.name != name)
            {
                tables.push(Table {
                    schema: schema.clone(),
                    name: name.clone(),
                    columns: Vec::new(),
                });
            }
            if let (Some(t), Some(name)) = (tables.last_mut(), column) {
                t.columns.push(Column {
                    name,
                    r#type: kind.unwrap_or_default(),
                });
            }
        }
        Ok(Response::new(InspectResponse { tables }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        let req = request.into_inner();
        let sealed = self
            .redeem_for(&req.token, &req.connection)
            .await
            .map_err(|f| to_status(&f))?;
        let task = setup::Task::Preview(PreviewTask {
            connection: req.connection.clone(),
            schema: req.schema,
            table: req.table,
            rows: req.rows,
        });
        let mut df = self
            .worker
            .table_task(task, &req.connection, sealed)
            .await
            .map_err(|f| to_status(&f))?;
        let mut ipc = Vec::new();
        polars::prelude::IpcStreamWriter::new(&mut ipc)
            .finish(&mut df)
            .map_err(|_| to_status(&RunFailure::Internal))?;
        Ok(Response::new(PreviewResponse { arrow_ipc: ipc }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let w = &self.worker;
        Ok(Response::new(StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            worker_id: w.config().worker.id.clone(),
            capacity: w.config().worker.capacity,
            runs_in_flight: w.in_flight(),
            draining: w.draining(),
            isolation: w.isolation().as_str().to_owned(),
            confinements: w.confinements(),
        }))
    }
}

impl WorkerService {
    /// Verifies an `inspect` token for one connection and redeems it (still sealed).
    async fn redeem_for(
        &self,
        token: &str,
        connection: &str,
    ) -> Result<Vec<crate::proto::SealedCredential>, RunFailure> {
        let expect = Expect {
            scope: Scope::Inspect,
            workflow_sha256: None,
            connections: &[connection],
            consume: true,
        };
        let verified = self
            .worker
            .verifier()
            .verify(token, &expect, crate::hub::now())?;
        self.worker.redeem(&verified).await
    }
}
