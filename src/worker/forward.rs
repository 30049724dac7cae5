//! One `Execute` from acceptance to its last event: redeem, run, and forward the run's events
//! to the client through a byte-bounded outbox. After `Accepted`, every failure (a refused
//! Redeem included) ends the stream the same way: a `RunError` event with the failure's code,
//! then the status `to_status` maps it to (same code, in the message and `hubworker-reason`).
//! Every wait on the client is bounded, by the run's control (`Cancel`, the deadline) and by
//! `limits.send_timeout_secs`: a client that does not take an event within it loses its run
//! (`client_stalled`: logged, counted), the run is stopped (its child killed), its slot freed,
//! and whatever waited for the client dropped. Never logs the cancel secret; holds at most a
//! few result chunks per run.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio_stream::Stream;
use tonic::Status;
use tracing::Instrument as _;

use super::events::{Chunks, event, to_proto};
use super::status::{RunFailure, to_status};
use super::{RunEvent, RunTimings, Slot, Worker, wait_stopped};
use crate::cache::CacheMode;
use crate::config::Config;
use crate::proto::{Accepted, ExecuteEvent, Finished, RunError as ProtoRunError, execute_event};
use crate::run::channel::{self as bounded, Weigh};
use crate::token::Verified;
use crate::workflow::{RunControl, RunError, Workflow};

/// What goes to the client: an event, or the status that ends the stream.
type Item = Result<ExecuteEvent, Status>;

impl Weigh for Item {
    fn weight(&self) -> usize {
        match self {
            Ok(e) => 64 + e.encoded_len(),
            Err(_) => 256,
        }
    }
}

/// A checked, accepted run, ready to start.
pub(crate) struct Dispatch {
    pub(crate) worker: Arc<Worker>,
    /// The run's snapshot of the configuration, taken when it was accepted.
    pub(crate) config: Arc<Config>,
    pub(crate) verified: Verified,
    pub(crate) wf: Workflow,
    pub(crate) mode: CacheMode,
    pub(crate) control: RunControl,
    pub(crate) run_id: String,
    pub(crate) check_us: u64,
    pub(crate) slot: Slot,
}

/// Starts the run on a task of its own; the stream of its events for the client.
pub(crate) fn start(dispatch: Dispatch) -> ResponseStream {
    let config = dispatch.config.clone();
    let (outbox, stream) = outbox(config.limits.event_budget());
    let span = tracing::info_span!("run", run_id = %dispatch.run_id, worker_id = %config.worker.id);
    tokio::spawn(drive(dispatch, outbox).instrument(span));
    stream
}

/// What waits for the client, shared by the run's side and the response stream.
struct Shared {
    rx: Option<bounded::Receiver<Item>>,
    /// A `RunError` to send once what waits is gone (when what waited was dropped with it).
    tail_event: Option<ExecuteEvent>,
    /// The status to end the stream with once what waits is gone.
    tail: Option<Status>,
    waker: Option<Waker>,
}

/// The response stream tonic polls as the client's HTTP/2 window allows.
pub(crate) struct ResponseStream {
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseStream").finish_non_exhaustive()
    }
}

impl Stream for ResponseStream {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let Ok(mut shared) = self.shared.lock() else {
            return Poll::Ready(None);
        };
        let shared = &mut *shared;
        if let Some(rx) = shared.rx.as_mut() {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
                Poll::Ready(None) => shared.rx = None,
                Poll::Pending => {
                    shared.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
        if let Some(e) = shared.tail_event.take() {
            return Poll::Ready(Some(Ok(e)));
        }
        Poll::Ready(shared.tail.take().map(Err))
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        // The client went away: drop what waited for it; the run's side sees it is closed.
        if let Ok(mut shared) = self.shared.lock() {
            shared.rx = None;
        }
    }
}

/// The run's side of the response stream.
struct Outbox {
    tx: bounded::Sender<Item>,
    shared: Arc<Mutex<Shared>>,
}

fn outbox(budget: usize) -> (Outbox, ResponseStream) {
    let (tx, rx) = bounded::channel(budget);
    let shared = Arc::new(Mutex::new(Shared {
        rx: Some(rx),
        tail_event: None,
        tail: None,
        waker: None,
    }));
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        ResponseStream { shared },
    )
}

impl Outbox {
    /// The stream ends with `status` after what is queued (the `RunError` event).
    fn end_with(&self, status: Status) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.tail = Some(status);
        }
    }

    /// Gives up on the client: what waits for it is dropped now, and the stream, should it be
    /// read again, ends as every failed run's does: `f`'s `RunError`, then its status.
    fn abandon(&self, f: &RunFailure) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.rx = None;
            shared.tail_event = Some(run_error(f));
            shared.tail = Some(to_status(f));
            if let Some(waker) = shared.waker.take() {
                waker.wake();
            }
        }
    }
}

