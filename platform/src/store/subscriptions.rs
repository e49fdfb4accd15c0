//! Subscriptions of tenants to applications: the service user each one creates in the
//! subscribing tenant, the settings it seeds there (rules in [`super::settings`]), and the
//! queries the proxy (`/service/<name>` resolution) builds on; the supervisor's desired state is
//! in [`super::desired`].

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::options::{self, After};
use super::users::{NewUser, UserKind};
use super::{Page, StoreError, conflict_on_unique, timestamp};

// Split off by job; re-exported so callers keep one path for a subscription's settings.
pub use super::settings::{
    CategoryClaim, SEALED_PREFIX, Setting, category_claim, manifest_settings,
};

/// One subscription with its service user's credentials (password still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub application_id: i64,
    pub tenant: String,
    pub service_user: String,
    pub service_password_sealed: String,
}

/// What a subscription creates in the subscribing tenant.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub application_id: i64,
    pub tenant: String,
    /// The service user (its `bootstrap` flag is ignored: it is stored as a service user).
    pub service_user: NewUser,
    /// False for applications without containers (hosted/external): no service user is made.
    pub create_service_user: bool,
    pub service_password_sealed: String,
    /// What the subscriber was checked against (its `requiredRoles` are granted to the
    /// service user).
    pub agreed: Agreed,
    /// The manifest's `settings` as options of the settings category (values sealed already
    /// for `credentials.` keys). Existing options of the same key are kept (the subscriber's
    /// own values win).
    pub settings: Vec<Setting>,
}

/// What a subscription was checked against: the roles its service user gets, the manifest
/// whose settings it seeds, who it is offered to. The check runs before the upload lock is
/// taken, so an upload or update may change them in between; the subscription is recorded
/// only while the application still is what was agreed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreed {
    pub required_roles: Vec<String>,
    pub manifest: Option<serde_json::Value>,
    pub availability: String,
}

impl Agreed {
    /// What application `id` asks now, and its name; NotFound if it is gone.
    fn now(conn: &Connection, id: i64) -> Result<(String, Agreed), StoreError> {
        let row: Option<(String, String, Option<String>, String)> = conn
            .query_row(
                "SELECT name, required_roles, manifest, availability FROM applications WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let (name, roles, manifest, availability) = row.ok_or_else(|| {
            StoreError::NotFound(format!("Could not find application by ID {id}"))
        })?;
        let agreed = Agreed {
            required_roles: serde_json::from_str(&roles)?,
            manifest: manifest.map(|m| serde_json::from_str(&m)).transpose()?,
            availability,
        };
        Ok((name, agreed))
    }
}

/// Whether an application of `owner` with `availability` is offered to `tenant` (whose parent
/// is `parent`): its owner always; MARKET to every tenant; SHARED to the owner's direct
/// subtenants only (a sub-subtenant is its own parent's customer, as in Cumulocity, where a
/// tenant offers only what it owns to the subtenants it created); PRIVATE to nobody else.
pub fn offered_to(availability: &str, owner: &str, tenant: &str, parent: Option<&str>) -> bool {
    tenant == owner
        || match availability {
            "MARKET" => true,
            "SHARED" => parent == Some(owner),
            _ => false,
        }
}

