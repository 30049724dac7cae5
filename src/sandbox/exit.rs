//! How a run child ended: its exit codes (one per confinement step, so the daemon's log names
//! the step), and the classification of an exit status into an [`Exit`] the client sees. Never
//! guesses from text: only the status's code or signal.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The task ran (or failed in an ordinary way, reported in a `Failure` frame).
pub(crate) const OK: i32 = 0;
/// Bad arguments.
pub(crate) const USAGE: i32 = 2;
/// Descriptors other than stdio could not be closed.
pub(crate) const DESCRIPTORS: i32 = 70;
/// The environment was not empty.
pub const ENVIRONMENT: i32 = 71;
/// The working directory was not an empty private directory.
pub const WORKDIR: i32 = 72;
/// An rlimit could not be set.
pub(crate) const RLIMITS: i32 = 73;
/// `oom_score_adj` could not be raised.
pub(crate) const OOM_SCORE: i32 = 74;
/// no_new_privs could not be set.
pub(crate) const NO_NEW_PRIVS: i32 = 75;
/// The process could not be made non-dumpable.
pub(crate) const DUMPABLE: i32 = 76;
/// The parent-death signal could not be armed, or the daemon was already gone.
pub const PARENT_DEATH: i32 = 77;
/// A seccomp filter could not be built or installed.
pub(crate) const SECCOMP: i32 = 78;
/// The pipe to the daemon broke or carried something unexpected.
pub(crate) const PROTOCOL: i32 = 79;
/// The unprivileged host identity could not be taken.
pub(crate) const IDENTITY: i32 = 80;
/// The child's namespaces could not be entered or mapped.
pub(crate) const NAMESPACES: i32 = 81;
/// The child's empty root could not be built or entered.
pub(crate) const ROOT: i32 = 82;
/// The capability sets could not be cleared.
pub(crate) const CAPABILITIES: i32 = 83;
/// A Landlock ruleset could not be built or enforced.
pub(crate) const LANDLOCK: i32 = 84;
/// A confinement `[sandbox] require` lists is not available on this host.
pub const REQUIRED: i32 = 85;
/// An allocation failed: the address-space limit was reached.
pub(crate) const MEMORY: i32 = 86;
/// A planted test fault's attempt was refused by a confinement (test builds only).
pub const FAULT_DENIED: i32 = 88;
/// A planted test fault's attempt succeeded: a confinement failed (test builds only).
pub const FAULT_ESCAPED: i32 = 89;
/// The fork server's template could not serve (not single-threaded, no signalfd).
pub(crate) const TEMPLATE: i32 = 87;

/// Whether `code` is one of the confinement steps'.
pub(crate) fn is_setup(code: i32) -> bool {
    (DESCRIPTORS..=SECCOMP).contains(&code)
        || (IDENTITY..=REQUIRED).contains(&code)
        || code == TEMPLATE
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
    /// Every [`code`](Exit::code), in declaration order (the metrics start each at 0).
    pub(crate) const CODES: [&'static str; 8] = [
        "timeout",
        "cancelled",
        "memory_limit",
        "cpu_limit",
        "sandbox_violation",
        "output_too_large",
        "sandbox_failed",
        "crashed",
    ];

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
pub(crate) fn classify(status: ExitStatus) -> Option<Exit> {
    if let Some(signal) = status.signal() {
        return Some(match signal {
            nix::libc::SIGSYS => Exit::SandboxViolation,
            nix::libc::SIGXCPU => Exit::CpuLimit,
            s => Exit::Crashed(format!("signal {}", signal_name(s))),
        });
    }
    match status.code() {
        Some(OK) => None,
        Some(MEMORY) => Some(Exit::MemoryLimit),
        Some(FAULT_DENIED) if cfg!(feature = "testing") => Some(Exit::SandboxViolation),
        Some(c) if is_setup(c) => Some(Exit::SetupFailed(setup_step(c))),
        Some(c) => Some(Exit::Crashed(format!("exit code {c}"))),
        None => Some(Exit::Crashed("unknown exit".into())),
    }
}

fn setup_step(code: i32) -> &'static str {
    match code {
        DESCRIPTORS => "closing inherited descriptors",
        ENVIRONMENT => "empty environment",
        WORKDIR => "private working directory",
        RLIMITS => "resource limits",
        OOM_SCORE => "oom_score_adj",
        NO_NEW_PRIVS => "no_new_privs",
        DUMPABLE => "non-dumpable",
        PARENT_DEATH => "parent-death signal",
        IDENTITY => "unprivileged identity",
        NAMESPACES => "namespaces",
        ROOT => "empty root",
        CAPABILITIES => "capabilities",
        LANDLOCK => "landlock",
        REQUIRED => "a required confinement is not available",
        TEMPLATE => "the fork server's template",
        _ => "seccomp",
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| signal.to_string())
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
        assert_eq!(classify(code(MEMORY)), Some(Exit::MemoryLimit));
        assert_eq!(classify(code(SECCOMP)), Some(Exit::SetupFailed("seccomp")));
        assert_eq!(
            classify(sig(nix::libc::SIGSEGV)),
            Some(Exit::Crashed("signal SIGSEGV".into()))
        );
        // Killed from outside (an operator, the OOM killer): a crash, with the signal named.
        assert_eq!(
            classify(sig(nix::libc::SIGKILL)),
            Some(Exit::Crashed("signal SIGKILL".into()))
        );
        assert_eq!(
            classify(code(101)),
            Some(Exit::Crashed("exit code 101".into()))
        );
    }

    #[test]
    fn codes_lists_every_exit_once() {
        let every = [
            Exit::Timeout,
            Exit::Cancelled,
            Exit::MemoryLimit,
            Exit::CpuLimit,
            Exit::SandboxViolation,
            Exit::OutputTooLarge,
            Exit::SetupFailed("x"),
            Exit::Crashed("x".into()),
        ];
        // Fails to compile when a variant is added without a line above.
        for e in &every {
            match e {
                Exit::Timeout
                | Exit::Cancelled
                | Exit::MemoryLimit
                | Exit::CpuLimit
                | Exit::SandboxViolation
                | Exit::OutputTooLarge
                | Exit::SetupFailed(_)
                | Exit::Crashed(_) => {}
            }
        }
        let codes: Vec<&str> = every.iter().map(Exit::code).collect();
        assert_eq!(codes, Exit::CODES);
    }
}
