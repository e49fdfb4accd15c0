//! Holders started ahead of deployments, on a network of their own (the pool network), and
//! moved to a new deployment network as its spare (see [`holders`](super::holders)).
//!
//! Why: a new network's spare is started while the upload's image loads, and a small image
//! loads sooner than the spare starts (a start on a new user-defined network: its namespace,
//! the embedded DNS resolver's set-up, about ten iptables runs), so the first replica waited
//! for it. Moving a running holder (disconnect from the pool network, connect to the new one)
//! took about 105 ms on this machine, starting one there about 275 ms. The pool network is a
//! user-defined bridge, not Docker's default one: a container moved off the default bridge
//! keeps a line naming its hostname with its old address in `/etc/hosts`, one moved off a
//! user-defined network does not.
//!
//! The supervisor makes the pool network as it makes a deployment's (a subnet of Berth's pool,
//! a bridge the host firewall covers: `berth-<installation>-pool`) and asks for a top-up on
//! each pass; the pool's holders are its spares (`<pool network>-spare-…`). A claim renames
//! one to a spare name of the deployment network (only one claim can rename a name away), and
//! only then moves it: disconnected from the pool network first, so a replica can never join a
//! holder that is on both. Its labels stay those it was made with (labels cannot change), so a
//! network's holders are found by membership (see `holders::holders`), never by that label
//! alone. A failed move removes the holder; the spare is then started on the network as before.
//! The pool is refilled once the replica the holder was taken for has claimed it and had
//! [`REPLICA_START`] to start ([`DockerEngine::refill_after_start`]), so the refill's own start
//! competes neither with the image load nor with that start; a claim no replica follows (the
//! upload failed) is refilled by a pass [`REFILL_FALLBACK`] later.

use std::time::{Duration, Instant};

use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{ListContainersOptions, RenameContainerOptions};

use super::holders::{LABEL_HOLDER, networks_of, spare_name};
use super::{DockerEngine, is_conflict, is_not_found, label_filter};
use crate::runtime::{NetworkInfo, RuntimeError};
use crate::sync::MutexExt;

/// The pool network's name is `berth-<installation>-<this>`.
pub const POOL_SUFFIX: &str = "pool";
/// Running holders the pool keeps: one first deploy at a time is the common case; a second
/// one at the same moment starts its spare on its network as before.
const POOL_SIZE: usize = 1;
/// How long a replica's start takes here (100–230 ms from its creation): the pool is refilled
/// after it, and the next deploy of a pipeline that deploys several in a row finds it full.
const REPLICA_START: Duration = Duration::from_millis(500);
/// How long after a claim a pass refills the pool when no replica claimed the holder.
const REFILL_FALLBACK: Duration = Duration::from_secs(10);
/// How long a full pool is taken to be full without a look: its holders may have stopped
/// since (an engine restart, someone's `docker stop`), which only a top-up sees.
const FULL_FOR: Duration = Duration::from_secs(60);

/// What the engine remembers of its pool between passes.
#[derive(Debug, Default)]
pub struct PoolState {
    /// The pool network, once the supervisor named it.
    network: Option<NetworkInfo>,
    /// Claims so far: a top-up that began before the last claim does not call the pool full.
    claims: u64,
    last_claim: Option<Instant>,
    filling: bool,
    /// When the last top-up left [`POOL_SIZE`] running holders, if nothing was claimed since
    /// and no claim found the pool empty.
    full_since: Option<Instant>,
    /// Running holders the pool holds as far as this process knows (None: unknown, ask the
    /// engine): a claim asks the engine only when the pool may hold one, so the spares made
    /// between a claim and the refill cost no listing.
    held: Option<usize>,
}

impl PoolState {
    fn full(&self, now: Instant) -> bool {
        (self.full_since).is_some_and(|at| now.saturating_duration_since(at) < FULL_FOR)
    }
}

/// Whether a top-up of the pool starts now: not while one runs or the pool is full (as seen
/// within [`FULL_FOR`]), and, when a pass asks (not a replica's start, `after_start`), not
/// within [`REFILL_FALLBACK`] of a claim.
fn top_up_due(pool: &PoolState, after_start: bool, now: Instant) -> bool {
    let recent =
        (pool.last_claim).is_some_and(|at| now.saturating_duration_since(at) < REFILL_FALLBACK);
    !pool.filling && !pool.full(now) && (after_start || !recent)
}

impl DockerEngine {
    /// Whether this engine keeps a pool: holders on, and a holder program for its architecture.
    pub(super) fn pools_holders(&self) -> bool {
        self.holders && super::holder_image::program().is_some()
    }

    /// Tops up the pool on `network` in the background (a pass asks), unless it is full, a
    /// top-up runs, or a claim was made less than [`REFILL_FALLBACK`] ago.
    pub(super) fn fill_holder_pool(&self, network: &NetworkInfo) {
        self.holder_pool.locked().network = Some(network.clone());
        self.start_top_up(false);
    }

