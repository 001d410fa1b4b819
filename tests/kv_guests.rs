//! Key-value state as guests see it on a real `shoal host` with SQLite:
//! increments and compare-and-swap linearizable through kv-probe's
//! routes, acknowledged guest writes surviving kill -9, apps that cannot
//! see each other's stores, a quota refusal that leaves nothing behind
//! while a neighbour keeps serving, and a WASIp3 (spin-sdk 7) and a
//! WASIp2 guest keeping their stores across a host restart. Loopback
//! only; every wait is bounded.
//!
//! `SHOAL_BIN=/path/to/shoal` points the same tests at another binary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use shoal_test_support::{Reply, Shoal, agent, guests, post, wait_until};

fn bin() -> String {
    shoal_test_support::shoal_bin!()
}

/// How long an app may take to be served after a deploy or a restart.
const APP_WAIT: Duration = Duration::from_secs(60);

/// `shoal deploy COMPONENT --name NAME ARGS...`, then waits until `ready`
/// (a path under the app) answers 200.
fn deploy(host: &Shoal, component: &str, name: &str, args: &[&str], ready: &str) {
    let mut full = vec!["deploy", component, "--name", name];
    full.extend_from_slice(args);
    host.cli_ok(&bin(), &full);
    wait_served(host, name, ready);
}

fn wait_served(host: &Shoal, name: &str, ready: &str) {
    let path = format!("/{name}{ready}");
    wait_until(APP_WAIT, &format!("`{name}` to serve {ready}"), || {
        try_send(&host.url(&path), "GET", b"").is_some_and(|(status, _)| status == 200)
    });
}

/// A kv-probe app granted `default` on one replica.
fn deploy_probe(host: &Shoal, name: &str, args: &[&str]) {
    let mut full = vec!["--kv", "default", "--replicas", "1"];
    full.extend_from_slice(args);
    deploy(host, guests::KV_PROBE, name, &full, "/config-all");
}

/// Sends one request without panicking on a dead host: `Some((status,
/// body))` if it was answered.
fn try_send(url: &str, method: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(body.to_vec())
        .unwrap();
    let mut response = agent().run(request).ok()?;
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().ok()?;
    Some((status, bytes))
}

/// Sends one request that must be answered.
fn send(url: &str, method: &str, body: &[u8]) -> (u16, String) {
    let (status, bytes) =
        try_send(url, method, body).unwrap_or_else(|| panic!("{method} {url} was not answered"));
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn ok(reply: Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// A 16 KiB value derived from `key` (a sha256 chain, in hex), so a torn
/// or swapped value is caught.
fn value_of(key: &str) -> String {
    let mut out = String::with_capacity(16 << 10);
    let mut digest = Sha256::digest(key.as_bytes());
    while out.len() < 16 << 10 {
        out.push_str(&hex::encode(digest));
        digest = Sha256::digest(digest);
    }
    out.truncate(16 << 10);
    out
}

/// A draft2 counter's value as the guest reads it (8 bytes, i64 LE).
fn counter(host: &Shoal, path: &str) -> i64 {
    let (status, bytes) = try_send(&host.url(path), "GET", b"").expect("GET the counter");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    i64::from_le_bytes(bytes.try_into().expect("a counter is 8 bytes"))
}

#[test]
fn guest_increments_and_compare_and_swap_are_linearizable() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    deploy_probe(&host, "count", &[]);
    let url = host.url("/count/incr/default/c");
    let start = Arc::new(Barrier::new(64));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let (url, start) = (url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                (0..50)
                    .map(|_| {
                        let (status, body) = send(&url, "POST", b"");
                        assert_eq!(status, 200, "{body}");
                        body.trim().parse::<i64>().expect("an increment's value")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<i64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    seen.sort_unstable();
    let duplicates = seen.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(duplicates, 0, "increments answered a value twice");
    assert_eq!(seen, (1..=3200).collect::<Vec<_>>(), "not exactly 1..=3200");
    assert_eq!(counter(&host, "/count/kv/default/c"), 3200);

    let start = Arc::new(Barrier::new(16));
    let appenders: Vec<_> = (0..16)
        .map(|id| {
            let url = host.url(&format!("/count/cas/default/list?append={id}"));
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let (status, body) = send(&url, "POST", b"");
                assert_eq!(status, 200, "{body}");
                body.trim().parse::<u32>().expect("the attempts")
            })
        })
        .collect();
    let attempts: u32 = appenders.into_iter().map(|a| a.join().unwrap()).sum();
    let list = ok(host.get("/count/kv/default/list"));
    let mut ids: Vec<u32> = list.split(',').map(|id| id.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..16).collect::<Vec<_>>(),
        "every id exactly once: {list}"
    );
    eprintln!("16 CAS appends took {attempts} attempts");
}

/// What the writers of the kill -9 test saw.
#[derive(Default)]
struct Seen {
    acked: Vec<String>,
    in_flight: Vec<String>,
    increments_acked: u64,
    increments_in_flight: u64,
}

/// One writer: PUTs unique keys (or increments `n` when `counting`)
/// through the guest until the host dies or `stop` is set.
fn writer(base: String, w: usize, counting: bool, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("w{w}-{i}");
        let answer = if counting {
            try_send(&format!("{base}/incr/default/n"), "POST", b"")
        } else {
            try_send(
                &format!("{base}/kv/default/{key}"),
                "PUT",
                value_of(&key).as_bytes(),
            )
        };
        let mut seen = seen.lock().unwrap();
        match (answer, counting) {
            (Some((200, _)), true) => seen.increments_acked += 1,
            (Some((200, _)), false) => seen.acked.push(key),
            (Some((status, body)), _) => {
                panic!(
                    "{key} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                )
            }
            (None, true) => return seen.increments_in_flight += 1,
            (None, false) => return seen.in_flight.push(key),
        }
    }
}

#[test]
fn acknowledged_guest_writes_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Shoal::host(&bin(), data.path(), &[]);
    deploy_probe(&host, "durable", &[]);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (base, seen, stop) = (host.url("/durable"), seen.clone(), stop.clone());
            std::thread::spawn(move || writer(base, w, w >= 12, seen, stop))
        })
        .collect();
    let started = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "guest writes to be acknowledged",
        || {
            let seen = seen.lock().unwrap();
            started.elapsed() > Duration::from_millis(1500)
                && seen.acked.len() >= 50
                && seen.increments_acked >= 20
        },
    );
    host.signal("KILL");
    assert!(
        host.wait_exit(Duration::from_secs(10)).is_some(),
        "kill -9 did not end the host"
    );
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    drop(host);
    let host = Shoal::host(&bin(), data.path(), &[]);
    wait_served(&host, "durable", "/config-all");
    let seen = seen.lock().unwrap();
    check_keys_read_back(&host, &seen);
    let n = counter(&host, "/durable/kv/default/n") as u64;
    assert!(
        seen.increments_acked <= n && n <= seen.increments_acked + seen.increments_in_flight,
        "counter {n}: {} increments acknowledged, {} in flight",
        seen.increments_acked,
        seen.increments_in_flight
    );
    eprintln!(
        "{} acknowledged guest writes and {} of {}(+{}) increments survived kill -9",
        seen.acked.len(),
        n,
        seen.increments_acked,
        seen.increments_in_flight
    );
}

