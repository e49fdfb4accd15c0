//! Writes the supervisor's decisions (scaling, crashes, OOM kills, alarms, rollbacks) to the
//! audit log and the process log. Writing never blocks the reconcile loop: the database write
//! runs on its own task, and a failure to record is logged, not fatal.

use serde_json::Value;

use crate::store::Store;
use crate::store::audit::{self, NewRecord};

/// The user name of records the platform itself makes.
pub const PLATFORM_USER: &str = "berth";

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

pub fn record(store: &Store, entry: Entry<'_>) {
    tracing::info!(
        tenant = entry.tenant,
        application = entry.application.1,
        record = entry.record_type,
        severity = entry.severity,
        details = %entry.details,
        "{}",
        entry.text
    );
    let record = NewRecord {
        tenant: entry.tenant.to_owned(),
        application: Some((entry.application.0, entry.application.1.to_owned())),
        record_type: entry.record_type.to_owned(),
        activity: entry.activity.to_owned(),
        text: entry.text,
        severity: entry.severity,
        user: PLATFORM_USER.to_owned(),
        details: entry.details,
    };
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.run(move |c| audit::append(c, &record)).await {
            tracing::warn!(error = %e, "cannot write an audit record");
        }
    });
}
