//! Short responses every server of a host sends: plain text with a status,
//! and 503 with `Retry-After`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A short plain-text response, with whatever body error type the server
/// at hand uses.
pub(crate) fn plain<E: 'static>(
    status: StatusCode,
    text: impl Into<Bytes>,
) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, E>> {
    let mut response = Response::new(
        Full::new(text.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 503 with `Retry-After: 1`: the caller may try again shortly.
pub(crate) fn retry_later<E: 'static>(text: impl Into<Bytes>) -> Response<UnsyncBoxBody<Bytes, E>> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    response
}