/// Every acknowledged key reads back exactly through the guest; an
/// in-flight one is absent or exact.
fn check_keys_read_back(host: &Shoal, seen: &Seen) {
    let chunks: Vec<Vec<String>> = seen.acked.chunks(64).map(<[String]>::to_vec).collect();
    std::thread::scope(|scope| {
        for chunk in &chunks {
            scope.spawn(move || {
                for key in chunk {
                    let (status, body) =
                        send(&host.url(&format!("/durable/kv/default/{key}")), "GET", b"");
                    assert_eq!(status, 200, "acknowledged `{key}` was lost: {body}");
                    assert!(body == value_of(key), "acknowledged `{key}` came back torn");
                }
            });
        }
    });
    for key in &seen.in_flight {
        let (status, body) = send(&host.url(&format!("/durable/kv/default/{key}")), "GET", b"");
        assert!(
            (status, body.as_str()) == (404, "absent\n")
                || (status == 200 && body == value_of(key)),
            "in-flight `{key}` came back torn ({status})"
        );
    }
}

#[test]
fn one_app_cannot_read_another_apps_store() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    deploy_probe(&host, "a", &[]);
    deploy_probe(&host, "b", &[]);
    let (status, body) = send(&host.url("/a/kv/default/x"), "PUT", b"only-a");
    assert_eq!(status, 200, "{body}");
    // More than a page, so that a's listing hands out a cursor.
    let lines: String = (0..1000).map(|i| format!("k{i:04}=v\n")).collect();
    assert_eq!(
        ok(post(&host.url("/a/many/default"), lines.as_bytes())),
        "stored 1000\n"
    );
    let first: serde_json::Value = serde_json::from_str(&ok(host.get("/a/keys/default"))).unwrap();
    let cursor = first["cursor"]
        .as_str()
        .expect("a has a second page")
        .to_string();

    assert_eq!(
        send(&host.url("/b/kv/default/x"), "GET", b""),
        (404, "absent\n".into())
    );
    assert_eq!(ok(host.get("/b/exists/default/x")), "false");
    assert_eq!(
        ok(host.get("/b/keys/default")),
        r#"{"keys":[],"cursor":null}"#
    );
    let foreign = |host: &Shoal| host.get(&format!("/b/keys/default?cursor={cursor}"));
    let refused = foreign(&host);
    assert!(
        refused.status == 400 && refused.body.contains("another store"),
        "b listed with a's cursor before writing: {} {}",
        refused.status,
        refused.body
    );
    assert_eq!(send(&host.url("/b/kv/default/y"), "PUT", b"b's").0, 200);
    assert_eq!(
        ok(host.get("/b/keys/default")),
        r#"{"keys":["y"],"cursor":null}"#
    );
    let refused = foreign(&host);
    assert!(
        refused.status == 400 && refused.body.contains("another store"),
        "b listed with a's cursor: {} {}",
        refused.status,
        refused.body
    );
    let denied = host.get("/b/kv/secret/x");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "access-denied\n")
    );

    let (out, _) = host.cli_ok(&bin(), &["kv", "get", "a", "default", "x"]);
    assert_eq!(out, "only-a");
    let (status, _, err) = host.cli(&bin(), &["kv", "get", "b", "default", "x"]);
    assert!(!status.success() && err.contains("no key `x`"), "{err}");
    assert_eq!(ok(host.get("/a/kv/default/x")), "only-a", "a still has it");
}

