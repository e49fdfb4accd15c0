//! Acting on recorded intents ([`crate::store::intents`]): undoing an upload whose version was
//! never recorded, finishing an application's deletion, removing an image a re-upload
//! replaced. The same code runs when the request itself fails (or, for a replaced image, right
//! after the upload), in background retries and at start for what a kill interrupted, so all
//! leave the engine and the data dir alike.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Apps, CONVERGE_LIMIT};
use crate::store::artifacts;
use crate::store::intents::{self, DeletionIntent, Intent, ReplacedImage, UploadIntent};
use crate::supervisor::Scope;

/// What to do with Berth's tag of an upload that was not recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum TagRepair {
    /// Not on the upload's image (never tagged, or moved on since): not the upload's to touch.
    Keep,
    /// Back to the image it named before (a snapshot re-upload).
    PointAt(String),
    Remove,
}

/// How to undo an upload that was not recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoPlan {
    pub tag: TagRepair,
    /// Only an image the upload brought in and no version uses.
    pub remove_image: bool,
}

/// What the database says about an unrecorded upload's image and tag.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded {
    /// A version uses the image.
    pub image: bool,
    /// A version records the tag on the image (a later upload of the same package).
    pub tag: bool,
}

/// Decides how to undo `intent`, given what Berth's tag names now and what versions use.
pub fn undo_plan(intent: &UploadIntent, tag_now: Option<&str>, recorded: Recorded) -> UndoPlan {
    let tag = match (tag_now, &intent.tag_before) {
        _ if recorded.tag => TagRepair::Keep,
        (Some(now), Some(before)) if now == intent.image_id && *before != intent.image_id => {
            TagRepair::PointAt(before.clone())
        }
        (Some(now), None) if now == intent.image_id => TagRepair::Remove,
        _ => TagRepair::Keep,
    };
    UndoPlan {
        tag,
        remove_image: !intent.image_existed && !recorded.image,
    }
}

/// `repo:tag` split at the tag's colon (Berth's repositories have no registry port).
fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let (repo, tag) = reference.rsplit_once(':')?;
    (!tag.contains('/')).then_some((repo, tag))
}

/// Puts the engine and the data dir back as they were before the upload of `intent`, unless
/// its version was recorded; then finishes the intent. False when something could not be
/// undone (the intent stays for the next start). Call with the upload lock held.
pub async fn undo_upload(apps: &Apps, id: i64, intent: &UploadIntent) -> bool {
    let (package, image, tag) = (
        intent.package_file.clone(),
        intent.image_id.clone(),
        intent.tag.clone(),
    );
    let looked_up = apps
        .store
        .run(move |c| {
            let uses = Recorded {
                image: artifacts::image_in_use(c, &image)?,
                tag: artifacts::tag_recorded(c, &tag, &image)?,
            };
            Ok((artifacts::package_recorded(c, &package)?, uses))
        })
        .await;
    let (recorded, uses) = match looked_up {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the versions to undo an upload");
            return false;
        }
    };
    if !recorded {
        let tag_now = match apps.runtime.image_id(&intent.tag).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "engine unavailable; an interrupted upload stays to undo");
                return false;
            }
        };
        let plan = undo_plan(intent, tag_now.as_deref(), uses);
        let mut undone = true;
        let tagged = match (&plan.tag, split_reference(&intent.tag)) {
            (TagRepair::PointAt(before), Some((repo, tag))) => {
                apps.runtime.tag(before, repo, tag).await
            }
            (TagRepair::Remove, _) => apps.runtime.remove_image(&intent.tag).await,
            _ => Ok(()),
        };
        if let Err(e) = tagged {
            tracing::warn!(tag = %intent.tag, error = %e, "cannot restore Berth's tag of an undone upload");
            undone = false;
        }
        if plan.remove_image
            && let Err(e) = apps.runtime.remove_image(&intent.image_id).await
        {
            // Refused while the engine answers: something else came to use the image (a
            // container, another tag), so it is not the upload's to remove any more.
            match apps.runtime.image_id(&intent.image_id).await {
                Ok(_) => {
                    tracing::info!(image = %intent.image_id, error = %e, "the image of an undone upload is in use elsewhere; kept")
                }
                Err(_) => {
                    tracing::warn!(image = %intent.image_id, error = %e, "cannot remove the image of an undone upload");
                    undone = false;
                }
            }
        }
        undone &= remove_file(&apps.data_dir.join(&intent.package_file));
        if !undone {
            return false;
        }
        tracing::info!(image = %intent.image_id, tag = %intent.tag, "undid an upload that was not recorded");
    }
    finish(apps, id).await
}