/// The applications offered to `tenant` (parent `parent`) by [`offered_to`], with an optional
/// name and type filter, by id. Selected in SQL through indexes (owner, availability): a
/// listing by any tenant must not read every tenant's applications.
pub fn offered(
    conn: &Connection,
    tenant: &str,
    parent: Option<&str>,
    name: Option<&str>,
    app_type: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(OFFERED)?;
    let ids = stmt
        .query_map(params![tenant, parent, name, app_type], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// [`offered_to`] in SQL.
pub(super) const OFFERED: &str = "SELECT id FROM applications
     WHERE (owner_tenant = ?1 OR availability = 'MARKET'
            OR (availability = 'SHARED' AND owner_tenant = ?2))
       AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR type = ?4)
     ORDER BY id";

/// The applications `tenant` is subscribed to, with an optional name and type filter, by id.
pub fn subscribed(
    conn: &Connection,
    tenant: &str,
    name: Option<&str>,
    app_type: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.id FROM subscriptions s JOIN applications a ON a.id = s.application_id
         WHERE s.tenant_id = ?1 AND (?2 IS NULL OR a.name = ?2) AND (?3 IS NULL OR a.type = ?3)
         ORDER BY a.id",
    )?;
    let ids = stmt
        .query_map(params![tenant, name, app_type], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Creates the subscription, its service user with the required roles and the settings
/// options, in one transaction. Conflict when the tenant is already subscribed, or when the
/// application is no longer what the subscriber agreed to; Invalid, writing nothing, when the
/// settings would take the tenant past an options cap.
pub fn subscribe(conn: &mut Connection, new: &NewSubscription) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let (name, now) = Agreed::now(&tx, new.application_id)?;
    if now != new.agreed {
        return Err(StoreError::Conflict(format!(
            "Application {name} changed while tenant {} subscribed to it (its required roles, manifest or availability); subscribe again to agree to what it asks now",
            new.tenant
        )));
    }
    tx.execute(
        "INSERT INTO subscriptions (application_id, tenant_id, service_user, service_password_sealed, creation_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            new.application_id,
            new.tenant,
            new.service_user.user_name,
            new.service_password_sealed,
            timestamp()
        ],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "Tenant {} is already subscribed to application {}",
                new.tenant, new.application_id
            )
        })
    })?;
    let now = timestamp();
    if !new.create_service_user {
        tx.commit()?;
        return Ok(());
    }
    tx.execute(
        "INSERT INTO users (tenant_id, user_name, kind, password_hash, enabled, last_password_change, creation_time) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
        params![
            new.tenant,
            new.service_user.user_name,
            UserKind::Service.as_str(),
            new.service_user.password_hash,
            now
        ],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "User {} already exists in tenant {}; rename or delete it to subscribe",
                new.service_user.user_name, new.tenant
            )
        })
    })?;
    for role in &new.agreed.required_roles {
        tx.execute(
            "INSERT OR IGNORE INTO user_roles (tenant_id, user_name, role) VALUES (?1, ?2, ?3)",
            params![new.tenant, new.service_user.user_name, role],
        )?;
    }
    // The subscriber's own values win, and a key the manifest lists twice is written once, by
    // its first setting.
    let mut written = HashSet::new();
    let mut seeded = Vec::new();
    for setting in &new.settings {
        let option = &setting.option;
        if written.insert((option.category.as_str(), option.key.as_str()))
            && options::get(&tx, &new.tenant, &option.category, &option.key)?.is_none()
        {
            seeded.push(option);
        }
    }
    let weighed = seeded
        .iter()
        .map(|o| (o.category.as_str(), o.key.as_str(), After::Value(&o.value)));
    if let Some(over) = options::over_cap(&tx, &new.tenant, weighed)? {
        return Err(StoreError::Invalid(format!(
            "Tenant {} cannot take this application's settings: {over}; delete some of the tenant's options first",
            new.tenant
        )));
    }
    for option in seeded {
        options::put(&tx, &new.tenant, option)?;
    }
    tx.commit()?;
    Ok(())
}

/// Gives the service user of every subscription to `application_id` exactly the
/// application's `requiredRoles` as they are now (a microservice's: no other type has one).
/// Every change of them (an upload, an activation, a rollback, an update) calls it in its own
/// transaction, so a service that needs a new role has it once its new version is active, and
/// one that dropped a role loses it.
pub fn sync_service_roles(conn: &Connection, application_id: i64) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM user_roles WHERE (tenant_id, user_name) IN
             (SELECT s.tenant_id, s.service_user FROM subscriptions s JOIN users u
                  ON u.tenant_id = s.tenant_id AND u.user_name = s.service_user AND u.kind = ?2
                  JOIN applications a ON a.id = s.application_id AND a.type = 'MICROSERVICE'
              WHERE s.application_id = ?1)",
        params![application_id, UserKind::Service.as_str()],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO user_roles (tenant_id, user_name, role)
             SELECT s.tenant_id, s.service_user, r.value
             FROM subscriptions s
             JOIN users u ON u.tenant_id = s.tenant_id AND u.user_name = s.service_user AND u.kind = ?2
             JOIN applications a ON a.id = s.application_id, json_each(a.required_roles) r
             WHERE s.application_id = ?1 AND a.type = 'MICROSERVICE'",
        params![application_id, UserKind::Service.as_str()],
    )?;
    Ok(())
}

