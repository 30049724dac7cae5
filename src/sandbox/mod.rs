//! Sandboxed runs: one confined child process per task, and credentials that do not outlive it.
//!
//! The daemon's side lives here; the child's in `child` (its process-level confinement in
//! `jail`, its isolation from the host in `isolate`, its limits and syscall filters, as data,
//! in `policy`). For each run the daemon:
//!
//! 1. asks the fork server (`forkserver.rs`) for a child: a template process, started once
//!    from the re-executed binary (`hubworker __sandbox-template`, with an empty environment,
//!    only stdio and an empty private directory; setup runs single-threaded in a fresh
//!    process, never in a `pre_exec` closure of the multi-threaded daemon), forks one child
//!    per task with fresh pipes as its stdio;
//! 2. sends the task with the credentials **still sealed**: their plaintext never exists in
//!    the daemon; the child confines itself for exactly that task and says `Ready`;
//! 3. answers the child's `Need`s from its per-credential result cache (the child computes the
//!    fingerprints; the daemon never sees what they are made of), and caches what it loads;
//! 4. forwards progress and outputs, counting output bytes against a cap;
//! 5. supervises in one `select!`: the run's deadline and `Cancel` end the child with SIGTERM,
//!    then SIGKILL after a short grace; the child's own end is classified ([`Exit`]).
//!
//! A child is used for exactly one task.

mod bpf;
pub(crate) mod child;
mod conversation;
pub mod exit;
mod fault;
mod forkserver;
mod fuzzing;
pub(crate) mod isolate;
pub(crate) mod jail;
mod message;
mod needs;
mod pagecache;
mod pipe;
pub(crate) mod policy;
mod spawner;
pub mod template;
#[cfg(test)]
mod tests_conversation;
#[cfg(test)]
mod tests_wire;
mod warm;
pub(crate) mod wire;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroize;

use crate::cache::{CacheMode, ResultCache};
use crate::proto::sandbox::{Setup, from_child};
use crate::run::{RunEvent, RunTimings, Task, TaskFailure, channel};
use crate::workflow::RunControl;
use conversation::{Context, End, converse, next, read_capped, read_frames, stop_reason};
pub(crate) use exit::{Exit, classify};
pub use fault::Fault;
#[cfg(feature = "testing")]
pub use fault::SECRET_FILE;
use forkserver::{ForkServer, Forked, RunChild};
#[doc(hidden)]
pub use fuzzing::fuzz_frames;
pub(crate) use isolate::Identity;
pub(crate) use message::Provisions;
pub(crate) use policy::Limits;
pub use template::TEMPLATE_COMMAND;

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
    /// The host identity children take when the daemon runs as root.
    pub identity: Identity,
    /// Confinements the daemon refuses to run without (names from [`isolate::ALL`]).
    pub require: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            program: PathBuf::from("/proc/self/exe"),
            limits: Limits::default(),
            kill_grace: Duration::from_millis(500),
            max_output_bytes: 1 << 30,
            identity: Identity::default(),
            require: Vec::new(),
        }
    }
}

/// The daemon's sandbox: settings, the fork server, faults planted by tests.
pub struct Sandbox {
    settings: Settings,
    faults: Mutex<HashMap<String, Fault>>,
    forks: ForkServer,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("settings", &self.settings)
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

/// One confinement's state, as a child reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Confinement {
    /// Its name.
    pub(crate) name: String,
    /// In force.
    pub(crate) active: bool,
    /// What it amounts to, or why it is absent.
    pub(crate) detail: String,
}

/// Every confinement's state in one child, and the Landlock ABI it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Confinements {
    /// In the order applied.
    pub(crate) states: Vec<Confinement>,
    /// The kernel's Landlock ABI (0: none).
    pub(crate) landlock_abi: u32,
}

impl Confinements {
    /// The names of those in force.
    pub(crate) fn active(&self) -> Vec<String> {
        self.states
            .iter()
            .filter(|c| c.active)
            .map(|c| c.name.clone())
            .collect()
    }

