//! The one audit writer: every audit record, whether a user's action (API) or the platform's
//! own decision (supervisor), goes through [`AuditLog::record`] into one queue drained by one
//! task. Recording never blocks the caller (the action already happened; a failed write is
//! logged, not returned), and [`AuditLog::flush`] at shutdown writes out what is queued, so a
//! record made just before a shutdown is not lost with a detached task. Readers of the audit
//! API flush first, so a client reads back the record of a change it has just made.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::store::audit::{self, NewRecord};

/// The user name of records the platform itself makes.
pub const PLATFORM_USER: &str = "berth";

/// Most records written in one database call: a burst shares a transaction's cost, and the
/// lock is not held for long.
const BATCH: usize = 256;

/// Something worth an audit record.
#[derive(Debug, Clone)]
pub enum Event {
    /// A user acted: on an application (`application` set), or on a user, group, option or
    /// tenant. Recorded once in each of `tenants` (e.g. the subscriber and the owner).
    ByUser {
        tenants: Vec<String>,
        /// The plain user name (the record's tenant says where they acted), as Cumulocity.
        user: String,
        /// The tenant of the user: a record in another tenant's log is of another tenant's
        /// doing (bounded apart there) unless the management tenant acted.
        actor_tenant: String,
        application: Option<(i64, String)>,
        record_type: String,
        activity: String,
        text: String,
    },
    /// The platform decided (scaling, crash, OOM kill, alarm, rollback) about an application.
    ByPlatform {
        tenant: String,
        application: (i64, String),
        record_type: String,
        activity: String,
        text: String,
        severity: &'static str,
        details: Value,
    },
}

impl Event {
    /// The records to append, one per distinct tenant.
    fn records(self) -> Vec<NewRecord> {
        match self {
            Event::ByUser {
                tenants,
                user,
                actor_tenant,
                application,
                record_type,
                activity,
                text,
            } => {
                let mut seen: Vec<&str> = Vec::new();
                let mut records = Vec::new();
                for tenant in &tenants {
                    if seen.contains(&tenant.as_str()) {
                        continue;
                    }
                    seen.push(tenant);
                    let by_other_tenant = *tenant != actor_tenant
                        && actor_tenant != crate::store::tenants::MANAGEMENT;
                    records.push(NewRecord {
                        tenant: tenant.clone(),
                        application: application.clone(),
                        record_type: record_type.clone(),
                        activity: activity.clone(),
                        text: text.clone(),
                        severity: audit::INFORMATION,
                        // Another tenant's log names the acting tenant, not its user: a
                        // user name is half a login, and that tenant's own.
                        user: if by_other_tenant {
                            actor_tenant.clone()
                        } else {
                            user.clone()
                        },
                        details: json!({}),
                        by_other_tenant,
                    });
                }
                records
            }
            Event::ByPlatform {
                tenant,
                application,
                record_type,
                activity,
                text,
                severity,
                details,
            } => vec![NewRecord {
                tenant,
                application: Some(application),
                record_type,
                activity,
                text,
                severity,
                user: PLATFORM_USER.to_owned(),
                details,
                by_other_tenant: false,
            }],
        }
    }

    fn log(&self) {
        match self {
            Event::ByUser {
                tenants,
                user,
                text,
                ..
            } => {
                let tenant = tenants.first().map(String::as_str).unwrap_or_default();
                tracing::info!(user = %user, tenant = %tenant, "{text}");
            }
            Event::ByPlatform {
                tenant,
                application,
                record_type,
                severity,
                details,
                text,
                ..
            } => tracing::info!(
                tenant = %tenant,
                application = %application.1,
                record = %record_type,
                severity = %severity,
                details = %details,
                "{text}"
            ),
        }
    }
}

enum Message {
    Write(Vec<NewRecord>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle every recorder holds (cheap to clone).
#[derive(Debug, Clone)]
pub struct AuditLog {
    // Unbounded like the per-record tasks it replaces: each record follows an action that
    // already cost a database write, so the queue grows no faster than the store is written.
    queue: mpsc::UnboundedSender<Message>,
}

impl AuditLog {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(store: Store) -> AuditLog {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(write_all(store, receiver));
        AuditLog { queue }
    }

    /// Queues `event` (and logs it). Never fails: a write error is logged by the writer.
    pub fn record(&self, event: Event) {
        event.log();
        if self.queue.send(Message::Write(event.records())).is_err() {
            tracing::warn!("audit writer stopped: a record is lost");
        }
    }

    /// Waits until every record queued before this call is written (or failed and was logged).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_all(store: Store, mut receiver: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(records) => batch.extend(records),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            crate::fault::point(crate::fault::AUDIT_WRITE).await;
            let written = store
                .run(move |conn| {
                    for record in &batch {
                        audit::append(conn, record)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write audit records");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_event(text: &str) -> Event {
        Event::ByUser {
            tenants: vec!["t1".into(), "t2".into(), "t1".into()],
            user: "alice".into(),
            actor_tenant: "t1".into(),
            application: None,
            record_type: "User".into(),
            activity: "Created".into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_record_in_another_tenants_log_names_the_acting_tenant_not_its_user() {
        let origin = |actor: &str| -> Vec<(String, bool, String)> {
            let mut event = user_event("x");
            if let Event::ByUser { actor_tenant, .. } = &mut event {
                *actor_tenant = actor.into();
            }
            event
                .records()
                .into_iter()
                .map(|r| (r.tenant, r.by_other_tenant, r.user))
                .collect()
        };
        let row = |tenant: &str, other: bool, user: &str| (tenant.into(), other, user.into());
        // (In t2's log, t1's user is named by t1 alone.)
        assert_eq!(
            origin("t1"),
            vec![row("t1", false, "alice"), row("t2", true, "t1")]
        );
        assert_eq!(
            origin(crate::store::tenants::MANAGEMENT),
            vec![row("t1", false, "alice"), row("t2", false, "alice")]
        );
    }

    fn texts(store: &Store, tenant: &str) -> Vec<String> {
        let tenant = tenant.to_owned();
        store
            .run_now(move |c| {
                audit::list(
                    c,
                    &tenant,
                    &audit::Filter::default(),
                    crate::store::Page::ALL,
                )
            })
            .unwrap()
            .0
            .into_iter()
            .map(|r| r.text)
            .collect()
    }

    // Current-thread runtime: a record written on a detached task would not have run yet
    // when the runtime is dropped, so this fails unless `flush` drains the queue.
    #[tokio::test(flavor = "current_thread")]
    async fn a_record_made_just_before_shutdown_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let log = AuditLog::start(store.clone());
        log.record(user_event("first"));
        log.record(Event::ByPlatform {
            tenant: "t1".into(),
            application: (7, "svc".into()),
            record_type: "Restart".into(),
            activity: "Restarted".into(),
            text: "last".into(),
            severity: audit::MAJOR,
            details: json!({"exit": 1}),
        });
        log.flush().await;
        let mut t1 = texts(&store, "t1");
        t1.sort();
        assert_eq!(t1, ["first", "last"]);
        // One record per distinct tenant.
        assert_eq!(texts(&store, "t2"), ["first"]);
    }
}
