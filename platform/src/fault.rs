//! Named fault points for crash trials. `BERTH_TEST_PAUSE_AT=<point>` makes the process stop at
//! that point of a long operation: it creates `<point>.reached` in `BERTH_TEST_PAUSE_DIR` and
//! waits until `<point>.release` appears there, so a test can kill Berth (SIGKILL) or drop the
//! client exactly there, then let it go on. `BERTH_TEST_PAUSE_AT=*` arms a point only while
//! `<point>.armed` exists in the directory, so one process serves trials at different points.
//! Unset (always, outside tests) a point costs one comparison.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Upload: the image is loaded into the engine, not yet tagged or recorded.
pub const UPLOAD_LOADED: &str = "upload-loaded";
/// Upload: tagged and the package kept in the data dir, the version not yet recorded.
pub const UPLOAD_KEPT: &str = "upload-kept";
/// Deletion: the database commit is done, nothing outside the database removed yet.
pub const DELETE_COMMITTED: &str = "delete-committed";
/// Subscription: recorded in the database, the supervisor not yet told.
pub const SUBSCRIBE_COMMITTED: &str = "subscribe-committed";
/// Unsubscription: removed from the database, its containers not yet.
pub const UNSUBSCRIBE_COMMITTED: &str = "unsubscribe-committed";
/// Tenant deletion: the tenant and its applications are gone from the database, nothing
/// outside it removed yet.
pub const TENANT_DELETE_COMMITTED: &str = "tenant-delete-committed";

/// Scaling: an autoscaler changed a replica count and its window is saved, no replica made or
/// drained for it yet.
pub const SCALE_DECIDED: &str = "scale-decided";

/// Authentication: a credential is verified from the user's record as read, not yet cached.
pub const AUTH_VERIFIED: &str = "auth-verified";

/// Audit: a batch of records is about to be written.
pub const AUDIT_WRITE: &str = "audit-write";

/// Arms every point whose `<point>.armed` file exists.
const ANY: &str = "*";

struct Pause {
    point: String,
    dir: PathBuf,
}

fn configured() -> Option<&'static Pause> {
    static PAUSE: OnceLock<Option<Pause>> = OnceLock::new();
    PAUSE
        .get_or_init(|| {
            let point = std::env::var("BERTH_TEST_PAUSE_AT").ok()?;
            let dir = std::env::var_os("BERTH_TEST_PAUSE_DIR")?;
            Some(Pause {
                point,
                dir: PathBuf::from(dir),
            })
        })
        .as_ref()
}

/// Passes `point`, pausing there if a test asked for it.
pub async fn point(point: &str) {
    let Some(pause) = configured().filter(|p| {
        p.point == point || (p.point == ANY && p.dir.join(format!("{point}.armed")).exists())
    }) else {
        return;
    };
    tracing::warn!(point, "test fault point reached; pausing");
    let _ = std::fs::write(pause.dir.join(format!("{point}.reached")), b"");
    let release = pause.dir.join(format!("{point}.release"));
    while !release.exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
