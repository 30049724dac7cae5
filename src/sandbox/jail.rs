//! The child's confinement, first thing in its `main`, in the order the style guide fixes:
//! only stdio descriptors, an empty environment, an empty private working directory →
//! namespaces where the host allows → rlimits → no_new_privs → non-dumpable → parent-death
//! signal → seccomp last. Every step but the namespaces is required: a failed step returns
//! its own exit code and the child runs nothing (fail closed; there is no switch to skip one).

use std::path::Path;

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;

use super::exit;
use super::policy::{self, Limits};

/// A confinement step that failed, with the exit code the child leaves with.
#[derive(Debug)]
pub(crate) struct StepFailed {
    /// Exit code (see [`super::exit`]).
    pub code: i32,
    /// Which step, for the daemon's log (the child writes it to stderr).
    pub step: &'static str,
    /// Why.
    pub why: String,
}

fn fail(code: i32, step: &'static str, why: impl std::fmt::Display) -> StepFailed {
    StepFailed {
        code,
        step,
        why: why.to_string(),
    }
}

/// Confines the calling process (which must still be single-threaded) and returns the names
/// of the confinements in force. `parent` is the daemon's pid, to catch a daemon that died
/// before the parent-death signal was armed.
pub(crate) fn enter(limits: &Limits, parent: u32) -> Result<Vec<&'static str>, StepFailed> {
    let mut active = Vec::with_capacity(12);

    // 1. Only stdin, stdout and stderr.
    close_inherited_descriptors()?;
    active.push("stdio_only");

    // 2. An empty environment: the daemon clears it; refuse to run if anything leaked in.
    if let Some((name, _)) = std::env::vars_os().next() {
        return Err(fail(
            exit::ENVIRONMENT,
            "environment",
            format!("the environment is not empty ({name:?} is set)"),
        ));
    }
    active.push("empty_environment");

    // 3. The working directory: empty, private, ours.
    check_private_empty_cwd()?;
    active.push("private_tmpdir");

    // 4. Namespaces, where the host allows unprivileged user namespaces: the child's
    //    capabilities then mean nothing outside, and it gets its own IPC and host name.
    if nix::sched::unshare(
        nix::sched::CloneFlags::CLONE_NEWUSER
            | nix::sched::CloneFlags::CLONE_NEWIPC
            | nix::sched::CloneFlags::CLONE_NEWUTS,
    )
    .is_ok()
    {
        active.push("user_namespace");
        active.push("ipc_namespace");
    }

    // The kernel's OOM killer should pick a run child before the daemon. Raising one's own
    // score needs no privilege. (Before the rlimits: RLIMIT_FSIZE 0 forbids this write too.)
    std::fs::write("/proc/self/oom_score_adj", "1000")
        .map_err(|e| fail(exit::OOM_SCORE, "oom_score_adj", e))?;

    // 5. Resource limits (hard = soft: the child cannot raise them back).
    let limit = |resource, soft: u64, hard: u64| {
        setrlimit(resource, soft, hard).map_err(|e| fail(exit::RLIMITS, "rlimits", e))
    };
    limit(
        Resource::RLIMIT_AS,
        limits.memory_bytes,
        limits.memory_bytes,
    )?;
    // CPU: SIGXCPU at the soft limit, SIGKILL one second later (hard = soft would send
    // SIGKILL straight away, indistinguishable from any other kill).
    limit(
        Resource::RLIMIT_CPU,
        limits.cpu_secs,
        limits.cpu_secs.saturating_add(1),
    )?;
    limit(
        Resource::RLIMIT_NOFILE,
        limits.open_files,
        limits.open_files,
    )?;
    limit(Resource::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)?;
    limit(Resource::RLIMIT_CORE, 0, 0)?;
    active.push("rlimits");

    // 6. No privilege gains through exec (not that exec is allowed) or setuid files.
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail(exit::NO_NEW_PRIVS, "no_new_privs", e))?;
    active.push("no_new_privs");

    // 7. Non-dumpable: no core file, no /proc/<pid>/mem or ptrace by same-user processes.
    crate::locked::set_non_dumpable().map_err(|e| fail(exit::DUMPABLE, "non_dumpable", e))?;
    active.push("non_dumpable");

    // 8. Die with the daemon; and if it is already gone, stop now. The signal is tied to the
    //    thread that forked us, which is the daemon's spawner thread: it lives as long as the
    //    daemon (see `spawner.rs`), so this means the daemon process, not a passing thread.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| fail(exit::PARENT_DEATH, "parent_death_signal", e))?;
    let ppid = nix::unistd::getppid().as_raw();
    if u32::try_from(ppid).ok() != Some(parent) {
        return Err(fail(
            exit::PARENT_DEATH,
            "parent_death_signal",
            "the daemon is gone",
        ));
    }
    active.push("parent_death_signal");

    // 9. Seccomp, last: from here on the allowlist decides every syscall.
    let filters = policy::database_phase().map_err(|e| fail(exit::SECCOMP, "seccomp", e))?;
    for filter in &filters {
        seccompiler::apply_filter(filter).map_err(|e| fail(exit::SECCOMP, "seccomp", e))?;
    }
    active.push("seccomp");
    Ok(active)
}

