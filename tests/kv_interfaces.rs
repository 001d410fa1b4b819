//! Every key-value and config interface a guest can import round-trips
//! through `shoal run --kv default --config greeting=hi`: wasi:keyvalue
//! draft2 and wasi:config 2024-09-27 (kv-probe), wasi:keyvalue draft and
//! wasi:config rc.1 as a wasmtime user writes them (compat-wasi-kv, also
//! compared with `wasmtime serve` when it is installed), and spin-sdk 7's
//! key_value and variables (compat-spin-kv, WASIp3). Stores are denied
//! unless granted, and every limit answers the interface's error naming
//! it, never a trap.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use shoal_test_support::{Reply, Shoal, agent, get, guests, post, shoal_bin};
use tempfile::TempDir;

/// A `shoal run` with a data and cache dir of its own, so that an engine
/// that keeps state across runs (under `$XDG_DATA_HOME/shoal/run/NAME`)
/// starts empty and no two tests share a store.
struct Run {
    shoal: Shoal,
    _dirs: TempDir,
}

impl std::ops::Deref for Run {
    type Target = Shoal;

    fn deref(&self) -> &Shoal {
        &self.shoal
    }
}

fn run(component: &str, args: &[&str]) -> Run {
    let dirs = tempfile::tempdir().unwrap();
    let mut command = Command::new(shoal_bin!());
    command
        .args(["run", component, "--listen", "127.0.0.1:0"])
        .args(args)
        .env("XDG_DATA_HOME", dirs.path().join("data"))
        .env("SHOAL_CACHE_DIR", dirs.path().join("cache"))
        .env("SHOAL_LOG", "info")
        .env("NO_COLOR", "1");
    Run {
        shoal: Shoal::spawn(command),
        _dirs: dirs,
    }
}

/// How long a log line may take to reach the test.
const LOG_WAIT: Duration = Duration::from_secs(10);

fn send(method: &str, url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let agent = agent();
    let result = match method {
        "PUT" => agent.put(url).send(body),
        "DELETE" => agent.delete(url).call(),
        other => panic!("no helper for {other}"),
    };
    let mut response = result.expect("the HTTP exchange failed");
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().expect("reading the body");
    (status, bytes)
}

fn ok(reply: Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn probe() -> Run {
    run(
        guests::KV_PROBE,
        &[
            "--kv",
            "default",
            "--kv",
            "second",
            "--config",
            "greeting=hi",
            "--config",
            "API_KEY=k",
        ],
    )
}

#[test]
fn wasi_keyvalue_draft2_and_config_round_trip() {
    let shoal = probe();
    let url = |p: &str| shoal.url(p);
    assert_eq!(send("PUT", &url("/kv/default/a"), b"hello").0, 200);
    assert_eq!(ok(shoal.get("/kv/default/a")), "hello");
    assert_eq!(ok(shoal.get("/kv//a")), "hello", "`\"\"` opens `default`");
    assert_eq!(ok(shoal.get("/exists/default/a")), "true");
    let other = shoal.get("/kv/second/a");
    assert_eq!(
        (other.status, other.body.as_str()),
        (404, "absent\n"),
        "stores are apart"
    );
    assert_eq!(
        send("DELETE", &url("/kv/default/a"), b""),
        (200, b"deleted\n".to_vec())
    );
    assert_eq!(ok(shoal.get("/exists/default/a")), "false");
    assert_eq!(shoal.get("/kv/default/a").status, 404);

    // draft2 keeps a counter as 8 bytes little-endian, as Spin does.
    assert_eq!(ok(post(&url("/incr/default/c?by=5"), b"")), "5");
    assert_eq!(ok(post(&url("/incr/default/c?by=-7"), b"")), "-2");
    let (status, bytes) = send_get(&url("/kv/default/c"));
    assert_eq!((status, bytes), (200, (-2i64).to_le_bytes().to_vec()));

    assert_eq!(
        ok(post(&url("/cas-conflict/default/x"), b"")),
        "current none\nswap cas-failed\nretry current theirs\nretry swapped\nget mine\n"
    );
    for item in ["1", "2", "3"] {
        ok(post(&url(&format!("/cas/default/list?append={item}")), b""));
    }
    assert_eq!(ok(shoal.get("/kv/default/list")), "1,2,3");

    assert_eq!(
        ok(post(&url("/many/default"), b"m1=one\nm2=two\n")),
        "stored 2\n"
    );
    assert_eq!(
        ok(post(&url("/get-many/default"), b"m1\nnope\nm2\n")),
        "m1=one\nnope absent\nm2=two\n"
    );
    ok(post(&url("/delete-many/default"), b"m1\nm2\n"));
    assert_eq!(ok(post(&url("/get-many/default"), b"m1\n")), "m1 absent\n");

    assert_eq!(ok(shoal.get("/config/greeting")), "hi");
    assert_eq!(shoal.get("/config/missing").status, 404);
    assert_eq!(ok(shoal.get("/config-all")), "API_KEY=k\ngreeting=hi\n");
}

fn send_get(url: &str) -> (u16, Vec<u8>) {
    let mut response = agent().get(url).call().expect("the HTTP exchange failed");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_vec().unwrap())
}

