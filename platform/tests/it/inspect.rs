//! What a server has made, seen from outside: row counts of every table in its SQLite database
//! (opened read-only), the files under `packages/` and `tmp/`, and its Docker objects (tags under
//! its installation's repository prefix, containers and networks carrying its installation label).
//! Two snapshots taken around a rejected request must be equal: "nothing is left".

use std::collections::BTreeMap;
use std::process::Command;

use rusqlite::{Connection, OpenFlags};

use crate::fixture::{Server, files_under};

/// Everything a request could leave behind, in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Table name → row count.
    pub rows: BTreeMap<String, i64>,
    /// Files under the data directory's `packages/` and `tmp/`.
    pub files: Vec<String>,
    /// `repository:tag` of every image under this installation's prefix.
    pub tags: Vec<String>,
    /// Names of containers labelled with this installation.
    pub containers: Vec<String>,
    /// Names of networks labelled with this installation.
    pub networks: Vec<String>,
}

impl Snapshot {
    pub fn take(server: &Server) -> Snapshot {
        let installation = server.installation();
        let label = format!("label=berth.installation={installation}");
        let mut files = Vec::new();
        for dir in ["packages", "tmp"] {
            files.extend(
                files_under(&server.path(dir))
                    .into_iter()
                    .map(|f| format!("{dir}/{f}")),
            );
        }
        Snapshot {
            rows: row_counts(server),
            files,
            tags: docker_lines(&[
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                &format!("berth/{installation}/*"),
            ]),
            // Not the holder pool's, which fills in the background whatever the request did.
            containers: docker_lines(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
                .into_iter()
                .filter(|name| !crate::supervisor::is_holder_pool(name))
                .collect(),
            networks: docker_lines(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])
                .into_iter()
                .filter(|name| !crate::supervisor::is_holder_pool(name))
                .collect(),
        }
    }

    /// What changed between `self` (before) and `after`, one line per difference.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let tables: std::collections::BTreeSet<&String> =
            self.rows.keys().chain(after.rows.keys()).collect();
        for table in tables {
            let (b, a) = (self.rows.get(table), after.rows.get(table));
            if b != a {
                out.push(format!("rows in {table}: {b:?} → {a:?}"));
            }
        }
        let lists = [
            ("file", &self.files, &after.files),
            ("tag", &self.tags, &after.tags),
            ("container", &self.containers, &after.containers),
            ("network", &self.networks, &after.networks),
        ];
        for (what, before, now) in lists {
            for item in now.iter().filter(|i| !before.contains(i)) {
                out.push(format!("new {what} {item}"));
            }
            for item in before.iter().filter(|i| !now.contains(i)) {
                out.push(format!("{what} gone: {item}"));
            }
        }
        out
    }
}

/// Row count of every table of the server's database, read through a read-only connection
/// (WAL mode lets it see committed rows while the server holds its own connection).
pub fn row_counts(server: &Server) -> BTreeMap<String, i64> {
    let db = Connection::open_with_flags(
        server.path("berth.sqlite3"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the server's database read-only");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("list tables");
    assert!(!tables.is_empty(), "the database has no tables");
    tables
        .into_iter()
        .map(|t| {
            let count = db
                .query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))
                .expect("count rows");
            (t, count)
        })
        .collect()
}

/// The lines a docker CLI command prints (sorted), failing the test when it fails.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed for these tests");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// Whether the engine has an image with this id or reference.
pub fn image_exists(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", reference])
        .output()
        .expect("docker CLI")
        .status
        .success()
}

/// Removes images by id or reference, ignoring the ones already gone.
pub fn remove_images(references: &[String]) {
    if references.is_empty() {
        return;
    }
    let _ = Command::new("docker")
        .args(["rmi", "-f"])
        .args(references)
        .output();
}
