//! The admin API server: checks each request (`guard`: Host, Origin,
//! token, Content-Type), routes it to its handler (the peer API to
//! `peer`), and answers JSON. Every error is JSON `{"error": "..."}` with a
//! message that names the problem and the fix.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::net::TcpListener;

use super::error::ApiError;
use super::guard::{self, Guard};
use super::reply::{AdminBody, body, error, json};
use super::ui::session::Sessions;
use super::{kv, peer, ui, views};
use crate::accept::{self, Listener};
use crate::connections::Limits;
use crate::metrics::{AppGauges, KvGauges};
use crate::node::Node;
use crate::shutdown::Shutdown;
use crate::spec::{AppSpec, redacted};
use crate::tls::Encrypted;

/// Largest JSON body (an app spec) accepted.
const MAX_JSON: usize = 1 << 20;

/// How the admin API is served.
#[derive(Debug, Clone)]
pub(crate) struct AdminConfig {
    /// The token, required on every call but health, and the rest of
    /// what a caller is checked against.
    pub guard: Guard,
    /// Largest component upload accepted, in bytes.
    pub max_upload: u64,
    /// The ingress's address, for health.
    pub ingress: SocketAddr,
    /// Timeouts, the connection cap and the drain limit.
    pub limits: Limits,
}

/// Serves the admin and peer APIs until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    config: AdminConfig,
    shutdown: Shutdown,
) {
    let kind = Listener {
        name: "admin",
        cap_flag: "--max-admin-connections",
        limits: config.limits,
        tls: config.guard.tls.clone(),
    };
    let config = Arc::new(config);
    let sessions = Arc::new(Sessions::default());
    let handler_for = move |_peer| {
        let (node, config, sessions) = (node.clone(), config.clone(), sessions.clone());
        move |request| {
            let (node, config, sessions) = (node.clone(), config.clone(), sessions.clone());
            async move { handle(request, &node, &config, &sessions).await }
        }
    };
    accept::serve(listener, kind, handler_for, shutdown).await;
}

async fn handle(
    request: Request<Incoming>,
    node: &Node,
    config: &AdminConfig,
    sessions: &Sessions,
) -> Response<AdminBody> {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    if let ["ui", rest @ ..] = segments.as_slice() {
        return ui::serve(request, node, &config.guard, sessions, rest).await;
    }
    if let Err(refused) = config.guard.caller(&request) {
        return error(refused);
    }
    if let ["v1", "peer", rest @ ..] = segments.as_slice() {
        return peer::serve(&request, node, &method, &path, rest).unwrap_or_else(error);
    }
    // A listener with TLS takes plaintext for the peer API only, which
    // seals its answers itself; the token never counts in clear.
    let in_clear = request.extensions().get::<Encrypted>() != Some(&Encrypted(true));
    if config.guard.tls.is_some() && in_clear {
        return error(ApiError::new(
            StatusCode::FORBIDDEN,
            "this admin API answers over TLS only: call it with `https://`",
        ));
    }
    if segments != ["v1", "health"]
        && let Err(refused) = config.guard.token(&request)
    {
        return error(refused);
    }
    if segments == ["v1", "ui", "login"] && method == Method::POST {
        return ui::login_link(&request, &config.guard, sessions).unwrap_or_else(error);
    }
    route(request, node, config, &method, &path, &segments)
        .await
        .unwrap_or_else(error)
}

async fn route(
    request: Request<Incoming>,
    node: &Node,
    config: &AdminConfig,
    method: &Method,
    path: &str,
    segments: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    match (method, segments) {
        (&Method::GET, ["v1", "health"]) => Ok(json(
            StatusCode::OK,
            &views::health(node, config.ingress, config.max_upload),
        )),
        (&Method::GET, ["metrics"]) => Ok(metrics(node)),
        (&Method::POST, ["v1", "components"]) => upload(request, node, config.max_upload).await,
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
        (&Method::GET, ["v1", "apps"]) => Ok(json(StatusCode::OK, &views::apps(node))),
        (&Method::GET, ["v1", "apps", name]) => match views::app(node, name) {
            Some(view) => Ok(json(StatusCode::OK, &view)),
            None => Err(ApiError::no_app(name)),
        },
        (&Method::GET, ["v1", "nodes"]) => Ok(json(StatusCode::OK, &views::nodes(node))),
        (&Method::PUT, ["v1", "apps", name]) => {
            let name = name.to_string();
            deploy(request, node, &name).await
        }
        (&Method::DELETE, ["v1", "apps", name]) => {
            node.remove(name).await?;
            Ok(json(StatusCode::OK, &views::removed(node, name)))
        }
        (_, ["v1", "kv", rest @ ..]) => kv::serve(request, node, method, rest).await,
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
    let kv = node.kv.usage_by_app().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read key-value sizes for /metrics");
        Vec::new()
    });
    let kv = kv.into_iter().map(|u| KvGauges {
        app: u.app,
        bytes: u.bytes,
        keys: u.keys,
    });
    let text = node.metrics.render(gauges, kv);
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

async fn upload(
    request: Request<Incoming>,
    node: &Node,
    max_upload: u64,
) -> Result<Response<AdminBody>, ApiError> {
    guard::content_type(&request, "application/wasm")?;
    let limit = usize::try_from(max_upload).unwrap_or(usize::MAX);
    let bytes = read_body(
        request,
        limit,
        "the upload",
        "start the host with a larger `--max-upload`",
    )
    .await?;
    let size = bytes.len();
    let compiled = node.upload(bytes).await?;
    let uploaded = views::Uploaded {
        sha256: compiled.sha256().to_string(),
        size,
        kind: compiled.kind().as_str(),
    };
    Ok(json(StatusCode::OK, &uploaded))
}

async fn deploy(
    request: Request<Incoming>,
    node: &Node,
    name: &str,
) -> Result<Response<AdminBody>, ApiError> {
    guard::content_type(&request, "application/json")?;
    let bytes = read_body(request, MAX_JSON, "the app spec", "send a smaller spec").await?;
    let spec: AppSpec = serde_json::from_slice(&bytes).map_err(|e| {
        // The spec holds env values and secrets: name no value.
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid app spec: {}", redacted(&e)),
        )
    })?;
    if let Some(field) = spec.unknown_field() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid app spec: unknown field `{field}`; check its spelling, or upgrade this host (it runs shoal {})",
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    if spec.name != name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the spec names app `{}` but was sent to /v1/apps/{name}",
                spec.name
            ),
        ));
    }
    let deployment = node.deploy(spec).await?;
    let mut view = views::AppView::of(
        node,
        &deployment.record,
        &deployment.spec,
        &deployment.placement,
    );
    view.kind = deployment.kind;
    Ok(json(StatusCode::OK, &view))
}

fn logs(node: &Node, name: &str, follow: bool) -> Result<Response<AdminBody>, ApiError> {
    if node.desired().live(name).is_none() {
        return Err(ApiError::no_app(name));
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
