//! The chaos suite (issue 16): five real `shoal host`s, each in its own
//! network namespace joined to a bridge, under a steady load, while a
//! seeded schedule kills, freezes, partitions, isolates and replaces them
//! and deploys on both sides of a split; then a checker over the recorded
//! history proves nothing acknowledged was lost, every fault was
//! recovered from, and requests failed only inside fault windows.
//!
//! - `short_run` (in `cargo xtask test`): a fixed seed, one fault of each
//!   kind, about 60 s of schedule.
//! - `soak` (ignored; `cargo xtask chaos --minutes M --seed S`): random
//!   faults for `SHOAL_CHAOS_MINUTES` (default 10) from `SHOAL_CHAOS_SEED`
//!   (default: from the clock; always printed).
//!
//! Without namespaces (not root, no `ip`), the suite says so and runs the
//! faults that need no links cut; `SHOAL_CHAOS_NETNS=require` fails
//! instead, `=off` forces loopback. Two bugs it found are guarded by
//! the short run: a forwarding node answered 503 for an app whose holder
//! had moved to a state it had not pulled yet (`mesh/readiness.rs`,
//! `Seen`), and a node restarted on its old gossip address
//! once gossiped to its own dead incarnation and then refused every
//! datagram sealed for it (fixed in `mesh/transport/socket.rs`); every
//! short run restarts two nodes on their old addresses, so it guards that. Every run writes
//! `target/chaos/<seed>/` (timeline.svg, report.md, report.json,
//! history.csv). Set `SHOAL_BIN` to run it against another binary.

#[path = "chaos/check.rs"]
mod check;
#[path = "chaos/cluster.rs"]
mod cluster;
#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/load.rs"]
mod load;
#[path = "chaos/net.rs"]
mod net;
#[path = "chaos/report.rs"]
mod report;
#[path = "chaos/run.rs"]
mod run;

use std::time::{Duration, Instant};

use shoal_test_support::{guests, wait_until};

use check::History;
use cluster::Cluster;
use faults::{Kind, Step};
use load::{Clock, Load};
use net::Net;
use run::Runner;

const NODES: usize = 5;
/// The short run's seed.
const SHORT_SEED: u64 = 0x16;
/// Seeds that once found a bug, replayed as one-minute random runs in the
/// short run. The short run's own seed found the self-gossip bug (above)
/// and replays it on every run.
const REGRESSION_SEEDS: &[u64] = &[];

/// Namespaces if they can be made (and are wanted); what runs without.
fn network() -> Option<Net> {
    let wanted = std::env::var("SHOAL_CHAOS_NETNS").unwrap_or_default();
    if wanted == "off" {
        eprintln!("chaos: SHOAL_CHAOS_NETNS=off; running loopback-only faults");
        return None;
    }
    match net::probe().and_then(|()| Net::create(NODES)) {
        Ok(net) => Some(net),
        Err(why) if wanted == "require" => {
            panic!("chaos: network namespaces unavailable ({why}) and SHOAL_CHAOS_NETNS=require")
        }
        Err(why) => {
            eprintln!(
                "chaos: network namespaces unavailable ({why}); running loopback-only faults (no partition, isolation or split-brain deploy)"
            );
            None
        }
    }
}

/// Five hosts, started, each seeing all the others.
fn started(net: Option<Net>) -> Cluster {
    let mut cluster = Cluster::new(&shoal_test_support::shoal_bin!(), NODES, net);
    for k in 0..NODES {
        cluster.start(k);
    }
    for k in 0..NODES {
        wait_until(
            Duration::from_secs(60),
            "every node to see the others",
            || cluster.members(k) == NODES,
        );
    }
    cluster
}

/// Starts the cluster, runs `plan`'s steps under load, checks, reports.
fn chaos(seed: u64, replay: String, plan: impl FnOnce(bool) -> Vec<Step>) {
    let net = network();
    let netns = net.is_some();
    let steps = plan(netns);
    let mode = if netns { "netns" } else { "loopback" };
    eprintln!(
        "chaos: seed={seed:#x} mode={mode} faults={} (replay: {replay})",
        steps.len()
    );
    let mut cluster = started(net);
    let clock = Clock(Instant::now());
    let load = Load::start(&cluster.places, cluster.pids.clone(), clock);
    let hello = std::fs::read(guests::HELLO).unwrap();
    let mut runner = Runner::new(&mut cluster, clock, seed, hello);
    runner.setup(&load.streaks);
    let ready = clock.now();
    for step in &steps {
        runner.step(step, &load.streaks);
    }
    std::thread::sleep(Duration::from_secs(3));
    let end = clock.now();
    let (events, samples) = load.finish();
    let (finals, agreed) = runner.converge(Duration::from_secs(30));
    let forwarded = runner.forwarded();
    let history = History {
        nodes: NODES,
        events: events.into_iter().filter(|e| e.start >= ready).collect(),
        faults: runner.faults.clone(),
        ops: runner.ops.clone(),
        samples,
        finals,
        end,
        forwarded,
    };
    let mut figures = check::check(&history);
    if !agreed {
        figures.violations.push(format!(
            "the nodes did not agree on the apps within 30 s of the last heal: {:?}",
            history.finals
        ));
    }
    let skipped = Kind::ALL
        .into_iter()
        .filter(|k| !netns && k.needs_netns())
        .map(Kind::label)
        .collect();
    let run = report::Run {
        seed,
        mode,
        skipped,
        replay: replay.clone(),
    };
    let dir = report::write(&run, &history, &figures);
    eprintln!(
        "{}",
        std::fs::read_to_string(dir.join("report.md")).unwrap()
    );
    eprintln!("chaos: report in {}", dir.display());
    drop(runner);
    drop(cluster);
    fail_on(&figures.violations, seed, &replay, &dir);
}

