//! `GET /ui/api/overview`: every node and app of the mesh as this node
//! knows them, with the rates the gatherer has, and the recent changes.

use serde::Serialize;
use serde_json::Value;

use super::gather::{AppRate, State};
use crate::admin::views;
use crate::clock::unix_now_ms;
use crate::node::Node;

/// One app as the overview shows it.
#[derive(Serialize)]
struct AppRow {
    name: String,
    version: u64,
    route: Option<String>,
    hostname: Option<String>,
    replicas: String,
    wanted: usize,
    ready: usize,
    nodes: Vec<String>,
    ready_on: Vec<String>,
    req_per_s: Option<f64>,
    errors_per_s: Option<f64>,
    error_rate: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    kv_bytes: u64,
    kv_keys: u64,
    deployed_at: u64,
    can_roll_back: bool,
}

/// Changes the overview lists, newest first.
const EVENTS: usize = 50;

/// The overview, from what `node` knows and what the gatherer holds.
pub(crate) fn overview(node: &Node, state: &State) -> Value {
    let members = node.mesh.membership.members();
    let rates = state.rates(&members);
    let now = unix_now_ms();
    let mut nodes = serde_json::to_value(views::nodes(node)).unwrap_or_default();
    for row in nodes.as_array_mut().into_iter().flatten() {
        let name = row["name"].as_str().unwrap_or_default().to_string();
        let seen = state.nodes.get(&name);
        let figures = seen.and_then(|s| s.figures.as_ref());
        let rate = rates.nodes.get(&name).cloned().unwrap_or_default();
        let live = row["live"].as_bool().unwrap_or(false);
        let fields = [
            ("address", row["gossip"].clone()),
            ("version", figures.map(|f| f.version.clone()).into()),
            ("uptime_secs", figures.map(|f| f.uptime_secs).into()),
            (
                "req_per_s",
                figures.map(|_| live_rate(live, rate.rps)).into(),
            ),
            (
                "errors_per_s",
                figures.map(|_| live_rate(live, rate.eps)).into(),
            ),
            (
                "figures_age_ms",
                seen.filter(|_| figures.is_some())
                    .map(|s| now.saturating_sub(s.received_ms))
                    .into(),
            ),
        ];
        if let Some(row) = row.as_object_mut() {
            row.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
    }
    let earlier = node.can_roll_back_all();
    let apps: Vec<AppRow> = views::apps(node)
        .into_iter()
        .map(|view| {
            let rate = rates.apps.get(&view.name);
            let can_roll_back = earlier.contains(&view.name);
            app_row(view, rate, !state.nodes.is_empty(), can_roll_back)
        })
        .collect();
    serde_json::json!({
        "node": node.mesh.me,
        "version": env!("CARGO_PKG_VERSION"),
        "generated_at_ms": now,
        "nodes": nodes,
        "apps": apps,
        "events": events(node),
    })
}

fn live_rate(live: bool, rate: f64) -> f64 {
    if live { rate } else { 0.0 }
}

/// `view` with its rates: `None` until the gatherer read any node, zero
/// for an app nobody served since.
fn app_row(
    view: views::AppView,
    rate: Option<&AppRate>,
    gathered: bool,
    can_roll_back: bool,
) -> AppRow {
    let zero = AppRate::default();
    let rate = rate.or(gathered.then_some(&zero));
    AppRow {
        wanted: view.nodes.len(),
        ready: view.ready_on.len(),
        req_per_s: rate.map(|r| r.rps),
        errors_per_s: rate.map(|r| r.eps),
        error_rate: rate.map(|r| if r.rps > 0.0 { r.eps / r.rps } else { 0.0 }),
        p50_ms: rate.and_then(|r| r.p50_ms),
        p99_ms: rate.and_then(|r| r.p99_ms),
        can_roll_back,
        name: view.name,
        version: view.version,
        route: view.route,
        hostname: view.hostname,
        replicas: view.replicas,
        nodes: view.nodes,
        ready_on: view.ready_on,
        kv_bytes: view.kv_bytes,
        kv_keys: view.kv_keys,
        deployed_at: view.deployed_at,
    }
}

/// The recent deploys, removals and rollbacks this node saved, newest
/// first.
fn events(node: &Node) -> Vec<Value> {
    node.history(EVENTS)
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "at_ms": e.at_ms,
                "kind": e.kind,
                "app": e.app,
                "version": e.version,
                "origin": e.origin,
            })
        })
        .collect()
}
