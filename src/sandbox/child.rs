//! The run child: forked by the fork server's template (`template.rs`) for exactly one task.
//!
//! Order of business (the template already holds only stdio, an empty environment,
//! no_new_privs, non-dumpable, the parent-death signal): its pipes as stdio, die with the
//! template, no other descriptor, OOM score, rlimits → the unprivileged host identity (when
//! root) → its own user, mount, IPC and UTS namespaces → an empty bounding set → read
//! `Setup` → open the sealed credentials into locked, zeroizing buffers → an empty root
//! holding only what the task's connections need → no capabilities left → non-dumpable →
//! Landlock (database phase) → seccomp (database phase) → say `Ready`, listing the inputs
//! → load them (the daemon's cache answers first) → drop the credentials and every key → Landlock and
//! seccomp of the compute phase (no files, no sockets) → compute → send the outputs → exit.
//! A daemon that closes the pipe instead of sending `Setup` gets a probe: the same
//! confinement with nothing to hold, then `Ready`.
//!
//! The task itself is `crate::run::execute`, as everywhere: this file only turns the pipe
//! into its input source and event sink (`pipe.rs`) and the `Setup` into its task
//! (`message.rs`). Failures that belong to the task (a query error, an invalid workflow)
//! travel as a `Failure` frame and the child exits 0; everything else is an exit code or a
//! signal that the daemon classifies (see [`super::exit`]).

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

use super::isolate::{self, Identity, State};
use super::pipe::{Out, Pipe, PipeEvents, PipeSource};
use super::policy::{self, Limits};
use super::{Fault, ZeroizeAll, exit, jail, message, needs};
use crate::creds::{Credential, TransportKey};
use crate::locked::LockedBytes;
use crate::proto::sandbox::{self as pb, Done, Ready, Setup, from_child, to_child};
use crate::run::{RunTimings, TaskFailure};
use crate::workflow::RunControl;

/// The template's command line (all of it public: limits, identity and the daemon's pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildArgs {
    /// The daemon's pid.
    pub parent: u32,
    /// Resource limits of each child.
    pub limits: Limits,
    /// The host identity children take when the daemon is root.
    pub identity: Identity,
    /// A fault every child of this template runs (the sandbox's tests; a fork request can
    /// also name one). Refused by a build without the `testing` feature.
    pub fault: Option<Fault>,
}

impl ChildArgs {
    /// The arguments after the hidden subcommand's name.
    pub(crate) fn to_args(&self) -> Vec<String> {
        [
            ("--parent", self.parent.to_string()),
            ("--memory", self.limits.memory_bytes.to_string()),
            ("--cpu", self.limits.cpu_secs.to_string()),
            ("--files", self.limits.open_files.to_string()),
            ("--uid", self.identity.uid.to_string()),
            ("--gid", self.identity.gid.to_string()),
        ]
        .into_iter()
        .chain(self.fault.map(|f| ("--fault", f.as_str().to_owned())))
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }

    /// Parses what [`to_args`](Self::to_args) wrote.
    pub(crate) fn parse(args: &[OsString]) -> Result<ChildArgs, String> {
        let mut out = ChildArgs {
            parent: 0,
            limits: Limits::default(),
            identity: Identity::default(),
            fault: None,
        };
        let mut it = args.iter().map(|a| a.to_string_lossy());
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number"))
            };
            let id = || u32::try_from(num()?).map_err(|_| format!("{flag}: too large"));
            match flag.as_ref() {
                "--parent" => out.parent = id()?,
                "--memory" => out.limits.memory_bytes = num()?,
                "--cpu" => out.limits.cpu_secs = num()?,
                "--files" => out.limits.open_files = num()?,
                "--uid" => out.identity.uid = id()?,
                "--gid" => out.identity.gid = id()?,
                "--fault" => out.fault = Some(value.parse()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if out.parent == 0 {
            return Err("--parent is required".into());
        }
        Ok(out)
    }
}

/// The seccomp filters built once by the template and installed by every child (the set-up
/// phase's names the child's own pid, so each child builds and installs its own: a spare
/// while it waits for a task, off the task's time).
#[derive(Debug)]
pub(crate) struct Compiled {
    /// The database phase's filter, stacked on the set-up phase's.
    pub database: seccompiler::BpfProgram,
    /// The compute phase's filter.
    pub compute: seccompiler::BpfProgram,
}

/// Installs the set-up phase's filter (see `policy`), built for this process (it names its
/// pid). A failure is the task's to report.
fn seal() -> Result<(), jail::StepFailed> {
    let filters = policy::setup_phase().map_err(|e| jail::fail(exit::SECCOMP, "seccomp", e))?;
    jail::seccomp(&filters)
}

/// Ends a forked child with `code`: its pipes flushed, then `_exit`, without the exit-time
/// work a process that lives on would need (thread-local destructors, the allocator's own
/// cleanup): everything it holds goes with its address space, and its answer is already sent.
pub(crate) fn leave(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    jail::yield_teardown();
    // SAFETY: `_exit` only ends the process; nothing of this process is used after it (a forked
    // child of the single-threaded template: no other thread holds a lock or buffer).
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::_exit(code)
    }
}

