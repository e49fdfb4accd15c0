//! The roots of the APIs: `GET /platform`, `/tenant`, `/user` and `/application` answer the
//! links and URI templates of their resources. The Java SDK builds its user API's URLs from
//! `GET /platform` (`user.userByName` with `{realm}` and `{userName}`, `user.users` with
//! `{realm}`, `user.currentUser`), so a Java microservice calling `UserApi` needs these; the
//! generated Cumulocity clients read the others. Placeholder names are those the clients
//! substitute.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::error::ApiError;
use super::media;
use crate::auth::principal::Principal;
use crate::auth::roles;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/platform", web::get().to(platform))
        .route("/tenant", web::get().to(tenant))
        .route("/user", web::get().to(user))
        .route("/application", web::get().to(application));
}

fn tenant_api(base: &str) -> Value {
    json!({
        "self": format!("{base}/tenant"),
        "tenants": {"self": format!("{base}/tenant/tenants"), "tenants": []},
        "tenantForId": format!("{base}/tenant/tenants/{{tenantId}}"),
        "tenantApplications": format!("{base}/tenant/tenants/{{tenantId}}/applications"),
        "tenantApplicationForId":
            format!("{base}/tenant/tenants/{{tenantId}}/applications/{{applicationId}}"),
        "options": {"self": format!("{base}/tenant/options"), "options": []},
        "tenantOptionsForCategory": format!("{base}/tenant/options/{{category}}"),
        "tenantOptionForCategoryAndKey": format!("{base}/tenant/options/{{category}}/{{key}}"),
        "tenantSystemOptions": format!("{base}/tenant/system/options"),
        "tenantSystemOptionsForCategoryAndKey":
            format!("{base}/tenant/system/options/{{category}}/{{key}}"),
    })
}

fn user_api(base: &str) -> Value {
    json!({
        "self": format!("{base}/user"),
        "users": format!("{base}/user/{{realm}}/users"),
        "userByName": format!("{base}/user/{{realm}}/userByName/{{userName}}"),
        "currentUser": format!("{base}/user/currentUser"),
        "groups": format!("{base}/user/{{realm}}/groups"),
        "groupByName": format!("{base}/user/{{realm}}/groupByName/{{groupName}}"),
        "roles": format!("{base}/user/roles"),
    })
}

fn application_api(base: &str) -> Value {
    json!({
        "self": format!("{base}/application"),
        "applications": format!("{base}/application/applications"),
        "applicationById": format!("{base}/application/applications/{{id}}"),
        "applicationsByName": format!("{base}/application/applicationsByName/{{name}}"),
        "applicationsByTenant": format!("{base}/application/applicationsByTenant/{{tenantId}}"),
        "applicationsByOwner": format!("{base}/application/applicationsByOwner/{{tenantId}}"),
        "applicationsByUser": format!("{base}/application/applicationsByUser/{{username}}"),
    })
}

/// Every API Berth serves, for any authenticated caller (the Java SDK reads it with the
/// service's own credentials). Device-data APIs (inventory, measurements…) are not Berth's
/// and are absent.
async fn platform(req: HttpRequest, _principal: Principal) -> HttpResponse {
    let base = media::base_url(&req);
    media::ok(
        "platformApi",
        &json!({
            "self": format!("{base}/platform"),
            "tenant": tenant_api(&base),
            "user": user_api(&base),
            "application": application_api(&base),
        }),
    )
}

/// The OAS asks for tenant-management reading; the root also leads to the tenant's options,
/// so their readers (every tenant's admins) may read it too.
async fn tenant(req: HttpRequest, principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::TENANT_MANAGEMENT_READ,
        roles::TENANT_MANAGEMENT_ADMIN,
        roles::OPTION_MANAGEMENT_READ,
        roles::OPTION_MANAGEMENT_ADMIN,
    ])?;
    Ok(media::ok("tenantApi", &tenant_api(&media::base_url(&req))))
}

async fn user(req: HttpRequest, principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::USER_MANAGEMENT_READ,
        roles::USER_MANAGEMENT_CREATE,
        roles::USER_MANAGEMENT_ADMIN,
    ])?;
    Ok(media::ok("userApi", &user_api(&media::base_url(&req))))
}

async fn application(req: HttpRequest, principal: Principal) -> Result<HttpResponse, ApiError> {
    principal.require_any(&[
        roles::APPLICATION_MANAGEMENT_READ,
        roles::APPLICATION_MANAGEMENT_ADMIN,
    ])?;
    Ok(media::ok(
        "applicationApi",
        &application_api(&media::base_url(&req)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the Java SDK's `UserApiImpl` does with a template: replace `{name}` by the
    /// URL-encoded value.
    fn expand(template: &Value, params: &[(&str, &str)]) -> String {
        let mut url = template.as_str().unwrap().to_owned();
        for (name, value) in params {
            url = url.replace(&format!("{{{name}}}"), value);
        }
        url
    }

    #[test]
    fn templates_expand_to_the_routes_berth_serves() {
        let base = "https://h";
        let user = user_api(base);
        let tenant = tenant_api(base);
        let app = application_api(base);
        let cases = [
            (
                expand(
                    &user["userByName"],
                    &[("realm", "t1"), ("userName", "jane")],
                ),
                "https://h/user/t1/userByName/jane",
            ),
            (
                expand(&user["users"], &[("realm", "t1")]),
                "https://h/user/t1/users",
            ),
            (
                expand(&user["currentUser"], &[]),
                "https://h/user/currentUser",
            ),
            (
                expand(
                    &user["groupByName"],
                    &[("realm", "t1"), ("groupName", "admins")],
                ),
                "https://h/user/t1/groupByName/admins",
            ),
            (
                expand(
                    &tenant["tenantApplicationForId"],
                    &[("tenantId", "t1"), ("applicationId", "7")],
                ),
                "https://h/tenant/tenants/t1/applications/7",
            ),
            (
                expand(
                    &tenant["tenantOptionForCategoryAndKey"],
                    &[("category", "c"), ("key", "k")],
                ),
                "https://h/tenant/options/c/k",
            ),
            (
                expand(&app["applicationById"], &[("id", "7")]),
                "https://h/application/applications/7",
            ),
            (
                expand(&app["applicationsByUser"], &[("username", "jane")]),
                "https://h/application/applicationsByUser/jane",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(url, want);
        }
    }
}
