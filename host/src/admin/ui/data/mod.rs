//! The figures the dashboard shows, for the whole mesh: gathered from
//! every live peer over the peer API, kept for the last minutes.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::admin::error::ApiError;
use crate::admin::reply::AdminBody;
use crate::node::Node;

/// Answers `GET /ui/api/...` (`rest`: the segments after `api`) once the
/// session and its checks passed. Until the figures are gathered, no route.
pub(crate) fn serve(
    request: &Request<Incoming>,
    node: &Node,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    let _ = (request, node);
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no dashboard data at /ui/api/{}", rest.join("/")),
    ))
}
