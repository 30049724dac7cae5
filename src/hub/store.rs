//! The reference Hub's store (SQLite via sqlx): users and roles, connections with their
//! credentials encrypted at rest (Fernet under `CONNECTION_ENCRYPTION_KEY`), issued tokens and
//! their single redemption, registered workers (with the SHA-256 of each one's worker secret,
//! never the secret). Redemption is one conditional `UPDATE`, so of any number of concurrent
//! redemptions exactly one wins; a worker's row changes only by a compare-and-swap on its
//! secret's digest, so a stale or concurrent caller changes nothing. Rotated token-signing keys
//! live here too (`signing.rs`), sealed like credentials. The database and its
//! `-wal` and `-shm` files are private to the Hub's user (0600).

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::creds::{Credential, TransportKey};
use crate::secret::Secret;

/// Roles users can have (the Hub's security model). Admins manage and auditors read; neither
/// runs workflows: only `user`s get run and inspect tokens.
pub(crate) const ROLES: [&str; 3] = ["admin", "user", "auditor"];
/// Longest user name, bytes (it becomes the tokens' `sub`, which workers bound the same way).
pub(crate) const MAX_USER_NAME_BYTES: usize = crate::token::MAX_ID_CLAIM_BYTES;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("hub store: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored credential cannot be opened (wrong `CONNECTION_ENCRYPTION_KEY`?).
    #[error(
        "stored credential of {0:?} cannot be decrypted: wrong CONNECTION_ENCRYPTION_KEY? (without the key it is unrecoverable)"
    )]
    Decrypt(String),
    /// Bad input (unknown role, duplicate name...).
    #[error("{0}")]
    Invalid(String),
    /// The database file (or its `-wal`/`-shm`) cannot be made private.
    #[error("hub store file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// Worker id.
    pub id: String,
    /// Where its Worker service listens.
    pub address: String,
    /// The audience its tokens carry.
    pub audience: String,
    /// Its transport key (opened from the store).
    pub transport_key: Secret,
    /// SHA-256 (hex) of its current worker secret; `None` for a row from before worker
    /// secrets (such a worker must register again before it can heartbeat).
    pub secret_sha256: Option<String>,
    /// Capacity it last reported.
    pub capacity: u32,
    /// Runs in flight it last reported.
    pub runs_in_flight: u32,
    /// Whether it last reported draining.
    pub draining: bool,
}

/// What a worker registers with (everything but its key and secret).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerFields<'a> {
    /// Worker id.
    pub id: &'a str,
    /// Where its Worker service listens.
    pub address: &'a str,
    /// The audience its tokens carry.
    pub audience: &'a str,
    /// Runs at once.
    pub capacity: u32,
    /// hubworker version.
    pub version: &'a str,
}

/// An issued token as recorded.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Token id.
    pub jti: String,
    /// User.
    pub sub: String,
    /// Audience.
    pub audience: String,
    /// Connections granted.
    pub connections: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub expires_at: i64,
}