/// A confinement step failed: say which on stderr, leave with its code.
fn failed(f: jail::StepFailed) -> i32 {
    eprintln!("hubworker sandbox child: {} failed: {}", f.step, f.why);
    f.code
}

fn state(name: &'static str, active: bool, detail: impl Into<String>) -> State {
    State {
        name,
        active,
        detail: detail.into(),
    }
}

/// The forked child, from its first instruction after `fork` to its exit code.
pub(crate) fn forked(
    stdio: [OwnedFd; 3],
    args: &ChildArgs,
    fault: Option<Fault>,
    compiled: &Compiled,
) -> i32 {
    // The template blocks SIGCHLD for its signalfd; a child starts with nothing blocked.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    name(c"hubworker-run");
    if redirect(stdio).is_err() {
        return exit::DESCRIPTORS;
    }
    let template = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0);
    if let Err(f) = jail::enter_child(&args.limits, template, true) {
        return failed(f);
    }
    match isolated(args) {
        Ok(isolated) => task(isolated, args, fault, compiled, seal()),
        Err(code) => code,
    }
}

/// A spare child: forked ahead of need, it takes every step that needs no task (parent-death
/// signal, limits, identity, namespaces; the code a task runs first is warmed, `warm.rs`; the
/// set-up seccomp filter, after the warm-up), then waits on `channel` for a task's pipes (and a planted test fault's name) from the
/// template, and goes on as [`forked`] would. A closed channel (the template ending) ends it.
pub(crate) fn spare(channel: OwnedFd, args: &ChildArgs, compiled: &Compiled) -> i32 {
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    name(c"hubworker-spare");
    if jail::close_all_but(&channel).is_err() {
        return exit::DESCRIPTORS;
    }
    let template = u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0);
    if let Err(f) = jail::enter_child(&args.limits, template, false) {
        return failed(f);
    }
    let isolated = match isolated(args) {
        Ok(i) => i,
        Err(code) => return code,
    };
    // The code a task runs first, faulted into this process's own page tables while it waits
    // (a fork inherits no page-table entries of the binary's code). Single-threaded, so that
    // every thread of the task starts under the task's confinement; checked, failing closed.
    if let Err(why) = super::warm::spare() {
        eprintln!("hubworker sandbox spare: {why} (the task will run colder)");
    }
    if super::template::threads() != Some(1) {
        eprintln!("hubworker sandbox spare: the warm-up left more than one thread");
        return exit::TEMPLATE;
    }
    // Waiting, and everything after, under the set-up filter: installing it is most of the
    // cost of seccomp, and here it is paid before the task.
    let sealed = seal();
    let (fault, stdio) = match super::template::receive_stdio(&channel) {
        Ok(Some(handed)) => handed,
        Ok(None) => return exit::OK,
        Err(()) => return exit::PROTOCOL,
    };
    name(c"hubworker-run");
    if redirect(stdio).is_err() {
        return exit::DESCRIPTORS;
    }
    drop(channel);
    if let Err(f) = jail::enter_child_descriptors() {
        return failed(f);
    }
    task(isolated, args, fault, compiled, sealed)
}

/// The process's name in `ps` and `/proc/<pid>/stat` (what it is doing, for operators).
pub(super) fn name(name: &std::ffi::CStr) {
    let _ = nix::sys::prctl::set_name(name);
}

