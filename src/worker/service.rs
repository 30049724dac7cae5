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

use super::status::{RunFailure, to_status};
use super::{RunEvent, Worker};
use crate::cache::CacheMode;
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

/// A text column's values (nulls as empty strings); empty if the column is missing.
fn strings(df: &polars::prelude::DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .ok()
        .and_then(|c| {
            c.str()
                .ok()
                .map(|s| s.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
        })
        .unwrap_or_default()
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
        let limit = deadline.map_or(worker.config.run_timeout(), |d| {
            d.min(worker.config.run_timeout())
        });
        let control = RunControl::with_timeout(limit);
        let run_id = crate::hub::random_id();
        let mode = match (req.bypass_cache, req.update_cache) {
            (true, _) => CacheMode::Bypass,
            (false, true) => CacheMode::Update,
            (false, false) => CacheMode::Normal,
        };
        let chunk = worker.config.limits.result_chunk_bytes;
        let (out, rx) = tokio::sync::mpsc::channel::<Result<ExecuteEvent, Status>>(64);
        tokio::spawn(async move {
            let _slot = slot;
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
            let credentials = match worker.redeem(&verified).await {
                Ok(c) => c,
                Err(f) => {
                    tracing::warn!(%run_id, reason = %f.code(), "redeem failed");
                    let _ = out.send(Err(to_status(&f))).await;
                    watcher.abort();
                    return;
                }
            };
            let redeem_us = redeeming.elapsed().as_micros() as u64;
            let (tx, mut events) = tokio::sync::mpsc::channel::<RunEvent>(64);
            let run = {
                let worker = worker.clone();
                let run_id = run_id.clone();
                let control = control.clone();
                tokio::spawn(async move {
                    worker
                        .run(&run_id, wf, credentials, mode, control, tx)
                        .await
                })
            };
            while let Some(e) = events.recv().await {
                let sent = match e {
                    RunEvent::Accepted(_) => Ok(()),
                    RunEvent::Progress(p) => out.send(Ok(progress(&p))).await,
                    RunEvent::Input { node, rows, cached } => {
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
                    tracing::info!(%run_id, elapsed_ms = started.elapsed().as_millis() as u64, "run finished");
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
                    tracing::warn!(%run_id, reason = %f.code(), "run failed");
                    let _ = out
                        .send(Ok(event(execute_event::Event::Error(ProtoRunError {
                            code: f.code(),
                            message: f.message(),
                        }))))
                        .await;
                }
            }
        });
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
        let target = self
            .inspect_target(&req.token, &req.connection)
            .await
            .map_err(|f| to_status(&f))?;
        let options = crate::connector::QueryOptions::default();
        let tables = crate::connector::tables_owned(target.clone(), options)
            .await
            .map_err(|e| to_status(&RunFailure::Query(e.code())))?;
        let (schemas, names) = (strings(&tables, "schema"), strings(&tables, "table"));
        let mut out = Vec::with_capacity(names.len());
        for (schema, name) in schemas.into_iter().zip(names) {
            let table = crate::connector::TableRef {
                schema: (!schema.is_empty()).then(|| schema.clone()),
                name: name.clone(),
            };
            let cols = crate::connector::columns_owned(target.clone(), table, options)
                .await
                .map_err(|e| to_status(&RunFailure::Query(e.code())))?;
            let columns = strings(&cols, "column")
                .into_iter()
                .zip(strings(&cols, "type"))
                .map(|(name, r#type)| Column { name, r#type })
                .collect();
            out.push(Table {
                schema,
                name,
                columns,
            });
        }
        Ok(Response::new(InspectResponse { tables: out }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        let req = request.into_inner();
        let target = self
            .inspect_target(&req.token, &req.connection)
            .await
            .map_err(|f| to_status(&f))?;
        let table = crate::connector::TableRef {
            schema: (!req.schema.is_empty()).then_some(req.schema),
            name: req.table,
        };
        let n = (req.rows as usize).clamp(1, crate::connector::inspect::MAX_PREVIEW_ROWS);
        let mut df = crate::connector::preview_owned(target, table, n, Default::default())
            .await
            .map_err(|e| to_status(&RunFailure::Query(e.code())))?;
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
            worker_id: w.config.worker.id.clone(),
            capacity: w.config.worker.capacity,
            runs_in_flight: w.in_flight(),
            draining: w.draining(),
            // Runs execute in the daemon's process until the sandbox lands (issue #7).
            isolation: "inline".to_owned(),
            confinements: Vec::new(),
        }))
    }
}

impl WorkerService {
    /// Verifies an `inspect` token for one connection, redeems it, and opens the credential.
    async fn inspect_target(
        &self,
        token: &str,
        connection: &str,
    ) -> Result<crate::connector::Target, RunFailure> {
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
        let creds = self.worker.redeem(&verified).await?;
        let cred = creds
            .iter()
            .find(|c| c.connection == connection)
            .ok_or_else(|| RunFailure::MissingCredential(connection.to_owned()))?;
        cred.target(crate::hub::now())
            .map_err(RunFailure::Credential)
    }
}
