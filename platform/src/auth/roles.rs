//! The role (permission) catalogue and the default groups every new tenant gets.

use crate::store::tenants::GroupTemplate;

pub const TENANT_MANAGEMENT_READ: &str = "ROLE_TENANT_MANAGEMENT_READ";
pub const TENANT_MANAGEMENT_CREATE: &str = "ROLE_TENANT_MANAGEMENT_CREATE";
pub const TENANT_MANAGEMENT_UPDATE: &str = "ROLE_TENANT_MANAGEMENT_UPDATE";
pub const TENANT_MANAGEMENT_ADMIN: &str = "ROLE_TENANT_MANAGEMENT_ADMIN";
pub const USER_MANAGEMENT_READ: &str = "ROLE_USER_MANAGEMENT_READ";
pub const USER_MANAGEMENT_CREATE: &str = "ROLE_USER_MANAGEMENT_CREATE";
pub const USER_MANAGEMENT_ADMIN: &str = "ROLE_USER_MANAGEMENT_ADMIN";
pub const USER_MANAGEMENT_OWN_READ: &str = "ROLE_USER_MANAGEMENT_OWN_READ";
pub const USER_MANAGEMENT_OWN_ADMIN: &str = "ROLE_USER_MANAGEMENT_OWN_ADMIN";
pub const APPLICATION_MANAGEMENT_READ: &str = "ROLE_APPLICATION_MANAGEMENT_READ";
pub const APPLICATION_MANAGEMENT_ADMIN: &str = "ROLE_APPLICATION_MANAGEMENT_ADMIN";
pub const OPTION_MANAGEMENT_READ: &str = "ROLE_OPTION_MANAGEMENT_READ";
pub const OPTION_MANAGEMENT_ADMIN: &str = "ROLE_OPTION_MANAGEMENT_ADMIN";

/// Every assignable role, in the order `GET /user/roles` lists them.
/// Longest role name an application may provide or require (as the manifest schema says).
pub const MAX_ROLE_NAME: usize = 128;
/// Most roles an application may provide, and most it may require (as the manifest schema
/// says): real manifests list up to about 20; every subscribing tenant's role checks and every
/// cached credential carry them.
pub const MAX_APPLICATION_ROLES: usize = 100;

pub const ALL: &[&str] = &[
    "ROLE_ALARM_READ",
    "ROLE_ALARM_ADMIN",
    APPLICATION_MANAGEMENT_READ,
    APPLICATION_MANAGEMENT_ADMIN,
    "ROLE_AUDIT_READ",
    "ROLE_AUDIT_ADMIN",
    "ROLE_BULK_OPERATION_READ",
    "ROLE_BULK_OPERATION_ADMIN",
    "ROLE_DEVICE_BOOTSTRAP",
    "ROLE_DEVICE_CONTROL_READ",
    "ROLE_DEVICE_CONTROL_ADMIN",
    "ROLE_EMAIL_CREATE",
    "ROLE_EVENT_READ",
    "ROLE_EVENT_ADMIN",
    "ROLE_IDENTITY_READ",
    "ROLE_IDENTITY_ADMIN",
    "ROLE_INVENTORY_READ",
    "ROLE_INVENTORY_CREATE",
    "ROLE_INVENTORY_ADMIN",
    "ROLE_MEASUREMENT_READ",
    "ROLE_MEASUREMENT_ADMIN",
    "ROLE_NOTIFICATION",
    OPTION_MANAGEMENT_READ,
    OPTION_MANAGEMENT_ADMIN,
    "ROLE_RETENTION_RULE_READ",
    "ROLE_RETENTION_RULE_ADMIN",
    "ROLE_SMS_READ",
    "ROLE_TENANT_ADMIN",
    TENANT_MANAGEMENT_READ,
    TENANT_MANAGEMENT_CREATE,
    TENANT_MANAGEMENT_UPDATE,
    TENANT_MANAGEMENT_ADMIN,
    "ROLE_TENANT_STATISTICS_READ",
    USER_MANAGEMENT_READ,
    USER_MANAGEMENT_CREATE,
    USER_MANAGEMENT_ADMIN,
    USER_MANAGEMENT_OWN_READ,
    USER_MANAGEMENT_OWN_ADMIN,
];

