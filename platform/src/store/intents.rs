//! Intents: what an operation that acts outside the database (Docker, the data dir) is about
//! to do, recorded before it acts and removed once it is done or undone. Whatever a kill
//! interrupted is still here at the next start, which finishes or undoes it
//! ([`crate::apps::intents`]).

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::artifacts::Version;
use super::{StoreError, timestamp};

/// An upload about to load an image: enough to put the engine and the data dir back as they
/// were if the version never gets recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadIntent {
    /// The image the package holds (`sha256:…`).
    pub image_id: String,
    /// The engine had the image before the load (then it is never removed).
    pub image_existed: bool,
    /// Berth's tag for the version, and the image it pointed at before (snapshots).
    pub tag: String,
    pub tag_before: Option<String>,
    /// Where the package is kept, relative to the data dir.
    pub package_file: String,
}

/// An application deleted from the database whose images, tags and package files are still
/// to be removed (after the supervisor removed its containers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletionIntent {
    pub tenant: String,
    pub application_id: i64,
    pub versions: Vec<Version>,
    /// The application's package directory, relative to the data dir.
    pub package_dir: String,
}

/// An image a re-upload of the same version (a `-SNAPSHOT`) replaced, recorded with the new
/// version: removed once no version records it, nothing names it and no container uses it
/// (the old revision's run until the new one is ready).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplacedImage {
    pub image_id: String,
    /// The version that used it, for the logs.
    pub tenant: String,
    pub application_id: i64,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Upload(UploadIntent),
    DeleteApplication(DeletionIntent),
    RemoveReplacedImage(ReplacedImage),
}

const UPLOAD: &str = "upload";
const DELETE_APPLICATION: &str = "delete_application";
const REMOVE_REPLACED_IMAGE: &str = "remove_replaced_image";

/// Records `intent` (inside the caller's transaction, if any); returns its id.
pub fn record(conn: &Connection, intent: &Intent) -> Result<i64, StoreError> {
    let (kind, body) = match intent {
        Intent::Upload(u) => (UPLOAD, serde_json::to_string(u)?),
        Intent::DeleteApplication(d) => (DELETE_APPLICATION, serde_json::to_string(d)?),
        Intent::RemoveReplacedImage(r) => (REMOVE_REPLACED_IMAGE, serde_json::to_string(r)?),
    };
    conn.execute(
        "INSERT INTO intents (kind, body, created) VALUES (?1, ?2, ?3)",
        params![kind, body, timestamp()],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Marks an intent done.
pub fn finish(conn: &Connection, id: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM intents WHERE id = ?1", [id])?;
    Ok(())
}

/// Every intent not yet finished, oldest first. A row this berth cannot read is logged and
/// dropped: it can never be acted on.
pub fn pending(conn: &mut Connection) -> Result<Vec<(i64, Intent)>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, kind, body FROM intents ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let mut intents = Vec::new();
    for (id, kind, body) in rows {
        let parsed = match kind.as_str() {
            UPLOAD => serde_json::from_str(&body).map(Intent::Upload).ok(),
            DELETE_APPLICATION => serde_json::from_str(&body)
                .map(Intent::DeleteApplication)
                .ok(),
            REMOVE_REPLACED_IMAGE => serde_json::from_str(&body)
                .map(Intent::RemoveReplacedImage)
                .ok(),
            _ => None,
        };
        match parsed {
            Some(intent) => intents.push((id, intent)),
            None => {
                tracing::error!(id, %kind, "unreadable intent dropped");
                finish(conn, id)?;
            }
        }
    }
    Ok(intents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_survive_a_round_trip_and_finish() {
        let path = tempfile::NamedTempFile::new().unwrap();
        let store = super::super::Store::open(path.path()).unwrap();
        let upload = Intent::Upload(UploadIntent {
            image_id: "sha256:aa".into(),
            image_existed: false,
            tag: "berth/x/t1-1:1.0.0".into(),
            tag_before: Some("sha256:bb".into()),
            package_file: "packages/t1/1/1.0.0-x.zip".into(),
        });
        let deletion = Intent::DeleteApplication(DeletionIntent {
            tenant: "t1".into(),
            application_id: 1,
            versions: vec![Version {
                version: "1.0.0".into(),
                image_id: "sha256:aa".into(),
                image_tag: "berth/x/t1-1:1.0.0".into(),
                package_file: "packages/t1/1/1.0.0-x.zip".into(),
            }],
            package_dir: "packages/t1/1".into(),
        });
        let replaced = Intent::RemoveReplacedImage(ReplacedImage {
            image_id: "sha256:cc".into(),
            tenant: "t1".into(),
            application_id: 1,
            version: "1.0.0-SNAPSHOT".into(),
        });
        store
            .run_now(|c| {
                let a = record(c, &upload)?;
                let b = record(c, &deletion)?;
                let r = record(c, &replaced)?;
                c.execute(
                    "INSERT INTO intents (kind, body, created) VALUES ('future', '{}', 'now')",
                    [],
                )?;
                assert_eq!(
                    pending(c)?,
                    vec![
                        (a, upload.clone()),
                        (b, deletion.clone()),
                        (r, replaced.clone())
                    ]
                );
                finish(c, a)?;
                assert_eq!(
                    pending(c)?,
                    vec![(b, deletion.clone()), (r, replaced.clone())]
                );
                Ok(())
            })
            .unwrap();
    }
}
