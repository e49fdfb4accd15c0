//! Writes the supervisor's decisions (scaling, crashes, OOM kills, alarms, rollbacks) to the
//! audit log and the process log, through the one audit writer ([`crate::audit`]): writing never
//! blocks the reconcile loop, and a failure to record is logged, not fatal.

use serde_json::Value;

use crate::audit::{AuditLog, Event};

/// What happened to which application of which tenant.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub tenant: &'a str,
    pub application: (i64, &'a str),
    pub record_type: &'a str,
    pub activity: &'a str,
    pub text: String,
    pub severity: &'static str,
    pub details: Value,
}

pub fn record(audit: &AuditLog, entry: Entry<'_>) {
    audit.record(Event::ByPlatform {
        tenant: entry.tenant.to_owned(),
        application: (entry.application.0, entry.application.1.to_owned()),
        record_type: entry.record_type.to_owned(),
        activity: entry.activity.to_owned(),
        text: entry.text,
        severity: entry.severity,
        details: entry.details,
    });
}
