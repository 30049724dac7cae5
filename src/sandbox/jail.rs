//! The process-level confinement steps of the fork server's template and of each run child:
//! only stdio descriptors, an empty environment, an empty private working directory,
//! rlimits, no_new_privs, non-dumpable, the parent-death signal, seccomp. Every step is
//! required: a failed step returns its own exit code and nothing runs (fail closed; there is
//! no switch to skip one). What isolates a child from the host (identity, namespaces, root,
//! capabilities, Landlock) is in `isolate`; the order of all of it is in `child`.

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

pub(crate) fn fail(code: i32, step: &'static str, why: impl std::fmt::Display) -> StepFailed {
    StepFailed {
        code,
        step,
        why: why.to_string(),
    }
}

/// Confines the fork server's template process, first thing in its `main` (it is still
/// single-threaded and stays so): only stdio, an empty environment, an empty private working
/// directory, no_new_privs, non-dumpable, the parent-death signal (`parent` is the daemon's
/// pid). As root it keeps only `CAP_SETUID` and `CAP_SETGID` (a child needs them to take its
/// unprivileged identity) and `CAP_KILL` (to stop its children, which are then another user),
/// in every set, the bounding set included. Returns what is in force.
pub(crate) fn enter_template(parent: u32) -> Result<Vec<&'static str>, StepFailed> {
    close_inherited_descriptors()?;
    check_empty_environment()?;
    check_private_empty_cwd()?;
    no_new_privs()?;
    non_dumpable()?;
    parent_death(parent)?;
    let mut active = vec![
        "stdio_only",
        "empty_environment",
        "private_tmpdir",
        "no_new_privs",
        "non_dumpable",
        "parent_death_signal",
    ];
    if nix::unistd::geteuid().is_root() {
        keep_only_identity_capabilities()?;
        active.push("capabilities_setuid_setgid_kill_only");
    }
    Ok(active)
}

/// The steps every forked child takes first, still as the template's copy: die with the
/// template (and refuse to start if it is gone), only its own three pipes as descriptors,
/// a process group of its own (see [`yield_teardown`]), first in line for the OOM killer,
/// its resource limits.
pub(crate) fn enter_child(
    limits: &Limits,
    template: u32,
    descriptors: bool,
) -> Result<(), StepFailed> {
    parent_death(template)?;
    if descriptors {
        close_inherited_descriptors()?;
    }
    // Not a confinement, so not fatal: without its own group, `yield_teardown` finds no group
    // named after this process and changes nothing.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    // The kernel's OOM killer should pick a run child before the daemon. Raising one's own
    // score needs no privilege. (Before the rlimits: RLIMIT_FSIZE 0 forbids this write too.)
    std::fs::write("/proc/self/oom_score_adj", "1000")
        .map_err(|e| fail(exit::OOM_SCORE, "oom_score_adj", e))?;
    set_limits(limits)
}

/// Called by a child whose answer is sent, just before `_exit`: every thread of its process
/// group (the child itself, `enter_child` made it a group's leader) drops to
/// [`policy::TEARDOWN_NICE`]. Its teardown (unmapping its memory, most of a millisecond of CPU,
/// done by whichever of its threads exits last) then yields the CPUs to the daemon and to
/// runs still going, instead of competing with the next run on a small host. Raising one's
/// own nice value needs no privilege; the seccomp filter allows exactly this call
/// (`policy::argument_rules`). Best effort: an error changes nothing but the priority.
/// A child that held much memory ([`YIELD_MAX_RSS_KIB`]) gives it back at full priority
/// instead: on a busy host a yielding teardown would hold it for long.
pub(crate) fn yield_teardown() {
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss());
    if !peak.is_ok_and(yields) {
        return;
    }
    let group = std::process::id();
    // SAFETY: setpriority takes plain integers and touches no memory.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::setpriority(nix::libc::PRIO_PGRP, group, policy::TEARDOWN_NICE);
    }
}

/// The largest peak resident memory (KiB) of a child whose teardown yields.
const YIELD_MAX_RSS_KIB: i64 = 256 * 1024;

/// Whether a child that peaked at `max_rss_kib` lowers its priority to exit.
fn yields(max_rss_kib: i64) -> bool {
    max_rss_kib <= YIELD_MAX_RSS_KIB
}

/// A spare child's descriptor step, once its task's pipes are its stdio.
pub(crate) fn enter_child_descriptors() -> Result<(), StepFailed> {
    close_inherited_descriptors()
}

