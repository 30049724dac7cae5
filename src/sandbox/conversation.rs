//! The daemon's half of the conversation with one run child (see the protocol file for its
//! shape): sending the task, answering `Need`s from the result cache, forwarding progress and
//! output pieces into the run's bounded event channel. Never waits on the child or the client
//! without the run's control able to stop it (the caller selects on it), and never reports a
//! failure that belongs to another run's child as this run's.

use std::sync::Mutex;
use std::time::Duration;

use polars::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use super::{Exit, Task, ZeroizeAll, wire};
use crate::cache::{CacheKey, CacheMode, Source};
use crate::proto::sandbox::{Answer, FromChild, ToChild, answer, from_child, to_child};
use crate::worker::{RunEvent, RunFailure, RunTimings};
use crate::workflow::{RunControl, RunError};

/// Why the conversation with a child ended early.
pub(super) enum End {
    /// The child reported an ordinary failure.
    Failed(RunFailure),
    /// The pipe closed or broke: look at how the child exited.
    Gone,
    /// The child said something out of turn.
    Protocol(String),
    /// Outputs over the cap.
    OutputTooLarge,
    /// The run must stop (deadline or cancel).
    Stop(Exit),
}

pub(super) type Frames = mpsc::Receiver<Result<(FromChild, usize), wire::WireError>>;

