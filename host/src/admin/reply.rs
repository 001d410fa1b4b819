//! How the admin API answers: the body type, plain and JSON responses, and
//! errors as JSON `{"error": "..."}`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use serde::Serialize;

use super::error::ApiError;

pub(crate) type AdminBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub(crate) fn body(status: StatusCode, bytes: Bytes) -> Response<AdminBody> {
    crate::respond::plain(status, bytes)
}

pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<AdminBody> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = body(status, Bytes::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error(error: ApiError) -> Response<AdminBody> {
    json(error.status, &serde_json::json!({ "error": error.message }))
}
