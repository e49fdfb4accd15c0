//! How `deploy` behaves when the connection misbehaves after it was made: a platform that stops
//! reading or answering, answers cut short, error bodies that are no UTF-8 or too large.

use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::deploy::{BY_NAME, application, deploy, package};
use crate::fake_platform::{self, FakePlatform, Gate, Recorded};
use crate::fixtures::{self, ImageSpec, MANIFEST};

/// A package whose image is stored, not deflated, so it is `bytes` large on the wire.
fn large_package(dir: &Path, bytes: usize) -> PathBuf {
    use berth_pack::zip_writer::{Method, ZipWriter};
    let mut spec = ImageSpec::small("team/hello:1.0");
    spec.layers = vec![fixtures::text(bytes)];
    let image = fixtures::docker_save(&spec);
    let path = dir.join("large").join("hello-1.0.0.zip");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    zip.add_entry("cumulocity.json", Method::Stored, 0, MANIFEST.as_bytes())
        .unwrap();
    zip.add_entry("image.tar", Method::Stored, 0, &image)
        .unwrap();
    zip.finish().unwrap();
    path
}

/// Answers the lookup with application 7 and hands any other request to `then`, its head read.
fn lookup_then(
    stream: TcpStream,
    gate: &Gate,
    then: fn(&TcpStream, &mut BufReader<&TcpStream>, &Recorded, &Gate),
) -> Option<Recorded> {
    let mut reader = BufReader::new(&stream);
    let request = fake_platform::read_head(&mut reader)?;
    if request.line() == BY_NAME {
        let body = json!({"applications": [application("7", "hello", "MICROSERVICE")]});
        let _ = fake_platform::write_raw(&stream, 200, &[], body.to_string().as_bytes());
    } else {
        then(&stream, &mut reader, &request, gate);
    }
    Some(request)
}

/// Never reads the upload's body: the client's writes block once the socket buffers are full.
fn stop_reading(_: &TcpStream, _: &mut BufReader<&TcpStream>, _: &Recorded, gate: &Gate) {
    gate.wait();
}

/// Reads the whole upload, then sends headers and half of the promised body.
fn cut_answer(
    mut stream: &TcpStream,
    reader: &mut BufReader<&TcpStream>,
    head: &Recorded,
    gate: &Gate,
) {
    use std::io::{Read, Write};
    let length = head.header("content-length").unwrap().parse().unwrap();
    let _ = std::io::copy(&mut reader.take(length), &mut std::io::sink());
    let _ = stream.write_all(b"HTTP/1.1 201 Fake\r\nContent-Length: 100\r\n\r\n{\"id\":");
    let _ = stream.flush();
    gate.wait();
}

#[test]
fn a_platform_that_stalls_fails_after_the_stall_timeout_saying_how_far_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let small = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    // Larger than what the socket buffers of both ends take in before the writer blocks.
    let large = large_package(dir.path(), 32 << 20);
    // (what, package, how the fake serves, excerpt of the message, the upload may have worked)
    type Case<'a> = (
        &'a str,
        &'a Path,
        fn(TcpStream, &Gate) -> Option<Recorded>,
        &'a str,
        bool,
    );
    let cases: [Case; 3] = [
        (
            "no answer to the lookup",
            &small,
            |stream, gate| {
                let request = fake_platform::read_request(&stream);
                gate.wait();
                request
            },
            "applicationsByName/hello stopped answering for 1 s",
            false,
        ),
        (
            "the upload is not read",
            &large,
            |stream, gate| lookup_then(stream, gate, stop_reading),
            "/binaries stopped reading what was sent for 1 s",
            false,
        ),
        (
            "the answer to the upload stops half way",
            &small,
            |stream, gate| lookup_then(stream, gate, cut_answer),
            "the whole package was sent, but no complete answer came back \
             (HTTP 201 came, but its body broke off: still incomplete after 1 s); the upload may have succeeded",
            true,
        ),
    ];
    for (what, zip, serve, excerpt, maybe_uploaded) in cases {
        let platform = FakePlatform::start_raw(serve);
        let result = deploy(dir.path(), &platform, zip, &["--stall-timeout", "1"]);
        assert_eq!(result.code, 2, "{what}: {}", result.stderr);
        assert!(result.stderr.contains(excerpt), "{what}: {}", result.stderr);
        assert!(
            !result.stderr.contains("cannot reach"),
            "{what}: {}",
            result.stderr
        );
        assert_eq!(
            result.stderr.contains("may have succeeded"),
            maybe_uploaded,
            "{what}: {}",
            result.stderr
        );
    }
}

#[test]
fn error_bodies_of_any_encoding_or_size_keep_their_status() {
    // (status, body, exit code, excerpt of the message)
    let latin1: &[u8] = b"<html>Zugriff verweigert: ung\xfcltige Anmeldedaten</html>";
    let huge = vec![b'x'; 17 << 20];
    let cases: [(u16, &[u8], i32, &str); 3] = [
        (
            403,
            latin1,
            1,
            "HTTP 403: <html>Zugriff verweigert: ung\u{fffd}ltige Anmeldedaten</html>",
        ),
        (
            502,
            latin1,
            2,
            "HTTP 502: <html>Zugriff verweigert: ung\u{fffd}ltige",
        ),
        (413, &huge, 1, "HTTP 413: xxxxxxxxxx"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let zip = package(dir.path(), "hello-1.0.0.zip", MANIFEST);
    for (status, body, code, excerpt) in cases {
        let body = body.to_vec();
        let platform = FakePlatform::start_raw(move |stream, _| {
            let request = fake_platform::read_request(&stream)?;
            let _ =
                fake_platform::write_raw(&stream, status, &[("Content-Type", "text/html")], &body);
            Some(request)
        });
        let result = deploy(dir.path(), &platform, &zip, &["--format", "json"]);
        assert_eq!(result.code, code, "{status}: {}", result.stderr);
        assert!(
            result.stderr.contains(excerpt),
            "{status}: {}",
            result.stderr
        );
        let output = result.json();
        assert_eq!(output["status"], status, "{status}");
        assert!(
            output["error"].as_str().unwrap().contains(excerpt),
            "{status}: {output}"
        );
    }
}
