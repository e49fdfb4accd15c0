//! Rolling back a failed rollout: the version that was stable becomes active again, and every
//! subscribed tenant's settings follow it as after an upload (keys it lacks deleted, the others
//! at its defaults; what a subscriber wrote stays its own). The supervisor decides when and
//! calls this through [`crate::supervisor::Settings::roll_back`], since the flows depend on the
//! supervisor's handle and not the other way round.

use rusqlite::Connection;

use super::settings_propagation;

use crate::store::StoreError;
use crate::store::applications::{self, Application};
use crate::store::desired;
use crate::store::settings::Seal;

/// Rolls application `application_id` back from `failed` to `previous` with `reason`, in one
/// transaction. Returns the application as it is now, None when the active version changed
/// meanwhile (a newer upload wins). Invalid, changing nothing, when `previous` would move the
/// terms other subscribed tenants agreed to (`super::terms`): the failed version stays.
pub fn roll_back(
    conn: &mut Connection,
    application_id: i64,
    failed: &str,
    previous: &str,
    reason: &str,
    seal: &Seal<'_>,
) -> Result<Option<Application>, StoreError> {
    let tx = conn.transaction()?;
    let before = applications::get_any(&tx, application_id)?;
    if !desired::restore_version(&tx, application_id, failed, previous, reason)? {
        return Ok(None);
    }
    let after = applications::get_any(&tx, application_id)?;
    super::terms::check_kept(&tx, &before, &super::terms::Terms::of(&after))?;
    settings_propagation::follow(&tx, &before, &after, seal)?;
    tx.commit()?;
    Ok(Some(after))
}