/// The service users (tenant, user name) of the subscriptions to `application_id`.
pub fn service_users(
    conn: &Connection,
    application_id: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT tenant_id, service_user FROM subscriptions WHERE application_id = ?1 ORDER BY tenant_id",
    )?;
    let rows = stmt.query_map([application_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes the subscription, its service user and the settings options Berth wrote in
/// `category` with the given keys (values the tenant wrote stay: they are its own). Returns the removed subscription, NotFound when there was none.
pub fn unsubscribe(
    conn: &mut Connection,
    application_id: i64,
    tenant: &str,
    settings_category: &str,
    setting_keys: &[String],
) -> Result<Subscription, StoreError> {
    let tx = conn.transaction()?;
    let found = get(&tx, application_id, tenant)?.ok_or_else(|| {
        StoreError::NotFound(format!(
            "Tenant {tenant} is not subscribed to application {application_id}"
        ))
    })?;
    tx.execute(
        "DELETE FROM subscriptions WHERE application_id = ?1 AND tenant_id = ?2",
        params![application_id, tenant],
    )?;
    tx.execute(
        "DELETE FROM users WHERE tenant_id = ?1 AND user_name = ?2 AND kind = ?3",
        params![tenant, found.service_user, UserKind::Service.as_str()],
    )?;
    for key in setting_keys {
        options::delete_seeded(&tx, tenant, settings_category, key)?;
    }
    tx.commit()?;
    Ok(found)
}

pub fn get(
    conn: &Connection,
    application_id: i64,
    tenant: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE application_id = ?1 AND tenant_id = ?2",
            params![application_id, tenant],
            row_to_subscription,
        )
        .optional()?)
}

fn row_to_subscription(r: &rusqlite::Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        application_id: r.get(0)?,
        tenant: r.get(1)?,
        service_user: r.get(2)?,
        service_password_sealed: r.get(3)?,
    })
}

/// Every subscription of an application, by tenant id.
pub fn of_application(
    conn: &Connection,
    application_id: i64,
) -> Result<Vec<Subscription>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE application_id = ?1 ORDER BY tenant_id",
    )?;
    let rows = stmt.query_map([application_id], row_to_subscription)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The application ids `tenant` is subscribed to (a window of them) and their total.
pub fn of_tenant(
    conn: &Connection,
    tenant: &str,
    page: Page,
) -> Result<(Vec<i64>, u64), StoreError> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM subscriptions WHERE tenant_id = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT application_id FROM subscriptions WHERE tenant_id = ?1 ORDER BY application_id LIMIT ?2 OFFSET ?3",
    )?;
    let ids = stmt
        .query_map(params![tenant, page.limit_sql(), page.offset_sql()], |r| {
            r.get(0)
        })?
        .collect::<Result<_, _>>()?;
    Ok((ids, total.try_into().unwrap_or(0)))
}

/// The subscription whose service user is `user` of `tenant`, if any.
pub fn by_service_user(
    conn: &Connection,
    tenant: &str,
    user: &str,
) -> Result<Option<Subscription>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT application_id, tenant_id, service_user, service_password_sealed FROM subscriptions WHERE tenant_id = ?1 AND service_user = ?2",
            params![tenant, user],
            row_to_subscription,
        )
        .optional()?)
}

