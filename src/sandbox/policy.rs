//! What a run child may do, as data: its resource limits and its seccomp filters.
//!
//! The filters follow Firecracker's habit: an allowlist whose default action kills the whole
//! process, one line and one reason per syscall. Anything not listed (`execve`, `ptrace`,
//! `process_vm_readv`, `mount`, `bpf`, `keyctl`, `unshare`, `setns`, module loading, `fork`,
//! `io_uring`, `perf_event_open`, `userfaultfd`...) ends the child with `SIGSYS`, which the
//! daemon reports as `sandbox_violation`.
//!
//! * [`setup_phase`]: installed before the child reads any input (a spare installs it while
//!   it waits for a task, so that the kernel's work of installing a long filter is off the
//!   task's time). It allows what the database drivers (sqlx over TCP, TLS, Unix sockets,
//!   SQLite files), tokio, the allocator and Polars need, and the few calls of the last
//!   set-up steps ([`SETUP`]: the empty root, the capability sets cleared).
//! * [`database_phase`]: stacked on top once those steps are done, before `Ready`: it takes
//!   the set-up calls away again, so that the two together allow exactly the database phase's
//!   list (`policy_tests.rs` proves it for every call number and the arguments the rules
//!   read). Being short, it costs the kernel little to install on the task's time.
//! * [`compute_phase`]: stacked on top once the credentials are gone and the inputs are
//!   loaded. The kernel runs every installed filter and takes the strictest answer, so this
//!   one only has to name what it takes away: making sockets and opening files. User
//!   expressions only ever run under both.

use std::collections::BTreeMap;

use super::bpf;
use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Resource limits for one run child (hard = soft unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Address-space limit, bytes (`RLIMIT_AS`): an allocation past it fails and the child
    /// exits with [`super::exit::MEMORY`].
    pub memory_bytes: u64,
    /// CPU time, seconds (`RLIMIT_CPU`): `SIGXCPU` at the limit, `SIGKILL` one second later.
    pub cpu_secs: u64,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Largest file the child may write (`RLIMIT_FSIZE`); it writes none.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            cpu_secs: 600,
            open_files: 256,
            file_bytes: 0,
        }
    }
}

