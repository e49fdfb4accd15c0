//! One synthetic manifest per rule: the diagnostics each gets (pointer, severity, message).

use manifests_schema::Severity::{Error, Warning};
use manifests_schema::{MAX_VERSION_LENGTH, validate};

use crate::{Expected, assert_diagnostics, manifest_with};

/// `(case, extra members of a minimal manifest, expected diagnostics)`.
const MEMBER_CASES: &[(&str, &str, &[Expected<'static>])] = &[
    ("minimal manifest", "", &[]),
    // name
    ("name ok", r#""name": "my-service-1""#, &[]),
    (
        "name upper case",
        r#""name": "My_Service""#,
        &[(
            "/name",
            Error,
            "Microservice application name is incorrect: \"My_Service\" may only contain lowercase letters a-z, digits 0-9 and '-'",
        )],
    ),
    (
        "name too long",
        r#""name": "abcdefghijklmnopqrstuvwx""#,
        &[("/name", Error, "1 to 23 characters (it has 24)")],
    ),
    (
        "name empty",
        r#""name": """#,
        &[("/name", Error, "Microservice application name is incorrect")],
    ),
    (
        "name number",
        r#""name": 7"#,
        &[(
            "/name",
            Error,
            "`name` must be a string, got 7: put the value in quotes",
        )],
    ),
    // contextPath and settingsCategory
    ("contextPath ok", r#""contextPath": "my.path_~-1""#, &[]),
    (
        "contextPath with slash",
        r#""contextPath": "a/b""#,
        &[(
            "/contextPath",
            Error,
            "may only contain letters, digits, '-', '.', '_' and '~'",
        )],
    ),
    (
        "settingsCategory ok",
        r#""settingsCategory": "dynMapping.v2""#,
        &[],
    ),
    (
        "settingsCategory dash",
        r#""settingsCategory": "a-b""#,
        &[("/settingsCategory", Error, "letters, digits and '.'")],
    ),
    // enums
    (
        "billingMode RESOURCES",
        r#""billingMode": "RESOURCES""#,
        &[],
    ),
    (
        "billingMode SUBSCRIPTION",
        r#""billingMode": "SUBSCRIPTION""#,
        &[],
    ),
    (
        "billingMode bad",
        r#""billingMode": "FREE""#,
        &[(
            "/billingMode",
            Error,
            "`billingMode` must be one of RESOURCES, SUBSCRIPTION, got \"FREE\"",
        )],
    ),
    (
        "isolation MULTI_TENANT",
        r#""isolation": "MULTI_TENANT""#,
        &[],
    ),
    ("isolation PER_TENANT", r#""isolation": "PER_TENANT""#, &[]),
    (
        "isolation bad",
        r#""isolation": "per_tenant""#,
        &[(
            "/isolation",
            Error,
            "must be one of MULTI_TENANT, PER_TENANT",
        )],
    ),
    ("scale AUTO", r#""scale": "AUTO""#, &[]),
    ("scale NONE", r#""scale": "NONE""#, &[]),
    (
        "scale lowercase auto",
        r#""scale": "auto""#,
        &[(
            "/scale",
            Warning,
            "`scale` \"auto\" read as \"AUTO\": write it in upper case",
        )],
    ),
    (
        "scale bad",
        r#""scale": "MANUAL""#,
        &[(
            "/scale",
            Error,
            "`scale` must be one of AUTO, NONE, got \"MANUAL\"",
        )],
    ),
    // replicas
    ("replicas 1", r#""replicas": 1"#, &[]),
    ("replicas 5", r#""replicas": 5"#, &[]),
    (
        "replicas 7",
        r#""replicas": 7"#,
        &[(
            "/replicas",
            Error,
            "`replicas` must be between 1 and 5, got 7",
        )],
    ),
    (
        "replicas 0",
        r#""replicas": 0"#,
        &[(
            "/replicas",
            Error,
            "`replicas` must be between 1 and 5, got 0",
        )],
    ),
    (
        "replicas quoted",
        r#""replicas": "2""#,
        &[(
            "/replicas",
            Error,
            "`replicas` must be an integer, got \"2\": remove the quotes",
        )],
    ),
    (
        "replicas fraction",
        r#""replicas": 1.5"#,
        &[(
            "/replicas",
            Error,
            "must be an integer, got 1.5: use a whole number",
        )],
    ),
    // apiVersion
    ("apiVersion v2", r#""apiVersion": "v2""#, &[]),
    ("apiVersion 3", r#""apiVersion": "3""#, &[]),
    (
        "apiVersion 1",
        r#""apiVersion": "1""#,
        &[("/apiVersion", Warning, "`apiVersion` 1 is deprecated")],
    ),
    (
        "apiVersion v1",
        r#""apiVersion": "v1""#,
        &[("/apiVersion", Warning, "deprecated")],
    ),
    (
        "apiVersion odd",
        r#""apiVersion": "2.0""#,
        &[(
            "/apiVersion",
            Warning,
            "`apiVersion` \"2.0\" is not a positive integer optionally prefixed by 'v', so it is treated as \"2\"",
        )],
    ),
    (
        "apiVersion zero",
        r#""apiVersion": "0""#,
        &[("/apiVersion", Warning, "treated as \"2\"")],
    ),
    (
        "apiVersion number",
        r#""apiVersion": 2"#,
        &[(
            "/apiVersion",
            Error,
            "`apiVersion` must be a string, got 2: put the value in quotes",
        )],
    ),
    (
        "apiVersion empty",
        r#""apiVersion": """#,
        &[("/apiVersion", Error, "`apiVersion` must not be empty")],
    ),
    // version
    ("version snapshot", r#""version": "1.2.3-SNAPSHOT""#, &[]),
    ("version prerelease", r#""version": "1.0.0-rc.1""#, &[]),
    (
        "version two parts",
        r#""version": "1.0""#,
        &[(
            "/version",
            Error,
            "`version` must be a SemVer version MAJOR.MINOR.PATCH with an optional -prerelease, e.g. \"1.0.0\" or \"1.0.0-SNAPSHOT\", got \"1.0\"",
        )],
    ),
    (
        "version build metadata",
        r#""version": "1.0.0+build.5""#,
        &[("/version", Error, "carries build metadata")],
    ),
    (
        "version leading zero",
        r#""version": "01.0.0""#,
        &[("/version", Error, "SemVer")],
    ),
    (
        "version placeholder",
        r#""version": "@project.version@""#,
        &[(
            "/version",
            Error,
            "`version` is the unfiltered Maven placeholder @project.version@: run Maven resource filtering (or replace it with a real version) before packaging",
        )],
    ),
    // provider
    (
        "provider full",
        r#""provider": {"name": "Acme", "domain": "acme.example", "support": "help@acme.example"}"#,
        &[],
    ),
    (
        "provider string",
        r#""provider": "c8y""#,
        &[(
            "/provider",
            Error,
            "`provider` must be an object, got \"c8y\": write it as {\"name\": \"...\"}",
        )],
    ),
    (
        "provider without name",
        r#""provider": {"domain": "x"}"#,
        &[(
            "/provider",
            Error,
            "missing required property `name` in `provider`: add the provider's \"name\"",
        )],
    ),
    (
        "provider empty name",
        r#""provider": {"name": ""}"#,
        &[("/provider/name", Error, "`provider.name` must not be empty")],
    ),
    (
        "provider unknown key",
        r#""provider": {"name": "a", "email": "x"}"#,
        &[(
            "/provider/email",
            Warning,
            "unknown key `email` in `provider` is ignored (known keys: `name`, `domain`, `support`)",
        )],
    ),
    // resources
    (
        "cpu millicores",
        r#""resources": {"cpu": "1000m", "memory": "1Gi"}"#,
        &[],
    ),
    (
        "cpu below minimum",
        r#""resources": {"cpu": "50m"}"#,
        &[(
            "/resources/cpu",
            Error,
            "`resources.cpu` must be at least 100m (0.1 CPU), got \"50m\"",
        )],
    ),
    (
        "cpu decimal below minimum",
        r#""resources": {"cpu": "0.05"}"#,
        &[("/resources/cpu", Error, "at least 100m")],
    ),
    (
        "cpu bad syntax",
        r#""resources": {"cpu": "half"}"#,
        &[(
            "/resources/cpu",
            Error,
            "`resources.cpu` must be decimal CPUs or millicores, for example \"0.5\" or \"500m\", got \"half\"",
        )],
    ),
    (
        "cpu number",
        r#""resources": {"cpu": 1}"#,
        &[(
            "/resources/cpu",
            Error,
            "`resources.cpu` must be a string, got 1: put the value in quotes",
        )],
    ),
    (
        "memory below minimum",
        r#""resources": {"memory": "5M"}"#,
        &[(
            "/resources/memory",
            Error,
            "`resources.memory` must be at least 10M (10000000 bytes), got \"5M\"",
        )],
    ),
    (
        "memory fraction",
        r#""resources": {"memory": "1.5G"}"#,
        &[(
            "/resources/memory",
            Error,
            "must be a whole number of bytes, got \"1.5G\": fractions are not allowed, write \"1500M\" instead",
        )],
    ),
    (
        "memory bad unit",
        r#""resources": {"memory": "512MB"}"#,
        &[(
            "/resources/memory",
            Error,
            "`resources.memory` must be a whole number with an optional unit",
        )],
    ),
    (
        "memory with space",
        r#""resources": {"memory": "512 Mi"}"#,
        &[],
    ),
    (
        "memory overflow",
        r#""resources": {"memory": "99999999E"}"#,
        &[(
            "/resources/memory",
            Error,
            "`resources.memory` is too large",
        )],
    ),
    (
        "request above explicit limit",
        r#""resources": {"cpu": "0.5"}, "requestedResources": {"cpu": "1"}"#,
        &[(
            "/requestedResources/cpu",
            Warning,
            "`requestedResources.cpu` \"1\" (1000m) is more than the limit `resources.cpu` \"0.5\" (500m): the request is lowered to the limit",
        )],
    ),
    (
        "default request above limit is silent",
        r#""resources": {"cpu": "200m", "memory": "100M"}"#,
        &[],
    ),
    (
        "request bad syntax",
        r#""requestedResources": {"memory": "lots"}"#,
        &[(
            "/requestedResources/memory",
            Error,
            "`requestedResources.memory` must be a whole number",
        )],
    ),
    (
        "OAS spelling",
        r#""requestResources": {"cpu": "100m"}"#,
        &[(
            "/requestResources",
            Warning,
            "`requestResources` is the OAS spelling: read as `requestedResources`",
        )],
    ),
    (
        "OAS spelling with error inside",
        r#""requestResources": {"cpu": "lots"}"#,
        &[
            ("/requestResources", Warning, "OAS spelling"),
            (
                "/requestResources/cpu",
                Error,
                "`requestedResources.cpu` must be decimal CPUs",
            ),
        ],
    ),
    (
        "both spellings",
        r#""requestedResources": {"cpu": "100m"}, "requestResources": {"cpu": "1"}"#,
        &[(
            "/requestResources",
            Warning,
            "is ignored because `requestedResources` is also given",
        )],
    ),
    (
        "resources not an object",
        r#""resources": "big""#,
        &[(
            "/resources",
            Error,
            "`resources` must be an object, got \"big\"",
        )],
    ),
    (
        "resources placeholders",
        r#""resources": {"cpu": "@resources.cpu@"}"#,
        &[(
            "/resources/cpu",
            Error,
            "`resources.cpu` is the unfiltered Maven placeholder @resources.cpu@: run Maven resource filtering (or replace it with a real value)",
        )],
    ),
    // settings
    (
        "settings full",
        r#""settings": [{"key": "a", "defaultValue": "b", "editable": true, "overwriteOnUpdate": false, "inheritFromOwner": false, "valueSchema": {"type": "string"}}]"#,
        &[],
    ),
    (
        "settings missing defaultValue",
        r#""settings": [{"key": "a"}]"#,
        &[(
            "/settings/0",
            Error,
            "missing required property `defaultValue` in `settings[0]`: add its \"defaultValue\" (a string)",
        )],
    ),
    (
        "settings key with a slash",
        r#""settings": [{"key": "a/b", "defaultValue": "x"}]"#,
        &[(
            "/settings/0/key",
            Error,
            "`settings[0].key` \"a/b\" may not contain '/' or whitespace",
        )],
    ),
    (
        "settings key with a space",
        r#""settings": [{"key": "a b", "defaultValue": "x"}]"#,
        &[(
            "/settings/0/key",
            Error,
            "may not contain '/' or whitespace",
        )],
    ),
    (
        "settings missing key",
        r#""settings": [{"defaultValue": "a"}]"#,
        &[("/settings/0", Error, "missing required property `key`")],
    ),
    (
        "settings boolean default",
        r#""settings": [{"key": "a", "defaultValue": true}]"#,
        &[(
            "/settings/0/defaultValue",
            Error,
            "`settings[0].defaultValue` must be a string, got boolean true: put the value in quotes",
        )],
    ),
    (
        "settings editable string",
        r#""settings": [{"key": "a", "defaultValue": "b", "editable": "yes"}]"#,
        &[(
            "/settings/0/editable",
            Error,
            "`settings[0].editable` must be a boolean, got \"yes\"",
        )],
    ),
    (
        "settings valueSchema string",
        r#""settings": [{"key": "a", "defaultValue": "b", "valueSchema": "boolean"}]"#,
        &[("/settings/0/valueSchema", Error, "must be an object")],
    ),
    (
        "settings not array",
        r#""settings": {"key": "a"}"#,
        &[(
            "/settings",
            Error,
            "`settings` must be an array, got object",
        )],
    ),
    // roles
    (
        "roles custom",
        r#""roles": ["ROLE_MY_SERVICE_READ", "ROLE_MY_SERVICE_ADMIN"], "requiredRoles": ["ROLE_INVENTORY_READ"]"#,
        &[],
    ),
    (
        "roles not displayable",
        r#""roles": ["MY_ROLE"]"#,
        &[(
            "/roles/0",
            Warning,
            "role \"MY_ROLE\" does not follow ROLE_<NAME>_READ, _ADMIN or _CREATE",
        )],
    ),
    (
        "requiredRoles not strings",
        r#""requiredRoles": [1]"#,
        &[(
            "/requiredRoles/0",
            Error,
            "`requiredRoles[0]` must be a string, got 1",
        )],
    ),
    // probes
    (
        "probe httpGet full",
        r#""livenessProbe": {"httpGet": {"host": "localhost", "path": "/health", "port": 8080, "scheme": "HTTPS", "headers": [{"name": "X", "value": "1"}]}, "initialDelaySeconds": 0, "periodSeconds": 1, "successThreshold": 1, "timeoutSeconds": 1, "failureThreshold": 1}"#,
        &[],
    ),
    (
        "probe tcpSocket",
        r#""readinessProbe": {"tcpSocket": {"port": 80}}"#,
        &[],
    ),
    (
        "probe exec",
        r#""readinessProbe": {"exec": {"command": ["/bin/true"]}}"#,
        &[],
    ),
    (
        "probe exec every second",
        r#""readinessProbe": {"exec": {"command": ["/bin/true"]}, "periodSeconds": 1}"#,
        &[(
            "/readinessProbe/periodSeconds",
            Warning,
            "`readinessProbe.periodSeconds` is 1: Berth runs exec probes at most every 5 s",
        )],
    ),
    (
        "probe exec every five seconds",
        r#""readinessProbe": {"exec": {"command": ["/bin/true"]}, "periodSeconds": 5}"#,
        &[],
    ),
    (
        "probe timeout over a minute",
        r#""livenessProbe": {"tcpSocket": {"port": 80}, "timeoutSeconds": 61}"#,
        &[(
            "/livenessProbe/timeoutSeconds",
            Warning,
            "`livenessProbe.timeoutSeconds` is 61: Berth ends a probe attempt after 60 s",
        )],
    ),
    (
        "probe without handler",
        r#""livenessProbe": {"periodSeconds": 5}"#,
        &[(
            "/livenessProbe",
            Error,
            "`livenessProbe` has no handler: add exactly one of `httpGet`",
        )],
    ),
    (
        "probe with two handlers",
        r#""livenessProbe": {"httpGet": {"path": "/"}, "exec": {"command": ["x"]}}"#,
        &[(
            "/livenessProbe",
            Error,
            "`livenessProbe` has 2 handlers (`httpGet`, `exec`): keep exactly one",
        )],
    ),
    (
        "probe with three handlers",
        r#""livenessProbe": {"httpGet": {"path": "/"}, "tcpSocket": {}, "exec": {"command": ["x"]}}"#,
        &[("/livenessProbe", Error, "has 3 handlers")],
    ),
    (
        "httpGet without path",
        r#""livenessProbe": {"httpGet": {"port": 80}}"#,
        &[(
            "/livenessProbe/httpGet",
            Error,
            "missing required property `path` in `livenessProbe.httpGet`: add the path to probe",
        )],
    ),
    (
        "httpGet port 0",
        r#""livenessProbe": {"httpGet": {"path": "/", "port": 0}}"#,
        &[(
            "/livenessProbe/httpGet/port",
            Error,
            "`livenessProbe.httpGet.port` must be between 1 and 65535, got 0",
        )],
    ),
    (
        "httpGet port too big",
        r#""livenessProbe": {"httpGet": {"path": "/", "port": 70000}}"#,
        &[(
            "/livenessProbe/httpGet/port",
            Error,
            "between 1 and 65535, got 70000",
        )],
    ),
    (
        "httpGet scheme lower",
        r#""livenessProbe": {"httpGet": {"path": "/", "scheme": "http"}}"#,
        &[(
            "/livenessProbe/httpGet/scheme",
            Error,
            "must be one of HTTP, HTTPS, got \"http\"",
        )],
    ),
    (
        "httpGet header without value",
        r#""livenessProbe": {"httpGet": {"path": "/", "headers": [{"name": "X"}]}}"#,
        &[(
            "/livenessProbe/httpGet/headers/0",
            Error,
            "missing required property `value`",
        )],
    ),
    (
        "tcpSocket port string",
        r#""livenessProbe": {"tcpSocket": {"port": "http"}}"#,
        &[(
            "/livenessProbe/tcpSocket/port",
            Error,
            "must be an integer, got \"http\"",
        )],
    ),
    (
        "exec empty command",
        r#""livenessProbe": {"exec": {"command": []}}"#,
        &[(
            "/livenessProbe/exec/command",
            Error,
            "`livenessProbe.exec.command` must not be empty",
        )],
    ),
    (
        "exec without command",
        r#""livenessProbe": {"exec": {}}"#,
        &[(
            "/livenessProbe/exec",
            Error,
            "missing required property `command`",
        )],
    ),
    (
        "period 0",
        r#""livenessProbe": {"httpGet": {"path": "/"}, "periodSeconds": 0}"#,
        &[(
            "/livenessProbe/periodSeconds",
            Error,
            "`livenessProbe.periodSeconds` must be at least 1, got 0",
        )],
    ),
    (
        "failureThreshold 0",
        r#""readinessProbe": {"httpGet": {"path": "/"}, "failureThreshold": 0}"#,
        &[(
            "/readinessProbe/failureThreshold",
            Error,
            "at least 1, got 0",
        )],
    ),
    (
        "successThreshold 0",
        r#""readinessProbe": {"httpGet": {"path": "/"}, "successThreshold": 0}"#,
        &[("/readinessProbe/successThreshold", Error, "at least 1")],
    ),
    (
        "timeoutSeconds 0",
        r#""readinessProbe": {"httpGet": {"path": "/"}, "timeoutSeconds": 0}"#,
        &[("/readinessProbe/timeoutSeconds", Error, "at least 1")],
    ),
    (
        "initialDelay negative",
        r#""readinessProbe": {"httpGet": {"path": "/"}, "initialDelaySeconds": -1}"#,
        &[(
            "/readinessProbe/initialDelaySeconds",
            Error,
            "at least 0, got -1",
        )],
    ),
    (
        "initialDelay huge",
        r#""readinessProbe": {"httpGet": {"path": "/"}, "initialDelaySeconds": 9999999999}"#,
        &[(
            "/readinessProbe/initialDelaySeconds",
            Error,
            "at most 2147483647",
        )],
    ),
    (
        "probe unknown key",
        r#""readinessProbe": {"httpGet": {"path": "/", "prot": 80}}"#,
        &[(
            "/readinessProbe/httpGet/prot",
            Warning,
            "unknown key `prot` in `readinessProbe.httpGet` is ignored",
        )],
    ),
    // extensions
    (
        "extension prometheus",
        r#""extensions": [{"type": "prometheus.io", "path": "/metrics", "port": "9090"}]"#,
        &[],
    ),
    (
        "extension without type",
        r#""extensions": [{"path": "/metrics"}]"#,
        &[(
            "/extensions/0",
            Error,
            "missing required property `type` in `extensions[0]`",
        )],
    ),
    (
        "extension type number",
        r#""extensions": [{"type": 1}]"#,
        &[("/extensions/0/type", Error, "must be a string")],
    ),
    // unknown keys and placeholders anywhere
    (
        "unknown top-level key",
        r#""buildSpec": {"targetBuildArchitectures": ["linux/amd64"]}"#,
        &[(
            "/buildSpec",
            Warning,
            "unknown key `buildSpec` is not part of the microservice manifest: it is kept as is but Berth ignores it",
        )],
    ),
    (
        "placeholder in unknown key",
        r#""description": "@project.description@""#,
        &[(
            "/description",
            Error,
            "`description` is the unfiltered Maven placeholder @project.description@",
        )],
    ),
    (
        "placeholder in a setting",
        r#""settings": [{"key": "url", "defaultValue": "@service.url@"}]"#,
        &[(
            "/settings/0/defaultValue",
            Error,
            "`settings[0].defaultValue` is the unfiltered Maven placeholder",
        )],
    ),
    (
        "placeholder replicas",
        r#""replicas": "@replicas@""#,
        &[(
            "/replicas",
            Error,
            "`replicas` is the unfiltered Maven placeholder @replicas@",
        )],
    ),
];

#[test]
fn each_rule_gives_its_diagnostics() {
    for (case, extra, expected) in MEMBER_CASES {
        let text = manifest_with(extra);
        let diagnostics = match validate(&text) {
            Ok(validated) => validated.warnings,
            Err(rejected) => rejected.diagnostics,
        };
        assert_diagnostics(case, &diagnostics, expected);
        let rejected = expected.iter().any(|(_, severity, _)| *severity == Error);
        assert_eq!(validate(&text).is_err(), rejected, "{case}: verdict");
    }
}

/// A version becomes the image's Docker tag as it is (the SemVer pattern admits only tag
/// characters): at most 128 characters, as Docker's tags, and the schema says so, so a version
/// `berth-pack` accepts is never refused on upload for its tag.
#[test]
fn versions_fit_a_docker_tag() {
    assert_eq!(MAX_VERSION_LENGTH, 128);
    let fits = format!("1.0.0-{}", "a".repeat(MAX_VERSION_LENGTH - 6));
    let over = format!("{fits}b");
    let long_numbers = format!("1.0.{}", "9".repeat(MAX_VERSION_LENGTH - 3));
    let cases: [(&str, &str, &[Expected]); 3] = [
        ("128 characters", &fits, &[]),
        (
            "129 characters",
            &over,
            &[(
                "/version",
                Error,
                "`version` may be at most 128 characters long, it has 129: it becomes the image's Docker tag, which Docker allows no longer; use a shorter version",
            )],
        ),
        (
            "129 digits",
            &long_numbers,
            &[("/version", Error, "at most 128 characters long, it has 129")],
        ),
    ];
    for (case, version, expected) in cases {
        let text = manifest_with(&format!("\"version\": \"{version}\""));
        let diagnostics = match validate(&text) {
            Ok(validated) => validated.warnings,
            Err(rejected) => rejected.diagnostics,
        };
        assert_diagnostics(case, &diagnostics, expected);
    }
}

/// A setting becomes a tenant option: its key and default value are bounded as the options API
/// bounds them (256 characters, 64 KiB).
#[test]
fn settings_are_bounded_as_tenant_options() {
    let setting = |key: usize, value: usize| {
        format!(
            r#""settings": [{{"key": "{}", "defaultValue": "{}"}}]"#,
            "k".repeat(key),
            "v".repeat(value)
        )
    };
    let cases: &[(&str, String, &[Expected<'_>])] = &[
        ("at the bounds", setting(256, 65_536), &[]),
        (
            "key too long",
            setting(257, 1),
            &[(
                "/settings/0/key",
                Error,
                "`settings[0].key` may be at most 256 characters long",
            )],
        ),
        (
            "value too long",
            setting(1, 65_537),
            &[(
                "/settings/0/defaultValue",
                Error,
                "may be at most 65536 characters long",
            )],
        ),
    ];
    for (case, extra, expected) in cases {
        let diagnostics = match validate(&manifest_with(extra)) {
            Ok(validated) => validated.warnings,
            Err(rejected) => rejected.diagnostics,
        };
        assert_diagnostics(case, &diagnostics, expected);
    }
}

/// Roles are bounded (every subscribing tenant's role checks and cached credentials carry
/// them): 100 of at most 128 characters each.
#[test]
fn role_lists_are_bounded() {
    let roles = |count: usize, length: usize| {
        let name = format!("ROLE_{}", "A".repeat(length - 5));
        let list = vec![format!("\"{name}\""); count].join(", ");
        format!(r#""roles": [{list}], "requiredRoles": [{list}]"#)
    };
    let cases: &[(&str, String, &[Expected<'_>])] = &[
        ("at the bounds", roles(100, 128), &[]),
        (
            "one role too many",
            roles(101, 20),
            &[
                (
                    "/roles",
                    Error,
                    "`roles` may list at most 100 entries, it has 101",
                ),
                (
                    "/requiredRoles",
                    Error,
                    "`requiredRoles` may list at most 100 entries, it has 101",
                ),
            ],
        ),
        (
            "a name too long",
            roles(1, 129),
            &[
                (
                    "/roles/0",
                    Error,
                    "`roles[0]` may be at most 128 characters long",
                ),
                (
                    "/requiredRoles/0",
                    Error,
                    "`requiredRoles[0]` may be at most 128 characters long",
                ),
            ],
        ),
    ];
    for (case, extra, expected) in cases {
        let text = manifest_with(extra);
        let diagnostics = match validate(&text) {
            Ok(validated) => validated.warnings,
            Err(rejected) => rejected.diagnostics,
        };
        // The names are displayable roles only if short; warnings about that are not the point.
        let errors: Vec<_> = diagnostics
            .into_iter()
            .filter(|d| d.severity == Error)
            .collect();
        assert_diagnostics(case, &errors, expected);
    }
}

/// Whole documents: syntax errors, missing required members, odd document shapes.
const DOCUMENT_CASES: &[(&str, &str, &[Expected<'static>])] = &[
    (
        "empty text",
        "",
        &[(
            "",
            Error,
            "the manifest is not valid JSON: EOF while parsing a value; the file ends too early",
        )],
    ),
    (
        "trailing comma",
        "{\"apiVersion\": \"2\",}",
        &[("", Error, "the manifest is not valid JSON: trailing comma")],
    ),
    ("comment", "{\n  // hi\n}", &[("", Error, "not valid JSON")]),
    (
        "array document",
        "[1, 2]",
        &[(
            "",
            Error,
            "the manifest must be a JSON object, got array [1,2]",
        )],
    ),
    (
        "empty object",
        "{}",
        &[
            (
                "",
                Error,
                "missing required property `apiVersion`: add \"apiVersion\": \"2\"",
            ),
            (
                "",
                Error,
                "missing required property `provider`: add \"provider\": {\"name\": \"<your company>\"}",
            ),
            (
                "",
                Error,
                "missing required property `version`: add the service version, e.g. \"version\": \"1.0.0\"",
            ),
        ],
    ),
    (
        "web app",
        "{\"name\": \"app\", \"contextPath\": \"app\", \"key\": \"app-key\", \"version\": \"1.0.0\"}",
        &[(
            "",
            Error,
            "this is a web application manifest, not a microservice manifest: it has no `apiVersion` and carries the web-app keys `contextPath`, `key`",
        )],
    ),
    (
        "microservice missing apiVersion with contextPath",
        "{\"contextPath\": \"x\", \"version\": \"1.0.0\", \"provider\": {\"name\": \"a\"}}",
        &[("", Error, "missing required property `apiVersion`")],
    ),
    (
        "byte order mark",
        "\u{feff}{\"apiVersion\": \"2\", \"version\": \"1.0.0\", \"provider\": {\"name\": \"a\"}}",
        &[],
    ),
];

#[test]
fn whole_documents() {
    for (case, text, expected) in DOCUMENT_CASES {
        let diagnostics = match validate(text) {
            Ok(validated) => validated.warnings,
            Err(rejected) => rejected.diagnostics,
        };
        let mut sorted: Vec<_> = diagnostics.clone();
        // Same position: compare by message for a stable order.
        sorted.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
        assert_diagnostics(case, &sorted, expected);
    }
}
