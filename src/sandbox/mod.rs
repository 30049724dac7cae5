//! Sandboxed runs: one confined child process per task, and credentials that do not outlive it.
//!
//! The daemon's side lives here; the child's in [`child`] (with its confinement in [`jail`]
//! and its limits and syscall filters, as data, in [`policy`]). For each run the daemon:
//!
//! 1. starts `hubworker __sandbox-child` (the binary re-executed: setup runs single-threaded in
//!    a fresh process, never in a `pre_exec` closure of the multi-threaded daemon) with an
//!    empty environment, only stdio, and an empty private working directory;
//! 2. waits for `Ready` (the child confines itself before reading any input), then sends the
//!    task with the credentials **still sealed**: their plaintext never exists in the daemon;
//! 3. answers the child's `Need`s from its per-credential result cache (the child computes the
//!    fingerprints; the daemon never sees what they are made of), and caches what it loads;
//! 4. forwards progress and outputs, counting output bytes against a cap;
//! 5. supervises in one `select!`: the run's deadline and `Cancel` end the child with SIGTERM,
//!    then SIGKILL after a short grace; the child's own end is classified ([`Exit`]).
//!
//! A child is used for exactly one task. Starting and confining one costs several milliseconds
//! (measured by `hubworker bench dispatch`; see the README), so the daemon keeps a small pool
//! of children already started and confined, waiting on their stdin for a task; a planted
//! test fault always gets a fresh child.

pub mod child;
pub mod jail;
pub mod policy;
pub mod wire;

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polars::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use zeroize::Zeroize;

use crate::cache::{CacheKey, CacheMode, ResultCache, Source};
use crate::proto::sandbox::{Answer, FromChild, Setup, ToChild, answer, from_child, to_child};
use crate::worker::{RunEvent, RunFailure, RunTimings};
use crate::workflow::{RunControl, RunError};
pub use policy::Limits;

/// The hidden subcommand that turns the binary into a run child.
pub const CHILD_COMMAND: &str = "__sandbox-child";

/// The child's exit codes. Setup failures have one each, so the daemon's log names the step.
pub mod exit {
    /// The task ran (or failed in an ordinary way, reported in a `Failure` frame).
    pub const OK: i32 = 0;
    /// Bad arguments.
    pub const USAGE: i32 = 2;
    /// Descriptors other than stdio could not be closed.
    pub const DESCRIPTORS: i32 = 70;
    /// The environment was not empty.
    pub const ENVIRONMENT: i32 = 71;
    /// The working directory was not an empty private directory.
    pub const WORKDIR: i32 = 72;
    /// An rlimit could not be set.
    pub const RLIMITS: i32 = 73;
    /// `oom_score_adj` could not be raised.
    pub const OOM_SCORE: i32 = 74;
    /// no_new_privs could not be set.
    pub const NO_NEW_PRIVS: i32 = 75;
    /// The process could not be made non-dumpable.
    pub const DUMPABLE: i32 = 76;
    /// The parent-death signal could not be armed, or the daemon was already gone.
    pub const PARENT_DEATH: i32 = 77;
    /// A seccomp filter could not be built or installed.
    pub const SECCOMP: i32 = 78;
    /// The pipe to the daemon broke or carried something unexpected.
    pub const PROTOCOL: i32 = 79;
    /// An allocation failed: the address-space limit was reached.
    pub const MEMORY: i32 = 86;

    /// Whether `code` is one of the confinement steps'.
    pub fn is_setup(code: i32) -> bool {
        (DESCRIPTORS..=SECCOMP).contains(&code)
    }
}

/// A deliberate misbehaviour of the child, for the sandbox's own tests: each one is stopped by
/// a confinement, which is what the tests assert. None weakens anything; the fault runs after
/// the child is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `execve("/bin/true")` in the database phase.
    Execve,
    /// `ptrace(PTRACE_ATTACH, daemon)` in the database phase.
    Ptrace,
    /// Opening a TCP socket in the compute phase.
    SocketAfterLoad,
    /// Opening a file in the compute phase.
    OpenAfterLoad,
    /// Spinning on the CPU in the compute phase.
    Spin,
    /// Allocating without bound in the compute phase.
    Allocate,
    /// `abort()` in the compute phase.
    Crash,
}

