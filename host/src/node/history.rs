//! What the dashboard reads of this node's history (`store::history`):
//! the recent changes of every app, whether an app has an earlier version
//! to go back to, and the rollback itself, a new deploy of that version's
//! spec.

use std::collections::{HashMap, HashSet};

use super::{Deployment, Node, NodeError};
use crate::spec::AppSpec;
use crate::store::history::{Change, Kind};

/// One change, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryEntry {
    /// When this node saved it, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `"deploy"`, `"remove"` or `"rollback"`.
    pub kind: &'static str,
    pub app: String,
    pub version: u64,
    /// The node that accepted it.
    pub origin: String,
}

/// What a rollback did: the new deployment, and the version whose spec
/// it deployed again.
pub(crate) struct RolledBack {
    pub deployment: Deployment,
    pub to: u64,
}

impl Node {
    /// The newest `limit` changes this node saved, newest first (empty,
    /// logged, if the store cannot be read). Blocks on the store briefly.
    pub(crate) fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        self.read_history(|store| store.history(limit), None)
            .into_iter()
            .map(|change| HistoryEntry {
                at_ms: change.at_ms,
                kind: change.kind.as_str(),
                app: change.name,
                version: change.version,
                origin: change.origin,
            })
            .collect()
    }

    /// The live apps whose history here holds an earlier version whose
    /// component is stored here (what [`Node::roll_back`] goes back to),
    /// from one read of the history: the overview asks for every app.
    pub(crate) fn can_roll_back_all(&self) -> HashSet<String> {
        let desired = self.desired();
        let mut by_app: HashMap<String, Vec<Change>> = HashMap::new();
        for change in self.read_history(|store| store.history(usize::MAX), None) {
            by_app.entry(change.name.clone()).or_default().push(change);
        }
        by_app
            .into_iter()
            .filter_map(|(name, changes)| {
                let current = desired.live(&name)?.0.version;
                self.earliest_below(current, changes).map(|_| name)
            })
            .collect()
    }

    /// The change a rollback of `name` goes back to: the newest one in the
    /// history with a version below the live one, a spec, and its
    /// component stored here.
    fn earlier(&self, name: &str) -> Option<(u64, AppSpec)> {
        let current = self.desired().live(name)?.0.version;
        let changes = self.read_history(|store| store.history_of(name), Some(name));
        self.earliest_below(current, changes)
    }

    /// Of `changes`, the newest below version `current` with a spec whose
    /// component is stored here.
    fn earliest_below(&self, current: u64, changes: Vec<Change>) -> Option<(u64, AppSpec)> {
        changes
            .into_iter()
            .filter(|c| c.version < current)
            .filter_map(|c| Some((c.version, c.spec?)))
            .filter(|(_, spec)| self.store.has_component(&spec.component))
            .max_by_key(|(version, _)| *version)
    }

    /// The history `read` gives, empty (and logged) if the store fails.
    fn read_history(
        &self,
        read: impl FnOnce(&crate::store::Store) -> anyhow::Result<Vec<Change>>,
        app: Option<&str>,
    ) -> Vec<Change> {
        read(&self.store).unwrap_or_else(|error| {
            tracing::warn!(app, error = format!("{error:#}"), "cannot read the history");
            Vec::new()
        })
    }

    /// Deploys the spec of `name`'s previous version again, as a new
    /// version (kept in the history as a rollback).
    pub(crate) async fn roll_back(&self, name: &str) -> Result<RolledBack, NodeError> {
        if self.desired().live(name).is_none() {
            return Err(NodeError::NoApp(name.to_string()));
        }
        let (to, spec) = self.earlier(name).ok_or_else(|| NodeError::NoEarlier {
            app: name.to_string(),
            node: self.mesh.me.clone(),
        })?;
        let deployment = self.deploy_as(spec, Kind::Rollback).await?;
        tracing::info!(
            app = name,
            version = deployment.record.version,
            to,
            "rolled back"
        );
        Ok(RolledBack { deployment, to })
    }
}
