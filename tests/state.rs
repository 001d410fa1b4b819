//! Durable state that stays right, end to end: real `shoal host` processes
//! on loopback whose data dirs the tests inspect and damage between runs
//! (permissions, rows written by a newer version, corrupt component files,
//! stray entries), and a mesh in which a node away longer than the
//! tombstone lifetime comes back. Every wait is bounded.
//!
//! `SHOAL_BIN=/path/to/shoal` points the same tests at another binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_test_support::{Mesh, Shoal, guests, run_to_exit, wait_until};

/// Generous bound for anything the mesh must converge on.
const CONVERGE: Duration = Duration::from_secs(30);
/// The short tombstone lifetime the mesh tests run with.
const LIFETIME: &str = "3s";

fn bin() -> String {
    shoal_test_support::shoal_bin!()
}

fn admin_get(host: &Shoal, path: &str) -> (u16, serde_json::Value) {
    let reply = host.admin_get(path);
    let json = serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

/// Whether `host` knows app `name` (deployed, not removed).
fn knows(host: &Shoal, name: &str) -> bool {
    admin_get(host, &format!("/v1/apps/{name}")).0 == 200
}

fn deploy(host: &Shoal, component: &str, name: &str, extra: &[&str]) {
    let mut args = vec!["deploy", component, "--name", name];
    args.extend(extra);
    host.cli_ok(&bin(), &args);
}

/// Stops a host with SIGTERM and waits for it to exit.
fn stop(mut host: Shoal) {
    host.signal("TERM");
    assert!(
        host.wait_exit(Duration::from_secs(20)).is_some(),
        "host did not stop"
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Where `sha256`'s bytes live in a data dir.
fn component_file(data: &Path, sha256: &str) -> PathBuf {
    data.join("components").join(format!("{sha256}.wasm"))
}

fn component_of(host: &Shoal, app: &str) -> String {
    let (status, view) = admin_get(host, &format!("/v1/apps/{app}"));
    assert_eq!(status, 200, "{view}");
    view["component"].as_str().unwrap().to_string()
}

/// The bytes of the probe guest in place of another component: valid
/// WebAssembly, but not the bytes the sha256 names.
fn substitute(data: &Path, sha256: &str) {
    let file = component_file(data, sha256);
    assert!(file.is_file(), "{} is missing", file.display());
    std::fs::write(&file, std::fs::read(guests::PROBE).unwrap()).unwrap();
}

fn sha256_of(path: &Path) -> String {
    let (status, stdout, _) = run_to_exit(
        "sha256sum",
        &[path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success());
    stdout.split_whitespace().next().unwrap().to_string()
}

#[test]
fn the_data_dir_is_private_and_so_is_the_database() {
    let dir = tempfile::tempdir().unwrap();
    // A data dir that does not exist yet: shoal makes it.
    let data = dir.path().join("state");
    let host = Shoal::host(&bin(), &data, &[]);
    deploy(&host, guests::HELLO, "hello", &["--env", "API_KEY=s3cr3t"]);
    for (path, want) in [
        (data.clone(), 0o700),
        (data.join("shoal.db"), 0o600),
        (data.join("shoal.db-wal"), 0o600),
    ] {
        let got = mode(&path);
        eprintln!("stat {}: {got:o}", path.display());
        assert_eq!(got, want, "{} is {got:o}", path.display());
    }
}

/// A newer shoal may add fields to a stored spec, columns to the table and
/// raise the schema version: this one still starts, serves what it can
/// read, and never prints a stored spec (env values are secrets).
#[test]
fn a_database_written_by_a_newer_version_starts_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Shoal::host(&bin(), &data, &[]);
    deploy(&host, guests::HELLO, "hello", &["--env", "API_KEY=s3cr3t"]);
    deploy(&host, guests::HELLO, "broken", &["--env", "API_KEY=s3cr3t"]);
    stop(host);

    let db = rusqlite::Connection::open(data.join("shoal.db")).unwrap();
    db.execute_batch(
        "ALTER TABLE apps ADD COLUMN added_later TEXT;
         PRAGMA user_version = 99;
         UPDATE apps SET spec = json_set(spec, '$.added_later', json('{\"x\":1}'))
             WHERE name = 'hello';
         UPDATE apps SET spec = json_set(spec, '$.memory', 's3cr3t-too')
             WHERE name = 'broken';",
    )
    .unwrap();
    drop(db);

    let host = Shoal::host(&bin(), &data, &[]);
    wait_until(CONVERGE, "hello to be served", || {
        host.get("/hello").status == 200
    });
    assert!(knows(&host, "hello"));
    assert!(!knows(&host, "broken"));
    host.wait_for_log("broken", Duration::from_secs(5))
        .expect("no word on the row that cannot be read");
    let logs = host.logs();
    assert!(!logs.contains("s3cr3t"), "a secret was printed:\n{logs}");
}

/// A field a newer node added survives a pull by a node that does not
/// know it (forward compatible), and reaches the puller's store intact.
#[test]
fn a_field_added_by_a_newer_node_does_not_break_a_pull() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let (status, _, stderr) = run_to_exit(
        &bin(),
        &["keygen", key.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stderr}");
    let key_arg = ["--cluster-key-file", key.to_str().unwrap()];
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = Shoal::host(
        &bin(),
        &data_a,
        &[&key_arg[..], &["--name", "node-a"]].concat(),
    );
    deploy(&a, guests::HELLO, "hello", &[]);
    stop(a);
    let db = rusqlite::Connection::open(data_a.join("shoal.db")).unwrap();
    db.execute(
        "UPDATE apps SET spec = json_set(spec, '$.added_later', 'kept') WHERE name = 'hello'",
        [],
    )
    .unwrap();
    drop(db);

    let a = Shoal::host(
        &bin(),
        &data_a,
        &[&key_arg[..], &["--name", "node-a"]].concat(),
    );
    let join = a.gossip_addr();
    let b = Shoal::host(
        &bin(),
        &data_b,
        &[&key_arg[..], &["--name", "node-b", "--join", &join]].concat(),
    );
    wait_until(CONVERGE, "node-b to learn hello from node-a", || {
        knows(&b, "hello")
    });
    wait_until(CONVERGE, "node-b to serve /hello", || {
        b.get("/hello").status == 200
    });
    let db = rusqlite::Connection::open(data_b.join("shoal.db")).unwrap();
    let spec: String = db
        .query_row("SELECT spec FROM apps WHERE name = 'hello'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(spec.contains("\"added_later\":\"kept\""), "{spec}");

    // What a user sends stays strict: the same field through the admin
    // API is refused, by name.
    let mut view: serde_json::Value = serde_json::from_str(&spec).unwrap();
    view["added_later"] = serde_json::json!("typo");
    let token = std::fs::read_to_string(data_b.join("token")).unwrap();
    let reply = shoal_test_support::agent()
        .put(format!("{}/v1/apps/hello", b.admin_url()))
        .header("authorization", format!("Bearer {}", token.trim()))
        .header("content-type", "application/json")
        .send(view.to_string())
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body = reply.into_body().read_to_string().unwrap();
    assert!(body.contains("unknown field `added_later`"), "{body}");
}

#[test]
fn stray_entries_in_components_do_not_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Shoal::host(&bin(), &data, &[]);
    deploy(&host, guests::HELLO, "hello", &[]);
    stop(host);
    let components = data.join("components");
    std::fs::create_dir_all(components.join("backup")).unwrap();
    std::fs::write(components.join("backup/old.wasm"), b"old").unwrap();
    std::fs::write(components.join("README"), b"not a component").unwrap();

    let host = Shoal::host(&bin(), &data, &[]);
    wait_until(CONVERGE, "hello to be served", || {
        host.get("/hello").status == 200
    });
    assert!(components.join("backup/old.wasm").is_file());
}

/// On a single host a component file whose bytes no longer match their
/// sha256 is never served, and the log says which app, which file, both
/// digests, and how to fix it.
#[test]
fn a_corrupt_component_on_a_single_host_is_reported_and_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Shoal::host(&bin(), &data, &[]);
    deploy(&host, guests::HELLO, "hello", &[]);
    let sha256 = component_of(&host, "hello");
    stop(host);
    substitute(&data, &sha256);

    let host = Shoal::host(&bin(), &data, &[]);
    let line = host
        .wait_for_log(&sha256, Duration::from_secs(10))
        .expect("the corrupt component was not reported");
    eprintln!("reported: {line}");
    let logs = host.logs();
    let actual = sha256_of(Path::new(guests::PROBE));
    for needle in ["hello", &actual, "shoal deploy"] {
        assert!(logs.contains(needle), "no `{needle}` in:\n{logs}");
    }
    // The probe's bytes would answer with a number here.
    for _ in 0..20 {
        let reply = host.get("/hello/env-count");
        assert!(
            reply.status != 200 || reply.body == "hello from shoal\n",
            "served the wrong bytes: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Redeploying heals it.
    deploy(&host, guests::HELLO, "hello", &[]);
    assert_eq!(host.get("/hello/env-count").body, "hello from shoal\n");
}

/// A two-node mesh: a component file corrupted on B while it was down is
/// fetched again from A when B starts, and B serves the right bytes.
#[test]
fn a_corrupt_component_heals_from_a_peer() {
    let mut mesh = Mesh::start(&bin(), 2, &[]);
    deploy(mesh.host(0), guests::HELLO, "hello", &["--replicas", "all"]);
    wait_until(CONVERGE, "both nodes ready for hello", || {
        ready_on(mesh.host(0), "hello").len() == 2
    });
    let sha256 = component_of(mesh.host(1), "hello");
    stop(mesh.take(1));
    substitute(mesh.data(1), &sha256);
    mesh.restart(1);
    let restarted = Instant::now();

    let b = mesh.host(1);
    wait_until(CONVERGE, "node-b to heal its copy", || {
        let file = component_file(mesh.data(1), &sha256);
        file.is_file() && sha256_of(&file) == sha256
    });
    wait_until(CONVERGE, "node-b to serve hello itself", || {
        admin_get(b, "/v1/apps/hello").1["status"] == "ready"
    });
    eprintln!(
        "heal: node-b serves the right bytes {:?} after its admin API came up",
        restarted.elapsed()
    );
    let reply = b.get("/hello/env-count");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from shoal\n")
    );
}

/// Stop C; remove an app on A; A and B forget the removal after the
/// tombstone lifetime; C comes back with the app it had: the app stays
/// removed everywhere, and what was not removed stays.
#[test]
fn a_node_away_longer_than_the_tombstone_lifetime_brings_nothing_back() {
    let mut mesh = Mesh::start(&bin(), 3, &["--tombstone-lifetime", LIFETIME]);
    deploy(mesh.host(0), guests::HELLO, "gone", &["--replicas", "all"]);
    deploy(mesh.host(0), guests::HELLO, "kept", &[]);
    wait_until(CONVERGE, "node-c to serve gone", || {
        admin_get(mesh.host(2), "/v1/apps/gone").1["status"] == "ready"
            && knows(mesh.host(2), "kept")
    });
    mesh.kill(2);
    // Record times count whole seconds, and a removal in the same second
    // as its deploy is within the horizon's allowance (documented): the
    // removal here comes in a later second, as removals of real apps do.
    std::thread::sleep(Duration::from_millis(1100));
    mesh.host(0).cli_ok(&bin(), &["rm", "gone"]);
    for i in 0..2 {
        mesh.host(i)
            .wait_for_log("collected old removals", CONVERGE)
            .expect("the removal was never collected");
    }

    mesh.restart(2);
    let restarted = Instant::now();
    wait_until(CONVERGE, "node-c to forget gone", || {
        !knows(mesh.host(2), "gone")
    });
    eprintln!(
        "return: node-c forgot gone {:?} after its admin API came up",
        restarted.elapsed()
    );
    // Something new still reaches every node, C included.
    deploy(mesh.host(1), guests::HELLO, "fresh", &[]);
    wait_until(CONVERGE, "every node to know fresh", || {
        mesh.live().all(|host| knows(host, "fresh"))
    });
    // Past a few sync rounds, nobody brought it back.
    std::thread::sleep(Duration::from_secs(3));
    for host in mesh.live() {
        assert!(!knows(host, "gone"), "{} serves gone again", host.name());
        assert_eq!(host.get("/gone").status, 404, "{}", host.name());
        assert!(knows(host, "kept"), "{} lost kept", host.name());
    }
}

fn ready_on(host: &Shoal, app: &str) -> Vec<String> {
    let (_, view) = admin_get(host, &format!("/v1/apps/{app}"));
    view["ready_on"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| Some(n.as_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}