/// The task's pipes as stdin, stdout and stderr. A pipe that already has its number (a spare
/// closed 0-2, so the kernel hands the received pipes out as exactly those) stays as it is:
/// closing the original after `dup2` would close the very descriptor.
fn redirect(stdio: [OwnedFd; 3]) -> nix::Result<()> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    let [stdin, stdout, stderr] = stdio;
    type Dup = fn(&OwnedFd) -> nix::Result<()>;
    let targets: [(OwnedFd, i32, Dup); 3] = [
        (stdin, 0, |fd| nix::unistd::dup2_stdin(fd)),
        (stdout, 1, |fd| nix::unistd::dup2_stdout(fd)),
        (stderr, 2, |fd| nix::unistd::dup2_stderr(fd)),
    ];
    for (fd, number, dup) in targets {
        if fd.as_raw_fd() == number {
            // Ours as stdio from now on: not closed here.
            let _ = fd.into_raw_fd();
        } else {
            dup(&fd)?;
        }
    }
    Ok(())
}

/// A child once it has its identity and namespaces.
struct Isolated {
    states: Vec<State>,
    namespaced: bool,
    host_uid: u32,
    /// The bounding set is empty.
    bounding: bool,
}

/// The unprivileged identity, the namespaces and an empty bounding set.
fn isolated(args: &ChildArgs) -> Result<Isolated, i32> {
    let mut states = vec![
        state(
            "stdio_only",
            true,
            "stdin, stdout, stderr: pipes to the daemon",
        ),
        state("empty_environment", true, ""),
    ];
    match isolate::unprivileged(args.identity) {
        Ok(detail) => states.push(state("unprivileged_identity", true, detail)),
        Err(f) => return Err(failed(f)),
    }
    let host_uid = nix::unistd::getuid().as_raw();
    let entered = isolate::namespaces().map_err(failed)?;
    let namespaced = entered.isolated;
    let why_not = "the host allows no user namespace to this process";
    for (name, active) in [
        ("user_namespace", namespaced),
        ("ipc_namespace", entered.ipc),
        ("uts_namespace", entered.uts),
        ("mount_namespace", namespaced),
    ] {
        let detail = match (active, namespaced) {
            (true, _) => "",
            (false, true) => "forbidden here (a service manager's namespace restriction)",
            (false, false) => why_not,
        };
        states.push(state(name, active, detail));
    }
    let bounding = isolate::drop_bounding_set().map_err(failed)?;
    Ok(Isolated {
        states,
        namespaced,
        host_uid,
        bounding,
    })
}

