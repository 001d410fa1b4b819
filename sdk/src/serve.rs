//! The glue the `#[shoal_sdk::http]` macro calls: hand the WASI request to
//! the handler, send its response.

use http::StatusCode;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

use crate::error::{Error, Result};
use crate::executor::block_on;
use crate::request::Request;
use crate::response::{IntoResponse, Response, ResponseBody};
use crate::writer::BodyWriter;

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
    let response = handler(Request::from_incoming(incoming));
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
            eprintln!("shoal-sdk: the handler's response has a header the host refuses: {error:?}");
            let plain = [("content-type".to_string(), b"text/plain".to_vec())];
            let fields = Fields::from_list(&plain).expect("content-type is allowed");
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
    if let Err(error) = send(body, outgoing) {
        eprintln!("shoal-sdk: sending the response body failed: {error}");
    }
}

/// Writes `body` into `outgoing` and finishes it.
fn send(body: ResponseBody, outgoing: OutgoingBody) -> Result<()> {
    let stream = outgoing
        .write()
        .map_err(|_| Error::internal("the response body was already taken"))?;
    let mut writer = BodyWriter::from_stream(stream);
    let result = match body {
        ResponseBody::Empty => Ok(()),
        ResponseBody::Bytes(bytes) => writer.write(&bytes),
        ResponseBody::Static(bytes) => writer.write(bytes),
        ResponseBody::Stream(produce) => produce(&mut writer),
    };
    drop(writer);
    OutgoingBody::finish(outgoing, None)
        .map_err(|_| Error::internal("finishing the response body failed"))?;
    result
}
