//! `[audit]`: where the worker's audit records wait for the Hub (README: "The audit trail").

use std::path::PathBuf;

use serde::Deserialize;

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// The spool directory (made 0700 if missing), in the worker's state directory: under
    /// systemd `/var/lib/hubworker` (the unit's `StateDirectory=hubworker/%i`: an instance
    /// `N` of a fleet uses `DIR/N`). Not set: no audit trail (refused in production).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Most records waiting for the Hub; when the spool is full the worker accepts no new
    /// tasks (RESOURCE_EXHAUSTED "audit_spool_full") until the Hub takes records.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
}

fn default_max_records() -> usize {
    100_000
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            dir: None,
            max_records: default_max_records(),
        }
    }
}

impl AuditSection {
    /// Every problem of `[audit]`.
    pub(crate) fn problems(&self, production: bool, problems: &mut Vec<String>) {
        if self.max_records == 0 || self.max_records > 10_000_000 {
            problems.push("audit.max_records: 1 to 10000000".to_owned());
        }
        match &self.dir {
            None if production => problems.push(
                "audit.dir: required in production (the audit trail's spool, e.g. /var/lib/hubworker)"
                    .to_owned(),
            ),
            None => {}
            Some(d) if !d.is_absolute() => {
                problems.push(format!("audit.dir: {} is not an absolute path", d.display()));
            }
            Some(d) if d.exists() && !d.is_dir() => {
                problems.push(format!("audit.dir: {} is not a directory", d.display()));
            }
            Some(_) => {}
        }
    }
}
