//! Tenant options (`category`/`key` → value). Values of `credentials.*` keys arrive here already
//! sealed by the caller; the store only records whether a value is encrypted.

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

/// Most options one tenant may hold for writes through the API to add more: every option is
/// a row, an audit record and part of every listing of its category.
pub const MAX_PER_TENANT: i64 = 10_000;
/// Most bytes (categories, keys and values) one tenant's options may take for writes through
/// the API to add more: a category is read whole (`GET /tenant/options/{category}`, a
/// service's settings), and 10,000 values of 64 KiB would make that 640 MiB.
pub const MAX_BYTES_PER_TENANT: i64 = 16 << 20;

/// What `option` weighs against [`MAX_BYTES_PER_TENANT`].
fn option_bytes(category: &str, key: &str, value: &str) -> i64 {
    (category.len() + key.len() + value.len()) as i64
}

/// What [`put_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    All,
    /// One of them exists and is not editable: nothing was written.
    NotEditable,
}

/// Writes every option of `options` for `tenant`, or none: not if one of them exists and is
/// not editable, nor if the new ones would take the tenant past [`MAX_PER_TENANT`] or
/// [`MAX_BYTES_PER_TENANT`] (Invalid; writes that do not grow the tenant's options pass).
/// The caller gives the transaction.
pub fn put_all(
    conn: &Connection,
    tenant: &str,
    options: &[TenantOption],
) -> Result<Written, StoreError> {
    let (mut held, mut bytes): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(CAST(category AS BLOB)) + length(CAST(key AS BLOB))
             + length(CAST(value AS BLOB))), 0)
         FROM options WHERE tenant_id = ?1",
        [tenant],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let before = bytes;
    for option in options {
        bytes += option_bytes(&option.category, &option.key, &option.value);
        match get(conn, tenant, &option.category, &option.key)? {
            Some(existing) if !existing.editable => return Ok(Written::NotEditable),
            Some(existing) => {
                bytes -= option_bytes(&existing.category, &existing.key, &existing.value)
            }
            None => held += 1,
        }
    }
    if held > MAX_PER_TENANT {
        return Err(StoreError::Invalid(format!(
            "A tenant may hold at most {MAX_PER_TENANT} options; delete some before adding more"
        )));
    }
    if bytes > MAX_BYTES_PER_TENANT && bytes > before {
        return Err(StoreError::Invalid(format!(
            "A tenant's options may take at most {} MiB (categories, keys and values) and these would take {bytes} bytes; delete or shorten some first",
            MAX_BYTES_PER_TENANT >> 20
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
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_a_bounded_number_of_options_and_writes_are_all_or_nothing() {
        let mut conn = super::super::test_conn(&["t", "u"]);
        let option = |key: String, editable: bool| TenantOption {
            category: "c".into(),
            key,
            value: "v".into(),
            encrypted: false,
            editable,
            from_manifest: false,
        };
        let count = |conn: &Connection, tenant: &str| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM options WHERE tenant_id = ?1",
                [tenant],
                |r| r.get(0),
            )
            .unwrap()
        };
        let tx = conn.transaction().unwrap();
        let mut all: Vec<TenantOption> = (0..MAX_PER_TENANT - 1)
            .map(|i| option(format!("k{i}"), true))
            .collect();
        all.push(option("fixed".into(), false));
        assert_eq!(put_all(&tx, "t", &all).unwrap(), Written::All);
        tx.commit().unwrap();
        assert_eq!(count(&conn, "t"), MAX_PER_TENANT);
        // One more new key is refused, with the existing ones it came with.
        let refused = put_all(
            &conn,
            "t",
            &[option("k0".into(), true), option("new".into(), true)],
        );
        assert!(matches!(refused, Err(StoreError::Invalid(m)) if m.contains("at most 10000")));
        assert_eq!(count(&conn, "t"), MAX_PER_TENANT);
        // Existing keys may still change; a non-editable one stops the whole write.
        assert_eq!(
            put_all(&conn, "t", &[option("k1".into(), true)]).unwrap(),
            Written::All
        );
        let mut changed = option("k2".into(), true);
        changed.value = "changed".into();
        assert_eq!(
            put_all(&conn, "t", &[changed, option("fixed".into(), true)]).unwrap(),
            Written::NotEditable
        );
        assert_eq!(get(&conn, "t", "c", "k2").unwrap().unwrap().value, "v");
        // Another tenant has its own count.
        assert_eq!(
            put_all(&conn, "u", &[option("new".into(), true)]).unwrap(),
            Written::All
        );
    }

    #[test]
    fn a_tenants_options_take_a_bounded_number_of_bytes() {
        let conn = super::super::test_conn(&["t", "u"]);
        let option = |key: &str, len: usize| TenantOption {
            category: "c".into(),
            key: key.into(),
            value: "v".repeat(len),
            encrypted: false,
            editable: true,
            from_manifest: false,
        };
        let value = 64 * 1024;
        // Each "c" + "k000".. + the value, then a pad up to the bound exactly ("c" + "pad").
        let fit = (MAX_BYTES_PER_TENANT as usize) / (1 + 4 + value);
        let mut all: Vec<TenantOption> = (0..fit)
            .map(|i| option(&format!("k{i:03}"), value))
            .collect();
        let room = MAX_BYTES_PER_TENANT as usize - fit * (1 + 4 + value);
        all.push(option("pad", room - 4));
        assert_eq!(put_all(&conn, "t", &all).unwrap(), Written::All);
        // (write, accepted)
        let cases = [
            (option("new", value), false),
            // At the bound, a write that does not grow it still passes.
            (option("k000", value), true),
            (option("k001", 10), true),
            (option("k001", value), true),
            (option("k001", value + 1), false),
        ];
        for (write, accepted) in cases {
            let what = format!("{} of {} bytes", write.key, write.value.len());
            let done = put_all(&conn, "t", &[write]);
            match done {
                Ok(Written::All) => assert!(accepted, "{what} accepted"),
                Err(StoreError::Invalid(m)) => {
                    assert!(!accepted && m.contains("16 MiB"), "{what}: {m}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // Another tenant is not affected.
        assert_eq!(
            put_all(&conn, "u", &[option("new", value)]).unwrap(),
            Written::All
        );
    }

    #[test]
    fn changes_apply_in_order_and_only_to_their_tenant() {
        let conn = super::super::test_conn(&["t", "u"]);
        let option = |key: &str, value: &str, editable: bool| TenantOption {
            category: "cat".into(),
            key: key.into(),
            value: value.into(),
            encrypted: false,
            editable,
            from_manifest: false,
        };
        for tenant in ["t", "u"] {
            replace(&conn, tenant, &option("gone", "x", true)).unwrap();
            replace(&conn, tenant, &option("locked", "mine", false)).unwrap();
        }
        let mut seeded = option("new", "d", false);
        seeded.from_manifest = true;
        apply(
            &conn,
            "t",
            &[
                OptionChange::Delete {
                    category: "cat".into(),
                    key: "gone".into(),
                },
                OptionChange::MarkEditable {
                    category: "cat".into(),
                    key: "locked".into(),
                },
                OptionChange::Replace(seeded.clone()),
            ],
        )
        .unwrap();
        assert_eq!(get(&conn, "t", "cat", "gone").unwrap(), None);
        assert_eq!(
            get(&conn, "t", "cat", "locked").unwrap(),
            Some(option("locked", "mine", true))
        );
        assert_eq!(get(&conn, "t", "cat", "new").unwrap(), Some(seeded));
        assert_eq!(category(&conn, "u", "cat").unwrap().len(), 2);
        assert!(!get(&conn, "u", "cat", "locked").unwrap().unwrap().editable);
    }
}
