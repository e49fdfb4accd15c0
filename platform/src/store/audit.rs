//! The audit log: platform actions (uploads, subscriptions, scaling, restarts, OOM kills,
//! alarms, deletions) as durable records per tenant, read back newest first with filters.
//! Records outlive their application (no foreign key): the history of a deleted service stays.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{Page, StoreError, timestamp};

/// Severities, as Cumulocity's audit records and alarms name them.
pub const INFORMATION: &str = "INFORMATION";
pub const WARNING: &str = "WARNING";
pub const MAJOR: &str = "MAJOR";
pub const CRITICAL: &str = "CRITICAL";

/// A record to append.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub tenant: String,
    pub application: Option<(i64, String)>,
    /// e.g. `Application`, `Autoscaler`, `OomKill`, `Restart`, `c8y_Application_Down`.
    pub record_type: String,
    pub activity: String,
    pub text: String,
    pub severity: &'static str,
    /// Who did it: a user name, or `berth` for the platform itself.
    pub user: String,
    /// The inputs and results behind it (JSON object).
    pub details: Value,
    /// Another tenant's user did it (a subscriber in its provider's log): such records are
    /// bounded apart ([`MAX_OTHER_TENANTS_RECORDS`]), so another tenant acting in a loop
    /// cannot push the tenant's own history out of its log.
    pub by_other_tenant: bool,
}

/// A stored record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: i64,
    pub tenant: String,
    pub application: Option<(i64, String)>,
    pub record_type: String,
    pub activity: String,
    pub text: String,
    pub severity: String,
    pub user: String,
    pub time: String,
    pub details: Value,
}

/// The most records a tenant keeps; older ones are dropped as new ones arrive. Clients create
/// records (`POST /audit/auditRecords`) and every change writes one, so without a bound a
/// tenant could grow the shared database without limit.
pub const MAX_RECORDS_PER_TENANT: i64 = 50_000;
/// The most bytes of records a tenant keeps ([`record_bytes`]), older ones dropped likewise: a
/// record a client makes may carry about 36 KB, so the count alone would let one tenant keep
/// 1.8 GB. Platform records weigh 0.3–2 KB, so the count bounds a log of those first.
pub const MAX_BYTES_PER_TENANT: i64 = 64 << 20;
/// The most records a tenant keeps of what other tenants' users did (subscribing to its
/// applications, say), apart from its own.
pub const MAX_OTHER_TENANTS_RECORDS: i64 = 5_000;
/// What a record weighs besides its texts (its numbers, time and row).
const RECORD_OVERHEAD: i64 = 64;
/// Pruning runs on every this many appends of a tenant (a slack of at most this many records
/// over the bound), so an append does not pay for an index walk each time.
const PRUNE_EVERY: i64 = 64;

/// Filters of a listing (all optional).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// An application's name (as Cumulocity filters) or its id.
    pub application: Option<String>,
    /// The source object's id.
    pub source: Option<i64>,
    pub record_type: Option<String>,
    /// The user who acted (plain user name).
    pub user: Option<String>,
    /// Bounds on `time`, inclusive, RFC 3339 (compared as instants, whatever their offset).
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

/// Appends `record` as happening now.
pub fn append(conn: &mut Connection, record: &NewRecord) -> Result<i64, StoreError> {
    append_at(conn, record, &timestamp())
}

/// Appends `record` as happening at `time` (RFC 3339): records clients create carry their own.
pub fn append_at(conn: &mut Connection, record: &NewRecord, time: &str) -> Result<i64, StoreError> {
    append_bounded(
        conn,
        record,
        time,
        Bounds {
            records: MAX_RECORDS_PER_TENANT,
            others: MAX_OTHER_TENANTS_RECORDS,
            bytes: MAX_BYTES_PER_TENANT,
        },
    )
}

/// What a tenant's log may hold.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// Records of the tenant's own doing (and the platform's).
    records: i64,
    /// Records of other tenants' doing.
    others: i64,
    bytes: i64,
}

