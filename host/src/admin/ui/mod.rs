//! The dashboard at `/ui` on the admin listener: a page embedded in the
//! binary (`assets`), a session cookie set by a one-time login link that
//! `shoal ui` asks for (`session`), the actions an operator may take
//! (`actions`), and the mesh-wide figures the page shows (`data`).

mod actions;
mod assets;
pub(crate) mod data;
pub(crate) mod session;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::ApiError;
use super::reply::{AdminBody, error};
use super::server::AdminConfig;
use crate::node::Node;

/// Answers `GET|POST /ui/...`; `rest` is the path after `/ui`.
pub(crate) async fn serve(
    request: Request<Incoming>,
    node: &Node,
    config: &AdminConfig,
    rest: &[&str],
) -> Response<AdminBody> {
    let _ = (&request, node, config, rest);
    error(ApiError::new(
        StatusCode::NOT_FOUND,
        "the dashboard is not built yet",
    ))
}
