//! Key-value state from the host's side, end to end: real `shoal host` and
//! `shoal run` processes on loopback, driven through the admin API and the
//! CLI (`shoal kv`, `ls`, `rm`, `deploy`). Durability through kill -9 under
//! concurrent writers, group commit seen in `/metrics`, operator commands
//! and their token rules, `rm`/`rm --purge`, quotas and limits that name
//! themselves, secrets that no view shows, and where `shoal run` keeps its
//! state. (What guests see of it is tested with the KV guests.) Every wait
//! is bounded.
//!
//! `SHOAL_BIN=/path/to/shoal` points the same tests at another binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use shoal_test_support::{Reply, Shoal, agent, guests, run_to_exit_env, wait_until};

#[path = "kv/run_state.rs"]
mod run_state;

fn bin() -> String {
    shoal_test_support::shoal_bin!()
}

fn key_path(app: &str, store: &str, key: &str) -> String {
    format!("/v1/kv/{app}/{store}/{key}")
}

fn put(host: &Shoal, app: &str, key: &str, value: &[u8]) -> Reply {
    host.admin_send(
        "PUT",
        &key_path(app, "default", key),
        "application/octet-stream",
        value,
    )
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

/// Sends one PUT without panicking on a dead host: `Some(status)` if it
/// was answered.
fn try_put(admin: &str, token: &str, app: &str, key: &str, value: &str) -> Option<u16> {
    let request = ureq::http::Request::builder()
        .method("PUT")
        .uri(format!("{admin}{}", key_path(app, "default", key)))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/octet-stream")
        .body(value.as_bytes().to_vec())
        .unwrap();
    agent().run(request).ok().map(|r| r.status().as_u16())
}

/// A metric's value in a `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in /metrics:\n{text}"))
}

