//! What a tenant's microservices may reserve: the operator's maxima per container (memory, CPU,
//! replicas) and per tenant (memory, CPU and containers summed over the deployments charged to
//! it), resolved against the host, and the root-image rule. Pure decisions only; the API
//! (`api/limits.rs`) reads the store and calls these.

use std::collections::BTreeMap;

use manifests_schema::{Isolation, Manifest, ProbeHandler, Scale};

/// The operator's settings as configured: `None` = derived from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    pub container_memory: Option<u64>,
    pub container_millicores: Option<u64>,
    pub replicas: u32,
    pub tenant_memory: Option<u64>,
    pub tenant_millicores: Option<u64>,
    pub tenant_containers: u64,
    pub refuse_root_images: bool,
}

/// What the Docker host has (from `docker info`: NCPU, MemTotal) and what the runtime can
/// reach in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub millicores: u64,
    pub memory_bytes: u64,
    /// The one container port the runtime reaches; `None`: any.
    pub only_port: Option<u16>,
    pub exec_probes: bool,
}

/// The maxima in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub container_memory: u64,
    pub container_millicores: u64,
    pub replicas: u32,
    pub tenant_memory: u64,
    pub tenant_millicores: u64,
    pub tenant_containers: u64,
    pub refuse_root_images: bool,
    /// From [`Host`]: a probe of another port, or an exec probe the runtime cannot run, would
    /// never pass, so the manifest is refused at upload instead.
    pub only_port: Option<u16>,
    pub exec_probes: bool,
}

/// What the tenant sums are checked against: the maxima, and the autoscaler's maximum, at which
/// an AUTO service is charged (for those who check without the flows' `Apps`: a rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maxima {
    pub limits: Limits,
    pub autoscale_max: u32,
}

/// How much CPU a tenant may reserve by default, in multiples of the host's: CPU limits are
/// ceilings on shared time, so some overcommit is harmless; memory limits are not.
pub const DEFAULT_TENANT_CPU_FACTOR: u64 = 4;

/// A maximum above what the host can ever give: (setting, why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{setting} = {value} is more than the Docker host has ({host}): no container could ever be created with it"
)]
pub struct OverHost {
    pub setting: &'static str,
    pub value: String,
    pub host: String,
}

impl LimitSettings {
    /// Fills what is unset from the host: a container may use the whole host (memory and
    /// CPUs), a tenant the host's memory and [`DEFAULT_TENANT_CPU_FACTOR`] × its CPUs. A
    /// per-container maximum beyond the host is refused (Docker would refuse every container).
    pub fn resolve(&self, host: Host) -> Result<Limits, OverHost> {
        let container_memory = self.container_memory.unwrap_or(host.memory_bytes);
        if container_memory > host.memory_bytes {
            return Err(OverHost {
                setting: "max_container_memory",
                value: bytes_text(container_memory),
                host: bytes_text(host.memory_bytes),
            });
        }
        let container_millicores = self.container_millicores.unwrap_or(host.millicores);
        if container_millicores > host.millicores {
            return Err(OverHost {
                setting: "max_container_cpu",
                value: cpu_text(container_millicores),
                host: format!("{} CPUs", cpu_text(host.millicores)),
            });
        }
        Ok(Limits {
            container_memory,
            container_millicores,
            replicas: self.replicas,
            tenant_memory: self.tenant_memory.unwrap_or(host.memory_bytes),
            tenant_millicores: self
                .tenant_millicores
                .unwrap_or(host.millicores.saturating_mul(DEFAULT_TENANT_CPU_FACTOR)),
            tenant_containers: self.tenant_containers,
            refuse_root_images: self.refuse_root_images,
            only_port: host.only_port,
            exec_probes: host.exec_probes,
        })
    }
}

