//! Images on Swarm: loaded into the manager's engine (as on the local engine), tagged there
//! under the registry's name too, and pushed; services run them pinned by digest. A version's
//! tag leaving takes its manifest out of the registry.

use bollard::auth::DockerCredentials;
use bollard::query_parameters::PushImageOptions;
use futures_util::StreamExt;

use super::{SwarmRuntime, registry};
use crate::runtime::{Runtime, RuntimeError};

impl SwarmRuntime {
    pub(super) fn credentials(&self) -> Option<DockerCredentials> {
        self.settings
            .registry_credentials
            .as_ref()
            .map(|(u, p)| DockerCredentials {
                username: Some(u.clone()),
                password: Some(p.clone()),
                serveraddress: Some(self.settings.registry.clone()),
                ..Default::default()
            })
    }

    pub(super) fn basic_auth(&self) -> Option<String> {
        use base64::Engine as _;
        self.settings
            .registry_credentials
            .as_ref()
            .map(|(u, p)| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    }

    pub(super) fn registry_ref(&self, repo: &str) -> String {
        format!("{}/{repo}", self.settings.registry)
    }

    /// Tags locally and in the registry's name, then pushes.
    pub(super) async fn tag_and_push(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
    ) -> Result<(), RuntimeError> {
        self.engine.tag(image, repo, tag).await?;
        let remote = self.registry_ref(repo);
        self.engine.tag(image, &remote, tag).await?;
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let mut push = std::pin::pin!(self.docker.push_image(
            &remote,
            Some(options),
            self.credentials()
        ));
        while let Some(item) = push.next().await {
            let item = item?;
            if let Some(e) = item.error_detail {
                return Err(RuntimeError::Docker(format!(
                    "push to {}: {}",
                    self.settings.registry,
                    e.message.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    /// The registry reference of a loaded image, pinned by digest (nodes cannot pull by
    /// image id, and a tag can move).
    pub(super) async fn pinned(&self, image_id: &str) -> Result<String, RuntimeError> {
        let inspect = self.docker.inspect_image(image_id).await?;
        let prefix = format!("{}/", self.settings.registry);
        inspect
            .repo_digests
            .unwrap_or_default()
            .into_iter()
            .find(|d| d.starts_with(&prefix))
            .ok_or_else(|| {
                RuntimeError::Docker(format!(
                    "image {image_id} is not in the registry {} (upload the version again)",
                    self.settings.registry
                ))
            })
    }

    /// Removes a version's tag (or an image by id) from the manager's engine, and its
    /// manifest from the registry unless another tag of ours names the same image (a
    /// manifest deleted by digest takes all its tags).
    pub(super) async fn remove_version_image(&self, reference: &str) -> Result<(), RuntimeError> {
        // A version's tag: its manifest leaves the registry unless another kept tag of
        // ours names the same image (a manifest deleted by digest takes all its tags).
        if let Some((repo, tag)) = reference
            .rsplit_once(':')
            .filter(|_| !reference.starts_with("sha256:"))
        {
            let remote = self.registry_ref(repo);
            let image = self.engine.image_id(reference).await?;
            let shared = match &image {
                Some(id) => {
                    let inspect = self.docker.inspect_image(id).await?;
                    let prefix = format!("{}/", self.settings.registry);
                    inspect
                        .repo_tags
                        .unwrap_or_default()
                        .iter()
                        .filter(|t| t.starts_with(&prefix))
                        .count()
                        > 1
                }
                None => false,
            };
            if !shared {
                registry::delete_tag(
                    &self.settings.registry,
                    self.basic_auth().as_deref(),
                    repo,
                    tag,
                )
                .await?;
            }
            self.engine.remove_image(&format!("{remote}:{tag}")).await?;
        }
        self.engine.remove_image(reference).await
    }
}
