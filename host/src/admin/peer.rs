//! The peer API, server side (`/v1/peer/...` on the admin listener): the
//! state (records and horizon) and component bytes other nodes pull, and
//! the figures a dashboard on another node gathers.
//! Callers prove they hold the cluster key with a sealed token naming the
//! request; every answer is sealed with it, the state bound to the token
//! so it answers that request only. `/v1/peer/records` (records alone,
//! unbound) stays for nodes of earlier versions.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use super::error::ApiError;
use super::reply::{AdminBody, body};
use crate::mesh::answer;
use crate::mesh::key::Purpose;
use crate::mesh::peer::TOKEN_HEADER;
use crate::node::Node;

/// The peer API: callers prove they hold the cluster key, and every
/// answer is sealed with it.
pub(crate) fn serve<B>(
    request: &Request<B>,
    node: &Node,
    method: &Method,
    path: &str,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    let token = request
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(e) = node
        .mesh
        .key
        .verify_peer_token(token, method.as_str(), path)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("peer request refused: {e}"),
        ));
    }
    let plain = match (method, rest) {
        (&Method::GET, ["state"]) => {
            let desired = node.desired();
            let state = serde_json::json!({
                "horizon": desired.horizon(),
                "records": desired.records().collect::<Vec<_>>(),
            });
            let plain = serde_json::to_vec(&state).map_err(ApiError::internal)?;
            return Ok(sealed(answer::seal(&node.mesh.key, token, &plain)));
        }
        (&Method::GET, ["figures"]) => {
            let after = query_u64(request.uri().query(), "after").unwrap_or(0);
            let figures = super::ui::data::figures::local(node, after);
            let plain = serde_json::to_vec(&figures).map_err(ApiError::internal)?;
            return Ok(sealed(answer::seal(&node.mesh.key, token, &plain)));
        }
        (&Method::GET, ["records"]) => {
            let desired = node.desired();
            let records: Vec<_> = desired.records().collect();
            serde_json::to_vec(&records).map_err(ApiError::internal)?
        }
        (&Method::GET, ["components", sha256]) => {
            if !node.store.has_component(sha256) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no component `{sha256}` here"),
                ));
            }
            node.store
                .read_component(sha256)
                .map_err(ApiError::internal)?
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no peer route {method} {path}"),
            ));
        }
    };
    Ok(sealed(node.mesh.key.seal(Purpose::PeerHttp, &plain)))
}

/// The number `name=N` in `query`, if any.
fn query_u64(query: Option<&str>, name: &str) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn sealed(bytes: Vec<u8>) -> Response<AdminBody> {
    let mut response = body(StatusCode::OK, Bytes::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}
