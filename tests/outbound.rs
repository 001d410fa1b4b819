//! Outbound HTTP is judged by the address it connects to, on a two-node
//! loopback mesh: a guest on A allowed `*` reaches neither B's admin API,
//! nor A's own ingress, nor a name that resolves to loopback (`localhost`,
//! through the system resolver); an explicitly allowed `127.0.0.1:PORT`
//! still works, and no rule, not even a CIDR, reaches a member's listener.
//! Each refusal is a 403 from the probe (the guest saw
//! `destination-ip-prohibited`), a host log line and an app log line.
//!
//! `SHOAL_BIN` points the test at another `shoal` binary (an older one, to
//! show it fails there).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shoal_test_support::{Reply, Shoal, get, guests, upstream};

/// Bound for anything the mesh must converge on.
const CONVERGE: Duration = Duration::from_secs(30);
const PROHIBITED: (u16, &str) = (403, "outbound destination prohibited");

fn shoal() -> String {
    shoal_test_support::shoal_bin!()
}

/// Two hosts sharing a cluster key; B joins A.
struct TwoNodes {
    a: Shoal,
    b: Shoal,
    _dirs: [tempfile::TempDir; 3],
}

impl TwoNodes {
    fn start() -> TwoNodes {
        let bin = shoal();
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let key = dirs[2].path().join("cluster.key");
        let key_path = key.to_str().unwrap();
        let (status, _, stderr) =
            shoal_test_support::run_to_exit(&bin, &["keygen", key_path], Duration::from_secs(10));
        assert!(status.success(), "{stderr}");
        let host = |dir: &Path, name: &str, join: Option<String>| {
            let mut args = vec!["--name", name, "--cluster-key-file", key_path];
            let join = join.unwrap_or_default();
            if !join.is_empty() {
                args.extend(["--join", &join]);
            }
            Shoal::host(&bin, dir, &args)
        };
        let a = host(dirs[0].path(), "node-a", None);
        let b = host(dirs[1].path(), "node-b", Some(a.gossip_addr()));
        for node in [&a, &b] {
            wait_until(&format!("{} to see 2 members", node.name()), || {
                json(get(&format!("{}/v1/health", node.admin_url())))["members"] == 2
            });
        }
        TwoNodes { a, b, _dirs: dirs }
    }

    /// Deploys the probe as `name` on every node with `allow` rules, and
    /// waits until A serves it itself (so the guest runs on A).
    fn deploy(&self, name: &str, allow: &[String]) {
        let mut args = vec!["deploy", guests::PROBE, "--name", name, "--replicas", "all"];
        for rule in allow {
            args.extend(["--allow-outbound", rule]);
        }
        self.a.cli_ok(&shoal(), &args);
        wait_until(&format!("`{name}` ready on both nodes"), || {
            let view = json(self.a.admin_get(&format!("/v1/apps/{name}")));
            view["ready_on"] == serde_json::json!(["node-a", "node-b"])
        });
    }

    /// What the probe app `app` on A answered when asked to GET `url`.
    fn fetch(&self, app: &str, url: &str) -> (u16, String) {
        let reply = self.a.get(&format!("/{app}/fetch?url={url}"));
        (reply.status, reply.body)
    }
}

/// The JSON of `reply`, or `null` if it is not a 200.
fn json(reply: Reply) -> serde_json::Value {
    if reply.status != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&reply.body).unwrap_or_default()
}

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    shoal_test_support::wait_until(CONVERGE, what, done);
}

fn refused(reply: &(u16, String)) -> bool {
    (reply.0, reply.1.as_str()) == PROHIBITED
}

