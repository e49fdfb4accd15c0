//! The console's pages: markup only. Every table body, list and number is filled by the script
//! from the REST API, so a page shows exactly what the signed-in user's roles allow.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};

use super::layout;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/login", web::get().to(login))
        .route("/console/applications", web::get().to(applications))
        .route("/console/applications/{id}", web::get().to(application))
        .route(
            "/console/applications/{id}/logs/{instance}",
            web::get().to(logs),
        )
        .route("/console/alarms", web::get().to(alarms))
        .route("/console/tenants", web::get().to(tenants))
        .route("/console/users", web::get().to(users))
        .route("/console/options", web::get().to(options))
        .route("/console/audit", web::get().to(audit))
        // Registered last: any other console path gets the console's own 404 page.
        .route("/console/{rest:.*}", web::get().to(missing));
}

async fn missing() -> HttpResponse {
    not_found()
}

fn html(markup: Markup) -> HttpResponse {
    super::respond("text/html; charset=utf-8", markup.into_string())
}

/// Application ids are numbers; instance names are Docker-name characters. Anything else is
/// answered with the console's own 404 rather than passed into the page.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn not_found() -> HttpResponse {
    let markup = layout::bare(
        "Not found",
        "missing",
        html! { p { "There is no such page. " a href="/console/applications" { "Back to the applications" } } },
    );
    let mut response = html(markup);
    *response.status_mut() = actix_web::http::StatusCode::NOT_FOUND;
    response
}

async fn login() -> HttpResponse {
    html(layout::bare(
        "Sign in to Berth",
        "login",
        html! {
            form #login novalidate {
                label for="tenant" { "Tenant" }
                input #tenant name="tenant" autocomplete="organization" placeholder="management";
                label for="username" { "User name" }
                input #username name="username" autocomplete="username" required;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    ))
}

fn search(id: &str, label: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            input #(id) type="search";
        }
    }
}

async fn applications() -> HttpResponse {
    html(layout::page(
        "Applications",
        "applications",
        "applications",
        html! {
            (search("app-search", "Search applications"))
            div.scroll {
                table #apps {
                    caption.sr { "Applications of this tenant" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Owner" } th scope="col" { "Status" } th scope="col" { "Alarms" } } }
                    tbody {}
                }
            }
            section aria-labelledby="new-app-title" data-role="ROLE_APPLICATION_MANAGEMENT_ADMIN" {
                h2 #new-app-title { "New microservice" }
                form #new-app.inline {
                    label for="new-app-name" { "Name" }
                    input #new-app-name name="name" required pattern="[A-Za-z0-9_.\\-]+";
                    button type="submit" { "Create" }
                }
            }
        },
    ))
}

async fn application(path: web::Path<String>) -> HttpResponse {
    let id = path.into_inner();
    if !valid_id(&id) {
        return not_found();
    }
    html(layout::page(
        "Application",
        "application",
        "applications",
        html! {
            div #app data-id=(id) {
                p #app-summary.summary {}
                section aria-labelledby="deployments-title" {
                    h2 #deployments-title { "Deployments" }
                    p.hint { "Charts show CPU and memory of the last 15 minutes, one sample per 2 s." }
                    div #deployments aria-live="polite" {}
                }
                section aria-labelledby="upload-title" data-role="ROLE_APPLICATION_MANAGEMENT_ADMIN" {
                    h2 #upload-title { "Upload a version" }
                    form #upload.inline {
                        label for="upload-file" { "Package (ZIP with cumulocity.json and image.tar)" }
                        input #upload-file type="file" accept=".zip,application/zip" required;
                        button type="submit" { "Upload" }
                    }
                    progress #upload-progress max="100" value="0" hidden aria-label="Upload progress" {}
                    p #upload-result role="status" {}
                    pre #diagnostics.diagnostics hidden {}
                }
                section aria-labelledby="versions-title" {
                    h2 #versions-title { "Versions" }
                    p.hint { "Activating an older version rolls the deployments back to it; a version that runs cannot be deleted." }
                    (table("versions", "Stored versions", &["Version", "Uploaded", "Tags", "Actions"]))
                    p #versions-result role="status" {}
                }
                section aria-labelledby="subs-title" data-role="ROLE_APPLICATION_MANAGEMENT_ADMIN" {
                    h2 #subs-title { "Subscriptions" }
                    form #subscribe.inline {
                        label for="sub-tenant" { "Tenant id" }
                        input #sub-tenant required;
                        button type="submit" name="action" value="subscribe" { "Subscribe" }
                        button type="button" #unsubscribe { "Unsubscribe" }
                    }
                    p #sub-result role="status" {}
                }
                section aria-labelledby="manifest-title" {
                    h2 #manifest-title { "Manifest and settings" }
                    pre #manifest.code {}
                }
                section aria-labelledby="danger-title" data-role="ROLE_APPLICATION_MANAGEMENT_ADMIN" {
                    h2 #danger-title { "Delete" }
                    button #delete-app.danger type="button" { "Delete this application" }
                }
            }
        },
    ))
}

