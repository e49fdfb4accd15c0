//! How a new active manifest (an upload, an activated version, a rollback) changes the settings
//! options of every subscribed tenant: keys the new version no longer has are removed, new keys
//! added, and each other option takes the new default. A value the tenant wrote itself is kept:
//! in a subscriber's tenant always (a provider never changes or removes a subscriber's own
//! option), in the owner's tenant when the setting stays editable and is not
//! `overwriteOnUpdate`. [`changes`] is the rule, pure; [`plan`] reads what it needs and
//! [`apply`] writes its result, both in the caller's transaction.

use manifests_schema::Manifest;
use rusqlite::Connection;

use crate::store::StoreError;
use crate::store::applications::Application;
use crate::store::options::{self, OptionChange, TenantOption};
use crate::store::settings::{Seal, Setting, manifest_settings, subscribed_tenants};

/// The option changes a new version's `settings` make in one tenant, given the (category, key)
/// of the previous version's settings and the tenant's options at those keys and the new ones
/// (`existing`, as read; a key without an option is absent). `owner`: the tenant owns the
/// application, so the manifest's `editable` and `overwriteOnUpdate` apply to the values it
/// wrote. The changes apply in order.
pub fn changes(
    owner: bool,
    previous: &[(String, String)],
    settings: &[Setting],
    existing: &[TenantOption],
) -> Vec<OptionChange> {
    // The options as the changes so far left them, so each decision sees the earlier ones (a
    // key listed twice is decided against what the first decision made of it).
    let mut current: Vec<TenantOption> = existing.to_vec();
    let find = |current: &[TenantOption], category: &str, key: &str| {
        current
            .iter()
            .position(|o| o.category == category && o.key == key)
    };
    let mut out = Vec::new();
    for (category, key) in previous {
        let still = settings
            .iter()
            .any(|s| s.option.category == *category && s.option.key == *key);
        if still {
            continue;
        }
        if let Some(at) = find(&current, category, key)
            && (current[at].from_manifest || owner)
        {
            current.remove(at);
            out.push(OptionChange::Delete {
                category: category.clone(),
                key: key.clone(),
            });
        }
    }
    for setting in settings {
        let new = &setting.option;
        let at = find(&current, &new.category, &new.key);
        let tenant_wrote = at.is_some_and(|at| !current[at].from_manifest);
        if tenant_wrote && !owner {
            // A subscriber's own value: the provider neither changes nor locks it.
            continue;
        }
        match at {
            Some(at) if tenant_wrote && new.editable && !setting.overwrite_on_update => {
                current[at].editable = true;
                out.push(OptionChange::MarkEditable {
                    category: new.category.clone(),
                    key: new.key.clone(),
                });
            }
            Some(at) => {
                current[at] = new.clone();
                out.push(OptionChange::Replace(new.clone()));
            }
            None => {
                current.push(new.clone());
                out.push(OptionChange::Replace(new.clone()));
            }
        }
    }
    out
}

/// For each tenant subscribed to `app`, the changes that bring its options from the manifest
/// `before` (None: the application had none) to `after`. Read in the caller's transaction.
pub fn plan(
    conn: &Connection,
    app: &Application,
    before: Option<&Manifest>,
    after: &Manifest,
    seal: &Seal<'_>,
) -> Result<Vec<(String, Vec<OptionChange>)>, StoreError> {
    let previous: Vec<(String, String)> = before
        .map(|m| {
            let category = m.settings_category_or(&app.name);
            m.settings
                .iter()
                .map(|s| (category.to_owned(), s.key.clone()))
                .collect()
        })
        .unwrap_or_default();
    subscribed_tenants(conn, app.id)?
        .into_iter()
        .map(|tenant| {
            let settings = manifest_settings(&tenant, &app.name, after, seal)?;
            let keys = previous
                .iter()
                .map(|(c, k)| (c.as_str(), k.as_str()))
                .chain(
                    settings
                        .iter()
                        .map(|s| (s.option.category.as_str(), s.option.key.as_str())),
                );
            let mut existing: Vec<TenantOption> = Vec::new();
            for (category, key) in keys {
                if existing
                    .iter()
                    .any(|o| o.category == category && o.key == key)
                {
                    continue;
                }
                existing.extend(options::get(conn, &tenant, category, key)?);
            }
            let changes = changes(tenant == app.owner, &previous, &settings, &existing);
            Ok((tenant, changes))
        })
        .collect()
}

/// Writes what [`plan`] decided for `app`, in the caller's transaction. Invalid, writing
/// nothing, when it would take a tenant past an options cap ([`check`]).
pub fn apply(
    conn: &Connection,
    app: &Application,
    plan: &[(String, Vec<OptionChange>)],
) -> Result<(), StoreError> {
    check(conn, app, plan)?;
    write(conn, plan)
}

/// Refuses a plan that would take a tenant past an options cap (`options::over_cap`): a
/// provider's version may not grow a subscriber's options past what the tenant may write
/// itself (Invalid, naming the tenant and the cap).
pub fn check(
    conn: &Connection,
    app: &Application,
    plan: &[(String, Vec<OptionChange>)],
) -> Result<(), StoreError> {
    for (tenant, changes) in plan {
        let weighed = changes.iter().map(OptionChange::weighed);
        if let Some(over) = options::over_cap(conn, tenant, weighed)? {
            return Err(StoreError::Invalid(format!(
                "Tenant {tenant}, subscribed to {}, cannot take this version's settings: {over}; the tenant must delete some of its options first, or the version must have fewer or shorter settings",
                app.name
            )));
        }
    }
    Ok(())
}

fn write(conn: &Connection, plan: &[(String, Vec<OptionChange>)]) -> Result<(), StoreError> {
    for (tenant, changes) in plan {
        options::apply(conn, tenant, changes)?;
    }
    Ok(())
}

/// The subscribers' settings follow an application whose active manifest changed from
/// `before`'s to `after`'s (an activated version), in the caller's transaction, within the
/// options caps ([`apply`]). Nothing changes when `after` has no manifest.
pub fn follow(
    conn: &Connection,
    before: &Application,
    after: &Application,
    seal: &Seal<'_>,
) -> Result<(), StoreError> {
    follow_plan(conn, before, after, seal, |plan| apply(conn, after, plan))
}

/// [`follow`] for a rollback, which the caps do not stop: the restored version's settings fit
/// when they were written, what they may exceed now is one manifest's settings, and refusing
/// would keep a failed version active because a subscriber wrote options since.
pub fn follow_back(
    conn: &Connection,
    before: &Application,
    after: &Application,
    seal: &Seal<'_>,
) -> Result<(), StoreError> {
    follow_plan(conn, before, after, seal, |plan| write(conn, plan))
}

fn follow_plan(
    conn: &Connection,
    before: &Application,
    after: &Application,
    seal: &Seal<'_>,
    write: impl FnOnce(&[(String, Vec<OptionChange>)]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use crate::store::applications::resolved_manifest;
    if let Some(restored) = resolved_manifest(after) {
        let old = resolved_manifest(before);
        write(&plan(conn, after, old.as_ref(), &restored, seal)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
