//! Groups of a tenant's users: their properties and roles (membership is in [`super::users`]).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::{Page, StoreError, conflict_on_unique, json_map, json_text};

#[derive(Debug, Clone)]
pub struct Group {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub protected: bool,
    pub roles: Vec<String>,
}

/// A group as a user's representation names it: who, not what it holds (its custom
/// properties and roles are read from the group itself), so a listing of users costs what
/// their names do, not what their groups carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: i64,
    pub tenant_id: String,
    pub name: String,
}

pub(super) const GROUP_COLUMNS: &str =
    "id, tenant_id, name, description, custom_properties, protected";

pub(super) fn group_from_row(row: &Row<'_>) -> rusqlite::Result<(Group, String)> {
    Ok((
        Group {
            id: row.get(0)?,
            tenant_id: row.get(1)?,
            name: row.get(2)?,
            description: row.get(3)?,
            custom_properties: Map::new(),
            protected: row.get(5)?,
            roles: Vec::new(),
        },
        row.get(4)?,
    ))
}

pub(super) fn finish_group(
    conn: &Connection,
    (mut group, props): (Group, String),
) -> Result<Group, StoreError> {
    group.custom_properties = json_map(&props)?;
    let mut stmt =
        conn.prepare("SELECT role FROM group_roles WHERE group_id = ?1 ORDER BY role")?;
    group.roles = stmt
        .query_map([group.id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(group)
}

pub fn insert_group(
    conn: &Connection,
    tenant: &str,
    name: &str,
    description: Option<&str>,
    protected: bool,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO groups (tenant_id, name, description, protected) VALUES (?1, ?2, ?3, ?4)",
        params![tenant, name, description, protected],
    )
    .map_err(|e| conflict_on_unique(e, || format!("Group with name '{name}' already exists")))?;
    Ok(conn.last_insert_rowid())
}

/// Most groups one tenant may create: each is read, with its roles and members, by every
/// listing and every check of what a user may grant.
pub const MAX_PER_TENANT: i64 = 1_000;

pub fn create_group(
    conn: &Connection,
    tenant: &str,
    name: &str,
    description: Option<&str>,
    props: &Map<String, Value>,
) -> Result<Group, StoreError> {
    let groups: i64 = conn.query_row(
        "SELECT COUNT(*) FROM groups WHERE tenant_id = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    if groups >= MAX_PER_TENANT {
        return Err(StoreError::Invalid(format!(
            "Tenant {tenant} has {groups} groups, as many as one tenant may; delete some before creating more"
        )));
    }
    let id = insert_group(conn, tenant, name, description, false)?;
    conn.execute(
        "UPDATE groups SET custom_properties = ?2 WHERE id = ?1",
        params![id, json_text(props)],
    )?;
    get_group(conn, tenant, id)
}

pub fn get_group(conn: &Connection, tenant: &str, id: i64) -> Result<Group, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE tenant_id = ?1 AND id = ?2"),
            params![tenant, id],
            group_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("Group with id {id} not found")))?;
    finish_group(conn, row)
}

pub fn get_group_by_name(conn: &Connection, tenant: &str, name: &str) -> Result<Group, StoreError> {
    let row = conn
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE tenant_id = ?1 AND name = ?2"),
            params![tenant, name],
            group_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("Group with name {name} not found")))?;
    finish_group(conn, row)
}

pub fn list_groups(
    conn: &Connection,
    tenant: &str,
    page: Page,
) -> Result<(Vec<Group>, u64), StoreError> {
    let total: i64 = conn.query_row(
        "SELECT COUNT(*) FROM groups WHERE tenant_id = ?1",
        [tenant],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {GROUP_COLUMNS} FROM groups WHERE tenant_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![tenant, page.limit_sql(), page.offset_sql()],
            group_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let groups = rows
        .into_iter()
        .map(|g| finish_group(conn, g))
        .collect::<Result<_, _>>()?;
    Ok((groups, total.try_into().unwrap_or(0)))
}

pub fn update_group(
    conn: &Connection,
    tenant: &str,
    id: i64,
    name: Option<&str>,
    description: Option<&str>,
    props: Option<&Map<String, Value>>,
) -> Result<Group, StoreError> {
    let current = get_group(conn, tenant, id)?;
    if current.protected && name.is_some_and(|n| n != current.name) {
        return Err(StoreError::Invalid(format!(
            "Group {} is a default group and cannot be renamed",
            current.name
        )));
    }
    let new_name = name.unwrap_or(&current.name).to_owned();
    conn.execute(
        "UPDATE groups SET name = ?3, description = ?4, custom_properties = ?5 WHERE tenant_id = ?1 AND id = ?2",
        params![tenant, id, new_name, description.or(current.description.as_deref()), json_text(props.unwrap_or(&current.custom_properties))],
    )
    .map_err(|e| conflict_on_unique(e, || format!("Group with name '{new_name}' already exists")))?;
    get_group(conn, tenant, id)
}

pub fn delete_group(conn: &Connection, tenant: &str, id: i64) -> Result<(), StoreError> {
    let group = get_group(conn, tenant, id)?;
    if group.protected {
        return Err(StoreError::Invalid(format!(
            "Group {} is a default group and cannot be deleted",
            group.name
        )));
    }
    conn.execute("DELETE FROM groups WHERE id = ?1", [id])?;
    Ok(())
}

pub fn add_group_role(
    conn: &Connection,
    tenant: &str,
    id: i64,
    role: &str,
) -> Result<(), StoreError> {
    get_group(conn, tenant, id)?;
    conn.execute(
        "INSERT INTO group_roles (group_id, role) VALUES (?1, ?2)",
        params![id, role],
    )
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("Role {role} is already assigned to group {id}")
        })
    })?;
    Ok(())
}

pub fn remove_group_role(
    conn: &Connection,
    tenant: &str,
    id: i64,
    role: &str,
) -> Result<(), StoreError> {
    get_group(conn, tenant, id)?;
    if conn.execute(
        "DELETE FROM group_roles WHERE group_id = ?1 AND role = ?2",
        params![id, role],
    )? == 0
    {
        return Err(StoreError::NotFound(format!(
            "Role {role} is not assigned to group {id}"
        )));
    }
    Ok(())
}
