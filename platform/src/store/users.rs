//! Users, groups and role assignments of a tenant. Roles are permission names
//! (`ROLE_<NAME>_<LEVEL>`); a user's effective roles are the union of direct and group roles.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::groups::{GROUP_COLUMNS, finish_group, group_from_row};
use super::{Page, StoreError, conflict_on_unique, json_map, json_text, timestamp};

// Split off by job; re-exported so callers keep one path for users and groups.
pub use super::groups::{
    Group, GroupRef, add_group_role, create_group, delete_group, get_group, get_group_by_name,
    insert_group, list_groups, remove_group_role, update_group,
};

/// The group every tenant administrator belongs to.
pub const ADMINS_GROUP: &str = "admins";

/// What kind of account a user row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// A person (or technical user) managed through the user API.
    Person,
    /// The bootstrap user of a microservice; hidden from the user API.
    Bootstrap,
    /// The service user a subscription creates in the subscribing tenant; hidden from the user API.
    Service,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Person => "USER",
            UserKind::Bootstrap => "BOOTSTRAP",
            UserKind::Service => "SERVICE",
        }
    }

    fn parse(text: &str) -> UserKind {
        match text {
            "BOOTSTRAP" => UserKind::Bootstrap,
            "SERVICE" => UserKind::Service,
            _ => UserKind::Person,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub tenant_id: String,
    pub user_name: String,
    pub kind: UserKind,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub enabled: bool,
    pub custom_properties: Map<String, Value>,
    pub last_password_change: String,
}

/// What authentication needs to know about a user.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub password_hash: String,
    pub enabled: bool,
    pub kind: UserKind,
    pub roles: BTreeSet<String>,
    /// Moves on at every password change, disable, re-creation and logout of all users
    /// (triggers in the schema); a token is valid only for the generation it was issued in.
    pub generation: i64,
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub user_name: String,
    pub password_hash: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub enabled: bool,
    pub custom_properties: Map<String, Value>,
    pub bootstrap: bool,
}

/// Changes to a user; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub enabled: Option<bool>,
    pub custom_properties: Option<Map<String, Value>>,
    pub password_hash: Option<String>,
}

/// The names of the users Berth makes for microservices begin with these: `servicebootstrap_<app>`
/// in the owner's tenant, `service_<app>` in each subscriber's. People's names may not
/// ([`check_person_name`]), so a name's shape alone says how its password is checked
/// (`auth::principal`), whether or not such a user exists.
pub const BOOTSTRAP_USER_PREFIX: &str = "servicebootstrap_";
pub const SERVICE_USER_PREFIX: &str = "service_";

/// Whether `name` has the shape of a bootstrap or service user's name.
pub fn is_machine_name(name: &str) -> bool {
    name.starts_with(SERVICE_USER_PREFIX) || name.starts_with(BOOTSTRAP_USER_PREFIX)
}

/// [`check_user_name`] for a person's name, which also may not look like a microservice's user.
pub fn check_person_name(name: &str) -> Result<(), String> {
    check_user_name(name)?;
    if is_machine_name(name) {
        return Err(format!(
            "must not begin with {SERVICE_USER_PREFIX:?} or {BOOTSTRAP_USER_PREFIX:?} (reserved for microservices' users)"
        ));
    }
    Ok(())
}

/// Checks a user name against the documented rule (no whitespace, `/`, `+`, `$`, `:`), and
/// no control characters.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 1000 {
        return Err("must be 1 to 1000 characters".into());
    }
    super::names::check_printable(name)?;
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '+' | '$' | ':'))
    {
        return Err(format!(
            "must not contain {c:?} (whitespace, '/', '+', '$' and ':' are not allowed)"
        ));
    }
    Ok(())
}

