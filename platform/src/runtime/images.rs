//! Images: load a `docker save` archive from a byte stream, look images up, tag and remove them,
//! and list one installation's tags.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    ImportImageOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Runtime, RuntimeError};

/// The repository prefix of one installation's image tags, `berth/<installation>/`. Images
/// cannot carry a label Berth adds, so the name is what marks them as this installation's.
pub fn repository_prefix(installation: &str) -> String {
    // Repository path components allow [a-z0-9] with separators; the id is generated
    // lowercase alphanumeric, this only guards against a hand-edited id file.
    let installation: String = installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("berth/{installation}/")
}

/// Longest Docker tag.
pub const MAX_TAG: usize = 128;

/// The Docker tag for an application version, or None when it would be longer than [`MAX_TAG`].
/// Different versions always get different tags: tags allow only `[A-Za-z0-9_.-]` and may not
/// start with `.` or `-`, so other bytes (and a leading `.`/`-`) become `_` plus two hex digits
/// and `_` itself becomes `__`; nothing is cut off.
pub fn version_tag(version: &str) -> Option<String> {
    let mut tag = String::with_capacity(version.len());
    for (i, byte) in version.bytes().enumerate() {
        match byte {
            b'_' => tag.push_str("__"),
            b'.' | b'-' if i > 0 => tag.push(char::from(byte)),
            b if b.is_ascii_alphanumeric() => tag.push(char::from(b)),
            other => tag.push_str(&format!("_{other:02x}")),
        }
    }
    (!tag.is_empty() && tag.len() <= MAX_TAG).then_some(tag)
}

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

    /// The user an image runs as (its config's `User`; empty = root).
    pub async fn image_user(&self, reference: &str) -> Result<String, RuntimeError> {
        let image = self.docker.inspect_image(reference).await?;
        Ok(image.config.and_then(|c| c.user).unwrap_or_default())
    }

    /// Streams a `docker save` archive into the engine (`POST /images/load`). Returns what the
    /// engine reports as loaded: `sha256:…` per untagged image, `name:tag` per tag it set.
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

    /// The tags under `prefix` (a [`repository_prefix`]) of images last tagged before `before`.
    /// An image whose tag time the engine does not report counts as older.
    pub async fn tags_older_than(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags_are_distinct_valid_and_bounded() {
        let long = "1".repeat(MAX_TAG);
        let cases = [
            ("1.0.0", Some("1.0.0")),
            ("1.0.0-SNAPSHOT", Some("1.0.0-SNAPSHOT")),
            ("1.0+build", Some("1.0_2bbuild")),
            ("1.0_2bbuild", Some("1.0__2bbuild")),
            ("1.0_build", Some("1.0__build")),
            ("-x", Some("_2dx")),
            (".x", Some("_2ex")),
            ("ä", Some("_c3_a4")),
            (long.as_str(), Some(long.as_str())),
            (&long[1..], Some(&long[1..])),
            ("", None),
        ];
        for (version, tag) in cases {
            assert_eq!(version_tag(version).as_deref(), tag, "{version:?}");
        }
        // 129 characters, and 127 that the escaping makes longer than 128.
        assert_eq!(version_tag(&format!("{long}1")), None);
        assert_eq!(version_tag(&format!("{}+", &long[2..])), None);
        let mut tags = std::collections::HashSet::new();
        for version in ["a_b", "a+b", "a_2bb", "a__b", "a-b", "_", "__", "+"] {
            let tag = version_tag(version).unwrap();
            assert!(tags.insert(tag.clone()), "{version:?} collides as {tag:?}");
        }
    }
}
