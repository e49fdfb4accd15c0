//! `hello check PATH`: one `GET PATH` to this container's own server, exit 0 on a 2xx answer.
//! The image is `FROM scratch` (no shell, no curl), so this is its exec probe command
//! (`"exec": {"command": ["/hello", "check", "/health"]}`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The probe's own timeout bounds the exec; this only keeps a hung server from holding it.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `127.0.0.1:port` for `path`; Ok(true) when the status is 2xx.
pub fn healthy(port: u16, path: &str) -> std::io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // One write: `write!` on the stream would send each formatted piece on its own, and a
    // server that answers after the first piece may close before the rest (EPIPE).
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    // "HTTP/1.x 2xx"
    Ok(head.starts_with(b"HTTP/1.") && head[9] == b'2')
}

pub fn run(port: u16, path: &str) -> ExitCode {
    match healthy(port, path) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("hello check: {path} did not answer 2xx");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("hello check: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A one-connection server answering `status_line`; returns its port.
    fn answering(status_line: &'static str) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            // The whole request head, then the answer (as a real server does).
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            let _ = write!(conn, "{status_line}\r\nContent-Length: 0\r\n\r\n");
        });
        port
    }

    #[test]
    fn only_a_2xx_answer_is_healthy() {
        assert!(healthy(answering("HTTP/1.1 200 OK"), "/health").unwrap());
        assert!(!healthy(answering("HTTP/1.1 503 Service Unavailable"), "/health").unwrap());
        // Nobody listening: an error, which `run` turns into a failing exit.
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(healthy(port, "/health").is_err());
    }
}
