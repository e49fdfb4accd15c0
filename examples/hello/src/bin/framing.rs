//! A raw-socket HTTP/1.1 server answering with every legal response framing, for Berth's proxy
//! tests (`platform/tests/it/proxy_framing.rs`). HTTP libraries pick one framing for you, so the
//! framings a proxy must relay (close-delimited, HTTP/1.0, trailers, a body cut off midway) are
//! written here byte by byte. Standard library only, one thread per connection, port 80
//! (`SERVER_PORT` overrides it).
//!
//! Routes (query strings ignored): `/health`, `/cl`, `/chunked` (with a trailer), `/close`
//! (HTTP/1.1, no length, ended by closing), `/http10` (an HTTP/1.0 answer), `/no-content` (204),
//! `/not-modified` (304), `/abort-cl` and `/abort-chunked` (the connection is closed halfway
//! through the body), `/trickle` (six bytes, one a second), `/stall-body` (a tenth of its body,
//! then nothing and the connection kept), `/echo` (the request body back, honouring `Expect: 100-continue`),
//! `/upgrade` (`101`, then every byte echoed) and `/stale-next` (answers `ok`, keeps the
//! connection, then reads the next request on it and closes without answering: a keep-alive
//! timer firing just as a proxy reuses the connection).
//!
//! `framing hang` never exits and does nothing: an exec probe command that hangs, for the
//! probes' tests (`platform/tests/it/exec_probes.rs`).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

/// Length of every generated body: several socket reads and chunks long.
const BODY_LEN: usize = 300_000;
const CHUNK: usize = 7_000;
/// Largest request body `/echo` accepts.
const MAX_ECHO: usize = 16 << 20;

/// The generated body's byte at position `i` (the tests compute the same).
fn body_byte(i: usize) -> u8 {
    (i % 251) as u8
}

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(body_byte).collect()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("hang") {
        loop {
            std::thread::park();
        }
    }
    let port: u16 = std::env::var("SERVER_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(80);
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("framing: cannot bind port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("framing: listening on port {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("framing: connection ended: {e}");
            }
        });
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid("bad request line"));
    };
    let path = target.split('?').next().unwrap_or("/").to_owned();
    let method = method.to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("connection closed inside the head"));
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        let (name, value) = text.split_once(':').ok_or_else(|| invalid("bad header"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Some(Request {
        method,
        path,
        headers,
    }))
}

