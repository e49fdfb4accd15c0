//! Counts again, after start, what the versions kept before gzip layers were counted cost
//! (`store::artifacts::uncounted`): their recorded cost has `image.tar` at its size only, so an
//! image whose gzip layers are a few KiB in the archive and gigabytes in Docker stayed
//! undercharged. One version at a time, each package streamed on a blocking thread through the
//! upload's own check ([`package::measure`]); the quota check sums the recorded costs
//! meanwhile. A package that cannot be counted keeps its recorded cost and is not tried again.

use std::sync::Arc;

use super::Apps;
use crate::package;
use crate::storage;
use crate::store::artifacts::{self, Uncounted};

/// Recounts every uncounted kept version, then ends.
pub async fn run(apps: Arc<Apps>) {
    let versions = match apps.store.run(|c| artifacts::uncounted(c)).await {
        Ok(versions) => versions,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the versions whose storage cost to count again");
            return;
        }
    };
    if versions.is_empty() {
        return;
    }
    tracing::info!(
        versions = versions.len(),
        "counting again the storage cost of versions kept before gzip layers were counted"
    );
    let mut counted = 0usize;
    for version in versions {
        let cost = count(&apps, &version).await;
        let (application_id, name) = (version.application_id, version.version.clone());
        match apps
            .store
            .run(move |c| artifacts::record_count(c, &version, cost))
            .await
        {
            Ok(_) => counted += 1,
            // Still uncounted: the next start tries again.
            Err(e) => tracing::warn!(
                application_id,
                version = %name,
                error = %e,
                "cannot record a kept version's storage cost"
            ),
        }
    }
    tracing::info!(counted, "kept versions' storage cost counted again");
}

/// What `version` costs now, or None (logged) when its package cannot be counted.
async fn count(apps: &Apps, version: &Uncounted) -> Option<u64> {
    let path = apps.data_dir.join(&version.package_file);
    let limit = apps.image_size_limit;
    let measured = tokio::task::spawn_blocking(move || package::measure(&path, limit)).await;
    let outcome = match measured {
        Ok(measured) => storage::recounted_cost(measured).map_err(|e| e.to_string()),
        Err(e) => Err(format!("the count failed: {e}")),
    };
    outcome
        .inspect_err(|error| {
            tracing::warn!(
                application_id = version.application_id,
                version = %version.version,
                package = %version.package_file,
                %error,
                "cannot count a kept version's storage cost again; it keeps its recorded cost"
            );
        })
        .ok()
}
