//! The dashboard at `/ui` on the admin listener: a page embedded in the
//! binary (`assets`), a session cookie set by a one-time login link that
//! `shoal ui` asks for (`session`), the checks every request passes
//! (`checks`: TLS, Host, Origin, CSRF), the actions an operator may take
//! (`actions`), and the mesh-wide figures the page shows (`data`).
//!
//! No admin token ever reaches a browser: `POST /v1/ui/login` (with the
//! token) issues a code good once for a minute, and `GET /ui/login?code=`
//! trades it for an HttpOnly, SameSite=Strict cookie scoped to `/ui`.
//! Every response carries a strict Content-Security-Policy.

mod actions;
mod assets;
mod checks;
pub(crate) mod data;
pub(crate) mod session;

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use self::session::Sessions;
use super::error::ApiError;
use super::guard::Guard;
use super::reply::{AdminBody, body, error, json};
use crate::node::Node;

/// What every dashboard response carries.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Answers `GET|POST /ui/...`; `rest` is the path after `/ui`.
pub(crate) async fn serve(
    request: Request<Incoming>,
    node: &Node,
    guard: &Guard,
    sessions: &Sessions,
    rest: &[&str],
) -> Response<AdminBody> {
    let api = rest.first() == Some(&"api");
    let asset = matches!(rest, ["app.js" | "app.css"]);
    let mut response = match answer(request, node, guard, sessions, rest).await {
        Ok(response) => response,
        Err(refused) if api => error(refused),
        Err(refused) => assets::refused(&refused),
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn answer(
    request: Request<Incoming>,
    node: &Node,
    guard: &Guard,
    sessions: &Sessions,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    checks::listener(&request, guard)?;
    let secure = guard.tls.is_some();
    checks::origin(&request, if secure { "https" } else { "http" })?;
    let method = request.method().clone();
    match (&method, rest) {
        (&Method::GET, []) if request.uri().path() == "/ui" => {
            Ok(redirect(StatusCode::PERMANENT_REDIRECT, "/ui/", None))
        }
        (&Method::GET | &Method::HEAD, ["app.js"]) => Ok(assets::script(&request)),
        (&Method::GET | &Method::HEAD, ["app.css"]) => Ok(assets::style(&request)),
        (&Method::GET, ["login"]) => login(&request, sessions, secure),
        _ => {
            let (id, csrf) = session(&request, sessions)?;
            if method == Method::POST {
                checks::csrf(&request, &csrf)?;
            }
            let session = Session {
                id: &id,
                csrf: &csrf,
                secure,
            };
            route(request, node, sessions, session, rest).await
        }
    }
}

/// The session a request is made in.
#[derive(Clone, Copy)]
struct Session<'a> {
    id: &'a str,
    csrf: &'a str,
    /// Over TLS: its cookie is `Secure`.
    secure: bool,
}

async fn route(
    request: Request<Incoming>,
    node: &Node,
    sessions: &Sessions,
    session: Session<'_>,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    match (request.method(), rest) {
        (&Method::GET, []) => Ok(assets::page(&node.mesh.me, session.csrf)),
        (&Method::POST, ["logout"]) => {
            sessions.end(session.id);
            let mut response = json(StatusCode::OK, &serde_json::json!({ "logged_out": true }));
            set_cookie(&mut response, &session::clear_cookie(session.secure));
            Ok(response)
        }
        (&Method::POST, ["api", "apps", name, "remove"]) => actions::remove(node, name).await,
        (&Method::POST, ["api", "apps", name, "rollback"]) => actions::roll_back(node, name).await,
        (&Method::GET, ["api", rest @ ..]) => data::serve(&request, node, rest),
        (method, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no dashboard route {method} {}; the page is at /ui/",
                request.uri().path()
            ),
        )),
    }
}

/// The live session a request's cookie names: its id and CSRF token.
fn session<B>(request: &Request<B>, sessions: &Sessions) -> Result<(String, String), ApiError> {
    let id = session::cookie(request.headers()).unwrap_or_default();
    match sessions.csrf(&id, Instant::now()) {
        Some(csrf) if !id.is_empty() => Ok((id, csrf)),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not logged in to the dashboard, or the session expired: log in with `shoal ui`, which prints a one-time link",
        )),
    }
}

/// `GET /ui/login?code=C`: a valid code starts a session and sends the
/// browser to the page; any other is refused.
fn login<B>(
    request: &Request<B>,
    sessions: &Sessions,
    secure: bool,
) -> Result<Response<AdminBody>, ApiError> {
    let code = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .unwrap_or_default();
    let Some(started) = sessions.redeem(code, Instant::now()) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this login link was used or has expired: run `shoal ui` for a new one",
        ));
    };
    tracing::info!("a dashboard session started");
    let cookie = session::set_cookie(&started.id, secure);
    Ok(redirect(StatusCode::SEE_OTHER, "/ui/", Some(&cookie)))
}

/// `POST /v1/ui/login` (the admin API, after its checks): a one-time
/// login link for the Host the caller used.
pub(crate) fn login_link<B>(
    request: &Request<B>,
    guard: &Guard,
    sessions: &Sessions,
) -> Result<Response<AdminBody>, ApiError> {
    let authority = checks::authority(request).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request names no host (no Host header): send one",
        )
    })?;
    let scheme = if guard.tls.is_some() { "https" } else { "http" };
    let code = sessions.issue(Instant::now());
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "url": format!("{scheme}://{authority}/ui/login?code={code}"),
            "expires_in_secs": session::CODE_LIFETIME.as_secs(),
        }),
    ))
}

fn redirect(status: StatusCode, to: &'static str, cookie: Option<&str>) -> Response<AdminBody> {
    let mut response = body(status, Bytes::new());
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(cookie) = cookie {
        set_cookie(&mut response, cookie);
    }
    response
}

fn set_cookie(response: &mut Response<AdminBody>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}
