//! How much manifest text one tenant's applications may show. Every application listing
//! (`GET /application/applications…`, up to 2000 a page) and a tenant's representation
//! (`/tenant/currentTenant`: all its applications, unpaged) reads, parses and sends the active
//! manifest of each application it shows, under the store's one lock. A manifest may be up to
//! 1 MiB, so without a bound 1,000 applications made each such call cost a gigabyte, while
//! real manifests take 1-2 KiB. The bound is on the sum over an owner's applications, so one
//! tenant adds at most [`MAX_SHOWN_BYTES`] to any listing, however many applications it has
//! (twice to its own representation, which shows its own applications again among those it is
//! subscribed to).
//!
//! What counts is the manifest as stored (defaults filled in, `credentials.*` defaults
//! sealed), which is what the listings read: the active version's, and while a rollout is in
//! progress the larger of it and the stable version's, which a failed rollout makes active
//! again. So a rollback never takes an owner past the budget and is never refused for it; an
//! upload or an activation that would is refused (422), unless it does not add to a total
//! already past the budget (one from before the budget, which only shrinks from then on).

use manifests_schema::Manifest;
use rusqlite::Connection;

use super::{Apps, FlowError};
use crate::store::StoreError;
use crate::store::manifest_sizes::{self, ManifestBytes};

/// Most bytes of stored manifests one tenant's applications may show (see the module).
pub const MAX_SHOWN_BYTES: u64 = 4 << 20;

/// What one application counts: its active manifest, or the stable one while larger.
pub fn charge(app: &ManifestBytes) -> u64 {
    app.stable
        .as_ref()
        .map_or(app.active, |(_, stable)| app.active.max(*stable))
}

/// What an owner's applications count.
pub fn total(apps: &[ManifestBytes]) -> u64 {
    apps.iter().map(charge).fold(0, u64::saturating_add)
}

/// `apps` once `version` of `application_id`, whose stored manifest takes `bytes`, is active
/// (an upload: when it replaces the stable version's row, that one takes `bytes` too).
pub fn with_active(
    apps: &[ManifestBytes],
    application_id: i64,
    version: &str,
    bytes: u64,
) -> Vec<ManifestBytes> {
    apps.iter()
        .map(|app| {
            if app.application_id != application_id {
                return app.clone();
            }
            let stable = app.stable.as_ref().map(|(v, b)| {
                let b = if v == version { bytes } else { *b };
                (v.clone(), b)
            });
            ManifestBytes {
                application_id,
                active: bytes,
                stable: stable.filter(|(v, _)| v != version),
            }
        })
        .collect()
}

/// Refused: the change would take the owner's shown manifests past the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The manifests of tenant {tenant}'s applications would take {after} bytes as Berth keeps them (active versions, and during a rollout the version it returns to), over the {budget} bytes one tenant's applications may show: every application listing reads them. Make this manifest smaller (real ones take 1-2 KiB; remove large unknown keys and setting defaults) or delete applications the tenant no longer needs; the tenant's applications take {before} bytes now"
)]
pub struct OverBudget {
    pub tenant: String,
    pub before: u64,
    pub after: u64,
    pub budget: u64,
}

/// Whether going from `before` to `after` bytes is allowed: refused only when it ends past the
/// budget and adds to the total.
pub fn check(tenant: &str, before: u64, after: u64, budget: u64) -> Result<(), OverBudget> {
    if after > budget && after > before {
        return Err(OverBudget {
            tenant: tenant.to_owned(),
            before,
            after,
            budget,
        });
    }
    Ok(())
}

/// What `owner`'s applications count now, in the caller's transaction.
pub fn shown(conn: &Connection, owner: &str) -> Result<u64, StoreError> {
    Ok(total(&manifest_sizes::manifest_bytes(conn, owner)?))
}

