//! The figures the dashboard shows, for the whole mesh: gathered from
//! every live peer over the peer API (`gather`, from each node's own
//! `figures`), turned into rates (`rates`), and served as the overview
//! (`overview`) and two event streams (`stream`). `ui::serve` calls
//! [`serve`] once the session is checked.

pub(crate) mod figures;
mod gather;
mod overview;
mod rates;
mod stream;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use self::figures::Sources;
use self::gather::Gatherer;
use crate::admin::error::ApiError;
use crate::admin::reply::{AdminBody, body};
use crate::node::Node;

/// Answers `GET /ui/api/{overview | stream | logs/APP}`; `rest` is the
/// path after `/ui/api`. Any of them starts the gatherer if it was not
/// running.
pub(crate) fn serve(
    request: &Request<Incoming>,
    node: &Node,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("/ui/api/{} answers GET only", rest.join("/").escape_debug()),
        ));
    }
    let gatherer = Gatherer::get();
    match rest {
        ["overview"] => {
            gatherer.touch(|| Sources::of(node));
            let overview = overview::overview(node, &gatherer.state());
            Ok(compact_json(&overview))
        }
        ["stream"] => {
            gatherer.touch(|| Sources::of(node));
            Ok(stream::samples(&gatherer))
        }
        ["logs", app] => {
            if node.desired().live(app).is_none() {
                return Err(ApiError::no_app(app));
            }
            gatherer.touch(|| Sources::of(node));
            Ok(stream::logs(&gatherer, app))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no dashboard route /ui/api/{}; the page asks for overview, stream and logs/APP",
                rest.join("/").escape_debug()
            ),
        )),
    }
}

/// `value` as compact JSON (the overview of a large mesh is read every
/// few seconds), never cached.
fn compact_json(value: &serde_json::Value) -> Response<AdminBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = body(StatusCode::OK, bytes::Bytes::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