/// One allowed syscall and why the child needs it.
type Allowed = (i64, &'static str);

/// Syscalls the child may make in both phases, unconditionally.
const ALWAYS: &[Allowed] = &[
    // Memory: the allocator and Polars' buffers.
    (libc::SYS_brk, "heap growth (glibc malloc arenas)"),
    (
        libc::SYS_mmap,
        "allocations, thread stacks, SQLite's file map",
    ),
    (libc::SYS_munmap, "freeing mappings"),
    (libc::SYS_mremap, "growing large buffers in place"),
    (libc::SYS_mprotect, "guard pages of thread stacks"),
    (libc::SYS_madvise, "the allocator returning memory"),
    (libc::SYS_mlock, "pinning the opened credential buffers"),
    (libc::SYS_munlock, "unpinning them before they are freed"),
    // Threads and synchronisation (Polars' pool, tokio, sqlx's SQLite worker).
    (libc::SYS_futex, "locks and condition variables"),
    (libc::SYS_set_robust_list, "every new thread (glibc)"),
    (
        libc::SYS_rseq,
        "every new thread (glibc restartable sequences)",
    ),
    (libc::SYS_sched_yield, "spin loops in locks"),
    (
        libc::SYS_sched_getaffinity,
        "how many threads the pools start",
    ),
    (libc::SYS_getcpu, "mimalloc's NUMA node lookup"),
    (libc::SYS_gettid, "thread ids (locks, logging)"),
    (libc::SYS_getpid, "own process id"),
    (
        libc::SYS_rt_sigaction,
        "signal handlers (Rust's stack-overflow guard)",
    ),
    (
        libc::SYS_rt_sigprocmask,
        "blocking signals around thread creation",
    ),
    (libc::SYS_rt_sigreturn, "returning from a signal handler"),
    (libc::SYS_sigaltstack, "the stack-overflow handler's stack"),
    (libc::SYS_exit, "a thread ending"),
    (libc::SYS_exit_group, "the child ending"),
    (libc::SYS_restart_syscall, "resuming an interrupted sleep"),
    // Time.
    (
        libc::SYS_clock_gettime,
        "clocks (when the vDSO is not used)",
    ),
    (libc::SYS_clock_getres, "clock resolution"),
    (
        libc::SYS_gettimeofday,
        "wall clock (when the vDSO is not used)",
    ),
    (libc::SYS_nanosleep, "sleeping"),
    (libc::SYS_clock_nanosleep, "sleeping (std::thread::sleep)"),
    // I/O on descriptors the child already has (its pipes, its database connections).
    (
        libc::SYS_read,
        "reading the daemon's frames and database replies",
    ),
    (libc::SYS_write, "writing frames to the daemon"),
    (libc::SYS_readv, "vectored reads"),
    (libc::SYS_writev, "vectored writes"),
    (libc::SYS_pread64, "SQLite page reads"),
    (libc::SYS_close, "closing descriptors"),
    (libc::SYS_lseek, "file offsets"),
    (libc::SYS_fstat, "descriptor metadata"),
    (libc::SYS_newfstatat, "metadata (glibc's fstat)"),
    (libc::SYS_statx, "metadata (Rust std)"),
    (
        libc::SYS_fcntl,
        "non-blocking mode, close-on-exec, SQLite's read locks",
    ),
    (libc::SYS_dup, "duplicating a descriptor"),
    (libc::SYS_eventfd2, "tokio's waker"),
    (libc::SYS_epoll_create1, "tokio's reactor"),
    (libc::SYS_epoll_ctl, "tokio's reactor"),
    (libc::SYS_epoll_pwait, "tokio's reactor"),
    (libc::SYS_epoll_pwait2, "tokio's reactor"),
    (libc::SYS_ppoll, "waiting on one descriptor"),
    (libc::SYS_getrandom, "randomness (hash seeds, TLS)"),
    // Harmless facts about the process.
    (libc::SYS_uname, "kernel version checks"),
    (libc::SYS_getuid, "user id (name lookups)"),
    (libc::SYS_geteuid, "user id"),
    (libc::SYS_getgid, "group id"),
    (libc::SYS_getegid, "group id"),
    (
        libc::SYS_sysinfo,
        "total memory (Polars' memory heuristics)",
    ),
    (libc::SYS_getrusage, "CPU time used"),
];

/// Syscalls only x86-64 has (aarch64 has the `*at` forms above only).
#[cfg(target_arch = "x86_64")]
const ALWAYS_X86_64: &[Allowed] = &[
    (libc::SYS_epoll_wait, "tokio's reactor"),
    (libc::SYS_poll, "waiting on one descriptor"),
    (libc::SYS_arch_prctl, "thread-local storage of new threads"),
    (libc::SYS_getrlimit, "reading its own limits"),
];
#[cfg(not(target_arch = "x86_64"))]
const ALWAYS_X86_64: &[Allowed] = &[];

/// Syscalls for reaching the database, allowed in the database phase only.
const DATABASE: &[Allowed] = &[
    // Sockets: `socket` itself is restricted to IP and Unix below.
    (libc::SYS_connect, "connecting to the database"),
    (libc::SYS_sendto, "database protocol, DNS"),
    (libc::SYS_recvfrom, "database protocol, DNS"),
    (libc::SYS_sendmsg, "database protocol"),
    (libc::SYS_recvmsg, "database protocol"),
    (libc::SYS_sendmmsg, "glibc's resolver (A and AAAA at once)"),
    (libc::SYS_getsockopt, "connect errors, socket options"),
    (libc::SYS_setsockopt, "TCP_NODELAY, keepalive"),
    (libc::SYS_getsockname, "local address"),
    (libc::SYS_getpeername, "peer address"),
    (libc::SYS_shutdown, "closing connections"),
    (libc::SYS_bind, "glibc's resolver binds its UDP socket"),
    // Files: SQLite databases, /etc/hosts and resolv.conf for host names.
    (
        libc::SYS_openat,
        "opening the SQLite file and resolver configuration",
    ),
    (libc::SYS_faccessat, "SQLite checks for journal files"),
    (libc::SYS_faccessat2, "SQLite checks for journal files"),
    (libc::SYS_readlinkat, "SQLite resolves the database path"),
    (libc::SYS_getcwd, "SQLite resolves relative paths"),
    (libc::SYS_fstatfs, "SQLite probes the file system"),
    (libc::SYS_statfs, "file system probes"),
    (
        libc::SYS_fsync,
        "SQLite (never reached read-only; harmless)",
    ),
    (
        libc::SYS_fdatasync,
        "SQLite (never reached read-only; harmless)",
    ),
    (libc::SYS_flock, "SQLite locking"),
    (
        libc::SYS_getdents64,
        "listing a directory (certificate dirs)",
    ),
    (libc::SYS_pipe2, "the runtime's blocking pool"),
    // Landlock: the compute phase's domain is stacked at the end of this phase. A new domain
    // can only take more away.
    (
        libc::SYS_landlock_create_ruleset,
        "the compute phase's Landlock domain",
    ),
    (
        libc::SYS_landlock_add_rule,
        "the compute phase's Landlock domain",
    ),
    (
        libc::SYS_landlock_restrict_self,
        "the compute phase's Landlock domain",
    ),
];

#[cfg(target_arch = "x86_64")]
const DATABASE_X86_64: &[Allowed] = &[
    (libc::SYS_open, "opening files (old glibc paths)"),
    (libc::SYS_access, "SQLite checks for journal files"),
    (libc::SYS_readlink, "SQLite resolves the database path"),
    (libc::SYS_stat, "file metadata"),
    (libc::SYS_lstat, "file metadata"),
];
#[cfg(not(target_arch = "x86_64"))]
const DATABASE_X86_64: &[Allowed] = &[];

/// What the compute phase takes away (killing, like everything the allowlist lacks).
const COMPUTE_FORBIDS: &[Allowed] = &[
    (
        libc::SYS_socket,
        "no new sockets: user expressions cannot reach the network",
    ),
    (libc::SYS_socketpair, "no new sockets"),
    (libc::SYS_connect, "no connections"),
    (libc::SYS_bind, "no listening"),
    (
        libc::SYS_openat,
        "no files: user expressions cannot read the disk",
    ),
    (libc::SYS_openat2, "no files"),
    (libc::SYS_pipe2, "nothing new to talk over"),
];

#[cfg(target_arch = "x86_64")]
const COMPUTE_FORBIDS_X86_64: &[Allowed] =
    &[(libc::SYS_open, "no files"), (libc::SYS_creat, "no files")];
#[cfg(not(target_arch = "x86_64"))]
const COMPUTE_FORBIDS_X86_64: &[Allowed] = &[];

/// What only the last set-up steps need, between the task's arrival and `Ready`: allowed by
/// [`setup_phase`], taken away by [`database_phase`].
const SETUP: &[Allowed] = &[
    (
        libc::SYS_mount,
        "the empty root: its tmpfs, binds, read-only",
    ),
    (
        libc::SYS_umount2,
        "the empty root: the host's tree detached",
    ),
    (libc::SYS_pivot_root, "the empty root"),
    (libc::SYS_chdir, "the empty root: into it"),
    (libc::SYS_mkdirat, "the empty root: mount points"),
    (
        libc::SYS_unlinkat,
        "the empty root: the old root's mount point removed",
    ),
    (
        libc::SYS_capget,
        "capabilities: read before they are cleared",
    ),
    (libc::SYS_capset, "capabilities: cleared"),
    (
        libc::SYS_close_range,
        "descriptors: all but the task's pipes closed",
    ),
    (libc::SYS_dup3, "the task's pipes as stdio"),
];

#[cfg(target_arch = "x86_64")]
const SETUP_X86_64: &[Allowed] = &[
    (libc::SYS_mkdir, "the empty root: mount points"),
    (
        libc::SYS_rmdir,
        "the empty root: the old root's mount point removed",
    ),
    (libc::SYS_dup2, "the task's pipes as stdio"),
];
#[cfg(not(target_arch = "x86_64"))]
const SETUP_X86_64: &[Allowed] = &[];

/// `prctl` options only the set-up steps use: capabilities read and cleared, the process
/// made non-dumpable.
const SETUP_PRCTL: &[u64] = &[
    libc::PR_CAPBSET_READ as u64,
    libc::PR_CAP_AMBIENT as u64,
    libc::PR_SET_DUMPABLE as u64,
];

/// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ...)`: names an anonymous mapping.
const PR_SET_VMA: u64 = 0x5356_4d41;

/// Namespace flags a new thread must not ask for (`clone` is for threads only).
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Why a filter could not be built (a bug in this table; the child fails closed).
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter: {0}")]
pub(crate) struct FilterError(String);

impl FilterError {
    pub(super) fn new(why: &str) -> FilterError {
        FilterError(why.to_owned())
    }
}

fn arch() -> Result<TargetArch, FilterError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| FilterError(e.to_string()))
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, FilterError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| FilterError(e.to_string()))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, FilterError> {
    SeccompRule::new(conditions).map_err(|e| FilterError(e.to_string()))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, FilterError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch()?)
        .map_err(|e| FilterError(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| FilterError(e.to_string()))
}