/// In the transaction that changed `owner`'s applications, from `before` bytes: Invalid (the
/// transaction is dropped) when the change is refused.
pub fn check_in(conn: &Connection, owner: &str, before: u64) -> Result<(), StoreError> {
    check(owner, before, shown(conn, owner)?, MAX_SHOWN_BYTES)
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// An upload of `manifest` to application `id` of `owner`, before its image loads: its
/// manifest as it would be stored, in place of the active one (the recording transaction
/// checks again with what it stores).
pub async fn check_upload(
    apps: &Apps,
    id: i64,
    owner: &str,
    app_name: &str,
    manifest: &Manifest,
) -> Result<(), FlowError> {
    let stored = super::settings::stored_manifest(&apps.secrets, app_name, manifest)
        .map_err(FlowError::store("applications"))?;
    let bytes =
        u64::try_from(serde_json::to_string(&stored).map_or(0, |t| t.len())).unwrap_or(u64::MAX);
    let (tenant, version) = (owner.to_owned(), manifest.version.clone());
    let now = apps
        .db("applications", move |c| {
            manifest_sizes::manifest_bytes(c, &tenant)
        })
        .await?;
    let after = with_active(&now, id, &version, bytes);
    check(owner, total(&now), total(&after), MAX_SHOWN_BYTES)
        .map_err(|e| FlowError::invalid("applications", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: i64, active: u64, stable: Option<(&str, u64)>) -> ManifestBytes {
        ManifestBytes {
            application_id: id,
            active,
            stable: stable.map(|(v, b)| (v.to_owned(), b)),
        }
    }

    #[test]
    fn an_application_counts_its_active_manifest_or_a_larger_stable_one() {
        let cases = [
            (app(1, 10, None), 10),
            (app(1, 10, Some(("1.0", 30))), 30),
            (app(1, 30, Some(("1.0", 10))), 30),
            (app(1, 0, None), 0),
        ];
        for (app, expected) in cases {
            assert_eq!(charge(&app), expected, "{app:?}");
        }
        assert_eq!(total(&[app(1, 10, None), app(2, 5, Some(("1", 20)))]), 30);
        assert_eq!(total(&[app(1, u64::MAX, None), app(2, 1, None)]), u64::MAX);
    }

    #[test]
    fn an_upload_replaces_the_active_manifest_and_keeps_the_stable_one() {
        type Case = (
            Vec<ManifestBytes>,
            (i64, &'static str, u64),
            Vec<ManifestBytes>,
        );
        let cases: [Case; 4] = [
            // A new version: the stable one still counts while the rollout runs.
            (
                vec![app(1, 10, Some(("1.0", 40))), app(2, 7, None)],
                (1, "2.0", 25),
                vec![app(1, 25, Some(("1.0", 40))), app(2, 7, None)],
            ),
            // Never ran: only the new manifest.
            (vec![app(1, 10, None)], (1, "2.0", 3), vec![app(1, 3, None)]),
            // The stable version re-uploaded (a snapshot): its row is the new manifest.
            (
                vec![app(1, 10, Some(("1.0-SNAPSHOT", 40)))],
                (1, "1.0-SNAPSHOT", 5),
                vec![app(1, 5, None)],
            ),
            // Another application of the owner is not there: nothing changes.
            (vec![app(2, 7, None)], (1, "1.0", 9), vec![app(2, 7, None)]),
        ];
        for (apps, (id, version, bytes), expected) in cases {
            assert_eq!(with_active(&apps, id, version, bytes), expected, "{apps:?}");
        }
    }

    #[test]
    fn only_a_change_that_ends_past_the_budget_and_adds_is_refused() {
        let cases = [
            (0, 100, Ok(())),
            (90, 100, Ok(())),
            (90, 101, Err((90, 101))),
            // Past the budget already (state from before it): shrinking or keeping passes.
            (500, 400, Ok(())),
            (500, 500, Ok(())),
            (500, 501, Err((500, 501))),
        ];
        for (before, after, expected) in cases {
            let got = check("t1", before, after, 100).map_err(|e| (e.before, e.after));
            assert_eq!(got, expected, "{before} → {after}");
        }
        let message = check("t1", 0, 101, 100).unwrap_err().to_string();
        for part in ["tenant t1", "101 bytes", "100 bytes", "delete applications"] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn a_rollback_never_adds_to_what_the_owner_counts() {
        // Failed version active, stable kept: the rollback makes the stable one active and
        // clears the rollout, whichever of the two is larger.
        for (failed, stable) in [(10, 40), (40, 10), (0, 0), (7, 7)] {
            let during = [app(1, failed, Some(("1.0", stable))), app(2, 3, None)];
            let after = [app(1, stable, None), app(2, 3, None)];
            assert!(total(&after) <= total(&during), "{failed} {stable}");
            assert!(check("t1", total(&during), total(&after), 0).is_ok());
        }
    }
}
