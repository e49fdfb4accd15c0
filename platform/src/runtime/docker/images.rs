//! Images: load a `docker save` archive from a byte stream, look images up, tag and remove them,
//! and list one installation's tags.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    ImportImageOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use futures_util::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{DockerEngine, is_not_found};
use crate::runtime::{ImageArchive, RuntimeError};

impl DockerEngine {
    /// The id (`sha256:…`) of the image `reference` (id, name:tag), or None if absent.
    pub(super) async fn image_id(&self, reference: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The tags (`repo:tag`) naming the image `reference`, or None if absent.
    pub(super) async fn image_tags(
        &self,
        reference: &str,
    ) -> Result<Option<Vec<String>>, RuntimeError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(Some(image.repo_tags.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The user an image runs as (its config's `User`; empty = root).
    pub(super) async fn image_user(&self, reference: &str) -> Result<String, RuntimeError> {
        let image = self.docker.inspect_image(reference).await?;
        Ok(image.config.and_then(|c| c.user).unwrap_or_default())
    }

    /// Streams a `docker save` archive into the engine (`POST /images/load`). Returns what the
    /// engine reports as loaded: `sha256:…` per untagged image, `name:tag` per tag it set.
    pub(super) async fn load_image(
        &self,
        archive: ImageArchive,
    ) -> Result<Vec<String>, RuntimeError> {
        let options = ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let mut progress = std::pin::pin!(self.docker.import_image_stream(options, archive, None));
        let mut loaded = Vec::new();
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| match e {
                BollardError::DockerStreamError { error } => RuntimeError::Rejected(error),
                other => other.into(),
            })?;
            if let Some(detail) = info.error_detail {
                return Err(RuntimeError::Rejected(detail.message.unwrap_or_default()));
            }
            let text = info.stream.unwrap_or_default();
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("Loaded image ID: ") {
                    loaded.push(id.trim().to_owned());
                } else if let Some(name) = line.strip_prefix("Loaded image: ") {
                    loaded.push(name.trim().to_owned());
                }
            }
        }
        Ok(loaded)
    }

    /// Tags `image` as `repo:tag` (moving the tag if it points elsewhere).
    pub(super) async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        Ok(self.docker.tag_image(image, Some(options)).await?)
    }

    /// Removes a tag (or, given an id, the image). Absent images are not an error. An image
    /// still used elsewhere (other tags, containers) is only untagged, never forced away.
    pub(super) async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The tags under `prefix` (a [`repository_prefix`]) of images last tagged before `before`.
    /// An image whose tag time the engine does not report counts as older.
    pub(super) async fn tags_older_than(
        &self,
        prefix: &str,
        before: OffsetDateTime,
    ) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([("reference".to_owned(), vec![format!("{prefix}*")])]);
        let options = ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let mut tags = Vec::new();
        for image in self.docker.list_images(Some(options)).await? {
            let tagged = match self.docker.inspect_image(&image.id).await {
                Ok(inspect) => inspect
                    .metadata
                    .and_then(|m| m.last_tag_time)
                    .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            if tagged.is_some_and(|t| t >= before) {
                continue;
            }
            tags.extend(
                image
                    .repo_tags
                    .into_iter()
                    .filter(|t| t.starts_with(prefix)),
            );
        }
        Ok(tags)
    }
}
