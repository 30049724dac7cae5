//! `[sandbox]`: how runs are isolated (one confined child process per run, or none) and the
//! run children's limits. Kept apart from the rest of the configuration; read-only once
//! parsed, like all of it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[sandbox]`: one confined child process per run (the default), or none (`inline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SandboxSection {
    /// `process` (default; required in production) or `inline` (same process, not sandboxed:
    /// for development and profiling only).
    #[serde(default)]
    pub isolation: Isolation,
    /// Address-space limit per run child, bytes.
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: u64,
    /// CPU time per run child, seconds.
    #[serde(default = "default_cpu_secs")]
    pub cpu_secs: u64,
    /// Open files per run child.
    #[serde(default = "default_open_files")]
    pub open_files: u64,
    /// Most bytes of outputs one run may produce.
    #[serde(default = "default_output_bytes")]
    pub max_output_bytes: u64,
    /// Between SIGTERM and SIGKILL when a run is stopped, milliseconds.
    #[serde(default = "default_kill_grace_ms")]
    pub kill_grace_ms: u64,
    /// The executable started for each run (default: the daemon's own binary).
    #[serde(default)]
    pub program: Option<PathBuf>,
    /// No longer used (children are forked by the fork server on demand, which costs less
    /// than keeping a pool did); accepted so that existing files still load.
    #[serde(default)]
    #[allow(dead_code)]
    pub pool: Option<usize>,
    /// The host user id run children take when the daemon runs as root (never 0).
    #[serde(default = "default_uid")]
    pub uid: u32,
    /// The host group id run children take when the daemon runs as root.
    #[serde(default = "default_gid")]
    pub gid: u32,
    /// Confinements the worker refuses to start (and run) without, by their names in
    /// `Status`, e.g. `["mount_namespace", "landlock_filesystem", "landlock_network"]`.
    #[serde(default)]
    pub require: Vec<String>,
}

fn default_uid() -> u32 {
    crate::sandbox::Identity::default().uid
}
fn default_gid() -> u32 {
    crate::sandbox::Identity::default().gid
}

/// How runs are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Isolation {
    /// One confined child process per run.
    #[default]
    Process,
    /// In the daemon's own process: NOT sandboxed.
    Inline,
}

impl Isolation {
    /// Its name in config and `Status`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::Inline => "inline",
        }
    }
}

fn default_memory_bytes() -> u64 {
    crate::sandbox::Limits::default().memory_bytes
}
fn default_cpu_secs() -> u64 {
    crate::sandbox::Limits::default().cpu_secs
}
fn default_open_files() -> u64 {
    crate::sandbox::Limits::default().open_files
}
fn default_output_bytes() -> u64 {
    crate::sandbox::Settings::default().max_output_bytes
}
fn default_kill_grace_ms() -> u64 {
    500
}

impl Default for SandboxSection {
    fn default() -> Self {
        SandboxSection {
            isolation: Isolation::default(),
            memory_bytes: default_memory_bytes(),
            cpu_secs: default_cpu_secs(),
            open_files: default_open_files(),
            max_output_bytes: default_output_bytes(),
            kill_grace_ms: default_kill_grace_ms(),
            program: None,
            pool: None,
            uid: default_uid(),
            gid: default_gid(),
            require: Vec::new(),
        }
    }
}

impl SandboxSection {
    /// The sandbox settings these keys describe.
    pub(crate) fn settings(&self) -> crate::sandbox::Settings {
        let defaults = crate::sandbox::Settings::default();
        crate::sandbox::Settings {
            program: self.program.clone().unwrap_or(defaults.program),
            limits: crate::sandbox::Limits {
                memory_bytes: self.memory_bytes,
                cpu_secs: self.cpu_secs,
                open_files: self.open_files,
                file_bytes: 0,
            },
            kill_grace: Duration::from_millis(self.kill_grace_ms),
            max_output_bytes: self.max_output_bytes,
            identity: crate::sandbox::Identity {
                uid: self.uid,
                gid: self.gid,
            },
            require: self.require.clone(),
        }
    }
}