impl Fault {
    /// Its command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Execve => "execve",
            Fault::Ptrace => "ptrace",
            Fault::SocketAfterLoad => "socket-after-load",
            Fault::OpenAfterLoad => "open-after-load",
            Fault::Spin => "spin",
            Fault::Allocate => "allocate",
            Fault::Crash => "crash",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Fault::Execve,
            Fault::Ptrace,
            Fault::SocketAfterLoad,
            Fault::OpenAfterLoad,
            Fault::Spin,
            Fault::Allocate,
            Fault::Crash,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
        .ok_or_else(|| format!("unknown fault {s:?}"))
    }
}

/// How a child ended when it did not finish its task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exit {
    /// The run's deadline passed; the daemon stopped the child.
    #[error("the run took longer than its time limit and was stopped")]
    Timeout,
    /// The run was cancelled; the daemon stopped the child.
    #[error("the run was cancelled")]
    Cancelled,
    /// The child reached its memory limit.
    #[error("the run reached its memory limit and was stopped")]
    MemoryLimit,
    /// The child used up its CPU time.
    #[error("the run used up its CPU time limit and was stopped")]
    CpuLimit,
    /// The child made a forbidden system call and was killed by its seccomp filter.
    #[error("the run attempted an operation the sandbox forbids and was killed")]
    SandboxViolation,
    /// The outputs grew past the cap.
    #[error("the run's outputs exceeded the output size limit")]
    OutputTooLarge,
    /// A confinement step failed, so the child ran nothing (fail closed).
    #[error("the sandbox could not be set up ({0}); nothing ran")]
    SetupFailed(&'static str),
    /// Anything else: a crash, a signal, a broken conversation.
    #[error("the run's process crashed ({0})")]
    Crashed(String),
}

impl Exit {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Exit::Timeout => "timeout",
            Exit::Cancelled => "cancelled",
            Exit::MemoryLimit => "memory_limit",
            Exit::CpuLimit => "cpu_limit",
            Exit::SandboxViolation => "sandbox_violation",
            Exit::OutputTooLarge => "output_too_large",
            Exit::SetupFailed(_) => "sandbox_failed",
            Exit::Crashed(_) => "crashed",
        }
    }

    /// The gRPC status code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Exit::Timeout => tonic::Code::DeadlineExceeded,
            Exit::Cancelled => tonic::Code::Cancelled,
            Exit::MemoryLimit | Exit::CpuLimit | Exit::OutputTooLarge => {
                tonic::Code::ResourceExhausted
            }
            Exit::SandboxViolation => tonic::Code::PermissionDenied,
            Exit::SetupFailed(_) => tonic::Code::Unavailable,
            Exit::Crashed(_) => tonic::Code::Internal,
        }
    }
}

/// Classifies a child's exit status; `None` for a clean exit (0).
pub fn classify(status: ExitStatus) -> Option<Exit> {
    if let Some(signal) = status.signal() {
        return Some(match signal {
            nix::libc::SIGSYS => Exit::SandboxViolation,
            nix::libc::SIGXCPU => Exit::CpuLimit,
            s => Exit::Crashed(format!("signal {}", signal_name(s))),
        });
    }
    match status.code() {
        Some(exit::OK) => None,
        Some(exit::MEMORY) => Some(Exit::MemoryLimit),
        Some(c) if exit::is_setup(c) => Some(Exit::SetupFailed(setup_step(c))),
        Some(c) => Some(Exit::Crashed(format!("exit code {c}"))),
        None => Some(Exit::Crashed("unknown exit".into())),
    }
}

fn setup_step(code: i32) -> &'static str {
    match code {
        exit::DESCRIPTORS => "closing inherited descriptors",
        exit::ENVIRONMENT => "empty environment",
        exit::WORKDIR => "private working directory",
        exit::RLIMITS => "resource limits",
        exit::OOM_SCORE => "oom_score_adj",
        exit::NO_NEW_PRIVS => "no_new_privs",
        exit::DUMPABLE => "non-dumpable",
        exit::PARENT_DEATH => "parent-death signal",
        _ => "seccomp",
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| signal.to_string())
}