/// Keys and cursor of one `/keys` page (the probe's JSON, read plainly).
fn page(shoal: &Shoal, store: &str, cursor: Option<&str>) -> (Vec<String>, Option<String>) {
    let body = ok(shoal.get(&format!("/keys/{store}?cursor={}", cursor.unwrap_or(""))));
    let (keys, cursor) = body
        .strip_prefix("{\"keys\":[")
        .and_then(|b| b.split_once("],\"cursor\":"))
        .unwrap_or_else(|| panic!("not a page: {body}"));
    let keys = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| k.trim_matches('"').to_string())
        .collect();
    let cursor = cursor.trim_end_matches('}');
    (
        keys,
        (cursor != "null").then(|| cursor.trim_matches('"').to_string()),
    )
}

#[test]
fn listing_pages_through_more_keys_than_a_page_and_cursors_stay_in_their_store() {
    let shoal = probe();
    ok(post(
        &shoal.url("/fill/default?prefix=p&n=2500&size=4"),
        b"",
    ));
    ok(post(&shoal.url("/fill/second?prefix=q&n=3"), b""));
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (keys, next) = page(&shoal, "default", cursor.as_deref());
        pages += 1;
        assert!(keys.len() <= 1000, "a page holds at most 1000 keys");
        seen.extend(keys);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        if pages == 1 {
            // A cursor of `default` used on `second` is refused.
            let reply = shoal.get(&format!(
                "/keys/second?cursor={}",
                cursor.as_deref().unwrap()
            ));
            assert_eq!(reply.status, 400, "{}", reply.body);
            assert!(reply.body.contains("another store"), "{}", reply.body);
        }
    }
    assert_eq!(pages, 3);
    let distinct: BTreeSet<&String> = seen.iter().collect();
    let expected: BTreeSet<String> = (0..2500).map(|i| format!("p{i:05}")).collect();
    assert_eq!(seen.len(), 2500, "no key twice");
    assert_eq!(distinct, expected.iter().collect(), "no key missing");
    assert_eq!(
        page(&shoal, "second", None),
        (
            vec!["q00000".into(), "q00001".into(), "q00002".into()],
            None
        )
    );
    let bad = shoal.get("/keys/default?cursor=abc");
    assert!(
        bad.status == 400 && bad.body.contains("not one this store gave out"),
        "{}",
        bad.body
    );
}

#[test]
fn ungranted_stores_are_denied_and_limits_answer_errors_naming_them() {
    let shoal = probe();
    let denied = shoal.get("/kv/other/x");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "access-denied\n")
    );
    assert!(
        shoal
            .wait_for_log("grant it with `--kv other`", LOG_WAIT)
            .is_some(),
        "{}",
        shoal.logs()
    );

    let url = |p: &str| shoal.url(p);
    let long = "k".repeat(257);
    let (status, body) = send("PUT", &url(&format!("/kv/default/{long}")), b"v");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        status == 400 && body.contains("257 bytes, over the 256-byte limit"),
        "{body}"
    );
    assert_eq!(
        send(
            "PUT",
            &url(&format!("/kv/default/{}", "k".repeat(256))),
            b"v"
        )
        .0,
        200
    );

    let (status, body) = send("PUT", &url("/kv/default/big"), &vec![7u8; (1 << 20) + 1]);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        status == 400 && body.contains("over the 1 MiB limit per value"),
        "{body}"
    );
    assert_eq!(
        shoal.get("/kv/default/big").status,
        404,
        "nothing half-written"
    );

    let nul = shoal.get("/kv/default/a%00b");
    assert!(
        nul.status == 400 && nul.body.contains("NUL"),
        "{}",
        nul.body
    );

    let batch: String = (0..1001).map(|i| format!("b{i}=v\n")).collect();
    let reply = post(&url("/many/default"), batch.as_bytes());
    assert!(
        reply.status == 400 && reply.body.contains("limit of 1000 keys per call"),
        "{}",
        reply.body
    );
    assert_eq!(
        ok(post(&url("/get-many/default"), b"b0\n")),
        "b0 absent\n",
        "none of the batch written"
    );

    let open = ok(shoal.get("/open-many?n=70"));
    assert!(
        open.starts_with("opened 64, then other: too many open stores (limit 64"),
        "{open}"
    );

    // None of it trapped: the guest goes on serving.
    assert_eq!(ok(shoal.get("/exists/default/x")), "false");
    assert!(!shoal.logs().contains("request failed"), "{}", shoal.logs());
}

