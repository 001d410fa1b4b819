//! A response: its body (given whole or written as a stream), the helpers
//! that build one, and what a handler may return.

use http::{HeaderValue, StatusCode, header};

use crate::error::{Error, Result};
use crate::writer::BodyWriter;

/// A response: an [`http::Response`] whose body is bytes or a stream.
pub type Response = http::Response<ResponseBody>;

/// Writes a streamed response body; see [`stream`].
pub type Producer = Box<dyn FnOnce(&mut BodyWriter) -> Result<()>>;

/// The body of a [`Response`].
#[derive(Default)]
pub enum ResponseBody {
    /// No bytes.
    #[default]
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// These bytes, which live as long as the program (a literal): nothing
    /// is copied, and a handler answering one allocates nothing.
    Static(&'static [u8]),
    /// Written by this function after the status and headers are sent.
    Stream(Producer),
}

impl ResponseBody {
    /// The bytes of a body given whole (`None` for a stream).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ResponseBody::Empty => Some(&[]),
            ResponseBody::Bytes(bytes) => Some(bytes),
            ResponseBody::Static(bytes) => Some(bytes),
            ResponseBody::Stream(_) => None,
        }
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(bytes: Vec<u8>) -> Self {
        ResponseBody::Bytes(bytes)
    }
}

impl From<String> for ResponseBody {
    fn from(text: String) -> Self {
        ResponseBody::Bytes(text.into_bytes())
    }
}

impl From<&'static str> for ResponseBody {
    fn from(text: &'static str) -> Self {
        ResponseBody::Static(text.as_bytes())
    }
}

impl From<&'static [u8]> for ResponseBody {
    fn from(bytes: &'static [u8]) -> Self {
        ResponseBody::Static(bytes)
    }
}

impl From<()> for ResponseBody {
    fn from(_: ()) -> Self {
        ResponseBody::Empty
    }
}

/// 200 with a plain-text body.
pub fn text(body: impl Into<String>) -> Response {
    with_type(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        ResponseBody::from(body.into()),
    )
}

/// 200 with `value` as a JSON body.
#[cfg(feature = "json")]
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Response> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?;
    Ok(with_type(
        StatusCode::OK,
        "application/json",
        ResponseBody::Bytes(bytes),
    ))
}

/// A response with `status` and no body.
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(ResponseBody::Empty);
    *response.status_mut() = status;
    response
}

/// 200 with a body that `produce` writes after the head is sent, so a large
/// body never has to be held in memory.
pub fn stream(
    content_type: &'static str,
    produce: impl FnOnce(&mut BodyWriter) -> Result<()> + 'static,
) -> Response {
    with_type(
        StatusCode::OK,
        content_type,
        ResponseBody::Stream(Box::new(produce)),
    )
}

fn with_type(status: StatusCode, content_type: &'static str, body: ResponseBody) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// What a handler may return.
pub trait IntoResponse {
    /// The response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = text(format!("{}\n", self.message()));
        *response.status_mut() = self.status();
        response
    }
}

impl<R: IntoResponse, E: Into<Error>> IntoResponse for std::result::Result<R, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(response) => response.into_response(),
            Err(error) => error.into().into_response(),
        }
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text(self)
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        empty(self)
    }
}

/// `(StatusCode::CREATED, "created")`: the response of `R` with this status.
impl<R: IntoResponse> IntoResponse for (StatusCode, R) {
    fn into_response(self) -> Response {
        let (status, inner) = self;
        let mut response = inner.into_response();
        *response.status_mut() = status;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_plain_responses_with_their_status() {
        let response = Err::<Response, _>(Error::bad_request("no name")).into_response();
        assert_eq!(response.status(), 400);
        match response.body() {
            ResponseBody::Bytes(bytes) => assert_eq!(bytes, b"no name\n"),
            _ => panic!("expected bytes"),
        }
        assert_eq!(StatusCode::NO_CONTENT.into_response().status(), 204);
        let created = (StatusCode::CREATED, "made").into_response();
        assert_eq!(created.status(), 201);
        assert_eq!(
            created.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
