//! The reference Hub's database schema, and the migrations of stores made by earlier versions
//! (each idempotent: a store is brought up to date every time it is opened).

use sqlx::sqlite::SqlitePool;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'auditor')),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    name TEXT PRIMARY KEY,
    dialect TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    audience TEXT NOT NULL,
    workflow_sha256 TEXT NOT NULL,
    params_sha256 TEXT NOT NULL,
    connections TEXT NOT NULL,
    scope TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    redeemed_at INTEGER,
    redeemed_by TEXT
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    audience TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    version TEXT NOT NULL,
    transport_key TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    last_heartbeat INTEGER,
    runs_in_flight INTEGER NOT NULL DEFAULT 0,
    draining INTEGER NOT NULL DEFAULT 0,
    secret_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_keys (
    worker_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (worker_id, public_key)
);
CREATE TABLE IF NOT EXISTS audit_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    worker_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    run_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    flag TEXT,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_by_worker ON audit_records (worker_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('current', 'previous')),
    sealed_pem TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Stores made before the roles followed the security model: `analyst` and `developer` become
/// `user` (the CHECK constraint changes, so the table is rebuilt).
const MIGRATE_ROLES: &str = "
BEGIN IMMEDIATE;
CREATE TABLE users_new (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user', 'auditor')),
    created_at INTEGER NOT NULL
);
INSERT INTO users_new (name, role, created_at)
    SELECT name, CASE WHEN role IN ('admin', 'auditor') THEN role ELSE 'user' END, created_at
    FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
COMMIT;
";

/// Adds `column` (of type `ddl`) to `table` in a store made before it existed.
async fn add_column(
    pool: &SqlitePool,
    table: &str,
    column: &str,
    ddl: &str,
) -> Result<(), sqlx::Error> {
    let has: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?")
        .bind(table)
        .bind(column)
        .fetch_one(pool)
        .await?;
    if has == 0 {
        sqlx::raw_sql(&format!("ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Creates what is missing and migrates what is old.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(pool).await?;
    let users: Option<String> =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'")
            .fetch_optional(pool)
            .await?;
    if users.is_some_and(|sql| sql.contains("'analyst'")) {
        sqlx::raw_sql(MIGRATE_ROLES).execute(pool).await?;
    }
    add_column(pool, "workers", "secret_sha256", "TEXT").await?;
    // Stores made before tokens were bound to run parameters: their tokens had none.
    let none = format!("TEXT NOT NULL DEFAULT '{}'", crate::token::NO_PARAMS_SHA256);
    add_column(pool, "tokens", "params_sha256", &none).await
}
