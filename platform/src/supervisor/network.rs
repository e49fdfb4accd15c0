//! A deployment's network: its name, and making it on a free subnet of the pool (see
//! [`subnets`]) with a bridge the host firewall covers, when the pass deploys it or earlier,
//! while the upload that brings it loads its image ([`Supervisor::prepare_networks`]). A
//! deployment whose network cannot be made is reported as such ([`unplaced_status`]) and is down at once;
//! one whose network is being removed (or replaced) waits for the removal's end, off the pass.

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;

use sha2::Digest;

use tokio::sync::Mutex;

use super::plan::{self, NetworkStep};
use super::removals::LeavingNetwork;
use super::spec::Deployment;
use super::status::{DeploymentReason, DeploymentStatus, Placement};
use super::{Supervisor, docker_safe, subnets};
use crate::routing::DeploymentKey;
use crate::runtime::{NetworkInfo, NetworkSpec, RuntimeError, firewall};

/// Tries at making a deployment network per pass (each on a freshly read engine).
const CREATE_NETWORK_ATTEMPTS: usize = 5;
/// How many of the pool's first blocks installations spread their first choice over.
const START_SPREAD: u64 = 64;

/// Why a deployment's network could not be made (shown in its status, alarm and the proxy's
/// 503, so each says what to do).
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cannot inspect its network {name}: {source}")]
    Inspect { name: String, source: RuntimeError },
    #[error("cannot list the engine's networks: {0}")]
    ListSubnets(RuntimeError),
    #[error(
        "cannot create its network: all {capacity} subnets (/{prefix}) of the network pool {pool} are in use; unsubscribe tenants or widen network_pool"
    )]
    PoolFull {
        capacity: u64,
        prefix: u8,
        pool: String,
    },
    #[error("cannot create its network on {block}: {source}")]
    Create { block: String, source: RuntimeError },
}

impl Supervisor {
    pub(super) fn network_name(&self, key: &DeploymentKey) -> String {
        format!(
            "berth-{}-{}-{}",
            self.short_id(),
            key.application_id,
            docker_safe(key.tenant.as_deref().unwrap_or(crate::routing::SHARED))
        )
    }

