//! What a request resolves to: [`Resolve`] maps a host and path to a
//! [`Target`] (an app here, or one served elsewhere in the mesh), and
//! [`RouteTable`] answers it by Host header first, then by the longest
//! path prefix. Rebuilt whole on every change and swapped in atomically.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_runtime::App;

/// Who serves a route.
#[derive(Clone)]
pub(crate) enum Target {
    /// This node, with this app.
    Local(Arc<App>),
    /// Another node of the mesh: the app of this name, which answers
    /// within `deadline` (its spec's timeout).
    Elsewhere { app: Arc<str>, deadline: Duration },
}

/// Where a request goes.
pub(crate) struct Resolved {
    pub target: Target,
    /// A route prefix to strip from the path the guest sees.
    pub strip_prefix: Option<String>,
}

/// Maps a request's host and path to an app.
pub(crate) trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: Option<&str>, path: &str) -> Option<Resolved>;
}

/// Every request goes to one app, path unchanged (`shoal run`).
pub(crate) struct SingleApp(pub Arc<App>);

impl Resolve for SingleApp {
    fn resolve(&self, _host: Option<&str>, _path: &str) -> Option<Resolved> {
        Some(Resolved {
            target: Target::Local(self.0.clone()),
            strip_prefix: None,
        })
    }
}

/// An immutable snapshot of where requests go.
#[derive(Default)]
pub(crate) struct RouteTable {
    hosts: HashMap<String, Target>,
    /// Longest prefix first.
    prefixes: Vec<(String, Target)>,
}

impl RouteTable {
    pub(crate) fn new(
        entries: impl IntoIterator<Item = (Option<String>, Option<String>, Target)>,
    ) -> Self {
        let mut table = RouteTable::default();
        for (prefix, hostname, app) in entries {
            if let Some(host) = hostname {
                // The first entry wins a clash: callers pass them in a
                // deterministic order.
                table.hosts.entry(host).or_insert_with(|| app.clone());
            }
            if let Some(prefix) = prefix {
                table.prefixes.push((prefix, app));
            }
        }
        table
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        table
    }

    /// The app for `host` and `path`, and the prefix to strip from the path.
    pub(crate) fn resolve(&self, host: Option<&str>, path: &str) -> Option<Resolved> {
        if let Some(host) = host {
            let bare = strip_port(host).to_ascii_lowercase();
            if let Some(app) = self.hosts.get(&bare) {
                return Some(Resolved {
                    target: app.clone(),
                    strip_prefix: None,
                });
            }
        }
        self.prefixes.iter().find_map(|(prefix, app)| {
            let matches = prefix == "/"
                || path == prefix
                || (path.starts_with(prefix.as_str())
                    && path.as_bytes().get(prefix.len()) == Some(&b'/'));
            matches.then(|| Resolved {
                target: app.clone(),
                strip_prefix: (prefix != "/").then(|| prefix.clone()),
            })
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
