//! The daemon's half of the conversation with one run child (see the protocol file for its
//! shape): sending the task, answering `Need`s from the result cache (cached rows go to the
//! child as the very bytes the cache holds), forwarding the child's events into the run's
//! bounded event channel. Never waits on the child or the client without the run's control
//! able to stop it (the caller selects on it), and never reports a failure that belongs to
//! another run's child as this run's.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use super::{Exit, ZeroizeAll, message, wire};
use crate::cache::{CacheKey, CacheMode, ResultCache, Rows, Source};
use crate::proto::sandbox::{Answer, FromChild, Setup, ToChild, answer, from_child, to_child};
use crate::run::{RunEvent, RunTimings, TaskFailure, channel};
use crate::workflow::{RunControl, RunError};

/// What the conversation needs from the run besides the pipes.
pub(super) struct Context<'a> {
    /// The result cache.
    pub(super) cache: &'a ResultCache,
    /// Cache mode.
    pub(super) mode: CacheMode,
    /// Cache TTL per connection.
    pub(super) ttl: &'a (dyn Fn(&str) -> Duration + Sync),
    /// Cancel and deadline.
    pub(super) control: &'a RunControl,
    /// The run's events; bounded in bytes, so a client that reads slowly slows the child down
    /// instead of piling its outputs up in the daemon.
    pub(super) events: &'a channel::Sender<RunEvent>,
}

/// Why the conversation with a child ended early.
pub(super) enum End {
    /// The child reported an ordinary failure.
    Failed(TaskFailure),
    /// The pipe closed or broke: look at how the child exited.
    Gone,
    /// The child said something out of turn.
    Protocol(String),
    /// Outputs over the cap.
    OutputTooLarge,
    /// The run must stop (deadline or cancel).
    Stop(Exit),
    /// The child lacks a confinement `[sandbox] require` lists.
    Refused,
}

/// A frame whose `Setup` is wiped however its write ends: written, failed, or dropped halfway
/// (the run stopped while the write waited).
struct Wiped(ToChild);

impl Drop for Wiped {
    fn drop(&mut self) {
        if let Some(to_child::Msg::Setup(s)) = &mut self.0.msg {
            s.zeroize_all();
        }
    }
}

pub(super) type Frames = mpsc::Receiver<Result<(FromChild, usize), wire::WireError>>;

