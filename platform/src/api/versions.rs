//! `/application/applications/{id}/versions`: the stored versions of a microservice (Cumulocity's
//! application versions API): list or look one up by `version`/`tag`, replace a version's tags
//! (moving `latest` to it activates it: the manual rollback), delete one that does not run.
//! New versions still arrive as packages through `…/binaries`.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::applications::{Access, MICROSERVICE, authorized_id};
use super::error::ApiError;
use super::paging::page_of;
use super::{AppState, db, media};
use crate::auth::principal::Principal;
use crate::store::applications;
use crate::store::versions::{self, LATEST, Listing, StoredVersion};

/// At most this many tags per version, each at most [`MAX_TAG`] characters.
const MAX_TAGS: usize = 20;
const MAX_TAG: usize = 64;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/application/applications/{id}/versions",
        web::get().to(list),
    )
    .route(
        "/application/applications/{id}/versions",
        web::delete().to(delete),
    )
    .route(
        "/application/applications/{id}/versions/{version}",
        web::put().to(update),
    );
}

/// The caller's application `id`, refused (422) unless it is a microservice: only those have
/// stored versions.
async fn listing(state: &AppState, principal: &Principal, id: i64) -> Result<Listing, ApiError> {
    let tenant = principal.tenant.clone();
    let (app, listing) = db(state, "applications", move |c| {
        Ok((
            applications::get(c, &tenant, id)?,
            versions::list(c, &tenant, id)?,
        ))
    })
    .await?;
    if app.app_type != MICROSERVICE {
        return Err(ApiError::invalid(
            "applications",
            &format!(
                "Application {id} is of type {}; only microservices have versions",
                app.app_type
            ),
        ));
    }
    Ok(listing)
}

fn version_json(base: &str, id: i64, listing: &Listing, v: &StoredVersion) -> Value {
    let mut tags = Vec::with_capacity(v.tags.len() + 1);
    if listing.active.as_deref() == Some(v.version.as_str()) {
        tags.push(LATEST.to_owned());
    }
    tags.extend(v.tags.iter().cloned());
    json!({
        "self": format!("{base}/application/applications/{id}/versions/{}", v.version),
        "version": v.version,
        "binaryId": v.image_id,
        "tag": tags,
        "uploadTime": v.upload_time,
        "stable": listing.stable.as_deref() == Some(v.version.as_str()),
    })
}

#[derive(Debug, Deserialize)]
struct Selector {
    version: Option<String>,
    tag: Option<String>,
}

/// The version a `?version=` or `?tag=` query names in `listing` (404 when none does).
fn select<'a>(
    listing: &'a Listing,
    id: i64,
    selector: &Selector,
) -> Result<Option<&'a StoredVersion>, ApiError> {
    let wanted = match (&selector.version, &selector.tag) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "applications",
                "Give either version or tag, not both",
            ));
        }
        (Some(v), None) => Some(v.clone()),
        (None, Some(t)) if t == LATEST => listing.active.clone(),
        (None, Some(t)) => listing
            .versions
            .iter()
            .find(|v| v.tags.contains(t))
            .map(|v| v.version.clone()),
        (None, None) => return Ok(None),
    };
    let name = selector
        .version
        .as_deref()
        .or(selector.tag.as_deref())
        .unwrap_or_default();
    wanted
        .and_then(|w| listing.versions.iter().find(|v| v.version == w))
        .map(Some)
        .ok_or_else(|| {
            ApiError::not_found(
                "applications",
                &format!("Application {id} has no version {name:?}"),
            )
        })
}

/// `GET …/versions`: every stored version (paged, key `applicationVersions`); with `?version=`
/// or `?tag=` the one it names.
async fn list(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let id = authorized_id(&principal, Access::Read, &path)?;
    let listing = listing(&state, &principal, id).await?;
    let base = media::base_url(&req);
    let selector = Selector {
        version: query.get("version").cloned(),
        tag: query.get("tag").cloned(),
    };
    if let Some(one) = select(&listing, id, &selector)? {
        return Ok(media::ok(
            "applicationVersion",
            &version_json(&base, id, &listing, one),
        ));
    }
    let items = listing
        .versions
        .iter()
        .rev()
        .map(|v| version_json(&base, id, &listing, v))
        .collect();
    let body = page_of(&req, &query, "applicationVersions", items)?;
    Ok(media::ok("applicationVersionCollection", &body))
}

