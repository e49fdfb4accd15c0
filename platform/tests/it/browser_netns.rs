//! A network namespace of its own for the test browser. Chromium drops every request in flight
//! (`ERR_NETWORK_CHANGED`) when any interface of its namespace changes, and the rest of the
//! suite makes and removes Docker networks, veths and lab bridges all the time; inside its own
//! namespace it sees none of that. The browser reaches Berth (listening on the host's loopback)
//! through a veth pair and a small TCP relay on the host end; the test reaches chromedriver on
//! the namespace's end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct BrowserNetns {
    name: String,
    /// The host's end of the veth pair (the relay listens here).
    pub host_ip: String,
    /// The namespace's end (chromedriver listens here).
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl BrowserNetns {
    /// A namespace with loopback and one veth to the host, on a /30 of 10.254.0.0/16 chosen
    /// from the process id and a counter (parallel test processes pick different ones).
    pub fn create() -> BrowserNetns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let index = (std::process::id() * 8 + NEXT.fetch_add(1, Ordering::Relaxed)) % 16_384;
        let (third, fourth) = (index / 64, (index % 64) * 4);
        let name = format!("berth-cdp-{index}");
        let (host_if, ns_if) = (format!("bcdh{index}"), format!("bcdn{index}"));
        let host_ip = format!("10.254.{third}.{}", fourth + 1);
        let ns_ip = format!("10.254.{third}.{}", fourth + 2);
        // A namespace left by a killed earlier run of the same index goes first.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        // No IPv6: a link-local address would be assigned (and leave its tentative state) after
        // the browser started, an address change Chromium answers with ERR_NETWORK_CHANGED.
        let out = Command::new("ip")
            .args(["netns", "exec", &name, "sysctl", "-qw"])
            .args([
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ])
            .output()
            .expect("sysctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let netns = BrowserNetns {
            name: name.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        let ns_cidr = format!("{ns_ip}/30");
        for args in [
            ["addr", "add", ns_cidr.as_str(), "dev", ns_if.as_str()].as_slice(),
            &["link", "set", ns_if.as_str(), "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", name.as_str(), "ip"];
            full.extend_from_slice(args);
            ip(&full);
        }
        netns
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Relays connections to the host end's `port`-less address to `target` (host:port on the
    /// host); returns the relay's address as the browser sees it.
    pub fn relay(&self, target: &str) -> String {
        let listener = TcpListener::bind((self.host_ip.as_str(), 0)).expect("relay listener");
        let address = listener.local_addr().expect("relay address").to_string();
        let target = target.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        address
    }
}

/// Copies `from` to `to` on a thread until either ends.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for BrowserNetns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
