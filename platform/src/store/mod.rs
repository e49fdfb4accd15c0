//! Persistent state in one SQLite database (WAL): tenants, users and groups, applications and
//! their versions, tenant options. Every call runs on a blocking thread through [`Store::run`].

pub mod applications;
pub mod artifacts;
pub mod audit;
pub mod autoscaler;
pub mod desired;
pub mod groups;
pub mod intents;
pub mod manifest_sizes;
mod migrations;
pub mod names;
pub mod options;
pub mod settings;
pub mod subscriptions;
pub mod tenants;
pub mod tokens;
pub mod users;
pub mod versions;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::sync::MutexExt;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "berth.sqlite3";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("cannot seal a setting: {0}")]
    Seal(String),
}

/// A window of a collection: rows `offset..offset + limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

impl Page {
    /// Everything (for internal lookups).
    pub const ALL: Page = Page {
        offset: 0,
        limit: i64::MAX as u64,
    };

    fn limit_sql(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }

    fn offset_sql(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }
}

/// The database handle. One connection behind a mutex: SQLite serialises writers anyway, and
/// the API's reads are short.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::apply(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-applied transaction (SQLite
            // rolls it back when the Transaction drops), so a poisoned lock is still usable.
            let mut guard = conn.locked();
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` synchronously (startup only, before the server accepts requests).
    pub fn run_now<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.locked();
        f(&mut guard)
    }
}

/// Current time as RFC 3339, the format of every stored timestamp.
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Maps a UNIQUE constraint violation to [`StoreError::Conflict`] with `message`.
fn conflict_on_unique(err: rusqlite::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(message())
        }
        _ => StoreError::Sqlite(err),
    }
}

fn json_text(value: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(value.clone()).to_string()
}

fn json_map(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    match serde_json::from_str(text)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Ok(serde_json::Map::new()),
    }
}

/// A migrated in-memory database with foreign keys on and the tenants `tenants` (ids; their
/// domain `<id>.example`): the start of the store's unit tests.
#[cfg(test)]
pub(crate) fn test_conn(tenants: &[&str]) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
    conn.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    migrations::apply(&mut conn).expect("migrations");
    for id in tenants {
        conn.execute(
            "INSERT INTO tenants (id, domain, company, creation_time) VALUES (?1, ?1 || '.example', ?1, 'now')",
            [id],
        )
        .expect("tenant");
    }
    conn
}
