//! The daemon's side of the fork server: it starts the template (`template.rs`) from the
//! spawner thread, asks it for one child per task over a Unix SOCK_SEQPACKET socket (handing
//! over the child's three pipe ends), and learns from it how each child ended (the template is
//! their parent and reaps them). A template that dies is started again for the next task;
//! the children it had die with it (their parent-death signal) and their runs end as crashes.
//!
//! Why a fork server: re-executing the 150 MB binary for every task (loading, relocation, a
//! runtime, Polars' first plan, the seccomp filters compiled) cost ~8 ms of CPU per run, which
//! on two cores capped the sandbox at about a tenth of inline throughput. A fork of the
//! template costs a fraction of a millisecond and the child inherits the work done once.
//! What forking shares: every child has the template's address-space layout (ASLR is per
//! exec, not per fork), and its allocator state as of the fork. Nothing of one task reaches
//! the next: each child is a fresh copy of a template that never held a task, a credential or
//! a row, and it exits after its one task. The shared layout matters only to an attacker who
//! can read a child's addresses and then attack a later child blind, with the same binary;
//! we accept that (the template is restarted whenever it dies, and with each daemon start).

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, Shutdown, SockFlag, SockType, sendmsg, shutdown,
    socketpair,
};
use prost::Message;
use tokio::io::AsyncBufReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Fault;
use super::child::ChildArgs;
use super::spawner::Spawner;
use super::template::TEMPLATE_COMMAND;
use crate::proto::sandbox::{
    Fork, Kill, TemplateEvent, TemplateRequest, template_event, template_request,
};

/// How long a new template may take to say it serves, and a fork to be answered.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One forked child and its pipes.
pub(super) struct Forked {
    pub(super) child: RunChild,
    pub(super) stdin: pipe::Sender,
    pub(super) stdout: pipe::Receiver,
    pub(super) stderr: pipe::Receiver,
}

/// Forks run children through the template, which it starts (again) as needed.
pub(crate) struct ForkServer {
    program: PathBuf,
    args: ChildArgs,
    spawner: Spawner,
    current: tokio::sync::Mutex<Option<Arc<Template>>>,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("program", &self.program)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// What the reader thread and the requesters share.
#[derive(Default)]
struct Shared {
    /// Forks asked for and not yet answered, by request id.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Children forked and not yet reported ended, by pid.
    exits: Mutex<HashMap<u32, oneshot::Sender<Option<i32>>>>,
    /// The template's `Ready`, once.
    ready: Mutex<Option<oneshot::Sender<Vec<String>>>>,
    /// False once the control socket closed (the template is gone).
    alive: AtomicBool,
}

struct Pending {
    forked: oneshot::Sender<Result<u32, String>>,
    exit: oneshot::Sender<Option<i32>>,
}

/// A running template.
struct Template {
    control: OwnedFd,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    process: tokio::process::Child,
    _workdir: tempfile::TempDir,
}

impl Drop for Template {
    fn drop(&mut self) {
        // Ends the reader thread (it holds a duplicate) and tells the template to stop.
        let _ = shutdown(self.control.as_raw_fd(), Shutdown::Both);
    }
}

impl Template {
    /// Sends one request (with descriptors, for a fork) without blocking.
    fn send(&self, msg: template_request::Msg, fds: &[i32]) -> std::io::Result<()> {
        let bytes = TemplateRequest { msg: Some(msg) }.encode_to_vec();
        let iov = [IoSlice::new(&bytes)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            self.control.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
        .map_err(std::io::Error::from)
    }
}

/// A run child forked by the template: its pid, how it ended once the template reports it, and
/// signals sent through the template (which knows whether the pid is still its child).
pub(crate) struct RunChild {
    pid: u32,
    exit: oneshot::Receiver<Option<i32>>,
    ended: Option<Option<ExitStatus>>,
    template: Arc<Template>,
}

impl RunChild {
    /// Waits for the child's end: its status, or `None` if the template died first (the child
    /// then died with it).
    pub(crate) async fn wait(&mut self) -> Option<ExitStatus> {
        if let Some(ended) = self.ended {
            return ended;
        }
        let status = (&mut self.exit)
            .await
            .ok()
            .flatten()
            .map(ExitStatus::from_raw);
        self.ended = Some(status);
        status
    }

