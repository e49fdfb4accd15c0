//! What the Swarm lab tests watch from outside while something changes: a steady trickle of
//! requests through Berth's proxy (every answer kept), and an instance's live log stream read
//! line by line as it arrives.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fixture::{Server, Tenant};

/// `GET /service/<name>/hello` every 100 ms, one at a time, until finished.
pub struct ProxyLoad {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<u16>>>,
    thread: Option<JoinHandle<()>>,
}

impl ProxyLoad {
    pub fn start(server: &Server, tenant: &Tenant, name: &str) -> ProxyLoad {
        let (agent, auth) = (server.agent(Some(Duration::from_secs(30))), tenant.basic());
        let url = format!("{}/service/{name}/hello", server.https);
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, answers) = (Arc::clone(&stop), Arc::clone(&answers));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let status = agent
                        .get(&url)
                        .header("Authorization", &auth)
                        .call()
                        .map_or(0, |r| r.status().as_u16());
                    answers.lock().unwrap().push(status);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        ProxyLoad {
            stop,
            answers,
            thread: Some(thread),
        }
    }

    /// How many requests have been answered (or failed) so far.
    pub fn answered(&self) -> usize {
        self.answers.lock().unwrap().len()
    }

    /// Stops and returns every answer's status (0: no answer at all).
    pub fn finish(mut self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.answers.lock().unwrap())
    }
}

impl Drop for ProxyLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An instance's log stream (`…/logs/<instance>/stream`, Server-Sent Events), its lines
/// delivered as they arrive; `None` once the stream ended.
pub struct LogFollower {
    lines: Receiver<Option<String>>,
}

impl LogFollower {
    pub fn open(
        server: &Server,
        tenant: &Tenant,
        app: &str,
        instance: &str,
        tail: u64,
    ) -> LogFollower {
        let mut response = server
            .agent(Some(Duration::from_secs(300)))
            .get(&format!(
                "{}/application/applications/{app}/logs/{instance}/stream?tail={tail}",
                server.https
            ))
            .header("Authorization", &tenant.basic())
            .call()
            .expect("log stream");
        assert_eq!(response.status().as_u16(), 200, "log stream");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.body_mut().as_reader());
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line == "event: end" {
                    break;
                }
                if send.send(Some(line)).is_err() {
                    return;
                }
            }
            let _ = send.send(None);
        });
        LogFollower { lines }
    }

    /// Waits for a `data:` line containing `text`; panics when the stream ends first or
    /// nothing comes within `deadline`.
    pub fn expect(&self, text: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Some(line)) if line.starts_with("data:") && line.contains(text) => return,
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    panic!("the log stream ended before a line with {text:?}")
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no log line with {text:?} within {deadline:?}")
                }
            }
        }
    }
}
