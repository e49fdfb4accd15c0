//! Network holders: each replica's container joins the network namespace of a small container
//! of its own (`--network container:<holder>`) instead of the deployment network itself.
//!
//! Why: joining a user-defined network is most of what starting a container costs here. The
//! engine makes a network namespace, then its embedded DNS resolver re-executes itself in it
//! and runs iptables about ten times (`setup-resolver`): 450 ms for a start on a deployment
//! network against 160 ms for a start in another container's namespace, measured on this
//! machine. A holder pays that once, ahead: each network keeps one spare holder, made with
//! the network (while an upload's image still loads; moved there from the installation's pool
//! when it has one, see [`holder_pool`](super::holder_pool)) and again after each claim, and a
//! replica's start takes the spare (renamed to `<instance>-net`) and pays only its own start.
//!
//! What a holder is: the [`holder_image`](super::holder_image) program, waiting, as nobody,
//! every capability dropped, no new privileges, a read-only root, 8 MiB, 4 processes, no logs;
//! on the deployment network, with the `berth-platform` host entry the replica needs (a
//! container in another's namespace cannot have host entries of its own: it shares the
//! holder's `/etc/hosts`). It carries its network's labels but the application's and the
//! deployment's (so installation and extra container labels) and [`LABEL_HOLDER`] naming the
//! network it was made on (the pool's, for one moved from there: a network's holders are
//! found by membership), so the supervisor's listings
//! never show it ([`super::containers`] skips it), and every cleanup by installation label
//! removes it. Replicas reach nothing more and nothing less than before: the namespace is the
//! one a container on the network would have had.
//!
//! A holder goes with its replica (`remove_instance`) and every holder of a network with the
//! network (`remove_network`), so a network is never refused for a holder still on it. A
//! replica whose holder is gone cannot start (the engine says so) and is replaced.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HostConfig,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RenameContainerOptions,
};
use futures_util::StreamExt;

use super::holder_image;
use super::{DockerEngine, first_ip, is_conflict, is_not_found, label_filter};
use crate::runtime::{LABEL_INSTALLATION, NetworkInfo, RuntimeError};
use crate::sync::MutexExt;

/// The label of a holder, naming its network.
pub const LABEL_HOLDER: &str = "berth.holder";
/// The network labels a holder does not carry (the supervisor's application and deployment
/// labels): a listing of an application's or a deployment's containers lists its replicas.
const SERVED_LABELS: [&str; 2] = ["berth.app", "berth.deployment"];
/// A spare holder is named `<network>-spare-<8 hex digits>`.
const SPARE_INFIX: &str = "-spare-";
/// A claimed holder is named for its replica: `<instance>-net`.
const CLAIMED_SUFFIX: &str = "-net";
/// Its one process needs next to nothing; the engine's floor for a limit is 6 MiB.
const HOLDER_MEMORY: i64 = 8 << 20;
const HOLDER_PIDS: i64 = 4;
/// A tenth of a CPU: it never runs after its start.
const HOLDER_NANO_CPUS: i64 = 100_000_000;
/// A claimed holder no container uses is removed once it was made and claimed (by this
/// process) this long ago (see `remove_orphans`): the claim and the replica's creation are
/// moments apart.
const ORPHAN_AGE_SECS: i64 = 120;
/// Nobody: the program needs no privilege.
const HOLDER_USER: &str = "65534:65534";

/// The name of `instance`'s holder.
pub fn claimed_name(instance: &str) -> String {
    format!("{instance}{CLAIMED_SUFFIX}")
}

pub(super) fn spare_name(network: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{network}{SPARE_INFIX}{}", &random[..8])
}

/// Whether `name` (as the engine lists it, maybe with a leading `/`) is a spare of `network`.
pub(super) fn is_spare(name: &str, network: &str) -> bool {
    name.trim_start_matches('/')
        .strip_prefix(network)
        .is_some_and(|rest| rest.starts_with(SPARE_INFIX))
}

