//! The deployed apps of this host, each with its current version, and the
//! routing table derived from them. A redeploy swaps the `App` atomically:
//! requests in flight keep the old one alive until they finish.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shoal_runtime::App;

use crate::routes::{Resolve, Resolved, RouteTable, Target};
use crate::spec::AppSpec;

/// One app as it serves now.
#[derive(Clone)]
pub(crate) struct Deployed {
    pub spec: AppSpec,
    pub version: u64,
    pub app: Arc<App>,
}

#[derive(Default)]
pub(crate) struct Apps {
    apps: RwLock<BTreeMap<String, Deployed>>,
    /// Apps of the mesh this node does not serve: their routes forward.
    elsewhere: RwLock<Vec<AppSpec>>,
    routes: RwLock<Arc<RouteTable>>,
}

impl Apps {
    pub(crate) fn get(&self, name: &str) -> Option<Deployed> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn list(&self) -> Vec<Deployed> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Adds or replaces an app and swaps in the new routes.
    pub(crate) fn install(&self, deployed: Deployed) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.insert(deployed.spec.name.clone(), deployed);
        self.rebuild(&apps);
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Deployed> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let removed = apps.remove(name);
        self.rebuild(&apps);
        removed
    }

    /// Stops serving `name` here but keeps its routes, now forwarding: in
    /// one swap, so no request finds the route missing.
    pub(crate) fn hand_over(&self, name: &str) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(deployed) = apps.remove(name) {
            let mut elsewhere = self.elsewhere.write().unwrap_or_else(|e| e.into_inner());
            elsewhere.retain(|spec| spec.name != name);
            elsewhere.push(deployed.spec);
        }
        self.rebuild(&apps);
    }

    /// Sets the apps served elsewhere in the mesh (if they changed).
    pub(crate) fn set_elsewhere(&self, specs: Vec<AppSpec>) {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        {
            let mut elsewhere = self.elsewhere.write().unwrap_or_else(|e| e.into_inner());
            if *elsewhere == specs {
                return;
            }
            *elsewhere = specs;
        }
        self.rebuild(&apps);
    }

    /// Routes of local apps and of apps served elsewhere, in name order
    /// (so every node settles a clash of routes the same way).
    fn rebuild(&self, apps: &BTreeMap<String, Deployed>) {
        let elsewhere = self.elsewhere.read().unwrap_or_else(|e| e.into_inner());
        let mut entries: Vec<(&str, Option<String>, Option<String>, Target)> = apps
            .values()
            .map(|d| {
                (
                    d.spec.name.as_str(),
                    d.spec.prefix(),
                    d.spec.hostname.clone(),
                    Target::Local(d.app.clone()),
                )
            })
            .collect();
        entries.extend(
            elsewhere
                .iter()
                .filter(|spec| !apps.contains_key(&spec.name))
                .map(|spec| {
                    (
                        spec.name.as_str(),
                        spec.prefix(),
                        spec.hostname.clone(),
                        Target::Elsewhere {
                            app: spec.name.as_str().into(),
                            deadline: spec.limits().timeout,
                        },
                    )
                }),
        );
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let table = RouteTable::new(
            entries
                .into_iter()
                .map(|(_, prefix, hostname, target)| (prefix, hostname, target)),
        );
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

impl Resolve for Apps {
    fn resolve(&self, host: Option<&str>, path: &str) -> Option<Resolved> {
        let table = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        table.resolve(host, path)
    }
}
