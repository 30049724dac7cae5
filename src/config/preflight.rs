//! What `serve` checks and warns about before it starts, beyond the file itself: the secrets
//! (missing or weak: fatal in production, warnings in dev), runs that would not be sandboxed,
//! and a sizing the cgroup's memory cannot hold. One function for both `serve` and
//! `validate-config`, so the second prints exactly what the first would warn about.

use super::cgroup::CgroupFs;
use super::{Config, ENV_MODE, Isolation};
use crate::keys::{Env, SecretProblem, WorkerSecrets};

/// The checked secrets and the warnings to give.
#[derive(Debug)]
pub(crate) struct Preflight {
    /// The worker's secrets.
    pub(crate) secrets: WorkerSecrets,
    /// One line each, naming the setting (never a secret's value).
    pub(crate) warnings: Vec<String>,
}

/// Checks `config`'s secrets (production rules when the config's mode is production) and
/// collects the warnings; `Err` with every secret problem when one is fatal.
pub(crate) fn check(config: &Config, env: &dyn Env) -> Result<Preflight, Vec<SecretProblem>> {
    check_with(config, env, &CgroupFs::system())
}

/// [`check`] against the cgroup files in `cgroup`.
pub(crate) fn check_with(
    config: &Config,
    env: &dyn Env,
    cgroup: &CgroupFs,
) -> Result<Preflight, Vec<SecretProblem>> {
    // The mode is already one switch (see `Config::parse`); the secret loader hears it too.
    let mut mode = std::collections::HashMap::new();
    mode.insert(ENV_MODE.to_owned(), config.worker.mode.as_str().to_owned());
    let layered = crate::keys::Layered {
        first: &mode,
        then: env,
    };
    let (secrets, secret_warnings) =
        crate::keys::load_worker_secrets(config.secrets.dir.clone(), &layered)?;
    let secret_warnings: Vec<String> = secret_warnings.iter().map(ToString::to_string).collect();
    // A finding another one repeats with more to say ("x: empty", "x: empty: why") goes.
    let mut warnings: Vec<String> = secret_warnings
        .iter()
        .filter(|w| {
            !secret_warnings
                .iter()
                .any(|longer| longer.len() > w.len() && longer.starts_with(w.as_str()))
        })
        .cloned()
        .collect();
    warnings.extend(sizing_warnings(config, cgroup));
    Ok(Preflight { secrets, warnings })
}

/// Warnings about the file's sizing and isolation.
fn sizing_warnings(config: &Config, cgroup: &CgroupFs) -> Vec<String> {
    let mut warnings = Vec::new();
    match config.sandbox.isolation {
        Isolation::Inline => warnings.push(
            "sandbox.isolation: \"inline\": runs are NOT sandboxed (development only)".to_owned(),
        ),
        Isolation::Process => {
            let capacity = u64::from(config.worker.capacity);
            let per_run = config.sandbox.memory_bytes;
            let total = capacity.saturating_mul(per_run);
            if let Some(max) = cgroup.memory_max()
                && total > max.bytes
            {
                warnings.push(format!(
                    "worker.capacity × sandbox.memory_bytes: {capacity} × {per_run} = {total} \
                     bytes, above the cgroup's memory.max of {} bytes ({}): full load would \
                     end in the OOM killer; lower one of them or raise the unit's MemoryMax=",
                    max.bytes,
                    max.file.display()
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_times_memory_above_the_cgroup_limit_warns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup"), "0::/slot.service\n").unwrap();
        let unit = dir.path().join("fs/slot.service");
        std::fs::create_dir_all(&unit).unwrap();
        std::fs::write(unit.join("memory.max"), "4294967296\n").unwrap();
        let fs = CgroupFs {
            membership: dir.path().join("cgroup"),
            root: dir.path().join("fs"),
        };
        let text = "[worker]\nid = \"w\"\nlisten = \"127.0.0.1:0\"\naudience = \"p\"\n\
                    [hub]\nurl = \"http://127.0.0.1:1\"\nissuer = \"h\"\n";
        let env = std::collections::HashMap::new();
        let config = Config::parse(text, &env).unwrap();
        let file = unit.join("memory.max");
        assert_eq!(
            sizing_warnings(&config, &fs),
            [format!(
                "worker.capacity × sandbox.memory_bytes: 2 × 4294967296 = 8589934592 bytes, \
                 above the cgroup's memory.max of 4294967296 bytes ({}): full load would end \
                 in the OOM killer; lower one of them or raise the unit's MemoryMax=",
                file.display()
            )]
        );
        let fits = Config::parse(
            &text.replace("audience = \"p\"", "audience = \"p\"\ncapacity = 1"),
            &env,
        )
        .unwrap();
        assert!(sizing_warnings(&fits, &fs).is_empty());
    }
}
