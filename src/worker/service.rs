//! The `Worker` gRPC service: proto in → checked calls on [`Worker`] → proto out. No business
//! logic here. `Execute` hands the accepted run to `forward.rs`, which streams its events
//! through a byte-bounded outbox under the run's limits and the send timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::status::{RunFailure, to_status};
use super::{Validated, Worker, forward, runs};
use crate::cache::CacheMode;
use crate::connector::TableRef;
use crate::proto::worker_server::Worker as WorkerApi;
use crate::proto::{
    CancelRequest, CancelResponse, Column, ExecuteEvent, ExecuteRequest, InspectRequest,
    InspectResponse, NodeSchema, PreviewRequest, PreviewResponse, Problem, ProxyEvent,
    StatusRequest, StatusResponse, Table, ValidateRequest, ValidateResponse,
};
use crate::run::Task;
use crate::token::{Expect, Scope};
use crate::workflow::RunControl;

/// The service over a shared [`Worker`].
#[derive(Debug, Clone)]
pub(crate) struct WorkerService {
    worker: Arc<Worker>,
}

impl WorkerService {
    /// A service for `worker`.
    pub(crate) fn new(worker: Arc<Worker>) -> WorkerService {
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

type EventStream = Pin<Box<dyn Stream<Item = Result<ExecuteEvent, Status>> + Send>>;
type ProxyStream = Pin<Box<dyn Stream<Item = Result<ProxyEvent, Status>> + Send>>;

/// A proxy request's audit record, spooled when its stream ends: at its end, at a refusal, or
/// when the client goes away (dropped: `cancelled`).
struct ProxyAudit {
    worker: Arc<Worker>,
    record: Option<crate::audit::Entry>,
    outcome: Option<Result<(), RunFailure>>,
}

impl Drop for ProxyAudit {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let outcome =
            self.outcome
                .take()
                .unwrap_or(Err(RunFailure::Task(crate::run::TaskFailure::Engine(
                    crate::workflow::RunError::Cancelled,
                ))));
        (record.outcome, record.exit_class) = super::audit_sender::outcome(&outcome);
        record.duration_ms =
            u64::try_from(super::audit_sender::now_ms() - record.started_at_ms).unwrap_or(0);
        self.worker.audit(record);
    }
}

/// The proxy's events: the head, the body's pieces as they arrive, the end (or the refusal
/// that ended it).
fn proxy_events(upstream: crate::egress::Upstream, audit: ProxyAudit) -> ProxyStream {
    use crate::proto::proxy_event::Event;
    use crate::proto::{ProxyEnd, ProxyHead, ProxyHeader};
    use futures_util::StreamExt;
    let event = |e| ProxyEvent { event: Some(e) };
    let head = event(Event::Head(ProxyHead {
        status: u32::from(upstream.status),
        headers: upstream
            .headers
            .iter()
            .map(|(name, value)| ProxyHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    }));
    let body = futures_util::stream::unfold(Some((upstream, audit)), move |state| async move {
        let (mut up, mut audit) = state?;
        match up.chunk().await {
            Ok(Some(b)) => {
                if let Some(r) = audit.record.as_mut() {
                    r.bytes_out += b.len() as u64;
                }
                Some((Ok(event(Event::Data(b.to_vec()))), Some((up, audit))))
            }
            Ok(None) => {
                let sent = audit.record.as_ref().map_or(0, |r| r.bytes_out);
                audit.outcome = Some(Ok(()));
                Some((Ok(event(Event::End(ProxyEnd { bytes: sent }))), None))
            }
            Err(r) => {
                let f = RunFailure::Egress(r);
                let status = to_status(&f);
                audit.outcome = Some(Err(f));
                Some((Err(status), None))
            }
        }
    });
    Box::pin(futures_util::stream::once(async move { Ok(head) }).chain(body))
}

#[tonic::async_trait]
impl WorkerApi for WorkerService {
    type ExecuteStream = EventStream;
    type ProxyStream = ProxyStream;

    async fn proxy(
        &self,
        request: Request<crate::proto::ProxyRequest>,
    ) -> Result<Response<ProxyStream>, Status> {
        let mut record = None;
        let result = self.worker.proxy(request.into_inner(), &mut record).await;
        let mut audit = ProxyAudit {
            worker: self.worker.clone(),
            record,
            outcome: None,
        };
        match result {
            Ok(upstream) => Ok(Response::new(proxy_events(upstream, audit))),
            Err(f) => {
                let status = to_status(&f);
                audit.outcome = Some(Err(f));
                Err(status)
            }
        }
    }

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let deadline = deadline_of(&request);
        let req = request.into_inner();
        let worker = self.worker.clone();
        // The run's one snapshot of the configuration: a reload applies to the next run.
        let config = worker.config();
        let slot = worker.slot().map_err(|f| to_status(&f))?;
        let checking = Instant::now();
        let (verified, wf) = worker
            .check_off_runtime(req.token, req.workflow_json, req.params_json, true)
            .await
            .map_err(|f| to_status(&f))?;
        let check_us = checking.elapsed().as_micros() as u64;
        worker.metrics().runs_started.inc();
        let limit = deadline.map_or(config.run_timeout(), |d| d.min(config.run_timeout()));
        let mode = match (req.bypass_cache, req.update_cache) {
            (true, _) => CacheMode::Bypass,
            (false, true) => CacheMode::Update,
            (false, false) => CacheMode::Normal,
        };
        let stream = forward::start(forward::Dispatch {
            worker,
            config,
            verified,
            wf,
            mode,
            control: RunControl::with_timeout(limit),
            run_id: runs::random_id(),
            check_us,
            slot,
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel(
        &self,
        request: Request<CancelRequest>,
    ) -> Result<Response<CancelResponse>, Status> {
        let req = request.into_inner();
        let cancelled = self
            .worker
            .cancel(&req.run_id, &req.cancel_secret)
            .map_err(|f| to_status(&f))?;
        Ok(Response::new(CancelResponse { cancelled }))
    }

    async fn validate(
        &self,
        request: Request<ValidateRequest>,
    ) -> Result<Response<ValidateResponse>, Status> {
        let req = request.into_inner();
        let validated = self
            .worker
            .validate(req.token, req.workflow_json, req.params_json)
            .await
            .map_err(|f| to_status(&f))?;
        Ok(Response::new(match validated {
            Validated::Valid(wf) => ValidateResponse {
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
            },
            Validated::Invalid { sha256, problems } => ValidateResponse {
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
                workflow_sha256: sha256,
            },
        }))
    }

    async fn inspect(
        &self,
        request: Request<InspectRequest>,
    ) -> Result<Response<InspectResponse>, Status> {
        let req = request.into_inner();
        let mut record = None;
        let result = async {
            let sealed = self
                .redeem_for(&req.token, &req.connection, "inspect", &mut record)
                .await?;
            let task = Task::Inspect {
                connection: req.connection.clone(),
            };
            self.worker.table_task(task, &req.connection, sealed).await
        }
        .await;
        self.audit(record, &result, |a| a.tables.len() as u64, |_| 0);
        let answer = result.map_err(|f| to_status(&f))?;
        let tables = answer
            .tables
            .into_iter()
            .map(|t| Table {
                schema: t.schema,
                name: t.name,
                columns: t
                    .columns
                    .into_iter()
                    .map(|c| Column {
                        name: c.name,
                        r#type: c.kind,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(InspectResponse { tables }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        let req = request.into_inner();
        let mut record = None;
        let result = async {
            let sealed = self
                .redeem_for(&req.token, &req.connection, "preview", &mut record)
                .await?;
            let task = Task::Preview {
                connection: req.connection.clone(),
                table: TableRef {
                    schema: (!req.schema.is_empty()).then_some(req.schema),
                    name: req.table,
                },
                rows: req.rows as usize,
            };
            self.worker.table_task(task, &req.connection, sealed).await
        }
        .await;
        self.audit(record, &result, |_| 0, |a| a.ipc.len() as u64);
        let answer = result.map_err(|f| to_status(&f))?;
        Ok(Response::new(PreviewResponse {
            arrow_ipc: answer.ipc,
        }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let w = &self.worker;
        let found = w.confinements();
        Ok(Response::new(StatusResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            worker_id: w.config().worker.id.clone(),
            capacity: w.config().worker.capacity,
            runs_in_flight: w.in_flight(),
            draining: w.draining(),
            isolation: w.isolation().as_str().to_owned(),
            confinements: found.active(),
            confinement_states: found
                .states
                .into_iter()
                .map(|c| crate::proto::ConfinementState {
                    name: c.name,
                    active: c.active,
                    detail: c.detail,
                })
                .collect(),
            landlock_abi: found.landlock_abi,
        }))
    }
}

impl WorkerService {
    /// Spools the audit record of an inspect or preview (when its token was accepted).
    fn audit<T>(
        &self,
        record: Option<crate::audit::Entry>,
        result: &Result<T, RunFailure>,
        rows: impl Fn(&T) -> u64,
        bytes: impl Fn(&T) -> u64,
    ) {
        let Some(mut record) = record else { return };
        (record.outcome, record.exit_class) = super::audit_sender::outcome(result);
        record.duration_ms =
            u64::try_from(super::audit_sender::now_ms() - record.started_at_ms).unwrap_or(0);
        if let Ok(answer) = result {
            (record.rows_out, record.bytes_out) = (rows(answer), bytes(answer));
        }
        self.worker.audit(record);
    }

    /// Verifies an `inspect` token for one connection and redeems it (still sealed); once the
    /// token is accepted, `record` holds the task's audit record.
    async fn redeem_for(
        &self,
        token: &str,
        connection: &str,
        kind: &'static str,
        record: &mut Option<crate::audit::Entry>,
    ) -> Result<Vec<crate::proto::SealedCredential>, RunFailure> {
        let expect = Expect {
            scope: Scope::Inspect,
            workflow_sha256: None,
            params_sha256: None,
            connections: &[connection],
            consume: true,
        };
        self.worker.learn_kid_of(token).await;
        let verified = self
            .worker
            .verifier()
            .verify(token, &expect, crate::token::now())
            .map_err(|e| {
                let f = RunFailure::Token(e);
                self.worker.record_refusal(&f, token);
                f
            })?;
        *record = Some(super::audit_sender::entry(
            kind,
            &super::runs::random_id(),
            &verified.claims,
        ));
        self.worker.redeem(&verified).await
    }
}
