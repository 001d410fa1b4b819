//! What a node's operations can fail with. The admin API maps each kind to
//! its HTTP status; messages name the problem and the fix.

/// Why a deploy, upload or removal was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum NodeError {
    /// The spec breaks a rule (name, route, limits).
    #[error("{0}")]
    InvalidSpec(String),
    /// The bytes are not a component this host can serve.
    #[error("{0}")]
    Uncompilable(String),
    #[error(
        "component `{0}` was never uploaded; upload it first (`shoal deploy FILE.wasm` does both)"
    )]
    NotUploaded(String),
    /// The stored bytes no longer matched their sha256 (moved aside).
    #[error("{0}; upload the component again (`shoal deploy FILE.wasm` does both)")]
    Corrupt(String),
    /// Another app holds the route or hostname.
    #[error("{0}")]
    Taken(String),
    #[error("no app named `{0}`; `shoal ls` lists the apps")]
    NoApp(String),
    /// A rollback found no older version whose component is stored here.
    #[error(
        "app `{app}` has no earlier version on node {node} to roll back to; deploy one with `shoal deploy`"
    )]
    NoEarlier { app: String, node: String },
    /// The store or a blocking task failed.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}