const USER_COLUMNS: &str = "tenant_id, user_name, kind, email, first_name, last_name, display_name, phone, enabled, custom_properties, last_password_change";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<(User, String)> {
    let kind: String = row.get(2)?;
    Ok((
        User {
            tenant_id: row.get(0)?,
            user_name: row.get(1)?,
            kind: UserKind::parse(&kind),
            email: row.get(3)?,
            first_name: row.get(4)?,
            last_name: row.get(5)?,
            display_name: row.get(6)?,
            phone: row.get(7)?,
            enabled: row.get(8)?,
            custom_properties: Map::new(),
            last_password_change: row.get(10)?,
        },
        row.get(9)?,
    ))
}

fn finish_user((mut user, props): (User, String)) -> Result<User, StoreError> {
    user.custom_properties = json_map(&props)?;
    Ok(user)
}

/// Most users (persons) one tenant may have: each is a row, a password hash and memberships
/// that every listing and group lookup reads. Bootstrap and service users are bounded by
/// applications and subscriptions instead.
pub const MAX_PERSONS_PER_TENANT: i64 = 10_000;

pub fn create_user(conn: &Connection, tenant: &str, user: &NewUser) -> Result<(), StoreError> {
    let kind = if user.bootstrap {
        UserKind::Bootstrap
    } else {
        UserKind::Person
    };
    if kind == UserKind::Person {
        let persons: i64 = conn.query_row(
            "SELECT COUNT(*) FROM users WHERE tenant_id = ?1 AND kind = ?2",
            params![tenant, UserKind::Person.as_str()],
            |r| r.get(0),
        )?;
        if persons >= MAX_PERSONS_PER_TENANT {
            return Err(StoreError::Invalid(format!(
                "Tenant {tenant} has {persons} users, as many as one tenant may; delete some before creating more"
            )));
        }
    }
    let now = timestamp();
    conn.execute(
        "INSERT INTO users (tenant_id, user_name, kind, password_hash, email, first_name, last_name, display_name, phone, enabled, custom_properties, last_password_change, creation_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
        params![
            tenant,
            user.user_name,
            kind.as_str(),
            user.password_hash,
            user.email,
            user.first_name,
            user.last_name,
            user.display_name,
            user.phone,
            user.enabled,
            json_text(&user.custom_properties),
            now
        ],
    )
    .map_err(|e| conflict_on_unique(e, || format!("User with username '{}' already exists", user.user_name)))?;
    Ok(())
}

pub fn get_user(conn: &Connection, tenant: &str, name: &str) -> Result<Option<User>, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 AND user_name = ?2"),
        params![tenant, name],
        user_from_row,
    )
    .optional()?
    .map(finish_user)
    .transpose()
}

/// A person (not a bootstrap user) of the tenant, or NotFound.
pub fn get_person(conn: &Connection, tenant: &str, name: &str) -> Result<User, StoreError> {
    match get_user(conn, tenant, name)? {
        Some(user) if user.kind == UserKind::Person => Ok(user),
        _ => Err(StoreError::NotFound(format!(
            "User with id {name} not found"
        ))),
    }
}

/// Users named `device_…` are devices' (Cumulocity's device credentials): listings show
/// either them (`onlyDevices=true`) or everyone else.
pub const DEVICE_USER_PREFIX: &str = "device_";

/// Persons of the tenant, optionally filtered by user-name prefix and group ids: device
/// users only when `devices`, the others otherwise.
pub fn list_users(
    conn: &Connection,
    tenant: &str,
    name_prefix: Option<&str>,
    group_ids: &[i64],
    devices: bool,
    page: Page,
) -> Result<(Vec<User>, u64), StoreError> {
    let group_filter = if group_ids.is_empty() {
        String::new()
    } else {
        let ids = group_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        format!(
            " AND user_name IN (SELECT user_name FROM group_members WHERE tenant_id = ?1 AND group_id IN ({ids}))"
        )
    };
    let filter = format!(
        "tenant_id = ?1 AND kind = 'USER' AND substr(user_name, 1, length(?2)) = ?2
         AND (substr(user_name, 1, length(?3)) = ?3) = ?4{group_filter}"
    );
    let prefix = name_prefix.unwrap_or_default();
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM users WHERE {filter}"),
        params![tenant, prefix, DEVICE_USER_PREFIX, devices],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY user_name LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            tenant,
            prefix,
            DEVICE_USER_PREFIX,
            devices,
            page.limit_sql(),
            page.offset_sql()
        ],
        user_from_row,
    )?;
    let users = rows
        .map(|r| finish_user(r?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, total.try_into().unwrap_or(0)))
}

