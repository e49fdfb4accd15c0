//! Tenants: the management tenant and its subtenants, each with an administrator and default
//! groups created in the same transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};

use super::applications::{self, Application, ManifestOptions};
use super::intents::DeletionIntent;
use super::subscriptions;
use super::users::{self, NewUser};
use super::{Page, StoreError, conflict_on_unique, json_map, json_text, timestamp};

/// The management tenant's fixed id.
pub const MANAGEMENT: &str = "management";

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub domain: String,
    pub company: String,
    pub parent: Option<String>,
    pub admin_name: Option<String>,
    pub admin_email: Option<String>,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub status: String,
    pub allow_create_tenants: bool,
    pub creation_time: String,
}

/// A default group to create with a tenant.
#[derive(Debug, Clone, Copy)]
pub struct GroupTemplate {
    pub name: &'static str,
    pub description: &'static str,
    pub roles: &'static [&'static str],
    /// Protected groups (admins, devices) cannot be deleted.
    pub protected: bool,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: String,
    pub domain: String,
    pub company: String,
    pub parent: Option<String>,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub allow_create_tenants: bool,
}

/// Changes to a tenant; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    pub domain: Option<String>,
    pub company: Option<String>,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub admin_email: Option<String>,
    pub custom_properties: Option<Map<String, Value>>,
}

const COLUMNS: &str = "id, domain, company, parent, admin_name, admin_email, contact_name, contact_phone, custom_properties, status, allow_create_tenants, creation_time";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Tenant, String)> {
    Ok((
        Tenant {
            id: row.get(0)?,
            domain: row.get(1)?,
            company: row.get(2)?,
            parent: row.get(3)?,
            admin_name: row.get(4)?,
            admin_email: row.get(5)?,
            contact_name: row.get(6)?,
            contact_phone: row.get(7)?,
            custom_properties: Map::new(),
            status: row.get(9)?,
            allow_create_tenants: row.get(10)?,
            creation_time: row.get(11)?,
        },
        row.get(8)?,
    ))
}

fn finish((mut tenant, props): (Tenant, String)) -> Result<Tenant, StoreError> {
    tenant.custom_properties = json_map(&props)?;
    Ok(tenant)
}

/// Creates a tenant with its first administrator (member of `admins`) and the default groups.
/// Most subtenants one tenant other than the management tenant may create: each is a tenant
/// with limits of its own (containers, memory, CPU), so without a bound a tenant allowed to
/// create subtenants would multiply what it may run.
pub const MAX_SUBTENANTS: i64 = 100;

pub fn create(
    conn: &mut Connection,
    tenant: &NewTenant,
    admin: &NewUser,
    groups: &[GroupTemplate],
) -> Result<Tenant, StoreError> {
    let tx = conn.transaction()?;
    if let Some(parent) = tenant.parent.as_deref().filter(|p| *p != MANAGEMENT) {
        let children: i64 = tx.query_row(
            "SELECT COUNT(*) FROM tenants WHERE parent = ?1",
            [parent],
            |r| r.get(0),
        )?;
        if children >= MAX_SUBTENANTS {
            return Err(StoreError::Invalid(format!(
                "Tenant {parent} has {children} subtenants, as many as a tenant may create; delete some before creating more"
            )));
        }
    }
    tx.execute(
        "INSERT INTO tenants (id, domain, company, parent, admin_name, admin_email, contact_name, contact_phone, custom_properties, allow_create_tenants, creation_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            tenant.id,
            tenant.domain,
            tenant.company,
            tenant.parent,
            admin.user_name,
            admin.email,
            tenant.contact_name,
            tenant.contact_phone,
            json_text(&tenant.custom_properties),
            tenant.allow_create_tenants,
            timestamp()
        ],
    )
    .map_err(|e| conflict_on_unique(e, || format!("Tenant with domain {} or id {} already exists", tenant.domain, tenant.id)))?;
    users::create_user(&tx, &tenant.id, admin)?;
    for group in groups {
        let id = users::insert_group(
            &tx,
            &tenant.id,
            group.name,
            Some(group.description),
            group.protected,
        )?;
        for role in group.roles {
            tx.execute(
                "INSERT INTO group_roles (group_id, role) VALUES (?1, ?2)",
                params![id, role],
            )?;
        }
        if group.name == users::ADMINS_GROUP {
            users::add_member(&tx, &tenant.id, id, &admin.user_name)?;
        }
    }
    let created = get(&tx, &tenant.id)?.ok_or_else(|| StoreError::NotFound(tenant.id.clone()))?;
    tx.commit()?;
    Ok(created)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Tenant>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// True when a tenant with this id exists.
pub fn exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Filters of a subtenant listing (exact matches; the domain case-insensitively).
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub company: Option<String>,
    pub domain: Option<String>,
}

/// Subtenants whose parent is `parent` matching `filter`, oldest first.
pub fn list_children(
    conn: &Connection,
    parent: &str,
    filter: &TenantFilter,
    page: Page,
) -> Result<(Vec<Tenant>, u64), StoreError> {
    let condition = "parent = ?1 AND (?2 IS NULL OR company = ?2)
                     AND (?3 IS NULL OR domain = lower(?3))";
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM tenants WHERE {condition}"),
        params![parent, filter.company, filter.domain],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM tenants WHERE {condition} ORDER BY creation_time, id LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt.query_map(
        params![
            parent,
            filter.company,
            filter.domain,
            page.limit_sql(),
            page.offset_sql()
        ],
        from_row,
    )?;
    let tenants = rows.map(|r| finish(r?)).collect::<Result<Vec<_>, _>>()?;
    Ok((tenants, total.try_into().unwrap_or(0)))
}

