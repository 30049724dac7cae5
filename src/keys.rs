//! Key material on disk: `hubworker keygen` (an Ed25519 token-signing pair, Fernet keys, a
//! registration secret, all written 0600), reading secrets from files (also systemd's
//! `$CREDENTIALS_DIRECTORY`; environment variables only in dev mode), and the startup checks
//! that refuse missing, default, empty or weak secrets in production. Values are never
//! printed: problems name the setting only.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// The placeholder shipped in example configs; never accepted in production.
pub(crate) const DEFAULT_SECRET: &str = "CHANGE_ME_IN_PRODUCTION";
/// Shortest secret accepted in production (characters).
pub(crate) const MIN_SECRET_LEN: usize = 32;
/// Largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// File names `keygen` writes and the loaders look for.
pub mod files {
    /// The Hub's token-signing key (Ed25519, PKCS#8 PEM). Hub only.
    pub(crate) const SIGNING_KEY: &str = "token-signing.pem";
    /// The public token keys (JWKS). Workers.
    pub const KEY_SET: &str = "token-keys.jwks";
    /// A worker's Fernet transport key. Worker only (sent to the Hub at registration).
    pub const TRANSPORT_KEY: &str = "transport.key";
    /// Shared registration secret. Hub and workers.
    pub const REGISTRATION_SECRET: &str = "registration.secret";
    /// The Hub's Fernet key for credentials at rest (`CONNECTION_ENCRYPTION_KEY`). Hub only.
    pub(crate) const CONNECTION_KEY: &str = "connection-encryption.key";
}

/// Dev or production: production refuses weak secrets, dev warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Development: warnings only; environment variables may carry secrets.
    Dev,
    /// Production: every secret must be present and strong.
    Production,
}

impl Mode {
    /// `HUBWORKER_ENV=production` (or `prod`) selects production.
    pub(crate) fn from_env(env: &dyn Env) -> Mode {
        match env.var("HUBWORKER_ENV").as_deref() {
            Some("production" | "prod") => Mode::Production,
            _ => Mode::Dev,
        }
    }
}

/// Where settings come from: the process environment, or a map in tests (so tests never touch
/// the real environment).
pub(crate) trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// An environment from `(name, value)` pairs (tests: never the real process environment).
#[cfg(test)]
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A problem with one secret setting: names the setting, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {why}")]
pub struct SecretProblem {
    /// The setting (file name or variable).
    pub setting: String,
    /// What is wrong.
    pub why: String,
}

/// Reads secret files from a directory, then `$CREDENTIALS_DIRECTORY`, then (dev only) an
/// environment variable.
#[derive(Debug, Clone)]
pub(crate) struct SecretSource {
    dir: Option<PathBuf>,
    credentials_dir: Option<PathBuf>,
    mode: Mode,
}

impl SecretSource {
    /// A source reading `dir` (if given) and systemd's credentials directory from `env`.
    pub(crate) fn new(dir: Option<PathBuf>, env: &dyn Env) -> SecretSource {
        SecretSource {
            dir,
            credentials_dir: env.var("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            mode: Mode::from_env(env),
        }
    }

    /// The mode this source enforces.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Loads `file` (or, in dev mode only, the environment variable `var`).
    pub(crate) fn load(
        &self,
        file: &str,
        var: &str,
        env: &dyn Env,
    ) -> Result<Option<Secret>, SecretProblem> {
        for dir in self.dir.iter().chain(self.credentials_dir.iter()) {
            let path = dir.join(file);
            if path.exists() {
                return read_secret_file(&path)
                    .map(Some)
                    .map_err(|why| SecretProblem {
                        setting: file.to_owned(),
                        why,
                    });
            }
        }
        match (env.var(var), self.mode) {
            (Some(v), Mode::Dev) => Ok(Some(Secret::new(v))),
            (Some(_), Mode::Production) => Err(SecretProblem {
                setting: var.to_owned(),
                why: "secrets come from files in production, not environment variables".into(),
            }),
            (None, _) => Ok(None),
        }
    }
}

impl SecretSource {
    /// [`load`](Self::load), with a problem pushed onto `problems` (and `None`) on failure.
    pub(crate) fn load_or_report(
        &self,
        file: &str,
        var: &str,
        env: &dyn Env,
        problems: &mut Vec<SecretProblem>,
    ) -> Option<Secret> {
        self.load(file, var, env).unwrap_or_else(|p| {
            problems.push(p);
            None
        })
    }
}

/// Reads one secret file (size-capped; surrounding whitespace trimmed).
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {}", e.kind()))?;
    let mut raw = zeroize::Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE)
        .read_to_string(&mut raw)
        .map_err(|e| format!("cannot read: {}", e.kind()))?;
    Ok(Secret::new(raw.trim().to_owned()))
}