/// How the daemon runs children.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The executable to start (default `/proc/self/exe`: the daemon's own binary, even if the
    /// file on disk was replaced by an upgrade since).
    pub program: PathBuf,
    /// The child's resource limits.
    pub limits: Limits,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Most bytes of outputs one run may produce.
    pub max_output_bytes: u64,
    /// Children kept started and confined ahead of need (each still serves one task).
    pub pool: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            program: PathBuf::from("/proc/self/exe"),
            limits: Limits::default(),
            kill_grace: Duration::from_millis(500),
            max_output_bytes: 1 << 30,
            pool: 2,
        }
    }
}

/// The daemon's sandbox: settings, the pool of pre-started children, faults planted by tests.
pub struct Sandbox {
    settings: Settings,
    faults: Mutex<HashMap<String, Fault>>,
    pool: Pool,
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("settings", &self.settings)
            .field("pooled", &self.pool.lock().map(|p| p.len()).unwrap_or(0))
            .finish_non_exhaustive()
    }
}

/// One task for a child, with everything the daemon needs while it runs (a context struct
/// rather than a dozen parameters).
pub struct Task<'a> {
    /// The task and its sealed credentials, transport key and limits. Wiped once sent.
    pub setup: Setup,
    /// Selects a planted fault (tests): the workflow hash, or the connection for inspect.
    pub fault_key: &'a str,
    /// The result cache.
    pub cache: &'a ResultCache,
    /// Cache mode.
    pub mode: CacheMode,
    /// Cache TTL per connection.
    pub ttl: &'a (dyn Fn(&str) -> Duration + Sync),
    /// Cancel and deadline.
    pub control: &'a RunControl,
    /// Progress, inputs and outputs go here.
    pub events: &'a mpsc::Sender<RunEvent>,
}

impl std::fmt::Debug for Task<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What a finished task reports.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// Where the time went, as the child measured it.
    pub timings: RunTimings,
    /// The confinements the child reported.
    pub confinements: Vec<String>,
}

/// Why the conversation with a child ended early.
enum End {
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

impl End {
    /// The same end, rebuilt from a shared reference (a failure keeps its code, message and
    /// status).
    fn copy(&self) -> End {
        match self {
            End::Failed(f) => End::Failed(RunFailure::Remote {
                code: f.code(),
                message: f.message(),
                grpc: f.grpc_code(),
            }),
            End::Gone => End::Gone,
            End::Protocol(what) => End::Protocol(what.clone()),
            End::OutputTooLarge => End::OutputTooLarge,
            End::Stop(exit) => End::Stop(exit.clone()),
        }
    }
}

type Frames = mpsc::Receiver<Result<(FromChild, usize), wire::WireError>>;

/// A started child and its pipes; `confinements` once it said `Ready`.
struct Spawned {
    child: Child,
    stdin: ChildStdin,
    frames: Frames,
    diagnostics: tokio::task::JoinHandle<String>,
    confinements: Vec<String>,
    _workdir: tempfile::TempDir,
}

/// Children started ahead of need, already confined and waiting for their task.
type Pool = Arc<Mutex<Vec<Spawned>>>;

impl Sandbox {
    /// A sandbox with `settings`.
    pub fn new(settings: Settings) -> Sandbox {
        Sandbox {
            settings,
            faults: Mutex::new(HashMap::new()),
            pool: Arc::new(Mutex::new(Vec::new())),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Plants a fault for the next task whose fault key (workflow hash) is `key`. For the
    /// sandbox's tests: the fault runs inside the confined child and proves a confinement.
    #[doc(hidden)]
    pub fn plant_fault(&self, key: &str, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.insert(key.to_owned(), fault);
        }
    }

    /// Starts a child: the binary re-executed in its hidden mode, with an empty environment,
    /// only stdio, an empty private working directory, and pipes for the conversation.
    fn spawn_with(settings: &Settings, fault: Option<Fault>) -> Result<Spawned, RunFailure> {
        let workdir = tempfile::Builder::new()
            .prefix("hubworker-run-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create a run directory");
                RunFailure::Internal
            })?;
        let args = child::ChildArgs {
            parent: std::process::id(),
            limits: settings.limits,
            fault,
        };
        let mut child = Command::new(&settings.program)
            .arg(CHILD_COMMAND)
            .args(args.to_args())
            .env_clear()
            .current_dir(workdir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                tracing::error!(error = %e, program = %settings.program.display(), "cannot start a run child");
                RunFailure::Internal
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(RunFailure::Internal);
        };
        Ok(Spawned {
            child,
            stdin,
            frames: read_frames(stdout, settings.max_output_bytes),
            diagnostics: tokio::spawn(read_capped(stderr, 16 << 10)),
            confinements: Vec::new(),
            _workdir: workdir,
        })
    }