pub fn update(
    conn: &mut Connection,
    id: &str,
    update: &TenantUpdate,
) -> Result<Tenant, StoreError> {
    let tx = conn.transaction()?;
    let current = get(&tx, id)?
        .ok_or_else(|| StoreError::NotFound(format!("There is no tenant with id = {id}")))?;
    let domain = update.domain.clone().unwrap_or(current.domain);
    tx.execute(
        "UPDATE tenants SET domain = ?2, company = ?3, contact_name = ?4, contact_phone = ?5, admin_email = ?6, custom_properties = ?7 WHERE id = ?1",
        params![
            id,
            domain,
            update.company.clone().unwrap_or(current.company),
            update.contact_name.clone().or(current.contact_name),
            update.contact_phone.clone().or(current.contact_phone),
            update.admin_email.clone().or(current.admin_email.clone()),
            json_text(update.custom_properties.as_ref().unwrap_or(&current.custom_properties)),
        ],
    )
    .map_err(|e| conflict_on_unique(e, || format!("Tenant with domain {domain} already exists")))?;
    if let (Some(email), Some(admin)) = (&update.admin_email, &current.admin_name) {
        tx.execute(
            "UPDATE users SET email = ?3 WHERE tenant_id = ?1 AND user_name = ?2",
            params![id, admin, email],
        )?;
    }
    let updated = get(&tx, id)?.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
    tx.commit()?;
    Ok(updated)
}

/// What deleting a tenant leaves to do outside the database.
#[derive(Debug, Default)]
pub struct TenantDeletion {
    /// The intent of each application the tenant owned: its images, tags and package files.
    pub applications: Vec<(i64, DeletionIntent)>,
    /// Service users (tenant, user) of other tenants' subscriptions to those applications.
    pub service_users: Vec<(String, String)>,
}

/// Deletes the tenant and, through the foreign keys, what lives in it; in the same transaction
/// every application it owns goes as
/// [`applications::delete_in`] does (`plan` gives an application's manifest options and
/// package directory), recording their deletion intents: a kill leaves all of it or none,
/// and the next start finishes what is outside the database. None when there is no such
/// tenant; a conflict while it has subtenants.
pub fn delete(
    conn: &mut Connection,
    id: &str,
    plan: impl Fn(&Application) -> (ManifestOptions, String),
) -> Result<Option<TenantDeletion>, StoreError> {
    let tx = conn.transaction()?;
    let children: i64 = tx.query_row(
        "SELECT COUNT(*) FROM tenants WHERE parent = ?1",
        [id],
        |r| r.get(0),
    )?;
    if children > 0 {
        return Err(StoreError::Conflict(format!(
            "Tenant {id} still has {children} subtenant(s); delete them first"
        )));
    }
    let owned: Vec<i64> = {
        let mut stmt = tx.prepare("SELECT id FROM applications WHERE owner_tenant = ?1")?;
        let ids = stmt.query_map([id], |r| r.get(0))?;
        ids.collect::<Result<_, _>>()?
    };
    let mut deletion = TenantDeletion::default();
    for app_id in owned {
        let app = applications::get(&tx, id, app_id)?;
        for s in subscriptions::of_application(&tx, app_id)? {
            if s.tenant != id {
                deletion.service_users.push((s.tenant, s.service_user));
            }
        }
        let (options, package_dir) = plan(&app);
        let deleted = applications::delete_in(&tx, id, app_id, &options, &package_dir)?;
        deletion.applications.push(deleted);
    }
    let deleted = tx.execute("DELETE FROM tenants WHERE id = ?1", [id])? > 0;
    if !deleted {
        return Ok(None);
    }
    tx.commit()?;
    Ok(Some(deletion))
}

/// The tenant whose domain is `host`, or whose domain's first label equals `host`'s first label.
pub fn find_by_host(conn: &Connection, host: &str) -> Result<Option<String>, StoreError> {
    let host = host.to_ascii_lowercase();
    let label = host.split('.').next().unwrap_or_default().to_owned();
    if label.is_empty() {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT id FROM tenants WHERE lower(domain) = ?1 OR lower(domain) = ?2 OR substr(lower(domain), 1, length(?2) + 1) = ?2 || '.' ORDER BY lower(domain) = ?1 DESC LIMIT 1",
            params![host, label],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_tenant(id: &str, parent: &str) -> NewTenant {
        NewTenant {
            id: id.into(),
            domain: format!("{id}.example"),
            company: id.into(),
            parent: Some(parent.into()),
            contact_name: None,
            contact_phone: None,
            custom_properties: Default::default(),
            allow_create_tenants: false,
        }
    }

    #[test]
    fn a_tenant_creates_a_bounded_number_of_subtenants_the_operator_any() {
        let mut conn = super::super::test_conn(&[MANAGEMENT]);
        let admin = NewUser {
            user_name: "admin".into(),
            ..NewUser::default()
        };
        create(&mut conn, &new_tenant("p", MANAGEMENT), &admin, &[]).unwrap();
        for i in 0..MAX_SUBTENANTS {
            create(&mut conn, &new_tenant(&format!("p{i}"), "p"), &admin, &[]).unwrap();
        }
        let refused = create(&mut conn, &new_tenant("pmore", "p"), &admin, &[]);
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("100 subtenants")),
            "{refused:?}"
        );
        for i in 0..=MAX_SUBTENANTS {
            create(
                &mut conn,
                &new_tenant(&format!("m{i}"), MANAGEMENT),
                &admin,
                &[],
            )
            .unwrap();
        }
    }
}