/// Strength checks for one secret. `None` is a missing secret. Returns the problems (empty
/// when fine); the caller refuses to start on any in production and warns in dev.
pub(crate) fn check_strength(setting: &str, value: Option<&Secret>) -> Vec<SecretProblem> {
    let problem = |why: &str| SecretProblem {
        setting: setting.to_owned(),
        why: why.to_owned(),
    };
    let Some(value) = value else {
        return vec![problem("missing")];
    };
    let v = value.expose();
    if v.is_empty() {
        return vec![problem("empty")];
    }
    if v.eq_ignore_ascii_case(DEFAULT_SECRET) || v.contains(DEFAULT_SECRET) {
        return vec![problem(
            "still the default placeholder; generate one with `hubworker keygen`",
        )];
    }
    let mut out = Vec::new();
    if v.chars().count() < MIN_SECRET_LEN {
        out.push(problem(&format!(
            "too short (fewer than {MIN_SECRET_LEN} characters)"
        )));
    }
    if entropy_bits_per_char(v) < 3.0 {
        out.push(problem(
            "too little entropy (repetitive or a dictionary-like value)",
        ));
    }
    out
}

/// Runs [`check_strength`] on each secret: in production the findings are fatal (`problems`),
/// in dev they are `warnings`.
pub(crate) fn classify(
    mode: Mode,
    secrets: &[(&str, Option<&Secret>)],
    problems: &mut Vec<SecretProblem>,
    warnings: &mut Vec<SecretProblem>,
) {
    for (setting, value) in secrets {
        let found = check_strength(setting, *value);
        match mode {
            Mode::Production => problems.extend(found),
            Mode::Dev => warnings.extend(found),
        }
    }
}

/// Shannon entropy of the characters, bits per character.
fn entropy_bits_per_char(s: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// A fresh random secret: 32 bytes, base64url (43 characters).
pub fn random_secret() -> Secret {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Secret::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// An Ed25519 token-signing key pair: the private key as PKCS#8 PEM and the public key set.
#[derive(Debug)]
pub struct SigningPair {
    /// Private key, PKCS#8 PEM.
    pub private_pem: Secret,
    /// Key id (derived from the public key).
    pub kid: String,
    /// The public JWKS document.
    pub jwks: String,
}

/// Generates a signing pair.
pub fn generate_signing_pair() -> Result<SigningPair, String> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    let public = key.verifying_key().to_bytes();
    let kid = hex::encode(&Sha256::digest(public)[..8]);
    let jwks = jwks_for(&[(kid.clone(), public)]);
    Ok(SigningPair {
        private_pem: Secret::new(pem.to_string()),
        kid,
        jwks,
    })
}

/// The public key of a PKCS#8 PEM private key, and its kid.
pub(crate) fn public_of(private_pem: &Secret) -> Result<(String, [u8; 32]), String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let key = SigningKey::from_pkcs8_pem(private_pem.expose())
        .map_err(|_| "not an Ed25519 PKCS#8 PEM private key".to_owned())?;
    let public = key.verifying_key().to_bytes();
    Ok((hex::encode(&Sha256::digest(public)[..8]), public))
}

