//! Tenant options (`category`/`key` → value). Values of `credentials.*` keys arrive here already
//! sealed by the caller; the store only records whether a value is encrypted.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Page, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantOption {
    pub category: String,
    pub key: String,
    /// Clear text, or the sealed form when `encrypted`.
    pub value: String,
    pub encrypted: bool,
    pub editable: bool,
    /// Written by Berth from a manifest setting's `defaultValue` (at subscription or on a new
    /// version), not by the tenant: a new version may replace it, and an inheriting setting
    /// reads the owner's value instead.
    pub from_manifest: bool,
}

/// Most options one tenant may hold for writes to add more (through the API, a subscription's
/// settings, a new version's): every option is a row, an audit record and part of every
/// listing of its category.
pub const MAX_PER_TENANT: i64 = 10_000;
/// Most bytes (categories, keys and values) one tenant's options may take for writes to add
/// more: a category is read whole (`GET /tenant/options/{category}`, a service's settings),
/// and 10,000 values of 64 KiB would make that 640 MiB.
pub const MAX_BYTES_PER_TENANT: i64 = 16 << 20;

/// What `option` weighs against [`MAX_BYTES_PER_TENANT`].
fn option_bytes(category: &str, key: &str, value: &str) -> i64 {
    (category.len() + key.len() + value.len()) as i64
}

/// What one write leaves at its option (category, key), as the caps weigh it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After<'a> {
    /// The option holds this value.
    Value(&'a str),
    /// There is no option.
    Gone,
    /// Whatever the earlier writes left (only a flag changed).
    Unchanged,
}

/// A cap on a tenant's options that some writes would take it past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverCap {
    #[error(
        "a tenant may hold at most {MAX_PER_TENANT} options (its own and the settings of the applications it subscribes to), and this would make {0}"
    )]
    Count(i64),
    #[error(
        "a tenant's options may take at most {mib} MiB (categories, keys and values), and this would make {0} bytes",
        mib = MAX_BYTES_PER_TENANT >> 20
    )]
    Bytes(i64),
}

/// Which cap, if any, `writes` (applied in order, so the last one of a key decides what it
/// holds) would take `tenant`'s options past, read in the caller's transaction. Only growth is
/// refused: writes that leave the count or the bytes where they were, or lower, pass, even
/// for a tenant past a cap already.
pub fn over_cap<'a>(
    conn: &Connection,
    tenant: &str,
    writes: impl IntoIterator<Item = (&'a str, &'a str, After<'a>)>,
) -> Result<Option<OverCap>, StoreError> {
    let mut last: HashMap<(&str, &str), After<'_>> = HashMap::new();
    for (category, key, after) in writes {
        match after {
            After::Unchanged => {
                last.entry((category, key)).or_insert(After::Unchanged);
            }
            after => {
                last.insert((category, key), after);
            }
        }
    }
    let (mut added, mut grown) = (0_i64, 0_i64);
    for ((category, key), after) in last {
        let new = match after {
            After::Value(value) => Some(option_bytes(category, key, value)),
            After::Gone => None,
            After::Unchanged => continue,
        };
        let old: Option<i64> = conn
            .query_row(
                "SELECT length(CAST(category AS BLOB)) + length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))
                 FROM options WHERE tenant_id = ?1 AND category = ?2 AND key = ?3",
                params![tenant, category, key],
                |r| r.get(0),
            )
            .optional()?;
        added += i64::from(new.is_some()) - i64::from(old.is_some());
        grown += new.unwrap_or(0) - old.unwrap_or(0);
    }
    if added <= 0 && grown <= 0 {
        // The common case (a new version's defaults, an edit) reads no totals.
        return Ok(None);
    }
    let (held, bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(category AS BLOB)) + length(CAST(key AS BLOB))
             + length(CAST(value AS BLOB))), 0)
         FROM options WHERE tenant_id = ?1",
        [tenant],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(if added > 0 && held + added > MAX_PER_TENANT {
        Some(OverCap::Count(held + added))
    } else if grown > 0 && bytes + grown > MAX_BYTES_PER_TENANT {
        Some(OverCap::Bytes(bytes + grown))
    } else {
        None
    })
}

/// What [`put_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    All,
    /// One of them exists and is not editable: nothing was written.
    NotEditable,
}

/// Writes every option of `options` for `tenant` (the last of a key wins), or none: not if
/// one of them exists and is not editable, nor if they would take the tenant past a cap
/// ([`over_cap`]; Invalid). The caller gives the transaction.
pub fn put_all(
    conn: &Connection,
    tenant: &str,
    options: &[TenantOption],
) -> Result<Written, StoreError> {
    for option in options {
        if get(conn, tenant, &option.category, &option.key)?.is_some_and(|o| !o.editable) {
            return Ok(Written::NotEditable);
        }
    }
    let writes = options
        .iter()
        .map(|o| (o.category.as_str(), o.key.as_str(), After::Value(&o.value)));
    if let Some(over) = over_cap(conn, tenant, writes)? {
        return Err(StoreError::Invalid(format!(
            "These options cannot be written: {over}; delete or shorten some first"
        )));
    }
    for option in options {
        put(conn, tenant, option)?;
    }
    Ok(Written::All)
}