/// What `record` weighs against [`MAX_BYTES_PER_TENANT`] (the migration that added the column
/// computes the same for records kept before).
fn record_bytes(record: &NewRecord, details: &str) -> i64 {
    let texts = [
        record.record_type.as_str(),
        &record.activity,
        &record.text,
        &record.user,
        record.application.as_ref().map_or("", |(_, name)| name),
        details,
    ];
    RECORD_OVERHEAD + texts.iter().map(|t| t.len() as i64).sum::<i64>()
}

fn append_bounded(
    conn: &mut Connection,
    record: &NewRecord,
    time: &str,
    keep: Bounds,
) -> Result<i64, StoreError> {
    let (app_id, app_name) = record
        .application
        .clone()
        .map_or((None, None), |(id, name)| (Some(id), Some(name)));
    let details = record.details.to_string();
    let bytes = record_bytes(record, &details);
    conn.execute(
        "INSERT INTO audit_records (tenant_id, application_id, application_name, type, activity,
             text, severity, user_name, time, details, bytes, by_other_tenant)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            record.tenant,
            app_id,
            app_name,
            record.record_type,
            record.activity,
            record.text,
            record.severity,
            record.user,
            time,
            details,
            bytes,
            record.by_other_tenant,
        ],
    )?;
    let id = conn.last_insert_rowid();
    // Counted per tenant: a prune decided by the global id could be dodged by a tenant
    // appending only when the next id is not due (with another tenant taking those).
    let appended: i64 = conn.query_row(
        "INSERT INTO audit_appends (tenant_id, appended) VALUES (?1, 1)
         ON CONFLICT (tenant_id) DO UPDATE SET appended = appended + 1
         RETURNING appended",
        [&record.tenant],
        |r| r.get(0),
    )?;
    if appended % PRUNE_EVERY == 0 {
        // Of each origin, everything of this tenant older than its newest `keep` (index walk on
        // `audit_records_by_origin`).
        for (by_other_tenant, keep) in [(false, keep.records), (true, keep.others)] {
            conn.execute(
                "DELETE FROM audit_records WHERE tenant_id = ?1 AND by_other_tenant = ?2 AND id <= (
                     SELECT id FROM audit_records WHERE tenant_id = ?1 AND by_other_tenant = ?2
                     ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                params![record.tenant, by_other_tenant, keep],
            )?;
        }
        conn.execute(PRUNE_BYTES, params![record.tenant, keep.bytes])?;
    }
    Ok(id)
}

/// Everything of tenant `?1` older than the newest records that weigh `?2` bytes together
/// (summed newest first over `audit_records_bytes`, which holds every column it reads).
const PRUNE_BYTES: &str = "DELETE FROM audit_records WHERE tenant_id = ?1 AND id <= (
    SELECT id FROM (
        SELECT id, SUM(bytes) OVER (ORDER BY id DESC) AS newer
        FROM audit_records WHERE tenant_id = ?1)
    WHERE newer > ?2 ORDER BY id DESC LIMIT 1)";

/// Records of `tenant` matching `filter`, newest first, and the total count.
pub fn list(
    conn: &mut Connection,
    tenant: &str,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<Record>, u64), StoreError> {
    // julianday() reads RFC 3339 with any offset and any number of fractional digits, so
    // instants compare correctly where their texts would not.
    let condition = "tenant_id = ?1
        AND (?2 IS NULL OR application_name = ?2 OR CAST(application_id AS TEXT) = ?2)
        AND (?3 IS NULL OR application_id = ?3)
        AND (?4 IS NULL OR type = ?4)
        AND (?5 IS NULL OR user_name = ?5)
        AND (?6 IS NULL OR julianday(time) >= julianday(?6))
        AND (?7 IS NULL OR julianday(time) <= julianday(?7))";
    let args = params![
        tenant,
        filter.application,
        filter.source,
        filter.record_type,
        filter.user,
        filter.date_from,
        filter.date_to,
    ];
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM audit_records WHERE {condition}"),
        args,
        |row| row.get(0),
    )?;
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit_records WHERE {condition} ORDER BY id DESC LIMIT ?8 OFFSET ?9"
    ))?;
    let rows = statement.query_map(
        params![
            tenant,
            filter.application,
            filter.source,
            filter.record_type,
            filter.user,
            filter.date_from,
            filter.date_to,
            page.limit_sql(),
            page.offset_sql()
        ],
        record_row,
    )?;
    let mut records = Vec::new();
    for row in rows {
        records.push(with_details(row?)?);
    }
    Ok((records, u64::try_from(total).unwrap_or(0)))
}

