//! The dashboard's data, end to end: real `shoal host` processes on
//! loopback, the figures each gathers from its peers over the sealed peer
//! API, read through the dashboard's session (the login link of
//! `POST /v1/ui/login`) as the page reads them: the overview and the two
//! event streams. Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_test_support::{Mesh, Shoal, guests, wait_for, wait_until};

static SHOAL: LazyLock<String> = LazyLock::new(|| shoal_test_support::shoal_bin!());
/// Bound for anything the mesh or the gatherer must get to.
const CONVERGE: Duration = Duration::from_secs(30);

/// A client that follows no redirect (the login answers 303 + cookie).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A dashboard session on one host: its cookie.
struct Session {
    base: String,
    cookie: String,
}

impl Session {
    /// Logs in as `shoal ui` does: asks for a link, follows it once.
    fn login(host: &Shoal) -> Session {
        let reply = host.admin_send("POST", "/v1/ui/login", "application/json", b"");
        assert_eq!(reply.status, 200, "POST /v1/ui/login: {}", reply.body);
        let link: Value = serde_json::from_str(&reply.body).unwrap();
        let url = link["url"].as_str().expect("a login url").to_string();
        let response = agent().get(&url).call().expect("GET the login link");
        assert_eq!(response.status().as_u16(), 303, "the login link");
        let set = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_string();
        let cookie = set.split(';').next().unwrap().trim().to_string();
        assert!(cookie.starts_with("shoal_session="), "{set}");
        Session {
            base: host.admin_url(),
            cookie,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = agent()
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call()
            .expect("GET from the dashboard");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    }

    fn overview(&self) -> Value {
        let (status, body) = self.get("/ui/api/overview");
        assert_eq!(status, 200, "overview: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Follows the event stream at `path`.
    fn events(&self, path: &str) -> Events {
        let response = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .build()
            .new_agent()
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call()
            .expect("GET an event stream");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let kind = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(kind, "text/event-stream", "{path}");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            let mut name = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let value = serde_json::from_str(data).expect("event data is JSON");
                    if tx.send((name.clone(), value)).is_err() {
                        return;
                    }
                }
            }
        });
        Events(rx)
    }
}

/// The events of a stream, as they come.
struct Events(Receiver<(String, Value)>);

impl Events {
    /// The next event named `name` that `pass` accepts, within `within`.
    fn until(&self, within: Duration, what: &str, pass: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok((name, value)) if pass(&name, &value) => return value,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no {what} within {within:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("the stream ended before {what}"),
            }
        }
    }
}

fn deploy_probe(host: &Shoal, name: &str) {
    host.cli_ok(
        &SHOAL,
        &["deploy", guests::PROBE, "--name", name, "--replicas", "1"],
    );
}

/// The one node `viewer` sees ready to serve `app`.
fn holder(viewer: &Shoal, app: &str) -> String {
    wait_for(CONVERGE, "the app to be ready somewhere", || {
        let reply = viewer.admin_get(&format!("/v1/apps/{app}"));
        let view: Value = serde_json::from_str(&reply.body).ok()?;
        let ready = view["ready_on"].as_array()?;
        Some(ready.first()?.as_str()?.to_string()).filter(|_| ready.len() == 1)
    })
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows}"))
}