/// Why an upload or a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "The manifest asks for {field} = {asked}, over this platform's maximum of {max} per container (operator setting {setting}); lower {field} in cumulocity.json"
    )]
    Container {
        field: &'static str,
        asked: String,
        max: String,
        setting: &'static str,
    },
    #[error(
        "Tenant {tenant} would reserve {asked} in total over its microservices, over its {what} maximum of {max} (operator setting {setting}); lower the resources or replicas, or unsubscribe other microservices"
    )]
    Tenant {
        tenant: String,
        what: &'static str,
        asked: String,
        max: String,
        setting: &'static str,
    },
    #[error(
        "The image runs as {user}, and this platform refuses images that run as root (operator setting refuse_root_images); set a numeric non-root user in the image, e.g. USER 1000:1000 in the Dockerfile"
    )]
    RootImage { user: String },
    #[error(
        "The manifest's {field} is {port}, but this platform runs microservices on Docker Swarm, where only port {only} of a container is reachable; listen on port {only} (as Cumulocity expects) and probe that port"
    )]
    ProbePort { field: String, port: u16, only: u16 },
    #[error(
        "The manifest's {field} is an exec probe, which this platform cannot run (Docker Swarm without the nodes' own engines, operator setting swarm_node_engines); use an httpGet or tcpSocket probe instead"
    )]
    ExecProbe { field: String },
}

/// Refuses a manifest whose containers exceed a per-container maximum.
pub fn check_container(manifest: &Manifest, limits: &Limits) -> Result<(), LimitError> {
    let memory = manifest.resources.memory.bytes;
    if memory > limits.container_memory {
        return Err(LimitError::Container {
            field: "resources.memory",
            asked: format!("{:?}", manifest.resources.memory.text),
            max: bytes_text(limits.container_memory),
            setting: "max_container_memory",
        });
    }
    let cpu = manifest.resources.cpu.millicores;
    if cpu > limits.container_millicores {
        return Err(LimitError::Container {
            field: "resources.cpu",
            asked: format!("{:?}", manifest.resources.cpu.text),
            max: format!("{} CPUs", cpu_text(limits.container_millicores)),
            setting: "max_container_cpu",
        });
    }
    if u32::from(manifest.replicas) > limits.replicas {
        return Err(LimitError::Container {
            field: "replicas",
            asked: manifest.replicas.to_string(),
            max: limits.replicas.to_string(),
            setting: "max_replicas",
        });
    }
    check_probes(manifest, limits)
}

/// Refuses a probe the runtime could never run: it would leave the microservice unready (or
/// restarting) forever, with nothing to say why.
fn check_probes(manifest: &Manifest, limits: &Limits) -> Result<(), LimitError> {
    let probes = [
        ("livenessProbe", &manifest.liveness_probe),
        ("readinessProbe", &manifest.readiness_probe),
    ];
    for (name, probe) in probes {
        let Some(probe) = probe else { continue };
        let (field, port) = match &probe.handler {
            ProbeHandler::Exec { .. } if !limits.exec_probes => {
                return Err(LimitError::ExecProbe {
                    field: format!("{name}.exec"),
                });
            }
            ProbeHandler::Exec { .. } => continue,
            ProbeHandler::TcpSocket { port, .. } => (format!("{name}.tcpSocket.port"), *port),
            ProbeHandler::HttpGet { port, .. } => (format!("{name}.httpGet.port"), *port),
        };
        if let Some(only) = limits.only_port.filter(|only| *only != port) {
            return Err(LimitError::ProbePort { field, port, only });
        }
    }
    Ok(())
}

/// What deployments reserve together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub memory_bytes: u64,
    pub millicores: u64,
    pub containers: u64,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.millicores = self.millicores.saturating_add(other.millicores);
        self.containers = self.containers.saturating_add(other.containers);
    }

    /// The larger of the two, per resource.
    fn larger(self, other: Cost) -> Cost {
        Cost {
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            millicores: self.millicores.max(other.millicores),
            containers: self.containers.max(other.containers),
        }
    }
}

/// One microservice as far as cost goes: who owns it, who subscribed, what one deployment of
/// its active version costs, and the stable version while a rollout is in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub application_id: i64,
    pub owner: String,
    pub per_tenant: bool,
    pub subscribers: Vec<String>,
    pub cost: Cost,
    /// While a rollout is in progress (the active version is not the stable one): the stable
    /// version, whose instances keep running until every new replica is ready and which a
    /// failed rollout returns to.
    pub stable: Option<Stable>,
}

