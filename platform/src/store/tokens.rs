//! Logged-out login tokens (by `jti`), kept until they would have expired anyway, and the
//! logout of every user of a tenant (by moving their credential generation on).

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Most logged-out tokens kept for one user. Each logout of a live token is a row until the
/// token would have expired (14 days by default), and a client holding a user's credentials can
/// log in and out in a loop; past this many, the user's credential generation moves on instead
/// (every token of theirs ends, as a logout of all their sessions) and their rows go.
pub const MAX_REVOKED_PER_USER: i64 = 1_000;

/// Records a logged-out token of `tenant`'s `user` until it would have expired anyway.
pub fn revoke_token(
    conn: &mut Connection,
    tenant: &str,
    user: &str,
    jti: &str,
    expires_at: u64,
) -> Result<(), StoreError> {
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM revoked_tokens WHERE expires_at < ?1", [now])?;
    tx.execute(
        "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at, tenant_id, user_name) VALUES (?1, ?2, ?3, ?4)",
        params![jti, i64::try_from(expires_at).unwrap_or(i64::MAX), tenant, user],
    )?;
    let kept: i64 = tx.query_row(
        "SELECT COUNT(*) FROM revoked_tokens WHERE tenant_id = ?1 AND user_name = ?2",
        params![tenant, user],
        |r| r.get(0),
    )?;
    if kept > MAX_REVOKED_PER_USER {
        tx.execute("UPDATE credential_generation SET value = value + 1", [])?;
        tx.execute(
            "UPDATE users SET credential_generation = (SELECT value FROM credential_generation)
             WHERE tenant_id = ?1 AND user_name = ?2",
            params![tenant, user],
        )?;
        tx.execute(
            "DELETE FROM revoked_tokens WHERE tenant_id = ?1 AND user_name = ?2",
            params![tenant, user],
        )?;
    }
    tx.commit()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_users_logouts_are_bounded_by_ending_all_their_tokens() {
        let mut conn = super::super::test_conn(&["t"]);
        conn.execute_batch(
            "INSERT INTO users (tenant_id, user_name, kind, password_hash, enabled, last_password_change, creation_time)
             VALUES ('t', 'loop', 'USER', 'x', 1, 'now', 'now'), ('t', 'other', 'USER', 'x', 1, 'now', 'now');",
        )
        .unwrap();
        let generation = |conn: &Connection, user: &str| -> i64 {
            conn.query_row(
                "SELECT credential_generation FROM users WHERE tenant_id = 't' AND user_name = ?1",
                [user],
                |r| r.get(0),
            )
            .unwrap()
        };
        let later = now_secs() + 3600;
        revoke_token(&mut conn, "t", "other", "o-1", later).unwrap();
        let before = generation(&conn, "loop");
        for i in 0..MAX_REVOKED_PER_USER {
            revoke_token(&mut conn, "t", "loop", &format!("j-{i}"), later).unwrap();
        }
        assert!(token_revoked(&conn, "j-0").unwrap());
        assert_eq!(generation(&conn, "loop"), before);
        // One more: every token of the user ends with the generation, their rows go.
        revoke_token(&mut conn, "t", "loop", "j-last", later).unwrap();
        assert!(generation(&conn, "loop") > before);
        assert!(!token_revoked(&conn, "j-0").unwrap());
        // Another user's logouts are untouched.
        assert!(token_revoked(&conn, "o-1").unwrap());
    }
}
