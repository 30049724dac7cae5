//! Sandboxed runs: one confined child process per task, and credentials that do not outlive it.
//!
//! The daemon's side lives here; the child's in [`child`] (with its confinement in `jail`
//! and its limits and syscall filters, as data, in `policy`). For each run the daemon:
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
//! test fault always gets a fresh child. Every child is started from one long-lived thread
//! (`spawner.rs`), so that its parent-death signal follows the daemon, not a passing thread.

pub mod child;
mod conversation;
pub mod exit;
mod fault;
pub(crate) mod jail;
mod message;
mod pipe;
pub(crate) mod policy;
mod spawner;
#[cfg(test)]
mod tests_wire;
pub(crate) mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, Command};
use zeroize::Zeroize;

use crate::cache::{CacheMode, ResultCache};
use crate::proto::sandbox::{Setup, from_child};
use crate::run::{RunEvent, RunTimings, Task, TaskFailure, channel};
use crate::workflow::RunControl;
use conversation::{Context, End, Frames, converse, next, read_capped, read_frames, stop_reason};
pub(crate) use exit::{Exit, classify};
pub use fault::Fault;
pub(crate) use message::Provisions;
pub(crate) use policy::Limits;
use spawner::Spawner;

/// The hidden subcommand that turns the binary into a run child.
pub const CHILD_COMMAND: &str = "__sandbox-child";

/// How the daemon runs children.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
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

/// The daemon's sandbox: settings, the pool of pre-started children, the thread that starts
/// them, faults planted by tests.
pub struct Sandbox {
    settings: Settings,
    faults: Mutex<HashMap<String, Fault>>,
    pool: Pool,
    pending: Arc<AtomicUsize>,
    spawner: Spawner,
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
pub(crate) struct Job<'a> {
    /// The task.
    pub(crate) task: &'a Task,
    /// Its sealed credentials, the keys and the limits (sent once, then wiped).
    pub(crate) provisions: Provisions<'a>,
    /// Selects a planted fault (tests): the workflow hash, or the connection for inspect.
    pub(crate) fault_key: &'a str,
    /// The result cache.
    pub(crate) cache: &'a ResultCache,
    /// Cache mode.
    pub(crate) mode: CacheMode,
    /// Cache TTL per connection.
    pub(crate) ttl: &'a (dyn Fn(&str) -> Duration + Sync),
    /// Cancel and deadline.
    pub(crate) control: &'a RunControl,
    /// Progress, inputs and output pieces go here; bounded in bytes, so a client that reads
    /// slowly slows the child down instead of piling its outputs up in the daemon.
    pub(crate) events: &'a channel::Sender<RunEvent>,
}

impl std::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why a sandboxed task did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxFailure {
    /// The task failed in an ordinary way (the child reported it, or it never started).
    #[error(transparent)]
    Task(#[from] TaskFailure),
    /// The child ended abnormally: a limit, a violation, a crash, a stop.
    #[error(transparent)]
    Exit(#[from] Exit),
}

/// What a finished task reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finished {
    /// Where the time went, as the child measured it.
    pub(crate) timings: RunTimings,
    /// The confinements the child reported.
    pub(crate) confinements: Vec<String>,
}

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
    /// A sandbox with `settings` (and its spawner thread).
    pub(crate) fn new(settings: Settings) -> Sandbox {
        Sandbox {
            settings,
            faults: Mutex::new(HashMap::new()),
            pool: Arc::new(Mutex::new(Vec::new())),
            pending: Arc::new(AtomicUsize::new(0)),
            spawner: Spawner::new(),
        }
    }