/// The record `id` of `tenant`; another tenant's record is as missing as an unknown one.
pub fn get(conn: &mut Connection, tenant: &str, id: i64) -> Result<Record, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM audit_records WHERE id = ?1 AND tenant_id = ?2"),
            params![id, tenant],
            record_row,
        )
        .optional()?;
    match row {
        Some(row) => with_details(row),
        None => Err(StoreError::NotFound(format!(
            "Audit record {id} does not exist in tenant {tenant}."
        ))),
    }
}

const COLUMNS: &str = "id, tenant_id, application_id, application_name, type, activity, text, \
                       severity, user_name, time, details";

/// A row of [`COLUMNS`] as a record and its details text (parsed by [`with_details`], as a
/// row mapper can only fail with rusqlite's error).
fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, String)> {
    let app_id: Option<i64> = row.get(2)?;
    let app_name: Option<String> = row.get(3)?;
    Ok((
        Record {
            id: row.get(0)?,
            tenant: row.get(1)?,
            application: app_id.map(|id| (id, app_name.unwrap_or_default())),
            record_type: row.get(4)?,
            activity: row.get(5)?,
            text: row.get(6)?,
            severity: row.get(7)?,
            user: row.get(8)?,
            time: row.get(9)?,
            details: Value::Null,
        },
        row.get(10)?,
    ))
}