/// Removes the images, tags and package files of a deleted application once the supervisor
/// has removed its containers; then finishes the intent. False when something is left (the
/// intent stays for the next start).
pub async fn finish_deletion(apps: &Apps, id: i64, intent: &DeletionIntent) -> bool {
    // Containers go first: an image still used by a container cannot be removed.
    let scope = Scope::Application(intent.application_id);
    if !apps.supervisor.converge(scope, CONVERGE_LIMIT).await {
        tracing::warn!(
            application = intent.application_id,
            "containers not yet removed; the deletion is finished at the next start"
        );
        return false;
    }
    let mut done = true;
    for version in &intent.versions {
        if let Err(e) = apps.runtime.remove_image(&version.image_tag).await {
            tracing::warn!(tag = %version.image_tag, error = %e, "cannot remove a deleted application's image tag");
            done = false;
        }
        done &= remove_file(&apps.data_dir.join(&version.package_file));
    }
    let dir = apps.data_dir.join(&intent.package_dir);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove a deleted application's packages");
        done = false;
    }
    // The tenant's directory too once empty (its last application, or the tenant, went; a
    // resumed tenant deletion has nothing else to remove it). Refused while it holds anything,
    // and no upload makes it meanwhile: they run under the same lock as this.
    if let Some(tenant_dir) = dir.parent() {
        let _ = std::fs::remove_dir(tenant_dir);
    }
    done && finish(apps, id).await
}

/// What to do about an image a re-upload replaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplacedImagePlan {
    /// Nothing of the upload's left to remove: the image is gone, or in another's keeping (a
    /// version records it, so its own deletion removes it; or a tag names it, another
    /// installation's or someone's by hand, and the image goes with its last tag).
    Done,
    /// No version and no name: remove it. The engine refuses while a container uses it (the
    /// old revision's, until the rollout retires it), and the intent is tried again later.
    Remove,
}

/// Decides about a replaced image, given whether a version records it (`recorded`) and the
/// tags naming it in the engine (`tags`; None when the engine does not have it).
pub fn replaced_image_plan(recorded: bool, tags: Option<&[String]>) -> ReplacedImagePlan {
    match tags {
        Some([]) if !recorded => ReplacedImagePlan::Remove,
        _ => ReplacedImagePlan::Done,
    }
}

/// Removes the image a re-upload replaced once nothing refers to it and no container uses it;
/// then finishes the intent. False while it cannot be removed yet (the intent stays, for a
/// retry or the next start). Call with the upload lock held, so no upload records the image
/// between the look and the removal.
pub async fn remove_replaced_image(apps: &Apps, id: i64, replaced: &ReplacedImage) -> bool {
    let image = replaced.image_id.clone();
    let recorded = match apps
        .store
        .run(move |c| artifacts::image_in_use(c, &image))
        .await
    {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the versions to remove a replaced image");
            return false;
        }
    };
    let tags = match apps.runtime.image_tags(&replaced.image_id).await {
        Ok(tags) => tags,
        Err(e) => {
            tracing::warn!(image = %replaced.image_id, error = %e, "engine unavailable; a replaced image stays to remove");
            return false;
        }
    };
    match replaced_image_plan(recorded, tags.as_deref()) {
        ReplacedImagePlan::Done => {
            tracing::debug!(image = %replaced.image_id, recorded, ?tags, "a replaced image is not Berth's to remove");
        }
        ReplacedImagePlan::Remove => {
            if let Err(e) = apps.runtime.remove_image(&replaced.image_id).await {
                tracing::info!(image = %replaced.image_id, error = %e, "a replaced image is still in use; removal retried later");
                return false;
            }
            tracing::info!(
                image = %replaced.image_id,
                tenant = %replaced.tenant,
                application = replaced.application_id,
                version = %replaced.version,
                "removed the image a re-upload replaced"
            );
        }
    }
    finish(apps, id).await
}

