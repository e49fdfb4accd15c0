//! Recognises a web application's `cumulocity.json`, which shares the file name but not the format.

use serde_json::{Map, Value};

/// Keys only web applications (and plugins, smart functions) carry.
const WEB_APP_KEYS: [&str; 14] = [
    "key",
    "icon",
    "noAppSwitcher",
    "smartFunctions",
    "globalTitle",
    "dynamicOptionsUrl",
    "remotes",
    "exports",
    "isPackage",
    "package",
    "tabsHorizontal",
    "breadcrumbs",
    "rightDrawer",
    "contentSecurityPolicy",
];

/// If `manifest` is a web-app manifest, the message saying so (one error at the document,
/// instead of a list of schema errors that would not help).
///
/// A manifest without `apiVersion` is a web app when it has a web-app-only key, or when it has
/// a `contextPath` but no `provider`.
pub(crate) fn web_app_message(manifest: &Map<String, Value>) -> Option<String> {
    if manifest.contains_key("apiVersion") {
        return None;
    }
    let mut markers: Vec<String> = WEB_APP_KEYS
        .iter()
        .filter(|key| manifest.contains_key(**key))
        .map(|key| format!("`{key}`"))
        .collect();
    if manifest.contains_key("contextPath") && !manifest.contains_key("provider") {
        markers.insert(0, "`contextPath`".to_owned());
    }
    if markers.is_empty() {
        return None;
    }
    Some(format!(
        "this is a web application manifest, not a microservice manifest: it has no `apiVersion` and carries the web-app key{} {}; a microservice's cumulocity.json needs \"apiVersion\", \"version\" and \"provider\"",
        if markers.len() == 1 { "" } else { "s" },
        markers.join(", ")
    ))
}