/// Reads frames from the child's stdout on a task of its own, so that the conversation can
/// wait on them alongside everything else. The cap bounds any one frame; one frame waits at
/// most, so a daemon that stops taking frames stops the child (its pipe fills).
pub(super) fn read_frames(mut stdout: pipe::Receiver, cap: u64) -> Frames {
    let (tx, rx) = mpsc::channel(1);
    let cap = usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    tokio::spawn(async move {
        loop {
            match wire::read_async::<FromChild, _>(&mut stdout, cap).await {
                Ok(Some(frame)) => {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

pub(super) async fn read_capped(mut stderr: pipe::Receiver, cap: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        if buf.len() < cap {
            buf.extend_from_slice(&chunk[..n.min(cap - buf.len())]);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub(super) async fn next(frames: &mut Frames) -> Result<from_child::Msg, End> {
    match frames.recv().await {
        Some(Ok((FromChild { msg: Some(m) }, _))) => Ok(m),
        Some(Ok((FromChild { msg: None }, _))) => Err(End::Protocol("an empty frame".into())),
        Some(Err(wire::WireError::TooLarge(_))) => Err(End::OutputTooLarge),
        Some(Err(_)) | None => Err(End::Gone),
    }
}

async fn send(stdin: &mut pipe::Sender, msg: to_child::Msg) -> Result<(), End> {
    wire::write_async(stdin, &ToChild { msg: Some(msg) })
        .await
        .map_err(|_| End::Gone)
}

/// The daemon's half of the conversation (see the protocol file for its shape). The setup
/// frame is wiped once written. The child's `Ready` goes to `ready`, which says whether the
/// child may go on (it has every confinement required).
pub(super) async fn converse(
    stdin: &mut pipe::Sender,
    mut frames: Frames,
    setup: Setup,
    task: &Context<'_>,
    max_output: u64,
    ready: &mut (dyn FnMut(crate::proto::sandbox::Ready) -> bool + Send),
) -> Result<RunTimings, End> {
    let frame = Wiped(ToChild {
        msg: Some(to_child::Msg::Setup(setup)),
    });
    let sent = wire::write_async(stdin, &frame.0).await;
    drop(frame);
    sent.map_err(|_| End::Gone)?;
    let announced = match next(&mut frames).await? {
        from_child::Msg::Ready(mut r) => {
            let announced = std::mem::take(&mut r.inputs);
            if !ready(r) {
                return Err(End::Refused);
            }
            announced
        }
        _ => return Err(End::Protocol("no Ready first".into())),
    };
    // The inputs `Ready` listed are answered now, while the child starts its task: it asks
    // for none of them.
    for need in announced {
        if let Err(end) = answer_need(stdin, &mut frames, task, need).await {
            return Err(failure_or(end, &mut frames).await);
        }
    }

    let mut output_bytes: u64 = 0;
    loop {
        match next(&mut frames).await? {
            from_child::Msg::Need(need) => answer_need(stdin, &mut frames, task, need).await?,
            from_child::Msg::Done(d) => {
                return Ok(RunTimings {
                    load: Duration::from_micros(d.load_us),
                    compute: Duration::from_micros(d.compute_us),
                    encode: Duration::from_micros(d.encode_us),
                });
            }
            from_child::Msg::Failure(f) => return Err(End::Failed(message::failure_of(f))),
            msg => match message::event_of(msg) {
                Ok(event) => {
                    if let RunEvent::Output { ipc, .. } = &event {
                        output_bytes = output_bytes.saturating_add(ipc.len() as u64);
                        if output_bytes > max_output {
                            return Err(End::OutputTooLarge);
                        }
                    }
                    // Waits while the client is behind: the child then blocks on its full pipe.
                    emit(task, event).await?;
                }
                Err(_) => return Err(End::Protocol("a frame out of turn".into())),
            },
        }
    }
}

/// Has the child run a query; its `Loaded` answer (rows only if `send_back`). An input
/// `Ready` listed is asked for before the child reports its start: the database phase's
/// events that come first (this node's `Progress`, an earlier cached input's `Input`) are
/// passed on meanwhile.
async fn fetch(
    stdin: &mut pipe::Sender,
    frames: &mut Frames,
    task: &Context<'_>,
    node: &str,
    send_back: bool,
) -> Result<crate::proto::sandbox::Loaded, End> {
    send(
        stdin,
        to_child::Msg::Answer(Answer {
            node: node.to_owned(),
            answer: Some(answer::Answer::Fetch(send_back)),
        }),
    )
    .await?;
    loop {
        match next(frames).await? {
            from_child::Msg::Loaded(l) if l.node == node => return Ok(l),
            from_child::Msg::Failure(f) => return Err(End::Failed(message::failure_of(f))),
            msg @ (from_child::Msg::Progress(_) | from_child::Msg::Input(_)) => {
                match message::event_of(msg) {
                    Ok(event) => emit(task, event).await?,
                    Err(_) => return Err(End::Protocol("a frame out of turn".into())),
                }
            }
            _ => return Err(End::Protocol("expected Loaded".into())),
        }
    }
}

/// A conversation that broke while the daemon answered a listed input: the child may have
/// failed first (say, a connection its root could not hold) and left before reading the
/// answer. Its `Failure`, if it sent one, is the run's report.
async fn failure_or(end: End, frames: &mut Frames) -> End {
    if !matches!(end, End::Gone) {
        return end;
    }
    while let Ok(msg) = next(frames).await {
        if let from_child::Msg::Failure(f) = msg {
            return End::Failed(message::failure_of(f));
        }
    }
    End::Gone
}

/// Puts one event in the run's bounded channel (waiting for room). The channel is closed
/// only when the run is being stopped: say why, as the control knows it.
async fn emit(task: &Context<'_>, event: RunEvent) -> Result<(), End> {
    task.events
        .send(event)
        .await
        .map_err(|_| End::Stop(stop_reason(task.control)))
}

/// Why a run must stop: its deadline, or (anything else) a cancel.
pub(super) fn stop_reason(control: &RunControl) -> Exit {
    match control.check() {
        Err(RunError::Timeout) => Exit::Timeout,
        _ => Exit::Cancelled,
    }
}

/// Answers one `Need` from the cache, or has the child fetch it (and caches the result).
///
/// The cache loads each key once however many runs ask at the same moment, and hands a
/// failed load's error to every run that waited for it. A failure of *this* run's child is
/// this run's to report (so it is kept aside and classified from this child's exit); a run
/// that only waited on another run's load, which failed (that child crashed, was killed, hit
/// a limit), loads for itself instead of inheriting a failure that is not its own.
async fn answer_need(
    stdin: &mut pipe::Sender,
    frames: &mut Frames,
    task: &Context<'_>,
    need: crate::proto::sandbox::Need,
) -> Result<(), End> {
    let node = need.node.clone();
    let ttl = (task.ttl)(&need.connection);
    let fingerprint: [u8; 32] = need
        .fingerprint
        .as_slice()
        .try_into()
        .map_err(|_| End::Protocol("a fingerprint of the wrong size".into()))?;
    if task.mode == CacheMode::Bypass || ttl.is_zero() {
        fetch(stdin, frames, task, &node, false).await?;
        return Ok(());
    }
    let key = CacheKey::new(fingerprint, &need.connection, &need.query, &need.binds);
    let own_failure: Mutex<Option<End>> = Mutex::new(None);
    // The child has the rows but they are too large to keep: the load "fails" (nothing is
    // cached; runs that waited for it query for themselves) and this run goes on.
    let too_large = std::sync::atomic::AtomicBool::new(false);
    let loaded = {
        let load = async {
            match fetch_rows(stdin, frames, task, &node).await {
                Ok(Some(rows)) => Ok(rows),
                Ok(None) => {
                    too_large.store(true, std::sync::atomic::Ordering::SeqCst);
                    Err(LoadFailed)
                }
                Err(end) => {
                    if let Ok(mut slot) = own_failure.lock() {
                        *slot = Some(end);
                    }
                    Err(LoadFailed)
                }
            }
        };
        task.cache.get_or_load(key, ttl, task.mode, load).await
    };
    match loaded {
        // Loaded just now by this child, which already has the rows.
        Ok((_, Source::Miss)) => Ok(()),
        Ok((rows, Source::Hit)) => {
            let cached = Answer {
                node,
                answer: Some(answer::Answer::CachedIpc(rows.ipc)),
            };
            send(stdin, to_child::Msg::Answer(cached)).await
        }
        Err(_) if too_large.load(std::sync::atomic::Ordering::SeqCst) => Ok(()),
        Err(_) => match own_failure.lock().ok().and_then(|mut s| s.take()) {
            Some(end) => Err(end),
            None => {
                tracing::info!(
                    node = %node,
                    "the run this one waited on failed to load a shared input: loading it here"
                );
                fetch(stdin, frames, task, &node, false).await.map(|_| ())
            }
        },
    }
}

/// A load that failed; the details stay with the run whose child it was.
#[derive(Debug)]
struct LoadFailed;

/// Has the child run a query and send the rows back, as the cache keeps them (`None`: the
/// child kept rows too large for the cache).
async fn fetch_rows(
    stdin: &mut pipe::Sender,
    frames: &mut Frames,
    task: &Context<'_>,
    node: &str,
) -> Result<Option<Rows>, End> {
    let loaded = fetch(stdin, frames, task, node, true).await?;
    if loaded.too_large_to_cache {
        return Ok(None);
    }
    Ok(Some(Rows {
        ipc: loaded.arrow_ipc,
        rows: loaded.rows,
    }))
}
