//! The mesh, end to end: real `shoal host` processes on loopback (distinct
//! ports, gossip on `:0`), joined with `--join`, killed with SIGKILL.
//! Each scenario reads as a script: start, join, deploy, kill, assert.
//! Every wait is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::LazyLock;

use shoal_test_support::{Mesh, Shoal, get, guests, wait_until};

#[path = "mesh/faults.rs"]
mod faults;
#[path = "mesh/load.rs"]
mod load;
use load::Load;

/// The binary under test (`SHOAL_BIN` names an older build to show a test
/// fails on it).
static SHOAL: LazyLock<String> = LazyLock::new(|| shoal_test_support::shoal_bin!());
/// Generous bound for anything the mesh must converge on.
const CONVERGE: Duration = Duration::from_secs(30);

/// `shoal keygen FILE`.
fn keygen(file: &Path) {
    let (status, _, stderr) = shoal_test_support::run_to_exit(
        &SHOAL,
        &["keygen", file.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stderr}");
}

fn members(host: &Shoal) -> usize {
    let health = admin_json(host, "/v1/health");
    health["members"].as_u64().unwrap_or(0) as usize
}

fn admin_json(host: &Shoal, path: &str) -> serde_json::Value {
    let reply = host.admin_get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

fn deploy(host: &Shoal, name: &str, extra: &[&str]) {
    let mut args = vec!["deploy", guests::HELLO, "--name", name];
    args.extend(extra);
    host.cli_ok(&SHOAL, &args);
}

/// The nodes placement puts `app` on, and those ready for it, as `host`
/// sees them.
fn placement(host: &Shoal, app: &str) -> (Vec<String>, Vec<String>) {
    let reply = host.admin_get(&format!("/v1/apps/{app}"));
    if reply.status == 404 {
        // Not learned yet.
        return (Vec::new(), Vec::new());
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    let view: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let names = |key: &str| -> Vec<String> {
        view[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    (names("nodes"), names("ready_on"))
}

fn index_of(mesh: &Mesh, name: &str) -> usize {
    mesh.index_of(name)
        .unwrap_or_else(|| panic!("no live host named {name}"))
}

#[test]
fn three_hosts_form_a_mesh_and_any_node_serves_any_app() {
    let mesh = Mesh::start(&SHOAL, 3, &[]);
    let (a, c) = (mesh.host(0), mesh.host(2));

    // Deployed on A, the app becomes known to every node and is served
    // through every node, whichever one placement picked.
    deploy(a, "hello", &[]);
    for host in mesh.live() {
        wait_until(
            CONVERGE,
            &format!("{} to serve /hello", host.name()),
            || host.get("/hello").status == 200,
        );
    }
    let (stdout, _) = c.cli_ok(&SHOAL, &["ls"]);
    assert!(stdout.contains("hello"), "{stdout}");
    let (nodes, _) = placement(c, "hello");
    assert_eq!(nodes.len(), 1, "{nodes:?}");

    // Replicas land on distinct nodes, and all of them get ready.
    deploy(c, "twice", &["--replicas", "2"]);
    wait_until(CONVERGE, "two ready replicas", || {
        let (nodes, ready) = placement(a, "twice");
        nodes.len() == 2
            && ready == {
                let mut sorted = nodes.clone();
                sorted.sort();
                sorted
            }
    });
    let (nodes, _) = placement(a, "twice");
    assert_ne!(nodes[0], nodes[1]);
    deploy(a, "everywhere", &["--replicas", "all"]);
    wait_until(CONVERGE, "`all` on three nodes", || {
        placement(c, "everywhere").1.len() == 3
    });

    // `shoal nodes` lists the three, live, with what they hold.
    let (stdout, _) = a.cli_ok(&SHOAL, &["nodes"]);
    for host in mesh.live() {
        assert!(stdout.contains(host.name()), "{stdout}");
    }
    assert_eq!(stdout.matches(" live ").count(), 3, "{stdout}");

    // A removal on one node propagates to all; its reply names the
    // tombstone's version and origin (what orders it against deploys).
    let known = admin_json(mesh.host(1), "/v1/apps/hello")["version"].clone();
    let reply = mesh
        .host(1)
        .admin_send("DELETE", "/v1/apps/hello", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let removed: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(removed["removed"], "hello", "{removed}");
    assert_eq!(removed["origin"], mesh.host(1).name(), "{removed}");
    assert_eq!(removed["version"], known.as_u64().unwrap() + 1, "{removed}");
    for host in mesh.live() {
        wait_until(
            CONVERGE,
            &format!("{} to stop serving /hello", host.name()),
            || host.get("/hello").status == 404,
        );
    }

    // Membership and forwarding show in /metrics.
    let metrics = a.admin_get("/metrics").body;
    assert!(
        metrics.contains("shoal_mesh_members{state=\"live\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_forwarded_requests_total"),
        "{metrics}"
    );
}

#[test]
fn a_killed_holder_is_replaced_and_its_return_fails_no_request() {
    let mut mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy(mesh.host(0), "solo", &[]);
    let holder = wait_for_holder(&mesh, 0, "solo");
    let h = index_of(&mesh, &holder);
    let survivor = (h + 1) % 3;
    wait_until(CONVERGE, "solo served through a survivor", || {
        mesh.host(survivor).get("/solo").status == 200
    });

    // Kill the holder: the survivors serve it again within 10 s.
    mesh.kill(h);
    let killed = Instant::now();
    wait_until(Duration::from_secs(20), "solo to be served again", || {
        mesh.live().all(|host| host.get("/solo").status == 200)
    });
    let recovery = killed.elapsed();
    eprintln!("failover: served again {recovery:?} after kill -9 of the holder");
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");

    // The accepting node's loss loses nothing either: every survivor still
    // knows the app (it was deployed on node 0, which may be the one killed).
    for host in mesh.live() {
        assert!(host.cli_ok(&SHOAL, &["ls"]).0.contains("solo"));
    }

    // Bring it back while requests keep flowing through the survivors:
    // placement moves back, and not one request fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = mesh.live().map(|host| host.url("/solo")).collect();
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut count = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for url in &urls {
                    let reply = get(url);
                    count += 1;
                    if reply.status != 200 {
                        failures.push(format!("{url}: {} {}", reply.status, reply.body));
                    }
                }
            }
            (count, failures)
        })
    };
    mesh.restart(h);
    mesh.wait_members(3);
    // Other changes spread while the app moves back (peers hold different
    // states for a moment, as in the soak that found the hand-over tail).
    for _ in 0..3 {
        deploy(mesh.host(survivor), "churn", &[]);
    }
    wait_until(CONVERGE, "the returning node to take its app back", || {
        let (nodes, ready) = placement(mesh.host(h), "solo");
        nodes == [holder.clone()] && ready == [holder.clone()]
    });
    // Past the hand-over: a 1 s linger, a 3 s drain, then the old holder
    // lets go.
    std::thread::sleep(Duration::from_secs(7));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (count, failures) = load.join().unwrap();
    eprintln!(
        "rejoin: {count} requests through the survivors, {} failed",
        failures.len()
    );
    assert!(count > 50, "{count}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(mesh.host(h).get("/solo").status, 200);
}

/// The node `app` is placed on, once one is ready, as host `i` sees it.
fn wait_for_holder(mesh: &Mesh, i: usize, app: &str) -> String {
    let mut holder = String::new();
    wait_until(CONVERGE, "a ready holder", || {
        let (nodes, ready) = placement(mesh.host(i), app);
        if nodes.len() == 1 && ready == nodes {
            holder = nodes[0].clone();
            true
        } else {
            false
        }
    });
    holder
}

#[test]
fn a_node_with_another_key_is_kept_out() {
    let mesh = Mesh::start(&SHOAL, 1, &[]);
    let a = mesh.host(0);
    // Its own data dir makes its own key: it cannot join.
    let dir = tempfile::tempdir().unwrap();
    let other_key = dir.path().join("other.key");
    keygen(&other_key);
    let data = dir.path().join("data");
    let intruder = Shoal::host(
        &SHOAL,
        &data,
        &[
            "--name",
            "intruder",
            "--cluster-key-file",
            other_key.to_str().unwrap(),
            "--join",
            &a.gossip_addr(),
        ],
    );
    wait_until(Duration::from_secs(10), "packets to be dropped", || {
        dropped(a) > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(members(a), 1);
    assert_eq!(members(&intruder), 1);
    let (stdout, _) = a.cli_ok(&SHOAL, &["nodes"]);
    assert!(!stdout.contains("intruder"), "{stdout}");
}

fn dropped(host: &Shoal) -> u64 {
    let metrics = host.admin_get("/metrics").body;
    metrics
        .lines()
        .filter(|l| l.starts_with("shoal_gossip_dropped_packets_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn joining_without_the_key_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = shoal_test_support::run_to_exit(
        &SHOAL,
        &[
            "host",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--gossip",
            "127.0.0.1:0",
            "--join",
            "127.0.0.1:9",
        ],
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(stderr.contains("--cluster-key-file"), "{stderr}");
    assert!(!Path::new(&dir.path().join("cluster.key")).exists());
}

/// How many apps `host` knows of.
fn apps_known(host: &Shoal) -> usize {
    admin_json(host, "/v1/apps").as_array().map_or(0, Vec::len)
}

/// A deploy on the holder makes it ahead of every other node until they
/// pull: a forwarder must keep sending the apps the holder already served
/// there, never answer 503 for them meanwhile.
#[test]
fn deploys_on_the_holder_under_load_never_503_on_forwarders() {
    let mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy(mesh.host(0), "hello", &[]);
    let holder = wait_for_holder(&mesh, 0, "hello");
    let h = index_of(&mesh, &holder);
    for host in mesh.live() {
        wait_until(
            CONVERGE,
            &format!("{} to serve /hello", host.name()),
            || host.get("/hello").status == 200,
        );
    }
    let urls = mesh
        .live()
        .filter(|host| host.name() != holder)
        .map(|host| host.url("/hello"))
        .collect();
    let load = Load::start(urls, Duration::from_millis(2));
    for i in 0..20 {
        deploy(mesh.host(h), &format!("fresh-{i:02}"), &[]);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_until(CONVERGE, "every node to know the 20 deploys", || {
        mesh.live().all(|host| apps_known(host) == 21)
    });
    std::thread::sleep(Duration::from_secs(1));
    let samples = load.finish();
    let count = samples.iter().map(Vec::len).sum::<usize>();
    let failures = load::failures(&samples);
    let (now_on, _) = placement(mesh.host(h), "hello");
    eprintln!(
        "deploys on the holder {holder} (hello now on {now_on:?}): {count} requests through the forwarders, {} failed",
        failures.len()
    );
    assert!(count > 500, "{count}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `host`'s count of forwarded requests with `outcome`.
fn forwarded(host: &Shoal, outcome: &str) -> u64 {
    let metrics = host.admin_get("/metrics").body;
    let line = format!("shoal_forwarded_requests_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in {metrics}"))
}

/// A forwarded request names the nodes it passed through: a node never
/// sends it back to one of them, never forwards it a third time, and
/// refuses one that already passed through itself (a loop), each with 503
/// and `Retry-After` at once.
#[test]
fn a_forwarded_request_never_loops() {
    let mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy(mesh.host(0), "solo", &[]);
    let holder = wait_for_holder(&mesh, 0, "solo");
    let h = index_of(&mesh, &holder);
    let (f, g) = (mesh.host((h + 1) % 3), mesh.host((h + 2) % 3));
    wait_until(CONVERGE, "solo served through a forwarder", || {
        f.get("/solo").status == 200
    });
    let agent = load::agent(Duration::from_secs(10));
    let ask = |hops: &str| {
        let asked = Instant::now();
        let mut reply = agent
            .get(f.url("/solo"))
            .header("x-shoal-hop", hops)
            .call()
            .unwrap();
        let body = reply.body_mut().read_to_string().unwrap();
        let retry = reply.headers().contains_key("retry-after");
        (reply.status().as_u16(), retry, body, asked.elapsed())
    };
    let sent = forwarded(f, "ok");
    // (A 503 while `f` waited for the holder's readiness counts too.)
    let unrouted = forwarded(f, "no_holder");
    // Through one node before: forwarded on, to the holder.
    let (status, _, body, _) = ask(g.name());
    assert_eq!(status, 200, "{body}");
    assert_eq!(forwarded(f, "ok"), sent + 1);
    let refused = [
        (holder.clone(), "has no ready instance"),
        (
            f.name().to_string(),
            "moved while this request was forwarded",
        ),
        (format!("{},{}", g.name(), holder), "moved while"),
    ];
    for (hops, why) in refused {
        let (status, retry, body, took) = ask(&hops);
        assert_eq!((status, retry), (503, true), "hops {hops}: {body}");
        assert!(body.contains(why), "hops {hops}: {body}");
        assert!(took < Duration::from_secs(1), "hops {hops}: {took:?}");
    }
    assert_eq!(
        forwarded(f, "ok"),
        sent + 1,
        "a refused request was forwarded"
    );
    assert_eq!(forwarded(f, "no_holder"), unrouted + 3);
}

/// A redeploy of an app (a new version) on a node that does not hold it:
/// while its holder installs the new version (compiling new bytes) it
/// still serves the old one, and forwarders keep sending it there, never
/// answering 503 meanwhile.
#[test]
fn redeploys_under_load_never_503_on_forwarders() {
    let mesh = Mesh::start(&SHOAL, 3, &[]);
    deploy(mesh.host(0), "hello", &[]);
    let holder = wait_for_holder(&mesh, 0, "hello");
    let h = index_of(&mesh, &holder);
    let others: Vec<usize> = (1..3).map(|k| (h + k) % 3).collect();
    for host in mesh.live() {
        wait_until(
            CONVERGE,
            &format!("{} to serve /hello", host.name()),
            || host.get("/hello").status == 200,
        );
    }
    let urls = others.iter().map(|&i| mesh.host(i).url("/hello")).collect();
    let load = Load::start(urls, Duration::from_millis(2));
    // Every other one with new bytes, which the holder must compile first.
    for round in 0..10 {
        let file = [guests::PROBE, guests::HELLO][round % 2];
        let host = mesh.host(others[round % 2]);
        host.cli_ok(&SHOAL, &["deploy", file, "--name", "hello"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until(CONVERGE, "every node to serve version 11", || {
        mesh.live().all(|host| {
            let view = admin_json(host, "/v1/apps/hello");
            view["version"] == 11 && view["ready_on"] == serde_json::json!([holder])
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    let samples = load.finish();
    let count = samples.iter().map(Vec::len).sum::<usize>();
    let failures = load::failures(&samples);
    eprintln!(
        "redeploys on the forwarders: {count} requests through them, {} failed",
        failures.len()
    );
    assert!(count > 500, "{count}");
    assert!(failures.is_empty(), "{failures:#?}");
}