/// The set-up filter: the database phase's allowlist and [`SETUP`] (default: kill the
/// process), with `clone3` answered `ENOSYS`, because its flags sit behind a pointer a filter
/// cannot read; glibc then falls back to `clone`, whose flags the allowlist checks. The calls
/// allowed whatever their arguments are found by binary search (`bpf.rs`), the others by
/// `seccompiler`'s rules. Call it in the process it will confine (its `tgkill` rule names
/// this process's id).
pub(crate) fn setup_phase() -> Result<Vec<BpfProgram>, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    argument_rules(&mut rules, SETUP_PRCTL)?;
    let mut plain = vec![(
        number(libc::SYS_clone3)?,
        bpf::RET_ERRNO | libc::ENOSYS as u32,
    )];
    for (nr, _why) in ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .chain(DATABASE)
        .chain(DATABASE_X86_64)
        .chain(SETUP)
        .chain(SETUP_X86_64)
    {
        if rules.contains_key(nr) {
            return Err(FilterError::new(
                "a call both allowed and allowed by its arguments",
            ));
        }
        plain.push((number(*nr)?, bpf::RET_ALLOW));
    }
    let by_arguments = compile(rules, SeccompAction::KillProcess, SeccompAction::Allow)?;
    Ok(vec![bpf::searched(AUDIT_ARCH, &plain, by_arguments)?])
}

