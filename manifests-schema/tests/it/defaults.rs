//! The typed manifest: defaults filled in, values as written, serialization shape.

use manifests_schema::{BillingMode, Isolation, ProbeHandler, Scale, validate};
use serde_json::json;

use crate::manifest_with;

#[test]
fn a_minimal_manifest_gets_every_default() {
    let manifest = validate(&manifest_with("")).unwrap().manifest;
    assert_eq!(manifest.billing_mode, BillingMode::Resources);
    assert_eq!(manifest.isolation, Isolation::MultiTenant);
    assert_eq!(manifest.scale, Scale::None);
    assert_eq!(manifest.replicas, 1);
    assert_eq!(
        (
            manifest.resources.cpu.text.as_str(),
            manifest.resources.cpu.millicores
        ),
        ("0.5", 500)
    );
    assert_eq!(
        (
            manifest.resources.memory.text.as_str(),
            manifest.resources.memory.bytes
        ),
        ("512M", 512_000_000)
    );
    assert_eq!(
        (
            manifest.requested_resources.cpu.text.as_str(),
            manifest.requested_resources.cpu.millicores
        ),
        ("250m", 250)
    );
    assert_eq!(manifest.requested_resources.memory.bytes, 256_000_000);
    assert!(
        manifest.settings.is_empty()
            && manifest.roles.is_empty()
            && manifest.required_roles.is_empty()
    );
    assert!(manifest.extensions.is_empty() && manifest.unknown.is_empty());
    assert!(manifest.liveness_probe.is_none() && manifest.readiness_probe.is_none());
    assert_eq!(manifest.api_version_number(), 2);
    assert_eq!(manifest.settings_category_or("app"), "app");
}

#[test]
fn probe_and_setting_defaults() {
    let text = manifest_with(
        r#""livenessProbe": {"httpGet": {"path": "/health"}}, "readinessProbe": {"tcpSocket": {}}, "settings": [{"key": "k", "defaultValue": "v"}]"#,
    );
    let manifest = validate(&text).unwrap().manifest;
    let liveness = manifest.liveness_probe.unwrap();
    assert_eq!(
        liveness.handler,
        ProbeHandler::HttpGet {
            host: None,
            path: "/health".into(),
            port: 80,
            scheme: "HTTP".into(),
            headers: vec![]
        }
    );
    assert_eq!(
        (
            liveness.initial_delay_seconds,
            liveness.period_seconds,
            liveness.success_threshold,
            liveness.timeout_seconds,
            liveness.failure_threshold
        ),
        (0, 10, 1, 1, 3)
    );
    assert_eq!(
        manifest.readiness_probe.unwrap().handler,
        ProbeHandler::TcpSocket {
            host: None,
            port: 80
        }
    );
    let setting = &manifest.settings[0];
    assert_eq!(
        (
            setting.editable,
            setting.overwrite_on_update,
            setting.inherit_from_owner
        ),
        (false, true, true)
    );
}

#[test]
fn values_as_written_and_serialized_shape() {
    let text = r#"{
  "apiVersion": "v3", "name": "svc", "contextPath": "ctx", "version": "2.0.0-SNAPSHOT",
  "provider": {"name": "Acme", "domain": "acme.example", "support": "help@acme.example"},
  "isolation": "PER_TENANT", "billingMode": "SUBSCRIPTION", "scale": "AUTO", "replicas": 3,
  "zeta": 1,
  "resources": {"cpu": "2", "memory": "1 Gi"}, "requestedResources": {"cpu": "0.1", "memory": "64Mi"},
  "readinessProbe": {"httpGet": {"path": "/r", "port": 8443, "scheme": "HTTPS", "headers": [{"name": "A", "value": "b"}]}, "timeoutSeconds": 4},
  "livenessProbe": {"exec": {"command": ["/bin/check", "-q"]}},
  "alpha": {"nested": true},
  "extensions": [{"type": "prometheus.io", "path": "/metrics"}],
  "settingsCategory": "cat", "requiredRoles": ["ROLE_INVENTORY_READ"], "roles": ["ROLE_SVC_READ"]
}"#;
    let manifest = validate(text).unwrap().manifest;
    assert_eq!(manifest.api_version_number(), 3);
    assert!(manifest.is_snapshot());
    assert_eq!(manifest.settings_category_or("app"), "cat");
    assert_eq!(manifest.resources.memory.bytes, 1 << 30);
    assert_eq!(manifest.requested_resources.cpu.millicores, 100);
    assert_eq!(
        manifest.unknown.keys().collect::<Vec<_>>(),
        ["zeta", "alpha"]
    );
    let json = manifest.to_json();
    assert_eq!(json["resources"], json!({"cpu": "2", "memory": "1 Gi"}));
    assert_eq!(json["scale"], "AUTO");
    assert_eq!(json["alpha"], json!({"nested": true}));
    assert_eq!(
        json["readinessProbe"],
        json!({"httpGet": {"path": "/r", "port": 8443, "scheme": "HTTPS", "headers": [{"name": "A", "value": "b"}]},
               "initialDelaySeconds": 0, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 4, "failureThreshold": 3})
    );
    assert_eq!(
        json["livenessProbe"]["exec"],
        json!({"command": ["/bin/check", "-q"]})
    );
    assert_eq!(
        json["extensions"],
        json!([{"type": "prometheus.io", "path": "/metrics"}])
    );
    // The serialized manifest is itself a valid manifest that resolves to the same thing.
    let again = validate(&json.to_string()).unwrap();
    assert_eq!(again.manifest, manifest);
}

#[test]
fn lowercase_scale_and_oas_spelling_resolve() {
    let text = manifest_with(r#""scale": "auto", "requestResources": {"cpu": "300m"}"#);
    let validated = validate(&text).unwrap();
    assert_eq!(validated.manifest.scale, Scale::Auto);
    assert_eq!(validated.manifest.requested_resources.cpu.millicores, 300);
    assert!(!validated.manifest.unknown.contains_key("requestResources"));
    assert_eq!(validated.warnings.len(), 2);
}