/// Requests to `host`'s ingress in a thread, until the returned flag drops.
fn load(host: &Shoal, path: &str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let url = host.url(path);
    let on = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let running = on.clone();
    std::thread::spawn(move || {
        let agent = agent();
        while running.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = agent.get(&url).call();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    on
}

#[test]
fn the_peer_figures_route_is_refused_without_the_cluster_key() {
    let mesh = Mesh::start(&SHOAL, 1, &[]);
    let url = format!("{}/v1/peer/figures?after=0", mesh.host(0).admin_url());
    for token in [None, Some("00"), Some("not a token")] {
        let mut request = agent().get(&url);
        if let Some(token) = token {
            request = request.header("x-shoal-peer", token);
        }
        let mut response = request.call().unwrap();
        let body = response.body_mut().read_to_string().unwrap();
        assert_eq!(response.status().as_u16(), 401, "{token:?}: {body}");
        assert!(body.contains("peer request refused"), "{body}");
    }
}

#[test]
fn the_overview_and_stream_show_every_node_its_rates_and_a_death() {
    let mut mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy_probe(mesh.host(0), "probe");
    let served_by = holder(mesh.host(0), "probe");
    let others: Vec<usize> = (0..3)
        .filter(|&i| mesh.host(i).name() != served_by)
        .collect();
    let (viewer, victim) = (others[0], others[1]);
    let server = mesh.index_of(&served_by).unwrap();
    let session = Session::login(mesh.host(viewer));
    let stream = session.events("/ui/api/stream");
    stream.until(CONVERGE, "the history event", |name, v| {
        name == "history" && v["samples"].is_array()
    });
    let running = load(mesh.host(server), "/probe/");
    let overview = wait_for(CONVERGE, "req/s > 0 gathered from the holder", || {
        let overview = session.overview();
        let rps = row(&overview["apps"], "probe")["req_per_s"].as_f64()?;
        Some(overview).filter(|_| rps > 0.0)
    });
    let nodes = overview["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{overview}");
    assert!(nodes.iter().all(|n| n["live"] == true), "{overview}");
    assert!(nodes.iter().all(|n| n["version"].is_string()), "{overview}");
    let serving = row(&overview["nodes"], &served_by);
    assert!(serving["req_per_s"].as_f64().unwrap() > 0.0, "{overview}");
    assert_eq!(
        row(&overview["nodes"], mesh.host(viewer).name())["me"],
        true
    );
    let app = row(&overview["apps"], "probe");
    assert!(app["p50_ms"].as_f64().is_some(), "{app}");
    assert_eq!(app["ready_on"], serde_json::json!([served_by]), "{app}");
    assert_eq!(app["can_roll_back"], false, "one version only: {app}");
    let events = overview["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "deploy" && e["app"] == "probe"),
        "{overview}"
    );

    let dead = mesh.host(victim).name().to_string();
    let killed = Instant::now();
    mesh.kill(victim);
    stream.until(CONVERGE, "a sample with the killed node dead", |name, v| {
        name == "sample" && v["nodes"][&dead]["live"] == false
    });
    let noticed = killed.elapsed();
    for _ in 0..2 {
        let sample = stream.until(
            Duration::from_secs(5),
            "a sample after the death",
            |n, _| n == "sample",
        );
        assert!(
            sample["apps"]["probe"]["rps"].as_f64().unwrap() > 0.0,
            "{sample}"
        );
        assert_eq!(sample["nodes"][&dead]["rps"], 0.0, "{sample}");
    }
    let overview = session.overview();
    assert_eq!(row(&overview["nodes"], &dead)["live"], false, "{overview}");
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    eprintln!("the dashboard saw {dead} dead {noticed:?} after the kill");
}

#[test]
fn a_guest_line_printed_on_one_node_reaches_the_logs_stream_of_another() {
    let mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy_probe(mesh.host(0), "chatty");
    let served_by = holder(mesh.host(0), "chatty");
    let viewer = (0..3).find(|&i| mesh.host(i).name() != served_by).unwrap();
    let server = mesh.index_of(&served_by).unwrap();
    let session = Session::login(mesh.host(viewer));
    let (status, body) = session.get("/ui/api/logs/nobody");
    assert_eq!(status, 404, "{body}");
    let logs = session.events("/ui/api/logs/chatty");
    let reply = mesh.host(server).get("/chatty/log");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let line = logs.until(CONVERGE, "the guest's line", |name, v| {
        name == "line" && v["text"] == "stdout line to stdout"
    });
    assert_eq!(line["node"], served_by.as_str(), "{line}");
    assert!(line["seq"].as_u64().unwrap() > 0, "{line}");
    assert!(line["at_ms"].as_u64().unwrap() > 0, "{line}");
    // A second line comes after it, in order.
    mesh.host(server).get("/chatty/log");
    let next = logs.until(CONVERGE, "the next line", |name, v| {
        name == "line" && v["text"] == "stdout line to stdout"
    });
    assert!(
        next["seq"].as_u64() > line["seq"].as_u64(),
        "{line} then {next}"
    );
}

/// `n` hosts joined in one mesh (`tests/support`'s `Mesh` names 26 at
/// most), each seeing all `n` live; their dirs live as long as the first
/// value returned.
fn many_hosts(n: usize) -> (tempfile::TempDir, Vec<Shoal>) {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("cluster.key");
    let (status, _, stderr) = shoal_test_support::run_to_exit(
        &SHOAL,
        &["keygen", key.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stderr}");
    let mut hosts: Vec<Shoal> = Vec::new();
    for i in 0..n {
        let name = format!("n{i:03}");
        let mut args = vec!["--name", &name, "--cluster-key-file", key.to_str().unwrap()];
        let seed = hosts.first().map(|h| h.gossip_addr());
        if let Some(seed) = &seed {
            args.extend(["--join", seed]);
        }
        hosts.push(Shoal::host(&SHOAL, &root.path().join(&name), &args));
    }
    for host in [&hosts[0], &hosts[n - 1]] {
        wait_until(CONVERGE * 4, "every host to see every other", || {
            let health = host.admin_get("/v1/health");
            let health: Value = serde_json::from_str(&health.body).unwrap_or_default();
            health["members"].as_u64() == Some(n as u64)
        });
    }
    (root, hosts)
}

/// The size of the `history` event a new stream starts with.
fn history_size(session: &Session) -> usize {
    let stream = session.events("/ui/api/stream");
    let history = stream.until(CONVERGE, "the history", |name, _| name == "history");
    history.to_string().len()
}

/// CPU time `pid` has used (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the name: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, 100 a second on every Linux ABI.
    Duration::from_millis(ticks * 10)
}

/// The CPU `pid` uses over `span`, as a fraction of one core.
fn cpu_share(pid: u32, span: Duration) -> f64 {
    let before = cpu_time(pid);
    std::thread::sleep(span);
    (cpu_time(pid) - before).as_secs_f64() / span.as_secs_f64()
}

/// What the dashboard costs on a large mesh (`SHOAL_UI_NODES` hosts, 100
/// unless set): the viewer's CPU with the gatherer running against idle,
/// a polled peer's, and the sizes of what the page reads. Run by hand:
/// `cargo test -p shoal-host --test ui_data -- --ignored --nocapture`.
#[test]
#[ignore = "starts a hundred hosts; run by hand to measure"]
fn the_gatherer_stays_cheap_at_a_hundred_nodes() {
    let n: usize = std::env::var("SHOAL_UI_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (_dir, hosts) = many_hosts(n);
    deploy_probe(&hosts[0], "probe");
    let served_by = holder(&hosts[0], "probe");
    let server = hosts.iter().find(|h| h.name() == served_by).unwrap();
    let running = load(server, "/probe/");
    let (viewer, peer) = (&hosts[0], &hosts[n - 1]);
    let span = Duration::from_secs(15);
    let idle = (cpu_share(viewer.pid(), span), cpu_share(peer.pid(), span));
    let session = Session::login(viewer);
    let stream = session.events("/ui/api/stream");
    let overview = wait_for(CONVERGE * 2, "figures of every node", || {
        let overview = session.overview();
        let nodes = overview["nodes"].as_array()?;
        let all = nodes.len() == n && nodes.iter().all(|n| n["version"].is_string());
        Some(overview).filter(|_| all)
    });
    let busy = (cpu_share(viewer.pid(), span), cpu_share(peer.pid(), span));
    let sample = stream.until(CONVERGE, "a sample", |name, _| name == "sample");
    let sizes = (
        session.get("/ui/api/overview").1.len(),
        sample.to_string().len(),
    );
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "viewer peak RSS {} MiB, the history event after {} s: {} bytes",
        viewer.peak_rss_mib(),
        span.as_secs() * 2,
        history_size(&session),
    );
    eprintln!(
        "{n} nodes: viewer CPU {:.1}% idle, {:.1}% gathering; a polled peer {:.1}% idle, {:.1}% polled; overview {} bytes, one sample {} bytes ({} for 300)",
        idle.0 * 100.0,
        busy.0 * 100.0,
        idle.1 * 100.0,
        busy.1 * 100.0,
        sizes.0,
        sizes.1,
        sizes.1 * 300,
    );
    assert_eq!(overview["nodes"].as_array().unwrap().len(), n);
    assert!(
        busy.0 - idle.0 < 0.10,
        "the gatherer costs over a tenth of a core"
    );
    assert!(sizes.0 < 256 << 10, "the overview is over 256 KiB");
}