/// The request body, framed by Content-Length or chunked encoding.
fn read_body(reader: &mut impl BufRead, req: &Request) -> io::Result<Vec<u8>> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            if body.len() + size > MAX_ECHO {
                return Err(invalid("body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    }
    let length: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| invalid("content-length"))?,
        None => 0,
    };
    if length > MAX_ECHO {
        return Err(invalid("body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn serve(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut stale = false;
    while let Some(req) = read_head(&mut reader)? {
        if stale {
            let _ = read_body(&mut reader, &req);
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        stale = req.path == "/stale-next";
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        // Answered before its body is read, which is then read (and dropped) as it comes: the
        // connection stays busy as long as the client takes to send it.
        if req.path == "/early" {
            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
            out.flush()?;
            let _ = read_body(&mut reader, &req);
            continue;
        }
        let received = read_body(&mut reader, &req)?;
        if !respond(&mut out, &mut reader, &req, &received)? {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}

/// Writes the answer; false when the connection must close after it.
fn respond(
    out: &mut TcpStream,
    reader: &mut impl Read,
    req: &Request,
    received: &[u8],
) -> io::Result<bool> {
    let head = req.method == "HEAD";
    let body = body();
    match req.path.as_str() {
        "/health" | "/stale-next" => {
            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")?;
            if !head {
                out.write_all(b"ok")?;
            }
            Ok(true)
        }
        "/cl" => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BODY_LEN}\r\n\r\n"
            )?;
            if !head {
                out.write_all(&body)?;
            }
            Ok(true)
        }
        "/chunked" | "/abort-chunked" => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n",
            )?;
            let abort = req.path == "/abort-chunked";
            let chunks: Vec<&[u8]> = body.chunks(CHUNK).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                if abort && i == chunks.len() / 2 {
                    out.flush()?;
                    return Ok(false);
                }
                write!(out, "{:x}\r\n", chunk.len())?;
                out.write_all(chunk)?;
                out.write_all(b"\r\n")?;
            }
            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
            write!(out, "0\r\nx-checksum: {sum}\r\n\r\n")?;
            Ok(true)
        }
        "/close" => {
            out.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            )?;
            if !head {
                out.write_all(&body)?;
            }
            Ok(false)
        }
        "/http10" => {
            out.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")?;
            if !head {
                out.write_all(&body)?;
            }
            Ok(false)
        }
        "/no-content" => {
            out.write_all(b"HTTP/1.1 204 No Content\r\nX-Framing: none\r\n\r\n")?;
            Ok(true)
        }
        // A service setting the platform's own cookies, under every name a browser or Berth
        // could read as theirs (the proxy drops those), and its own.
        "/cookies" => {
            out.write_all(
                b"HTTP/1.1 204 No Content\r\nSet-Cookie: authorization=from.the.service; Path=/\r\n\
                  Set-Cookie: XSRF-TOKEN=from-the-service; Path=/\r\n\
                  Set-Cookie: =authorization=nameless.from.the.service; Path=/user\r\n\
                  Set-Cookie: =XSRF-TOKEN=nameless-from-the-service; Path=/user\r\n\
                  Set-Cookie: authorizatio%6E=encoded.from.the.service; Path=/user\r\n\
                  Set-Cookie: XSRF%2DTOKEN=encoded-from-the-service; Path=/user\r\n\
                  Set-Cookie: \"authorization\"=quoted.from.the.service; Path=/user\r\n\
                  Set-Cookie: session=kept; Path=/service\r\n\r\n",
            )?;
            Ok(true)
        }
        "/not-modified" => {
            out.write_all(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")?;
            Ok(true)
        }
        "/abort-cl" => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {BODY_LEN}\r\n\r\n")?;
            out.write_all(&body[..BODY_LEN / 2])?;
            Ok(false)
        }
        "/trickle" => {
            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")?;
            for byte in b"slowly" {
                out.write_all(&[*byte])?;
                out.flush()?;
                pause(std::time::Duration::from_secs(1));
            }
            Ok(true)
        }
        "/stall-body" => {
            write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {BODY_LEN}\r\n\r\n")?;
            out.write_all(&body[..BODY_LEN / 10])?;
            out.flush()?;
            hold_forever()
        }
        "/echo" => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                received.len()
            )?;
            out.write_all(received)?;
            Ok(true)
        }
        // A tunnel the service never closes, even after its client closed its side.
        "/upgrade-hold" if req.header("upgrade").is_some() => {
            out.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            out.flush()?;
            let mut buf = [0u8; 8192];
            while reader.read(&mut buf)? > 0 {}
            hold_forever()
        }
        // A refusal announcing a body that never comes.
        "/upgrade-refuse-stall" => {
            out.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 65536\r\n\r\n")?;
            out.flush()?;
            hold_forever()
        }
        "/upgrade" if req.header("upgrade").is_some() => {
            out.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            // Echo until the client closes its side.
            let mut buf = [0u8; 8192];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(false);
                }
                out.write_all(&buf[..n])?;
            }
        }
        _ => {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            Ok(true)
        }
    }
}

/// Waits on this connection's own thread (nothing else runs on it).
#[allow(
    clippy::disallowed_methods,
    reason = "one thread per connection, no runtime"
)]
fn pause(time: std::time::Duration) {
    std::thread::sleep(time);
}

/// Keeps the connection (and this thread) open for as long as the server runs.
fn hold_forever() -> ! {
    loop {
        std::thread::park();
    }
}