/// Roles of a subtenant's `admins` group: everything except managing other tenants.
const SUBTENANT_ADMIN: &[&str] = &[
    "ROLE_ALARM_READ",
    "ROLE_ALARM_ADMIN",
    APPLICATION_MANAGEMENT_READ,
    APPLICATION_MANAGEMENT_ADMIN,
    "ROLE_AUDIT_READ",
    "ROLE_AUDIT_ADMIN",
    "ROLE_BULK_OPERATION_READ",
    "ROLE_BULK_OPERATION_ADMIN",
    "ROLE_DEVICE_CONTROL_READ",
    "ROLE_DEVICE_CONTROL_ADMIN",
    "ROLE_EVENT_READ",
    "ROLE_EVENT_ADMIN",
    "ROLE_IDENTITY_READ",
    "ROLE_IDENTITY_ADMIN",
    "ROLE_INVENTORY_READ",
    "ROLE_INVENTORY_CREATE",
    "ROLE_INVENTORY_ADMIN",
    "ROLE_MEASUREMENT_READ",
    "ROLE_MEASUREMENT_ADMIN",
    OPTION_MANAGEMENT_READ,
    OPTION_MANAGEMENT_ADMIN,
    "ROLE_RETENTION_RULE_READ",
    "ROLE_RETENTION_RULE_ADMIN",
    "ROLE_TENANT_ADMIN",
    "ROLE_TENANT_STATISTICS_READ",
    USER_MANAGEMENT_READ,
    USER_MANAGEMENT_CREATE,
    USER_MANAGEMENT_ADMIN,
    USER_MANAGEMENT_OWN_READ,
    USER_MANAGEMENT_OWN_ADMIN,
];

const OWN_USER: &[&str] = &[USER_MANAGEMENT_OWN_READ, USER_MANAGEMENT_OWN_ADMIN];

/// Groups every subtenant starts with; `admins` and `devices` are protected.
pub const SUBTENANT_GROUPS: &[GroupTemplate] = &[
    GroupTemplate {
        name: "admins",
        description: "Administrators of the tenant",
        roles: SUBTENANT_ADMIN,
        protected: true,
    },
    GroupTemplate {
        name: "devices",
        description: "Device users",
        roles: &[
            "ROLE_INVENTORY_READ",
            "ROLE_INVENTORY_CREATE",
            "ROLE_MEASUREMENT_ADMIN",
            "ROLE_EVENT_ADMIN",
            "ROLE_ALARM_ADMIN",
            "ROLE_IDENTITY_READ",
            "ROLE_DEVICE_CONTROL_READ",
        ],
        protected: true,
    },
    GroupTemplate {
        name: "Global Reader",
        description: "Read access to all data",
        roles: &[
            "ROLE_ALARM_READ",
            APPLICATION_MANAGEMENT_READ,
            "ROLE_AUDIT_READ",
            "ROLE_EVENT_READ",
            "ROLE_IDENTITY_READ",
            "ROLE_INVENTORY_READ",
            "ROLE_MEASUREMENT_READ",
            OPTION_MANAGEMENT_READ,
            USER_MANAGEMENT_READ,
            USER_MANAGEMENT_OWN_READ,
            USER_MANAGEMENT_OWN_ADMIN,
        ],
        protected: false,
    },
    GroupTemplate {
        name: "Global User Manager",
        description: "Manage users and groups",
        roles: &[
            USER_MANAGEMENT_READ,
            USER_MANAGEMENT_CREATE,
            USER_MANAGEMENT_ADMIN,
            USER_MANAGEMENT_OWN_READ,
            USER_MANAGEMENT_OWN_ADMIN,
        ],
        protected: false,
    },
    GroupTemplate {
        name: "Application Manager",
        description: "Upload and manage microservices and their settings",
        roles: &[
            APPLICATION_MANAGEMENT_READ,
            APPLICATION_MANAGEMENT_ADMIN,
            OPTION_MANAGEMENT_READ,
            OPTION_MANAGEMENT_ADMIN,
            USER_MANAGEMENT_OWN_READ,
            USER_MANAGEMENT_OWN_ADMIN,
        ],
        protected: false,
    },
    GroupTemplate {
        name: "business",
        description: "Business users (own profile only)",
        roles: OWN_USER,
        protected: false,
    },
];

/// The management tenant's groups: `admins` holds every role.
pub const MANAGEMENT_GROUPS: &[GroupTemplate] = &[
    GroupTemplate {
        name: "admins",
        description: "Administrators of the platform",
        roles: ALL,
        protected: true,
    },
    GroupTemplate {
        name: "Tenant Manager",
        description: "Create and manage subtenants",
        roles: &[
            TENANT_MANAGEMENT_READ,
            TENANT_MANAGEMENT_CREATE,
            TENANT_MANAGEMENT_UPDATE,
            TENANT_MANAGEMENT_ADMIN,
            USER_MANAGEMENT_OWN_READ,
            USER_MANAGEMENT_OWN_ADMIN,
        ],
        protected: false,
    },
];

/// True when `name` looks like a role (`ROLE_` + upper-case letters, digits, `_`).
pub fn is_role_name(name: &str) -> bool {
    name.len() <= MAX_ROLE_NAME
        && name.strip_prefix("ROLE_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_group_uses_catalogue_roles() {
        for group in SUBTENANT_GROUPS.iter().chain(MANAGEMENT_GROUPS) {
            for role in group.roles {
                assert!(ALL.contains(role), "{} has unknown {role}", group.name);
            }
        }
        assert!(!SUBTENANT_ADMIN.contains(&TENANT_MANAGEMENT_ADMIN));
    }
}
