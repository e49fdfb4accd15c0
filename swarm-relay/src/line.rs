//! Reading a client's request line: at most [`LINE_MAX`] bytes, all before one deadline. A
//! timeout per read would let a client sending a byte every few seconds hold its connection
//! (a thread, a place) for many minutes.

use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

/// A request line is far shorter; a client must not make the relay buffer more.
pub const LINE_MAX: usize = 256;

/// The line (without its `\n`), or why there is none.
pub fn read(mut stream: &TcpStream, deadline: Instant) -> Result<String, &'static str> {
    let mut buf = [0u8; LINE_MAX];
    let mut len = 0;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or("no request line in time")?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| "no request line in time")?;
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err("no request line"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err("no request line in time"),
        };
        len += n;
        if let Some(line) = line_in(&buf[..len]) {
            return line.map(str::to_owned);
        }
        if len == LINE_MAX {
            return Err("request line too long");
        }
    }
}

/// The line in what was read so far, once its `\n` has come.
fn line_in(read: &[u8]) -> Option<Result<&str, &'static str>> {
    let end = read.iter().position(|&b| b == b'\n')?;
    // The client must wait for OK: what it sent early would be read here and lost.
    if end + 1 != read.len() {
        return Some(Err("send nothing before OK"));
    }
    Some(std::str::from_utf8(&read[..end]).map_err(|_| "protocol"))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found<'a> = Option<Result<&'a str, &'a str>>;

    #[test]
    fn a_line_is_whole_and_alone() {
        let cases: [(&[u8], Found); 6] = [
            (b"", None),
            (b"BERTH-RELAY/1 tok", None),
            (
                b"BERTH-RELAY/1 tok 10.0.0.2:80\n",
                Some(Ok("BERTH-RELAY/1 tok 10.0.0.2:80")),
            ),
            (b"\n", Some(Ok(""))),
            (b"BERTH-RELAY/1\nGET", Some(Err("send nothing before OK"))),
            (b"\xff\n", Some(Err("protocol"))),
        ];
        for (read, want) in cases {
            assert_eq!(line_in(read), want, "{read:?}");
        }
    }
}
