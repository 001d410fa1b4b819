//! The admin API's checks before any route runs. Who may call it: the
//! token, required on every route but health, on loopback too. From where:
//! a Host that is this host's address, `localhost`, or a name its
//! certificate covers (a web page that rebinds its own name to 127.0.0.1
//! sends its own name), and no Origin at all (only browsers send one).
//! What they may send: the body's Content-Type, checked before a byte of
//! it is read, so a form or a `text/plain` fetch (which needs no CORS
//! preflight) cannot start an upload.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Request, StatusCode, header};

use super::error::ApiError;
use crate::tls::ServerTls;

/// Where the host's token came from, for the message a caller without it
/// gets.
#[derive(Debug, Clone)]
pub(crate) enum TokenSource {
    /// `DATA_DIR/token`, made on first start.
    File(PathBuf),
    /// `--token` or `SHOAL_TOKEN`.
    Given,
}

/// What the checks need to know of the host.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub token: String,
    pub source: TokenSource,
    /// The IP address the admin API is bound to.
    pub bound: IpAddr,
    pub tls: Option<Arc<ServerTls>>,
}

impl Guard {
    /// Refuses a request that names another host, or comes from a page.
    pub(crate) fn caller<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the admin API does not answer web pages (this request has Origin `{}`); call it with the `shoal` CLI or a client that sends no Origin",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            ));
        }
        self.host(request)
    }

    /// Refuses a request that names another host (one rebound to this
    /// host's address by a web page): the admin API and the dashboard.
    pub(crate) fn host<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        let host = host_of(request);
        match host.as_deref() {
            Some(host) if self.answers_to(host) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the admin API does not answer for host `{}`: call it by its address ({}) or `localhost`{}",
                    host.unwrap_or_default(),
                    self.bound,
                    if self.tls.is_some() {
                        ", or a name its certificate covers"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }

    /// Whether `host` (a name or an IP address, no port) is one this
    /// host answers to.
    fn answers_to(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            // An address cannot be rebound: only the one bound (any, when
            // bound to all of this machine's) or loopback for loopback.
            return match self.bound {
                bound if bound.is_unspecified() => true,
                bound if bound.is_loopback() => ip.is_loopback(),
                bound => ip == bound,
            };
        }
        self.tls.as_ref().is_some_and(|tls| tls.covers(host))
    }

    /// Refuses a request without this host's token.
    pub(crate) fn token<B>(&self, request: &Request<B>) -> Result<(), ApiError> {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // An empty token would match a request that sends none.
        if !self.token.is_empty() && constant_time_eq(given.as_bytes(), self.token.as_bytes()) {
            return Ok(());
        }
        let message = match &self.source {
            TokenSource::File(path) => format!(
                "missing or wrong token: this host's token is in `{}`; the CLI reads it from there (point `--data-dir` or `SHOAL_DATA_DIR` at the host's data dir), or pass it with `--token` or `SHOAL_TOKEN` as `Authorization: Bearer TOKEN`",
                path.display()
            ),
            TokenSource::Given => "missing or wrong token: pass the one the host was started with, with `--token` or `SHOAL_TOKEN` (sent as `Authorization: Bearer TOKEN`)".to_string(),
        };
        Err(ApiError::new(StatusCode::UNAUTHORIZED, message))
    }
}

/// The host a request names, without its port: the URI's authority (HTTP/2,
/// or an absolute URI), else the Host header.
fn host_of<B>(request: &Request<B>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.host().to_string());
    }
    let value = request.headers().get(header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = value.parse().ok()?;
    Some(authority.host().to_string())
}

/// Refuses a body that is not of type `expected`, before it is read.
pub(crate) fn content_type<B>(request: &Request<B>, expected: &str) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = given.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    let given = if given.is_empty() { "none" } else { given };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "{} {} takes `Content-Type: {expected}`, not `{given}`",
            request.method(),
            request.uri().path()
        ),
    ))
}

/// Whether `a` and `b` are equal, in a time that depends on their
/// lengths only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(bound: &str) -> Guard {
        Guard {
            token: "t0ken".into(),
            source: TokenSource::Given,
            bound: bound.parse().unwrap(),
            tls: None,
        }
    }

    fn request(host: &str) -> Request<()> {
        Request::builder()
            .uri("/v1/apps")
            .header(header::HOST, host)
            .body(())
            .unwrap()
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn only_this_hosts_addresses_and_localhost_are_answered() {
        let loopback = guard("127.0.0.1");
        for host in [
            "127.0.0.1:7070",
            "localhost:7070",
            "LOCALHOST",
            "[::1]:7070",
            "127.0.0.1",
        ] {
            assert!(loopback.caller(&request(host)).is_ok(), "{host}");
        }
        for host in ["evil.test:7070", "10.0.0.1:7070", "localhost.evil.test", ""] {
            let refused = loopback.caller(&request(host)).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{host}");
        }
        let one = guard("10.1.2.3");
        assert!(one.caller(&request("10.1.2.3:7070")).is_ok());
        assert!(one.caller(&request("10.1.2.4:7070")).is_err());
        let any = guard("0.0.0.0");
        assert!(any.caller(&request("192.0.2.7:7070")).is_ok());
        assert!(any.caller(&request("evil.test:7070")).is_err());
    }

    #[test]
    fn a_request_with_an_origin_is_refused() {
        let mut request = request("127.0.0.1:7070");
        request
            .headers_mut()
            .insert(header::ORIGIN, "http://127.0.0.1:7070".parse().unwrap());
        let refused = guard("127.0.0.1").caller(&request).unwrap_err();
        assert!(refused.message.contains("web pages"), "{}", refused.message);
    }

    #[test]
    fn bodies_need_their_content_type() {
        let with = |value: &str| {
            Request::builder()
                .method("PUT")
                .uri("/v1/apps/a")
                .header(header::CONTENT_TYPE, value)
                .body(())
                .unwrap()
        };
        assert!(content_type(&with("application/json"), "application/json").is_ok());
        assert!(content_type(&with("Application/JSON; charset=utf-8"), "application/json").is_ok());
        let refused = content_type(&with("text/plain"), "application/json").unwrap_err();
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            refused.message.contains("text/plain"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn the_token_is_always_required() {
        let g = guard("127.0.0.1");
        let mut request = request("127.0.0.1:7070");
        assert_eq!(
            g.token(&request).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert!(g.token(&request).is_ok());
        let empty = Guard {
            token: String::new(),
            ..guard("127.0.0.1")
        };
        let none = self::request("127.0.0.1:7070");
        assert!(empty.token(&none).is_err(), "an empty token matched none");
    }
}