    /// Plants a fault for the next task whose fault key (workflow hash) is `key`. For the
    /// sandbox's tests: the fault runs inside the confined child and proves a confinement.
    #[doc(hidden)]
    pub fn plant_fault(&self, key: &str, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.insert(key.to_owned(), fault);
        }
    }

    /// Starts a child from the spawner thread: the binary re-executed in its hidden mode, with
    /// an empty environment, only stdio, an empty private working directory, and pipes for the
    /// conversation.
    async fn spawn_with(
        spawner: &Spawner,
        settings: &Settings,
        fault: Option<Fault>,
    ) -> Result<Spawned, SandboxFailure> {
        let workdir = tempfile::Builder::new()
            .prefix("hubworker-run-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create a run directory");
                TaskFailure::Internal("creating a run directory")
            })?;
        let args = child::ChildArgs {
            parent: std::process::id(),
            limits: settings.limits,
            fault,
        };
        let mut command = Command::new(&settings.program);
        command
            .arg(CHILD_COMMAND)
            .args(args.to_args())
            .env_clear()
            .current_dir(workdir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = spawner.spawn(command).await.map_err(|e| {
            tracing::error!(error = %e, program = %settings.program.display(), "cannot start a run child");
            TaskFailure::Internal("starting a run child")
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(TaskFailure::Internal("a run child without pipes").into());
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
    async fn take(&self, fault: Option<Fault>) -> Result<Spawned, SandboxFailure> {
        if fault.is_none() {
            loop {
                let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
                let Some(mut s) = pooled else { break };
                // A pooled child that died meanwhile (the OOM killer, an operator) is reaped
                // (`try_wait`) and skipped.
                if matches!(s.child.try_wait(), Ok(None)) {
                    return Ok(s);
                }
            }
        }
        let spawned = Self::spawn_with(&self.spawner, &self.settings, fault).await?;
        Ok(ready(spawned).await?)
    }

    /// Reaps pooled children that died while waiting (so none lingers as a zombie), then
    /// starts children in the background until the pool holds `settings.pool`.
    pub(crate) fn refill(&self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.retain_mut(|s| matches!(s.child.try_wait(), Ok(None)));
        }
        let have = self.pool.lock().map(|p| p.len()).unwrap_or(usize::MAX);
        let pending = self.pending.load(Ordering::SeqCst);
        let want = self.settings.pool.saturating_sub(have + pending);
        for _ in 0..want {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let (spawner, settings, pool, pending) = (
                self.spawner.clone(),
                self.settings.clone(),
                self.pool.clone(),
                self.pending.clone(),
            );
            tokio::spawn(async move {
                let started = match Self::spawn_with(&spawner, &settings, None).await {
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
    pub(crate) async fn probe(&self) -> Result<Vec<String>, Exit> {
        let spawned = Self::spawn_with(&self.spawner, &self.settings, None)
            .await
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

    /// Runs one task in a fresh child and supervises it to the end. Every way out reaps the
    /// child (waits for it, or kills and then waits): none is left behind as a zombie.
    pub(crate) async fn run(&self, job: Job<'_>) -> Result<Finished, SandboxFailure> {
        let fault = self
            .faults
            .lock()
            .ok()
            .and_then(|mut f| f.remove(job.fault_key));
        let Spawned {
            mut child,
            mut stdin,
            frames,
            diagnostics,
            confinements,
            _workdir: workdir,
        } = self.take(fault).await?;
        let control = job.control;
        let context = Context {
            cache: job.cache,
            mode: job.mode,
            ttl: job.ttl,
            control,
            events: job.events,
        };
        let setup = message::setup(job.task, job.provisions);
        let end = {
            let conversation = converse(
                &mut stdin,
                frames,
                setup,
                &context,
                self.settings.max_output_bytes,
            );
            tokio::pin!(conversation);
            tokio::select! {
                r = &mut conversation => r,
                () = wait_stopped(control) => Err(End::Stop(stop_reason(control))),
            }
        };
        drop(stdin);
        let grace = self.settings.kill_grace;
        let result = match end {
            // The child exits right after `Done` (or a `Failure`); give it the grace period.
            Ok(timings) => match exited(&mut child, grace).await {
                Some(status) => match classify(status) {
                    None => Ok(Finished {
                        timings,
                        confinements,
                    }),
                    Some(exit) => Err(exit.into()),
                },
                None => Ok(Finished {
                    timings,
                    confinements,
                }),
            },
            Err(End::Failed(f)) => {
                let _ = exited(&mut child, grace).await;
                Err(f.into())
            }
            // The pipe closed: how the child ended says why (a signal from outside is a crash,
            // with the signal named).
            Err(End::Gone) => Err(match exited(&mut child, grace).await {
                Some(status) => classify(status)
                    .unwrap_or_else(|| Exit::Crashed("exited without finishing".into())),
                None => Exit::Crashed("closed its output without finishing".into()),
            }
            .into()),
            Err(End::Protocol(what)) => {
                terminate(&mut child, Duration::ZERO).await;
                Err(Exit::Crashed(what).into())
            }
            Err(End::OutputTooLarge) => {
                terminate(&mut child, Duration::ZERO).await;
                Err(Exit::OutputTooLarge.into())
            }
            Err(End::Stop(why)) => {
                terminate(&mut child, grace).await;
                Err(why.into())
            }
        };
        if let Err(SandboxFailure::Exit(exit)) = &result {
            let stderr = diagnostics.await.unwrap_or_default();
            tracing::warn!(reason = exit.code(), detail = %exit, child_stderr = %stderr.trim_end(), "run child ended abnormally");
        } else {
            diagnostics.abort();
        }
        drop(workdir);
        self.refill();
        result
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

/// Waits up to `grace` for the child to exit on its own; if it does not, kills it. Either
/// way the child is reaped. The status, if it exited by itself.
async fn exited(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            terminate(child, Duration::ZERO).await;
            None
        }
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

/// Resolves once the run must stop (cancelled or out of time).
async fn wait_stopped(control: &RunControl) {
    while control.check().is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "testing")]
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