/// The `RunError` event that ends a failed run's stream.
fn run_error(f: &RunFailure) -> ExecuteEvent {
    event(execute_event::Event::Error(ProtoRunError {
        code: f.code(),
        message: f.message(),
    }))
}

/// Why an event could not be handed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    /// The client did not take it within the send timeout.
    Stalled,
    /// The run must stop (Cancel or the deadline) while it waited.
    Stopped,
    /// The client went away.
    Gone,
}

/// Hands events to the client, never waiting past the run's control or the send timeout.
struct Link<'a> {
    outbox: &'a Outbox,
    control: &'a RunControl,
    timeout: Duration,
}

impl Link<'_> {
    async fn send(&self, event: ExecuteEvent) -> Result<(), Blocked> {
        tokio::select! {
            biased;
            sent = self.outbox.tx.send(Ok(event)) => sent.map_err(|_| Blocked::Gone),
            () = wait_stopped(self.control) => Err(Blocked::Stopped),
            () = tokio::time::sleep(self.timeout) => Err(Blocked::Stalled),
        }
    }

    /// The last event, after the run ended (its control may well say stop by then).
    async fn send_last(&self, event: ExecuteEvent) -> Result<(), Blocked> {
        tokio::select! {
            sent = self.outbox.tx.send(Ok(event)) => sent.map_err(|_| Blocked::Gone),
            () = tokio::time::sleep(self.timeout) => Err(Blocked::Stalled),
        }
    }
}

/// How the run and its forwarding ended.
struct Forwarded {
    result: Result<RunTimings, RunFailure>,
    redeem_us: u64,
    /// The credentials were redeemed (a failure before is logged as a failed redeem).
    redeemed: bool,
    /// Forwarding stopped while it waited on the client.
    blocked: Option<Blocked>,
    /// What went back, for the audit record.
    tally: Tally,
}

/// Rows and bytes of results sent, and inputs by where they came from.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    rows: u64,
    bytes: u64,
    cached: u32,
    fetched: u32,
}

impl Tally {
    fn count(&mut self, e: &RunEvent) {
        match e {
            RunEvent::Input { cached: true, .. } => self.cached += 1,
            RunEvent::Input { cached: false, .. } => self.fetched += 1,
            RunEvent::Output { ipc, .. } => self.bytes += ipc.len() as u64,
            RunEvent::Progress {
                tool,
                finished: true,
                rows: Some(rows),
                ..
            } if tool == "output" => self.rows += rows,
            _ => {}
        }
    }
}

async fn drive(dispatch: Dispatch, outbox: Outbox) {
    let Dispatch {
        worker,
        config,
        verified,
        wf,
        mode,
        control,
        run_id,
        check_us,
        slot,
    } = dispatch;
    let started = Instant::now();
    let mut record = super::audit_sender::entry("run", &run_id, &verified.claims);
    let timeout = config.send_timeout();
    let link = Link {
        outbox: &outbox,
        control: &control,
        timeout,
    };
    // Cancellable from the Accepted event on, redeem included: a Cancel that arrives before
    // the run starts still stops it (the control stays cancelled).
    let (registration, secret) = worker.register(&run_id, &control);
    let accepted = event(execute_event::Event::Accepted(Accepted {
        run_id: run_id.clone(),
        cancel_secret: secret.expose().to_owned(),
    }));
    drop(secret);
    // A client that goes away cancels the run.
    let watcher = {
        let (tx, control) = (outbox.tx.clone(), control.clone());
        tokio::spawn(async move {
            tx.closed().await;
            control.cancel();
        })
    };
    let forwarded = match link.send(accepted).await {
        Ok(()) => {
            let run = Start {
                worker: worker.clone(),
                config,
                verified,
                wf,
                mode,
            };
            run_and_forward(run, &control, &link).await
        }
        Err(blocked) => Forwarded {
            result: Err(RunFailure::stopped(&control)),
            redeem_us: 0,
            redeemed: false,
            blocked: Some(blocked),
            tally: Tally::default(),
        },
    };
    // The run is over: its slot and its entry for Cancel go now, before the last event
    // (which may wait on the client).
    drop(registration);
    drop(slot);
    let Forwarded {
        result,
        redeem_us,
        redeemed,
        blocked,
        tally,
    } = forwarded;
    let result = match result {
        Ok(t) => {
            let finished = event(execute_event::Event::Finished(Finished {
                run_id,
                elapsed_ms: started.elapsed().as_millis() as u64,
                check_us,
                redeem_us,
                load_us: t.load.as_micros() as u64,
                compute_us: t.compute.as_micros() as u64,
                encode_us: t.encode.as_micros() as u64,
            }));
            match link.send_last(finished).await {
                Err(Blocked::Stalled) => Err(RunFailure::ClientStalled),
                _ => Ok(()),
            }
        }
        Err(f) => Err(f),
    };
    if let Err(f) = &result {
        // A client that was not reading gets nothing more: what waited for it is dropped now.
        let unread = blocked.is_some() || matches!(f, RunFailure::ClientStalled);
        if unread {
            outbox.abandon(f);
        } else {
            outbox.end_with(to_status(f));
            if link.send_last(run_error(f)).await.is_err() {
                outbox.abandon(f);
            }
        }
    }
    watcher.abort();
    finish(&worker, started, &result, redeemed, timeout);
    (record.outcome, record.exit_class) = super::audit_sender::outcome(&result);
    record.duration_ms = started.elapsed().as_millis() as u64;
    (record.rows_out, record.bytes_out) = (tally.rows, tally.bytes);
    (record.inputs_cached, record.inputs_fetched) = (tally.cached, tally.fetched);
    worker.audit(record);
}