/// Installs the compute-phase filter on every thread of the process.
pub(crate) fn enter_compute_phase() -> Result<(), StepFailed> {
    let filter = policy::compute_phase().map_err(|e| fail(exit::SECCOMP, "seccomp_compute", e))?;
    seccompiler::apply_filter_all_threads(&filter)
        .map_err(|e| fail(exit::SECCOMP, "seccomp_compute", e))
}

/// Closes every descriptor above 2, then checks that only 0, 1 and 2 are left.
fn close_inherited_descriptors() -> Result<(), StepFailed> {
    // SAFETY: this runs first thing in the child's main, before any Rust object has opened a
    // descriptor, so no `OwnedFd`/`File` owns a number above 2: closing them all cannot pull a
    // descriptor from under live code. close_range takes plain integers and touches no memory.
    #[allow(unsafe_code)]
    let closed = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed != 0 {
        return Err(fail(
            exit::DESCRIPTORS,
            "stdio_only",
            std::io::Error::last_os_error(),
        ));
    }
    // Listing /proc/self/fd opens one descriptor, which is the lowest free number: 3.
    let left = open_descriptors().map_err(|e| fail(exit::DESCRIPTORS, "stdio_only", e))?;
    if left != [0, 1, 2, 3] {
        return Err(fail(
            exit::DESCRIPTORS,
            "stdio_only",
            format!(
                "descriptors {left:?} while listing (want exactly 0, 1, 2 and the listing's 3)"
            ),
        ));
    }
    Ok(())
}

/// The process's open descriptors while listing them (the listing's own included), sorted.
fn open_descriptors() -> std::io::Result<Vec<i32>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// The working directory must be an empty directory only this user can enter.
fn check_private_empty_cwd() -> Result<(), StepFailed> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let cwd = Path::new(".");
    let meta = std::fs::metadata(cwd).map_err(|e| fail(exit::WORKDIR, "private_tmpdir", e))?;
    if !meta.is_dir()
        || meta.permissions().mode() & 0o077 != 0
        || meta.uid() != nix::unistd::geteuid().as_raw()
    {
        return Err(fail(
            exit::WORKDIR,
            "private_tmpdir",
            "the working directory is not a private (0700, own) directory",
        ));
    }
    let mut entries =
        std::fs::read_dir(cwd).map_err(|e| fail(exit::WORKDIR, "private_tmpdir", e))?;
    if entries.next().is_some() {
        return Err(fail(
            exit::WORKDIR,
            "private_tmpdir",
            "the working directory is not empty",
        ));
    }
    Ok(())
}