/// Inserts or replaces an option (an existing option keeps its `editable`).
pub fn put(conn: &Connection, tenant: &str, option: &TenantOption) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO options (tenant_id, category, key, value, encrypted, editable, from_manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant_id, category, key) DO UPDATE SET value = excluded.value, encrypted = excluded.encrypted, from_manifest = excluded.from_manifest",
        params![tenant, option.category, option.key, option.value, option.encrypted, option.editable, option.from_manifest],
    )?;
    Ok(())
}

pub fn get(
    conn: &Connection,
    tenant: &str,
    category: &str,
    key: &str,
) -> Result<Option<TenantOption>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT category, key, value, encrypted, editable, from_manifest FROM options WHERE tenant_id = ?1 AND category = ?2 AND key = ?3",
            params![tenant, category, key],
            row_to_option,
        )
        .optional()?)
}

fn row_to_option(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantOption> {
    Ok(TenantOption {
        category: r.get(0)?,
        key: r.get(1)?,
        value: r.get(2)?,
        encrypted: r.get(3)?,
        editable: r.get(4)?,
        from_manifest: r.get(5)?,
    })
}

pub fn list(
    conn: &Connection,
    tenant: &str,
    page: Page,
) -> Result<(Vec<TenantOption>, u64), StoreError> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM options WHERE tenant_id = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT category, key, value, encrypted, editable, from_manifest FROM options WHERE tenant_id = ?1 ORDER BY category, key LIMIT ?2 OFFSET ?3",
    )?;
    let options = stmt
        .query_map(
            params![tenant, page.limit_sql(), page.offset_sql()],
            row_to_option,
        )?
        .collect::<Result<_, _>>()?;
    Ok((options, total.try_into().unwrap_or(0)))
}

pub fn category(
    conn: &Connection,
    tenant: &str,
    category: &str,
) -> Result<Vec<TenantOption>, StoreError> {
    let mut stmt = conn.prepare("SELECT category, key, value, encrypted, editable, from_manifest FROM options WHERE tenant_id = ?1 AND category = ?2 ORDER BY key")?;
    let options = stmt
        .query_map(params![tenant, category], row_to_option)?
        .collect::<Result<_, _>>()?;
    Ok(options)
}

/// Inserts or replaces an option including its `editable` flag (for settings a new version
/// redefines).
pub fn replace(conn: &Connection, tenant: &str, option: &TenantOption) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO options (tenant_id, category, key, value, encrypted, editable, from_manifest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![tenant, option.category, option.key, option.value, option.encrypted, option.editable, option.from_manifest],
    )?;
    Ok(())
}

/// Returns false when the option did not exist.
pub fn delete(
    conn: &Connection,
    tenant: &str,
    category: &str,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM options WHERE tenant_id = ?1 AND category = ?2 AND key = ?3",
        params![tenant, category, key],
    )? > 0)
}

/// Deletes an option only if Berth wrote it from a manifest (not the tenant); returns whether
/// one was deleted.
pub fn delete_seeded(
    conn: &Connection,
    tenant: &str,
    category: &str,
    key: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM options WHERE tenant_id = ?1 AND category = ?2 AND key = ?3 AND from_manifest = 1",
        params![tenant, category, key],
    )? > 0)
}

/// One change to a tenant's option, as a flow decided it (the store applies it as told).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionChange {
    Delete {
        category: String,
        key: String,
    },
    /// Insert or replace, including `editable` and `from_manifest`.
    Replace(TenantOption),
    /// Keep the value, make it editable.
    MarkEditable {
        category: String,
        key: String,
    },
}

impl OptionChange {
    /// The change as the caps weigh it.
    pub fn weighed(&self) -> (&str, &str, After<'_>) {
        match self {
            OptionChange::Delete { category, key } => (category, key, After::Gone),
            OptionChange::Replace(o) => (&o.category, &o.key, After::Value(&o.value)),
            OptionChange::MarkEditable { category, key } => (category, key, After::Unchanged),
        }
    }
}

/// Applies `changes` to `tenant`'s options in order, in the caller's transaction.
pub fn apply(conn: &Connection, tenant: &str, changes: &[OptionChange]) -> Result<(), StoreError> {
    for change in changes {
        match change {
            OptionChange::Delete { category, key } => {
                delete(conn, tenant, category, key)?;
            }
            OptionChange::Replace(option) => replace(conn, tenant, option)?,
            OptionChange::MarkEditable { category, key } => {
                conn.execute(
                    "UPDATE options SET editable = 1 WHERE tenant_id = ?1 AND category = ?2 AND key = ?3",
                    params![tenant, category, key],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
