//! What every `/ui` request must pass before its route runs: the admin
//! listener's TLS rule and Host rule (`Guard`), the Origin (a page of
//! this listener only; required on POST), and on POST the session's CSRF
//! token in `X-Shoal-CSRF`.

use http::uri::Authority;
use http::{Method, Request, StatusCode, header};

use crate::admin::error::ApiError;
use crate::admin::guard::{Guard, constant_time_eq};
use crate::tls::Encrypted;

/// The header a page sends its CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-shoal-csrf";

/// Refuses what the admin API refuses: plain HTTP on a TLS listener, a
/// foreign Host.
pub(super) fn listener<B>(request: &Request<B>, guard: &Guard) -> Result<(), ApiError> {
    let in_clear = request.extensions().get::<Encrypted>() != Some(&Encrypted(true));
    if guard.tls.is_some() && in_clear {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this dashboard answers over TLS only: open it with `https://` (`shoal ui` prints the link)",
        ));
    }
    guard.host(request)
}

/// The authority a request names: the URI's (HTTP/2), else its Host.
pub(super) fn authority<B>(request: &Request<B>) -> Option<Authority> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.clone());
    }
    request
        .headers()
        .get(header::HOST)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Refuses a request from another origin than this listener's own (the
/// scheme and the Host it was called by): GET and HEAD may come without
/// an Origin (a link, the address bar), POST must carry it. Other methods
/// are refused.
pub(super) fn origin<B>(request: &Request<B>, scheme: &str) -> Result<(), ApiError> {
    let method = request.method();
    let required = match *method {
        Method::GET | Method::HEAD => false,
        Method::POST => true,
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("the dashboard takes GET and POST, not {method}"),
            ));
        }
    };
    let given = request.headers().get(header::ORIGIN);
    let own = authority(request);
    match (given, own) {
        (None, _) if !required => Ok(()),
        (None, _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a dashboard POST must carry an Origin header (browsers send one): use the dashboard's page, not another client",
        )),
        (Some(given), Some(own)) if same_origin(given.as_bytes(), scheme, &own) => Ok(()),
        (Some(given), _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "the dashboard answers its own page only, not one from `{}`",
                String::from_utf8_lossy(given.as_bytes())
            ),
        )),
    }
}

/// Whether Origin `given` is `scheme://own` (host without case, the
/// scheme's default port when none is written).
fn same_origin(given: &[u8], scheme: &str, own: &Authority) -> bool {
    let Some(rest) = std::str::from_utf8(given)
        .ok()
        .and_then(|g| g.strip_prefix(scheme))
        .and_then(|g| g.strip_prefix("://"))
    else {
        return false;
    };
    let Ok(given) = rest.parse::<Authority>() else {
        return false;
    };
    let default = if scheme == "https" { 443 } else { 80 };
    given.host().eq_ignore_ascii_case(own.host())
        && given.port_u16().unwrap_or(default) == own.port_u16().unwrap_or(default)
}

/// Refuses a POST without the session's CSRF token.
pub(super) fn csrf<B>(request: &Request<B>, expected: &str) -> Result<(), ApiError> {
    let given = request
        .headers()
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !expected.is_empty() && constant_time_eq(given, expected.as_bytes()) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "missing or wrong `X-Shoal-CSRF` header: reload the dashboard's page (it holds the token of your session)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, origin: Option<&str>) -> Request<()> {
        let mut builder = Request::builder()
            .method(method)
            .uri("/ui/api/apps/a/remove")
            .header(header::HOST, "127.0.0.1:7070");
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn only_the_listeners_own_origin_is_answered_and_post_needs_it() {
        assert!(origin(&request("GET", None), "http").is_ok());
        assert!(origin(&request("GET", Some("http://127.0.0.1:7070")), "http").is_ok());
        assert!(origin(&request("POST", Some("HTTP://127.0.0.1:7070")), "http").is_err());
        assert!(origin(&request("POST", Some("http://127.0.0.1:7070")), "http").is_ok());
        for foreign in [
            "http://evil.test:7070",
            "http://127.0.0.1:7071",
            "https://127.0.0.1:7070",
            "null",
            "",
        ] {
            assert!(
                origin(&request("GET", Some(foreign)), "http").is_err(),
                "{foreign}"
            );
            assert!(
                origin(&request("POST", Some(foreign)), "http").is_err(),
                "{foreign}"
            );
        }
        let refused = origin(&request("POST", None), "http").unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let refused = origin(&request("DELETE", None), "http").unwrap_err();
        assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
        let own: Authority = "localhost".parse().unwrap();
        assert!(same_origin(b"http://localhost:80", "http", &own));
        assert!(same_origin(b"http://LocalHost", "http", &own));
    }

    #[test]
    fn a_post_needs_the_sessions_csrf_token() {
        let mut post = request("POST", Some("http://127.0.0.1:7070"));
        assert!(csrf(&post, "abc").is_err());
        post.headers_mut()
            .insert(CSRF_HEADER, "abd".parse().unwrap());
        assert!(csrf(&post, "abc").is_err());
        post.headers_mut()
            .insert(CSRF_HEADER, "abc".parse().unwrap());
        assert!(csrf(&post, "abc").is_ok());
        assert!(csrf(&request("POST", None), "").is_err());
    }
}