pub fn update_user(
    conn: &mut Connection,
    tenant: &str,
    name: &str,
    update: &UserUpdate,
) -> Result<User, StoreError> {
    let tx = conn.transaction()?;
    let current = get_person(&tx, tenant, name)?;
    tx.execute(
        "UPDATE users SET email = ?3, first_name = ?4, last_name = ?5, display_name = ?6, phone = ?7, enabled = ?8, custom_properties = ?9 WHERE tenant_id = ?1 AND user_name = ?2",
        params![
            tenant,
            name,
            update.email.clone().or(current.email),
            update.first_name.clone().or(current.first_name),
            update.last_name.clone().or(current.last_name),
            update.display_name.clone().or(current.display_name),
            update.phone.clone().or(current.phone),
            update.enabled.unwrap_or(current.enabled),
            json_text(update.custom_properties.as_ref().unwrap_or(&current.custom_properties)),
        ],
    )?;
    if let Some(hash) = &update.password_hash {
        set_password(&tx, tenant, name, hash)?;
    }
    let updated = get_person(&tx, tenant, name)?;
    tx.commit()?;
    Ok(updated)
}

pub fn set_password(
    conn: &Connection,
    tenant: &str,
    name: &str,
    hash: &str,
) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE users SET password_hash = ?3, last_password_change = ?4 WHERE tenant_id = ?1 AND user_name = ?2",
        params![tenant, name, hash, timestamp()],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!(
            "User with id {name} not found"
        )));
    }
    Ok(())
}

