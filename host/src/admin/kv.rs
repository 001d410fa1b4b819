//! `/v1/kv`: what operators see and fix of the apps' key-value data.
//!
//! - `GET /v1/kv`: every app with data, `[{app, stores, keys, bytes}]`;
//! - `GET /v1/kv/APP`: its stores, `[{store, keys, bytes}]`;
//! - `DELETE /v1/kv/APP`: purges every store of APP (deployed or removed);
//! - `GET /v1/kv/APP/STORE?cursor=C&limit=N`: a page of keys, `{keys, cursor}`;
//! - `GET|PUT|DELETE /v1/kv/APP/STORE/KEY`: a value as raw bytes
//!   (`application/octet-stream`); KEY is percent-encoded, as keys may
//!   hold `/`.
//!
//! Every call takes the admin token, like every other admin call.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use shoal_runtime::state::{KvBackend, KvError, KvLimits, StoreId, WriteOp, WriteRequest};

use super::error::ApiError;
use super::guard;
use super::reply::{AdminBody, body, json};
use crate::node::Node;
use crate::spec::{validate_name, validate_store};

#[derive(Serialize)]
struct Page {
    keys: Vec<String>,
    /// Pass it back as `?cursor=` for the next page; `null` on the last.
    cursor: Option<String>,
}

/// Serves `/v1/kv/REST...` (the token was checked).
pub(crate) async fn serve(
    request: Request<Incoming>,
    node: &Node,
    method: &Method,
    rest: &[&str],
) -> Result<Response<AdminBody>, ApiError> {
    let rest: Vec<String> = rest.iter().map(|s| decode(s)).collect::<Result<_, _>>()?;
    if let Some(app) = rest.first() {
        validate_name(app).map_err(bad)?;
    }
    if let Some(store) = rest.get(1) {
        validate_store(store).map_err(bad)?;
    }
    let kv = &node.kv;
    match (method, rest.as_slice()) {
        (&Method::GET, []) => Ok(json(StatusCode::OK, &kv.usage_by_app().map_err(failed)?)),
        (&Method::GET, [app]) => Ok(json(StatusCode::OK, &kv.stores(app).map_err(failed)?)),
        (&Method::DELETE, [app]) => {
            let purged = kv.purge(app).await.map_err(failed)?;
            tracing::info!(app = %app, stores = purged.stores, keys = purged.keys, bytes = purged.bytes, "purged key-value data");
            Ok(json(StatusCode::OK, &purged))
        }
        (&Method::GET, [app, store]) => list(node, &request, app, store).await,
        (&Method::GET, [app, store, key]) => {
            match kv
                .get(&StoreId::new(app, store), key)
                .await
                .map_err(failed)?
            {
                Some(entry) => {
                    let mut response = body(StatusCode::OK, Bytes::from(entry.value));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    Ok(response)
                }
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no key `{key}` in store `{store}` of app `{app}`"),
                )),
            }
        }
        (&Method::PUT, [app, store, key]) => put(node, request, app, store, key).await,
        (&Method::DELETE, [app, store, key]) => {
            let op = WriteOp::Delete { key: key.clone() };
            write(node, app, store, op).await?;
            Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": key })))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no admin route {method} /v1/kv/{}; see docs/admin-api.md",
                rest.join("/")
            ),
        )),
    }
}

async fn list(
    node: &Node,
    request: &Request<Incoming>,
    app: &str,
    store: &str,
) -> Result<Response<AdminBody>, ApiError> {
    let limits = KvLimits::default();
    let (mut cursor, mut limit) = (None, limits.page);
    for pair in request.uri().query().unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("cursor", c)) if !c.is_empty() => {
                cursor = Some(c.parse::<u64>().map_err(|_| {
                    bad(format!(
                        "`cursor={c}` is not a cursor; pass back the `cursor` a page answered"
                    ))
                })?)
            }
            Some(("limit", n)) => {
                limit = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=limits.page).contains(n))
                    .ok_or_else(|| bad(format!("`limit` must be 1 to {}", limits.page)))?
            }
            _ => {}
        }
    }
    let page = node
        .kv
        .list_keys(&StoreId::new(app, store), cursor, limit)
        .await
        .map_err(failed)?;
    let page = Page {
        keys: page.keys,
        cursor: page.next.map(|c| c.to_string()),
    };
    Ok(json(StatusCode::OK, &page))
}

async fn put(
    node: &Node,
    request: Request<Incoming>,
    app: &str,
    store: &str,
    key: &str,
) -> Result<Response<AdminBody>, ApiError> {
    guard::content_type(&request, "application/octet-stream")?;
    let limits = KvLimits::default();
    if key.is_empty() || key.len() > limits.max_key || key.contains('\0') {
        return Err(bad(format!(
            "a key is 1 to {} bytes of UTF-8 without NUL; `{}` is not",
            limits.max_key,
            key.escape_debug()
        )));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is over the {} MiB limit per value",
                limits.max_value >> 20
            ),
        )
    };
    let value = match Limited::new(request.into_body(), limits.max_value)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(bad(format!("cannot read the request body: {e}"))),
    };
    let bytes = value.len();
    let op = WriteOp::Set {
        key: key.to_string(),
        value: value.to_vec(),
    };
    write(node, app, store, op).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "app": app, "store": store, "key": key, "bytes": bytes }),
    ))
}

/// Writes `op` under the app's quota (its spec's, or the default for an
/// app that is not deployed).
async fn write(node: &Node, app: &str, store: &str, op: WriteOp) -> Result<(), ApiError> {
    let quota = node
        .desired()
        .live(app)
        .map(|(_, spec)| spec.limits().kv.quota)
        .unwrap_or(KvLimits::default().quota);
    let request = WriteRequest {
        store: StoreId::new(app, store),
        op,
        quota,
    };
    node.kv.write(request).await.map_err(failed)?;
    Ok(())
}

fn bad(message: impl ToString) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message.to_string())
}

fn failed(error: KvError) -> ApiError {
    let status = match &error {
        KvError::Limit(_) => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::Invalid(_) => StatusCode::BAD_REQUEST,
        KvError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        KvError::Io(_) => StatusCode::INSUFFICIENT_STORAGE,
    };
    ApiError::new(status, error.to_string())
}

/// Decodes `%XX` escapes of a path segment.
fn decode(segment: &str) -> Result<String, ApiError> {
    let raw = segment.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(bad(format!(
                    "`{segment}` has a bad `%` escape; write `%XX` in hex"
                )));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("`{segment}` does not decode to UTF-8")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(super::decode("a%2Fb%20c").unwrap(), "a/b c");
        assert_eq!(super::decode("%C3%A9").unwrap(), "\u{e9}");
        assert!(super::decode("%2").is_err() && super::decode("%zz").is_err());
        assert!(super::decode("%FF").is_err());
    }
}