    /// A replica claimed its holder ([`DockerEngine::claim_holder`]): its start follows, and
    /// then the pool is topped up.
    pub(super) fn refill_after_start(&self) {
        if self.holder_pool.locked().full(Instant::now()) {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REPLICA_START).await;
            engine.start_top_up(true);
        });
    }

    fn start_top_up(&self, after_start: bool) {
        if !self.pools_holders() {
            return;
        }
        let (network, claims) = {
            let mut pool = self.holder_pool.locked();
            let Some(network) = pool.network.clone() else {
                return;
            };
            if !top_up_due(&pool, after_start, Instant::now()) {
                return;
            }
            pool.filling = true;
            (network, pool.claims)
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let filled = engine.top_up(&network).await;
            let mut pool = engine.holder_pool.locked();
            pool.filling = false;
            match filled {
                Ok(()) => {
                    let untouched = pool.claims == claims;
                    pool.full_since = untouched.then(Instant::now);
                    pool.held = untouched.then_some(POOL_SIZE);
                }
                Err(e) => {
                    tracing::debug!(network = %network.name, "network holder pool not filled: {e}")
                }
            }
        });
    }

    /// Removes the pool's stopped holders and starts new ones up to [`POOL_SIZE`].
    async fn top_up(&self, network: &NetworkInfo) -> Result<(), RuntimeError> {
        let Some(image) = self.holder_image().await? else {
            return Ok(());
        };
        // The pool network's removal (a deployment needs its subnet) waits for a start in
        // flight, as a deployment network's does for its spare's (see `holders::replenish`).
        let work = self.spare_work(&network.name);
        let _working = work.lock().await;
        if self.network(&network.name).await?.is_none() {
            return Ok(());
        }
        self.remove_stranded(&network.name).await?;
        let mut running = 0;
        for (id, _, up) in self.spares(&network.name).await? {
            if up {
                running += 1;
            } else {
                self.remove_container(&id).await?;
            }
        }
        for _ in running..POOL_SIZE {
            self.make_holder(network, &spare_name(&network.name), &image)
                .await?;
        }
        Ok(())
    }

    /// Removes the pool's holders on no network at all: a claim stopped between the move's two
    /// steps (Berth stopped, the engine failed); not one this process claimed lately, which may
    /// be between them now.
    async fn remove_stranded(&self, pool: &str) -> Result<(), RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filter(&[(LABEL_HOLDER, pool)])),
            ..Default::default()
        };
        for c in self.docker.list_containers(Some(options)).await? {
            if networks_of(&c).next().is_none()
                && let Some(id) = c.id
                && self.claimed_at(&id).is_none()
            {
                tracing::debug!(holder = %id, "removing a pooled network holder left on no network");
                self.remove_container(&id).await?;
            }
        }
        Ok(())
    }

    /// Moves a running holder of the pool to `network` as its spare; Ok(false) when the pool
    /// has none (or is not known yet).
    pub(super) async fn spare_from_pool(&self, network: &str) -> Result<bool, RuntimeError> {
        let pool = {
            let state = self.holder_pool.locked();
            match &state.network {
                Some(pool) if pool.name != network && state.held != Some(0) => pool.name.clone(),
                _ => return Ok(false),
            }
        };
        let running = self.spares(&pool).await?.into_iter().filter(|s| s.2);
        for (id, name, _) in running {
            let options = RenameContainerOptions {
                name: spare_name(network),
            };
            match self.docker.rename_container(&name, options).await {
                Ok(()) => {}
                // Another claim took it first, or it is being removed.
                Err(e) if is_not_found(&e) || is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            let id = self.claimed_now(id);
            {
                let mut state = self.holder_pool.locked();
                state.claims += 1;
                state.last_claim = Some(Instant::now());
                state.full_since = None;
                state.held = state.held.map(|held| held.saturating_sub(1));
            }
            match self.move_holder(&id, &pool, network).await {
                Ok(()) => return Ok(true),
                Err(e) => {
                    tracing::debug!(network, holder = %id, "a pooled network holder did not move: {e}");
                    self.remove_container(&id).await?;
                }
            }
        }
        // None running: the next pass looks.
        let mut state = self.holder_pool.locked();
        state.full_since = None;
        state.held = Some(0);
        Ok(false)
    }

    /// Off `from`, then onto `to`: never on both, so nothing in it reaches the pool network.
    async fn move_holder(&self, id: &str, from: &str, to: &str) -> Result<(), RuntimeError> {
        let off = NetworkDisconnectRequest {
            container: id.to_owned(),
            force: Some(true),
        };
        self.docker.disconnect_network(from, off).await?;
        let on = NetworkConnectRequest {
            container: id.to_owned(),
            endpoint_config: Some(EndpointSettings::default()),
        };
        self.docker.connect_network(to, on).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_top_up_waits_for_the_replica_or_the_fallback() {
        let now = Instant::now();
        let ago = |s: u64| now.checked_sub(Duration::from_secs(s));
        // (filling, seen full, last claim, after a replica's start, due)
        let cases = [
            (false, None, None, false, true),
            (false, None, None, true, true),
            (true, None, None, true, false),
            (false, ago(5), None, true, false),
            (false, ago(5), None, false, false),
            // A full pool is looked at again after a minute.
            (false, ago(61), None, false, true),
            (false, None, ago(1), false, false),
            (false, None, ago(1), true, true),
            (false, None, ago(11), false, true),
            (true, None, ago(11), false, false),
        ];
        for (filling, full_since, last_claim, after_start, due) in cases {
            let pool = PoolState {
                filling,
                full_since,
                last_claim,
                ..Default::default()
            };
            assert_eq!(
                top_up_due(&pool, after_start, now),
                due,
                "filling {filling}, full since {full_since:?}, claimed {last_claim:?}, after start {after_start}"
            );
        }
    }
}