/// A JWKS document for Ed25519 public keys.
pub(crate) fn jwks_for(keys: &[(String, [u8; 32])]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, x)| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                "kid": kid, "x": URL_SAFE_NO_PAD.encode(x),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// Writes `contents` to a new file with mode 0600 (never overwrites).
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// `hubworker keygen --out DIR`: every key a Hub and a worker need, in new 0600 files.
/// Returns the files written.
pub(crate) fn keygen(dir: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for name in [
        files::SIGNING_KEY,
        files::KEY_SET,
        files::TRANSPORT_KEY,
        files::REGISTRATION_SECRET,
        files::CONNECTION_KEY,
    ] {
        if dir.join(name).exists() {
            return Err(format!(
                "{} already exists; keygen never overwrites keys",
                dir.join(name).display()
            ));
        }
    }
    let pair = generate_signing_pair()?;
    let written = [
        (files::SIGNING_KEY, pair.private_pem),
        (files::KEY_SET, Secret::new(pair.jwks)),
        (files::TRANSPORT_KEY, crate::creds::TransportKey::generate()),
        (files::REGISTRATION_SECRET, random_secret()),
        (
            files::CONNECTION_KEY,
            crate::creds::TransportKey::generate(),
        ),
    ];
    let mut out = Vec::new();
    for (name, value) in written {
        let path = dir.join(name);
        write_private(&path, value.expose()).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// `hubworker keygen --worker --out DIR`: only a worker host's own transport key, a new 0600
/// `transport.key` (the registration secret and the key set are the Hub's, from its
/// operator; no signing key is ever made on a worker host). Returns the file written.
pub(crate) fn keygen_worker(dir: &Path) -> Result<Vec<PathBuf>, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(files::TRANSPORT_KEY);
    if path.exists() {
        return Err(format!(
            "{} already exists; keygen never overwrites keys",
            path.display()
        ));
    }
    write_private(&path, crate::creds::TransportKey::generate().expose())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(vec![path])
}

/// Environment lookups that try one source, then another.
#[derive(Clone, Copy)]
pub(crate) struct Layered<'a> {
    /// Asked first.
    pub first: &'a dyn Env,
    /// Asked when `first` has nothing.
    pub then: &'a dyn Env,
}

impl std::fmt::Debug for Layered<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Layered")
    }
}

impl Env for Layered<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.first.var(name).or_else(|| self.then.var(name))
    }
}

/// Environment variable for the worker's transport key (dev only).
pub(crate) const ENV_TRANSPORT_KEY: &str = "HUBWORKER_TRANSPORT_KEY";
/// Environment variable for the registration secret (dev only).
pub(crate) const ENV_REGISTRATION_SECRET: &str = "HUBWORKER_REGISTRATION_SECRET";

/// A worker's own secrets.
pub(crate) struct WorkerSecrets {
    /// Fernet transport key (the Hub seals credentials under it).
    pub transport_key: Secret,
    /// Registration secret (may be empty in dev: open registration).
    pub registration_secret: Secret,
    /// Token keys from a JWKS file, if one is given (else they come from registration).
    pub key_set: Option<crate::token::KeySet>,
}

impl std::fmt::Debug for WorkerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSecrets")
            .field("key_set", &self.key_set)
            .finish_non_exhaustive()
    }
}