    /// The first of `required` not in force here.
    fn missing<'r>(&self, required: &'r [String]) -> Option<&'r str> {
        required
            .iter()
            .find(|r| !self.states.iter().any(|c| c.active && c.name == **r))
            .map(String::as_str)
    }
}

/// What a finished task reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finished {
    /// Where the time went, as the child measured it.
    pub(crate) timings: RunTimings,
    /// The confinements the child reported.
    pub(crate) confinements: Confinements,
}

impl Sandbox {
    /// A sandbox with `settings` (its fork server starts with the first child).
    pub(crate) fn new(settings: Settings) -> Sandbox {
        let args = child::ChildArgs {
            parent: std::process::id(),
            limits: settings.limits,
            identity: settings.identity,
            fault: None,
        };
        Sandbox {
            forks: ForkServer::new(settings.program.clone(), args),
            settings,
            faults: Mutex::new(HashMap::new()),
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

    /// Forks a child for one task.
    async fn fork(&self, fault: Option<Fault>) -> Result<Forked, SandboxFailure> {
        self.forks.fork(fault).await.map_err(|e| {
            tracing::error!(error = %e, "cannot start a run child");
            SandboxFailure::Task(TaskFailure::Internal("starting a run child"))
        })
    }

    /// Forks one child with no task (it confines itself as for a task with nothing to hold,
    /// says `Ready` and exits): proves the sandbox works on this host and returns the
    /// confinements in force. Fails when one that `[sandbox] require` lists is absent.
    pub(crate) async fn probe(&self) -> Result<Confinements, Exit> {
        let Forked {
            mut child,
            stdin,
            stdout,
            stderr,
        } = self
            .fork(None)
            .await
            .map_err(|_| Exit::Crashed("the run child could not be started".into()))?;
        drop(stdin);
        let diagnostics = tokio::spawn(read_capped(stderr, 16 << 10));
        let mut frames = read_frames(stdout, self.settings.max_output_bytes);
        let ready = tokio::time::timeout(Duration::from_secs(10), next(&mut frames)).await;
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        let stderr = diagnostics.await.unwrap_or_default();
        let exit = match status {
            Ok(Some(status)) => classify(status),
            Ok(None) => Some(Exit::Crashed("the fork server ended".into())),
            Err(_) => {
                child.kill().await;
                Some(Exit::Crashed("did not stop when told".into()))
            }
        };
        let found = match (exit, ready) {
            (None, Ok(Ok(from_child::Msg::Ready(r)))) => confinements_of(r),
            (Some(exit), _) => {
                tracing::error!(reason = exit.code(), child_stderr = %stderr.trim_end(), "the sandbox probe failed");
                return Err(exit);
            }
            (None, _) => return Err(Exit::Crashed("no Ready from the probe".into())),
        };
        if let Some(missing) = found.missing(&self.settings.require) {
            let why = found
                .states
                .iter()
                .find(|c| c.name == missing)
                .map(|c| c.detail.clone())
                .unwrap_or_else(|| "unknown".into());
            tracing::error!(confinement = missing, why = %why, "[sandbox] require lists a confinement this host does not give");
            return Err(Exit::SetupFailed("a required confinement is not available"));
        }
        Ok(found)
    }

    /// Runs one task in a fresh child and supervises it to the end. Every way out reaps the
    /// child (waits for it, or kills and then waits): none is left behind.
    pub(crate) async fn run(&self, job: Job<'_>) -> Result<Finished, SandboxFailure> {
        let fault = self
            .faults
            .lock()
            .ok()
            .and_then(|mut f| f.remove(job.fault_key));
        let Forked {
            mut child,
            mut stdin,
            stdout,
            stderr,
        } = self.fork(fault).await?;
        let diagnostics = tokio::spawn(read_capped(stderr, 16 << 10));
        let frames = read_frames(stdout, self.settings.max_output_bytes);
        let control = job.control;
        let context = Context {
            cache: job.cache,
            mode: job.mode,
            ttl: job.ttl,
            control,
            events: job.events,
        };
        let setup = message::setup(job.task, job.provisions);
        let mut found = Confinements::default();
        let require = &self.settings.require;
        let mut on_ready = |ready| {
            found = confinements_of(ready);
            found.missing(require).is_none()
        };
        let end = {
            let conversation = converse(
                &mut stdin,
                frames,
                setup,
                &context,
                self.settings.max_output_bytes,
                &mut on_ready,
            );
            tokio::pin!(conversation);
            tokio::select! {
                r = &mut conversation => r,
                () = wait_stopped(control) => Err(End::Stop(stop_reason(control))),
            }
        };
        drop(stdin);
        let grace = self.settings.kill_grace;
        let finished = |timings| Finished {
            timings,
            confinements: found.clone(),
        };
        let result = match end {
            // The child exits right after `Done` (or a `Failure`): everything it had to say is
            // said, so the run ends now and the child is reaped in the background (the grace
            // period, then SIGKILL), its end logged if it was not clean. Tearing a process
            // down takes most of a millisecond nobody has to wait for.
            Ok(timings) => {
                reap_later(child, grace);
                Ok(finished(timings))
            }
            Err(End::Failed(f)) => {
                reap_later(child, grace);
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
            Err(End::Refused) => {
                terminate(&mut child, Duration::ZERO).await;
                Err(Exit::SetupFailed("a required confinement is not available").into())
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
        result
    }
}

/// A child's `Ready` as the daemon keeps it.
fn confinements_of(ready: crate::proto::sandbox::Ready) -> Confinements {
    Confinements {
        states: ready
            .confinements
            .into_iter()
            .map(|c| Confinement {
                name: c.name,
                active: c.active,
                detail: c.detail,
            })
            .collect(),
        landlock_abi: ready.landlock_abi,
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

/// Waits up to `grace` for the child to exit on its own; if it does not, kills it. Either
/// way the child is reaped. The status, if it exited by itself.
async fn exited(child: &mut RunChild, grace: Duration) -> Option<std::process::ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            terminate(child, Duration::ZERO).await;
            None
        }
    }
}

/// Waits for a child that finished its task (see [`exited`]) on a task of its own.
fn reap_later(mut child: RunChild, grace: Duration) {
    tokio::spawn(async move {
        if let Some(exit) = exited(&mut child, grace).await.and_then(classify) {
            tracing::warn!(reason = exit.code(), detail = %exit, "run child ended abnormally after finishing its task");
        }
    });
}

/// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
async fn terminate(child: &mut RunChild, grace: Duration) {
    child.signal(nix::sys::signal::Signal::SIGTERM);
    if !grace.is_zero() && tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    child.kill().await;
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
            Fault::ReadRootFile,
            Fault::ListRoot,
            Fault::ConnectOtherPort,
            Fault::SignalDaemon,
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
    fn a_required_confinement_must_be_in_force() {
        let state = |name: &str, active: bool| Confinement {
            name: name.to_owned(),
            active,
            detail: String::new(),
        };
        let found = Confinements {
            states: vec![state("seccomp", true), state("empty_root", false)],
            landlock_abi: 0,
        };
        let require = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(found.missing(&require(&[])), None);
        assert_eq!(found.missing(&require(&["seccomp"])), None);
        assert_eq!(
            found.missing(&require(&["seccomp", "empty_root"])),
            Some("empty_root")
        );
        assert_eq!(
            found.missing(&require(&["landlock_network"])),
            Some("landlock_network")
        );
        assert_eq!(found.active(), ["seccomp"]);
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
            identity: Identity {
                uid: 1234,
                gid: 5678,
            },
            fault: Some(Fault::Spin),
        };
        let os: Vec<std::ffi::OsString> = a.to_args().into_iter().map(Into::into).collect();
        assert_eq!(child::ChildArgs::parse(&os), Ok(a));
        assert!(child::ChildArgs::parse(&[]).is_err());
    }
}
