//! The journal's schema in PostgreSQL, versioned: the migrations in
//! `runtime/migrations/postgres/`, embedded in the binary and applied at
//! connect.
//!
//! Invariants:
//! - Migrations are applied in version order, all in one transaction that
//!   holds an advisory lock, so workers starting together apply each once.
//! - `logbook_migrations` holds one row per applied version; a database at
//!   a version this build does not know is refused, never written.
//! - A migration, once released, never changes: a change is a new file.

use tokio_postgres::Client;

use crate::journal::JournalError;

/// Every migration: `(version, name, sql)`, in version order.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "journal",
        include_str!("../../../migrations/postgres/0001_journal.sql"),
    ),
    (
        2,
        "unstarted",
        include_str!("../../../migrations/postgres/0002_unstarted.sql"),
    ),
    (
        3,
        "stopped",
        include_str!("../../../migrations/postgres/0003_stopped.sql"),
    ),
    (
        4,
        "keys",
        include_str!("../../../migrations/postgres/0004_keys.sql"),
    ),
    (
        5,
        "blobs",
        include_str!("../../../migrations/postgres/0005_blobs.sql"),
    ),
];

/// Whom the advisory lock of the migrations is taken for: `logbook` in ASCII.
const MIGRATION_LOCK: i64 = 0x006c_6f67_626f_6f6b;

/// The newest version this build knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database to the newest version, or refuses one that is newer.
/// Returns the versions applied now.
pub(super) async fn migrate(client: &mut Client) -> Result<Vec<i64>, JournalError> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS logbook_migrations (
             version     int8 PRIMARY KEY,
             name        text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i64 = txn
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM logbook_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if current > known() {
        return Err(JournalError::SchemaTooNew {
            found: current,
            known: known(),
        });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        txn.batch_execute(sql).await?;
        txn.execute(
            "INSERT INTO logbook_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    txn.commit().await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "postgres journal schema migrated");
    }
    Ok(applied)
}