#[test]
fn acknowledged_writes_survive_kill_9_under_concurrent_writers() {
    let data = tempfile::tempdir().unwrap();
    let mut host = Shoal::host(&bin(), data.path(), &[]);
    let (admin, token) = (host.admin_url(), host.token());
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let in_flight = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (admin, token) = (admin.clone(), token.clone());
            let (acked, in_flight, stop) = (acked.clone(), in_flight.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("w{w}-{i}");
                    match try_put(&admin, &token, "durable", &key, &value_of(&key)) {
                        Some(200) => acked.lock().unwrap().push(key),
                        Some(status) => panic!("PUT {key} answered {status}"),
                        None => {
                            in_flight.lock().unwrap().push(key);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    wait_until(Duration::from_secs(30), "writes to be acknowledged", || {
        started.elapsed() > Duration::from_millis(1500) && acked.lock().unwrap().len() >= 100
    });
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
    let acked = acked.lock().unwrap().clone();
    for key in &acked {
        let reply = host.admin_get(&key_path("durable", "default", key));
        assert_eq!(
            reply.status, 200,
            "acknowledged `{key}` was lost: {}",
            reply.body
        );
        assert!(
            reply.body == value_of(key),
            "acknowledged `{key}` came back torn"
        );
    }
    for key in in_flight.lock().unwrap().iter() {
        let reply = host.admin_get(&key_path("durable", "default", key));
        assert!(
            reply.status == 404 || reply.body == value_of(key),
            "in-flight `{key}` came back torn ({})",
            reply.status
        );
    }
    eprintln!("{} acknowledged writes survived kill -9", acked.len());
    let (out, _) = host.cli_ok(&bin(), &["kv", "get", "durable", &acked[0]]);
    assert_eq!(out, value_of(&acked[0]), "`shoal kv get` reads it back");
}

#[test]
fn concurrent_writes_are_group_committed_as_metrics_show() {
    let data = tempfile::tempdir().unwrap();
    let host = Arc::new(Shoal::host(&bin(), data.path(), &[]));
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let host = host.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    let reply = put(&host, "grouped", &format!("w{w}-{i}"), b"x");
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let text = host.admin_get("/metrics").body;
    let writes = metric(&text, "shoal_kv_writes_total");
    let commits = metric(&text, "shoal_kv_commits_total");
    assert_eq!(writes, 512.0, "{text}");
    // Without group commit every write is a commit of its own; how many
    // share one depends on how fast writes arrive (12 a commit on an idle
    // machine, under 2 beside a parallel build), so only sharing is asserted.
    assert!(
        commits < writes,
        "64 concurrent writers made {writes} writes in {commits} commits: no group commit"
    );
    assert_eq!(metric(&text, "shoal_kv_keys{app=\"grouped\"}"), 512.0);
    assert!(text.contains("shoal_kv_commit_seconds_bucket"), "{text}");
    eprintln!("group-commit factor {:.1}", writes / commits);
}

#[test]
fn operators_read_and_fix_data_with_the_token_and_rm_keeps_it_until_purge() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    let b = bin();
    host.cli_ok(
        &b,
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "shop",
            "--kv",
            "default",
            "--kv",
            "carts",
        ],
    );
    set_get_list_and_delete(&host, &b, data.path());
    sizes_are_shown(&host, &b);
    kv_calls_take_the_token(&host);
    rm_keeps_the_data_until_purge(&host, &b);
}

fn set_get_list_and_delete(host: &Shoal, b: &str, data: &Path) {
    host.cli_ok(b, &["kv", "set", "shop", "greeting", "hello"]);
    host.cli_ok(b, &["kv", "set", "shop", "carts", "a/b c", "slashes"]);
    let file = data.join("value.bin");
    std::fs::write(&file, [0u8, 1, 2, 255]).unwrap();
    host.cli_ok(
        b,
        &[
            "kv",
            "set",
            "shop",
            "carts",
            "bin",
            &format!("@{}", file.display()),
        ],
    );
    let (out, _) = host.cli_ok(b, &["kv", "get", "shop", "greeting"]);
    assert_eq!(out, "hello");
    let (out, _) = host.cli_ok(b, &["kv", "get", "shop", "carts", "a/b c"]);
    assert_eq!(out, "slashes", "a key with `/` and a space round-trips");
    let raw = host.admin_get("/v1/kv/shop/carts/a%2Fb%20c");
    assert_eq!((raw.status, raw.body.as_str()), (200, "slashes"));
    let (out, _) = host.cli_ok(b, &["kv", "ls", "shop"]);
    assert!(out.contains("carts") && out.contains("default"), "{out}");
    let (out, _) = host.cli_ok(b, &["kv", "ls", "shop", "carts"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["a/b c", "bin"]);
    host.cli_ok(b, &["kv", "rm", "shop", "carts", "bin"]);
    let (status, _, err) = host.cli(b, &["kv", "get", "shop", "carts", "bin"]);
    assert!(!status.success() && err.contains("no key `bin`"), "{err}");
}

/// Sizes in `shoal ls`, the app's view and /metrics.
fn sizes_are_shown(host: &Shoal, b: &str) {
    let (out, _) = host.cli_ok(b, &["ls"]);
    assert!(out.contains("KV") && out.contains("2 keys, 25 B"), "{out}");
    let view: serde_json::Value =
        serde_json::from_str(&host.admin_get("/v1/apps/shop").body).unwrap();
    assert_eq!(
        (view["kv_keys"].as_u64(), view["kv_bytes"].as_u64()),
        (Some(2), Some(25))
    );
    let text = host.admin_get("/metrics").body;
    assert_eq!(metric(&text, "shoal_kv_bytes{app=\"shop\"}"), 25.0);
}

/// Every /v1/kv call takes the token.
fn kv_calls_take_the_token(host: &Shoal) {
    let url = format!("{}/v1/kv/shop/default/greeting", host.admin_url());
    assert_eq!(agent().get(&url).call().unwrap().status(), 401);
    let wrong = agent()
        .get(&url)
        .header("authorization", "Bearer nope")
        .call()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let request = ureq::http::Request::builder()
        .method("DELETE")
        .uri(format!("{}/v1/kv/shop", host.admin_url()))
        .body(Vec::new())
        .unwrap();
    assert_eq!(agent().run(request).unwrap().status(), 401);
    assert_eq!(
        host.admin_get("/v1/kv/shop/default/greeting").status,
        200,
        "nothing was purged"
    );
}

/// `rm` keeps the data and says so; `rm --purge` deletes it, also later.
fn rm_keeps_the_data_until_purge(host: &Shoal, b: &str) {
    let (_, err) = host.cli_ok(b, &["rm", "shop"]);
    assert!(
        err.contains("is kept") && err.contains("shoal rm --purge shop") && err.contains("25 B"),
        "{err}"
    );
    assert_eq!(host.admin_get("/v1/kv/shop/default/greeting").body, "hello");
    let (_, err) = host.cli_ok(b, &["rm", "--purge", "shop"]);
    assert!(
        err.contains("deleted the key-value data of `shop` (2 stores, 2 keys"),
        "{err}"
    );
    assert_eq!(host.admin_get("/v1/kv/shop/default/greeting").status, 404);
    assert_eq!(host.admin_get("/v1/kv/shop").body.trim(), "[]");
}

#[test]
fn limits_and_quotas_refuse_with_the_limit_named() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    let b = bin();
    host.cli_ok(
        &b,
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "small",
            "--kv",
            "default",
            "--kv-quota",
            "1KiB",
        ],
    );
    assert_eq!(put(&host, "small", "a", &[b'x'; 900]).status, 200);
    let over = put(&host, "small", "b", &[b'x'; 200]);
    assert_eq!(over.status, 413, "{}", over.body);
    assert!(
        over.body.contains("quota of 1024 bytes") && over.body.contains("--kv-quota"),
        "{}",
        over.body
    );
    assert_eq!(
        host.admin_get(&key_path("small", "default", "b")).status,
        404,
        "nothing half-written"
    );
    let long = "k".repeat(257);
    let refused = put(&host, "small", &long, b"v");
    assert!(
        refused.status == 400 && refused.body.contains("256"),
        "{}",
        refused.body
    );
    let big = put(&host, "other", "big", &vec![0u8; (1 << 20) + 1]);
    assert!(
        big.status == 413 && big.body.contains("1 MiB"),
        "{}",
        big.body
    );
    let nul = put(&host, "small", "a%00b", b"v");
    assert!(
        nul.status == 400 && nul.body.contains("NUL"),
        "{}",
        nul.body
    );
    let cursor = host.admin_get("/v1/kv/small/default?cursor=12345");
    assert!(
        cursor.status == 400 && cursor.body.contains("another store"),
        "{}",
        cursor.body
    );
    assert_eq!(host.get("/small/").status, 200, "the app keeps serving");
}

