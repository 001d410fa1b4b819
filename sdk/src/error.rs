//! Errors a handler returns, each carrying the HTTP status it answers with,
//! and the error of an outbound request, which converts into one.

use std::fmt;

use http::StatusCode;

use crate::config::ConfigError;
use crate::kv::KvError;

/// A handler error: a status and a short message sent as a plain-text body.
///
/// Every error type converts into it with `?`, and picks its status on the
/// way:
///
/// | error | status |
/// |---|---|
/// | `serde_json::Error` (bad or incomplete JSON) | 400, with serde's reason |
/// | [`std::string::FromUtf8Error`], [`std::str::Utf8Error`] | 400 |
/// | [`FetchError::Denied`] | 403, naming the host flag that would allow it |
/// | [`FetchError::Prohibited`] | 403, saying how to allow the address |
/// | [`FetchError::Failed`] | 502 |
/// | [`KvError::AccessDenied`] | 403, naming the `--kv` flag that grants the store |
/// | [`KvError::Contended`] | 503 |
/// | any other [`KvError`], a [`ConfigError`] | 500 with the message (the store, the key, the host's reason) |
/// | anything else | 500 `internal server error`; the cause goes to the component's log (stderr) |
///
/// Like `anyhow::Error`, it does not implement [`std::error::Error`]
/// itself: that is what lets any error convert into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

/// `Result<T, shoal_sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request, saying what is wrong with the request.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found (`not found`; change it with [`Error::with_message`]).
    pub fn not_found() -> Error {
        Error::new(StatusCode::NOT_FOUND, "not found")
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The same status with another message.
    pub fn with_message(self, message: impl Into<String>) -> Error {
        Error::new(self.status, message)
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client gets.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl<E: std::error::Error + 'static> From<E> for Error {
    fn from(error: E) -> Error {
        classify(&error)
    }
}

/// The status (and message) an error answers with; see [`Error`].
fn classify(error: &(dyn std::error::Error + 'static)) -> Error {
    if let Some(fetch) = error.downcast_ref::<FetchError>() {
        let status = match fetch {
            FetchError::Denied { .. } | FetchError::Prohibited { .. } => StatusCode::FORBIDDEN,
            FetchError::Failed(_) => StatusCode::BAD_GATEWAY,
            FetchError::Invalid(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        return Error::new(status, fetch.to_string());
    }
    if let Some(kv) = error.downcast_ref::<KvError>() {
        let status = match kv {
            KvError::AccessDenied { .. } => StatusCode::FORBIDDEN,
            KvError::Contended { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        eprintln!("shoal-sdk: answering {} because of: {kv}", status.as_u16());
        return Error::new(status, kv.to_string());
    }
    if let Some(config) = error.downcast_ref::<ConfigError>() {
        eprintln!("shoal-sdk: answering 500 because of: {config}");
        return Error::internal(config.to_string());
    }
    #[cfg(feature = "json")]
    if let Some(json) = error.downcast_ref::<serde_json::Error>() {
        return Error::bad_request(format!("invalid JSON: {json}"));
    }
    if error.is::<std::string::FromUtf8Error>() || error.is::<std::str::Utf8Error>() {
        return Error::bad_request("the body is not valid UTF-8");
    }
    eprintln!("shoal-sdk: answering 500 because of: {error}");
    Error::internal("internal server error")
}

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The host's policy does not allow this destination.
    Denied {
        /// The `host:port` asked for.
        authority: String,
    },
    /// The destination resolved to an address the host does not let
    /// guests reach: loopback, private, link-local or another non-public
    /// range no IP or CIDR rule names, or a shoal host's own listener.
    Prohibited {
        /// The `host:port` asked for.
        authority: String,
    },
    /// The request could not be built (bad URI, header or method).
    Invalid(String),
    /// The request was sent but failed (connection refused, DNS, timeout, ...).
    Failed(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Denied { authority } => write!(
                f,
                "outbound request to {authority} denied by the host; grant it with `--allow-outbound {authority}`"
            ),
            FetchError::Prohibited { authority } => write!(
                f,
                "outbound request to {authority} reaches an address the host does not allow (a non-public range or a shoal host); grant its IP or network with `--allow-outbound IP:PORT` or a CIDR, and see the app's log for the address"
            ),
            FetchError::Invalid(why) => write!(f, "invalid outbound request: {why}"),
            FetchError::Failed(why) => write!(f, "outbound request failed: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(result: Result<()>) -> u16 {
        result.unwrap_err().status().as_u16()
    }

    #[test]
    fn errors_carry_their_status() {
        assert_eq!(Error::bad_request("x").status(), 400);
        assert_eq!(Error::not_found().status(), 404);
        assert_eq!(Error::not_found().message(), "not found");
        assert_eq!(
            Error::not_found().with_message("no such user").status(),
            404
        );
        assert_eq!(
            Error::new(StatusCode::IM_A_TEAPOT, "tea").to_string(),
            "418 tea"
        );
    }

    #[test]
    fn any_error_converts_with_the_right_status() {
        // Anything unknown is a 500 that does not leak the cause.
        let io = Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(
            (io.status().as_u16(), io.message()),
            (500, "internal server error")
        );
        assert_eq!(
            status_of("x".parse::<u32>().map(drop).map_err(Into::into)),
            500
        );
        assert_eq!(
            status_of(String::from_utf8(vec![0xff]).map(drop).map_err(Into::into)),
            400
        );
        let denied = Error::from(FetchError::Denied {
            authority: "api.example.com:443".into(),
        });
        assert_eq!(denied.status(), 403);
        assert!(
            denied
                .message()
                .contains("--allow-outbound api.example.com:443")
        );
        let prohibited = Error::from(FetchError::Prohibited {
            authority: "localhost:9000".into(),
        });
        assert_eq!(prohibited.status(), 403);
        assert!(prohibited.message().contains("--allow-outbound IP:PORT"));
        assert_eq!(
            Error::from(FetchError::Failed("refused".into())).status(),
            502
        );
    }

    #[test]
    fn state_errors_answer_with_their_message() {
        let denied = Error::from(KvError::AccessDenied {
            store: "carts".into(),
        });
        assert_eq!(denied.status(), 403);
        assert!(denied.message().contains("--kv carts"), "{denied}");
        let limit = Error::from(KvError::Other {
            store: "default".into(),
            key: Some("k".into()),
            message: "value over the 1 MiB limit".into(),
        });
        assert_eq!(limit.status(), 500);
        assert!(limit.message().contains("1 MiB limit"), "{limit}");
        let contended = Error::from(KvError::Contended {
            store: "default".into(),
            key: "k".into(),
            attempts: 100,
        });
        assert_eq!(contended.status(), 503);
        let config = Error::from(ConfigError::Io {
            key: Some("greeting".into()),
            message: "eof".into(),
        });
        assert_eq!(config.status(), 500);
        assert!(config.message().contains("`greeting`"), "{config}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn bad_json_is_a_400_that_says_why() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Named {
            name: String,
        }
        let parsed: Result<Named> = serde_json::from_str("{}").map_err(Into::into);
        let error = parsed.unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.message().contains("missing field `name`"), "{error}");
        assert_eq!(
            status_of(
                serde_json::from_str::<Named>("nope")
                    .map(drop)
                    .map_err(Into::into)
            ),
            400
        );
    }
}
