//! The deployed apps of this host, each with its current version, and the
//! routing table derived from them. A redeploy swaps the `App` atomically:
//! requests in flight keep the old one alive until they finish.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shoal_runtime::App;

use crate::ingress::{Resolve, Resolved};
use crate::routes::RouteTable;
use crate::spec::AppSpec;

/// One app as it serves now.
#[derive(Clone)]
pub(crate) struct Deployed {
    pub spec: AppSpec,
    pub version: u64,
    pub deployed_at: u64,
    pub app: Arc<App>,
}

#[derive(Default)]
pub(crate) struct Apps {
    apps: RwLock<BTreeMap<String, Deployed>>,
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

    /// Another app already serving the route or hostname `spec` asks for.
    pub(crate) fn conflict(&self, spec: &AppSpec) -> Option<String> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        apps.values().filter(|d| d.spec.name != spec.name).find_map(|other| {
            if spec.prefix().is_some() && spec.prefix() == other.spec.prefix() {
                Some(format!(
                    "route `{}` is already taken by app `{}`; choose another with `--route`, or remove it with `shoal rm {}`",
                    spec.prefix().unwrap_or_default(),
                    other.spec.name,
                    other.spec.name
                ))
            } else if spec.hostname.is_some() && spec.hostname == other.spec.hostname {
                Some(format!(
                    "hostname `{}` is already taken by app `{}`; choose another with `--hostname`",
                    spec.hostname.clone().unwrap_or_default(),
                    other.spec.name
                ))
            } else {
                None
            }
        })
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

    fn rebuild(&self, apps: &BTreeMap<String, Deployed>) {
        let table = RouteTable::new(
            apps.values()
                .map(|d| (d.spec.prefix(), d.spec.hostname.clone(), d.app.clone())),
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