/// The Hub's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Makes the database file private before SQLite opens it: created 0600 if missing (SQLite
/// gives the `-wal` and `-shm` files it creates the database file's mode), and an existing
/// store and its `-wal`/`-shm` are narrowed to 0600.
fn private_files(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |p: &Path| {
        let path = p.to_owned();
        move |source| StoreError::File { path, source }
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(err(path))?;
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for f in &files {
        match std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other.map_err(err(f))?,
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        private_files(path)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL sync: a commit survives a crash of the Hub process (what guards
            // single use against concurrent redemptions); only a power loss can forget the
            // last commits. A production Hub keeps its tokens in a database it trusts for that.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        super::schema::migrate(&pool).await?;
        Ok(Store { pool })
    }

    /// The connection pool (for the signing keys' queries, `signing.rs`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Adds a user with one of `ROLES`.
    pub async fn add_user(&self, name: &str, role: &str, now: i64) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
            return Err(StoreError::Invalid(format!(
                "a user name is 1 to {MAX_USER_NAME_BYTES} bytes"
            )));
        }
        if !ROLES.contains(&role) {
            return Err(StoreError::Invalid(format!(
                "role must be one of {}",
                ROLES.join(", ")
            )));
        }
        sqlx::query("INSERT INTO users (name, role, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(role)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| unique(e, "user", name))?;
        Ok(())
    }

    /// A user's role.
    pub async fn role(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT role FROM users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Adds a connection; its credential is encrypted at rest under `at_rest`.
    pub async fn add_connection(
        &self,
        cred: &Credential,
        at_rest: &TransportKey,
        now: i64,
    ) -> Result<(), StoreError> {
        let sealed =
            crate::creds::seal(at_rest, cred).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO connections (name, dialect, sealed, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&cred.connection)
        .bind(cred.dialect.as_str())
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, "connection", &cred.connection))?;
        Ok(())
    }

    /// Replaces a connection's credential (rotation); `false` if there is no such connection.
    pub async fn set_credential(
        &self,
        cred: &Credential,
        at_rest: &TransportKey,
    ) -> Result<bool, StoreError> {
        let sealed =
            crate::creds::seal(at_rest, cred).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let done = sqlx::query("UPDATE connections SET sealed = ?, dialect = ? WHERE name = ?")
            .bind(sealed)
            .bind(cred.dialect.as_str())
            .bind(&cred.connection)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Which of `names` are not stored connections.
    pub(crate) async fn missing_connections(
        &self,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        self.missing("SELECT name FROM connections WHERE name = ?", names)
            .await
    }

    /// Which of `names` `lookup` (a query by one name) does not find.
    pub(super) async fn missing(
        &self,
        lookup: &'static str,
        names: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for n in names {
            let found: Option<String> = sqlx::query_scalar(lookup)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_none() {
                missing.push(n.clone());
            }
        }
        Ok(missing)
    }

    /// A connection's credential, decrypted (plaintext only inside the returned value).
    pub(crate) async fn credential(
        &self,
        name: &str,
        at_rest: &TransportKey,
    ) -> Result<Credential, StoreError> {
        let sealed: String = sqlx::query_scalar("SELECT sealed FROM connections WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no connection {name:?}")))?;
        let plain = at_rest
            .open_at_rest(&sealed)
            .map_err(|_| StoreError::Decrypt(name.to_owned()))?;
        serde_json::from_slice(&plain).map_err(|_| StoreError::Decrypt(name.to_owned()))
    }

    /// Records an issued token.
    pub async fn record_token(
        &self,
        claims: &crate::token::Claims,
        audience: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tokens (jti, sub, audience, workflow_sha256, params_sha256, connections, scope, issued_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&claims.jti)
        .bind(&claims.sub)
        .bind(audience)
        .bind(&claims.workflow_sha256)
        .bind(&claims.params_sha256)
        .bind(serde_json::to_string(&claims.connections).unwrap_or_default())
        .bind(&claims.scope)
        .bind(claims.iat)
        .bind(claims.exp)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the token consumed by `worker`, atomically. `Ok(true)` for the one redemption
    /// that wins; `Ok(false)` if it was already redeemed or has expired.
    pub(crate) async fn consume(
        &self,
        jti: &str,
        worker: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET redeemed_at = ?, redeemed_by = ?
             WHERE jti = ? AND redeemed_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .bind(worker)
        .bind(jti)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The recorded token, and whether it was redeemed.
    pub async fn token(&self, jti: &str) -> Result<Option<(TokenRecord, bool)>, StoreError> {
        let row = sqlx::query(
            "SELECT jti, sub, audience, connections, expires_at, redeemed_at IS NOT NULL FROM tokens WHERE jti = ?",
        )
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let connections: String = row.try_get(3)?;
        Ok(Some((
            TokenRecord {
                jti: row.try_get(0)?,
                sub: row.try_get(1)?,
                audience: row.try_get(2)?,
                connections: serde_json::from_str(&connections).unwrap_or_default(),
                expires_at: row.try_get(4)?,
            },
            row.try_get(5)?,
        )))
    }

    /// Adds a worker that is not registered yet; its transport key is encrypted at rest.
    /// `false` (nothing written) if the id is taken.
    pub(crate) async fn insert_worker(
        &self,
        w: &WorkerFields<'_>,
        transport_key: &Secret,
        secret_sha256: &str,
        at_rest: &TransportKey,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sealed = at_rest.seal(transport_key.expose().as_bytes());
        let done = sqlx::query(
            "INSERT INTO workers (id, address, audience, capacity, version, transport_key, registered_at, secret_sha256)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(w.id)
        .bind(w.address)
        .bind(w.audience)
        .bind(i64::from(w.capacity))
        .bind(w.version)
        .bind(sealed)
        .bind(now)
        .bind(secret_sha256)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Re-registers a worker whose current secret digest is `expected` (compare-and-swap):
    /// new fields, transport key and secret digest. `false` (nothing written) if the row has
    /// changed since `expected` was read, or is gone.
    pub(crate) async fn replace_worker(
        &self,
        w: &WorkerFields<'_>,
        transport_key: &Secret,
        expected: Option<&str>,
        secret_sha256: &str,
        at_rest: &TransportKey,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sealed = at_rest.seal(transport_key.expose().as_bytes());
        let done = sqlx::query(
            "UPDATE workers SET address = ?, audience = ?, capacity = ?, version = ?, transport_key = ?,
               registered_at = ?, secret_sha256 = ?
             WHERE id = ? AND secret_sha256 IS ?",
        )
        .bind(w.address)
        .bind(w.audience)
        .bind(i64::from(w.capacity))
        .bind(w.version)
        .bind(sealed)
        .bind(now)
        .bind(secret_sha256)
        .bind(w.id)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A registered worker.
    pub async fn worker(
        &self,
        id: &str,
        at_rest: &TransportKey,
    ) -> Result<Option<WorkerRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, address, audience, transport_key, secret_sha256, capacity, runs_in_flight, draining
             FROM workers WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: String = row.try_get(3)?;
        let plain = at_rest
            .open_at_rest(&sealed)
            .map_err(|_| StoreError::Decrypt(format!("worker {id}")))?;
        let key = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::Decrypt(format!("worker {id}")))?;
        let count = |i: usize| -> Result<u32, StoreError> {
            let v: i64 = row.try_get(i)?;
            Ok(u32::try_from(v).unwrap_or(0))
        };
        Ok(Some(WorkerRecord {
            id: row.try_get(0)?,
            address: row.try_get(1)?,
            audience: row.try_get(2)?,
            transport_key: Secret::new(key),
            secret_sha256: row.try_get(4)?,
            capacity: count(5)?,
            runs_in_flight: count(6)?,
            draining: row.try_get(7)?,
        }))
    }

    /// The digest of a worker's current secret: `None` if the worker is not registered,
    /// `Some(None)` for a row from before worker secrets.
    pub(crate) async fn worker_secret_sha256(
        &self,
        id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT secret_sha256 FROM workers WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a heartbeat of the worker whose secret digest is `secret_sha256`; `false`
    /// (nothing written) if there is no such worker (unknown, or registered again since).
    pub(crate) async fn heartbeat(
        &self,
        id: &str,
        secret_sha256: &str,
        capacity: u32,
        in_flight: u32,
        draining: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE workers SET last_heartbeat = ?, capacity = ?, runs_in_flight = ?, draining = ?
             WHERE id = ? AND secret_sha256 = ?",
        )
        .bind(now)
        .bind(i64::from(capacity))
        .bind(i64::from(in_flight))
        .bind(draining)
        .bind(id)
        .bind(secret_sha256)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the worker whose secret digest is `secret_sha256`; `false` if there is none.
    pub(crate) async fn remove_worker(
        &self,
        id: &str,
        secret_sha256: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM workers WHERE id = ? AND secret_sha256 = ?")
            .bind(id)
            .bind(secret_sha256)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Workers with free capacity that are not draining, most free first: (id, address, free).
    pub async fn available_workers(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, address, capacity - runs_in_flight AS free FROM workers
             WHERE draining = 0 AND capacity > runs_in_flight ORDER BY free DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Every registered worker as the dispatcher sees it ([`Live`](super::pick::Live)): last
    /// heard from at its last heartbeat, or at registration if it has not beaten yet.
    pub async fn live_workers(&self) -> Result<Vec<super::pick::Live>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, address, audience, capacity, runs_in_flight, draining,
                    MAX(registered_at, COALESCE(last_heartbeat, registered_at))
             FROM workers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let count = |v: i64| u32::try_from(v).unwrap_or(0);
        rows.iter()
            .map(|r| {
                Ok(super::pick::Live {
                    id: r.try_get(0)?,
                    address: r.try_get(1)?,
                    audience: r.try_get(2)?,
                    capacity: count(r.try_get(3)?),
                    in_flight: count(r.try_get(4)?),
                    draining: r.try_get(5)?,
                    last_seen: r.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

pub(super) fn unique(e: sqlx::Error, what: &str, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Invalid(format!("{what} {name:?} exists already"))
        }
        _ => StoreError::Db(e),
    }
}
