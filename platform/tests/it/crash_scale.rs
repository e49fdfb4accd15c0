//! The scaling trial's parts: an autoscaled application, CPU load on its replica (see
//! [`crate::crash_tools::Client`]), and the check that a restart kept the autoscaler's
//! scale-down window: a recommendation the killed process made holds its replicas up in the
//! new one, and nothing scales down within the window.

use serde_json::{Value, json};

use crate::fixture::{Server, Tenant};
use crate::supervisor::{manifest, readiness_on_health};

/// Autoscaler settings of the trial server: decisions every second, up to two replicas, and a
/// window longer than any run (so no trial may ever see a scale-down).
pub(crate) const SERVER_ARGS: [&str; 8] = [
    "--autoscale-period",
    "1",
    "--autoscale-max-replicas",
    "2",
    "--autoscale-scale-down-window",
    "3600",
    "--drain-period",
    "1",
];

/// `scale: AUTO` from one replica, with a small CPU limit so the load saturates it even on a
/// busy machine (the autoscaler measures against the limit).
pub(crate) fn scale_manifest(isolation: &str) -> String {
    let mut extra = readiness_on_health();
    extra["scale"] = json!("AUTO");
    extra["resources"] = json!({"cpu": "0.1", "memory": "64M"});
    manifest(isolation, 1, extra)
}

fn deployment(server: &Server, owner: &Tenant, app: &str) -> Value {
    server
        .req("GET", &format!("/application/applications/{app}"))
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .json()["status"]["deployments"][0]
        .clone()
}

/// The URL that burns the replica's CPU (half a second a request).
pub(crate) fn load_url(server: &Server, owner: &Tenant, app: &str) -> String {
    let d = deployment(server, owner, app);
    let ip = d["instances"][0]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no replica address: {d}"));
    format!("http://{ip}:80/burn?ms=500")
}

/// The application's running containers (counted at the strike).
pub(crate) fn running(installation: &str, app: &str) -> usize {
    crate::supervisor::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--filter",
        &format!("label=berth.app={app}"),
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

/// Ok once the process made a decision after the strike (`struck`) and, if two replicas ran
/// at the strike while the window held a recommendation of two (made before it), it still
/// runs two: the window keeps replicas up across the restart (it never scales up by itself,
/// as the HPA's does not); Err (the last disagreement) until then. A scale-down at any time
/// is an error.
pub(crate) fn window_kept(
    server: &Server,
    owner: &Tenant,
    app: &str,
    struck: time::OffsetDateTime,
    running_at_strike: usize,
) -> Result<(), String> {
    let down: Vec<Value> = server
        .req(
            "GET",
            &format!("/audit/auditRecords?application={app}&type=Autoscaler&pageSize=100"),
        )
        .basic(&owner.admin_login, &owner.admin_password)
        .send()
        .json()["auditRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["activity"] == "Scaled down")
        .collect();
    if !down.is_empty() {
        return Err(format!("scaled down within the window: {down:?}"));
    }
    let d = deployment(server, owner, app);
    let window = d["autoscaler"]["recommendations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let made = |r: &Value| {
        r["time"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    if !window.iter().any(|r| made(r).is_some_and(|t| t > struck)) {
        return Err(format!("no decision since the strike yet: {d}"));
    }
    let held = window
        .iter()
        .any(|r| made(r).is_some_and(|t| t < struck) && r["replicas"] == 2);
    if held && running_at_strike == 2 && (d["desired"] != 2 || d["active"] != 2) {
        return Err(format!(
            "two replicas ran at the strike and the window holds two, the deployment does not: {d}"
        ));
    }
    Ok(())
}