/// Panics listing `violations`.
fn fail_on(violations: &[String], seed: u64, replay: &str, dir: &std::path::Path) {
    assert!(
        violations.is_empty(),
        "chaos run {seed:#x} broke {} promises (replay: {replay}; report in {}):\n{}",
        violations.len(),
        dir.display(),
        violations
            .iter()
            .map(|v| format!("- {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn short_run() {
    chaos(
        SHORT_SEED,
        "cargo test -p shoal-host --test chaos short_run".into(),
        |netns| faults::short(SHORT_SEED, NODES, netns),
    );
    for &seed in REGRESSION_SEEDS {
        let replay = format!("cargo xtask chaos --minutes 1 --seed {seed:#x}");
        chaos(seed, replay, |netns| faults::soak(seed, 1, NODES, netns));
    }
}

#[test]
#[ignore = "a soak of SHOAL_CHAOS_MINUTES minutes; run with `cargo xtask chaos`"]
fn soak() {
    let minutes: u32 = std::env::var("SHOAL_CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let seed = std::env::var("SHOAL_CHAOS_SEED")
        .ok()
        .and_then(|s| parse_seed(&s))
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            nanos as u64
        });
    let replay = format!("cargo xtask chaos --minutes {minutes} --seed {seed:#x}");
    chaos(seed, replay, |netns| {
        faults::soak(seed, minutes, NODES, netns)
    });
}

/// A seed in decimal or `0x` hex.
fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// A removal answers the stamp of the tombstone it recorded, which the
/// checker orders against concurrent deploys of the name (it answered
/// `{"removed": name}` only, so a removal could not be placed by the rule).
#[test]
fn a_removal_answers_its_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let bin = shoal_test_support::shoal_bin!();
    let host = shoal_test_support::Shoal::host(&bin, dir.path(), &["--name", "solo"]);
    for _ in 0..2 {
        host.cli_ok(&bin, &["deploy", guests::HELLO, "--name", "gone"]);
    }
    let reply = host.admin_send("DELETE", "/v1/apps/gone", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "removed": "gone", "version": 3, "origin": "solo" })
    );
}

/// A request a peer forwarded (it carries the hop header) for an app this
/// node does not route answers 503 with `Retry-After`, not 404: the soak
/// with seed 0x18ee22e41f4d62ed saw a 404 for a deployed app when a
/// forwarder sent a request to a holder's address just after that holder
/// was replaced by a fresh node that had not learned the app yet.
#[test]
fn a_forwarded_request_for_an_app_not_learned_yet_is_retried_not_404() {
    let dir = tempfile::tempdir().unwrap();
    let bin = shoal_test_support::shoal_bin!();
    let host = shoal_test_support::Shoal::host(&bin, dir.path(), &["--name", "fresh"]);
    let forwarded = shoal_test_support::agent()
        .get(host.url("/r2"))
        .header("x-shoal-hop", "n1")
        .call()
        .unwrap();
    assert_eq!(forwarded.status(), 503);
    assert_eq!(
        forwarded
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(host.get("/r2").status, 404);
}

/// The sweep removes the namespaces a dead run left (its pid is gone) and
/// keeps those of a live one.
#[test]
fn the_sweep_removes_what_a_dead_run_left() {
    // Above the kernel's largest pid (2^22), so never a live process.
    let dead = "shc-4194305-n0";
    let add = std::process::Command::new("ip")
        .args(["netns", "add", dead])
        .output();
    if !add.is_ok_and(|o| o.status.success()) {
        eprintln!("chaos: network namespaces unavailable; nothing to sweep");
        return;
    }
    let alive = format!("shc-{}-sweep", std::process::id());
    let listed = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::process::Command::new("ip")
        .args(["netns", "add", &alive])
        .status()
        .unwrap();
    net::sweep();
    let after = listed();
    std::process::Command::new("ip")
        .args(["netns", "del", &alive])
        .status()
        .unwrap();
    assert!(!after.contains(dead), "{after}");
    assert!(after.contains(&alive), "{after}");
}