/// The stable version of an application whose rollout is in progress, as [`Planned`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stable {
    pub version: String,
    pub per_tenant: bool,
    pub cost: Cost,
}

impl Stable {
    /// `version`'s `manifest` as the stable version (see [`Planned::new`] for `autoscale_max`).
    pub fn new(version: &str, manifest: &Manifest, autoscale_max: u32) -> Stable {
        let planned = Planned::new(0, "", manifest, Vec::new(), autoscale_max);
        Stable {
            version: version.to_owned(),
            per_tenant: planned.per_tenant,
            cost: planned.cost,
        }
    }
}

/// What one deployment of an application is charged: its active version's cost, and while a
/// rollout is in progress the larger of that and the stable version's cost, per resource. The
/// stable version keeps running until every new replica is ready (or comes back when they are
/// not), so charging the active version alone let a tiny, never-ready version hide a large
/// stable one. Not the sum: the two overlap only for a rollout's time, bounded by the rollout
/// deadline, and a sum would refuse every same-size upgrade of a service at its tenant's
/// maximum. A stable version of the other isolation is not charged: its deployments are not the
/// active version's, so they are removed at once, not kept through the rollout.
pub fn charged(active: Cost, per_tenant: bool, stable: Option<&Stable>) -> Cost {
    match stable {
        Some(stable) if stable.per_tenant == per_tenant => active.larger(stable.cost),
        _ => active,
    }
}

impl Planned {
    /// `autoscale_max`: the most replicas the autoscaler runs, which an AUTO deployment may
    /// reach at any time.
    pub fn new(
        application_id: i64,
        owner: &str,
        manifest: &Manifest,
        subscribers: Vec<String>,
        autoscale_max: u32,
    ) -> Planned {
        let mut replicas = u64::from(manifest.replicas.max(1));
        if manifest.scale == Scale::Auto {
            replicas = replicas.max(u64::from(autoscale_max));
        }
        Planned {
            application_id,
            owner: owner.to_owned(),
            per_tenant: manifest.isolation == Isolation::PerTenant,
            subscribers,
            cost: Cost {
                memory_bytes: manifest.resources.memory.bytes.saturating_mul(replicas),
                millicores: manifest.resources.cpu.millicores.saturating_mul(replicas),
                containers: replicas,
            },
            stable: None,
        }
    }

    /// What one deployment of it is charged ([`charged`]).
    pub fn charged(&self) -> Cost {
        charged(self.cost, self.per_tenant, self.stable.as_ref())
    }
}

/// What each tenant is charged for: a MULTI_TENANT microservice with any subscription runs
/// once, charged to its owner; a PER_TENANT one runs once per subscriber, charged to it; each
/// deployment at [`Planned::charged`].
pub fn charges(apps: &[Planned]) -> BTreeMap<String, Cost> {
    let mut out: BTreeMap<String, Cost> = BTreeMap::new();
    for app in apps {
        let cost = app.charged();
        if app.per_tenant {
            for tenant in &app.subscribers {
                out.entry(tenant.clone()).or_default().add(cost);
            }
        } else if !app.subscribers.is_empty() {
            out.entry(app.owner.clone()).or_default().add(cost);
        }
    }
    out
}