/// Delays before retrying an intent that could not be acted on (engine away, containers not
/// yet removed); what is still left after the last is acted on at the next start.
const RETRIES: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

/// Undoes an upload, finishes a deletion or removes a replaced image. Call with the upload
/// lock held.
async fn act(apps: &Apps, id: i64, intent: &Intent) -> bool {
    match intent {
        Intent::Upload(upload) => undo_upload(apps, id, upload).await,
        Intent::DeleteApplication(deletion) => finish_deletion(apps, id, deletion).await,
        Intent::RemoveReplacedImage(replaced) => remove_replaced_image(apps, id, replaced).await,
    }
}

/// Retries, in the background, an intent that could not be acted on just now.
pub fn retry_later(apps: Arc<Apps>, id: i64, intent: Intent) {
    tokio::spawn(async move {
        for delay in RETRIES {
            tokio::time::sleep(delay).await;
            let _uploads = apps.upload_lock.lock().await;
            if act(&apps, id, &intent).await {
                return;
            }
        }
        tracing::warn!(
            id,
            "an interrupted operation is still not finished; the next start retries it"
        );
    });
}

/// Finishes or undoes what the previous process left (read before the server accepted
/// requests, so no intent of this process is among them).
pub async fn resume(apps: Arc<Apps>, pending: Vec<(i64, Intent)>) {
    for (id, intent) in pending {
        let uploads = apps.upload_lock.lock().await;
        if act(&apps, id, &intent).await {
            tracing::info!(id, "finished an operation a restart interrupted");
        } else {
            drop(uploads);
            retry_later(Arc::clone(&apps), id, intent);
        }
    }
}

/// The files under `packages/<tenant>/<application>/` nothing refers to: `found` (relative to
/// the data dir) less those `kept` (a version records them, or a pending intent names them).
pub fn orphan_packages<'a>(found: &'a [String], kept: &HashSet<String>) -> Vec<&'a String> {
    found.iter().filter(|f| !kept.contains(*f)).collect()
}

/// At start, before any request: removes package files no version records and no pending
/// intent names (left by operations interrupted before intents existed, or by hand; they
/// would count against the tenant's quota for good), then the empty directories. Returns how
/// many files went.
pub fn sweep_packages(
    data_dir: &Path,
    store: &crate::store::Store,
    pending: &[(i64, Intent)],
) -> Result<usize, crate::store::StoreError> {
    let mut kept = store.run_now(artifacts::package_files)?;
    for (_, intent) in pending {
        match intent {
            Intent::Upload(u) => {
                kept.insert(u.package_file.clone());
            }
            Intent::DeleteApplication(d) => {
                kept.extend(d.versions.iter().map(|v| v.package_file.clone()));
            }
            Intent::RemoveReplacedImage(_) => {}
        }
    }
    let root = data_dir.join(crate::PACKAGES_DIR);
    let mut found = Vec::new();
    let mut dirs = Vec::new();
    for tenant in subdirs(&root) {
        for app in subdirs(&root.join(&tenant)) {
            let dir = format!("{}/{tenant}/{app}", crate::PACKAGES_DIR);
            let entries = std::fs::read_dir(data_dir.join(&dir)).into_iter().flatten();
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file())
                    && let Some(name) = entry.file_name().to_str()
                {
                    found.push(format!("{dir}/{name}"));
                }
            }
            dirs.push(dir);
        }
        dirs.push(format!("{}/{tenant}", crate::PACKAGES_DIR));
    }
    let orphans = orphan_packages(&found, &kept);
    for file in &orphans {
        tracing::info!(%file, "removing a package file no version refers to");
        remove_file(&data_dir.join(file));
    }
    // Innermost first; a directory that still holds something stays.
    for dir in dirs {
        let _ = std::fs::remove_dir(data_dir.join(dir));
    }
    Ok(orphans.len())
}

/// Names of the directories in `dir` (none if it cannot be read).
fn subdirs(dir: &Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect()
}

fn remove_file(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a package");
            false
        }
    }
}