    /// A confined child for one task: a pre-started one when the pool has one (and no fault
    /// is planted), else a fresh one. The pool is topped up when the task ends (starting
    /// children while the task runs would take CPU from it).
    async fn take(&self, fault: Option<Fault>) -> Result<Spawned, RunFailure> {
        if fault.is_none() {
            loop {
                let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
                let Some(mut s) = pooled else { break };
                // A pooled child that died meanwhile (the OOM killer, an operator) is skipped.
                if matches!(s.child.try_wait(), Ok(None)) {
                    return Ok(s);
                }
            }
        }
        let spawned = Self::spawn_with(&self.settings, fault)?;
        ready(spawned).await.map_err(RunFailure::Sandbox)
    }

    /// Starts children in the background until the pool holds `settings.pool`.
    pub fn refill(&self) {
        let have = self.pool.lock().map(|p| p.len()).unwrap_or(usize::MAX);
        let pending = self.pending.load(Ordering::SeqCst);
        let want = self.settings.pool.saturating_sub(have + pending);
        for _ in 0..want {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let (settings, pool, pending) = (
                self.settings.clone(),
                self.pool.clone(),
                self.pending.clone(),
            );
            tokio::spawn(async move {
                let started = match Self::spawn_with(&settings, None) {
                    Ok(s) => ready(s).await.ok(),
                    Err(_) => None,
                };
                if let (Some(s), Ok(mut p)) = (started, pool.lock()) {
                    p.push(s);
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }

    /// Starts one child, waits until it is confined, and lets it go: proves the sandbox works
    /// on this host and returns the confinements in force.
    pub async fn probe(&self) -> Result<Vec<String>, Exit> {
        let spawned = Self::spawn_with(&self.settings, None)
            .map_err(|_| Exit::Crashed("the run child could not be started".into()))?;
        let mut spawned = ready(spawned).await?;
        drop(spawned.stdin);
        let status = tokio::time::timeout(Duration::from_secs(10), spawned.child.wait()).await;
        let stderr = spawned.diagnostics.await.unwrap_or_default();
        let exit = match status {
            Ok(Ok(status)) => classify(status),
            _ => {
                let _ = spawned.child.kill().await;
                Some(Exit::Crashed("did not stop when told".into()))
            }
        };
        match exit {
            None => Ok(spawned.confinements),
            Some(exit) => {
                tracing::error!(reason = exit.code(), child_stderr = %stderr.trim_end(), "the sandbox probe failed");
                Err(exit)
            }
        }
    }

    /// Runs one task in a fresh child and supervises it to the end.
    pub async fn run(&self, mut task: Task<'_>) -> Result<Finished, RunFailure> {
        let fault = self
            .faults
            .lock()
            .ok()
            .and_then(|mut f| f.remove(task.fault_key));
        let Spawned {
            mut child,
            mut stdin,
            frames,
            diagnostics,
            confinements,
            _workdir: workdir,
        } = self.take(fault).await?;
        let control = task.control;
        let end = {
            let conversation = converse(
                &mut stdin,
                frames,
                &mut task,
                self.settings.max_output_bytes,
            );
            tokio::pin!(conversation);
            tokio::select! {
                r = &mut conversation => r,
                stop = stopped(control) => Err(End::Stop(stop)),
            }
        };
        task.setup.zeroize_all();
        drop(stdin);
        let result = match end {
            Ok(timings) => {
                // The child exits right after `Done`; give it the grace period to do so.
                match tokio::time::timeout(self.settings.kill_grace, child.wait()).await {
                    Ok(Ok(status)) => match classify(status) {
                        None => Ok(Finished {
                            timings,
                            confinements,
                        }),
                        Some(exit) => Err(exit.into()),
                    },
                    _ => {
                        let _ = child.start_kill();
                        Ok(Finished {
                            timings,
                            confinements,
                        })
                    }
                }
            }
            Err(End::Failed(f)) => {
                let _ = tokio::time::timeout(self.settings.kill_grace, child.wait()).await;
                Err(f)
            }
            Err(End::Gone) => {
                let exit = match tokio::time::timeout(self.settings.kill_grace, child.wait()).await
                {
                    Ok(Ok(status)) => classify(status)
                        .unwrap_or_else(|| Exit::Crashed("exited without finishing".into())),
                    _ => {
                        terminate(&mut child, Duration::ZERO).await;
                        Exit::Crashed("closed its output without finishing".into())
                    }
                };
                Err(exit.into())
            }
            Err(End::Protocol(what)) => {
                terminate(&mut child, Duration::ZERO).await;
                Err(Exit::Crashed(what).into())
            }
            Err(End::OutputTooLarge) => {
                terminate(&mut child, Duration::ZERO).await;
                Err(Exit::OutputTooLarge.into())
            }
            Err(End::Stop(why)) => {
                terminate(&mut child, self.settings.kill_grace).await;
                Err(why.into())
            }
        };
        if let Err(RunFailure::Sandbox(exit)) = &result {
            let stderr = diagnostics.await.unwrap_or_default();
            tracing::warn!(reason = exit.code(), child_stderr = %stderr.trim_end(), "run child ended abnormally");
        } else {
            diagnostics.abort();
        }
        drop(workdir);
        self.refill();
        result
    }
}

impl From<Exit> for RunFailure {
    fn from(e: Exit) -> Self {
        RunFailure::Sandbox(e)
    }
}

/// Wipes the secrets a `Setup` carries (the transport key, the fingerprint key, the sealed
/// credentials), on both sides of the pipe.
pub(crate) trait ZeroizeAll {
    /// Wipes them.
    fn zeroize_all(&mut self);
}

impl ZeroizeAll for Setup {
    fn zeroize_all(&mut self) {
        self.transport_key.zeroize();
        self.fingerprint_key.zeroize();
        for c in &mut self.credentials {
            c.sealed.zeroize();
        }
    }
}

/// Waits (10 s at most) for a new child's `Ready`: it is confined and waits for its task. A
/// child that dies instead is classified (a confinement step failed, or a fault fired).
async fn ready(mut spawned: Spawned) -> Result<Spawned, Exit> {
    match tokio::time::timeout(Duration::from_secs(10), next(&mut spawned.frames)).await {
        Ok(Ok(from_child::Msg::Ready(r))) => {
            spawned.confinements = r.confinements;
            Ok(spawned)
        }
        Ok(Ok(_)) => Err(Exit::Crashed("no Ready first".into())),
        Ok(Err(_)) => {
            let status = tokio::time::timeout(Duration::from_secs(2), spawned.child.wait()).await;
            Err(match status {
                Ok(Ok(status)) => {
                    classify(status).unwrap_or_else(|| Exit::Crashed("exited before Ready".into()))
                }
                _ => Exit::Crashed("closed its output before Ready".into()),
            })
        }
        Err(_) => Err(Exit::Crashed("no Ready within 10 s".into())),
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
async fn terminate(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        if !grace.is_zero() && tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Resolves when the run must stop, with why.
async fn stopped(control: &RunControl) -> Exit {
    loop {
        match control.check() {
            Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(RunError::Timeout) => return Exit::Timeout,
            Err(_) => return Exit::Cancelled,
        }
    }
}

/// Reads frames from the child's stdout on a task of its own, so that the conversation can
/// wait on them alongside everything else. The cap bounds any one frame.
fn read_frames(mut stdout: tokio::process::ChildStdout, cap: u64) -> Frames {
    let (tx, rx) = mpsc::channel(16);
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

async fn read_capped(mut stderr: tokio::process::ChildStderr, cap: usize) -> String {
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

async fn next(frames: &mut Frames) -> Result<from_child::Msg, End> {
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
async fn converse(
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
                let _ = task
                    .events
                    .send(RunEvent::ChildProgress {
                        node: p.node,
                        tool: p.tool,
                        finished: p.finished,
                        rows: p.rows,
                    })
                    .await;
            }
            from_child::Msg::Output(o) => {
                output_bytes = output_bytes.saturating_add(o.arrow_ipc.len() as u64);
                if output_bytes > max_output {
                    return Err(End::OutputTooLarge);
                }
                if task
                    .events
                    .send(RunEvent::Output {
                        name: o.name,
                        ipc: o.arrow_ipc,
                    })
                    .await
                    .is_err()
                {
                    return Err(End::Stop(Exit::Cancelled));
                }
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

fn remote(f: crate::proto::sandbox::Failure) -> End {
    End::Failed(RunFailure::Remote {
        code: f.code,
        message: f.message,
        grpc: tonic::Code::from(f.grpc_code),
    })
}

/// Answers one `Need` from the cache, or has the child fetch it (and caches the result).
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
        let load = async {
            let loaded = fetch(stdin, frames, &node, true).await?;
            IpcStreamReader::new(std::io::Cursor::new(loaded.arrow_ipc))
                .finish()
                .map_err(|_| End::Protocol("undecodable rows".into()))
        };
        let (mut frame, source) = task
            .cache
            .get_or_load(key, ttl, task.mode, load)
            .await
            .map_err(|e| match std::sync::Arc::try_unwrap(e) {
                Ok(end) => end,
                // The cache still shares the error (a waiter holds it too): a faithful copy.
                Err(shared) => shared.copy(),
            })?;
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
    let _ = task
        .events
        .send(RunEvent::Input {
            node,
            rows: usize::try_from(rows).unwrap_or(usize::MAX),
            cached,
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_classified_by_signal_and_code() {
        let sig = |s: i32| ExitStatus::from_raw(s);
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        assert_eq!(classify(code(0)), None);
        assert_eq!(
            classify(sig(nix::libc::SIGSYS)),
            Some(Exit::SandboxViolation)
        );
        assert_eq!(classify(sig(nix::libc::SIGXCPU)), Some(Exit::CpuLimit));
        assert_eq!(classify(code(exit::MEMORY)), Some(Exit::MemoryLimit));
        assert_eq!(
            classify(code(exit::SECCOMP)),
            Some(Exit::SetupFailed("seccomp"))
        );
        assert_eq!(
            classify(sig(nix::libc::SIGSEGV)),
            Some(Exit::Crashed("signal SIGSEGV".into()))
        );
        assert_eq!(
            classify(code(101)),
            Some(Exit::Crashed("exit code 101".into()))
        );
    }

    #[test]
    fn faults_round_trip_through_their_names() {
        for f in [
            Fault::Execve,
            Fault::Ptrace,
            Fault::SocketAfterLoad,
            Fault::OpenAfterLoad,
            Fault::Spin,
            Fault::Allocate,
            Fault::Crash,
        ] {
            assert_eq!(f.as_str().parse::<Fault>(), Ok(f));
        }
        assert!("rm-rf".parse::<Fault>().is_err());
    }

    #[test]
    fn child_arguments_round_trip() {
        let a = child::ChildArgs {
            parent: 42,
            limits: Limits {
                memory_bytes: 1 << 30,
                cpu_secs: 7,
                open_files: 64,
                file_bytes: 0,
            },
            fault: Some(Fault::Spin),
        };
        let os: Vec<std::ffi::OsString> = a.to_args().into_iter().map(Into::into).collect();
        assert_eq!(child::ChildArgs::parse(&os), Ok(a));
        assert!(child::ChildArgs::parse(&[]).is_err());
    }
}
