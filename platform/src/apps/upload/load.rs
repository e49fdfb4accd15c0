//! Streams a checked package's image into the engine and rules on it before the engine may
//! load it: the storage quota again, the version rule, and the upload's intent recorded. Unless
//! all agree, the engine gets a failed stream and loads nothing.

use std::sync::Arc;

use super::quota::Requota;
use super::{Target, UploadError, package_error, task_failed, unavailable, undo};
use crate::apps::Apps;
use crate::package::{ImageInfo, Opened, PackageError};
use crate::runtime::RuntimeError;
use crate::store::applications::Version;
use crate::store::intents::{self, Intent, UploadIntent};

/// Streams the package's image into the engine, checked on the way. Once the whole archive
/// passed, and before its end goes out, the storage quota is checked again with what the image
/// unpacks to ([`Requota`]) and [`decide`] rules on the image it holds; unless both agree, the
/// engine gets a failed stream and loads nothing. Returns the image, the recorded intent
/// (undone here if the load fails after it) and what the version costs.
pub(super) async fn load(
    apps: &Arc<Apps>,
    opened: Opened,
    existing: Option<&Version>,
    target: &Target<'_>,
    requota: &Requota,
) -> Result<(ImageInfo, i64, UploadIntent, u64), UploadError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let (seen, seen_by_decide) = tokio::sync::oneshot::channel::<ImageInfo>();
    let (agree, agreed) = tokio::sync::oneshot::channel::<bool>();
    let reader = tokio::task::spawn_blocking(move || {
        opened.stream_image(
            |chunk| sender.blocking_send(chunk).is_ok(),
            |image| seen.send(image.clone()).is_ok() && agreed.blocking_recv().unwrap_or(false),
        )
    });
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let load = apps.runtime.load_image(Box::pin(stream));
    let ruling = async {
        // No image: the archive failed its checks, and the reader says why.
        let Ok(image) = seen_by_decide.await else {
            return Ok(None);
        };
        let checked = requota
            .check(apps, target.tenant, existing, image.unpacked_bytes)
            .await;
        let decided = match checked {
            Ok(cost) => decide(apps, &image, existing, target)
                .await
                .map(|(id, intent)| (id, intent, cost)),
            Err(e) => Err(e),
        };
        let _ = agree.send(decided.is_ok());
        decided.map(Some)
    };
    let (loaded, ruling) = tokio::join!(load, ruling);
    let streamed = reader.await.map_err(task_failed)?;
    let (intent_id, intent, stored_bytes) = match ruling {
        Ok(Some(recorded)) => recorded,
        Ok(None) => return Err(failed_load(streamed, loaded)),
        Err(refused) => return Err(refused),
    };
    let outcome = match (streamed, loaded) {
        (Ok(image), Ok(loaded)) => check_loaded(&image, &loaded).map(|()| image),
        (streamed, loaded) => Err(failed_load(streamed, loaded)),
    };
    match outcome {
        Ok(image) => Ok((image, intent_id, intent, stored_bytes)),
        Err(e) => {
            undo(apps, intent_id, intent).await;
            Err(e)
        }
    }
}

/// Why a load failed: the package's own fault first, as it is what the tenant can fix; then
/// the engine refusing the archive (the package again); then the engine failing (unreachable,
/// timed out: worth trying again, 503, not a bad package).
fn failed_load(
    streamed: Result<ImageInfo, PackageError>,
    loaded: Result<Vec<String>, RuntimeError>,
) -> UploadError {
    match (streamed, loaded) {
        (Err(e), _) if !matches!(e, PackageError::Io(_) | PackageError::Stopped) => {
            package_error(e)
        }
        (_, Err(e @ RuntimeError::Rejected(_))) => {
            UploadError::Invalid(format!("Docker could not load image.tar: {e}"))
        }
        (_, Err(e)) => unavailable("The container engine failed while loading image.tar")(e),
        (Err(e), Ok(_)) => package_error(e),
        (Ok(_), Ok(_)) => UploadError::Internal("the image load ended without a ruling".into()),
    }
}

/// The archive Docker got names one image and no tag: anything else reported means it loaded
/// something Berth did not check.
fn check_loaded(image: &ImageInfo, loaded: &[String]) -> Result<(), UploadError> {
    if loaded != [image.id.as_str()] {
        tracing::error!(expected = %image.id, ?loaded, "the engine loaded other than the checked image");
        return Err(UploadError::Invalid(
            "image.tar loaded other images or tags than the one its manifest.json names".into(),
        ));
    }
    Ok(())
}

/// Rules on the checked image before the engine may load it: a release version's image is
/// immutable; then records what the engine looked like before, as the upload's intent, so a
/// failure (or a kill) from here on can put it back.
async fn decide(
    apps: &Apps,
    image: &ImageInfo,
    existing: Option<&Version>,
    target: &Target<'_>,
) -> Result<(i64, UploadIntent), UploadError> {
    if let Some(existing) = existing
        && !target.snapshot
        && existing.image_id != image.id
    {
        return Err(UploadError::Conflict(format!(
            "Version {} was already uploaded with a different image; release versions are immutable, bump the version (or use a -SNAPSHOT version)",
            target.version
        )));
    }
    let engine = "The container engine is not available; try again later";
    let runtime = &apps.runtime;
    let image_existed = runtime
        .image_id(&image.id)
        .await
        .map_err(unavailable(engine))?
        .is_some();
    let tag_before = runtime
        .image_id(&target.tag.reference())
        .await
        .map_err(unavailable(engine))?;
    let intent = UploadIntent {
        image_id: image.id.clone(),
        image_existed,
        tag: target.tag.reference(),
        tag_before,
        package_file: target.package_file.to_owned(),
    };
    let recorded = Intent::Upload(intent.clone());
    let intent_id = apps
        .store
        .run(move |c| intents::record(c, &recorded))
        .await?;
    Ok((intent_id, intent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_load_blames_the_package_only_for_what_the_package_did() {
        let io = || {
            Err(PackageError::Io(std::io::Error::from(
                std::io::ErrorKind::BrokenPipe,
            )))
        };
        let bad = || Err(PackageError::BadEntry("entry \"x\" is bad".into()));
        let rejected = || Err(RuntimeError::Rejected("unexpected EOF".into()));
        let down = || {
            Err(RuntimeError::Connect {
                socket: "/var/run/docker.sock".into(),
                message: "connection refused".into(),
            })
        };
        let timed_out = || Err(RuntimeError::Docker("timed out".into()));
        // (what the stream saw, what the engine said, the status class: 422, 503)
        type Case = (
            Result<ImageInfo, PackageError>,
            Result<Vec<String>, RuntimeError>,
            u16,
        );
        let cases: [Case; 5] = [
            (bad(), timed_out(), 422),
            (io(), rejected(), 422),
            (io(), down(), 503),
            (io(), timed_out(), 503),
            (Err(PackageError::Stopped), timed_out(), 503),
        ];
        for (streamed, loaded, status) in cases {
            let why = format!("{streamed:?} / {loaded:?}");
            let got = match failed_load(streamed, loaded) {
                UploadError::Invalid(_) => 422,
                UploadError::Unavailable { .. } => 503,
                other => panic!("{why}: {other:?}"),
            };
            assert_eq!(got, status, "{why}");
        }
    }
}
