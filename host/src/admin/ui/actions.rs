//! What an operator may do from the dashboard: remove an app, roll it back.
//! Both are POSTs that passed the session, Origin and CSRF checks.

use http::{Response, StatusCode};

use crate::admin::error::ApiError;
use crate::admin::reply::{AdminBody, json};
use crate::admin::views;
use crate::node::Node;

/// `POST /ui/api/apps/{name}/remove`: what `DELETE /v1/apps/{name}` does
/// and answers.
pub(super) async fn remove(node: &Node, name: &str) -> Result<Response<AdminBody>, ApiError> {
    node.remove(name).await?;
    tracing::info!(app = name, "removed from the dashboard");
    Ok(json(StatusCode::OK, &views::removed(node, name)))
}

/// `POST /ui/api/apps/{name}/rollback`: deploys the spec of the app's
/// previous version again, as a new version.
pub(super) async fn roll_back(node: &Node, name: &str) -> Result<Response<AdminBody>, ApiError> {
    let rolled = node.roll_back(name).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "name": name,
            "version": rolled.deployment.record.version,
            "rolled_back_to": rolled.to,
        }),
    ))
}
