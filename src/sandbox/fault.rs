//! Deliberate misbehaviours of a run child, for the sandbox's own tests: each one is stopped
//! by a confinement, which is what the tests assert; none weakens anything, and each runs only
//! once the child is confined. Built only with the `testing` feature, which the tests enable
//! (the crate's dev-dependency on itself): in every other build [`Fault`] has no values, so a
//! fault can be neither planted nor parsed (`--fault` is refused) nor run, and the release
//! binary holds no fault-injection path.

#[cfg(feature = "testing")]
mod built {
    /// A deliberate misbehaviour of the child.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// `execve("/bin/true")` in the database phase.
        Execve,
        /// `ptrace(PTRACE_ATTACH, daemon)` in the database phase.
        Ptrace,
        /// Reading [`SECRET_FILE`] (a root-only 0600 file the tests plant) in the database
        /// phase.
        ReadRootFile,
        /// Listing `/` in the database phase.
        ListRoot,
        /// A TCP connection to 127.0.0.1:5432 (a port the task does not use) in the database
        /// phase.
        ConnectOtherPort,
        /// `kill(daemon, 0)` in the database phase.
        SignalDaemon,
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

    const ALL: [Fault; 11] = [
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
    ];

    impl Fault {
        /// Its command-line name.
        pub fn as_str(self) -> &'static str {
            match self {
                Fault::Execve => "execve",
                Fault::Ptrace => "ptrace",
                Fault::ReadRootFile => "read-root-file",
                Fault::ListRoot => "list-root",
                Fault::ConnectOtherPort => "connect-other-port",
                Fault::SignalDaemon => "signal-daemon",
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
            ALL.into_iter()
                .find(|f| f.as_str() == s)
                .ok_or_else(|| format!("unknown fault {s:?}"))
        }
    }

    /// Runs the fault of the database phase, if it is one: each must be stopped by the first
    /// filter.
    pub(in crate::sandbox) fn database_phase(fault: Option<Fault>, parent: u32) {
        match fault {
            Some(Fault::Execve) => {
                let _ = nix::unistd::execv(c"/bin/true", &[c"/bin/true"]);
            }
            Some(Fault::Ptrace) => {
                let parent = nix::unistd::Pid::from_raw(i32::try_from(parent).unwrap_or(1));
                let _ = nix::sys::ptrace::attach(parent);
            }
            Some(Fault::ReadRootFile) => denied(std::fs::read(SECRET_FILE).map(drop)),
            Some(Fault::ListRoot) => {
                // An empty root that can be listed proves nothing was reached; any host
                // directory in it is an escape.
                let listed = std::fs::read_dir("/").map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                });
                match listed {
                    Ok(names) if names.iter().any(|n| n == "etc" || n == "root") => {
                        std::process::exit(super::super::exit::FAULT_ESCAPED)
                    }
                    Ok(_) => std::process::exit(super::super::exit::FAULT_DENIED),
                    Err(e) => denied::<()>(Err(e)),
                }
            }
            Some(Fault::ConnectOtherPort) => {
                denied(std::net::TcpStream::connect(("127.0.0.1", 5432)).map(drop));
            }
            Some(Fault::SignalDaemon) => {
                let parent = nix::unistd::Pid::from_raw(i32::try_from(parent).unwrap_or(1));
                denied(nix::sys::signal::kill(parent, None).map_err(std::io::Error::from));
            }
            _ => {}
        }
    }

    /// The root-only file [`Fault::ReadRootFile`] tries to read.
    pub const SECRET_FILE: &str = "/root/.hubworker-fault-secret";

    /// Ends the child after an attempt: [`FAULT_DENIED`](super::super::exit::FAULT_DENIED)
    /// when a confinement refused it (permission denied, or nothing there to reach), else
    /// [`FAULT_ESCAPED`](super::super::exit::FAULT_ESCAPED).
    fn denied<T>(attempt: std::io::Result<T>) -> ! {
        use std::io::ErrorKind;
        let code = match attempt {
            Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
                super::super::exit::FAULT_DENIED
            }
            _ => super::super::exit::FAULT_ESCAPED,
        };
        std::process::exit(code)
    }

    /// The fault to run in the compute phase, once confined: each must be stopped by the
    /// second filter or a limit.
    pub(in crate::sandbox) fn compute_phase(fault: Option<Fault>) -> fn() {
        match fault {
            Some(Fault::SocketAfterLoad) => || {
                let _ = std::net::TcpStream::connect(("127.0.0.1", 9));
            },
            Some(Fault::OpenAfterLoad) => || {
                let _ = std::fs::File::open("/etc/hostname");
            },
            Some(Fault::Spin) => || {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
            },
            Some(Fault::Allocate) => || {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 64 << 20]);
                    std::hint::black_box(&hoard);
                }
            },
            Some(Fault::Crash) => || std::process::abort(),
            _ => || {},
        }
    }
}

#[cfg(not(feature = "testing"))]
mod built {
    /// No faults in this build: the type has no values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {}

    impl Fault {
        /// Its command-line name (there is none).
        pub(crate) fn as_str(self) -> &'static str {
            match self {}
        }
    }

    impl std::str::FromStr for Fault {
        type Err = String;
        fn from_str(_: &str) -> Result<Self, Self::Err> {
            Err("fault injection is not built into this binary".into())
        }
    }

    /// Nothing to run.
    pub(in crate::sandbox) fn database_phase(_: Option<Fault>, _: u32) {}

    /// Nothing to run.
    pub(in crate::sandbox) fn compute_phase(_: Option<Fault>) -> fn() {
        || {}
    }
}

pub use built::Fault;
#[cfg(feature = "testing")]
pub use built::SECRET_FILE;
pub(super) use built::{compute_phase, database_phase};
