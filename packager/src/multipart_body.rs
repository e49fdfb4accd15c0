//! A `multipart/form-data` request body with a single file part, streamed from disk: header
//! bytes, then the file, then the closing boundary, with the total length known up front so
//! the request carries a `Content-Length` (no chunked encoding, nothing held in memory).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Cursor, Read};

/// The body of a one-file upload.
#[derive(Debug)]
pub struct MultipartBody<R> {
    /// `multipart/form-data; boundary=…`
    pub content_type: String,
    /// Exact number of bytes [`MultipartBody::reader`] yields.
    pub content_length: u64,
    head: Vec<u8>,
    file: R,
    file_len: u64,
    tail: Vec<u8>,
}

impl<R: Read> MultipartBody<R> {
    /// Frames `file` (exactly `file_len` bytes) as the part `field` with the given file name.
    pub fn new(field: &str, file_name: &str, file: R, file_len: u64) -> Self {
        let boundary = boundary();
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/zip\r\n\r\n",
            quoted(field),
            quoted(file_name)
        )
        .into_bytes();
        let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
        MultipartBody {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            content_length: head.len() as u64 + file_len + tail.len() as u64,
            head,
            file,
            file_len,
            tail,
        }
    }

    /// The body bytes in order; fails if the file ends before `file_len` bytes, because the
    /// announced `Content-Length` could then not be honoured.
    pub fn reader(self) -> impl Read {
        Cursor::new(self.head)
            .chain(ExactLength {
                inner: self.file.take(self.file_len),
                left: self.file_len,
            })
            .chain(Cursor::new(self.tail))
    }
}

/// A reader that must deliver `left` more bytes before it ends.
struct ExactLength<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactLength<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the package file shrank while it was being uploaded ({} bytes missing)",
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A boundary that cannot be predicted from the file (so a package cannot contain it by design):
/// 128 bits from the standard library's randomly keyed hasher.
fn boundary() -> String {
    let random = |salt: u64| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.finish()
    };
    format!("berth-pack-{:016x}{:016x}", random(1), random(2))
}

/// The value inside a quoted header parameter: quotes and backslashes escaped, line breaks dropped.
fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            other => vec![other],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_framed_and_its_length_is_exact() {
        let data = b"PK\x03\x04 zip bytes \r\n-- not a boundary".to_vec();
        let body = MultipartBody::new("file", "hello-1.0.0.zip", &data[..], data.len() as u64);
        let boundary = body
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap()
            .to_owned();
        let length = body.content_length;
        let mut bytes = Vec::new();
        body.reader().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, length);
        let expected_head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello-1.0.0.zip\"\r\nContent-Type: application/zip\r\n\r\n"
        );
        assert!(bytes.starts_with(expected_head.as_bytes()));
        assert!(bytes.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
        assert_eq!(
            &bytes[expected_head.len()..expected_head.len() + data.len()],
            &data[..]
        );
    }

    #[test]
    fn a_file_shorter_than_announced_is_an_error() {
        let body = MultipartBody::new("file", "x.zip", &b"abc"[..], 10);
        let error = body.reader().read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn boundaries_differ_and_file_names_are_escaped() {
        assert_ne!(boundary(), boundary());
        let cases = [
            ("plain.zip", "plain.zip"),
            ("a\"b.zip", "a\\\"b.zip"),
            ("a\\b.zip", "a\\\\b.zip"),
            ("evil\r\nX: y.zip", "evilX: y.zip"),
        ];
        for (input, expected) in cases {
            assert_eq!(quoted(input), expected, "{input:?}");
        }
    }
}