/// Whether a holder may be an orphan (then it goes if no container uses it): a claimed one
/// (not a spare) made and claimed (by this process, if at all) over [`ORPHAN_AGE_SECS`] before
/// `now`. A spare made hours ago and claimed a moment ago is its replica's, about to be made.
fn may_be_orphan(spare: bool, created: Option<i64>, claimed: Option<i64>, now: i64) -> bool {
    let old = |at: i64| now.saturating_sub(at) > ORPHAN_AGE_SECS;
    !spare && created.is_some_and(old) && claimed.is_none_or(old)
}

/// The names of the networks a listed container is on.
pub(super) fn networks_of(c: &ContainerSummary) -> impl Iterator<Item = &String> {
    (c.network_settings.as_ref())
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flat_map(|n| n.keys())
}

/// The holder a container's network mode names (`container:<id>`), if any.
pub fn holder_of(network_mode: Option<&str>) -> Option<&str> {
    network_mode.and_then(|mode| mode.strip_prefix("container:"))
}

impl DockerEngine {
    /// The holder image, imported on first use; None with holders turned off or on an
    /// architecture Berth has no holder program for (replicas then join their network
    /// directly).
    pub(super) async fn holder_image(&self) -> Result<Option<String>, RuntimeError> {
        let Some(program) = holder_image::program().filter(|_| self.holders) else {
            return Ok(None);
        };
        let reference = holder_image::reference(&program);
        self.holder_image
            .get_or_try_init(|| async {
                if self.image_id(&reference).await?.is_none() {
                    self.import_holder_image(&program, &reference).await?;
                }
                Ok::<_, RuntimeError>(reference.clone())
            })
            .await
            .map(|reference| Some(reference.clone()))
    }

    async fn import_holder_image(
        &self,
        program: &[u8],
        reference: &str,
    ) -> Result<(), RuntimeError> {
        let root_fs = holder_image::root_fs(program)
            .map_err(|e| RuntimeError::Docker(format!("cannot build the holder image: {e}")))?;
        let (repo, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes: vec![
                format!("ENTRYPOINT [\"{}\"]", holder_image::PROGRAM_PATH),
                format!("LABEL {}=1", holder_image::HOLDER_IMAGE_LABEL),
            ],
            ..Default::default()
        };
        let body = bollard::body_full(root_fs.into());
        let mut progress =
            std::pin::pin!(self.docker.create_image(Some(options), Some(body), None));
        while let Some(item) = progress.next().await {
            item?;
        }
        Ok(())
    }