/// Redeems, runs, and forwards the run's events until it ends or forwarding must stop.
/// What starting a redeemed run takes.
struct Start {
    worker: Arc<Worker>,
    config: Arc<Config>,
    verified: Verified,
    wf: Workflow,
    mode: CacheMode,
}

async fn run_and_forward(run: Start, control: &RunControl, link: &Link<'_>) -> Forwarded {
    let Start {
        worker,
        config,
        verified,
        wf,
        mode,
    } = run;
    let worker = &worker;
    let redeeming = Instant::now();
    let sealed = match worker.redeem(&verified).await {
        Ok(c) => c,
        Err(f) => {
            return Forwarded {
                result: Err(f),
                redeem_us: 0,
                redeemed: false,
                blocked: None,
                tally: Tally::default(),
            };
        }
    };
    drop(verified);
    let redeem_us = redeeming.elapsed().as_micros() as u64;
    worker
        .metrics()
        .redeem_duration
        .observe(redeeming.elapsed().as_secs_f64());
    let (tx, mut events) = bounded::channel::<RunEvent>(config.limits.event_budget());
    let run = {
        let worker = worker.clone();
        let control = control.clone();
        tokio::spawn(async move { worker.run(wf, sealed, mode, config, control, tx).await })
    };
    let mut chunks = Chunks::default();
    let mut blocked = None;
    let mut tally = Tally::default();
    while let Some(e) = events.recv().await {
        tally.count(&e);
        if let RunEvent::Input { cached, .. } = &e {
            let m = worker.metrics();
            if *cached {
                m.cache_hits.inc();
            } else {
                m.cache_misses.inc();
            }
        }
        let Some(e) = to_proto(e, &mut chunks) else {
            continue;
        };
        if let Err(b) = link.send(e).await {
            blocked = Some(b);
            break;
        }
    }
    if matches!(blocked, Some(Blocked::Stalled | Blocked::Gone)) {
        control.cancel();
    }
    // A run waiting for room in the channel stops now (its child is killed).
    drop(events);
    let result = run.await.unwrap_or(Err(RunFailure::Internal));
    let result = match blocked {
        None => result,
        Some(Blocked::Stalled) => Err(RunFailure::ClientStalled),
        Some(Blocked::Gone) => Err(RunFailure::Task(crate::run::TaskFailure::Engine(
            RunError::Cancelled,
        ))),
        // Whatever the run managed, the client did not get it all.
        Some(Blocked::Stopped) => match result {
            Ok(_) => Err(RunFailure::stopped(control)),
            Err(f) => Err(f),
        },
    };
    Forwarded {
        result,
        redeem_us,
        redeemed: true,
        blocked,
        tally,
    }
}

/// Counts and logs a run's end.
fn finish(
    worker: &Worker,
    started: Instant,
    result: &Result<(), RunFailure>,
    redeemed: bool,
    send_timeout: Duration,
) {
    let m = worker.metrics();
    let outcome = match result {
        Ok(()) => "ok",
        Err(f) => f.outcome(),
    };
    m.runs_finished
        .get_or_create(&crate::metrics::Outcome { outcome })
        .inc();
    m.run_duration.observe(started.elapsed().as_secs_f64());
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => tracing::info!(elapsed_ms, "run finished"),
        Err(RunFailure::ClientStalled) => tracing::warn!(
            reason = "client_stalled",
            send_timeout_secs = send_timeout.as_secs(),
            elapsed_ms,
            "run failed: the client stopped reading; the run was stopped and its slot freed"
        ),
        Err(f) if !redeemed => tracing::warn!(reason = %f.code(), "redeem failed"),
        Err(f) => tracing::warn!(reason = %f.code(), elapsed_ms, "run failed"),
    }
}
