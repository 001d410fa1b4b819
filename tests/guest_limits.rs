//! A greedy guest against its host: it cannot pin host memory past its
//! app's memory limit, hold more resources than a store allows, take every
//! instance slot, flood the logs or the reader's terminal, or starve
//! gossip until its node is declared dead.
//!
//! `SHOAL_BIN=/path/to/shoal` runs these against another binary (one
//! without these defences fails them). The tests take turns: the mesh test
//! spins every core, and the others measure memory.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_test_support::{Shoal, get, guests, run_to_exit, wait_for};

/// One test at a time.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn shoal() -> String {
    shoal_test_support::shoal_bin!()
}

/// `path` of a `shoal run` of the probe at `--memory 64MiB` answers 500 for
/// the memory limit, and the host's resident memory stays under 300 MB.
fn hoarding_is_stopped(path: &str) {
    let _turn = turn();
    let shoal = Shoal::run(
        &shoal(),
        guests::PROBE,
        &["--memory", "64MiB", "--timeout", "20s"],
    );
    assert_eq!(shoal.get("/").status, 200);
    let before = shoal.peak_rss_mib();
    let reply = shoal.get(path);
    let peak = shoal.peak_rss_mib();
    eprintln!(
        "{path}: {} {:?} in {:?}; host peak RSS {before} MiB before, {peak} MiB after",
        reply.status, reply.body, reply.elapsed
    );
    assert_eq!(reply.status, 500, "{path}: {}", reply.body);
    assert!(
        reply
            .body
            .contains("exceeded its memory limit of 67108864 bytes"),
        "{path}: {}",
        reply.body
    );
    assert!(peak < 300, "host peak RSS {peak} MiB");
    // The host goes on serving.
    assert_eq!(shoal.get("/").status, 200);
}

#[test]
fn a_guest_hoarding_header_fields_gets_500_and_host_memory_stays_bounded() {
    hoarding_is_stopped("/fields?mb=512");
}

#[test]
fn a_guest_hoarding_unsent_bodies_gets_500_and_host_memory_stays_bounded() {
    hoarding_is_stopped("/bodies?n=512");
}

#[test]
fn a_store_holds_at_most_16384_resources_and_64_kib_per_fields() {
    let _turn = turn();
    let shoal = Shoal::run(&shoal(), guests::PROBE, &["--timeout", "20s"]);
    let under = shoal.get("/entries?n=16000");
    assert_eq!(under.status, 200, "{}", under.body);
    let over = shoal.get("/entries?n=20000");
    assert_eq!(over.status, 500, "{}", over.body);
    assert!(
        over.body
            .contains("crashed: it holds more than 16384 resources at once"),
        "{}",
        over.body
    );
    assert!(
        shoal
            .wait_for_log("resource table has no free keys", Duration::from_secs(5))
            .is_some()
    );
    assert_eq!(shoal.get("/field?kb=60").body, "accepted\n");
    // wasmtime-wasi-http traps a guest whose fields grow past the limit.
    let big = shoal.get("/field?kb=100");
    assert_eq!(big.status, 500, "{}", big.body);
    assert!(big.body.contains("fields exceeds limit"), "{}", big.body);
}

