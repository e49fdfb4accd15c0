//! A tiny plain-HTTP server standing in for the platform: records every request in full and
//! answers from a routing function, so tests can check exactly what `berth-pack` sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `METHOD /path`, for comparing request sequences.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the fake answers: a status and a JSON (or empty) body.
pub type Reply = (u16, String);

type Route = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// Serves one connection however a test needs (raw bytes, extra headers, stalls) and returns
/// the request to record, if it read one.
type Serve = dyn Fn(TcpStream, &Gate) -> Option<Recorded> + Send + Sync;

/// Lets a stalling handler wait, holding its connection, until the fake is dropped.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn wait(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }
}

pub struct FakePlatform {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    gate: Gate,
    port: u16,
}

impl FakePlatform {
    pub fn start(route: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> FakePlatform {
        let route: Arc<Route> = Arc::new(route);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let mut platform = FakePlatform::start_raw(move |stream, _| {
            // One request per connection (we answer `Connection: close`).
            let request = read_request(&stream)?;
            let (status, body) = route(&request);
            // Recorded before the answer: the tool may exit as soon as it has it, and the test
            // then reads the requests.
            seen.lock().unwrap().push(request);
            let _ = write_reply(stream, status, &body);
            None
        });
        platform.requests = requests;
        platform
    }

    /// Hands each connection to `serve`, one at a time.
    pub fn start_raw(
        serve: impl Fn(TcpStream, &Gate) -> Option<Recorded> + Send + Sync + 'static,
    ) -> FakePlatform {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake platform");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Gate::default();
        let serve: Arc<Serve> = Arc::new(serve);
        let (seen, stopped, held) = (requests.clone(), stop.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Some(request) = serve(stream, &held) {
                    seen.lock().unwrap().push(request);
                }
            }
        });
        FakePlatform {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            stop,
            gate,
            port,
        }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gate.open();
        // Wake the accept loop so the thread sees the flag and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads a whole request: head and body.
pub fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream);
    let mut request = read_head(&mut reader)?;
    let length = request.header("content-length").map(str::to_owned);
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if let Some(length) = length {
        let length: usize = length.parse().ok()?;
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    } else if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    request.body = body;
    Some(request)
}

/// Reads the request line and headers only (`body` left empty); the body stays unread.
pub fn read_head(reader: &mut impl BufRead) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: Vec::new(),
    })
}

/// Writes an answer with extra headers and any bytes as its body.
pub fn write_raw(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    write!(stream, "HTTP/1.1 {status} Fake\r\n")?;
    for (name, value) in headers {
        write!(stream, "{name}: {value}\r\n")?;
    }
    write!(
        stream,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

fn write_reply(mut stream: TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let content_type = if body.contains("\"error\"") {
        "application/vnd.com.nsn.cumulocity.error+json"
    } else {
        "application/json"
    };
    write!(
        stream,
        "HTTP/1.1 {status} Fake\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
