//! Gauges of what is placed: each deployment's desired, active and unhealthy replicas and each
//! instance's CPU and memory use. The supervisor publishes them all after each pass; a series
//! the pass did not publish (a deployment no longer wanted, a container gone) is removed.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::sync::MutexExt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    /// The application's owner tenant: names are unique per owner only.
    pub owner: String,
    pub application: String,
    /// `""` for the shared deployment of a MULTI_TENANT service.
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub owner: String,
    pub application: String,
    pub instance: String,
}

/// One deployment as a pass left it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentSample {
    pub labels: DeploymentLabels,
    pub desired: u32,
    pub active: u32,
    pub unhealthy: u32,
}

/// One instance as a pass saw it (zero where not measured yet).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSample {
    pub labels: InstanceLabels,
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

type Cores = Gauge<f64, AtomicU64>;

/// The gauges, and which label sets the last pass published.
pub struct Placement {
    desired: Family<DeploymentLabels, Gauge>,
    active: Family<DeploymentLabels, Gauge>,
    unhealthy: Family<DeploymentLabels, Gauge>,
    cpu: Family<InstanceLabels, Cores>,
    memory: Family<InstanceLabels, Gauge>,
    published: Mutex<(HashSet<DeploymentLabels>, HashSet<InstanceLabels>)>,
}

impl Placement {
    pub(super) fn register(registry: &mut Registry) -> Placement {
        let placement = Placement {
            desired: Family::default(),
            active: Family::default(),
            unhealthy: Family::default(),
            cpu: Family::default(),
            memory: Family::default(),
            published: Mutex::default(),
        };
        let deployments = [
            (
                "berth_deployment_replicas_desired",
                "Replicas a deployment wants",
                &placement.desired,
            ),
            (
                "berth_deployment_replicas_active",
                "Ready replicas of a deployment's current revision",
                &placement.active,
            ),
            (
                "berth_deployment_replicas_unhealthy",
                "Replicas of a deployment's current revision that are not ready",
                &placement.unhealthy,
            ),
        ];
        for (name, help, family) in deployments {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "berth_instance_cpu_cores",
            "CPU an instance used over the last sample, in cores",
            placement.cpu.clone(),
        );
        registry.register(
            "berth_instance_memory_bytes",
            "Memory an instance uses",
            placement.memory.clone(),
        );
        placement
    }

    /// Sets the gauges of what a pass left, and removes those of what it did not publish.
    pub fn publish(&self, deployments: &[DeploymentSample], instances: &[InstanceSample]) {
        let mut published = self.published.locked();
        let now_deployments: HashSet<DeploymentLabels> =
            deployments.iter().map(|d| d.labels.clone()).collect();
        let now_instances: HashSet<InstanceLabels> =
            instances.iter().map(|i| i.labels.clone()).collect();
        for gone in published.0.difference(&now_deployments) {
            self.desired.remove(gone);
            self.active.remove(gone);
            self.unhealthy.remove(gone);
        }
        for gone in published.1.difference(&now_instances) {
            self.cpu.remove(gone);
            self.memory.remove(gone);
        }
        for d in deployments {
            self.desired
                .get_or_create(&d.labels)
                .set(i64::from(d.desired));
            self.active
                .get_or_create(&d.labels)
                .set(i64::from(d.active));
            self.unhealthy
                .get_or_create(&d.labels)
                .set(i64::from(d.unhealthy));
        }
        for i in instances {
            self.cpu.get_or_create(&i.labels).set(i.cpu_cores);
            self.memory
                .get_or_create(&i.labels)
                .set(i64::try_from(i.memory_bytes).unwrap_or(i64::MAX));
        }
        *published = (now_deployments, now_instances);
    }
}
