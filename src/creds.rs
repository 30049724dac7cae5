//! Just-in-time credentials: the Hub seals each connection's credential with Fernet under the
//! worker's transport key; the worker opens it (with a short TTL) into zeroizing [`Secret`]s,
//! turns it into a connector [`Target`], and drops it when the run ends. This module is the
//! sole holder of the transport key; nothing here logs, formats or stores plaintext.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::locked::LockedBytes;

use crate::connector::{ClientTls, Target};
use crate::secret::Secret;
use crate::sql::Dialect;

/// How long a sealed credential stays openable after the Hub sealed it.
#[cfg(test)]
pub(crate) const DEFAULT_OPEN_TTL: Duration = Duration::from_secs(60);
/// Largest sealed credential accepted (checked before decrypting).
pub(crate) const MAX_SEALED_BYTES: usize = 64 * 1024;

/// Why a credential could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    /// The transport key is not a Fernet key (32 bytes, URL-safe base64).
    #[error("the transport key is not a valid Fernet key")]
    BadKey,
    /// Too large, tampered with, sealed under another key, or older than the TTL.
    #[error("the sealed credential cannot be opened (wrong key, tampered, or older than its TTL)")]
    Unseal,
    /// The plaintext is not the credential contract's JSON.
    #[error("the credential does not follow the contract: {0}")]
    Invalid(String),
    /// An OAuth access token past its expiry: the user must re-authenticate at the Hub.
    #[error("the OAuth access token of connection {0:?} has expired; re-authenticate")]
    Expired(String),
}

impl CredError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CredError::BadKey => "bad_transport_key",
            CredError::Unseal => "credential_unseal_failed",
            CredError::Invalid(_) => "credential_invalid",
            CredError::Expired(_) => "credential_expired",
        }
    }
}

/// How the worker authenticates to the database (the `auth` object of the contract).
#[derive(Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// User name and password.
    Password {
        /// Database user.
        user: String,
        /// Password.
        #[serde(serialize_with = "crate::secret::serialize_exposed")]
        password: Secret,
    },
    /// A TLS client certificate and its private key (PEM).
    KeyPair {
        /// Database user.
        user: String,
        /// Client certificate, PEM.
        certificate_pem: String,
        /// Private key, PEM.
        #[serde(serialize_with = "crate::secret::serialize_exposed")]
        private_key_pem: Secret,
    },
    /// An OAuth access token used as the password, valid until `expires_at`.
    Oauth {
        /// Database user.
        user: String,
        /// The access token.
        #[serde(serialize_with = "crate::secret::serialize_exposed")]
        access_token: Secret,
        /// Expiry, seconds since the epoch.
        expires_at: i64,
    },
    /// No authentication (SQLite files).
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password { user, .. } => {
                write!(f, "Password {{ user: {user:?}, password: *** }}")
            }
            Auth::KeyPair { user, .. } => write!(f, "KeyPair {{ user: {user:?}, key: *** }}"),
            Auth::Oauth {
                user, expires_at, ..
            } => {
                write!(
                    f,
                    "Oauth {{ user: {user:?}, token: ***, expires_at: {expires_at} }}"
                )
            }
            Auth::None => f.write_str("None"),
        }
    }
}

/// One connection's credential: the plaintext of a sealed credential (README: "Credentials").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Connection id (must match the entry it arrived in).
    pub connection: String,
    /// Database kind.
    pub dialect: Dialect,
    /// Host (server databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port (server databases; the dialect's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database name (server databases) or file path (SQLite).
    pub database: String,
    /// Authentication.
    pub auth: Auth,
    /// A database role to assume after connecting (PostgreSQL/MySQL `SET ROLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Require TLS to the database.
    #[serde(default)]
    pub tls: bool,
}

