//! The glue the `#[shoal_sdk::http]` macro calls: turn the WASI request
//! into an [`http::Request`], call the handler, send its response.

use http::{HeaderValue, StatusCode};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam, Scheme,
};

use crate::body::Body;
use crate::error::Error;
use crate::executor::block_on;
use crate::response::IntoResponse;
use crate::{Request, Response};

/// Converts what a handler returned.
pub fn into_response<R: IntoResponse>(result: R) -> Response {
    result.into_response()
}

/// Runs an async handler's future to completion and converts its output.
pub fn run_async<F>(future: F) -> Response
where
    F: Future,
    F::Output: IntoResponse,
{
    match block_on(future) {
        Some(output) => output.into_response(),
        None => {
            eprintln!(
                "shoal-sdk: the handler awaited a future that can never complete (only the SDK's own futures can be awaited here)"
            );
            Error::internal("the handler got stuck").into_response()
        }
    }
}

/// Serves one request with `handler`.
pub fn serve(
    incoming: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> Response,
) {
    let response = match to_request(incoming) {
        Ok(request) => handler(request),
        Err(error) => error.into_response(),
    };
    let (parts, body) = response.into_parts();
    let headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let (fields, status) = match Fields::from_list(&headers) {
        Ok(fields) => (fields, parts.status),
        // A header the host forbids (e.g. `connection`): a bug in the
        // handler, reported instead of silently dropped.
        Err(error) => {
            let fields = Fields::new();
            let _ = fields.append(
                "content-type",
                HeaderValue::from_static("text/plain").as_bytes(),
            );
            eprintln!("shoal-sdk: the handler's response has a header the host refuses: {error:?}");
            (fields, StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    let response = OutgoingResponse::new(fields);
    // A new response is 200 already: one host call fewer on the common path.
    if status != StatusCode::OK {
        let _ = response.set_status_code(status.as_u16());
    }
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    let body = if status == parts.status {
        body
    } else {
        Default::default()
    };
    if let Err(error) = body.send(outgoing) {
        eprintln!("shoal-sdk: sending the response body failed: {error}");
    }
}

fn to_request(incoming: IncomingRequest) -> Result<Request, Error> {
    let scheme = match incoming.scheme() {
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(other)) => other,
        _ => "http".to_string(),
    };
    let path = incoming.path_with_query().unwrap_or_else(|| "/".into());
    let mut uri = http::Uri::builder()
        .scheme(scheme.as_str())
        .path_and_query(path.as_str());
    if let Some(authority) = incoming.authority() {
        uri = uri.authority(authority);
    }
    let builder = http::Request::builder()
        .method(method(incoming.method()))
        .uri(
            uri.build()
                .map_err(|e| Error::bad_request(format!("invalid request target: {e}")))?,
        );
    let mut request = builder
        .body(())
        .map_err(|e| Error::bad_request(format!("invalid request: {e}")))?;
    let headers = request.headers_mut();
    for (name, value) in incoming.headers().entries() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(request.map(|()| Body::of_request(incoming)))
}

fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Patch => http::Method::PATCH,
        Method::Head => http::Method::HEAD,
        Method::Options => http::Method::OPTIONS,
        Method::Connect => http::Method::CONNECT,
        Method::Trace => http::Method::TRACE,
        Method::Other(other) => {
            http::Method::from_bytes(other.as_bytes()).unwrap_or(http::Method::GET)
        }
    }
}