/// Refuses a change that takes a tenant over a maximum. Only what grows is refused: a tenant
/// already over a lowered maximum may still shrink or stay as it is.
pub fn check_tenants(
    before: &BTreeMap<String, Cost>,
    after: &BTreeMap<String, Cost>,
    limits: &Limits,
) -> Result<(), LimitError> {
    for (tenant, cost) in after {
        let was = before.get(tenant).copied().unwrap_or_default();
        let over = |now: u64, then: u64, max: u64| now > max && now > then;
        let refuse = |what, asked, max, setting| LimitError::Tenant {
            tenant: tenant.clone(),
            what,
            asked,
            max,
            setting,
        };
        if over(cost.memory_bytes, was.memory_bytes, limits.tenant_memory) {
            return Err(refuse(
                "memory",
                bytes_text(cost.memory_bytes),
                bytes_text(limits.tenant_memory),
                "tenant_max_memory",
            ));
        }
        if over(cost.millicores, was.millicores, limits.tenant_millicores) {
            return Err(refuse(
                "CPU",
                format!("{} CPUs", cpu_text(cost.millicores)),
                format!("{} CPUs", cpu_text(limits.tenant_millicores)),
                "tenant_max_cpu",
            ));
        }
        if over(cost.containers, was.containers, limits.tenant_containers) {
            return Err(refuse(
                "containers",
                format!("{} containers", cost.containers),
                format!("{} containers", limits.tenant_containers),
                "tenant_max_containers",
            ));
        }
    }
    Ok(())
}

/// Refuses an image whose configured `User` is root, when the operator asked for that. As
/// Kubernetes' `runAsNonRoot` does, a user name is refused too: without reading the image's
/// `/etc/passwd` nobody can tell it is not uid 0.
pub fn check_image_user(user: &str, limits: &Limits) -> Result<(), LimitError> {
    if !limits.refuse_root_images {
        return Ok(());
    }
    let uid = user.split(':').next().unwrap_or_default().trim();
    match uid.parse::<u32>() {
        Ok(n) if n != 0 => Ok(()),
        _ => Err(LimitError::RootImage {
            user: if user.trim().is_empty() {
                "root (no USER set)".to_owned()
            } else {
                format!("user {user:?} (not a numeric non-zero uid)")
            },
        }),
    }
}

/// Bytes in the largest binary unit that divides them (what operators and manifests write).
pub fn bytes_text(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    if bytes >= 1 << 20 {
        return format!(
            "{bytes} bytes ({:.1}Gi)",
            bytes as f64 / f64::from(1u32 << 30)
        );
    }
    format!("{bytes} bytes")
}

