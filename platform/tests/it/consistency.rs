//! The one invariant the crash trials check after every fault: the API, the database, the
//! data dir and Docker agree. Nothing is orphaned (containers, networks, images, tags, package
//! files, service and bootstrap users, settings options, intents), nothing is duplicated, every
//! subscription is whole, and every subscribed service answers through the proxy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

use crate::fixture::{ADMIN_PASSWORD, MGMT_ADMIN, Server, Tenant, files_under};

/// An application row with what the checks need of its manifest.
struct App {
    id: i64,
    owner: String,
    name: String,
    microservice: bool,
    active_version: Option<String>,
    per_tenant: bool,
    /// The settings category (`settingsCategory`, else `contextPath`, else the name) and keys.
    category: String,
    setting_keys: BTreeSet<String>,
}

/// What the database holds, read straight from the file.
struct Db {
    tenants: BTreeSet<String>,
    apps: Vec<App>,
    /// (application, version) → (image id, image tag, package file).
    versions: BTreeMap<(i64, String), (String, String, String)>,
    /// (application, tenant) → service user.
    subscriptions: BTreeMap<(i64, String), String>,
    /// (tenant, user, kind) of bootstrap and service users.
    hidden_users: BTreeSet<(String, String, String)>,
    /// (tenant, category, key, written from a manifest).
    options: BTreeSet<(String, String, String, bool)>,
    intents: i64,
}

