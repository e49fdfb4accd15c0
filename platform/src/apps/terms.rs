//! What a tenant agrees to by subscribing to another tenant's microservice: the service reads
//! the subscriber's options of its settings category (`credentials.` ones decrypted) and acts
//! in the subscriber's tenant with its service user, which holds the application's
//! `requiredRoles`. While tenants other than the owner are subscribed, the owner cannot move
//! these terms: the category stays and the required roles do not grow, whether by a new
//! version, an activated or rolled-back one, or an edit of the application. Otherwise the owner
//! of a MARKET service could aim it at any category its subscribers keep secrets in, or give
//! itself administrator rights in every subscriber's tenant.

use std::collections::BTreeSet;

use manifests_schema::Manifest;
use rusqlite::Connection;

use super::settings::setting_keys;
use super::{Apps, FlowError};
use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::subscriptions;

/// The terms an application offers its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The settings category the service reads.
    pub category: String,
    /// The roles its service users hold.
    pub required_roles: BTreeSet<String>,
}

impl Terms {
    /// The terms of `app` as it is (its active manifest and its recorded required roles).
    pub fn of(app: &Application) -> Terms {
        Terms {
            category: setting_keys(app).0,
            required_roles: app.required_roles.iter().cloned().collect(),
        }
    }

    /// The terms `app` would offer with `manifest` active (an upload or an activation).
    pub fn with_manifest(app: &Application, manifest: &Manifest) -> Terms {
        Terms {
            category: manifest.settings_category_or(&app.name).to_owned(),
            required_roles: manifest.required_roles.iter().cloned().collect(),
        }
    }
}

/// Why going from `agreed` to `offered` breaks what subscribers agreed to, if it does.
pub fn breach(agreed: &Terms, offered: &Terms) -> Option<String> {
    let mut why = Vec::new();
    if agreed.category != offered.category {
        why.push(format!(
            "the settings category would change from {:?} to {:?} (the service would read their options in {:?})",
            agreed.category, offered.category, offered.category
        ));
    }
    let more: Vec<&str> = offered
        .required_roles
        .difference(&agreed.required_roles)
        .map(String::as_str)
        .collect();
    if !more.is_empty() {
        why.push(format!(
            "the service users would gain {} in their tenants",
            more.join(", ")
        ));
    }
    (!why.is_empty()).then(|| why.join("; and "))
}

/// Refuses `offered` for `app` (as it is now) while tenants other than its owner are
/// subscribed: Invalid, saying what moved and how to go on. Called in the transaction that
/// makes the change, or under the upload lock, which subscribing takes too.
pub fn check_kept(conn: &Connection, app: &Application, offered: &Terms) -> Result<(), StoreError> {
    let Some(why) = breach(&Terms::of(app), offered) else {
        return Ok(());
    };
    let others = subscriptions::of_application(conn, app.id)?
        .into_iter()
        .filter(|s| s.tenant != app.owner)
        .count();
    if others == 0 {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "{others} other tenant(s) are subscribed to {} on its current terms, and {why}; keep the settings category (\"settingsCategory\", else the contextPath or name it defaults to) and add no required roles, or have them unsubscribe first",
        app.name
    )))
}

/// [`check_kept`] for `manifest` becoming the active one of `owner`'s application `id` (an
/// upload, an activation).
pub async fn check_manifest(
    apps: &Apps,
    id: i64,
    owner: &str,
    manifest: &Manifest,
) -> Result<(), FlowError> {
    let (owner, manifest) = (owner.to_owned(), manifest.clone());
    apps.db("applications", move |conn| {
        // Read again: the caller's copy may predate an upload or activation it waited for.
        let app = applications::get(conn, &owner, id)?;
        check_kept(conn, &app, &Terms::with_manifest(&app, &manifest))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(category: &str, roles: &[&str]) -> Terms {
        Terms {
            category: category.into(),
            required_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn subscribers_keep_the_category_and_no_role_is_added() {
        let agreed = terms("svc", &["ROLE_INVENTORY_READ", "ROLE_ALARM_ADMIN"]);
        // (offered, what the refusal names; None: kept)
        let cases: [(Terms, Option<&[&str]>); 5] = [
            (agreed.clone(), None),
            (terms("svc", &["ROLE_INVENTORY_READ"]), None),
            (terms("svc", &[]), None),
            (
                terms("victim", &["ROLE_INVENTORY_READ"]),
                Some(&["\"svc\"", "\"victim\""]),
            ),
            (
                terms(
                    "svc",
                    &[
                        "ROLE_INVENTORY_READ",
                        "ROLE_TENANT_ADMIN",
                        "ROLE_USER_MANAGEMENT_ADMIN",
                    ],
                ),
                Some(&["ROLE_TENANT_ADMIN, ROLE_USER_MANAGEMENT_ADMIN"]),
            ),
        ];
        for (offered, named) in cases {
            let why = breach(&agreed, &offered);
            match named {
                None => assert_eq!(why, None, "{offered:?}"),
                Some(named) => {
                    let why = why.unwrap_or_default();
                    for name in named {
                        assert!(why.contains(name), "{why} names {name}");
                    }
                }
            }
        }
    }
}
