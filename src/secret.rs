//! Secret values: credentials, DSNs and keys live in [`Secret`], never in plain `String`s.
//! Debug and Display are redacted, memory is zeroized on drop, there is no `Serialize`, and
//! the plaintext is reachable only through an explicit `expose()`.

use zeroize::Zeroizing;

/// A secret string (a password, a connection URL with a password, a key). Its pages are
/// pinned in RAM (never swapped out) where the kernel allows.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret; the caller's copy should be dropped (or zeroized) right after.
    pub fn new(value: String) -> Self {
        crate::locked::pin(value.as_bytes());
        Secret(Zeroizing::new(value))
    }

    /// The plaintext, for the one call that needs it. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret::new(self.0.as_str().to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Serializes a secret's plaintext. Only for sealing it (Fernet) right away; `Secret` itself
/// has no `Serialize`, so a secret never ends up in JSON by accident.
pub(crate) fn serialize_exposed<S: serde::Serializer>(
    s: &Secret,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

/// `scheme://user:password@host/db` with the password (and any query string) replaced, for
/// messages that must name the target. Works on anything URL-shaped; never fails.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    match auth {
        Some(auth) => {
            let user = auth.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => format!("{scheme}://{host}"),
    }
}

/// Reads a secret (a connection URL, say) from a file, or from standard input for `-`,
/// trimmed; the raw text read is wiped.
pub(crate) fn read_secret(path: &std::path::Path) -> std::io::Result<Secret> {
    use std::io::Read;
    let mut raw = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut raw)?;
    } else {
        raw = std::fs::read_to_string(path)?;
    }
    let value = raw.trim().to_owned();
    zeroize::Zeroize::zeroize(&mut raw);
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://alice:p%40ss@db:5432/sales?sslmode=require"),
            "postgres://alice:***@db:5432/sales"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(redact_url("not a url"), "<redacted>");
        assert!(!redact_url("mysql://u:topsecret@h/d").contains("topsecret"));
    }
}
