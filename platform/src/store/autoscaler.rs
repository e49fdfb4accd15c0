//! The autoscaler's scale-down windows, kept across restarts: a Berth restart must not forget
//! the recommendations that hold replicas up, or a service scaled up under load would be cut
//! back at the first decision after it. One row per deployment, written at every decision.

use rusqlite::{Connection, params};

use super::StoreError;

/// One deployment's autoscaler state: its replica count and the recommendations of its
/// scale-down window as (unix milliseconds, replicas), oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub deployment: String,
    pub replicas: u32,
    pub recommendations: Vec<(i64, u32)>,
}

pub fn load(conn: &Connection) -> Result<Vec<Window>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT deployment, replicas, recommendations FROM autoscaler_windows")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    let mut windows = Vec::new();
    for row in rows {
        let (deployment, replicas, text) = row?;
        // A row this berth cannot read is treated as an empty window, never fatal.
        let recommendations = serde_json::from_str(&text).unwrap_or_default();
        windows.push(Window {
            deployment,
            replicas,
            recommendations,
        });
    }
    Ok(windows)
}

pub fn save(conn: &Connection, window: &Window) -> Result<(), StoreError> {
    let text = serde_json::to_string(&window.recommendations).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO autoscaler_windows (deployment, replicas, recommendations) VALUES (?1, ?2, ?3)
         ON CONFLICT (deployment) DO UPDATE SET replicas = ?2, recommendations = ?3",
        params![window.deployment, window.replicas, text],
    )?;
    Ok(())
}

/// Forgets the windows of deployments that are gone.
pub fn forget(conn: &Connection, deployments: &[String]) -> Result<(), StoreError> {
    for d in deployments {
        conn.execute("DELETE FROM autoscaler_windows WHERE deployment = ?1", [d])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_saved_replaced_loaded_and_forgotten() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::apply(&mut conn).unwrap();
        let a = Window {
            deployment: "1/shared".into(),
            replicas: 2,
            recommendations: vec![(1_000, 2), (2_000, 1)],
        };
        let b = Window {
            deployment: "2/t1".into(),
            replicas: 1,
            recommendations: vec![],
        };
        save(&conn, &a).unwrap();
        save(&conn, &b).unwrap();
        let a2 = Window {
            replicas: 3,
            ..a.clone()
        };
        save(&conn, &a2).unwrap();
        let mut loaded = load(&conn).unwrap();
        loaded.sort_by(|x, y| x.deployment.cmp(&y.deployment));
        assert_eq!(loaded, vec![a2, b.clone()]);
        forget(&conn, &["1/shared".to_owned()]).unwrap();
        assert_eq!(load(&conn).unwrap(), vec![b]);
    }
}
