//! The report of a run, under `target/chaos/<seed>/` (`<seed>-loopback/`
//! without namespaces): `timeline.svg`
//! (successes and failures per node and app per second, faults shaded and
//! labelled, changes ticked), `report.json` and `report.md` (the figures),
//! and `history.csv` (every request).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::check::{Figures, History, median_max};
use crate::load::{APPS, Class};
use crate::run::Outcome;

/// What the report says about the run itself.
pub struct Run {
    pub seed: u64,
    pub mode: &'static str,
    pub skipped: Vec<&'static str>,
    pub replay: String,
}

/// `target/chaos/<seed>` of the workspace (`<seed>-loopback` without
/// namespaces).
pub fn dir(seed: u64, mode: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let name = match mode {
        "netns" => format!("{seed:#x}"),
        other => format!("{seed:#x}-{other}"),
    };
    target.join("chaos").join(name)
}

/// Writes every file; returns the directory.
pub fn write(run: &Run, history: &History, figures: &Figures) -> PathBuf {
    let dir = dir(run.seed, run.mode);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("timeline.svg"), timeline(history)).unwrap();
    let json = serde_json::to_string_pretty(&json(run, figures)).unwrap();
    std::fs::write(dir.join("report.json"), json).unwrap();
    std::fs::write(dir.join("report.md"), markdown(run, history, figures)).unwrap();
    let mut csv = String::from("node,app,start_ms,end_ms,status,class,retry_after\n");
    for e in &history.events {
        let _ = writeln!(
            csv,
            "n{},{},{},{},{},{},{}",
            e.node,
            APPS[e.app as usize],
            e.start,
            e.end,
            e.status,
            e.class.label(),
            e.retry_after
        );
    }
    std::fs::write(dir.join("history.csv"), csv).unwrap();
    dir
}

fn json(run: &Run, f: &Figures) -> serde_json::Value {
    let recovery: serde_json::Map<String, serde_json::Value> = f
        .recovery
        .iter()
        .map(|(kind, ms)| {
            let (median, max) = median_max(ms);
            let value =
                serde_json::json!({ "median_ms": median, "max_ms": max, "samples": ms.len() });
            (kind.label().to_string(), value)
        })
        .collect();
    let shares: serde_json::Map<String, serde_json::Value> = f
        .shares
        .iter()
        .map(|(kind, s)| {
            let value = serde_json::json!({
                "faults": s.faults, "requests": s.requests, "failed": s.failed,
                "failed_share": s.failed as f64 / s.requests.max(1) as f64,
                "requests_to_other_nodes": s.requests_elsewhere, "failed_on_other_nodes": s.failed_elsewhere,
                "failed_share_on_other_nodes": s.failed_elsewhere as f64 / s.requests_elsewhere.max(1) as f64,
                "by_class": s.by_class,
            });
            (kind.label().to_string(), value)
        })
        .collect();
    let resources: Vec<serde_json::Value> = f
        .resources
        .iter()
        .map(|r| {
            serde_json::json!({
                "node": format!("n{}", r.node), "incarnation": r.incarnation,
                "rss_first_mib": r.rss_first_mib, "rss_last_mib": r.rss_last_mib,
                "rss_slope_mib_per_min": r.rss_slope_mib_per_min,
                "fds_first": r.fds_first, "fds_max": r.fds_max,
            })
        })
        .collect();
    serde_json::json!({
        "seed": format!("{:#x}", run.seed), "mode": run.mode, "skipped": run.skipped,
        "replay": run.replay, "requests": f.requests, "failed": f.failed,
        "recovery": recovery, "failure_shares": shares,
        "failed_outside_windows": f.outside, "deploy_spread_503s": f.spread_503,
        "handover_tail_503s": f.handover_tail,
        "acknowledged": f.acked, "acknowledged_during_faults": f.acked_during_faults,
        "lost": f.lost, "lost_during_faults": f.lost_during_faults,
        "superseded": f.superseded, "indeterminate": f.indeterminate, "refused": f.refused,
        "hung": f.hung, "moved_503s": f.moved, "forwarded": f.forwarded, "resources": resources,
        "violations": f.violations,
    })
}