pub fn delete_user(conn: &Connection, tenant: &str, name: &str) -> Result<(), StoreError> {
    get_person(conn, tenant, name)?;
    let first_admin: Option<String> = conn
        .query_row(
            "SELECT admin_name FROM tenants WHERE id = ?1",
            [tenant],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if first_admin.as_deref() == Some(name) {
        return Err(StoreError::Invalid(format!(
            "User {name} is the tenant's first administrator and cannot be deleted"
        )));
    }
    conn.execute(
        "DELETE FROM users WHERE tenant_id = ?1 AND user_name = ?2",
        params![tenant, name],
    )?;
    Ok(())
}

/// Password hash, state and effective roles, for authentication.
pub fn auth_record(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Option<AuthRecord>, StoreError> {
    let row: Option<(String, bool, String, i64)> = conn
        .query_row(
            "SELECT password_hash, enabled, kind, credential_generation FROM users WHERE tenant_id = ?1 AND user_name = ?2",
            params![tenant, name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((password_hash, enabled, kind, generation)) = row else {
        return Ok(None);
    };
    Ok(Some(AuthRecord {
        password_hash,
        enabled,
        kind: UserKind::parse(&kind),
        roles: effective_roles(conn, tenant, name)?,
        generation,
    }))
}

/// Direct roles plus the roles of every group the user is in.
pub fn effective_roles(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT role FROM user_roles WHERE tenant_id = ?1 AND user_name = ?2
         UNION SELECT gr.role FROM group_roles gr JOIN group_members gm ON gm.group_id = gr.group_id
               WHERE gm.tenant_id = ?1 AND gm.user_name = ?2",
    )?;
    let roles = stmt
        .query_map(params![tenant, name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(roles)
}

pub fn direct_roles(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT role FROM user_roles WHERE tenant_id = ?1 AND user_name = ?2 ORDER BY role",
    )?;
    let roles = stmt
        .query_map(params![tenant, name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(roles)
}

pub fn add_user_role(
    conn: &Connection,
    tenant: &str,
    name: &str,
    role: &str,
) -> Result<(), StoreError> {
    get_person(conn, tenant, name)?;
    conn.execute(
        "INSERT INTO user_roles (tenant_id, user_name, role) VALUES (?1, ?2, ?3)",
        params![tenant, name, role],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("Role {role} is already assigned to user {name}")
        })
    })?;
    Ok(())
}

pub fn remove_user_role(
    conn: &Connection,
    tenant: &str,
    name: &str,
    role: &str,
) -> Result<(), StoreError> {
    get_person(conn, tenant, name)?;
    let removed = conn.execute(
        "DELETE FROM user_roles WHERE tenant_id = ?1 AND user_name = ?2 AND role = ?3",
        params![tenant, name, role],
    )?;
    if removed == 0 {
        return Err(StoreError::NotFound(format!(
            "Role {role} is not assigned to user {name}"
        )));
    }
    Ok(())
}

/// The groups the user is a member of, by id and name.
pub fn user_group_refs(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Vec<GroupRef>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT g.id, g.tenant_id, g.name FROM groups g JOIN group_members m ON m.group_id = g.id
         WHERE m.tenant_id = ?1 AND m.user_name = ?2 ORDER BY g.id",
    )?;
    let refs = stmt
        .query_map(params![tenant, name], |r| {
            Ok(GroupRef {
                id: r.get(0)?,
                tenant_id: r.get(1)?,
                name: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(refs)
}

/// Groups the user is a member of.
pub fn user_groups(conn: &Connection, tenant: &str, name: &str) -> Result<Vec<Group>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE tenant_id = ?1 AND id IN (SELECT group_id FROM group_members WHERE tenant_id = ?1 AND user_name = ?2) ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![tenant, name], group_from_row)?;
    let groups = rows.collect::<Result<Vec<_>, _>>()?;
    groups.into_iter().map(|g| finish_group(conn, g)).collect()
}

pub fn group_members(
    conn: &Connection,
    tenant: &str,
    id: i64,
    page: Page,
) -> Result<(Vec<User>, u64), StoreError> {
    get_group(conn, tenant, id)?;
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM group_members WHERE group_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = ?1 AND user_name IN (SELECT user_name FROM group_members WHERE group_id = ?2) ORDER BY user_name LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt.query_map(
        params![tenant, id, page.limit_sql(), page.offset_sql()],
        user_from_row,
    )?;
    let users = rows
        .map(|r| finish_user(r?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, total.try_into().unwrap_or(0)))
}

/// Most groups one user may be a member of: a listing of users shows each user's groups, so
/// with a tenant's 10,000 users and 1,000 groups a page of users could otherwise name two
/// million groups. (Cumulocity's standard global roles are a handful.)
pub const MAX_GROUPS_PER_USER: i64 = 100;

pub fn add_member(conn: &Connection, tenant: &str, id: i64, user: &str) -> Result<(), StoreError> {
    get_group(conn, tenant, id)?;
    get_person(conn, tenant, user)?;
    let member_of: i64 = conn.query_row(
        "SELECT COUNT(*) FROM group_members WHERE tenant_id = ?1 AND user_name = ?2",
        params![tenant, user],
        |r| r.get(0),
    )?;
    if member_of >= MAX_GROUPS_PER_USER {
        return Err(StoreError::Invalid(format!(
            "User {user} is a member of {member_of} groups, as many as one user may; remove them from one first"
        )));
    }
    conn.execute(
        "INSERT INTO group_members (group_id, tenant_id, user_name) VALUES (?1, ?2, ?3)",
        params![id, tenant, user],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("User {user} is already a member of group {id}")
        })
    })?;
    Ok(())
}

pub fn remove_member(
    conn: &Connection,
    tenant: &str,
    id: i64,
    user: &str,
) -> Result<(), StoreError> {
    get_group(conn, tenant, id)?;
    if conn.execute(
        "DELETE FROM group_members WHERE group_id = ?1 AND user_name = ?2",
        params![id, user],
    )? == 0
    {
        return Err(StoreError::NotFound(format!(
            "User {user} is not a member of group {id}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_has_a_bounded_number_of_users_and_groups() {
        let conn = super::super::test_conn(&["t1", "t2"]);
        // All but one of the places taken in one statement (10,000 API calls would hash).
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO users (tenant_id, user_name, password_hash, last_password_change, creation_time)
             SELECT 't1', 'u' || i, 'x', '', '' FROM n",
            [MAX_PERSONS_PER_TENANT - 1],
        )
        .unwrap();
        let user = |name: &str, bootstrap| NewUser {
            user_name: name.into(),
            bootstrap,
            ..NewUser::default()
        };
        create_user(&conn, "t1", &user("last", false)).unwrap();
        let refused = create_user(&conn, "t1", &user("more", false));
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("10000 users")),
            "{refused:?}"
        );
        // Bootstrap users come with applications (bounded there); other tenants are apart.
        create_user(&conn, "t1", &user("bootstrap", true)).unwrap();
        create_user(&conn, "t2", &user("more", false)).unwrap();

        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO groups (tenant_id, name) SELECT 't1', 'g' || i FROM n",
            [super::super::groups::MAX_PER_TENANT - 1],
        )
        .unwrap();
        let props = serde_json::Map::new();
        create_group(&conn, "t1", "last", None, &props).unwrap();
        let refused = create_group(&conn, "t1", "more", None, &props);
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("1000 groups")),
            "{refused:?}"
        );
        create_group(&conn, "t2", "more", None, &props).unwrap();
    }

    #[test]
    fn a_user_is_a_member_of_a_bounded_number_of_groups() {
        let conn = super::super::test_conn(&["t1"]);
        let user = |name: &str| NewUser {
            user_name: name.into(),
            ..NewUser::default()
        };
        create_user(&conn, "t1", &user("ann")).unwrap();
        create_user(&conn, "t1", &user("bob")).unwrap();
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO groups (tenant_id, name) SELECT 't1', 'g' || i FROM n",
            [MAX_GROUPS_PER_USER + 1],
        )
        .unwrap();
        // Ann in all but one of the groups she may be in, in one statement.
        conn.execute(
            "INSERT INTO group_members (group_id, tenant_id, user_name)
             SELECT id, 't1', 'ann' FROM groups WHERE tenant_id = 't1' ORDER BY id LIMIT ?1",
            [MAX_GROUPS_PER_USER - 1],
        )
        .unwrap();
        let (last, more) = (MAX_GROUPS_PER_USER, MAX_GROUPS_PER_USER + 1);
        add_member(&conn, "t1", last, "ann").unwrap();
        let refused = add_member(&conn, "t1", more, "ann");
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("100 groups")),
            "{refused:?}"
        );
        // Another user is not affected, and what Ann's representation names is each group's
        // id and name only.
        add_member(&conn, "t1", more, "bob").unwrap();
        let refs = user_group_refs(&conn, "t1", "ann").unwrap();
        assert_eq!(refs.len() as i64, MAX_GROUPS_PER_USER);
        assert_eq!(
            refs[0],
            GroupRef {
                id: 1,
                tenant_id: "t1".into(),
                name: "g1".into()
            }
        );
    }

    #[test]
    fn user_names_follow_the_documented_rule() {
        let cases = [
            ("admin", true),
            ("jane.doe@example.com", true),
            ("", false),
            ("a b", false),
            ("t1/admin", false),
            ("a+b", false),
            ("a$", false),
            ("a:b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_user_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn people_may_not_take_the_shape_of_a_microservices_user() {
        // (name, a machine's shape, allowed for a person)
        let cases = [
            ("jane", false, true),
            ("service", false, true),
            ("services_jane", false, true),
            ("Service_x", false, true),
            ("my_service_x", false, true),
            ("service_x", true, false),
            ("service_", true, false),
            ("servicebootstrap_x", true, false),
            ("a b", false, false),
        ];
        for (name, machine, person) in cases {
            assert_eq!(is_machine_name(name), machine, "{name:?}");
            assert_eq!(check_person_name(name).is_ok(), person, "{name:?}");
        }
    }
}