/// Millicores as decimal CPUs (`1500` → `1.5`).
pub fn cpu_text(millicores: u64) -> String {
    let (whole, fraction) = (millicores / 1000, millicores % 1000);
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    fn limits() -> Limits {
        LimitSettings {
            replicas: 3,
            tenant_containers: 4,
            tenant_memory: Some(GI),
            ..LimitSettings::default()
        }
        .resolve(Host {
            millicores: 2000,
            memory_bytes: 8 * GI,
            only_port: None,
            exec_probes: true,
        })
        .unwrap()
    }

    fn manifest(extra: &str) -> Manifest {
        let text = format!(
            r#"{{"apiVersion":"2","name":"svc","version":"1.0.0","provider":{{"name":"x"}}{extra}}}"#
        );
        manifests_schema::validate(&text).unwrap().manifest
    }

    #[test]
    fn unset_maxima_come_from_the_host_and_more_than_the_host_is_refused() {
        let host = Host {
            millicores: 2000,
            memory_bytes: 8 * GI,
            only_port: None,
            exec_probes: true,
        };
        let resolved = LimitSettings::default().resolve(host).unwrap();
        assert_eq!(
            (resolved.container_memory, resolved.container_millicores),
            (8 * GI, 2000)
        );
        assert_eq!(
            (resolved.tenant_memory, resolved.tenant_millicores),
            (8 * GI, 8000)
        );
        let cases = [
            (Some(16 * GI), None, Some("max_container_memory")),
            (None, Some(2001), Some("max_container_cpu")),
            (Some(8 * GI), Some(2000), None),
        ];
        for (memory, cpu, refused) in cases {
            let settings = LimitSettings {
                container_memory: memory,
                container_millicores: cpu,
                ..LimitSettings::default()
            };
            assert_eq!(
                settings.resolve(host).err().map(|e| e.setting),
                refused,
                "{memory:?} {cpu:?}"
            );
        }
    }

    #[test]
    fn container_maxima_name_the_field_and_the_setting() {
        let cases = [
            (
                r#","resources":{"memory":"100Gi"}"#,
                Some("max_container_memory"),
            ),
            (r#","resources":{"cpu":"64"}"#, Some("max_container_cpu")),
            (r#","replicas":4"#, Some("max_replicas")),
            (
                r#","replicas":3,"resources":{"cpu":"2","memory":"8Gi"}"#,
                None,
            ),
        ];
        for (extra, setting) in cases {
            let outcome = check_container(&manifest(extra), &limits());
            match (outcome, setting) {
                (Ok(()), None) => {}
                (Err(e), Some(s)) => {
                    let text = e.to_string();
                    assert!(text.contains(s), "{extra}: {text}");
                }
                (other, _) => panic!("{extra}: {other:?}"),
            }
        }
    }

    #[test]
    fn probes_the_runtime_cannot_run_are_refused_naming_the_field() {
        // Docker Swarm as `SwarmRuntime` reports it: port 80 only, no node engines.
        let swarm = Limits {
            only_port: Some(80),
            exec_probes: false,
            ..limits()
        };
        let http = |port: u16| format!(r#"{{"httpGet":{{"path":"/health","port":{port}}}}}"#);
        let tcp = |port: u16| format!(r#"{{"tcpSocket":{{"port":{port}}}}}"#);
        let exec = r#"{"exec":{"command":["true"]}}"#.to_owned();
        let cases = [
            ("livenessProbe", http(80), ""),
            ("readinessProbe", tcp(80), ""),
            (
                "livenessProbe",
                http(8080),
                "livenessProbe.httpGet.port is 8080",
            ),
            (
                "readinessProbe",
                tcp(443),
                "readinessProbe.tcpSocket.port is 443",
            ),
            (
                "readinessProbe",
                exec.clone(),
                "readinessProbe.exec is an exec probe",
            ),
        ];
        for (probe, body, refused) in cases {
            let manifest = manifest(&format!(r#","{probe}":{body}"#));
            // Plain Docker reaches every port and runs exec probes.
            assert_eq!(
                check_container(&manifest, &limits()),
                Ok(()),
                "{probe} {body}"
            );
            match check_container(&manifest, &swarm) {
                Ok(()) => assert_eq!(refused, "", "{probe} {body}"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        !refused.is_empty() && text.contains(refused),
                        "{probe} {body}: {text}"
                    );
                }
            }
        }
    }

    #[test]
    fn costs_are_charged_to_the_tenant_a_deployment_runs_for() {
        let multi = manifest(r#","replicas":2,"resources":{"cpu":"0.5","memory":"128Mi"}"#);
        let per = manifest(r#","isolation":"PER_TENANT","resources":{"memory":"256Mi"}"#);
        let auto = manifest(r#","scale":"AUTO","resources":{"memory":"64Mi"}"#);
        let apps = [
            Planned::new(1, "o", &multi, vec!["a".into(), "b".into()], 5),
            Planned::new(2, "o", &per, vec!["a".into(), "b".into()], 5),
            Planned::new(3, "o", &multi, vec![], 5),
            Planned::new(4, "a", &auto, vec!["b".into()], 5),
        ];
        let charged = charges(&apps);
        assert_eq!(charged["o"].memory_bytes, 256 << 20);
        assert_eq!(charged["o"].containers, 2);
        assert_eq!(charged["b"].memory_bytes, 256 << 20);
        // The AUTO deployment counts the autoscaler's maximum.
        assert_eq!(charged["a"].containers, 1 + 5);
        assert_eq!(charged["a"].memory_bytes, (256 << 20) + 5 * (64 << 20));
    }

    /// (active cost, active per tenant, stable version, charged)
    type ChargedCase = (Cost, bool, Option<Stable>, Cost);

    #[test]
    fn a_rollout_is_charged_at_the_larger_of_its_active_and_stable_costs() {
        let cost = |memory_bytes, millicores, containers| Cost {
            memory_bytes,
            millicores,
            containers,
        };
        let stable = |per_tenant, cost| {
            Some(Stable {
                version: "1.0.0".to_owned(),
                per_tenant,
                cost,
            })
        };
        let cases: [ChargedCase; 6] = [
            // No rollout in progress: the active version alone.
            (cost(GI, 500, 1), false, None, cost(GI, 500, 1)),
            // A tiny new version of a large stable one: the stable one still runs.
            (
                cost(1 << 20, 10, 1),
                false,
                stable(false, cost(GI, 2000, 2)),
                cost(GI, 2000, 2),
            ),
            // A larger new version: its own cost.
            (
                cost(2 * GI, 4000, 3),
                false,
                stable(false, cost(GI, 2000, 2)),
                cost(2 * GI, 4000, 3),
            ),
            // Per resource: more replicas of less memory each.
            (
                cost(GI, 300, 3),
                true,
                stable(true, cost(2 * GI, 200, 1)),
                cost(2 * GI, 300, 3),
            ),
            // Another isolation: the stable deployments are removed at once, not kept.
            (
                cost(1 << 20, 10, 1),
                false,
                stable(true, cost(GI, 2000, 2)),
                cost(1 << 20, 10, 1),
            ),
            (
                cost(1 << 20, 10, 1),
                true,
                stable(false, cost(GI, 2000, 2)),
                cost(1 << 20, 10, 1),
            ),
        ];
        for (active, per_tenant, stable, expected) in cases {
            assert_eq!(
                charged(active, per_tenant, stable.as_ref()),
                expected,
                "{active:?} {per_tenant} {stable:?}"
            );
        }
        // The sums follow: a tenant running a large stable version under a tiny new one is
        // charged for the large one.
        let big = manifest(r#","replicas":2,"resources":{"memory":"512Mi"}"#);
        let tiny = manifest(r#","resources":{"memory":"16Mi"}"#);
        let mut rolling = Planned::new(1, "o", &tiny, vec!["o".into()], 5);
        assert_eq!(
            charges(std::slice::from_ref(&rolling))["o"].memory_bytes,
            16 << 20
        );
        rolling.stable = Some(Stable::new("1.0.0", &big, 5));
        assert_eq!(charges(&[rolling])["o"].memory_bytes, GI);
    }

    #[test]
    fn only_growth_over_a_tenant_maximum_is_refused() {
        let cost = |memory_bytes, containers| Cost {
            memory_bytes,
            millicores: 0,
            containers,
        };
        let cases = [
            (cost(0, 0), cost(GI, 4), None),
            (cost(0, 0), cost(GI + 1, 1), Some("tenant_max_memory")),
            (cost(0, 0), cost(1, 5), Some("tenant_max_containers")),
            // Already over a lowered maximum: staying or shrinking is allowed.
            (cost(2 * GI, 6), cost(2 * GI, 5), None),
        ];
        for (before, after, refused) in cases {
            let before = BTreeMap::from([("t".to_owned(), before)]);
            let after = BTreeMap::from([("t".to_owned(), after)]);
            let outcome = check_tenants(&before, &after, &limits());
            match (outcome, refused) {
                (Ok(()), None) => {}
                (Err(e), Some(s)) => assert!(e.to_string().contains(s), "{e}"),
                (other, _) => panic!("{after:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn root_images_are_refused_only_when_asked_and_names_count_as_root() {
        let on = Limits {
            refuse_root_images: true,
            ..limits()
        };
        let cases = [
            ("", false),
            ("0", false),
            ("0:0", false),
            ("root", false),
            ("app", false),
            ("1000", true),
            ("1000:1000", true),
            ("65534:0", true),
        ];
        for (user, accepted) in cases {
            assert_eq!(check_image_user(user, &on).is_ok(), accepted, "{user:?}");
            assert!(check_image_user(user, &limits()).is_ok(), "{user:?} off");
        }
    }

    #[test]
    fn quantities_read_as_operators_write_them() {
        assert_eq!(bytes_text(100 * GI), "100Gi");
        assert_eq!(bytes_text(512 << 20), "512Mi");
        assert_eq!(cpu_text(1500), "1.5");
        assert_eq!(cpu_text(2000), "2");
        assert_eq!(cpu_text(250), "0.25");
    }
}
