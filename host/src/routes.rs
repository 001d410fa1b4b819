//! The routing table: by Host header first, then by the longest path
//! prefix. Rebuilt whole on every change and swapped in atomically.

use crate::ingress::{Resolved, Target};
use std::collections::HashMap;

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