/// Checks tags: letters, digits, `.`, `+`, `-` (422 otherwise), bounded in count and length.
fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(
            "applications",
            &format!("A version has at most {MAX_TAGS} tags"),
        ));
    }
    for tag in tags {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-');
        if tag.is_empty() || tag.chars().count() > MAX_TAG || !tag.chars().all(allowed) {
            return Err(ApiError::invalid(
                "applications",
                &format!(
                    "Invalid tag {:?}: a tag has 1 to {MAX_TAG} characters, each a letter, a digit, '.', '+' or '-'",
                    tag.chars().take(MAX_TAG + 1).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// The body of `PUT …/versions/{version}`: Cumulocity's `tags` (its schema's `tag` also read).
#[derive(Debug, Deserialize)]
struct TagsBody {
    tags: Option<Vec<String>>,
    tag: Option<Vec<String>>,
}

/// `PUT …/versions/{version}` `{"tags": […]}`: replaces the version's tags. With `latest` among
/// them the version becomes the active one (the supervisor rolls it out); the active version
/// keeps `latest` until another version takes it (409 when the body drops it).
async fn update(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<TagsBody>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let id = authorized_id(&principal, Access::Admin, &id)?;
    let body = body.into_inner();
    let mut tags = body
        .tags
        .or(body.tag)
        .ok_or_else(|| ApiError::invalid("applications", "tags is required"))?;
    check_tags(&tags)?;
    tags.sort();
    tags.dedup();
    let before = listing(&state, &principal, id).await?;
    if !before.versions.iter().any(|v| v.version == version) {
        return Err(ApiError::not_found(
            "applications",
            &format!("Application {id} has no version {version:?}"),
        ));
    }
    let activate = tags.iter().any(|t| t == LATEST);
    if !activate && before.active.as_deref() == Some(version.as_str()) {
        return Err(ApiError::conflict(
            "applications",
            &format!(
                "Version {version} is active and keeps the tag latest; give latest to another version to activate that one"
            ),
        ));
    }
    crate::apps::versions::set_tags(&state.apps, principal.clone(), id, version.clone(), tags)
        .await?;
    let after = listing(&state, &principal, id).await?;
    let one = after
        .versions
        .iter()
        .find(|v| v.version == version)
        .ok_or_else(|| {
            ApiError::not_found(
                "applications",
                &format!("Application {id} has no version {version:?}"),
            )
        })?;
    let body = version_json(&media::base_url(&req), id, &after, one);
    Ok(media::updated(&req, "applicationVersion", &body))
}

/// `DELETE …/versions?version=|tag=`: removes a stored version, its image tag and package
/// (409 for the active version, i.e. `latest`, and for the stable one a rollout may return to).
async fn delete(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Selector>,
) -> Result<HttpResponse, ApiError> {
    let id = authorized_id(&principal, Access::Admin, &path)?;
    let listing = listing(&state, &principal, id).await?;
    let selector = query.into_inner();
    let version = select(&listing, id, &selector)?
        .ok_or_else(|| ApiError::invalid("applications", "Give the version or tag to delete"))?
        .version
        .clone();
    crate::apps::versions::delete(&state.apps, principal, id, version).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_take_letters_digits_dots_pluses_and_dashes() {
        let ok = ["latest", "1.0.0+build-7", "Prod"];
        for tag in ok {
            assert!(check_tags(&[tag.to_owned()]).is_ok(), "{tag}");
        }
        for tag in ["", "a b", "a/b", "ü", "a_b", &"x".repeat(MAX_TAG + 1)] {
            let err = check_tags(&[tag.to_owned()]).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{tag:?}");
        }
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| i.to_string()).collect();
        assert!(check_tags(&many).is_err());
    }
}
