//! The admin API's errors: a status and a message that names the problem
//! and the fix, sent as JSON `{"error": "..."}`.

use http::StatusCode;

use crate::node::NodeError;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn internal(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }

    pub(crate) fn no_app(name: &str) -> ApiError {
        NodeError::NoApp(name.to_string()).into()
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> ApiError {
        let status = match &error {
            NodeError::InvalidSpec(_) | NodeError::Uncompilable(_) => StatusCode::BAD_REQUEST,
            NodeError::NotUploaded(_) | NodeError::Corrupt(_) | NodeError::NoApp(_) => {
                StatusCode::NOT_FOUND
            }
            NodeError::Taken(_) | NodeError::NoEarlier { .. } => StatusCode::CONFLICT,
            NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}
