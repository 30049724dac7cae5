//! `hubworker validate-config`: every problem with a config file and its secrets at once, and
//! the warnings `serve` would give (the same [`preflight`](super::preflight) function makes
//! them for both).

use std::path::Path;

use super::Config;
use super::cgroup::CgroupFs;
use crate::keys::Env;

/// What `validate-config` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Everything that stops `serve` (exit 2).
    pub(crate) problems: Vec<String>,
    /// What `serve` would warn about.
    pub(crate) warnings: Vec<String>,
}

impl Report {
    /// The problems as the error message: a count, then one indented line each.
    pub(crate) fn problems_text(&self, path: &Path) -> String {
        let n = self.problems.len();
        let mut text = format!(
            "{}: {n} problem{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
        for p in &self.problems {
            text.push_str("\n  ");
            text.push_str(p);
        }
        text
    }
}

/// Checks the file at `path` as slot `instance` would read it, with `HUBWORKER_ENV` and
/// `$CREDENTIALS_DIRECTORY` from `env`.
pub(crate) fn report(path: &Path, instance: Option<u32>, env: &dyn Env) -> Report {
    report_with(path, instance, env, &CgroupFs::system())
}

/// [`report`] against the cgroup files in `cgroup`.
pub(crate) fn report_with(
    path: &Path,
    instance: Option<u32>,
    env: &dyn Env,
    cgroup: &CgroupFs,
) -> Report {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            return Report {
                problems: vec![format!("{}: {e}", path.display())],
                warnings: Vec::new(),
            };
        }
    };
    let (config, mut problems) = Config::parse_report(&text, env);
    let config = match (config, instance) {
        (Some(config), Some(n)) => match config.for_instance(n) {
            Ok(config) => Some(config),
            Err(e) => {
                problems.extend(e.0);
                None
            }
        },
        (config, _) => config,
    };
    let mut warnings = Vec::new();
    // The secrets too (the unit's ExecStartPre fails before the daemon would), unless the
    // file's own `[secrets]` is what is wrong.
    if let Some(config) = config
        && !problems.iter().any(|p| p.starts_with("secrets"))
    {
        match super::preflight::check_with(&config, env, cgroup) {
            Ok(preflight) => warnings = preflight.warnings,
            Err(secret_problems) => {
                problems.extend(secret_problems.iter().map(|p| format!("secrets: {p}")));
            }
        }
    }
    Report { problems, warnings }
}