fn read_db(server: &Server) -> rusqlite::Result<Db> {
    let conn = rusqlite::Connection::open_with_flags(
        server.path("berth.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let strings = |sql: &str| -> rusqlite::Result<BTreeSet<String>> {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    let tenants = strings("SELECT id FROM tenants")?;
    let mut stmt = conn.prepare(
        "SELECT id, owner_tenant, name, type, active_version_id, manifest FROM applications",
    )?;
    let apps = stmt
        .query_map([], |r| {
            let name: String = r.get(2)?;
            let manifest: Option<String> = r.get(5)?;
            let manifest: Value = manifest
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or(Value::Null);
            let category = manifest["settingsCategory"]
                .as_str()
                .or(manifest["contextPath"].as_str())
                .unwrap_or(&name)
                .to_owned();
            let setting_keys = manifest["settings"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["key"].as_str().map(str::to_owned))
                .collect();
            Ok(App {
                id: r.get(0)?,
                owner: r.get(1)?,
                microservice: r.get::<_, String>(3)? == "MICROSERVICE",
                active_version: r.get(4)?,
                per_tenant: manifest["isolation"] == "PER_TENANT",
                category,
                setting_keys,
                name,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT application_id, version, image_id, image_tag, package_file FROM application_versions",
    )?;
    let versions = stmt
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare("SELECT application_id, tenant_id, service_user FROM subscriptions")?;
    let subscriptions = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare("SELECT tenant_id, user_name, kind FROM users WHERE kind != 'USER'")?;
    let hidden_users = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT tenant_id, category, key, from_manifest FROM options")?;
    let options = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let intents = conn.query_row("SELECT COUNT(*) FROM intents", [], |r| r.get(0))?;
    Ok(Db {
        tenants,
        apps,
        versions,
        subscriptions,
        hidden_users,
        options,
        intents,
    })
}

fn docker_lines(args: &[&str]) -> Result<Vec<String>, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

/// Berth's image tags of this installation, with the image each names.
fn berth_tags(installation: &str) -> Result<BTreeMap<String, String>, String> {
    let prefix: String = installation
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let lines = docker_lines(&[
        "images",
        "--no-trunc",
        "--filter",
        &format!("reference=berth/{prefix}/*"),
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ])?;
    Ok(lines
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|(t, id)| (t.to_owned(), id.to_owned()))
        .collect())
}

/// Objects labelled with the installation: (name, `berth.app` label).
fn labelled(kind: &[&str], installation: &str) -> Result<Vec<(String, String)>, String> {
    let filter = format!("label=berth.installation={installation}");
    let mut args = kind.to_vec();
    args.extend([
        "--filter",
        &filter,
        "--format",
        "{{.Names}}|{{.Label \"berth.app\"}}|{{.Label \"berth.holder\"}}",
    ]);
    if kind[0] == "network" {
        let last = args.len() - 1;
        args[last] = "{{.Name}}|{{.Label \"berth.app\"}}|";
    }
    // Network holders go with their replicas and networks, the holder pool's network serves
    // none in particular: not checked here.
    Ok(docker_lines(&args)?
        .iter()
        .filter(|l| !crate::supervisor::is_holder_pool(l.split('|').next().unwrap_or_default()))
        .filter_map(|l| l.rsplit_once('|').filter(|(_, holder)| holder.is_empty()))
        .filter_map(|(l, _)| l.split_once('|'))
        .map(|(n, a)| (n.to_owned(), a.to_owned()))
        .collect())
}

/// What the test knows besides the server: the tenants it made (their logins, for the proxy)
/// and the images its packages held (each must be in the engine only while a version uses it).
pub struct Known<'a> {
    pub installation: &'a str,
    pub tenants: &'a HashMap<String, Tenant>,
    pub images: &'a BTreeSet<String>,
}

/// Checks the invariant once; Err says the first disagreement found.
pub fn check(server: &Server, known: &Known) -> Result<(), String> {
    let db = read_db(server).map_err(|e| format!("reading the database: {e}"))?;
    if db.intents != 0 {
        return Err(format!("{} intents still pending", db.intents));
    }
    check_files(server, &db)?;
    check_images(known, &db)?;
    check_users_and_options(&db)?;
    check_deployments(server, known, &db)?;
    check_api(server, known, &db)
}

/// The package files are exactly the versions' ones; no directory of a tenant or application
/// that is gone.
fn check_files(server: &Server, db: &Db) -> Result<(), String> {
    let recorded: BTreeSet<String> = db.versions.values().map(|v| v.2.clone()).collect();
    let found: BTreeSet<String> = files_under(&server.path("packages"))
        .into_iter()
        .map(|f| format!("packages/{f}"))
        .collect();
    if found != recorded {
        return Err(format!(
            "package files: on disk but not recorded {:?}; recorded but missing {:?}",
            found.difference(&recorded).collect::<Vec<_>>(),
            recorded.difference(&found).collect::<Vec<_>>()
        ));
    }
    let apps: BTreeSet<(String, String)> = db
        .apps
        .iter()
        .map(|a| (a.owner.clone(), a.id.to_string()))
        .collect();
    for tenant in subdirs(&server.path("packages")) {
        if !db.tenants.contains(&tenant) {
            return Err(format!("package directory of deleted tenant {tenant}"));
        }
        for app in subdirs(&server.path(&format!("packages/{tenant}"))) {
            if !apps.contains(&(tenant.clone(), app.clone())) {
                return Err(format!(
                    "package directory of deleted application {tenant}/{app}"
                ));
            }
        }
    }
    Ok(())
}

fn subdirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Berth's tags are exactly the versions' tags, each on its version's image; the packages'
/// images are in the engine only while a version uses them.
fn check_images(known: &Known, db: &Db) -> Result<(), String> {
    let tags = berth_tags(known.installation)?;
    let recorded: BTreeMap<String, String> = db
        .versions
        .values()
        .map(|(image, tag, _)| (tag.clone(), image.clone()))
        .collect();
    if tags != recorded {
        return Err(format!("image tags {tags:?} but versions {recorded:?}"));
    }
    let used: BTreeSet<&String> = db.versions.values().map(|v| &v.0).collect();
    // Untagged images are listed too (as <none>): what an interrupted load left is among them.
    let engine: BTreeSet<String> = docker_lines(&["images", "-q", "--no-trunc"])?
        .into_iter()
        .collect();
    for image in known.images {
        let present = engine.contains(image);
        if present != used.contains(image) {
            return Err(format!(
                "image {image}: in the engine {present}, used by a version {}",
                used.contains(image)
            ));
        }
    }
    Ok(())
}

/// Service users match subscriptions, bootstrap users match microservices, and every option
/// written from a manifest belongs to a subscription whose settings have that key, which in
/// turn has every one of its settings.
fn check_users_and_options(db: &Db) -> Result<(), String> {
    let by_id: HashMap<i64, &App> = db.apps.iter().map(|a| (a.id, a)).collect();
    let mut expected = BTreeSet::new();
    for ((app, tenant), user) in &db.subscriptions {
        if by_id[app].microservice {
            expected.insert((tenant.clone(), user.clone(), "SERVICE".to_owned()));
        }
    }
    for a in db.apps.iter().filter(|a| a.microservice) {
        expected.insert((
            a.owner.clone(),
            format!("servicebootstrap_{}", a.name),
            "BOOTSTRAP".to_owned(),
        ));
    }
    if db.hidden_users != expected {
        return Err(format!(
            "hidden users: unexpected {:?}; missing {:?}",
            db.hidden_users.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&db.hidden_users).collect::<Vec<_>>()
        ));
    }
    let mut wanted: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (app, tenant) in db.subscriptions.keys() {
        let a = by_id[app];
        for key in &a.setting_keys {
            wanted.insert((tenant.clone(), a.category.clone(), key.clone()));
        }
    }
    for (tenant, category, key, from_manifest) in &db.options {
        let entry = (tenant.clone(), category.clone(), key.clone());
        if *from_manifest && !wanted.contains(&entry) {
            return Err(format!(
                "option {entry:?} written from a manifest outlived its subscription"
            ));
        }
    }
    let present: BTreeSet<(String, String, String)> = db
        .options
        .iter()
        .map(|(t, c, k, _)| (t.clone(), c.clone(), k.clone()))
        .collect();
    if let Some(missing) = wanted.difference(&present).next() {
        return Err(format!("subscription without its setting {missing:?}"));
    }
    Ok(())
}

/// Containers and networks belong to subscribed applications, match the status (no
/// duplicates, every replica ready), and every subscribed service answers through the proxy.
fn check_deployments(server: &Server, known: &Known, db: &Db) -> Result<(), String> {
    let containers = labelled(&["ps", "-a"], known.installation)?;
    let networks = labelled(&["network", "ls"], known.installation)?;
    let mut subscribers: BTreeMap<i64, Vec<&String>> = BTreeMap::new();
    for (app, tenant) in db.subscriptions.keys() {
        subscribers.entry(*app).or_default().push(tenant);
    }
    let deployed = |a: &&App| a.microservice && a.active_version.is_some();
    let wanted: BTreeMap<String, &App> = db
        .apps
        .iter()
        .filter(deployed)
        .filter(|a| subscribers.contains_key(&a.id))
        .map(|a| (a.id.to_string(), a))
        .collect();
    for (name, app) in containers.iter().chain(&networks) {
        if !wanted.contains_key(app) {
            return Err(format!(
                "{name} of application {app:?}, which has no deployment"
            ));
        }
    }
    for (id, app) in &wanted {
        let owner = known
            .tenants
            .get(&app.owner)
            .ok_or(format!("no login for owner {}", app.owner))?;
        let status = server
            .req("GET", &format!("/application/applications/{id}"))
            .basic(&owner.admin_login, &owner.admin_password)
            .send()
            .json()["status"]
            .clone();
        let deployments = status["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let expected = if app.per_tenant {
            subscribers[&app.id].len()
        } else {
            1
        };
        if deployments.len() != expected {
            return Err(format!(
                "application {id}: {} deployments, {expected} expected: {status}",
                deployments.len()
            ));
        }
        let mut instances = BTreeSet::new();
        for d in &deployments {
            let names: Vec<&str> = d["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["name"].as_str())
                .collect();
            if d["active"] != d["desired"]
                || names.len() as u64 != d["desired"].as_u64().unwrap_or(0)
                || d["version"].as_str() != app.active_version.as_deref()
            {
                return Err(format!("application {id}: not settled: {d}"));
            }
            instances.extend(names.into_iter().map(str::to_owned));
        }
        let running: BTreeSet<String> = containers
            .iter()
            .filter(|(_, a)| a == id)
            .map(|(n, _)| n.clone())
            .collect();
        if running != instances {
            return Err(format!(
                "application {id}: containers {running:?} but instances {instances:?}"
            ));
        }
        let nets = networks.iter().filter(|(_, a)| a == id).count();
        if nets != expected {
            return Err(format!(
                "application {id}: {nets} networks, {expected} expected"
            ));
        }
        for tenant in &subscribers[&app.id] {
            let login = known
                .tenants
                .get(*tenant)
                .ok_or(format!("no login for subscriber {tenant}"))?;
            let answer = server
                .req("GET", &format!("/service/{}/hello", app.name))
                .basic(&login.admin_login, &login.admin_password)
                .send();
            if answer.status != 200 {
                return Err(format!(
                    "{tenant} through the proxy to {}: {} {}",
                    app.name, answer.status, answer.body
                ));
            }
        }
    }
    Ok(())
}

/// The API answers what the database holds: each tenant's subscriptions, each application's
/// active version.
fn check_api(server: &Server, known: &Known, db: &Db) -> Result<(), String> {
    for tenant in known.tenants.keys() {
        let answer = server
            .req(
                "GET",
                &format!("/tenant/tenants/{tenant}/applications?pageSize=2000"),
            )
            .basic(MGMT_ADMIN, ADMIN_PASSWORD)
            .send();
        if !db.tenants.contains(tenant) {
            if answer.status != 404 {
                return Err(format!("deleted tenant {tenant} answers {}", answer.status));
            }
            continue;
        }
        let listed: BTreeSet<String> = answer.json()["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["application"]["id"].as_str().map(str::to_owned))
            .collect();
        let recorded: BTreeSet<String> = db
            .subscriptions
            .keys()
            .filter(|(_, t)| t == tenant)
            .map(|(a, _)| a.to_string())
            .collect();
        if listed != recorded {
            return Err(format!(
                "{tenant}: the API lists subscriptions {listed:?}, the database {recorded:?}"
            ));
        }
    }
    for app in &db.apps {
        let Some(owner) = known.tenants.get(&app.owner) else {
            continue;
        };
        let answer = server
            .req("GET", &format!("/application/applications/{}", app.id))
            .basic(&owner.admin_login, &owner.admin_password)
            .send();
        if answer.status != 200 {
            return Err(format!("application {} answers {}", app.id, answer.status));
        }
        let active = answer.json()["activeVersionId"].as_str().map(str::to_owned);
        if active != app.active_version {
            return Err(format!(
                "application {}: the API says version {active:?}, the database {:?}",
                app.id, app.active_version
            ));
        }
    }
    Ok(())
}
