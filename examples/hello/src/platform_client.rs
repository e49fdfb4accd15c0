//! `GET /platform/subscriptions`: calls `C8Y_BASEURL/application/currentApplication/subscriptions`
//! with the bootstrap credentials (as every Cumulocity SDK does at startup) and returns what the
//! platform answered. A tiny HTTP/1.1 client over `std::net::TcpStream`: plain `http://` only,
//! which is what the platform offers containers. `?forwardedFor=<address>` adds an
//! `X-Forwarded-For` header, as hostile code in a container could: tests use it to show the
//! platform does not believe it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::routes::InjectedEnv;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The platform's answer: status code and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

pub async fn subscriptions(
    env: web::Data<InjectedEnv>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    // An address only: nothing that could end the header line.
    let forwarded_for = query.into_inner().remove("forwardedFor").filter(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
    });
    let var = |name: &str| env.0.get(name).cloned();
    let (Some(base), Some(tenant), Some(user), Some(password)) = (
        var("C8Y_BASEURL"),
        var("C8Y_BOOTSTRAP_TENANT"),
        var("C8Y_BOOTSTRAP_USER"),
        var("C8Y_BOOTSTRAP_PASSWORD"),
    ) else {
        return HttpResponse::ServiceUnavailable().json(
            json!({"error": "C8Y_BASEURL and C8Y_BOOTSTRAP_TENANT/USER/PASSWORD must be set"}),
        );
    };
    let login = format!("{tenant}/{user}:{password}");
    let result = web::block(move || {
        get(
            &base,
            "/application/currentApplication/subscriptions",
            &login,
            forwarded_for.as_deref(),
        )
    })
    .await;
    match result {
        Ok(Ok(answer)) => {
            let body: Value =
                serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
            HttpResponse::Ok().json(json!({"status": answer.status, "body": body}))
        }
        Ok(Err(e)) => HttpResponse::BadGateway().json(json!({"error": e})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

/// GET `path` on the `http://host:port` base URL with Basic credentials `login`.
fn get(base: &str, path: &str, login: &str, forwarded_for: Option<&str>) -> Result<Answer, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("C8Y_BASEURL={base} is not an http:// URL"))?
        .trim_end_matches('/');
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("resolve {with_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{with_port} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connect {with_port}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let credentials = base64::engine::general_purpose::STANDARD.encode(login);
    let forwarded = forwarded_for
        .map(|a| format!("X-Forwarded-For: {a}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {credentials}\r\n{forwarded}Accept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    parse(&raw)
}

/// Splits a `Connection: close` response into status and body (plain or chunked).
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("response has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("response has no status code")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size_line, after) = rest.split_once("\r\n").ok_or("truncated chunk header")?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after.get(..size).ok_or("truncated chunk")?;
        out.push_str(chunk);
        rest = after.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 200, "{}"),
            (
                "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                403,
                "abcde",
            ),
        ];
        for (raw, status, body) in cases {
            let answer = parse(raw.as_bytes()).unwrap();
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (status, body),
                "{raw}"
            );
        }
        assert!(parse(b"garbage").is_err());
    }
}