#[test]
fn kv_apps_run_on_one_node_and_store_names_are_checked() {
    let data = tempfile::tempdir().unwrap();
    let host = Shoal::host(&bin(), data.path(), &[]);
    let b = bin();
    let (status, _, err) = host.cli(
        &b,
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "wide",
            "--kv",
            "default",
            "--replicas",
            "2",
        ],
    );
    assert!(
        !status.success() && err.contains("--replicas 1") && err.contains("replicated"),
        "{err}"
    );
    let (status, _, err) = host.cli(
        &b,
        &["deploy", guests::HELLO, "--name", "bad", "--kv", "Bad/Name"],
    );
    assert!(
        !status.success() && err.contains("invalid key-value store name"),
        "{err}"
    );
}

#[test]
fn secrets_appear_in_no_view_log_or_error() {
    let marker = format!("s3cr3t-{}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("token.txt");
    std::fs::write(&file, format!("{marker}\n")).unwrap();
    let host = debug_host(data.path());
    let b = bin();
    let secret = format!("TOKEN=@{}", file.display());
    let (out, err) = host.cli_ok(
        &b,
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "sec",
            "--secret",
            &secret,
            "--config",
            "GREETING=hi",
            "--kv",
            "default",
        ],
    );
    let mut seen = BTreeMap::new();
    seen.insert("deploy", format!("{out}{err}"));
    seen.insert("ls", host.cli_ok(&b, &["ls"]).0);
    let ls_json = host.cli_ok(&b, &["ls", "--json"]).0;
    let apps: serde_json::Value = serde_json::from_str(&ls_json).unwrap();
    assert_eq!(
        apps[0]["secrets"],
        serde_json::json!(["TOKEN"]),
        "names are shown"
    );
    assert_eq!(apps[0]["config"], serde_json::json!(["GREETING"]));
    seen.insert("ls --json", ls_json);
    seen.insert("/v1/apps", host.admin_get("/v1/apps").body);
    seen.insert("/v1/apps/sec", host.admin_get("/v1/apps/sec").body);
    seen.insert("/metrics", host.admin_get("/metrics").body);
    seen.insert("kv ls", host.cli_ok(&b, &["kv", "ls", "sec"]).0);
    failing_calls_with_the_secret(&host, &secret, &marker, &mut seen);
    // After a restart the secret is read back from the store, still unlogged.
    let mut first = host;
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).is_some());
    seen.insert("host log (debug)", first.logs());
    let again = debug_host(data.path());
    wait_until(
        Duration::from_secs(30),
        "the app to be served again",
        || again.get("/sec/").status == 200,
    );
    seen.insert("restarted host log (debug)", again.logs());
    // The guest gets it: it is in the stored spec, so its absence above
    // means something.
    let stored: String = rusqlite::Connection::open(data.path().join("shoal.db"))
        .unwrap()
        .query_row("SELECT spec FROM apps WHERE name = 'sec'", [], |r| r.get(0))
        .unwrap();
    assert!(stored.contains(&marker), "the secret was not stored");
    for (view, text) in &seen {
        assert!(
            !text.contains(&marker),
            "the secret shows in {view}:\n{text}"
        );
    }
    assert!(
        seen["host log (debug)"].contains("DEBUG"),
        "the host logged at debug"
    );
}