/// Percent-encodes a URL userinfo or path component (everything but RFC 3986 unreserved).
fn encode(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Credential {
    /// The connector target for this credential at time `now` (seconds since the epoch).
    pub fn target(&self, now: i64) -> Result<Target, CredError> {
        if let Some(role) = &self.role
            && !crate::connector::is_valid_role(role)
        {
            return Err(CredError::Invalid(
                "role must be 1-63 of letters, digits and _".into(),
            ));
        }
        let server = |scheme: &str,
                      default_port: u16,
                      user: &str,
                      password: Option<&str>|
         -> Result<Secret, CredError> {
            let host = self
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| CredError::Invalid("host is required".into()))?;
            if host
                .bytes()
                .any(|b| matches!(b, b'/' | b'@' | b'?' | b'#') || b.is_ascii_whitespace())
            {
                return Err(CredError::Invalid("host is not a host name".into()));
            }
            let port = self.port.unwrap_or(default_port);
            let auth = match password {
                Some(p) => format!("{}:{}", encode(user), encode(p)),
                None => encode(user),
            };
            Ok(Secret::new(format!(
                "{scheme}://{auth}@{host}:{port}/{}",
                encode(&self.database)
            )))
        };
        let (scheme, port) = match self.dialect {
            Dialect::Postgres => ("postgres", 5432),
            Dialect::Mysql => ("mysql", 3306),
            Dialect::Sqlite => ("sqlite", 0),
        };
        let mut client_tls = None;
        let url = match (&self.auth, self.dialect) {
            (Auth::None, Dialect::Sqlite) => Secret::new(format!("sqlite://{}", self.database)),
            (_, Dialect::Sqlite) | (Auth::None, _) => {
                return Err(CredError::Invalid(
                    "SQLite takes auth `none`; servers need a user".into(),
                ));
            }
            (Auth::Password { user, password }, _) => {
                server(scheme, port, user, Some(password.expose()))?
            }
            (
                Auth::Oauth {
                    user,
                    access_token,
                    expires_at,
                },
                _,
            ) => {
                if *expires_at <= now {
                    return Err(CredError::Expired(self.connection.clone()));
                }
                server(scheme, port, user, Some(access_token.expose()))?
            }
            (
                Auth::KeyPair {
                    user,
                    certificate_pem,
                    private_key_pem,
                },
                _,
            ) => {
                client_tls = Some(ClientTls {
                    certificate_pem: certificate_pem.clone(),
                    private_key_pem: private_key_pem.clone(),
                });
                server(scheme, port, user, None)?
            }
        };
        let mut target = Target::from_url(url).map_err(|e| CredError::Invalid(e.to_string()))?;
        target.role = self.role.clone();
        target.require_tls = self.tls || client_tls.is_some();
        target.client_tls = client_tls;
        Ok(target)
    }
}

/// The worker's Fernet transport key (the Hub seals credentials under it). The key's text is
/// kept in a locked, zeroizing buffer; a Fernet instance is made for each use and dropped.
#[derive(Clone)]
pub struct TransportKey {
    text: LockedBytes,
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportKey(***)")
    }
}

impl TransportKey {
    /// From the key's text (URL-safe base64 of 32 bytes).
    pub fn new(key: &Secret) -> Result<TransportKey, CredError> {
        Self::from_text(key.expose())
    }

    /// From the key's text, borrowed.
    pub(crate) fn from_text(key: &str) -> Result<TransportKey, CredError> {
        let text = key.trim();
        fernet::Fernet::new(text).ok_or(CredError::BadKey)?;
        Ok(TransportKey {
            text: LockedBytes::take(&mut text.as_bytes().to_vec()),
        })
    }

    /// The key's text, to hand to a sandboxed run child (over its pipe, never env or argv).
    pub(crate) fn text(&self) -> &[u8] {
        self.text.expose()
    }

    fn fernet(&self) -> fernet::Fernet {
        std::str::from_utf8(self.text.expose())
            .ok()
            .and_then(fernet::Fernet::new)
            .expect("the key text was checked to be a Fernet key when it was taken")
    }

    /// A fresh random key's text.
    pub fn generate() -> Secret {
        Secret::new(fernet::Fernet::generate_key())
    }

