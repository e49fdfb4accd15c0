//! Images: load a `docker save` archive from a byte stream, look images up, tag and remove them.

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{ImportImageOptions, RemoveImageOptions, TagImageOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{Runtime, RuntimeError};

fn is_not_found(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Runtime {
    /// The id (`sha256:…`) of the image `reference` (id, name:tag), or None if absent.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams a `docker save` archive into the engine (`POST /images/load`). Returns what the
    /// engine reports as loaded (`name:tag` or `sha256:…` per image).
    pub async fn load_image<S>(&self, archive: S) -> Result<Vec<String>, RuntimeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
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
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        Ok(self.docker.tag_image(image, Some(options)).await?)
    }

    /// Removes a tag (or, given an id, the image). Absent images are not an error. An image
    /// still used elsewhere (other tags, containers) is only untagged, never forced away.
    pub async fn remove(&self, reference: &str) -> Result<(), RuntimeError> {
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

    /// Removes an image by id with every tag it has (used only for images Berth itself loaded).
    pub async fn remove_with_tags(&self, image_id: &str) -> Result<(), RuntimeError> {
        let options = RemoveImageOptions {
            force: true,
            noprune: false,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(image_id, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