#[test]
fn a_set_many_over_the_quota_leaves_none_of_its_keys_while_a_neighbour_serves() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    deploy(&host, guests::HELLO, "neighbour", &[], "/");
    deploy_probe(&host, "small", &["--kv-quota", "64KiB"]);
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let (url, stop) = (host.url("/neighbour/"), stop.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = send(&url, "GET", b"");
                assert_eq!(status, 200, "the neighbour answered {status}: {body}");
                answered += 1;
            }
            answered
        })
    };
    let value = "x".repeat(1024);
    let batch = |prefix: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{prefix}{i:02}={value}\n"))
            .collect()
    };
    let many = host.url("/small/many/default");
    assert_eq!(ok(post(&many, batch("fit", 48).as_bytes())), "stored 48\n");
    let over = post(&many, batch("over", 20).as_bytes());
    assert!(
        over.status == 400
            && over.body.contains("quota of 65536 bytes")
            && over.body.contains("--kv-quota"),
        "{} {}",
        over.status,
        over.body
    );
    for i in 0..20 {
        let (status, body) = send(
            &host.url(&format!("/small/kv/default/over{i:02}")),
            "GET",
            b"",
        );
        assert!(
            (status, body.as_str()) == (404, "absent\n"),
            "over{i:02} of the refused set-many was written ({status}, {} bytes)",
            body.len()
        );
    }
    assert_eq!(ok(host.get("/small/exists/default/fit47")), "true");
    let (out, _) = host.cli_ok(&bin(), &["kv", "ls", "small", "default"]);
    assert_eq!(out.lines().count(), 48, "only the batch that fit: {out}");
    assert_eq!(
        ok(post(&many, b"tiny=1\n")),
        "stored 1\n",
        "a write that fits still goes"
    );
    stop.store(true, Ordering::Relaxed);
    let answered = neighbour.join().unwrap();
    assert!(answered > 0, "the neighbour was never asked");
}

#[test]
fn a_p3_and_a_p2_guest_keep_their_stores_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Shoal::host(&bin(), data.path(), &[]);
    let grant = ["--kv", "default", "--replicas", "1"];
    deploy(
        &host,
        guests::COMPAT_SPIN_KV,
        "spin",
        &grant,
        "/variable?name=x",
    );
    deploy_probe(&host, "probe", &[]);
    assert_eq!(ok(host.get("/spin/fill?n=5")), "filled 5\n");
    assert_eq!(
        send(&host.url("/probe/kv/default/k00000"), "PUT", b"p2").0,
        200
    );
    both_see_their_own(&host);
    host.signal("TERM");
    assert!(
        host.wait_exit(Duration::from_secs(20)).is_some(),
        "SIGTERM did not end the host"
    );
    drop(host);
    let host = Shoal::host(&bin(), data.path(), &[]);
    wait_served(&host, "spin", "/variable?name=x");
    wait_served(&host, "probe", "/config-all");
    both_see_their_own(&host);
    let (out, _) = host.cli_ok(&bin(), &["kv", "get", "spin", "default", "k00004"]);
    assert_eq!(out, "v");
    assert_eq!(
        ok(host.get("/spin/fill?n=7")),
        "filled 7\n",
        "the P3 guest still writes"
    );
    assert_eq!(ok(host.get("/spin/count")), "7 keys, 7 distinct\n");
}

fn both_see_their_own(host: &Shoal) {
    assert_eq!(ok(host.get("/spin/count")), "5 keys, 5 distinct\n");
    assert_eq!(ok(host.get("/probe/kv/default/k00000")), "p2");
    assert_eq!(
        ok(host.get("/probe/keys/default")),
        r#"{"keys":["k00000"],"cursor":null}"#
    );
    let (out, _) = host.cli_ok(&bin(), &["kv", "get", "spin", "default", "k00000"]);
    assert_eq!(
        out, "v",
        "the P2 guest's write did not land in the P3 guest's store"
    );
}
