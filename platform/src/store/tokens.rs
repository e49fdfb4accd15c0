//! Logged-out login tokens (by `jti`), kept until they would have expired anyway, and the
//! logout of every user of a tenant (by moving their credential generation on).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Records a logged-out token until it would have expired anyway.
pub fn revoke_token(conn: &Connection, jti: &str, expires_at: u64) -> Result<(), StoreError> {
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])?;
    conn.execute(
        "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)",
        params![jti, i64::try_from(expires_at).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

pub fn token_revoked(conn: &Connection, jti: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM revoked_tokens WHERE jti = ?1", [jti], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// Ends every login token of the tenant's users: their credential generation moves on (one
/// new value from the global counter, so it never repeats an older one).
pub fn revoke_tenant_tokens(conn: &mut Connection, tenant: &str) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    tx.execute("UPDATE credential_generation SET value = value + 1", [])?;
    let changed = tx.execute(
        "UPDATE users SET credential_generation = (SELECT value FROM credential_generation) WHERE tenant_id = ?1",
        [tenant],
    )?;
    tx.commit()?;
    Ok(changed)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