#[test]
fn one_app_cannot_take_every_instance_slot_of_its_host() {
    let _turn = turn();
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&shoal(), data.path(), &["--max-instances", "8"]);
    let (status, _, stderr) = host.cli(
        &shoal(),
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "greedy",
            "--max-concurrency",
            "8",
        ],
    );
    assert!(!status.success(), "a deploy taking every slot was accepted");
    assert!(
        stderr.contains("over the 6 instances this host gives one app")
            && stderr.contains("--max-app-concurrency"),
        "{stderr}"
    );
    host.cli_ok(
        &shoal(),
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "greedy",
            "--max-concurrency",
            "6",
            "--timeout",
            "4s",
        ],
    );
    host.cli_ok(
        &shoal(),
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "other",
            "--max-concurrency",
            "2",
        ],
    );
    let spinning: Vec<_> = (0..8)
        .map(|_| {
            let url = host.url("/greedy/spin");
            std::thread::spawn(move || get(&url).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Two slots stay for other apps however many requests the greedy one has.
    let other = host.get("/other");
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(
        other.elapsed < Duration::from_secs(2),
        "took {:?}",
        other.elapsed
    );
    // Six run to their deadline; two wait for a slot of the six and give up.
    for spin in spinning {
        let status = spin.join().unwrap();
        assert!(status == 504 || status == 503, "{status}");
    }
}

/// A host serving the probe as app `chatty`.
fn chatty_host(data: &Path) -> Shoal {
    let host = Shoal::host(&shoal(), data, &[]);
    host.cli_ok(&shoal(), &["deploy", guests::PROBE, "--name", "chatty"]);
    host
}

#[test]
fn guest_log_lines_are_rate_limited_per_app() {
    let _turn = turn();
    let data = tempfile::tempdir().unwrap();
    let host = chatty_host(data.path());
    assert_eq!(host.get("/chatty/flood?n=5000").status, 200);
    // The budget refills; the next lines say how many went.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(host.get("/chatty/log").status, 200);
    let (stdout, _) = host.cli_ok(&shoal(), &["logs", "chatty"]);
    let flood = stdout.lines().filter(|l| l.contains("flood line")).count();
    let dropped: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.split("[shoal] ").nth(1)?.split_once(" lines dropped"))
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    eprintln!("{flood} of 5000 flood lines kept; notices of {dropped:?} dropped");
    assert!(flood <= 400, "{flood} flood lines kept");
    assert!(!dropped.is_empty(), "no drop notice in:\n{stdout}");
    assert!(dropped.len() <= 5, "{} notices", dropped.len());
    assert_eq!(
        flood as u64 + dropped.iter().sum::<u64>(),
        5000,
        "every line is either kept or counted"
    );
    assert!(stdout.contains("line to stdout"), "a later line was lost");
}

#[test]
fn shoal_logs_escapes_terminal_control_characters() {
    let _turn = turn();
    let data = tempfile::tempdir().unwrap();
    let host = chatty_host(data.path());
    assert_eq!(host.get("/chatty/ansi").status, 200);
    let (stdout, _) = host.cli_ok(&shoal(), &["logs", "chatty"]);
    assert!(
        !stdout.contains(['\u{1b}', '\r', '\u{7}']),
        "control characters reached the terminal: {stdout:?}"
    );
    assert!(
        stdout.contains("\\x1b[31mred\\x1b[0m\\rrewritten \\x1b]0;title\\x07 end"),
        "the escaped line is missing: {stdout:?}"
    );
}

/// How long the mesh test keeps its guests spinning.
const SPIN_FOR: Duration = Duration::from_secs(30);
/// Requests spinning at once.
const SPINNERS: usize = 200;

#[test]
fn a_node_whose_guests_spin_on_every_core_is_never_declared_dead() {
    let _turn = turn();
    let bin = shoal();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("cluster.key");
    let (status, _, stderr) = run_to_exit(
        &bin,
        &["keygen", key.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stderr}");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut hosts: Vec<Shoal> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let seed = hosts.first().map(Shoal::gossip_addr);
        hosts.push(start_member(&bin, dir.path(), &key, i, seed));
    }
    wait_for(
        Duration::from_secs(30),
        "three live members everywhere",
        || hosts.iter().all(|h| members(h) == Some(3)).then_some(()),
    );
    hosts[0].cli_ok(
        &bin,
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "spin",
            "--timeout",
            "6s",
            "--memory",
            "16MiB",
            "--max-concurrency",
            "200",
        ],
    );
    let busy = wait_for(Duration::from_secs(30), "the app to be ready", || {
        hosts
            .iter()
            .position(|h| h.get("/spin/hello").status == 200 && serves(h, "spin"))
    });
    eprintln!("{} serves the spinning guests", hosts[busy].name());

    let done = AtomicBool::new(false);
    let lowest: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(3)).collect();
    let timeouts = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for (host, lowest) in hosts.iter().zip(&lowest) {
            let done = &done;
            scope.spawn(move || watch_members(host, lowest, done));
        }
        let started = Instant::now();
        let spinners: Vec<_> = (0..SPINNERS)
            .map(|_| {
                let (url, timeouts) = (hosts[busy].url("/spin/spin"), &timeouts);
                scope.spawn(move || spin_until(&url, started + SPIN_FOR, timeouts))
            })
            .collect();
        for spinner in spinners {
            spinner.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let lowest: Vec<usize> = lowest.iter().map(|l| l.load(Ordering::Relaxed)).collect();
    let timeouts = timeouts.load(Ordering::Relaxed);
    eprintln!(
        "{timeouts} spinning requests timed out; fewest live members seen per node: {lowest:?}"
    );
    assert!(
        timeouts as usize >= SPINNERS,
        "only {timeouts} spinning requests ran to their deadline"
    );
    assert_eq!(
        lowest,
        [3, 3, 3],
        "a node saw a member die under guest load"
    );
}

fn start_member(bin: &str, dir: &Path, key: &Path, i: usize, seed: Option<String>) -> Shoal {
    let name = format!("node-{}", (b'a' + i as u8) as char);
    let mut args = vec![
        "--name",
        &name,
        "--cluster-key-file",
        key.to_str().unwrap(),
        "--max-instances",
        "300",
        "--max-memory",
        "64MiB",
    ];
    if let Some(seed) = &seed {
        args.extend(["--join", seed]);
    }
    Shoal::host(bin, dir, &args)
}

/// Live members `host` counts, if it answers within 2 s.
fn members(host: &Shoal) -> Option<usize> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut reply = agent
        .get(&format!("{}/v1/health", host.admin_url()))
        .call()
        .ok()?;
    let health: serde_json::Value =
        serde_json::from_str(&reply.body_mut().read_to_string().ok()?).ok()?;
    health["members"].as_u64().map(|n| n as usize)
}

/// Whether `host` serves `app` itself.
fn serves(host: &Shoal, app: &str) -> bool {
    let reply = host.admin_get(&format!("/v1/apps/{app}"));
    let view: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    view["nodes"]
        .as_array()
        .is_some_and(|nodes| nodes.iter().any(|n| n.as_str() == Some(host.name())))
}

/// Polls `host`'s live members every 100 ms until `done`, keeping the
/// fewest it counted; a host that does not answer counts as seeing none.
fn watch_members(host: &Shoal, lowest: &AtomicUsize, done: &AtomicBool) {
    let started = Instant::now();
    while !done.load(Ordering::Relaxed) {
        let seen = members(host).unwrap_or(0);
        if seen < 3 {
            eprintln!(
                "{} counted {seen} live members at {:?}",
                host.name(),
                started.elapsed()
            );
        }
        lowest.fetch_min(seen, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends spinning requests to `url`, one after another, as long as one
/// can end (at its 6 s deadline) by `until`; counts those that timed out.
fn spin_until(url: &str, until: Instant, timeouts: &AtomicU32) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    while Instant::now() + Duration::from_secs(6) <= until {
        if let Ok(reply) = agent.get(url).call()
            && reply.status() == 504
        {
            timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
}