/// The rest of a child's life, with its task's pipes as stdio: the task read, the root built
/// for it, the last confinements, `Ready`, the task, the exit code.
fn task(
    isolated: Isolated,
    args: &ChildArgs,
    fault: Option<Fault>,
    compiled: &Compiled,
    sealed: Result<(), jail::StepFailed>,
) -> i32 {
    if let Err(f) = sealed {
        return failed(f);
    }
    let Isolated {
        mut states,
        namespaced,
        host_uid,
        bounding,
    } = isolated;
    let pipe = Rc::new(RefCell::new(Pipe::new(
        std::io::stdin().lock(),
        Out(std::io::stdout()),
    )));
    let setup = match pipe.borrow_mut().read() {
        Ok(Some(to_child::Msg::Setup(s))) => Some(s),
        // The daemon closed the pipe: a probe.
        Ok(None) => None,
        Ok(Some(_)) | Err(_) => return exit::PROTOCOL,
    };
    // The credentials are opened (the SQLite files and the servers' ports are in them), then
    // the root is built for exactly those.
    let (prepared, setup) = match setup {
        Some(mut s) => {
            let p = prepare(&mut s);
            s.zeroize_all();
            (Some(p), Some(s))
        }
        None => (None, None),
    };
    let mut plan = needs::Plan::default();
    let mut prepared = match prepared {
        Some(Ok((task, limits, mut connections))) => {
            plan = needs::plan(&mut connections, namespaced);
            Some(Ok((task, limits, connections)))
        }
        other => other,
    };
    let rooted = if namespaced {
        match isolate::enter_empty_root(&plan.binds) {
            Ok(u) => u,
            Err(f) => return failed(f),
        }
    } else {
        None
    };
    states.push(match &rooted {
        Some(_) => state("empty_root", true, plan.describe()),
        None if namespaced => state(
            "empty_root",
            false,
            "the host forbids mounting (a service manager's system call filter)",
        ),
        None => state("empty_root", false, "no mount namespace"),
    });
    if rooted.is_none()
        && let Some(Ok((_, _, connections))) = prepared.as_mut()
    {
        plan.without_root(connections);
    }
    let unreachable = rooted.unwrap_or_default();
    match isolate::clear_capabilities(bounding) {
        Ok(detail) => states.push(state("capabilities_cleared", true, detail)),
        Err(f) => return failed(f),
    }
    let limits = args.limits;
    states.push(state(
        "rlimits",
        true,
        format!(
            "address space {} B, CPU {} s, {} open files, no file writes, no core",
            limits.memory_bytes, limits.cpu_secs, limits.open_files
        ),
    ));
    states.push(state("no_new_privs", true, ""));
    if let Err(f) = jail::non_dumpable() {
        return failed(f);
    }
    states.push(state("non_dumpable", true, ""));
    states.push(state(
        "parent_death_signal",
        true,
        "SIGKILL when the fork server (and so the daemon) ends",
    ));
    let landlocked = match isolate::landlock_database(&plan.read_files, &plan.ports) {
        Ok(l) => l,
        Err(f) => return failed(f),
    };
    let abi = landlocked.abi;
    let no_landlock = |what: &str| format!("{what} (Landlock ABI {abi})");
    states.push(state(
        "landlock_filesystem",
        landlocked.filesystem,
        if landlocked.filesystem {
            format!("read-only: {}", plan.read_files.len())
        } else {
            no_landlock("not available")
        },
    ));
    states.push(state(
        "landlock_network",
        landlocked.network,
        if landlocked.network {
            format!("TCP connect only to ports {:?}, no bind", plan.ports)
        } else {
            no_landlock("needs ABI 4")
        },
    ));
    states.push(state(
        "landlock_scopes",
        landlocked.scopes,
        if landlocked.scopes {
            "no signals, no abstract Unix sockets outside the child".to_owned()
        } else {
            no_landlock("needs ABI 6")
        },
    ));
    if let Err(f) = jail::seccomp(std::slice::from_ref(&compiled.database)) {
        return failed(f);
    }
    states.push(state(
        "seccomp",
        true,
        "allowlist; set-up calls taken away before Ready, then the compute phase's",
    ));
    if let (Some(Ok(_)), Some(lost)) = (&prepared, unreachable.first()) {
        prepared = Some(Err(needs::unreachable(&plan, lost, host_uid)));
    }
    let inputs = match &prepared {
        Some(Ok((crate::run::Task::Run(wf), limits, connections))) => {
            super::pipe::announce(wf, connections, limits)
        }
        _ => Vec::new(),
    };
    let ready = from_child::Msg::Ready(Ready {
        confinements: states
            .iter()
            .map(|s| pb::Confinement {
                name: s.name.to_owned(),
                active: s.active,
                detail: s.detail.clone(),
            })
            .collect(),
        landlock_abi: abi,
        inputs: inputs.clone(),
    });
    if pipe.borrow_mut().send(ready).is_err() {
        return exit::PROTOCOL;
    }
    super::fault::database_phase(fault, args.parent);
    let Some(setup) = setup else {
        return exit::OK;
    };
    let result = match prepared {
        Some(Ok(p)) => perform(p, &setup, &pipe, fault, inputs, compiled),
        Some(Err(f)) => Err(f),
        None => return exit::OK,
    };
    let mut pipe = pipe.borrow_mut();
    if let Some(code) = pipe.exit {
        return code;
    }
    let sent = match result {
        Ok(t) => pipe.send(from_child::Msg::Done(Done {
            load_us: t.load.as_micros() as u64,
            compute_us: t.compute.as_micros() as u64,
            encode_us: t.encode.as_micros() as u64,
        })),
        Err(f) => pipe.send(from_child::Msg::Failure(message::failure(&f))),
    };
    match (sent, pipe.exit) {
        (_, Some(code)) => code,
        (Ok(()), None) => exit::OK,
        (Err(_), None) => exit::PROTOCOL,
    }
}