fn with_details((mut record, details): (Record, String)) -> Result<Record, StoreError> {
    record.details = serde_json::from_str(&details)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tenant_keeps_a_bounded_number_of_records_and_others_are_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let record = |tenant: &str| NewRecord {
            tenant: tenant.into(),
            application: None,
            record_type: "Option".into(),
            activity: "Option updated".into(),
            text: "x".into(),
            severity: INFORMATION,
            user: "jane".into(),
            details: json!({}),
            by_other_tenant: false,
        };
        let count = |conn: &mut Connection, tenant: &str| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM audit_records WHERE tenant_id = ?1",
                [tenant],
                |r| r.get(0),
            )
            .unwrap()
        };
        append(&mut conn, &record("quiet")).unwrap();
        let by_count = Bounds {
            records: 100,
            others: 100,
            bytes: MAX_BYTES_PER_TENANT,
        };
        let mut newest = 0;
        for i in 0..1000 {
            // Another tenant takes every id the global count would prune at: the noisy one
            // is pruned all the same.
            let due = conn
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'audit_records'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap_or(0)
                + 1;
            if due % PRUNE_EVERY == 0 {
                append_bounded(&mut conn, &record("helper"), &timestamp(), by_count).unwrap();
            }
            newest = append_bounded(&mut conn, &record("noisy"), &timestamp(), by_count).unwrap();
            assert!(count(&mut conn, "noisy") < 100 + PRUNE_EVERY, "after {i}");
        }
        let kept = count(&mut conn, "noisy");
        assert!((100..100 + PRUNE_EVERY).contains(&kept), "{kept}");
        assert_eq!(count(&mut conn, "quiet"), 1);
        // What goes is the oldest: the newest record is still there.
        assert_eq!(get(&mut conn, "noisy", newest).unwrap().id, newest);
    }

    #[test]
    fn another_tenant_acting_in_a_loop_does_not_push_the_tenants_own_records_out() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let record = |by_other_tenant: bool| NewRecord {
            tenant: "provider".into(),
            application: Some((1, "svc".into())),
            record_type: "Application".into(),
            activity: "Subscription".into(),
            text: "subscribed".into(),
            severity: INFORMATION,
            user: "admin".into(),
            details: json!({}),
            by_other_tenant,
        };
        let bounds = Bounds {
            records: 100,
            others: 10,
            bytes: MAX_BYTES_PER_TENANT,
        };
        let count = |conn: &mut Connection, by_other_tenant: bool| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM audit_records WHERE tenant_id = 'provider' AND by_other_tenant = ?1",
                [by_other_tenant],
                |r| r.get(0),
            )
            .unwrap()
        };
        let mut own = Vec::new();
        for _ in 0..50 {
            own.push(append_bounded(&mut conn, &record(false), &timestamp(), bounds).unwrap());
        }
        for _ in 0..1000 {
            append_bounded(&mut conn, &record(true), &timestamp(), bounds).unwrap();
        }
        assert_eq!(count(&mut conn, false), 50, "every own record is kept");
        assert!(count(&mut conn, true) < 10 + PRUNE_EVERY);
        assert_eq!(get(&mut conn, "provider", own[0]).unwrap().id, own[0]);
    }

    #[test]
    fn a_tenant_keeps_a_bounded_number_of_bytes_of_records() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        // As big as a client may make one: a 4096-character text, 16 KiB of changes.
        let big = |tenant: &str| NewRecord {
            tenant: tenant.into(),
            application: None,
            record_type: "Custom".into(),
            activity: "Client record".into(),
            text: "t".repeat(4096),
            severity: INFORMATION,
            user: "mallory".into(),
            details: json!({"changes": "c".repeat(16 * 1024)}),
            by_other_tenant: false,
        };
        let weight = record_bytes(&big("t1"), &big("t1").details.to_string());
        let bounds = Bounds {
            records: MAX_RECORDS_PER_TENANT,
            others: MAX_OTHER_TENANTS_RECORDS,
            bytes: 50 * weight,
        };
        let stored = |conn: &mut Connection, tenant: &str| -> (i64, i64) {
            conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM audit_records WHERE tenant_id = ?1",
                [tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        append_bounded(&mut conn, &big("quiet"), &timestamp(), bounds).unwrap();
        let mut newest = 0;
        for i in 0..400 {
            newest = append_bounded(&mut conn, &big("noisy"), &timestamp(), bounds).unwrap();
            let (_, bytes) = stored(&mut conn, "noisy");
            assert!(bytes <= (50 + PRUNE_EVERY) * weight, "{bytes} after {i}");
        }
        let (count, bytes) = stored(&mut conn, "noisy");
        assert!((50..50 + PRUNE_EVERY).contains(&count), "{count} kept");
        assert_eq!(bytes, count * weight);
        assert_eq!(stored(&mut conn, "quiet"), (1, weight));
        assert_eq!(get(&mut conn, "noisy", newest).unwrap().id, newest);
        // The sum reads the covering index, not the records.
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {PRUNE_BYTES}"))
            .unwrap()
            .query_map(params!["noisy", 1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("COVERING INDEX audit_records_bytes")),
            "{plan:?}"
        );
    }

    #[test]
    fn records_are_listed_newest_first_per_tenant_with_filters() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let record = |tenant: &str, app: Option<i64>, kind: &str| NewRecord {
            tenant: tenant.into(),
            application: app.map(|id| (id, format!("app{id}"))),
            record_type: kind.into(),
            activity: "did".into(),
            text: "something".into(),
            severity: INFORMATION,
            user: if kind == "OomKill" { "berth" } else { "jane" }.into(),
            details: json!({"n": 1}),
            by_other_tenant: false,
        };
        for (tenant, app, kind) in [
            ("t1", Some(1), "Autoscaler"),
            ("t1", Some(1), "OomKill"),
            ("t1", Some(2), "Autoscaler"),
            ("t2", Some(3), "Autoscaler"),
            ("t1", None, "Application"),
        ] {
            append(&mut conn, &record(tenant, app, kind)).unwrap();
        }
        let mut ids = |filter: Filter, tenant: &str| {
            let (records, total) = list(&mut conn, tenant, &filter, Page::ALL).unwrap();
            assert_eq!(records.len() as u64, total);
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        };
        let cases = [
            (Filter::default(), "t1", vec![5, 3, 2, 1]),
            (
                Filter {
                    application: Some("app1".into()),
                    ..Filter::default()
                },
                "t1",
                vec![2, 1],
            ),
            (
                Filter {
                    application: Some("1".into()),
                    ..Filter::default()
                },
                "t1",
                vec![2, 1],
            ),
            (
                Filter {
                    source: Some(2),
                    ..Filter::default()
                },
                "t1",
                vec![3],
            ),
            (
                Filter {
                    record_type: Some("Autoscaler".into()),
                    ..Filter::default()
                },
                "t1",
                vec![3, 1],
            ),
            (
                Filter {
                    user: Some("berth".into()),
                    ..Filter::default()
                },
                "t1",
                vec![2],
            ),
            (
                Filter {
                    application: Some("app3".into()),
                    ..Filter::default()
                },
                "t1",
                vec![],
            ),
            (Filter::default(), "t2", vec![4]),
        ];
        for (filter, tenant, expected) in cases {
            assert_eq!(ids(filter.clone(), tenant), expected, "{filter:?} {tenant}");
        }
        let (page, total) = list(
            &mut conn,
            "t1",
            &Filter::default(),
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .unwrap();
        assert_eq!(
            (page.iter().map(|r| r.id).collect::<Vec<_>>(), total),
            (vec![3, 2], 4)
        );
        assert_eq!(page[0].details, json!({"n": 1}));
        // One record by id, only in its own tenant.
        assert_eq!(get(&mut conn, "t1", 2).unwrap().record_type, "OomKill");
        for (tenant, id) in [("t2", 2), ("t1", 4), ("t1", 99)] {
            assert!(
                matches!(get(&mut conn, tenant, id), Err(StoreError::NotFound(_))),
                "{tenant} {id}"
            );
        }
    }

    #[test]
    fn dates_bound_the_listing_as_instants_whatever_their_offset() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        for time in [
            "2026-01-01T10:00:00Z",
            "2026-01-02T10:00:00.5Z",
            "2026-01-03T10:00:00.123456789Z",
        ] {
            let record = NewRecord {
                tenant: "t1".into(),
                application: None,
                record_type: "User".into(),
                activity: "User created".into(),
                text: "x".into(),
                severity: INFORMATION,
                user: "jane".into(),
                details: json!({}),
                by_other_tenant: false,
            };
            append_at(&mut conn, &record, time).unwrap();
        }
        let cases = [
            (Some("2026-01-02T00:00:00Z"), None, vec![3, 2]),
            (None, Some("2026-01-02T10:00:00.5Z"), vec![2, 1]),
            // 11:00 at +01:00 is 10:00 UTC: the first record is inside.
            (
                Some("2026-01-01T11:00:00+01:00"),
                Some("2026-01-02T00:00:00Z"),
                vec![1],
            ),
            (Some("2026-01-04T00:00:00Z"), None, vec![]),
        ];
        for (from, to, expected) in cases {
            let filter = Filter {
                date_from: from.map(str::to_owned),
                date_to: to.map(str::to_owned),
                ..Filter::default()
            };
            let (records, _) = list(&mut conn, "t1", &filter, Page::ALL).unwrap();
            let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
            assert_eq!(ids, expected, "{from:?} {to:?}");
        }
    }

    #[test]
    fn audit_records_kept_before_weigh_what_new_ones_do() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply_before(&mut conn, "audit_records ADD COLUMN bytes")
            .unwrap();
        let record = NewRecord {
            tenant: "t1".into(),
            application: Some((7, "hélло".into())),
            record_type: "Application".into(),
            activity: "Package uploaded".into(),
            text: "Version 1 of hélло uploaded".into(),
            severity: INFORMATION,
            user: "jane".into(),
            details: json!({"n": "ü"}),
            by_other_tenant: false,
        };
        conn.execute(
            "INSERT INTO audit_records (tenant_id, application_id, application_name, type, activity, text, severity, user_name, time, details)
             VALUES ('t1', 7, ?1, ?2, ?3, ?4, 'INFORMATION', ?5, 'now', ?6)",
            rusqlite::params![
                "hélло",
                record.record_type,
                record.activity,
                record.text,
                record.user,
                record.details.to_string()
            ],
        )
        .unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let migrated: i64 = conn
            .query_row("SELECT bytes FROM audit_records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(migrated, record_bytes(&record, &record.details.to_string()));
    }
}
