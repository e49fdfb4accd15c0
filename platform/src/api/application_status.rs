//! The `status` fragment of a microservice in `GET /application/applications/{id}`: the
//! supervisor's typed [`ApplicationStatus`] rendered as JSON (the only place it is).

use serde_json::{Value, json};

use crate::supervisor::status::{
    ApplicationStatus, AutoscalerStatus, DeploymentStatus, InstanceStatus, Placement,
};

/// The status of an application with no deployment.
pub fn none() -> Value {
    json!({"deployments": []})
}

pub fn render(status: &ApplicationStatus) -> Value {
    match status {
        ApplicationStatus::Deployed {
            active_version,
            stable_version,
            alarms,
            deployments,
        } => json!({
            "activeVersion": active_version,
            "stableVersion": stable_version,
            "alarms": alarms
                .iter()
                .map(|(kind, text)| json!({
                    "type": kind.as_str(),
                    "severity": kind.severity(),
                    "text": text,
                    "status": "ACTIVE",
                }))
                .collect::<Vec<_>>(),
            "deployments": deployments.iter().map(deployment).collect::<Vec<_>>(),
        }),
        ApplicationStatus::Broken { reason } => {
            json!({"deployments": [], "lastFailure": reason})
        }
    }
}

fn deployment(d: &DeploymentStatus) -> Value {
    let scale = if d.autoscale { "AUTO" } else { "NONE" };
    let reason = d.reason.map(|r| r.as_str());
    let instances: Vec<Value> = d.instances.iter().map(instance).collect();
    match &d.placement {
        Placement::Placed {
            oom_kills,
            autoscaler: scaler,
        } => json!({
            "tenant": d.tenant,
            "version": d.version,
            "scale": scale,
            "desired": d.desired,
            "active": d.active,
            "available": d.available,
            "unhealthy": d.unhealthy,
            "restarts": d.restarts,
            "oomKills": oom_kills.count,
            "lastOomKill": oom_kills.last_time,
            "lastOomPeakBytes": oom_kills.last_peak_bytes,
            "autoscaler": scaler.as_ref().map(autoscaler),
            "reason": reason,
            "lastFailure": d.last_failure,
            "instances": instances,
            "starting": d.starting,
            "upstreams": d.upstreams,
        }),
        Placement::Unplaced => json!({
            "tenant": d.tenant,
            "version": d.version,
            "scale": scale,
            "desired": d.desired,
            "active": d.active,
            "available": d.available,
            "unhealthy": d.unhealthy,
            "restarts": d.restarts,
            "reason": reason,
            "lastFailure": d.last_failure,
            "starting": d.starting,
            "instances": instances,
            "upstreams": d.upstreams,
        }),
    }
}

fn autoscaler(s: &AutoscalerStatus) -> Value {
    json!({
        "minReplicas": s.min_replicas,
        "maxReplicas": s.max_replicas,
        "target": s.target,
        "scaleDownWindowSeconds": s.scale_down_window_secs,
        "replicas": s.replicas,
        "lastDecision": s.last_decision,
        "lastScaleTime": s.last_scale_time,
        "recommendations": s.recommendations.as_ref().map(|window| {
            window
                .iter()
                .map(|(time, replicas)| json!({"time": time, "replicas": replicas}))
                .collect::<Vec<_>>()
        }),
    })
}

fn instance(i: &InstanceStatus) -> Value {
    json!({
        "name": i.name,
        "version": i.version,
        "state": i.state.as_str(),
        "ready": i.ready,
        "restarts": i.restarts,
        "ip": i.ip.map(|ip| ip.to_string()),
        "node": i.node,
        "lastFailure": i.last_failure,
        "ejected": i.ejected,
        "draining": i.draining,
        "cpu": i.cpu.map(|cpu| json!({"cores": cpu.cores, "ofLimit": cpu.of_limit})),
        "memory": {
            "usedBytes": i.memory.used_bytes,
            "peakBytes": i.memory.peak_bytes,
            "limitBytes": i.memory.limit_bytes,
        },
    })
}
