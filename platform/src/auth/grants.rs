//! Who may hand out which rights: nobody grants a role, or a group carrying roles, that they
//! lack, and nobody edits, deletes or sets the password of a user (or changes a group) holding
//! rights they lack. Pure decisions over role sets; `api::users` and `api::groups` act on them.

use std::collections::BTreeSet;

use super::roles;

/// Held by tenant administrators: lets them grant the roles of subscribed applications, which
/// nobody holds to begin with (they confer no right on Berth's own API).
const APPLICATION_ROLE_GRANTOR: &str = "ROLE_TENANT_ADMIN";

/// True when a caller holding `caller` may grant `role` (or act on someone holding it).
pub fn covers(caller: &BTreeSet<String>, role: &str) -> bool {
    caller.contains(role)
        || (!roles::ALL.contains(&role) && caller.contains(APPLICATION_ROLE_GRANTOR))
}

/// The roles of `wanted` that a caller holding `caller` lacks, in order; empty when all are
/// covered.
pub fn missing<'a>(
    caller: &BTreeSet<String>,
    wanted: impl IntoIterator<Item = &'a String>,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = wanted
        .into_iter()
        .map(String::as_str)
        .filter(|r| !covers(caller, r))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Tenant-management roles act on other tenants: assignable only in the management tenant and
/// in tenants allowed to create subtenants.
pub fn is_tenant_management(role: &str) -> bool {
    role.starts_with("ROLE_TENANT_MANAGEMENT_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(roles: &[&str]) -> BTreeSet<String> {
        roles.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn callers_cover_only_what_they_hold() {
        let user_manager = set(&[
            roles::USER_MANAGEMENT_READ,
            roles::USER_MANAGEMENT_CREATE,
            roles::USER_MANAGEMENT_ADMIN,
        ]);
        let tenant_admin = set(&[
            "ROLE_TENANT_ADMIN",
            roles::USER_MANAGEMENT_ADMIN,
            "ROLE_ALARM_READ",
        ]);
        let cases: &[(&BTreeSet<String>, &str, bool)] = &[
            (&user_manager, roles::USER_MANAGEMENT_ADMIN, true),
            (&user_manager, "ROLE_TENANT_ADMIN", false),
            (&user_manager, roles::TENANT_MANAGEMENT_ADMIN, false),
            (&user_manager, "ROLE_HELLO_READ", false),
            (&tenant_admin, "ROLE_ALARM_READ", true),
            (&tenant_admin, "ROLE_ALARM_ADMIN", false),
            (&tenant_admin, roles::TENANT_MANAGEMENT_ADMIN, false),
            // Application roles (not in the catalogue): tenant admins grant them.
            (&tenant_admin, "ROLE_HELLO_READ", true),
        ];
        for (caller, role, expected) in cases {
            assert_eq!(covers(caller, role), *expected, "{role} by {caller:?}");
        }
    }

    #[test]
    fn missing_lists_each_uncovered_role_once() {
        let caller = set(&["ROLE_ALARM_READ"]);
        let wanted = [
            "ROLE_ALARM_READ".to_owned(),
            "ROLE_TENANT_ADMIN".to_owned(),
            "ROLE_AUDIT_READ".to_owned(),
            "ROLE_TENANT_ADMIN".to_owned(),
        ];
        assert_eq!(
            missing(&caller, &wanted),
            ["ROLE_AUDIT_READ", "ROLE_TENANT_ADMIN"]
        );
        assert!(missing(&caller, &wanted[..1]).is_empty());
    }

    #[test]
    fn tenant_management_roles_are_recognised() {
        for (role, expected) in [
            (roles::TENANT_MANAGEMENT_ADMIN, true),
            (roles::TENANT_MANAGEMENT_READ, true),
            ("ROLE_TENANT_ADMIN", false),
            ("ROLE_TENANT_STATISTICS_READ", false),
        ] {
            assert_eq!(is_tenant_management(role), expected, "{role}");
        }
    }
}