/// Calls that fail while carrying the secret: a deploy the host refuses,
/// a spec it cannot read, a literal `--secret`.
fn failing_calls_with_the_secret(
    host: &Shoal,
    secret: &str,
    marker: &str,
    seen: &mut BTreeMap<&'static str, String>,
) {
    let (status, out, err) = host.cli(
        &bin(),
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "sec",
            "--secret",
            secret,
            "--memory",
            "999GiB",
        ],
    );
    assert!(!status.success(), "a 999 GiB deploy was accepted");
    seen.insert("failed deploy", format!("{out}{err}"));
    let bad_json = host.admin_send(
        "PUT",
        "/v1/apps/sec",
        "application/json",
        format!(r#"{{"name": "sec", "memory": "{marker}"}}"#).as_bytes(),
    );
    assert_eq!(bad_json.status, 400);
    seen.insert("bad spec", bad_json.body);
    let literal = run_to_exit_env(
        &bin(),
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "x",
            "--secret",
            &format!("T={marker}"),
        ],
        &[],
        Duration::from_secs(30),
    );
    seen.insert("literal secret", format!("{}{}", literal.1, literal.2));
}

/// `shoal host` at `SHOAL_LOG=debug`, on `data`.
fn debug_host(data: &Path) -> Shoal {
    let mut command = Command::new(bin());
    command
        .arg("host")
        .arg("--data-dir")
        .arg(data)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--gossip",
            "127.0.0.1:0",
        ])
        .env("SHOAL_LOG", "debug")
        .env("NO_COLOR", "1");
    let mut host = Shoal::spawn(command);
    let line = host
        .wait_for_log("admin API on http://", Duration::from_secs(60))
        .expect("the admin API did not come up");
    host.admin = Some(
        line.split("http://")
            .nth(1)
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap(),
    );
    host.data_dir = Some(data.to_path_buf());
    host
}
