//! The registry every node pulls from. Pushing goes through the manager's engine (it has the
//! image Berth loaded); removing a version's manifest speaks the registry's HTTP API (Docker
//! has no call for it): `HEAD` the tag for its digest, then `DELETE` the manifest by digest.
//! Plain HTTP only, as the registries Docker calls "insecure": Berth reaches the registry on the
//! cluster's private network, and a TLS registry is a follow-up (see README).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::runtime::RuntimeError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Media types a registry may store Docker's pushes as; the digest asked for must be the
/// stored manifest's own.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// Deletes `repo:tag`'s manifest from the registry at `registry` (`host:port`). An absent tag
/// is fine. Deleting by digest removes every tag on that manifest: the caller deletes only when
/// no other kept version has the same image.
pub async fn delete_tag(
    registry: &str,
    auth: Option<&str>,
    repo: &str,
    tag: &str,
) -> Result<(), RuntimeError> {
    let head = request(
        registry,
        auth,
        "HEAD",
        &format!("/v2/{repo}/manifests/{tag}"),
    )
    .await?;
    if head.status == 404 {
        return Ok(());
    }
    if head.status != 200 {
        return Err(fail(
            registry,
            &format!("HEAD manifest: HTTP {}", head.status),
        ));
    }
    let digest = head.digest.ok_or_else(|| {
        fail(
            registry,
            "no Docker-Content-Digest in the manifest's answer",
        )
    })?;
    let del = request(
        registry,
        auth,
        "DELETE",
        &format!("/v2/{repo}/manifests/{digest}"),
    )
    .await?;
    match del.status {
        202 | 200 | 404 => Ok(()),
        405 => Err(fail(
            registry,
            "deleting is disabled (set storage.delete.enabled in the registry's config)",
        )),
        s => Err(fail(registry, &format!("DELETE manifest: HTTP {s}"))),
    }
}

fn fail(registry: &str, message: &str) -> RuntimeError {
    RuntimeError::Docker(format!("registry {registry}: {message}"))
}

#[derive(Debug)]
struct Answer {
    status: u16,
    digest: Option<String>,
}

async fn request(
    registry: &str,
    auth: Option<&str>,
    method: &str,
    path: &str,
) -> Result<Answer, RuntimeError> {
    let io = |e: std::io::Error| fail(registry, &e.to_string());
    let run = async {
        let mut stream = TcpStream::connect(registry).await.map_err(io)?;
        let auth = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {registry}\r\nAccept: {ACCEPT}\r\n{auth}\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        // Only the head matters; bodies here are small error documents.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io)?;
            buf.extend_from_slice(&chunk[..n]);
            if n == 0 || buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 64 * 1024 {
                break;
            }
        }
        parse_head(&buf).ok_or_else(|| fail(registry, "unreadable HTTP answer"))
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| fail(registry, "no answer within 10 s"))?
}

fn parse_head(buf: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(buf).ok()?;
    let digest = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Docker-Content-Digest"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_owned);
    Some(Answer {
        status: response.code?,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_and_digest() {
        let a = parse_head(
            b"HTTP/1.1 200 OK\r\ndocker-content-digest: sha256:ab\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.digest.as_deref(), Some("sha256:ab"));
        assert!(parse_head(b"garbage").is_none());
    }
}