    /// Where this installation starts looking for a free block: one of the pool's first
    /// [`START_SPREAD`] blocks, by a hash of its id, so that installations sharing an engine
    /// (test servers in parallel above all) rarely race for the same block, while the pool
    /// still fills from the bottom (the swarm lab's bridges sit far above it).
    fn pool_start(&self) -> u64 {
        let digest = sha2::Sha256::digest(self.settings.installation.as_bytes());
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) % START_SPREAD
    }

    /// The network of a deployment, made on a free subnet of the pool if missing, with the
    /// bridge name the host firewall covers; None while it is being removed (or replaced:
    /// then its removal starts here, off the pass), and the deployment waits for the pass the
    /// removal's end brings. `listed` is the pass's listing of the installation's networks
    /// (None if it failed: then inspect); `claims` is shared by the deployments the pass makes
    /// at once.
    pub(super) async fn ensure_network(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
        listed: Option<&HashMap<String, NetworkInfo>>,
        claims: &Mutex<Claims>,
    ) -> Result<Option<NetworkInfo>, NetworkError> {
        let bridge: &str = &firewall::bridge_name(&self.settings.installation, name);
        // Its name is not taken again (nor its instances made on it) while it goes.
        let leaving = claims.lock().await.leaving.contains_key(name);
        let found = match listed {
            _ if leaving => None,
            Some(listed) => listed.get(name).cloned(),
            None => self
                .runtime
                .network(name)
                .await
                .map_err(|source| NetworkError::Inspect {
                    name: name.to_owned(),
                    source,
                })?,
        };
        let found_bridge = found.as_ref().map(|n| n.bridge.as_deref());
        match plan::network_step(leaving, found_bridge, bridge) {
            NetworkStep::Use => return Ok(found),
            NetworkStep::Wait => return Ok(None),
            NetworkStep::Replace => {
                let Some(n) = found else { return Ok(None) };
                // Made before the firewall existed: an unmatched bridge would leave the host
                // open to its containers. They go first, then the network, in one task; the
                // new network is made in the pass its end brings.
                tracing::warn!(
                    network = name,
                    "replacing a network whose bridge the host firewall does not cover"
                );
                self.start_network_removal(&n, true);
                claims.lock().await.leave(&n);
                return Ok(None);
            }
            NetworkStep::Create => {}
        }
        // Another installation on the engine may take the same block between our read and our
        // create (Docker then refuses the overlap): read afresh and try again, a few times.
        let pool = self.settings.network_pool;
        let mut last_error = None;
        for _ in 0..CREATE_NETWORK_ATTEMPTS {
            let block = {
                let mut claims = claims.lock().await;
                if claims.engine.is_none() {
                    let listed = self
                        .runtime
                        .subnets_in_use()
                        .await
                        .map_err(NetworkError::ListSubnets)?;
                    claims.engine = Some(
                        listed
                            .iter()
                            .filter_map(|s| subnets::Block::parse(s))
                            .collect(),
                    );
                }
                let leaving = claims.leaving.values().flatten();
                let taken: Vec<subnets::Block> = (claims.engine.iter().flatten())
                    .chain(&claims.claimed)
                    .chain(leaving)
                    .copied()
                    .collect();
                let Some(block) = pool.allocate_from(&taken, self.pool_start()) else {
                    // The next pass does not want the holder pool's network (see
                    // `holder_pool_network`), whoever found the network pool full.
                    self.subnets_short.store(true, SeqCst);
                    if self.yield_holder_pool(name, listed, &mut claims) {
                        return Ok(None);
                    }
                    return Err(NetworkError::PoolFull {
                        capacity: pool.capacity(),
                        prefix: pool.subnet_prefix,
                        pool: pool.pool.to_string(),
                    });
                };
                claims.claimed.push(block);
                block
            };
            let spec = NetworkSpec {
                name: name.to_owned(),
                bridge: bridge.to_owned(),
                labels: labels.clone(),
                subnet: block.to_string(),
            };
            let created = self.runtime.create_network(&spec).await;
            let mut claims = claims.lock().await;
            claims.claimed.retain(|b| *b != block);
            match created {
                Ok(n) => {
                    if let Some(engine) = &mut claims.engine {
                        engine.push(block);
                    }
                    return Ok(Some(n));
                }
                Err(source) => {
                    last_error = Some(NetworkError::Create {
                        block: block.to_string(),
                        source,
                    });
                    claims.engine = None;
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// The network of the runtime's holder pool (`berth-<installation>-pool`, see
    /// `Runtime::holder_pool`), when the runtime keeps one and the network pool had a subnet
    /// for every network asked for in the last pass: otherwise it is not wanted, and its
    /// removal frees a subnet for a deployment, which tenants need more than a faster first
    /// start. (A failure to make the pool network itself counts too, so with the network pool
    /// full it is tried every other pass, not every pass.)
    pub(super) fn holder_pool_network(&self) -> Option<String> {
        let short = self.subnets_short.swap(false, SeqCst);
        self.holder_pool_name().filter(|_| !short)
    }

    fn holder_pool_name(&self) -> Option<String> {
        let suffix = self.runtime.holder_pool()?;
        Some(format!("berth-{}-{suffix}", self.short_id()))
    }

    /// When the network pool has no subnet left for the deployment network `name`: if the
    /// holder pool's network holds one, its removal starts (or has started) and the deployment
    /// waits for its end (true), as for a network being replaced, instead of failing.
    fn yield_holder_pool(
        &self,
        name: &str,
        listed: Option<&HashMap<String, NetworkInfo>>,
        claims: &mut Claims,
    ) -> bool {
        let Some(pool) = self.holder_pool_name().filter(|pool| pool != name) else {
            return false;
        };
        let leaving = claims.leaving.contains_key(&pool);
        let listed = listed.and_then(|l| l.get(&pool));
        if !leaving && listed.is_none() {
            return false;
        }
        if let (false, Some(network)) = (leaving, listed) {
            tracing::info!(network = %pool, "the holder pool's network gives its subnet to a deployment");
            self.start_network_removal(network, false);
            claims.leave(network);
        }
        true
    }

    /// Makes the holder pool's network `name` if missing and asks the runtime to top it up;
    /// a failure only costs first deployments their spare's start, and is met again next pass.
    pub(super) async fn tend_holder_pool(
        &self,
        name: &str,
        listed: Option<&HashMap<String, NetworkInfo>>,
        leaving: &HashMap<String, LeavingNetwork>,
    ) {
        // The network pool had no subnet in this pass (a deployment may have taken the pool
        // network's, see `yield_holder_pool`): not again.
        if self.subnets_short.load(SeqCst) {
            return;
        }
        let claims = Mutex::new(Claims::new(leaving));
        let filled = match self
            .ensure_network(name, &self.labels(), listed, &claims)
            .await
        {
            Ok(Some(network)) => self.runtime.fill_holder_pool(&network).await,
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!(network = name, error = %e, "no network for the holder pool");
                Ok(())
            }
        };
        if let Err(e) = filled {
            tracing::debug!(network = name, error = %e, "holder pool not topped up");
        }
    }

    /// Makes the missing networks of deployments uploads in flight will bring, so that the
    /// pass that deploys them finds their network there. A failure is left for that pass to
    /// meet again and report.
    pub(super) async fn prepare_networks(
        &self,
        keys: &[DeploymentKey],
        listed: Option<&HashMap<String, NetworkInfo>>,
        leaving: &HashMap<String, LeavingNetwork>,
    ) {
        let claims = Mutex::new(Claims::new(leaving));
        for key in keys {
            let name = self.network_name(key);
            let labels = self.deployment_labels(key);
            match self.ensure_network(&name, &labels, listed, &claims).await {
                Ok(Some(_)) => tracing::debug!(network = %name, "network made ahead of its upload"),
                Ok(None) => {
                    tracing::debug!(network = %name, "network ahead of its upload waits for its removal")
                }
                Err(e) => {
                    tracing::debug!(network = %name, error = %e, "cannot make a network ahead of its upload")
                }
            }
        }
    }
}

/// The engine's subnets as far as this pass knows them (None: not read yet, or stale after a
/// refused create), the blocks of networks being made right now (several deployments make
/// theirs at once, and no two may get the same block), and the networks being removed: their
/// names and blocks are not free until they are gone (the engine may stop listing a network
/// before its removal ends).
#[derive(Debug, Default)]
pub(super) struct Claims {
    engine: Option<Vec<subnets::Block>>,
    claimed: Vec<subnets::Block>,
    leaving: HashMap<String, Vec<subnets::Block>>,
}

impl Claims {
    /// Claims that begin with the networks `leaving` (the pass's snapshot of removals).
    pub fn new(leaving: &HashMap<String, LeavingNetwork>) -> Claims {
        let leaving = (leaving.iter())
            .map(|(name, n)| (name.clone(), blocks(&n.subnets)))
            .collect();
        Claims {
            leaving,
            ..Claims::default()
        }
    }

    /// A network whose removal began in this pass.
    fn leave(&mut self, n: &NetworkInfo) {
        self.leaving.insert(n.name.clone(), blocks(&n.subnets));
    }
}

fn blocks(subnets: &[String]) -> Vec<subnets::Block> {
    subnets
        .iter()
        .filter_map(|s| subnets::Block::parse(s))
        .collect()
}

/// Status of a deployment whose network could not be made: no instance, the reason, and not
/// `starting` (so it is `c8y_Application_Down` at once: waiting will not fix it).
pub(super) fn unplaced_status(dep: &Deployment, reason: &str) -> DeploymentStatus {
    DeploymentStatus {
        tenant: dep.key.tenant.clone(),
        version: dep.version.clone(),
        autoscale: dep.autoscale,
        desired: dep.replicas,
        active: 0,
        available: 0,
        unhealthy: 0,
        restarts: 0,
        placement: Placement::Unplaced,
        reason: Some(DeploymentReason::CannotCreateNetwork),
        last_failure: Some(reason.to_owned()),
        starting: false,
        instances: Vec::new(),
        upstreams: Vec::new(),
    }
}