    /// Seals `plaintext` (the Hub side; also used to encrypt credentials at rest).
    pub(crate) fn seal(&self, plaintext: &[u8]) -> String {
        self.fernet().encrypt(plaintext)
    }

    /// Opens a sealed blob sealed at most `ttl` ago; the plaintext is zeroized on drop.
    pub(crate) fn open_bytes(
        &self,
        sealed: &str,
        ttl: Duration,
    ) -> Result<Zeroizing<Vec<u8>>, CredError> {
        if sealed.len() > MAX_SEALED_BYTES {
            return Err(CredError::Unseal);
        }
        self.fernet()
            .decrypt_with_ttl(sealed, ttl.as_secs())
            .map(Zeroizing::new)
            .map_err(|_| CredError::Unseal)
    }

    /// Opens a sealed blob without a TTL (credentials at rest in the Hub's store).
    pub(crate) fn open_at_rest(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>, CredError> {
        self.fernet()
            .decrypt(sealed)
            .map(Zeroizing::new)
            .map_err(|_| CredError::Unseal)
    }

    /// Opens a sealed credential for `connection`. The plaintext is moved into a locked buffer
    /// (never swapped out) that is wiped when this returns.
    pub(crate) fn open(
        &self,
        connection: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<Credential, CredError> {
        let plain = LockedBytes::take(&mut self.open_bytes(sealed, ttl)?);
        let cred: Credential = serde_json::from_slice(plain.expose())
            .map_err(|e| CredError::Invalid(format!("line {}, column {}", e.line(), e.column())))?;
        if cred.connection != connection {
            return Err(CredError::Invalid(
                "the credential is for another connection".into(),
            ));
        }
        Ok(cred)
    }
}

/// An AI provider's API key as the Hub sends it at Redeem (scope `ai`): the JSON
/// `{"provider": NAME, "api_key": KEY}`, sealed like a database credential.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderKey {
    /// The provider's name (`[ai.providers.<name>]` on the worker).
    pub provider: String,
    /// The key (never logged, zeroized on drop).
    #[serde(serialize_with = "crate::secret::serialize_exposed")]
    pub api_key: Secret,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("provider", &self.provider)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl ProviderKey {
    /// Seals the key for a worker (the Hub side).
    pub(crate) fn seal(&self, key: &TransportKey) -> Result<String, CredError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(self).map_err(|e| CredError::Invalid(e.to_string()))?,
        );
        Ok(key.seal(&plain))
    }

    /// Opens a sealed key for `provider` sealed at most `ttl` ago (the worker side).
    pub(crate) fn open(
        key: &TransportKey,
        provider: &str,
        sealed: &str,
        ttl: Duration,
    ) -> Result<ProviderKey, CredError> {
        let plain = LockedBytes::take(&mut key.open_bytes(sealed, ttl)?);
        let k: ProviderKey = serde_json::from_slice(plain.expose())
            .map_err(|e| CredError::Invalid(format!("line {}, column {}", e.line(), e.column())))?;
        if k.provider != provider {
            return Err(CredError::Invalid("the key is for another provider".into()));
        }
        Ok(k)
    }
}

