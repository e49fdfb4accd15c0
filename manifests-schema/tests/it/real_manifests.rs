//! Every real manifest in shared/data/real-manifests gets the verdict SOURCES.md implies.

use std::collections::BTreeSet;

use manifests_schema::{Severity, validate};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/real-manifests"
);

enum Verdict {
    /// Valid as published; the warnings' pointers, in order.
    Accepted(&'static [&'static str]),
    /// Rejected only because of unfiltered Maven placeholders at these pointers.
    Placeholders(&'static [&'static str]),
    /// A web application's cumulocity.json.
    NotMicroservice,
}

use Verdict::*;

const V1: &str = "/apiVersion";

const TABLE: &[(&str, Verdict)] = &[
    (
        "Cumulocity-IoT__Tracker-Agent__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "Cumulocity-IoT__c8y-data-migration__main.json",
        Placeholders(&["/version", "/resources/cpu", "/resources/memory"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-acme__root.json",
        Accepted(&[V1]),
    ),
    (
        "Cumulocity-IoT__cumulocity-dt-integration-microservice__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-dynamic-mapper__service.json",
        Placeholders(&["/version"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-hono-agent__main.json",
        Placeholders(&["/version"]),
    ),
    // Requests 128Mi with a 128M limit: tolerated, the request is lowered to the limit.
    (
        "Cumulocity-IoT__cumulocity-mcp-server__docker.json",
        Accepted(&["/requestedResources/memory"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-microservice-service-request-mgmt__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-microservice-servicenow__root.json",
        Accepted(&[V1]),
    ),
    (
        "Cumulocity-IoT__cumulocity-microservice-templates__agent.json",
        Placeholders(&["/version"]),
    ),
    (
        "Cumulocity-IoT__cumulocity-node-red__root.json",
        Accepted(&[]),
    ),
    (
        "Cumulocity-IoT__cumulocity-translation-manager-api__main.json",
        Placeholders(&["/version"]),
    ),
    ("Cumulocity-IoT__datahub-mcp__root.json", Accepted(&[])),
    (
        "Cumulocity-IoT__dtm-smartfunctions__root-not-microservice.json",
        NotMicroservice,
    ),
    (
        "Cumulocity-IoT__openapi-portal-ms__portal.json",
        Accepted(&["/description", "/type"]),
    ),
    (
        "SoftwareAG__c8y-python-decoder-example-microservice__root.json",
        Accepted(&[V1]),
    ),
    (
        "SoftwareAG__c8y-ticketing-integration-microservice__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__c8y_microservice-python__root.json",
        Accepted(&[]),
    ),
    (
        "SoftwareAG__cumulocity-examples__hello-world.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__iptracker.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__lora-codec-lansitec.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__lwm2m-custom-decoder.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__mqtt-service-hello.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__notification2-hello.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__snmp-device-gateway.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__snmp-mib-parser.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-examples__tracker-agent.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-flexy-integration__root.json",
        Accepted(&[V1]),
    ),
    (
        "SoftwareAG__cumulocity-itss-microservice__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-rss-microservice__main.json",
        Placeholders(&["/version"]),
    ),
    (
        "SoftwareAG__cumulocity-subtenant-usage-metering-microservice__root.json",
        Accepted(&[V1]),
    ),
];

#[test]
fn every_real_manifest_gets_its_verdict() {
    for (file, verdict) in TABLE {
        let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap();
        let result = validate(&text);
        match (verdict, result) {
            (Accepted(warnings), Ok(validated)) => {
                let pointers: Vec<&str> = validated
                    .warnings
                    .iter()
                    .map(|w| w.pointer.as_str())
                    .collect();
                assert_eq!(&pointers, warnings, "{file}: {:#?}", validated.warnings);
                assert!(
                    validated
                        .warnings
                        .iter()
                        .all(|w| w.severity == Severity::Warning),
                    "{file}"
                );
            }
            (Placeholders(pointers), Err(rejected)) => {
                let errors: Vec<_> = rejected
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Error)
                    .collect();
                let error_pointers: Vec<&str> = errors.iter().map(|d| d.pointer.as_str()).collect();
                assert_eq!(
                    &error_pointers, pointers,
                    "{file}: {:#?}",
                    rejected.diagnostics
                );
                for error in errors {
                    assert!(
                        error.message.contains("unfiltered Maven placeholder @"),
                        "{file}: {error}"
                    );
                    assert!(
                        error.message.contains("run Maven resource filtering"),
                        "{file}: {error}"
                    );
                }
            }
            (NotMicroservice, Err(rejected)) => {
                assert_eq!(
                    rejected.diagnostics.len(),
                    1,
                    "{file}: {:#?}",
                    rejected.diagnostics
                );
                let only = &rejected.diagnostics[0];
                assert_eq!((only.pointer.as_str(), only.line, only.column), ("", 1, 1));
                assert!(only.message.starts_with(
                    "this is a web application manifest, not a microservice manifest"
                ));
            }
            (_, Ok(validated)) => panic!(
                "{file}: accepted, expected a rejection: {:#?}",
                validated.warnings
            ),
            (_, Err(rejected)) => panic!("{file}: rejected: {:#?}", rejected.diagnostics),
        }
    }
}

#[test]
fn the_table_lists_every_file_in_the_directory() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "SOURCES.md")
        .collect();
    let listed: BTreeSet<String> = TABLE.iter().map(|(file, _)| (*file).to_owned()).collect();
    assert_eq!(
        on_disk, listed,
        "add new real manifests to the table with their verdict"
    );
}

#[test]
fn accepted_real_manifests_keep_unknown_keys_in_source_order() {
    let text = std::fs::read_to_string(format!(
        "{DIR}/Cumulocity-IoT__openapi-portal-ms__portal.json"
    ))
    .unwrap();
    let manifest = validate(&text).unwrap().manifest;
    let keys: Vec<&str> = manifest.unknown.keys().map(String::as_str).collect();
    assert_eq!(keys, ["description", "type"]);
    assert_eq!(manifest.unknown["type"], "MICROSERVICE");
    // Memory given, CPU defaulted: the request keeps its default, below the default limit.
    assert_eq!(manifest.resources.cpu.millicores, 500);
    assert_eq!(manifest.resources.memory.bytes, 512_000_000);
    assert_eq!(manifest.requested_resources.cpu.millicores, 250);
    assert_eq!(manifest.requested_resources.memory.bytes, 256_000_000);
}

#[test]
fn a_request_above_its_limit_is_lowered_to_the_limit() {
    let text = std::fs::read_to_string(format!(
        "{DIR}/Cumulocity-IoT__cumulocity-mcp-server__docker.json"
    ))
    .unwrap();
    let manifest = validate(&text).unwrap().manifest;
    assert_eq!(manifest.resources.memory.bytes, 128_000_000);
    assert_eq!(manifest.requested_resources.memory.bytes, 128_000_000);
    assert_eq!(manifest.requested_resources.cpu.millicores, 100);
    assert_eq!(manifest.resources.cpu.millicores, 250);
}