    /// Whether it has ended (without waiting).
    pub(crate) fn try_ended(&mut self) -> bool {
        if self.ended.is_some() {
            return true;
        }
        match self.exit.try_recv() {
            Ok(status) => {
                self.ended = Some(status.map(ExitStatus::from_raw));
                true
            }
            Err(oneshot::error::TryRecvError::Closed) => {
                self.ended = Some(None);
                true
            }
            Err(oneshot::error::TryRecvError::Empty) => false,
        }
    }

    /// Sends `signal` unless the child has ended.
    pub(crate) fn signal(&mut self, signal: nix::sys::signal::Signal) {
        if self.try_ended() {
            return;
        }
        let _ = self.template.send(
            template_request::Msg::Kill(Kill {
                pid: self.pid,
                signal: signal as i32,
            }),
            &[],
        );
    }

    /// SIGKILL, then waits for the end.
    pub(crate) async fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.wait().await;
    }
}

impl Drop for RunChild {
    fn drop(&mut self) {
        // Like `kill_on_drop`: a child nobody supervises any more does not live on.
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }
}

impl ForkServer {
    /// A fork server for children with `args` (started at the first fork or probe).
    pub(crate) fn new(program: PathBuf, args: ChildArgs) -> ForkServer {
        ForkServer {
            program,
            args,
            spawner: Spawner::new(),
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// Forks one child, its pipes ready. `fault`: a planted test fault.
    pub(super) async fn fork(&self, fault: Option<Fault>) -> Result<Forked, String> {
        let template = self.template().await?;
        let (stdin_r, stdin_w) = pipe_pair()?;
        let (stdout_r, stdout_w) = pipe_pair()?;
        let (stderr_r, stderr_w) = pipe_pair()?;
        let id = template.next_id.fetch_add(1, Ordering::Relaxed);
        let (forked_tx, forked_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        if let Ok(mut p) = template.shared.pending.lock() {
            p.insert(
                id,
                Pending {
                    forked: forked_tx,
                    exit: exit_tx,
                },
            );
        }
        let fault = fault.map(|f| f.as_str().to_owned()).unwrap_or_default();
        let sent = template.send(
            template_request::Msg::Fork(Fork { id, fault }),
            &[
                stdin_r.as_raw_fd(),
                stdout_w.as_raw_fd(),
                stderr_w.as_raw_fd(),
            ],
        );
        // The template holds its own copies now (or never will): ours go.
        drop((stdin_r, stdout_w, stderr_w));
        if let Err(e) = sent {
            if let Ok(mut p) = template.shared.pending.lock() {
                p.remove(&id);
            }
            return Err(format!("asking the fork server: {e}"));
        }
        let pid = match tokio::time::timeout(START_TIMEOUT, forked_rx).await {
            Ok(Ok(Ok(pid))) => pid,
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err("the fork server ended".into()),
            Err(_) => return Err("the fork server did not answer within 10 s".into()),
        };
        let child = RunChild {
            pid,
            exit: exit_rx,
            ended: None,
            template,
        };
        let io = |e: std::io::Error| format!("a child's pipe: {e}");
        Ok(Forked {
            child,
            stdin: pipe::Sender::from_owned_fd(stdin_w).map_err(io)?,
            stdout: pipe::Receiver::from_owned_fd(stdout_r).map_err(io)?,
            stderr: pipe::Receiver::from_owned_fd(stderr_r).map_err(io)?,
        })
    }

    /// The running template, started if there is none or it died.
    async fn template(&self) -> Result<Arc<Template>, String> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref()
            && t.shared.alive.load(Ordering::SeqCst)
        {
            return Ok(t.clone());
        }
        *current = None;
        let t = Arc::new(self.start().await?);
        *current = Some(t.clone());
        Ok(t)
    }

    /// Starts a template from the spawner thread and waits for its `Ready`.
    async fn start(&self) -> Result<Template, String> {
        let workdir = tempfile::Builder::new()
            .prefix("hubworker-forks-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| format!("creating the fork server's directory: {e}"))?;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("creating the fork server's socket: {e}"))?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg(TEMPLATE_COMMAND)
            .args(self.args.to_args())
            .env_clear()
            .current_dir(workdir.path())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut process =
            self.spawner.spawn(command).await.map_err(|e| {
                format!("starting the fork server ({}): {e}", self.program.display())
            })?;
        if let Some(stderr) = process.stderr.take() {
            tokio::spawn(log_stderr(stderr));
        }
        let shared = Arc::new(Shared {
            alive: AtomicBool::new(true),
            ..Shared::default()
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        if let Ok(mut r) = shared.ready.lock() {
            *r = Some(ready_tx);
        }
        let reader = ours
            .try_clone()
            .map_err(|e| format!("the fork server's socket: {e}"))?;
        let for_reader = shared.clone();
        std::thread::Builder::new()
            .name("hubworker-forks".to_owned())
            .spawn(move || read_events(reader, &for_reader))
            .map_err(|e| format!("starting the fork server's reader: {e}"))?;
        let template = Template {
            control: ours,
            shared,
            next_id: AtomicU64::new(1),
            process,
            _workdir: workdir,
        };
        match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
            Ok(Ok(confinements)) => {
                tracing::debug!(confinements = %confinements.join(","), "fork server started");
                Ok(template)
            }
            _ => {
                let mut template = template;
                let status =
                    tokio::time::timeout(Duration::from_secs(2), template.process.wait()).await;
                Err(match status {
                    Ok(Ok(s)) => match super::classify(s) {
                        Some(exit) => format!("the fork server did not start: {exit}"),
                        None => "the fork server exited at once".into(),
                    },
                    _ => "the fork server did not start within 10 s".into(),
                })
            }
        }
    }
}

/// A pipe, both ends close-on-exec (the template's copies become a child's stdio by `dup2`).
fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("creating a pipe: {e}"))
}

/// The reader thread: answers forks, reports ends, and when the socket closes fails every
/// waiter (the template is gone; its children died with it).
fn read_events(control: OwnedFd, shared: &Shared) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match nix::sys::socket::recv(control.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(_) => break,
        };
        let Ok(event) = TemplateEvent::decode(&buf[..n]) else {
            break;
        };
        match event.msg {
            Some(template_event::Msg::Ready(r)) => {
                if let Some(tx) = shared.ready.lock().ok().and_then(|mut r| r.take()) {
                    let _ = tx.send(r.confinements);
                }
            }
            Some(template_event::Msg::Forked(f)) => {
                let Some(p) = shared.pending.lock().ok().and_then(|mut p| p.remove(&f.id)) else {
                    continue;
                };
                if f.pid == 0 {
                    let _ = p
                        .forked
                        .send(Err(format!("the fork server could not fork: {}", f.error)));
                } else {
                    if let Ok(mut e) = shared.exits.lock() {
                        e.insert(f.pid, p.exit);
                    }
                    let _ = p.forked.send(Ok(f.pid));
                }
            }
            Some(template_event::Msg::Exited(e)) => {
                if let Some(tx) = shared.exits.lock().ok().and_then(|mut x| x.remove(&e.pid)) {
                    let _ = tx.send(Some(e.wait_status));
                }
            }
            None => {}
        }
    }
    shared.alive.store(false, Ordering::SeqCst);
    if let Ok(mut p) = shared.pending.lock() {
        for (_, p) in p.drain() {
            let _ = p.forked.send(Err("the fork server ended".into()));
        }
    }
    if let Ok(mut e) = shared.exits.lock() {
        for (_, tx) in e.drain() {
            let _ = tx.send(None);
        }
    }
    if let Ok(mut r) = shared.ready.lock() {
        r.take();
    }
}

/// The template's stderr, line by line, as warnings (capped per line).
async fn log_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(1000).collect();
        tracing::warn!(line = %line, "fork server");
    }
}