async fn logs(path: web::Path<(String, String)>) -> HttpResponse {
    let (id, instance) = path.into_inner();
    if !valid_id(&id) || !valid_instance(&instance) {
        return not_found();
    }
    html(layout::page(
        "Logs",
        "logs",
        "applications",
        html! {
            div #logview data-id=(id) data-instance=(instance) {
                p { a #back href={"/console/applications/" (id)} { "Back to the application" } " · instance " code { (instance) } }
                div.inline {
                    (search("log-search", "Search in the log"))
                    label.check { input #follow type="checkbox" checked; " Follow live" }
                    span #log-state role="status" {}
                }
                ol #log-lines.log aria-live="polite" aria-label="Log lines" {}
            }
        },
    ))
}

fn table(id: &str, caption: &str, columns: &[&str]) -> Markup {
    html! {
        div.scroll {
            table #(id) {
                caption.sr { (caption) }
                thead { tr { @for c in columns { th scope="col" { (c) } } } }
                tbody {}
            }
        }
    }
}

async fn alarms() -> HttpResponse {
    html(layout::page(
        "Alarms",
        "alarms",
        "alarms",
        table(
            "alarm-list",
            "Active alarms",
            &["Application", "Severity", "Type", "Text"],
        ),
    ))
}

async fn tenants() -> HttpResponse {
    html(layout::page(
        "Tenants",
        "tenants",
        "tenants",
        table(
            "tenant-list",
            "Tenants",
            &["Id", "Domain", "Company", "Status"],
        ),
    ))
}

async fn users() -> HttpResponse {
    html(layout::page(
        "Users, groups and roles",
        "users",
        "users",
        html! {
            h2 { "Users" }
            (table("user-list", "Users of this tenant", &["User", "Email", "Enabled", "Groups"]))
            h2 { "Groups" }
            (table("group-list", "Groups of this tenant", &["Group", "Roles"]))
            section aria-labelledby="user-form-title" data-role="ROLE_USER_MANAGEMENT_ADMIN" {
                h2 #user-form-title { "Create or change a user" }
                p.hint { "Changing a user leaves an empty password as it is." }
                form #user-form.inline {
                    label for="user-name" { "User name" }
                    input #user-name required autocomplete="off";
                    label for="user-email" { "Email" }
                    input #user-email type="email";
                    label for="user-password" { "Password" }
                    input #user-password type="password" autocomplete="new-password";
                    label.check { input #user-enabled type="checkbox" checked; " Enabled" }
                    button type="submit" { "Create" }
                    button #user-update type="button" { "Save changes" }
                }
                p #user-result role="status" {}
            }
            section aria-labelledby="member-form-title" data-role="ROLE_USER_MANAGEMENT_ADMIN" {
                h2 #member-form-title { "Group membership" }
                form #member-form.inline {
                    label for="member-user" { "User name" }
                    input #member-user required autocomplete="off";
                    label for="member-group" { "Group" }
                    select #member-group required {}
                    button type="submit" { "Add to group" }
                    button #member-remove type="button" { "Remove from group" }
                }
                p #member-result role="status" {}
            }
        },
    ))
}

async fn options() -> HttpResponse {
    html(layout::page(
        "Tenant options",
        "options",
        "options",
        html! {
            p.hint { "Options whose key starts with credentials. are stored encrypted and shown masked." }
            (table("option-list", "Tenant options", &["Category", "Key", "Value"]))
            h2 { "Set an option" }
            form #option-form.inline data-role="ROLE_OPTION_MANAGEMENT_ADMIN" {
                label for="opt-category" { "Category" }
                input #opt-category required;
                label for="opt-key" { "Key" }
                input #opt-key required;
                label for="opt-value" { "Value" }
                input #opt-value required;
                button type="submit" { "Save" }
            }
            p #option-result role="status" {}
        },
    ))
}

async fn audit() -> HttpResponse {
    html(layout::page(
        "Audit log",
        "audit",
        "audit",
        html! {
            form #audit-filter.inline {
                label for="audit-type" { "Type" }
                input #audit-type placeholder="e.g. OomKill";
                label for="audit-app" { "Application id" }
                input #audit-app inputmode="numeric";
                button type="submit" { "Filter" }
            }
            (table("audit-list", "Audit records, newest first", &["Time", "Type", "Severity", "Application", "Text", "User"]))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_and_instance_names_reach_a_page() {
        assert!(valid_id("12"));
        for bad in ["", "1a", "<x>", "1/2", "123456789012345678901"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(valid_instance("berth-abc_1.2"));
        for bad in ["", "a b", "a\"b", "<script>", "x/y"] {
            assert!(!valid_instance(bad), "{bad:?}");
        }
    }
}