/// The database-phase filter, stacked on [`setup_phase`]'s once the set-up is done: kills on
/// the set-up calls ([`SETUP`], and `prctl` with a set-up option). It names no process, so the
/// template builds it once.
pub(crate) fn database_phase() -> Result<BpfProgram, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = SETUP
        .iter()
        .chain(SETUP_X86_64)
        .map(|(nr, _why)| (*nr, Vec::new()))
        .collect();
    rules.insert(
        libc::SYS_prctl,
        SETUP_PRCTL
            .iter()
            .map(|option| rule(vec![cond(0, SeccompCmpOp::Eq, *option)?]))
            .collect::<Result<_, _>>()?,
    );
    compile(rules, SeccompAction::Allow, SeccompAction::KillProcess)
}

fn number(nr: i64) -> Result<u32, FilterError> {
    u32::try_from(nr).map_err(|_| FilterError::new("a negative system call number"))
}

/// The architecture a filter accepts (`AUDIT_ARCH_*`); `seccompiler`'s own checks it too.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// The nice value a finished child's threads take for its teardown (`jail::yield_teardown`):
/// the lowest priority.
pub(crate) const TEARDOWN_NICE: i32 = 19;

/// The database phase's syscalls that are allowed only with certain arguments.
/// The calls allowed only with some arguments; `prctl` also with the `extra_prctl` options.
fn argument_rules(
    rules: &mut BTreeMap<i64, Vec<SeccompRule>>,
    extra_prctl: &[u64],
) -> Result<(), FilterError> {
    // clone: threads only (CLONE_THREAD set), and never a new namespace.
    rules.insert(
        libc::SYS_clone,
        vec![rule(vec![
            cond(
                0,
                SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
                libc::CLONE_THREAD as u64,
            )?,
            cond(0, SeccompCmpOp::MaskedEq(CLONE_NAMESPACES), 0)?,
        ])?],
    );
    // socket: IPv4, IPv6 and Unix only (no netlink, packet, vsock...).
    rules.insert(
        libc::SYS_socket,
        [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX]
            .into_iter()
            .map(|family| rule(vec![cond(0, SeccompCmpOp::Eq, family as u64)?]))
            .collect::<Result<_, _>>()?,
    );
    // socketpair: Unix only (tokio's signal driver wakes itself through one).
    rules.insert(
        libc::SYS_socketpair,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            libc::AF_UNIX as u64,
        )?])?],
    );
    // ioctl: only the two non-blocking / close-on-exec requests the runtime issues.
    rules.insert(
        libc::SYS_ioctl,
        [libc::FIONBIO, libc::FIOCLEX]
            .into_iter()
            .map(|request| rule(vec![cond(1, SeccompCmpOp::Eq, request)?]))
            .collect::<Result<_, _>>()?,
    );
    // seccomp: adding filters only (the compute phase stacks one). A new filter can only take
    // more away: the kernel applies the strictest answer of all installed filters.
    rules.insert(
        libc::SYS_seccomp,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            u64::from(libc::SECCOMP_SET_MODE_FILTER),
        )?])?],
    );
    // prlimit64: reading its own limits only (pid 0, no new limit).
    rules.insert(
        libc::SYS_prlimit64,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Eq, 0)?,
            cond(2, SeccompCmpOp::Eq, 0)?,
        ])?],
    );
    // setpriority: only its own process group to the lowest priority, as it exits
    // (`jail::yield_teardown`); never another process, never a higher priority.
    rules.insert(
        libc::SYS_setpriority,
        vec![rule(vec![
            cond(0, SeccompCmpOp::Eq, libc::PRIO_PGRP as u64)?,
            cond(1, SeccompCmpOp::Eq, u64::from(std::process::id()))?,
            cond(2, SeccompCmpOp::Eq, TEARDOWN_NICE as u64)?,
        ])?],
    );
    // tgkill: signals to its own threads only (abort() raising SIGABRT), never to the daemon.
    rules.insert(
        libc::SYS_tgkill,
        vec![rule(vec![cond(
            0,
            SeccompCmpOp::Eq,
            u64::from(std::process::id()),
        )?])?],
    );
    // prctl: naming threads (Rust std) and anonymous mappings (mimalloc names every mmap),
    // and mimalloc's transparent-huge-page switch; the confinement steps that need other
    // options ran already.
    rules.insert(
        libc::SYS_prctl,
        [
            libc::PR_SET_NAME as u64,
            libc::PR_GET_NAME as u64,
            PR_SET_VMA,
            libc::PR_GET_THP_DISABLE as u64,
            libc::PR_SET_THP_DISABLE as u64,
            // Set already; seccompiler sets it again before each filter it installs.
            libc::PR_SET_NO_NEW_PRIVS as u64,
        ]
        .into_iter()
        .chain(extra_prctl.iter().copied())
        .map(|option| rule(vec![cond(0, SeccompCmpOp::Eq, option)?]))
        .collect::<Result<_, _>>()?,
    );
    Ok(())
}

/// The compute-phase filter, stacked on the database phase's: kills on making sockets and
/// opening files.
pub(crate) fn compute_phase() -> Result<BpfProgram, FilterError> {
    let rules = COMPUTE_FORBIDS
        .iter()
        .chain(COMPUTE_FORBIDS_X86_64)
        .map(|(nr, _why)| (*nr, Vec::new()))
        .collect();
    compile(rules, SeccompAction::Allow, SeccompAction::KillProcess)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