#[test]
fn a_guest_allowed_any_host_reaches_nothing_on_this_machine_or_in_the_mesh() {
    let mesh = TwoNodes::start();
    let (a, b) = (&mesh.a, &mesh.b);
    let b_admin = b.admin.unwrap();
    let up = upstream("pong");

    // `*`: the public internet, nothing on this machine or in the mesh.
    mesh.deploy("wild", &["*".to_string()]);
    let reached: Vec<_> = [
        ("B's admin API", format!("http://{b_admin}/v1/apps")),
        ("its own ingress", format!("http://{}/wild/hello", a.addr)),
        ("`localhost`", format!("http://localhost:{}/", up.port())),
        ("a loopback IP", format!("http://{up}/")),
    ]
    .into_iter()
    .map(|(what, url)| (what, mesh.fetch("wild", &url)))
    .filter(|(_, reply)| !refused(reply))
    .collect();
    assert!(
        reached.is_empty(),
        "a guest allowed `*` reached {reached:#?}"
    );
    let line = a
        .wait_for_log("listener of a shoal host", Duration::from_secs(5))
        .expect("a host log line saying why B's admin API was refused");
    assert!(line.contains("outbound request refused app=wild"), "{line}");
    let line = a
        .wait_for_log("127.0.0.1 is a loopback address", Duration::from_secs(5))
        .expect("a host log line saying why `localhost` was refused");
    assert!(line.contains("--allow-outbound 127.0.0.1:"), "{line}");
    let (logs, _) = a.cli_ok(&shoal(), &["logs", "wild"]);
    assert!(
        logs.contains("127.0.0.1 is a loopback address") && logs.contains("--allow-outbound"),
        "the app's log says why and what to allow: {logs}"
    );
}

#[test]
fn named_ips_reach_their_upstream_but_never_a_member_listener() {
    let mesh = TwoNodes::start();
    let (a, b) = (&mesh.a, &mesh.b);
    let b_admin = b.admin.unwrap();
    let up = upstream("pong");

    // Named IPs reach their upstream, by IP or by a name resolving to them;
    // a member's listener stays out of reach even when named.
    let explicit = [
        up.to_string(),
        format!("localhost:{}", up.port()),
        format!("[::1]:{}", up.port()),
        b_admin.to_string(),
        a.addr.to_string(),
    ];
    mesh.deploy("explicit", &explicit);
    assert_eq!(
        mesh.fetch("explicit", &format!("http://{up}/ping")),
        (200, "upstream 200: pong".to_string())
    );
    assert_eq!(
        mesh.fetch("explicit", &format!("http://localhost:{}/ping", up.port())),
        (200, "upstream 200: pong".to_string())
    );
    let reply = mesh.fetch("explicit", &format!("http://{b_admin}/v1/apps"));
    assert!(refused(&reply), "a guest reached B's admin API: {reply:?}");
    let reply = mesh.fetch("explicit", &format!("http://{}/explicit/hello", a.addr));
    assert!(
        refused(&reply),
        "a guest reached its own ingress: {reply:?}"
    );
    let line = a
        .wait_for_log("listener of a shoal host", Duration::from_secs(5))
        .expect("a host log line saying why");
    assert!(line.contains("app=explicit"), "{line}");

    // A CIDR covering every loopback address reaches the upstream, and no
    // member's ingress, admin or gossip address, in any loopback spelling
    // (A's own admin port is refused by name, as `tests/host.rs` shows).
    mesh.deploy("cidr", &["127.0.0.0/8".to_string()]);
    assert_eq!(
        mesh.fetch("cidr", &format!("http://{up}/ping")),
        (200, "upstream 200: pong".to_string())
    );
    let b_gossip: SocketAddr = b.gossip_addr().parse().unwrap();
    for member in [b_admin, b.addr, a.addr, b_gossip] {
        let spelled = format!("http://127.0.0.2:{}/", member.port());
        assert!(
            refused(&mesh.fetch("cidr", &format!("http://{member}/"))),
            "{member}"
        );
        assert!(refused(&mesh.fetch("cidr", &spelled)), "{spelled}");
    }
}

#[test]
fn shoal_run_keeps_a_guest_off_its_own_listener_even_when_named() {
    let up = upstream("pong");
    // A free port, named in the rules before the server binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let own = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(shoal());
    command
        .args(["run", guests::PROBE, "--listen", &own])
        .args([
            "--allow-outbound",
            &own,
            "--allow-outbound",
            &up.to_string(),
        ])
        .env("SHOAL_CACHE_DIR", cache.path())
        .env("SHOAL_LOG", "info")
        .env("NO_COLOR", "1");
    let run = Shoal::spawn(command);
    let reply = run.get(&format!("/fetch?url=http://{up}/ping"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "upstream 200: pong")
    );
    let reply = run.get(&format!("/fetch?url=http://{own}/hello"));
    assert!(
        refused(&(reply.status, reply.body.clone())),
        "a guest called its own ingress: {reply:?}"
    );
}
