//! Outbound HTTP through `wasi:http/outgoing-handler`: the host decides
//! where a component may go (`shoal run --allow-outbound HOST`).

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme,
};

use crate::body::Body;
use crate::error::FetchError;
use crate::executor::Wait;
use crate::writer::BodyWriter;

/// Sends `request` (its URI absolute, e.g. `http://api.example.com/x`)
/// through `wasi:http/outgoing-handler` and waits for the response head;
/// the response body streams in as it is read.
///
/// The host decides where a component may go: a destination it does not
/// allow is a [`FetchError::Denied`], which `?` in a handler turns into a
/// 403 that names the flag to add.
pub fn fetch(request: http::Request<impl AsRef<[u8]>>) -> Result<http::Response<Body>, FetchError> {
    let (pending, authority) = send(request)?;
    pending.subscribe().block();
    receive(pending, &authority)
}

/// [`fetch`] for `async` handlers: while it waits for the response, the
/// handler's other futures (more requests, say) make progress.
pub async fn fetch_async(
    request: http::Request<impl AsRef<[u8]>>,
) -> Result<http::Response<Body>, FetchError> {
    let (pending, authority) = send(request)?;
    Wait::new(pending.subscribe()).await;
    receive(pending, &authority)
}

/// Hands `request` to the host and sends its body.
fn send(
    request: http::Request<impl AsRef<[u8]>>,
) -> Result<(FutureIncomingResponse, String), FetchError> {
    let (parts, body) = request.into_parts();
    let uri = &parts.uri;
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::Invalid(format!("`{uri}` has no host; use an absolute URI")))?
        .to_string();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let fields =
        Fields::from_list(&headers).map_err(|e| FetchError::Invalid(format!("header: {e:?}")))?;
    let outgoing = OutgoingRequest::new(fields);
    let invalid = |what: &str| FetchError::Invalid(what.to_string());
    outgoing
        .set_method(&method(&parts.method))
        .map_err(|_| invalid("method"))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") | None => Scheme::Http,
        Some(other) => Scheme::Other(other.to_string()),
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|_| invalid("scheme"))?;
    outgoing
        .set_authority(Some(&authority))
        .map_err(|_| invalid("authority"))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|_| invalid("path"))?;
    let outgoing_body = outgoing.body().map_err(|_| invalid("body"))?;

    let pending =
        outgoing_handler::handle(outgoing, None).map_err(|code| failure(code, &authority))?;
    let bytes = body.as_ref();
    if !bytes.is_empty() {
        let stream = outgoing_body.write().map_err(|_| invalid("body stream"))?;
        let mut writer = BodyWriter::from_stream(stream);
        writer
            .write(bytes)
            .map_err(|e| FetchError::Failed(e.message().to_string()))?;
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|code| failure(code, &authority))?;
    Ok((pending, authority))
}

/// The response head, once `pending` is ready.
fn receive(
    pending: FutureIncomingResponse,
    authority: &str,
) -> Result<http::Response<Body>, FetchError> {
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(failure(code, authority)),
        _ => return Err(FetchError::Failed("no response".into())),
    };
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers().entries() {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::of_response(response))
        .map_err(|e| FetchError::Failed(e.to_string()))
}

fn method(method: &http::Method) -> Method {
    match *method {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::PATCH => Method::Patch,
        http::Method::HEAD => Method::Head,
        http::Method::OPTIONS => Method::Options,
        _ => Method::Other(method.as_str().to_string()),
    }
}

fn failure(code: ErrorCode, authority: &str) -> FetchError {
    match code {
        ErrorCode::HttpRequestDenied => FetchError::Denied {
            authority: authority.to_string(),
        },
        ErrorCode::DestinationIpProhibited => FetchError::Prohibited {
            authority: authority.to_string(),
        },
        other => FetchError::Failed(format!("{other:?}")),
    }
}