/// Seals `cred` for a worker (the Hub side).
pub(crate) fn seal(key: &TransportKey, cred: &Credential) -> Result<String, CredError> {
    let plain =
        Zeroizing::new(serde_json::to_vec(cred).map_err(|e| CredError::Invalid(e.to_string()))?);
    Ok(key.seal(&plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(auth: Auth) -> Credential {
        Credential {
            connection: "dw".into(),
            dialect: Dialect::Postgres,
            host: Some("db.internal".into()),
            port: None,
            database: "sales/eu".into(),
            auth,
            role: Some("reporting".into()),
            tls: true,
        }
    }

    #[test]
    fn seal_open_round_trip_and_targets() {
        let key = TransportKey::new(&TransportKey::generate()).unwrap();
        let c = cred(Auth::Password {
            user: "ana lyst".into(),
            password: Secret::new("p@ss:w/rd".into()),
        });
        let sealed = seal(&key, &c).unwrap();
        assert!(!sealed.contains("p@ss"));
        let opened = key.open("dw", &sealed, DEFAULT_OPEN_TTL).unwrap();
        let t = opened.target(0).unwrap();
        assert_eq!(
            t.url.expose(),
            "postgres://ana%20lyst:p%40ss%3Aw%2Frd@db.internal:5432/sales%2Feu"
        );
        assert_eq!(t.role.as_deref(), Some("reporting"));
        assert!(t.require_tls);
        // Another connection's entry, another key, tampering: refused.
        assert_eq!(
            key.open("shop", &sealed, DEFAULT_OPEN_TTL)
                .unwrap_err()
                .code(),
            "credential_invalid"
        );
        let other = TransportKey::new(&TransportKey::generate()).unwrap();
        assert_eq!(
            other
                .open("dw", &sealed, DEFAULT_OPEN_TTL)
                .unwrap_err()
                .code(),
            "credential_unseal_failed"
        );
        let mut tampered = sealed.into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            key.open("dw", &tampered, DEFAULT_OPEN_TTL)
                .unwrap_err()
                .code(),
            "credential_unseal_failed"
        );
        assert_eq!(
            TransportKey::new(&Secret::new("not-a-key".into()))
                .unwrap_err()
                .code(),
            "bad_transport_key"
        );
    }

    #[test]
    fn sealed_credentials_expire_after_their_ttl() {
        let key = TransportKey::new(&TransportKey::generate()).unwrap();
        let sealed = seal(&key, &cred(Auth::None)).unwrap();
        std::thread::sleep(Duration::from_millis(2_100));
        assert_eq!(
            key.open("dw", &sealed, Duration::from_secs(1))
                .unwrap_err()
                .code(),
            "credential_unseal_failed"
        );
        assert!(key.open("dw", &sealed, Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn kinds_expiry_roles_and_redaction() {
        let oauth = cred(Auth::Oauth {
            user: "u".into(),
            access_token: Secret::new("tok-SECRET".into()),
            expires_at: 1_000,
        });
        assert!(oauth.target(999).is_ok());
        assert_eq!(
            oauth.target(1_000).unwrap_err().code(),
            "credential_expired"
        );
        let kp = cred(Auth::KeyPair {
            user: "u".into(),
            certificate_pem: "CERT".into(),
            private_key_pem: Secret::new("KEY-SECRET".into()),
        });
        let t = kp.target(0).unwrap();
        assert_eq!(t.url.expose(), "postgres://u@db.internal:5432/sales%2Feu");
        assert!(t.client_tls.is_some() && t.require_tls);
        let mut bad_role = kp.clone();
        bad_role.role = Some("x; DROP".into());
        assert_eq!(bad_role.target(0).unwrap_err().code(), "credential_invalid");
        let sqlite = Credential {
            dialect: Dialect::Sqlite,
            host: None,
            database: "/data/shop.db".into(),
            auth: Auth::None,
            role: None,
            tls: false,
            ..cred(Auth::None)
        };
        assert_eq!(
            sqlite.target(0).unwrap().url.expose(),
            "sqlite:///data/shop.db"
        );
        assert_eq!(
            cred(Auth::None).target(0).unwrap_err().code(),
            "credential_invalid"
        );
        let debug = format!("{oauth:?} {kp:?} {t:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        // Unknown fields in the contract are refused.
        let key = TransportKey::new(&TransportKey::generate()).unwrap();
        let sealed = key.seal(br#"{"connection": "dw", "dialect": "sqlite", "database": "x", "auth": {"kind": "none"}, "extra": 1}"#);
        assert_eq!(
            key.open("dw", &sealed, DEFAULT_OPEN_TTL)
                .unwrap_err()
                .code(),
            "credential_invalid"
        );
        assert!(
            crate::connector::is_valid_role("reporting_2")
                && !crate::connector::is_valid_role("2x")
                && !crate::connector::is_valid_role(&"a".repeat(64))
        );
    }
}