    /// Creates and starts a holder named `name` on `network`; returns its id.
    pub(super) async fn make_holder(
        &self,
        network: &NetworkInfo,
        name: &str,
        image: &str,
    ) -> Result<String, RuntimeError> {
        let mut labels = network.labels.clone();
        labels.retain(|key, _| !SERVED_LABELS.contains(&key.as_str()));
        labels.insert(LABEL_HOLDER.to_owned(), network.name.clone());
        let host_config = HostConfig {
            memory: Some(HOLDER_MEMORY),
            memory_swap: Some(HOLDER_MEMORY),
            nano_cpus: Some(HOLDER_NANO_CPUS),
            pids_limit: Some(HOLDER_PIDS),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            ipc_mode: Some("private".to_owned()),
            network_mode: Some(network.name.clone()),
            extra_hosts: Some(vec![crate::runtime::platform_host_entry()]),
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            user: Some(HOLDER_USER.to_owned()),
            labels: Some(labels),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.name.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let id = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(made) => made.id,
            // The image was removed by hand since this process imported it: once more.
            Err(e) if is_not_found(&e) => {
                let program = holder_image::program().unwrap_or_default();
                self.import_holder_image(&program, image).await?;
                self.docker.create_container(Some(options), body).await?.id
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove_container(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// Makes a spare holder on `network` unless one is there already; nothing on an
    /// architecture without a holder program.
    pub(super) async fn make_spare(&self, network: &NetworkInfo) -> Result<(), RuntimeError> {
        let Some(image) = self.holder_image().await? else {
            return Ok(());
        };
        if !self.spares(&network.name).await?.is_empty() {
            return Ok(());
        }
        match self.spare_from_pool(&network.name).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(network = %network.name, "no network holder from the pool: {e}")
            }
        }
        self.make_holder(network, &spare_name(&network.name), &image)
            .await
            .map(drop)
    }

    /// Makes a spare on `network` in the background (after a claim took the last one), so the
    /// next replica or restart finds one, and sweeps the network's orphaned holders; a failure
    /// only costs the next start a holder of its own.
    fn replenish(&self, network: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            // The network's removal waits for this: a holder removed while its start is in
            // flight leaves the engine counting an endpoint no container has, and then the
            // network can never be removed.
            let work = engine.spare_work(&network);
            let _working = work.lock().await;
            let made = match engine.network(&network).await {
                Ok(Some(info)) => engine.make_spare(&info).await,
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if let Err(e) = made {
                tracing::debug!(network, "no spare network holder: {e}");
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if let Err(e) = engine.remove_orphans(&network, now).await {
                tracing::debug!(network, "network holders not swept: {e}");
            }
        });
    }

    /// With holders off, the spares an earlier start made (one per network, carrying
    /// `labels`) serve nobody and keep an address and a few MB each: removed once per process
    /// (tried again at the next call if that fails).
    pub(super) async fn drop_spares_once(&self, labels: &[(&str, &str)]) {
        use std::sync::atomic::Ordering;
        if self.holders || self.spares_dropped.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut filters = label_filter(labels);
        filters
            .entry("label".to_owned())
            .or_default()
            .push(LABEL_HOLDER.to_owned());
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let dropped = async {
            for c in self.docker.list_containers(Some(options)).await? {
                // A spare of the network it was made on, or of the one it was moved to.
                let labelled = c.labels.as_ref().and_then(|l| l.get(LABEL_HOLDER));
                let networks: Vec<&String> = labelled.into_iter().chain(networks_of(&c)).collect();
                let spare = (c.names.iter().flatten())
                    .any(|name| networks.iter().any(|network| is_spare(name, network)));
                if let (true, Some(id)) = (spare, c.id.as_deref()) {
                    self.remove_container(id).await?;
                }
            }
            Ok::<_, RuntimeError>(())
        };
        if let Err(e) = dropped.await {
            tracing::debug!("spare network holders not removed: {e}");
            self.spares_dropped.store(false, Ordering::SeqCst);
        }
    }

    /// The lock a network's spare holder is made under.
    pub(super) fn spare_work(&self, network: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut work = self.spare_work.locked();
        std::sync::Arc::clone(work.entry(network.to_owned()).or_default())
    }

    /// `network`'s spare holders (id, name, running), running ones first.
    pub(super) async fn spares(
        &self,
        network: &str,
    ) -> Result<Vec<(String, String, bool)>, RuntimeError> {
        let mut spares: Vec<(String, String, bool)> = self
            .holders(network)
            .await?
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .iter()
                    .flatten()
                    .find(|name| is_spare(name, network))?
                    .trim_start_matches('/')
                    .to_owned();
                let running = matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING));
                Some((c.id?, name, running))
            })
            .collect();
        spares.sort_by_key(|(_, _, running)| !running);
        Ok(spares)
    }

    /// Every holder of `network`, claimed or spare, running or not: every holder on it. Found
    /// by membership, not by [`LABEL_HOLDER`]: one moved from the pool (see `holder_pool`)
    /// carries the pool network's name there for good.
    async fn holders(&self, network: &str) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let filters = HashMap::from([
            ("label".to_owned(), vec![LABEL_HOLDER.to_owned()]),
            ("network".to_owned(), vec![network.to_owned()]),
        ]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        Ok(self.docker.list_containers(Some(options)).await?)
    }

    /// A running holder for `instance` on `network`: the network's spare, renamed for it (and
    /// a new spare made in the background), or a new holder when there is none. None on an
    /// architecture without a holder program. The spare's way is a listing and a rename, as
    /// it lies between an upload's end and its replica's start.
    pub(super) async fn claim_holder(
        &self,
        network: &str,
        instance: &str,
    ) -> Result<Option<String>, RuntimeError> {
        let Some(image) = self.holder_image().await? else {
            return Ok(None);
        };
        let name = claimed_name(instance);
        for (spare, spare_name, running) in self.spares(network).await? {
            let options = RenameContainerOptions { name: name.clone() };
            // By its spare name, which only one claim can rename away.
            match self.docker.rename_container(&spare_name, options).await {
                Ok(()) => {}
                // Another claim took it first, or it is being removed: try the next.
                Err(e) if is_not_found(&e) => continue,
                // The name is taken: a retried creation's first attempt claimed one already.
                Err(e) if is_conflict(&e) => match self.claimed(&name, network).await? {
                    Some(id) => return Ok(Some(self.claimed_now(id))),
                    None => continue,
                },
                Err(e) => return Err(e.into()),
            }
            // A spare stopped with the engine starts again.
            if running || self.start_holder(&spare).await? {
                let spare = self.claimed_now(spare);
                self.replenish(network.to_owned());
                self.refill_after_start();
                return Ok(Some(spare));
            }
        }
        if let Some(id) = self.claimed(&name, network).await? {
            return Ok(Some(self.claimed_now(id)));
        }
        let info = self
            .network(network)
            .await?
            .ok_or_else(|| RuntimeError::Docker(format!("network {network} is gone")))?;
        let id = self.claimed_now(self.make_holder(&info, &name, &image).await?);
        self.replenish(network.to_owned());
        Ok(Some(id))
    }

    /// Remembers that holder `id` was claimed now, so the sweep after the claim (which runs
    /// before the replica exists) does not take it for an orphan, however old the spare was.
    pub(super) fn claimed_now(&self, id: String) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = self.holder_claims.locked();
        claims.retain(|_, at| now.saturating_sub(*at) <= ORPHAN_AGE_SECS);
        claims.insert(id.clone(), now);
        id
    }

    /// When this process last claimed holder `id` (Unix seconds), if lately.
    pub(super) fn claimed_at(&self, id: &str) -> Option<i64> {
        self.holder_claims.locked().get(id).copied()
    }

    /// The holder named `name` on `network`, started, if there is one.
    async fn claimed(&self, name: &str, network: &str) -> Result<Option<String>, RuntimeError> {
        let existing = match self.docker.inspect_container(name, None).await {
            Ok(existing) => existing,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // A holder on the network (one from the pool carries the pool's label).
        let holder = (existing.config.as_ref())
            .and_then(|c| c.labels.as_ref())
            .is_some_and(|l| l.contains_key(LABEL_HOLDER));
        let on_network = (existing.network_settings.as_ref())
            .and_then(|n| n.networks.as_ref())
            .is_some_and(|n| n.contains_key(network));
        let ours = holder && on_network;
        match existing.id {
            Some(id) if ours && self.start_holder(&id).await? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// The address of holder `id` on its network (None while it does not run, or is gone).
    pub(super) async fn holder_ip(&self, id: &str) -> Result<Option<IpAddr>, RuntimeError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(first_ip(c.network_settings.and_then(|n| n.networks))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the holder `id` (an engine restart stopped it); Ok(false) when it is gone.
    pub(super) async fn start_holder(&self, id: &str) -> Result<bool, RuntimeError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes every holder of `network` and the replicas in them, so the network can go.
    pub(super) async fn remove_holders(&self, network: &str) -> Result<(), RuntimeError> {
        // After a spare being made (see `replenish`); the network goes, and its entry with it.
        let work = self.spare_work(network);
        let _working = work.lock().await;
        self.spare_work.locked().remove(network);
        let holders = self.holders(network).await?;
        if holders.is_empty() {
            return Ok(());
        }
        for (_, member) in self.memberships(&holders).await? {
            self.remove_container(&member).await?;
        }
        for id in holders.into_iter().filter_map(|h| h.id) {
            self.remove_container(&id).await?;
        }
        Ok(())
    }

    /// Removes `network`'s claimed holders that no container uses and that are older than
    /// [`ORPHAN_AGE_SECS`]: their replica was removed by hand, or Berth stopped between the claim and
    /// the replica's creation. Each would keep an address of the network's small subnet.
    async fn remove_orphans(&self, network: &str, now: i64) -> Result<(), RuntimeError> {
        let holders: Vec<ContainerSummary> = self
            .holders(network)
            .await?
            .into_iter()
            .filter(|h| {
                let spare = h.names.iter().flatten().any(|name| is_spare(name, network));
                let claimed = h.id.as_deref().and_then(|id| self.claimed_at(id));
                may_be_orphan(spare, h.created, claimed, now)
            })
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let in_use: HashSet<String> = self
            .memberships(&holders)
            .await?
            .into_iter()
            .map(|(holder, _)| holder)
            .collect();
        for id in holders.into_iter().filter_map(|h| h.id) {
            if !in_use.contains(&id) {
                tracing::debug!(network, holder = %id, "removing a network holder no replica uses");
                self.remove_container(&id).await?;
            }
        }
        Ok(())
    }

    /// (holder, member) for every container whose network mode names one of `holders`. The
    /// engine filters no listing by network mode: the listing is the installation's (the
    /// holders' own label), read from the summaries.
    async fn memberships(
        &self,
        holders: &[ContainerSummary],
    ) -> Result<Vec<(String, String)>, RuntimeError> {
        let ids: HashSet<&str> = holders.iter().filter_map(|h| h.id.as_deref()).collect();
        let installations: BTreeSet<&str> = holders
            .iter()
            .filter_map(|h| {
                h.labels
                    .as_ref()?
                    .get(LABEL_INSTALLATION)
                    .map(String::as_str)
            })
            .collect();
        let mut found = Vec::new();
        for installation in installations {
            let options = ListContainersOptions {
                all: true,
                filters: Some(label_filter(&[(LABEL_INSTALLATION, installation)])),
                ..Default::default()
            };
            for c in self.docker.list_containers(Some(options)).await? {
                let mode = c
                    .host_config
                    .as_ref()
                    .and_then(|h| h.network_mode.as_deref());
                if let (Some(holder), Some(id)) = (holder_of(mode), c.id.as_ref())
                    && ids.contains(holder)
                {
                    found.push((holder.to_owned(), id.clone()));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_spares_and_holders_apart() {
        let spare = spare_name("berth-abc-net1");
        assert!(is_spare(&spare, "berth-abc-net1"));
        assert!(is_spare(&format!("/{spare}"), "berth-abc-net1"));
        assert!(
            !is_spare(&spare, "berth-abc-net"),
            "another network's prefix"
        );
        assert!(!is_spare(
            &claimed_name("berth-abc-net1-x"),
            "berth-abc-net1"
        ));
        assert_ne!(spare_name("n"), spare_name("n"));
    }

    #[test]
    fn only_old_claimed_holders_may_be_orphans() {
        let now = 10_000;
        // (spare, made s ago, claimed s ago, may be an orphan)
        let cases = [
            (false, Some(600), None, true),
            (false, Some(600), Some(600), true),
            (false, Some(600), Some(5), false),
            (false, Some(30), None, false),
            (false, None, None, false),
            (true, Some(600), None, false),
        ];
        for (spare, made, claimed, orphan) in cases {
            let at = |ago: Option<i64>| ago.map(|ago| now - ago);
            assert_eq!(
                may_be_orphan(spare, at(made), at(claimed), now),
                orphan,
                "spare {spare}, made {made:?} s ago, claimed {claimed:?} s ago"
            );
        }
    }

    #[test]
    fn the_holder_is_read_from_the_network_mode() {
        assert_eq!(holder_of(Some("container:abc")), Some("abc"));
        assert_eq!(holder_of(Some("berth-net")), None);
        assert_eq!(holder_of(None), None);
    }
}
