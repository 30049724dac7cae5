//! The reference Hub's secrets: the token-signing key, `CONNECTION_ENCRYPTION_KEY` and the
//! registration secret, read from files (a `--secrets` directory or systemd's
//! `$CREDENTIALS_DIRECTORY`; environment variables only in dev). Production refuses missing,
//! default, empty or weak ones, naming the setting, never the value.

use std::path::PathBuf;

use super::HubKeys;
use crate::keys::{Env, SecretProblem, SecretSource, files};

/// Environment variable for the signing key (dev only).
pub(crate) const ENV_SIGNING_KEY: &str = "HUBWORKER_TOKEN_SIGNING_KEY";
/// Environment variable for the at-rest key (dev only).
pub(crate) const ENV_CONNECTION_KEY: &str = "CONNECTION_ENCRYPTION_KEY";
/// Environment variable for the registration secret (dev only).
pub(crate) const ENV_REGISTRATION_SECRET: &str = "HUBWORKER_REGISTRATION_SECRET";

/// What loading found: the keys, and warnings to log (dev mode).
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The keys.
    pub keys: HubKeys,
    /// Problems tolerated in dev mode (each names a setting).
    pub warnings: Vec<SecretProblem>,
}

/// Loads and checks the Hub's secrets. In production every problem is fatal; in dev they come
/// back as warnings (an absent registration secret means open registration).
pub(crate) fn load(
    dir: Option<PathBuf>,
    hub_id: String,
    env: &dyn Env,
) -> Result<Loaded, Vec<SecretProblem>> {
    let source = SecretSource::new(dir, env);
    let mut problems = Vec::new();
    let mut get = |file: &str, var: &str| source.load_or_report(file, var, env, &mut problems);
    let signing = get(files::SIGNING_KEY, ENV_SIGNING_KEY);
    let connection = get(files::CONNECTION_KEY, ENV_CONNECTION_KEY);
    let registration = get(files::REGISTRATION_SECRET, ENV_REGISTRATION_SECRET);
    let mut warnings = Vec::new();
    crate::keys::classify(
        source.mode(),
        &[
            (files::CONNECTION_KEY, connection.as_ref()),
            (files::REGISTRATION_SECRET, registration.as_ref()),
        ],
        &mut problems,
        &mut warnings,
    );
    if registration.as_ref().is_none_or(|s| s.expose().is_empty()) {
        warnings.push(SecretProblem {
            setting: files::REGISTRATION_SECRET.into(),
            why: "no registration secret: registration is open to anyone who can reach the hub"
                .into(),
        });
    }
    if signing.is_none() && !problems.iter().any(|p| p.setting == files::SIGNING_KEY) {
        problems.push(SecretProblem {
            setting: files::SIGNING_KEY.into(),
            why: "missing".into(),
        });
    }
    if connection.is_none() && !problems.iter().any(|p| p.setting == files::CONNECTION_KEY) {
        problems.push(SecretProblem {
            setting: files::CONNECTION_KEY.into(),
            why: "missing".into(),
        });
    }
    let (Some(signing), Some(connection)) = (signing, connection) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    match HubKeys::new(hub_id, &signing, &connection, registration) {
        Ok(keys) => Ok(Loaded { keys, warnings }),
        Err(why) => Err(vec![SecretProblem {
            setting: "keys".into(),
            why,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::keys::DEFAULT_SECRET;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        crate::keys::env_of(pairs)
    }

    /// A secrets directory from `keygen`, with `overrides` written over some files.
    fn dir(overrides: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        crate::keys::keygen(d.path()).unwrap();
        for (file, value) in overrides {
            std::fs::write(d.path().join(file), value).unwrap();
        }
        d
    }

    fn settings(problems: &[SecretProblem]) -> Vec<(&str, &str)> {
        problems
            .iter()
            .map(|p| (p.setting.as_str(), p.why.as_str()))
            .collect()
    }

    #[test]
    fn keygen_output_starts_in_production() {
        let d = dir(&[]);
        let loaded = load(
            Some(d.path().into()),
            "hub".into(),
            &env(&[("HUBWORKER_ENV", "production")]),
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        // Key files are private.
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(d.path()).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // keygen never overwrites.
        assert!(
            crate::keys::keygen(d.path())
                .unwrap_err()
                .contains("already exists")
        );
    }

    #[test]
    fn production_refuses_each_default_empty_or_weak_secret() {
        let prod = env(&[("HUBWORKER_ENV", "production")]);
        let long_low_entropy = "ab".repeat(40);
        for (file, value, why) in [
            (
                files::REGISTRATION_SECRET,
                DEFAULT_SECRET,
                "still the default placeholder",
            ),
            (
                files::CONNECTION_KEY,
                DEFAULT_SECRET,
                "still the default placeholder",
            ),
            (files::REGISTRATION_SECRET, "", "empty"),
            (files::CONNECTION_KEY, "", "empty"),
            (
                files::REGISTRATION_SECRET,
                "Sh0rt-but-random-ish",
                "too short",
            ),
            (
                files::REGISTRATION_SECRET,
                long_low_entropy.as_str(),
                "too little entropy",
            ),
        ] {
            let d = dir(&[(file, value)]);
            let problems = load(Some(d.path().into()), "hub".into(), &prod).unwrap_err();
            let found = settings(&problems);
            assert!(
                found.iter().any(|(s, w)| *s == file && w.starts_with(why)),
                "{file}={value:?}: {found:?}"
            );
            // The value itself is never in the message.
            for p in &problems {
                assert!(
                    value.is_empty() || value == DEFAULT_SECRET || !p.to_string().contains(value),
                    "{p}"
                );
            }
        }
        // A missing file is named as missing.
        let d = dir(&[]);
        std::fs::remove_file(d.path().join(files::SIGNING_KEY)).unwrap();
        std::fs::remove_file(d.path().join(files::CONNECTION_KEY)).unwrap();
        let problems = load(Some(d.path().into()), "hub".into(), &prod).unwrap_err();
        let found = settings(&problems);
        assert!(
            found.contains(&(files::SIGNING_KEY, "missing")),
            "{found:?}"
        );
        assert!(
            found.contains(&(files::CONNECTION_KEY, "missing")),
            "{found:?}"
        );
    }

    #[test]
    fn environment_secrets_only_in_dev() {
        let d = dir(&[]);
        let key = crate::creds::TransportKey::generate();
        std::fs::remove_file(d.path().join(files::CONNECTION_KEY)).unwrap();
        let prod = env(&[
            ("HUBWORKER_ENV", "production"),
            (ENV_CONNECTION_KEY, key.expose()),
        ]);
        let problems = load(Some(d.path().into()), "hub".into(), &prod).unwrap_err();
        assert_eq!(problems[0].setting, ENV_CONNECTION_KEY);
        assert!(!problems[0].to_string().contains(key.expose()));
        let dev = env(&[(ENV_CONNECTION_KEY, key.expose())]);
        assert!(load(Some(d.path().into()), "hub".into(), &dev).is_ok());
    }

    #[test]
    fn dev_warns_and_an_empty_registration_secret_opens_registration() {
        let d = dir(&[
            (files::REGISTRATION_SECRET, ""),
            (
                files::CONNECTION_KEY,
                crate::creds::TransportKey::generate().expose(),
            ),
        ]);
        let loaded = load(Some(d.path().into()), "hub".into(), &env(&[])).unwrap();
        assert!(loaded.keys.registration_secret.is_none());
        let found = settings(&loaded.warnings);
        assert!(
            found.iter().any(
                |(s, w)| *s == files::REGISTRATION_SECRET && w.contains("registration is open")
            ),
            "{found:?}"
        );
        // systemd's credentials directory works like --secrets.
        let creds_dir = dir(&[]);
        let e = env(&[
            ("CREDENTIALS_DIRECTORY", creds_dir.path().to_str().unwrap()),
            ("HUBWORKER_ENV", "production"),
        ]);
        assert!(load(None, "hub".into(), &e).is_ok());
    }
}