/// Closes every descriptor but `keep` (a spare child's channel to the template, until its
/// task's pipes arrive).
pub(crate) fn close_all_but(keep: &std::os::fd::OwnedFd) -> Result<(), StepFailed> {
    use std::os::fd::AsRawFd;
    let keep = u32::try_from(keep.as_raw_fd()).unwrap_or(0);
    let close = |first: u32, last: u32| {
        // SAFETY: called first thing in a freshly forked, single-threaded child, before any
        // Rust object of its own opened a descriptor; the only descriptor it owns is `keep`,
        // which is left open. close_range takes plain integers and touches no memory.
        #[allow(unsafe_code)]
        let r = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, last, 0u32) };
        if r == 0 {
            Ok(())
        } else {
            Err(fail(
                exit::DESCRIPTORS,
                "stdio_only",
                std::io::Error::last_os_error(),
            ))
        }
    };
    if keep > 0 {
        close(0, keep - 1)?;
    }
    close(keep.saturating_add(1), u32::MAX)
}

/// Resource limits (hard = soft: the child cannot raise them back).
fn set_limits(limits: &Limits) -> Result<(), StepFailed> {
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
    limit(Resource::RLIMIT_CORE, 0, 0)
}

/// The environment must be empty: the daemon clears it; refuse to run if anything leaked in.
fn check_empty_environment() -> Result<(), StepFailed> {
    match std::env::vars_os().next() {
        Some((name, _)) => Err(fail(
            exit::ENVIRONMENT,
            "environment",
            format!("the environment is not empty ({name:?} is set)"),
        )),
        None => Ok(()),
    }
}

/// No privilege gains through exec (not that exec is allowed) or setuid files.
fn no_new_privs() -> Result<(), StepFailed> {
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail(exit::NO_NEW_PRIVS, "no_new_privs", e))
}

/// Non-dumpable: no core file, no /proc/<pid>/mem or ptrace by same-user processes. Taken
/// again by each child after its change of identity (which resets it).
pub(crate) fn non_dumpable() -> Result<(), StepFailed> {
    crate::locked::set_non_dumpable().map_err(|e| fail(exit::DUMPABLE, "non_dumpable", e))
}

/// Die with the parent; and if it is already gone, stop now. The signal is tied to the thread
/// that forked us: for the template the daemon's spawner thread, which lives as long as the
/// daemon (see `spawner.rs`); for a child the template, which is single-threaded.
fn parent_death(parent: u32) -> Result<(), StepFailed> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| fail(exit::PARENT_DEATH, "parent_death_signal", e))?;
    let ppid = nix::unistd::getppid().as_raw();
    if u32::try_from(ppid).ok() != Some(parent) {
        return Err(fail(
            exit::PARENT_DEATH,
            "parent_death_signal",
            "the parent is gone",
        ));
    }
    Ok(())
}

/// As root, keeps only `CAP_SETUID`, `CAP_SETGID` and `CAP_KILL`, in every set.
fn keep_only_identity_capabilities() -> Result<(), StepFailed> {
    use caps::{CapSet, Capability};
    let step = |e: caps::errors::CapsError| fail(exit::CAPABILITIES, "capabilities", e);
    let keep: caps::CapsHashSet = [
        Capability::CAP_SETUID,
        Capability::CAP_SETGID,
        Capability::CAP_KILL,
    ]
    .into_iter()
    .collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(step)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(step)?;
    caps::clear(None, CapSet::Inheritable).map_err(step)?;
    caps::set(None, CapSet::Effective, &keep).map_err(step)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(step)?;
    Ok(())
}

/// Installs seccomp filters on this thread (the process is single-threaded when it does).
pub(crate) fn seccomp(filters: &[seccompiler::BpfProgram]) -> Result<(), StepFailed> {
    for filter in filters {
        seccompiler::apply_filter(filter).map_err(|e| fail(exit::SECCOMP, "seccomp", e))?;
    }
    Ok(())
}

/// Installs the compute-phase filter on every thread of the process.
pub(crate) fn enter_compute_phase(filter: &seccompiler::BpfProgram) -> Result<(), StepFailed> {
    seccompiler::apply_filter_all_threads(filter)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A task-sized child yields its teardown; one that held a lot of memory frees it first.
    #[test]
    fn only_a_child_that_held_little_memory_yields_its_teardown() {
        assert!(yields(23_568));
        assert!(yields(YIELD_MAX_RSS_KIB));
        assert!(!yields(YIELD_MAX_RSS_KIB + 1));
        assert!(!yields(4 << 20));
    }
}