async fn finish(apps: &Apps, id: i64) -> bool {
    match apps.store.run(move |c| intents::finish(c, id)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(id, error = %e, "cannot mark an intent done");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(image_existed: bool, tag_before: Option<&str>) -> UploadIntent {
        UploadIntent {
            image_id: "sha256:new".into(),
            image_existed,
            tag: "berth/i/t1-1:1.0.0-SNAPSHOT".into(),
            tag_before: tag_before.map(str::to_owned),
            package_file: "packages/t1/1/x.zip".into(),
        }
    }

    #[test]
    fn an_unrecorded_upload_is_undone_only_where_it_acted() {
        use TagRepair::*;
        // (image existed, tag before, tag now, image in use) → plan, with no version on the tag
        let cases = [
            // Killed after the load, before the tag: only the image is the upload's.
            (false, None, None, false, Keep, true),
            // Tagged, never recorded: tag and image go.
            (false, None, Some("sha256:new"), false, Remove, true),
            // A snapshot re-upload moved the tag: it goes back.
            (
                false,
                Some("sha256:old"),
                Some("sha256:new"),
                false,
                PointAt("sha256:old".into()),
                true,
            ),
            // The same image as before: nothing of the upload's to undo in the engine.
            (
                true,
                Some("sha256:new"),
                Some("sha256:new"),
                true,
                Keep,
                false,
            ),
            // The tag moved on since (another upload): not touched.
            (false, None, Some("sha256:other"), false, Keep, true),
            // An image the engine had before, or a version uses, is never removed.
            (true, None, Some("sha256:new"), false, Remove, false),
            (false, None, None, true, Keep, false),
        ];
        for (existed, before, now, in_use, tag, remove_image) in cases {
            let recorded = Recorded {
                image: in_use,
                tag: false,
            };
            assert_eq!(
                undo_plan(&intent(existed, before), now, recorded),
                UndoPlan { tag, remove_image },
                "{existed} {before:?} {now:?} {in_use}"
            );
        }
    }

    #[test]
    fn a_tag_a_later_upload_recorded_is_kept() {
        let recorded = Recorded {
            image: true,
            tag: true,
        };
        for before in [None, Some("sha256:old")] {
            assert_eq!(
                undo_plan(&intent(false, before), Some("sha256:new"), recorded),
                UndoPlan {
                    tag: TagRepair::Keep,
                    remove_image: false
                }
            );
        }
    }

    #[test]
    fn a_replaced_image_is_removed_only_when_nothing_names_it() {
        use ReplacedImagePlan::*;
        let ours = ["berth/i/t1-1:1.0.0".to_owned()];
        let foreign = ["berth/other/t1-1:1.0.0-SNAPSHOT".to_owned()];
        let none: [String; 0] = [];
        // (a version records it, its tags in the engine) → plan
        let cases: [(bool, Option<&[String]>, ReplacedImagePlan); 6] = [
            // No version, no tag: the re-upload's leftover.
            (false, Some(&none), Remove),
            // Already gone (removed by hand, or an earlier attempt got through).
            (false, None, Done),
            (true, None, Done),
            // A later upload brought it back as a version: that version's now.
            (true, Some(&ours), Done),
            (true, Some(&none), Done),
            // Another installation (or a person) names it: the image goes with that tag.
            (false, Some(&foreign), Done),
        ];
        for (recorded, tags, plan) in cases {
            assert_eq!(
                replaced_image_plan(recorded, tags),
                plan,
                "{recorded} {tags:?}"
            );
        }
    }

    #[test]
    fn only_package_files_nothing_refers_to_are_orphans() {
        let found: Vec<String> = [
            "packages/t1/1/a.zip",
            "packages/t1/1/b.zip",
            "packages/t2/7/c.zip",
        ]
        .map(str::to_owned)
        .to_vec();
        let kept: HashSet<String> = ["packages/t1/1/a.zip".to_owned()].into();
        assert_eq!(
            orphan_packages(&found, &kept),
            vec!["packages/t1/1/b.zip", "packages/t2/7/c.zip"]
        );
        assert!(orphan_packages(&found[..1], &kept).is_empty());
    }

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(
            split_reference("berth/i/t1-1:1.0.0"),
            Some(("berth/i/t1-1", "1.0.0"))
        );
        assert_eq!(split_reference("host:5000/repo"), None);
        assert_eq!(split_reference("repo"), None);
    }
}
