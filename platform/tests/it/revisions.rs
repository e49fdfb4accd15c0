//! Revision changes within one version (a re-upload of the stable version here; a changed
//! runtime option takes the same path): only the last ready revision keeps running beside
//! one, never a pile of them, for the rollout deadline at most, and the tenant's limits charge
//! what runs meanwhile.

use serde_json::{Value, json};

use crate::fixture::{Tenant, create_tenant};
use crate::supervisor::{
    HelloLease, deploy, instances, manifest, readiness_on_health, start_server, status, subscribe,
    upload_package, wait_for, wait_ready,
};

const ROLLOUT_TIMEOUT_SECS: u64 = 30;

/// The hello manifest as `1.0.0-SNAPSHOT` with `memory` and `probes`.
fn snapshot(memory: &str, probes: Value) -> String {
    let mut m: Value = serde_json::from_str(&manifest("MULTI_TENANT", 1, probes)).unwrap();
    m["version"] = json!("1.0.0-SNAPSHOT");
    m["resources"] = json!({"cpu": "0.1", "memory": memory});
    m.to_string()
}

fn never_ready(path: &str) -> Value {
    json!({"readinessProbe": {"httpGet": {"path": path, "port": 80}, "periodSeconds": 1, "failureThreshold": 1}})
}

/// The application's instance names, sorted (old revisions included).
fn names(status: &Value) -> Vec<String> {
    let mut names: Vec<String> = instances(status)
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn names_of(server: &crate::fixture::Server, owner: &Tenant, app: &str) -> Vec<String> {
    names(&status(server, owner, app))
}

#[test]
fn a_re_uploaded_stable_version_is_charged_and_bounded_until_ready() {
    let hello = HelloLease::acquire();
    // 100 MB + 100 MB is over 150 MiB; 16 MB + 100 MB is not. The rollout timeout only has to
    // outlast the few requests between the re-upload and the refused subscription.
    let (_cleanup, server) = start_server(&[
        "--tenant-max-memory",
        "150MiB",
        "--rollout-timeout",
        &ROLLOUT_TIMEOUT_SECS.to_string(),
    ]);
    let owner = create_tenant(&server, "reupload");

    // A runs 1.0.0-SNAPSHOT at 100 MB, ready everywhere: the stable version.
    let a = deploy(
        &server,
        &owner,
        &hello.0,
        &snapshot("100M", readiness_on_health()),
    );
    subscribe(&server, &owner.id, &a).expect(201);
    wait_ready(&server, &owner, &a, 1);
    wait_for(READY, "1.0.0-SNAPSHOT stable", || {
        (status(&server, &owner, &a)["stableVersion"] == "1.0.0-SNAPSHOT").then_some(())
    });
    let stable = names_of(&server, &owner, &a);
    assert_eq!(stable.len(), 1, "{stable:?}");

    // Uploaded again at 16 MB, never ready: the 100 MB instance keeps serving beside it.
    upload_package(
        &server,
        &owner,
        &a,
        &hello.0,
        &snapshot("16M", never_ready("/no-1")),
    )
    .expect(201);
    let first = wait_for(READY, "the re-upload beside the stable instance", || {
        let n = names_of(&server, &owner, &a);
        (n.len() == 2 && n.contains(&stable[0])).then_some(n)
    });
    // Again: the previous re-upload, never ready though it carries the stable version's label,
    // goes; only the last ready revision stays beside the new one.
    upload_package(
        &server,
        &owner,
        &a,
        &hello.0,
        &snapshot("16M", never_ready("/no-2")),
    )
    .expect(201);
    wait_for(READY, "the second re-upload in place of the first", || {
        let n = names_of(&server, &owner, &a);
        assert!(n.len() <= 2, "old revisions pile up: {n:?}");
        let fresh = n.iter().filter(|name| !first.contains(name)).count();
        (n.len() == 2 && n.contains(&stable[0]) && fresh == 1).then_some(())
    });

    // B at 100 MB has no room while A's 100 MB instance runs, though A's manifest is 16 MB now.
    let b = deploy(&server, &owner, &hello.0, &snapshot("100M", json!({})));
    let refused = subscribe(&server, &owner.id, &b)
        .expect_error(403, "applications/Forbidden")
        .json();
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tenant_max_memory"),
        "{refused}"
    );
    assert!(
        names_of(&server, &owner, &a).contains(&stable[0]),
        "the refusal must come while the 100 MB instance still runs; raise ROLLOUT_TIMEOUT_SECS"
    );

    // Past the deadline the 100 MB instance stops (nothing to roll back to: the version was
    // replaced), the status says so, and B fits.
    let late = wait_for(
        READY + std::time::Duration::from_secs(ROLLOUT_TIMEOUT_SECS),
        "the replaced upload stopped",
        || {
            let s = status(&server, &owner, &a);
            let n = names(&s);
            let done = n.len() == 1 && !n.contains(&stable[0]) && s["rolloutMessage"].is_string();
            done.then_some(s)
        },
    );
    let message = late["rolloutMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("1.0.0-SNAPSHOT was uploaded again")
            && message.contains(&format!("within {ROLLOUT_TIMEOUT_SECS}s")),
        "{late}"
    );
    assert_eq!(late["activeVersion"], "1.0.0-SNAPSHOT", "{late}");
    subscribe(&server, &owner.id, &b).expect(201);
}

const READY: std::time::Duration = std::time::Duration::from_secs(60);