/// Loads a worker's secrets from `dir` / `$CREDENTIALS_DIRECTORY` (env vars in dev only) and
/// checks them: in production every problem is fatal; in dev they are returned as warnings.
pub(crate) fn load_worker_secrets(
    dir: Option<PathBuf>,
    env: &dyn Env,
) -> Result<(WorkerSecrets, Vec<SecretProblem>), Vec<SecretProblem>> {
    let source = SecretSource::new(dir, env);
    let mut problems = Vec::new();
    let mut get = |file: &str, var: &str| source.load_or_report(file, var, env, &mut problems);
    let transport = get(files::TRANSPORT_KEY, ENV_TRANSPORT_KEY);
    let registration = get(files::REGISTRATION_SECRET, ENV_REGISTRATION_SECRET);
    let jwks = get(files::KEY_SET, "HUBWORKER_TOKEN_KEYS");
    let mut warnings = Vec::new();
    classify(
        source.mode(),
        &[
            (files::TRANSPORT_KEY, transport.as_ref()),
            (files::REGISTRATION_SECRET, registration.as_ref()),
        ],
        &mut problems,
        &mut warnings,
    );
    let key_set = match jwks.map(|j| crate::token::KeySet::from_jwks(j.expose())) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => {
            problems.push(SecretProblem {
                setting: files::KEY_SET.into(),
                why: e.to_string(),
            });
            None
        }
        None => None,
    };
    let transport = match transport {
        Some(t) if crate::creds::TransportKey::new(&t).is_ok() => Some(t),
        Some(_) => {
            problems.push(SecretProblem {
                setting: files::TRANSPORT_KEY.into(),
                why: "not a Fernet key (URL-safe base64 of 32 bytes); `hubworker keygen` makes one"
                    .into(),
            });
            None
        }
        None => {
            if !problems.iter().any(|p| p.setting == files::TRANSPORT_KEY) {
                problems.push(SecretProblem {
                    setting: files::TRANSPORT_KEY.into(),
                    why: "missing".into(),
                });
            }
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let registration = registration.unwrap_or_else(|| Secret::new(String::new()));
    if registration.expose().is_empty() {
        warnings.push(SecretProblem {
            setting: files::REGISTRATION_SECRET.into(),
            why: "empty: registration only works with a hub whose registration is open".into(),
        });
    }
    match transport {
        Some(transport_key) => Ok((
            WorkerSecrets {
                transport_key,
                registration_secret: registration,
                key_set,
            },
            warnings,
        )),
        None => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        env_of(pairs)
    }

    #[test]
    fn worker_secrets_from_files_and_their_checks() {
        let d = tempfile::tempdir().unwrap();
        keygen(d.path()).unwrap();
        let prod = env(&[("HUBWORKER_ENV", "production")]);
        let (s, warnings) = load_worker_secrets(Some(d.path().into()), &prod).unwrap();
        assert!(warnings.is_empty());
        assert!(s.key_set.is_some());
        assert!(!format!("{s:?}").contains(s.transport_key.expose()));
        for (file, value, why) in [
            (files::TRANSPORT_KEY, DEFAULT_SECRET, "still the default"),
            (
                files::REGISTRATION_SECRET,
                DEFAULT_SECRET,
                "still the default",
            ),
            (files::REGISTRATION_SECRET, "", "empty"),
            (
                files::TRANSPORT_KEY,
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "too little entropy",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            keygen(d.path()).unwrap();
            std::fs::write(d.path().join(file), value).unwrap();
            let problems = load_worker_secrets(Some(d.path().into()), &prod).unwrap_err();
            assert!(
                problems
                    .iter()
                    .any(|p| p.setting == file && p.why.starts_with(why)),
                "{file}: {problems:?}"
            );
            // Dev mode starts, with the same findings as warnings.
            let dev = load_worker_secrets(Some(d.path().into()), &env(&[]));
            if value == DEFAULT_SECRET && file == files::TRANSPORT_KEY || value.starts_with('a') {
                // Not a Fernet key at all: unusable in any mode.
                assert!(dev.is_err());
            } else {
                let (_, warnings) = dev.unwrap();
                assert!(warnings.iter().any(|p| p.setting == file), "{warnings:?}");
            }
        }
    }

    #[test]
    fn strength_checks() {
        let s = |v: &str| check_strength("x", Some(&Secret::new(v.into())));
        assert_eq!(check_strength("x", None)[0].why, "missing");
        assert_eq!(s("")[0].why, "empty");
        assert!(
            s("CHANGE_ME_IN_PRODUCTION")[0]
                .why
                .starts_with("still the default")
        );
        assert!(s(random_secret().expose()).is_empty());
        assert!(s("correct horse")[0].why.starts_with("too short"));
        assert!(
            s(&"0123".repeat(10))
                .iter()
                .any(|p| p.why.starts_with("too little entropy"))
        );
        let problem = &s("hunter2hunter2")[0];
        assert!(!problem.to_string().contains("hunter2"));
    }
}
