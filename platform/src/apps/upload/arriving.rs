//! An upload read while its package arrives ([`crate::package::growing`]): the image streams
//! into the engine as the body comes, and the package is read whole once received whenever
//! that cannot go on (another shape, a failed check, a slow sender).

use std::sync::Arc;

use super::{UploadError, accept, accept_opened, task_failed};
use crate::apps::Apps;
use crate::auth::principal::Principal;
use crate::package::{self, growing::Arrival, growing::Pace};
use crate::store::applications::Application;

/// Uploads in progress at once, and for one tenant: each holds a temporary file of up to the
/// upload limit (500 MiB by default) until it is accepted or undone, so together at most
/// 16 × the limit on the data disk, and one tenant cannot take all of it; more than a build
/// pipeline deploying several services at once needs.
pub const UPLOADS: usize = 16;
pub const TENANT_UPLOADS: usize = 4;

/// Uploads whose image streams while the package arrives, at once; see
/// [`crate::apps::Apps::arriving_uploads`].
pub const ARRIVING_UPLOADS: usize = 2;
/// How long an upload read while it arrives may wait for its bytes, in all: it may hold the
/// upload lock meanwhile. 2 s, plus what its bytes take at 32 MiB/s: a package of the default
/// upload limit (500 MiB) may keep the lock waiting about 18 s at most, about what loading a
/// 1 GiB image holds it for, and any sender on a gigabit LAN streams. Slower, the package is
/// read whole once received.
const ARRIVAL_PACE: Pace = Pace {
    grace: std::time::Duration::from_secs(2),
    bytes_per_second: 32 << 20,
};

/// Like [`accept`], for a package still arriving into `temp` ([`package::growing`]): its image
/// streams into the engine as it arrives, and is agreed to only once the complete package
/// passed the checks of a received one. A package of another shape, one that fails on the way,
/// or one that arrives too slowly is read whole once received, which gives the verdict.
pub async fn accept_arriving(
    apps: Arc<Apps>,
    principal: Principal,
    app: Application,
    temp: tempfile::NamedTempFile,
    arrival: Arc<Arrival>,
) -> Result<Application, UploadError> {
    let mut temp = Some(temp);
    if let Ok(_slot) = apps.arriving_uploads.try_acquire() {
        let path = temp
            .as_ref()
            .map(|t| t.path().to_owned())
            .unwrap_or_default();
        let (reading, limit, opening) = (Arc::clone(&arrival), apps.image_size_limit, path.clone());
        let opened = tokio::task::spawn_blocking(move || {
            package::open_arriving(&opening, reading, limit, ARRIVAL_PACE)
        })
        .await
        .map_err(task_failed)?;
        match opened {
            Ok(opened) => {
                let synced = sync_once_arrived(path, Arc::clone(&arrival));
                let accepted = accept_opened(
                    &apps,
                    &principal,
                    app.clone(),
                    &mut temp,
                    opened,
                    synced,
                    Some(&arrival),
                )
                .await;
                match accepted {
                    Ok(app) => return Ok(app),
                    // A verdict on the complete package, or no package at all.
                    Err(e) if temp.is_none() || arrival.verified() || arrival.failed() => {
                        return Err(e);
                    }
                    Err(e) => tracing::info!(
                        application = %app.name,
                        stalled = arrival.stalled(),
                        error = %e,
                        "the package could not be loaded while it arrived; loading it whole"
                    ),
                }
            }
            Err(_) if arrival.stalled() => tracing::info!(
                application = %app.name,
                stalled = true,
                "the package arrives too slowly to be loaded while it arrives; loading it whole"
            ),
            Err(why) => {
                tracing::debug!(application = %app.name, %why, "the package is read once received");
            }
        }
    }
    if !arrival.finished().await {
        return Err(UploadError::Internal("the upload broke off".into()));
    }
    let temp = temp.ok_or_else(|| UploadError::Internal("the upload was kept".into()))?;
    accept(apps, principal, app, temp).await
}

/// Makes the arriving package durable once it is complete (while its image loads).
fn sync_once_arrived(
    path: std::path::PathBuf,
    arrival: Arc<Arrival>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        if !arrival.finished().await {
            return Err(std::io::Error::other("the upload broke off"));
        }
        tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_all())
            .await
            .map_err(std::io::Error::other)?
    })
}