fn markdown(run: &Run, h: &History, f: &Figures) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Chaos run {:#x} ({})\n", run.seed, run.mode);
    let _ = writeln!(md, "Replay: `{}`", run.replay);
    if !run.skipped.is_empty() {
        let _ = writeln!(
            md,
            "\nSkipped without namespaces: {}",
            run.skipped.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\n{} requests, {} failed; {} faults; {} changes.\n",
        f.requests,
        f.failed,
        h.faults.len(),
        h.ops.len()
    );
    md.push_str("| fault | count | recovery median | recovery max | requests in windows | failed | share | share on nodes not hit |\n|---|---|---|---|---|---|---|---|\n");
    for (kind, share) in &f.shares {
        let (median, max) = median_max(f.recovery.get(kind).map_or(&[][..], |v| v));
        let _ = writeln!(
            md,
            "| {} | {} | {median} ms | {max} ms | {} | {} | {:.1}% | {:.2}% ({}/{}) |",
            kind.label(),
            share.faults,
            share.requests,
            share.failed,
            100.0 * share.failed as f64 / share.requests.max(1) as f64,
            100.0 * share.failed_elsewhere as f64 / share.requests_elsewhere.max(1) as f64,
            share.failed_elsewhere,
            share.requests_elsewhere
        );
    }
    let _ = writeln!(
        md,
        "\nChanges acknowledged: {} ({} during faults); lost: {} ({} during faults); superseded by the rule: {}; unanswered: {}; refused: {}.",
        f.acked,
        f.acked_during_faults,
        f.lost,
        f.lost_during_faults,
        f.superseded,
        f.indeterminate,
        f.refused
    );
    let _ = writeln!(
        md,
        "Failed outside fault windows: {} (and {} hand-over-tail 503s); deploy-spread 503s: {}; hung: {}; hop-guard 503s: {}; forwarded: {} (at most 2 per request).",
        f.outside, f.handover_tail, f.spread_503, f.hung, f.moved, f.forwarded
    );
    md.push_str(
        "\n| process | RSS first / last quarter | slope | fds first / max |\n|---|---|---|---|\n",
    );
    for r in &f.resources {
        let _ = writeln!(
            md,
            "| n{} #{} | {:.1} / {:.1} MiB | {:.2} MiB/min | {} / {} |",
            r.node,
            r.incarnation,
            r.rss_first_mib,
            r.rss_last_mib,
            r.rss_slope_mib_per_min,
            r.fds_first,
            r.fds_max
        );
    }
    md.push_str("\n## Violations\n\n");
    if f.violations.is_empty() {
        md.push_str("None.\n");
    }
    for v in &f.violations {
        let _ = writeln!(md, "- {v}");
    }
    md
}

const CELL: usize = 8;
const ROW: usize = 14;
const LEFT: usize = 80;
const TOP: usize = 40;

/// One row per node and app, one column per second.
fn timeline(h: &History) -> String {
    let seconds = (h.end / 1000 + 1) as usize;
    let rows = h.nodes * APPS.len();
    let (width, height) = (LEFT + seconds * CELL + 20, TOP + rows * ROW + 40);
    let mut cells = vec![(0u32, 0u32); rows * seconds];
    for e in &h.events {
        let (row, col) = (
            e.node as usize * APPS.len() + e.app as usize,
            (e.start / 1000) as usize,
        );
        let cell = &mut cells[row * seconds + col.min(seconds - 1)];
        cell.0 += 1;
        cell.1 += u32::from(e.class != Class::Ok);
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for row in 0..rows {
        let y = TOP + row * ROW;
        let label = format!("n{} {}", row / APPS.len(), APPS[row % APPS.len()]);
        let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{label}</text>", y + 10);
        for col in 0..seconds {
            let (sent, failed) = cells[row * seconds + col];
            let fill = match (sent, failed) {
                (0, _) => "#dddddd".to_string(),
                (_, 0) => "#3c9a4a".to_string(),
                (s, f) => format!("rgb(220,{},40)", 180 - 160 * f / s),
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{fill}\"><title>{label} {col}s: {failed}/{sent} failed</title></rect>",
                LEFT + col * CELL,
                CELL - 1,
                ROW - 2
            );
        }
    }
    for f in &h.faults {
        let x = LEFT + (f.start / 1000) as usize * CELL;
        let w = ((f.heal.saturating_sub(f.start)) / 1000 + 1) as usize * CELL;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"#4060ff\" fill-opacity=\"0.18\" stroke=\"#4060ff\"/>\n<text x=\"{x}\" y=\"{}\" fill=\"#2030a0\">{} {:?}</text>",
            TOP - 4,
            rows * ROW + 4,
            TOP - 26,
            f.kind.label(),
            f.nodes
        );
    }
    for op in &h.ops {
        let x = LEFT + (op.end / 1000) as usize * CELL + CELL / 2;
        let colour = if matches!(op.outcome, Outcome::Acked(_)) {
            "black"
        } else {
            "#c00000"
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{colour}\"><title>{} {} on n{}: {:?}</title></line>",
            TOP - 14,
            TOP - 6,
            op.kind.label(),
            op.name,
            op.node,
            op.outcome
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{}\">one column per second; green: all served, red: share failed, grey: none sent; blue: faults; ticks: changes (red: not acknowledged)</text>\n</svg>",
        height - 12
    );
    svg
}