#[test]
fn an_app_given_no_store_is_denied_every_store() {
    let shoal = run(guests::KV_PROBE, &[]);
    let denied = shoal.get("/kv/default/x");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "access-denied\n")
    );
    assert!(
        shoal
            .wait_for_log("grant it with `--kv default`", LOG_WAIT)
            .is_some(),
        "{}",
        shoal.logs()
    );
    assert_eq!(shoal.get("/config/greeting").status, 404);
    assert_eq!(ok(shoal.get("/config-all")), "\n");
}

/// What compat-wasi-kv's `/script` answers on a host that follows
/// `wasi:keyvalue@0.2.0-draft` and `wasi:config@0.2.0-rc.1`.
const WASI_KV_SCRIPT: &str = "\
get a: 1
exists a: true
exists missing: false
get missing: none
increment c 5: 5
increment c 5: 10
get c: 10
get-many a missing: a=1 none
list-keys: [a,b,c]
after set-many: [a,b,c,d,e]
after delete-many: [c,d,e]
after delete: []
config greeting: Ok(Some(\"hi\"))
config missing: Ok(None)
config all: [(\"greeting\", \"hi\")]
";

#[test]
fn a_wasi_keyvalue_draft_guest_answers_as_on_wasmtime() {
    let shoal = run(
        guests::COMPAT_WASI_KV,
        &["--kv", "default", "--config", "greeting=hi"],
    );
    assert!(shoal.logs().contains("wasip2"));
    assert_eq!(ok(shoal.get("/script")), WASI_KV_SCRIPT);
    assert_eq!(
        ok(shoal.get("/script")),
        WASI_KV_SCRIPT,
        "the script cleans up after itself"
    );
    let denied = shoal.get("/open?store=other");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "Error::AccessDenied\n")
    );

    let found = Command::new("wasmtime")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("wasmtime is not installed; skipping the comparison with `wasmtime serve`");
        return;
    }
    let mut command = Command::new("wasmtime");
    command.args([
        "serve",
        "-Scli",
        "-Skeyvalue",
        "-Sconfig",
        "-Sconfig-var=greeting=hi",
    ]);
    command.args(["--addr", "127.0.0.1:0", guests::COMPAT_WASI_KV]);
    let wasmtime = Shoal::spawn(command);
    assert_eq!(
        ok(get(&wasmtime.url("/script"))),
        WASI_KV_SCRIPT,
        "wasmtime serve answers alike"
    );
}

/// Runs a Spin guest's `/script` under `shoal run` with what Spin's
/// `spin up --key-value`/`--variable` would give it, and checks each line;
/// answers the running host.
fn spin_script(component: &str, flavor: &str) -> Run {
    let shoal = run(
        component,
        &[
            "--kv",
            "default",
            "--config",
            "greeting=hi",
            "--config",
            "API_KEY=k",
        ],
    );
    assert!(shoal.logs().contains(flavor), "{}", shoal.logs());
    let script = ok(shoal.get("/script"));
    let expected = [
        "get a: 1",
        "exists a: true",
        "exists missing: false",
        "keys: [\"a\", \"b\"]",
        "after delete, exists a: false",
        "open other: Some(Error::AccessDenied)",
        "variable greeting: Ok(\"hi\")",
        "variable api_key: Ok(\"k\")",
    ];
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[..expected.len()], expected, "{script}");
    assert!(
        lines[8].starts_with("variable Bad: Err(Error::InvalidName("),
        "{script}"
    );
    assert!(
        lines[9].starts_with("variable missing: Err(Error::Undefined("),
        "{script}"
    );
    let denied = shoal.get("/open?store=other");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "access-denied\n")
    );
    shoal
}

#[test]
fn a_spin_sdk_7_key_value_and_variables_guest_runs_unchanged() {
    // spin:key-value@3.0.0 and spin:variables@3.0.0 are `async func`s: the
    // concurrent engine.
    let shoal = spin_script(guests::COMPAT_SPIN_KV, "wasip3");
    assert_eq!(ok(shoal.get("/fill?n=2500")), "filled 2500\n");
    assert_eq!(
        ok(shoal.get("/count")),
        "2500 keys, 2500 distinct\n",
        "the key stream pages through"
    );
}

#[test]
fn a_spin_sdk_5_key_value_and_variables_guest_runs_unchanged() {
    // fermyon:spin/key-value@2.0.0 and variables@2.0.0: the plain engine.
    spin_script(guests::COMPAT_SPIN5, "wasip2");
}