/// The compute phase: Landlock with nothing allowed, Polars' thread pool started under it
/// (its threads inherit the domain; it looks for /proc and /sys, which are not there, and
/// falls back to the CPU affinity), then the seccomp filter on every thread.
pub(super) fn enter_compute_phase(
    filter: &seccompiler::BpfProgram,
) -> Result<(), jail::StepFailed> {
    fix_glibc_arenas();
    isolate::landlock_compute()?;
    let _ = polars_core::runtime::RAYON.current_num_threads();
    jail::enter_compute_phase(filter)
}

/// Threads start during the compute phase (the streaming engine's executor and its blocking
/// pool grow on demand). glibc's own allocator (which glibc uses for a new thread's
/// thread-local destructors; Rust's allocations go to mimalloc) sizes its arena count the
/// first time it needs a ninth arena by reading `/sys/devices/system/cpu/online`, an `openat`
/// the compute filter answers by killing the child. A fixed arena count means it never looks.
fn fix_glibc_arenas() {
    // SAFETY: mallopt only sets a field of glibc's allocator parameters, under its own lock;
    // M_ARENA_MAX with a positive count is a documented, always-valid setting.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, GLIBC_ARENAS);
    }
}

/// glibc allocator arenas in a run child (only glibc's internal allocations use them).
const GLIBC_ARENAS: std::ffi::c_int = 2;

/// The task: [`crate::run::execute`] with the pipe as its input source and event sink, the
/// connections already opened.
fn perform<R: Read>(
    (task, limits, connections): Prepared,
    setup: &Setup,
    pipe: &Rc<RefCell<Pipe<R>>>,
    fault: Option<Fault>,
    announced: Vec<pb::Need>,
    compiled: &Compiled,
) -> Result<RunTimings, TaskFailure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| TaskFailure::Internal("starting the child's runtime"))?;
    // The daemon enforces the run's deadline; the child has none of its own.
    let control = RunControl::with_timeout(Duration::MAX);
    let mut inputs = PipeSource {
        pipe: pipe.clone(),
        runtime: Some(runtime),
        compute_fault: super::fault::compute_phase(fault),
        compute_filter: compiled.compute.clone(),
        cache_entry_max_bytes: setup.cache_entry_max_bytes,
        announced: announced.into(),
    };
    let mut events = PipeEvents { pipe: pipe.clone() };
    crate::run::execute(
        task,
        connections,
        &limits,
        &control,
        &mut inputs,
        &mut events,
    )
}

pub(super) type Prepared = (
    crate::run::Task,
    crate::run::Limits,
    Vec<crate::run::Connection>,
);

fn prepare(setup: &mut Setup) -> Result<Prepared, TaskFailure> {
    let (task, limits) = message::task_of(setup)?;
    let key = LockedBytes::take(&mut setup.transport_key);
    let ttl = Duration::from_secs(setup.credential_ttl_secs);
    let credentials = open_all(&key, &setup.credentials, ttl)?;
    drop(key);
    let fingerprint_key = LockedBytes::take(&mut setup.fingerprint_key);
    let connections =
        crate::run::connections(credentials, setup.now, Some(fingerprint_key.expose()))?;
    drop(fingerprint_key);
    Ok((task, limits, connections))
}

/// Opens every sealed credential. The plaintext lands in a locked buffer that is wiped when
/// dropped; the parsed fields are zeroizing [`crate::secret::Secret`]s.
fn open_all(
    key: &LockedBytes,
    sealed: &[crate::proto::sandbox::SealedCredential],
    ttl: Duration,
) -> Result<Vec<Credential>, TaskFailure> {
    let text = std::str::from_utf8(key.expose())
        .map_err(|_| TaskFailure::Credential(crate::creds::CredError::BadKey))?;
    let transport = TransportKey::from_text(text).map_err(TaskFailure::Credential)?;
    sealed
        .iter()
        .map(|s| {
            transport
                .open(&s.connection, &s.sealed, ttl)
                .map_err(TaskFailure::Credential)
        })
        .collect()
}
