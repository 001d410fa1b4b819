//! The admin API server. Every error is JSON `{"error": "..."}` with a
//! message that names the problem and the fix.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::mesh::{key::Purpose, peer::TOKEN_HEADER};
use crate::metrics::AppGauges;
use crate::node::{ApiError, Node};
use crate::shutdown::Shutdown;
use crate::spec::AppSpec;

type AdminBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest JSON body (an app spec) accepted.
const MAX_JSON: usize = 1 << 20;

pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    ingress: SocketAddr,
    mut shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let node = node.clone();
        let service = hyper::service::service_fn(move |request| {
            let node = node.clone();
            async move { Ok::<_, Infallible>(handle(request, &node, ingress).await) }
        });
        let connection = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    // Followers of `shoal logs --follow` never finish by themselves.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

async fn handle(
    request: Request<Incoming>,
    node: &Node,
    ingress: SocketAddr,
) -> Response<AdminBody> {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    if let ["v1", "peer", rest @ ..] = segments.as_slice() {
        return peer(&request, node, &method, &path, rest).unwrap_or_else(error);
    }
    if segments != ["v1", "health"] && !authorized(&request, node) {
        return error(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: pass it with `--token` or `SHOAL_TOKEN` (a host keeps it in DATA_DIR/token)",
        ));
    }
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "health"]) => Ok(json(StatusCode::OK, &health(node, ingress))),
        (&Method::GET, ["metrics"]) => Ok(metrics(node)),
        (&Method::POST, ["v1", "components"]) => upload(request, node).await,
        (&Method::HEAD | &Method::GET, ["v1", "components", sha256]) => {
            if node.store.has_component(sha256) {
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "sha256": sha256 }),
                ))
            } else {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no component `{sha256}`"),
                ))
            }
        }
        (&Method::GET, ["v1", "apps"]) => Ok(json(StatusCode::OK, &node.views())),
        (&Method::GET, ["v1", "apps", name]) => match node.view(name) {
            Some(view) => Ok(json(StatusCode::OK, &view)),
            None => Err(no_app(name)),
        },
        (&Method::GET, ["v1", "nodes"]) => Ok(json(StatusCode::OK, &nodes(node))),
        (&Method::PUT, ["v1", "apps", name]) => {
            let name = name.to_string();
            deploy(request, node, &name).await
        }
        (&Method::DELETE, ["v1", "apps", name]) => node
            .remove(name)
            .await
            .map(|()| json(StatusCode::OK, &serde_json::json!({ "removed": name }))),
        (&Method::GET, ["v1", "apps", name, "logs"]) => {
            let follow = request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "follow=true" || p == "follow=1"));
            logs(node, name, follow)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no admin route {method} {path}; see docs/admin-api.md"),
        )),
    };
    result.unwrap_or_else(error)
}