/// Roles that subscriptions make assignable in `tenant` (the `roles` of subscribed applications).
pub fn assignable_roles(conn: &Connection, tenant: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.roles FROM applications a JOIN subscriptions s ON s.application_id = a.id WHERE s.tenant_id = ?1",
    )?;
    let mut roles = Vec::new();
    for text in stmt.query_map([tenant], |r| r.get::<_, String>(0))? {
        let list: Vec<String> = serde_json::from_str(&text?)?;
        roles.extend(list);
    }
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// Where a `/service/<segment>/…` request goes, as the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    pub application_id: i64,
    pub name: String,
    pub owner: String,
    /// PER_TENANT: each subscribed tenant has its own deployment.
    pub per_tenant: bool,
    /// Whether the caller's tenant is subscribed (otherwise the proxy must refuse).
    pub caller_subscribed: bool,
    /// Other microservices the segment names just as well for this caller (as `owner/name`):
    /// the proxy refuses rather than pick one.
    pub rivals: Vec<String>,
}

/// Resolves `/service/<segment>` for a caller of `caller_tenant`: microservices whose
/// `contextPath` or name equals `segment`, preferring one the caller's tenant is subscribed
/// to, then one it owns. None when no microservice has that name or context path.
///
/// Names are unique per owner only and context paths not at all, so several microservices
/// may match equally (both subscribed, say): those are the target's `rivals`, never a quiet
/// pick, or the owner of one could take another's calls, and the credentials they carry, by
/// giving its microservice the other's name as context path.
pub fn resolve_service(
    conn: &Connection,
    segment: &str,
    caller_tenant: &str,
) -> Result<Option<ServiceTarget>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT a.id, a.name, a.owner_tenant, COALESCE(json_extract(a.manifest, '$.isolation'), 'MULTI_TENANT'),
                EXISTS (SELECT 1 FROM subscriptions s WHERE s.application_id = a.id AND s.tenant_id = ?2) AS subscribed,
                a.owner_tenant = ?2 AS owned
         FROM applications a
         WHERE a.type = 'MICROSERVICE' AND (a.context_path = ?1 OR a.name = ?1)
         ORDER BY subscribed DESC, owned DESC, a.context_path = ?1 DESC, a.id
         LIMIT 4",
    )?;
    let rows = stmt
        .query_map(params![segment, caller_tenant], |r| {
            let target = ServiceTarget {
                application_id: r.get(0)?,
                name: r.get(1)?,
                owner: r.get(2)?,
                per_tenant: r.get::<_, String>(3)? == "PER_TENANT",
                caller_subscribed: r.get(4)?,
                rivals: Vec::new(),
            };
            Ok((target, r.get::<_, bool>(5)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = rows.into_iter();
    let Some((mut target, owned)) = rows.next() else {
        return Ok(None);
    };
    // Only a route the caller may take can be taken over; unsubscribed, it is refused anyway.
    let rank = (target.caller_subscribed, owned);
    target.rivals = rows
        .filter(|_| rank.0)
        .filter(|(other, other_owned)| (other.caller_subscribed, *other_owned) == rank)
        .map(|(other, _)| format!("{}/{}", other.owner, other.name))
        .collect();
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::settings::is_reserved_category;

    #[test]
    fn availability_offers_an_application_to_these_tenants() {
        // (availability, tenant, tenant's parent, offered) for an application owned by "o".
        let cases = [
            ("PRIVATE", "o", Some("management"), true),
            ("PRIVATE", "sub", Some("o"), false),
            ("PRIVATE", "other", Some("management"), false),
            ("SHARED", "o", Some("management"), true),
            ("SHARED", "sub", Some("o"), true),
            ("SHARED", "subsub", Some("sub"), false),
            ("SHARED", "other", Some("management"), false),
            ("SHARED", "management", None, false),
            ("MARKET", "other", Some("management"), true),
            ("MARKET", "subsub", Some("sub"), true),
            ("UNKNOWN", "sub", Some("o"), false),
        ];
        for (availability, tenant, parent, offered) in cases {
            assert_eq!(
                offered_to(availability, "o", tenant, parent),
                offered,
                "{availability} to {tenant}"
            );
        }
    }

    #[test]
    fn settings_past_the_subscribers_options_caps_refuse_the_whole_subscription() {
        use crate::store::options::tests::{fill, totals};
        use crate::store::options::{MAX_PER_TENANT, TenantOption};
        let option = |key: &str, value: &str, from_manifest: bool| TenantOption {
            category: "cat".into(),
            key: key.into(),
            value: value.into(),
            encrypted: false,
            editable: true,
            from_manifest,
        };
        // (case, keys the tenant wrote itself, the manifest's settings, subscribed)
        let cases: &[(&str, &[&str], &[&str], bool)] = &[
            ("one new key in the last place", &[], &["a"], true),
            ("two new keys, one place", &[], &["a", "b"], false),
            ("a key listed twice takes one place", &[], &["a", "a"], true),
            (
                "the tenant's own key is not written",
                &["b"],
                &["a", "b"],
                true,
            ),
        ];
        for &(case, own, keys, subscribed) in cases {
            let mut conn = crate::store::test_conn(&["t1", "t2"]);
            conn.execute(
                "INSERT INTO applications (id, owner_tenant, name, key, type, creation_time) VALUES (7, 't1', 'hello', 'h', 'MICROSERVICE', 'now')",
                [],
            )
            .unwrap();
            for key in own {
                options::put(&conn, "t2", &option(key, "mine", false)).unwrap();
            }
            // One place left.
            fill(&conn, "t2", MAX_PER_TENANT - 1, 1 << 20);
            let before = totals(&conn, "t2");
            let new = NewSubscription {
                application_id: 7,
                tenant: "t2".into(),
                service_user: NewUser {
                    user_name: "service_hello".into(),
                    password_hash: "h".into(),
                    enabled: true,
                    ..NewUser::default()
                },
                create_service_user: true,
                service_password_sealed: "s".into(),
                agreed: Agreed::now(&conn, 7).unwrap().1,
                settings: keys
                    .iter()
                    .enumerate()
                    .map(|(i, key)| Setting {
                        option: option(key, &format!("default{i}"), true),
                        overwrite_on_update: true,
                    })
                    .collect(),
            };
            match subscribe(&mut conn, &new) {
                Ok(()) => {
                    assert!(subscribed, "{case}: subscribed");
                    assert_eq!(totals(&conn, "t2").0, MAX_PER_TENANT, "{case}");
                    // The first of a key listed twice wins; the tenant's own value stays.
                    let a = options::get(&conn, "t2", "cat", "a").unwrap().unwrap();
                    assert_eq!(a.value, "default0", "{case}");
                    if let Some(b) = options::get(&conn, "t2", "cat", "b").unwrap() {
                        assert_eq!(b.value, "mine", "{case}");
                    }
                }
                Err(StoreError::Invalid(m)) => {
                    assert!(!subscribed, "{case}: refused: {m}");
                    assert!(
                        m.contains("Tenant t2") && m.contains("at most 10000 options"),
                        "{case}: {m}"
                    );
                    assert!(get(&conn, 7, "t2").unwrap().is_none(), "{case}");
                    assert_eq!(totals(&conn, "t2"), before, "{case}");
                    let users: i64 = conn
                        .query_row(
                            "SELECT COUNT(*) FROM users WHERE tenant_id = 't2'",
                            [],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(users, 0, "{case}");
                }
                Err(other) => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn platform_categories_are_reserved() {
        let cases = [
            ("microservice.runtime", true),
            ("Microservice.Runtime", true),
            ("microservice", true),
            ("microservice.anything", true),
            ("microservices", false),
            ("system", true),
            ("configuration", true),
            ("access.control", true),
            ("password", true),
            ("alarm.type.mapping", true),
            ("oauth.internal", true),
            ("token.publicKey", true),
            ("berth.limits", true),
            ("mysvc", false),
            ("systemx", false),
            ("my.system", false),
        ];
        for (category, reserved) in cases {
            assert_eq!(is_reserved_category(category), reserved, "{category}");
        }
    }

    #[test]
    fn a_segment_naming_two_subscribed_services_equally_is_not_quietly_resolved() {
        let conn = crate::store::test_conn(&["a", "b", "v"]);
        // (id, owner, name, context path)
        for (id, owner, name, context) in [
            (1, "a", "mail", Some("mail")),
            (2, "b", "thief", Some("mail")),
            (3, "b", "mail", None::<&str>),
            (4, "v", "mine", Some("mine")),
            (5, "a", "mine", None),
        ] {
            conn.execute(
                "INSERT INTO applications (id, owner_tenant, name, key, type, availability, context_path, creation_time)
                 VALUES (?1, ?2, ?3, ?3 || ?1, 'MICROSERVICE', 'MARKET', ?4, 'now')",
                params![id, owner, name, context],
            )
            .unwrap();
        }
        let subscribe = |id: i64| {
            conn.execute(
                "INSERT INTO subscriptions VALUES (?1, 'v', 'u', 's', 'now')",
                [id],
            )
            .unwrap();
        };
        let resolved = |segment: &str| {
            let t = resolve_service(&conn, segment, "v").unwrap().unwrap();
            (t.application_id, t.rivals)
        };
        // Subscribed to one: it, whatever else has the name.
        subscribe(1);
        assert_eq!(resolved("mail"), (1, vec![]));
        // Subscribed also to one whose context path is that name: neither.
        subscribe(2);
        assert_eq!(resolved("mail"), (1, vec!["b/thief".to_owned()]));
        subscribe(3);
        let (_, rivals) = resolved("mail");
        assert_eq!(rivals.len(), 2, "{rivals:?}");
        // Its own, unsubscribed, against a subscribed one of another tenant: the subscribed.
        subscribe(5);
        assert_eq!(resolved("mine"), (5, vec![]));
        // Not subscribed to any of them: refused as before, no rivals to name.
        let t = resolve_service(&conn, "mail", "a").unwrap().unwrap();
        assert!(!t.caller_subscribed && t.rivals.is_empty());
    }

    #[test]
    fn a_subscription_is_recorded_only_while_the_application_is_what_was_agreed_to() {
        let mut conn = crate::store::test_conn(&["o", "v"]);
        conn.execute(
            "INSERT INTO applications (id, owner_tenant, name, key, type, availability, required_roles, creation_time)
             VALUES (1, 'o', 'svc', 'svc-key', 'MICROSERVICE', 'MARKET', '[\"ROLE_INVENTORY_READ\"]', 'now')",
            [],
        )
        .unwrap();
        let new = NewSubscription {
            application_id: 1,
            tenant: "v".into(),
            service_user: NewUser {
                user_name: "service_svc".into(),
                password_hash: "h".into(),
                enabled: true,
                ..NewUser::default()
            },
            create_service_user: true,
            service_password_sealed: "sealed".into(),
            agreed: Agreed::now(&conn, 1).unwrap().1,
            settings: Vec::new(),
        };
        // (what changed between the check and the record)
        let changes = [
            "UPDATE applications SET required_roles = '[\"ROLE_INVENTORY_READ\",\"ROLE_USER_MANAGEMENT_ADMIN\"]'",
            "UPDATE applications SET manifest = '{\"settingsCategory\":\"elsewhere\"}'",
            "UPDATE applications SET availability = 'PRIVATE'",
        ];
        for change in changes {
            let saved = conn
                .query_row(
                    "SELECT required_roles, manifest, availability FROM applications",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    },
                )
                .unwrap();
            conn.execute(change, []).unwrap();
            let refused = subscribe(&mut conn, &new).unwrap_err();
            assert!(
                matches!(&refused, StoreError::Conflict(m) if m.contains("changed while")),
                "{change}: {refused:?}"
            );
            let left: i64 = conn
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM subscriptions) + (SELECT COUNT(*) FROM users WHERE tenant_id = 'v')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(left, 0, "{change}: something was written");
            conn.execute(
                "UPDATE applications SET required_roles = ?1, manifest = ?2, availability = ?3",
                params![saved.0, saved.1, saved.2],
            )
            .unwrap();
        }
        subscribe(&mut conn, &new).unwrap();
        assert_eq!(
            direct_roles_of(&conn, "v", "service_svc"),
            ["ROLE_INVENTORY_READ"]
        );
    }

    fn direct_roles_of(conn: &Connection, tenant: &str, user: &str) -> Vec<String> {
        super::super::users::direct_roles(conn, tenant, user).unwrap()
    }
}