/// Reads frames from the child's stdout on a task of its own, so that the conversation can
/// wait on them alongside everything else. The cap bounds any one frame; one frame waits at
/// most, so a daemon that stops taking frames stops the child (its pipe fills).
pub(super) fn read_frames(mut stdout: tokio::process::ChildStdout, cap: u64) -> Frames {
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

pub(super) async fn read_capped(mut stderr: tokio::process::ChildStderr, cap: usize) -> String {
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

async fn send(stdin: &mut ChildStdin, msg: to_child::Msg) -> Result<(), End> {
    wire::write_async(stdin, &ToChild { msg: Some(msg) })
        .await
        .map_err(|_| End::Gone)
}

/// The daemon's half of the conversation (see the protocol file for its shape).
pub(super) async fn converse(
    stdin: &mut ChildStdin,
    mut frames: Frames,
    task: &mut Task<'_>,
    max_output: u64,
) -> Result<RunTimings, End> {
    let setup = std::mem::take(&mut task.setup);
    let frame = ToChild {
        msg: Some(to_child::Msg::Setup(setup)),
    };
    let sent = wire::write_async(stdin, &frame).await;
    if let Some(to_child::Msg::Setup(mut s)) = frame.msg {
        s.zeroize_all();
    }
    sent.map_err(|_| End::Gone)?;

    let mut output_bytes: u64 = 0;
    loop {
        match next(&mut frames).await? {
            from_child::Msg::Need(need) => {
                answer_need(stdin, &mut frames, task, need).await?;
            }
            from_child::Msg::Progress(p) => {
                let progress = RunEvent::ChildProgress {
                    node: p.node,
                    tool: p.tool,
                    finished: p.finished,
                    rows: p.rows,
                };
                emit(task, progress).await?;
            }
            from_child::Msg::Output(o) => {
                output_bytes = output_bytes.saturating_add(o.arrow_ipc.len() as u64);
                if output_bytes > max_output {
                    return Err(End::OutputTooLarge);
                }
                // Waits while the client is behind: the child then blocks on its full pipe.
                let piece = RunEvent::Output {
                    name: o.name,
                    ipc: o.arrow_ipc,
                    last: o.last,
                };
                emit(task, piece).await?;
            }
            from_child::Msg::Done(d) => {
                return Ok(RunTimings {
                    load: Duration::from_micros(d.load_us),
                    compute: Duration::from_micros(d.compute_us),
                    encode: Duration::from_micros(d.encode_us),
                });
            }
            from_child::Msg::Failure(f) => return Err(remote(f)),
            from_child::Msg::Ready(_) | from_child::Msg::Loaded(_) => {
                return Err(End::Protocol("a frame out of turn".into()));
            }
        }
    }
}

/// Has the child run a query; its `Loaded` answer (rows only if `send_back`).
async fn fetch(
    stdin: &mut ChildStdin,
    frames: &mut Frames,
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
    match next(frames).await? {
        from_child::Msg::Loaded(l) if l.node == node => Ok(l),
        from_child::Msg::Failure(f) => Err(remote(f)),
        _ => Err(End::Protocol("expected Loaded".into())),
    }
}

/// Puts one event in the run's bounded channel (waiting for room). The channel is closed
/// only when the run is being stopped: say why, as the control knows it.
async fn emit(task: &Task<'_>, event: RunEvent) -> Result<(), End> {
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

fn remote(f: crate::proto::sandbox::Failure) -> End {
    End::Failed(RunFailure::Remote {
        code: f.code,
        message: f.message,
        grpc: tonic::Code::from(f.grpc_code),
    })
}

/// Answers one `Need` from the cache, or has the child fetch it (and caches the result).
///
/// The cache loads each key once however many runs ask at the same moment, and hands a
/// failed load's error to every run that waited for it. A failure of *this* run's child is
/// this run's to report (so it is kept aside and classified from this child's exit); a run
/// that only waited on another run's load, which failed (that child crashed, was killed, hit
/// a limit), loads for itself instead of inheriting a failure that is not its own.
async fn answer_need(
    stdin: &mut ChildStdin,
    frames: &mut Frames,
    task: &Task<'_>,
    need: crate::proto::sandbox::Need,
) -> Result<(), End> {
    let node = need.node.clone();
    let ttl = (task.ttl)(&need.connection);
    let fingerprint: [u8; 32] = need
        .fingerprint
        .as_slice()
        .try_into()
        .map_err(|_| End::Protocol("a fingerprint of the wrong size".into()))?;
    let (rows, cached) = if task.mode == CacheMode::Bypass || ttl.is_zero() {
        (fetch(stdin, frames, &node, false).await?.rows, false)
    } else {
        let key = CacheKey::new(fingerprint, &need.connection, &need.query);
        let own_failure: Mutex<Option<End>> = Mutex::new(None);
        let loaded = {
            let load = async {
                let rows = fetch_rows(stdin, frames, &node).await;
                rows.map_err(|end| {
                    if let Ok(mut slot) = own_failure.lock() {
                        *slot = Some(end);
                    }
                    LoadFailed
                })
            };
            task.cache.get_or_load(key, ttl, task.mode, load).await
        };
        let (mut frame, source) = match loaded {
            Ok(found) => found,
            Err(_) => match own_failure.lock().ok().and_then(|mut s| s.take()) {
                Some(end) => return Err(end),
                None => {
                    tracing::info!(
                        node = %node,
                        "the run this one waited on failed to load a shared input: loading it here"
                    );
                    (fetch_rows(stdin, frames, &node).await?, Source::Miss)
                }
            },
        };
        if source == Source::Hit {
            let mut ipc = Vec::new();
            IpcStreamWriter::new(&mut ipc)
                .finish(&mut frame)
                .map_err(|_| End::Failed(RunFailure::Internal))?;
            send(
                stdin,
                to_child::Msg::Answer(Answer {
                    node: node.clone(),
                    answer: Some(answer::Answer::CachedIpc(ipc)),
                }),
            )
            .await?;
        }
        (frame.height() as u64, source == Source::Hit)
    };
    let input = RunEvent::Input {
        node,
        rows: usize::try_from(rows).unwrap_or(usize::MAX),
        cached,
    };
    emit(task, input).await
}

/// A load that failed; the details stay with the run whose child it was.
#[derive(Debug)]
struct LoadFailed;

/// Has the child run a query and send the rows back; the rows as a frame.
async fn fetch_rows(
    stdin: &mut ChildStdin,
    frames: &mut Frames,
    node: &str,
) -> Result<DataFrame, End> {
    let loaded = fetch(stdin, frames, node, true).await?;
    IpcStreamReader::new(std::io::Cursor::new(loaded.arrow_ipc))
        .finish()
        .map_err(|_| End::Protocol("undecodable rows".into()))
}