/// The peer API: callers prove they hold the cluster key, and every
/// answer is sealed with it.
fn peer<B>(
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
    let sealed = node.mesh.key.seal(Purpose::PeerHttp, &plain);
    let mut response = body(StatusCode::OK, Bytes::from(sealed));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// A member as `GET /v1/nodes` shows it.
#[derive(Serialize)]
struct NodeView {
    name: String,
    gossip: String,
    ingress: Option<String>,
    peer: Option<String>,
    live: bool,
    me: bool,
    capacity: u32,
    load: u32,
    /// Apps it serves at their current version.
    apps: Vec<String>,
    /// Apps placement puts on it.
    placed: Vec<String>,
}

fn nodes(node: &Node) -> Vec<NodeView> {
    let members = node.mesh.membership.members();
    let placement = node.mesh.placement();
    let mut held = node.mesh.held();
    let desired = node.desired();
    let mine: Vec<String> = node
        .apps
        .list()
        .into_iter()
        .filter(|d| {
            desired
                .live(&d.spec.name)
                .is_some_and(|(r, _)| r.version == d.version)
        })
        .map(|d| d.spec.name.clone())
        .collect();
    held.insert(members.me.clone(), mine);
    members
        .all
        .values()
        .map(|m| NodeView {
            name: m.name.clone(),
            gossip: m.gossip.to_string(),
            ingress: m.ingress.map(|a| a.to_string()),
            peer: m.peer.map(|a| a.to_string()),
            live: m.live,
            me: m.name == members.me,
            capacity: m.capacity,
            load: m.load,
            apps: if m.live {
                held.remove(&m.name).unwrap_or_default()
            } else {
                Vec::new()
            },
            placed: placement
                .apps_on(&m.name)
                .into_iter()
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

fn authorized<B>(request: &Request<B>, node: &Node) -> bool {
    let Some(token) = &node.config.token else {
        return true;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
    apps: usize,
    node: String,
    gossip: String,
    /// Live members of the mesh, this node included.
    members: usize,
    ingress: String,
    data_dir: String,
    max_upload: u64,
}

fn health(node: &Node, ingress: SocketAddr) -> Health {
    Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: node.started.elapsed().as_secs(),
        apps: node.desired().apps().count(),
        node: node.mesh.me.clone(),
        gossip: node.mesh.gossip.to_string(),
        members: node.mesh.membership.members().live().count(),
        ingress: format!("http://{ingress}"),
        data_dir: node.config.data_dir.display().to_string(),
        max_upload: node.config.max_upload,
    }
}

fn metrics(node: &Node) -> Response<AdminBody> {
    let gauges = node.apps.list().into_iter().map(|d| {
        let stats = d.app.stats();
        AppGauges {
            app: d.spec.name.clone(),
            instantiations: stats.instantiations,
            active: stats.active,
            queued: stats.queued,
        }
    });
    let text = node.metrics.render(gauges);
    let mut response = body(StatusCode::OK, Bytes::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn read_body(
    request: Request<Incoming>,
    limit: usize,
    what: &str,
    fix: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is over the limit of {limit} bytes; {fix}"),
        )
    };
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        )),
    }
}

async fn upload(request: Request<Incoming>, node: &Node) -> Result<Response<AdminBody>, ApiError> {
    let limit = usize::try_from(node.config.max_upload).unwrap_or(usize::MAX);
    let bytes = read_body(
        request,
        limit,
        "the upload",
        "start the host with a larger `--max-upload`",
    )
    .await?;
    let uploaded = node.upload(bytes).await?;
    Ok(json(StatusCode::OK, &uploaded))
}

async fn deploy(
    request: Request<Incoming>,
    node: &Node,
    name: &str,
) -> Result<Response<AdminBody>, ApiError> {
    let bytes = read_body(request, MAX_JSON, "the app spec", "send a smaller spec").await?;
    let spec: AppSpec = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid app spec: {e}")))?;
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the spec names app `{}` but was sent to /v1/apps/{name}",
                spec.name
            ),
        ));
    }
    let view = node.deploy(spec).await?;
    Ok(json(StatusCode::OK, &view))
}

fn logs(node: &Node, name: &str, follow: bool) -> Result<Response<AdminBody>, ApiError> {
    if node.desired().live(name).is_none() {
        return Err(no_app(name));
    }
    let (recent, receiver) = node.logs.subscribe(name);
    let mut text = String::new();
    for line in recent {
        text.push_str(&line);
        text.push('\n');
    }
    if !follow {
        return Ok(body(StatusCode::OK, Bytes::from(text)));
    }
    let head = futures::stream::once(async move { Ok(Frame::data(Bytes::from(text))) });
    let tail = futures::stream::unfold(receiver, |mut receiver| async move {
        let text = match receiver.recv().await {
            Ok(line) => format!("{line}\n"),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                format!("... {n} lines skipped\n")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Frame::data(Bytes::from(text))), receiver))
    });
    let stream = head.chain(tail);
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

fn no_app(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no app named `{name}`; `shoal ls` lists the apps"),
    )
}

fn body(status: StatusCode, bytes: Bytes) -> Response<AdminBody> {
    crate::ingress::plain(status, bytes)
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<AdminBody> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = body(status, Bytes::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(error: ApiError) -> Response<AdminBody> {
    json(error.status, &serde_json::json!({ "error": error.message }))
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
