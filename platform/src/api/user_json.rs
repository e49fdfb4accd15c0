//! How users, groups and roles look on the wire (Cumulocity's shapes), shared by the handlers
//! of users, groups, roles, a user's rights and the current user.

use serde_json::{Value, json};

use crate::store::users::{Group, GroupRef, User};

pub fn user_self(base: &str, tenant: &str, name: &str) -> String {
    format!("{base}/user/{tenant}/users/{name}")
}

pub fn role_json(base: &str, role: &str) -> Value {
    json!({"id": role, "name": role, "self": format!("{base}/user/roles/{role}")})
}

/// The user representation (without roles/groups details unless given).
pub fn user_json(base: &str, user: &User, direct_roles: &[String], groups: &[GroupRef]) -> Value {
    let self_url = user_self(base, &user.tenant_id, &user.user_name);
    let mut body = json!({
        "id": user.user_name,
        "self": self_url,
        "userName": user.user_name,
        "enabled": user.enabled,
        "customProperties": user.custom_properties,
        "lastPasswordChange": user.last_password_change,
        "shouldResetPassword": false,
        "twoFactorAuthenticationEnabled": false,
        "roles": {
            "self": format!("{self_url}/roles"),
            "references": direct_roles.iter().map(|r| json!({"self": format!("{self_url}/roles/{r}"), "role": role_json(base, r)})).collect::<Vec<_>>(),
        },
        "groups": {
            "self": format!("{self_url}/groups"),
            "references": groups.iter().map(|g| json!({"self": format!("{self_url}/groups/{}", g.id), "group": group_ref_json(base, g)})).collect::<Vec<_>>(),
        },
    });
    let fields = [
        ("email", &user.email),
        ("firstName", &user.first_name),
        ("lastName", &user.last_name),
        ("displayName", &user.display_name),
        ("phone", &user.phone),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            body[name] = json!(v);
        }
    }
    body
}

/// A group as a user's representation names it (`GET` its `self` for the rest).
pub fn group_ref_json(base: &str, group: &GroupRef) -> Value {
    json!({
        "id": group.id,
        "self": format!("{base}/user/{}/groups/{}", group.tenant_id, group.id),
        "name": group.name,
    })
}

pub fn group_json(base: &str, group: &Group) -> Value {
    let self_url = format!("{base}/user/{}/groups/{}", group.tenant_id, group.id);
    json!({
        "id": group.id,
        "self": self_url,
        "name": group.name,
        "description": group.description,
        "customProperties": group.custom_properties,
        "roles": {
            "self": format!("{self_url}/roles"),
            "references": group.roles.iter().map(|r| json!({"self": format!("{self_url}/roles/{r}"), "role": role_json(base, r)})).collect::<Vec<_>>(),
        },
        "users": {"self": format!("{self_url}/users")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_groups_are_named_not_carried() {
        let group = GroupRef {
            id: 7,
            tenant_id: "t1".into(),
            name: "business".into(),
        };
        assert_eq!(
            group_ref_json("https://h", &group),
            json!({"id": 7, "self": "https://h/user/t1/groups/7", "name": "business"})
        );
    }
}
