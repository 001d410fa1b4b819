//! Gossip's edges, end to end: real `shoal host` processes on loopback,
//! attacked from this test process. A local process floods chitchat's
//! codec socket with zstd bombs; an on-path attacker plays captured sealed
//! datagrams back; a mesh rolls to a new cluster key under load.
//! Set `SHOAL_BIN` to run these against another `shoal` binary.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shoal_test_support::{Shoal, get, guests, run_to_exit, wait_until};

#[path = "gossip/load.rs"]
mod load;
#[path = "gossip/relay.rs"]
mod relay;

use load::{Load, write_ring};
use relay::Relay;

/// Generous bound for anything the mesh must converge on.
const CONVERGE: Duration = Duration::from_secs(30);

fn shoal() -> String {
    shoal_test_support::shoal_bin!()
}

/// `shoal keygen FILE`; the key's fingerprint.
fn keygen(file: &Path) -> String {
    let (status, _, stderr) = run_to_exit(
        &shoal(),
        &["keygen", file.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stderr}");
    // "wrote cluster key FINGERPRINT to FILE; ..."
    stderr
        .split_whitespace()
        .nth(3)
        .expect("a fingerprint")
        .to_string()
}

fn host(data: &Path, key: &Path, name: &str, extra: &[&str]) -> Shoal {
    let mut args = vec!["--name", name, "--cluster-key-file", key.to_str().unwrap()];
    args.extend(extra);
    Shoal::host(&shoal(), data, &args)
}

fn members(host: &Shoal) -> usize {
    let reply = get(&format!("{}/v1/health", host.admin_url()));
    let health: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    health["members"].as_u64().unwrap_or(0) as usize
}

/// `shoal_gossip_dropped_packets_total` of `host` with `reason`.
fn dropped(host: &Shoal, reason: &str) -> u64 {
    let metrics = host.admin_get("/metrics").body;
    let series = format!("shoal_gossip_dropped_packets_total{{reason=\"{reason}\"}}");
    metrics
        .lines()
        .filter(|l| l.starts_with(&series))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The 127.0.0.1 UDP ports process `pid` has bound, read from `/proc`.
fn loopback_udp_ports(pid: u32) -> Vec<u16> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy().to_string();
            if let Some(inode) = target.strip_prefix("socket:[") {
                inodes.push(inode.trim_end_matches(']').to_string());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = fields.get(1)?.split_once(':')?;
            let inode = fields.get(9)?;
            (ip == "0100007F" && inodes.iter().any(|i| i == inode))
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// One 64 KB chitchat Syn whose digest is a zstd stream of ~4,000 blocks,
/// each 65,535 zero bytes once inflated: ~260 MB from one datagram.
fn zstd_bomb() -> Vec<u8> {
    let block = zstd::bulk::compress(&[0u8; 65_535], 19).unwrap();
    // Magic number 45139, protocol V1 (compressed digest), type Syn.
    let mut bomb = vec![0x53, 0xb0, 1, 0];
    while bomb.len() + 3 + block.len() + 3 < 65_507 {
        bomb.push(1); // a compressed block
        bomb.extend((block.len() as u16).to_le_bytes());
        bomb.extend(&block);
    }
    bomb.push(0); // no more blocks
    bomb.extend(0u16.to_le_bytes()); // an empty cluster id
    bomb
}

fn two_node_mesh(dir: &Path) -> (Shoal, Shoal) {
    let key = dir.join("cluster.key");
    keygen(&key);
    let a = host(&dir.join("a"), &key, "a", &[]);
    let b = host(&dir.join("b"), &key, "b", &["--join", &a.gossip_addr()]);
    for node in [&a, &b] {
        wait_until(CONVERGE, "two live members", || members(node) == 2);
    }
    (a, b)
}

/// Another local process sends zstd bombs to every loopback UDP port of a
/// node but its gossip port, which includes chitchat's codec socket: none
/// is ever decoded, so the node's memory stays flat and gossip goes on.
#[test]
fn a_local_process_cannot_reach_chitchats_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_node_mesh(dir.path());
    let gossip_port = a.gossip.as_ref().unwrap().0.port();
    let targets: Vec<u16> = loopback_udp_ports(a.pid())
        .into_iter()
        .filter(|&port| port != gossip_port)
        .collect();
    assert!(targets.len() >= 2, "the codec's two sockets: {targets:?}");
    let before = a.peak_rss_mib();

    let bomb = zstd_bomb();
    assert!(bomb.len() <= 65_507);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        for port in &targets {
            let _ = attacker.send_to(&bomb, ("127.0.0.1", *port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));

    let grown = a.peak_rss_mib().saturating_sub(before);
    eprintln!("peak RSS grew by {grown} MiB under the bombs (from {before} MiB)");
    assert!(grown < 64, "peak RSS grew by {grown} MiB");
    assert!(
        !a.logs().contains("invalid-chitchat-payload"),
        "chitchat decoded a stranger's datagram"
    );
    assert_eq!(members(&a), 2);
    assert_eq!(members(&b), 2);
}

/// Two nodes whose every datagram passes relays the attacker controls:
/// each advertises its relay's address, so peers only ever send there.
struct Relayed {
    a: Shoal,
    b: Shoal,
    a_real: SocketAddr,
    to_a: Relay,
    to_b: Relay,
    _dir: tempfile::TempDir,
}

fn relayed_pair() -> Relayed {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    keygen(&key);
    let (a_port, b_port) = (free_udp_port(), free_udp_port());
    let a_real: SocketAddr = ([127, 0, 0, 1], a_port).into();
    let b_real: SocketAddr = ([127, 0, 0, 1], b_port).into();
    let (to_a, to_b) = (Relay::start(a_real), Relay::start(b_real));
    let (to_a_addr, to_b_addr) = (to_a.addr.to_string(), to_b.addr.to_string());
    let (a_gossip, b_gossip) = (a_real.to_string(), b_real.to_string());
    let a = host(
        &dir.path().join("a"),
        &key,
        "a",
        &["--gossip", &a_gossip, "--advertise", &to_a_addr],
    );
    let b = host(
        &dir.path().join("b"),
        &key,
        "b",
        &[
            "--gossip",
            &b_gossip,
            "--advertise",
            &to_b_addr,
            "--join",
            &to_a_addr,
        ],
    );
    wait_until(CONVERGE, "a to see b", || members(&a) == 2);
    wait_until(CONVERGE, "b to see a", || members(&b) == 2);
    Relayed {
        a,
        b,
        a_real,
        to_a,
        to_b,
        _dir: dir,
    }
}

/// Datagrams A already received from B, sent again with a victim's source
/// address: each Syn among them would make A answer the victim with its
/// digest and a delta of up to 65 KB. A answers none of them.
#[test]
fn captured_gossip_played_back_reflects_nothing() {
    let pair = relayed_pair();
    let delivered = pair
        .to_a
        .recorded_since(Instant::now() - Duration::from_secs(2));
    assert!(delivered.len() >= 4, "{} datagrams", delivered.len());
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    victim
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    for _ in 0..5 {
        for datagram in &delivered {
            victim.send_to(datagram, pair.a_real).unwrap();
        }
    }
    let (mut answers, mut answer_bytes) = (0, 0);
    let mut buf = vec![0; 1 << 16];
    let listening = Instant::now();
    while listening.elapsed() < Duration::from_millis(1500) {
        if let Ok(len) = victim.recv(&mut buf) {
            answers += 1;
            answer_bytes += len;
        }
    }
    eprintln!(
        "{} datagrams played back at a: {answers} answers ({answer_bytes} bytes) to the victim",
        5 * delivered.len()
    );
    assert_eq!(answers, 0, "a answered a replay ({answer_bytes} bytes)");
    assert!(dropped(&pair.a, "replayed") >= 5 * delivered.len() as u64);
}

/// B is cut off and what it sends is held back; B is killed, and once A
/// has declared it dead and the replay window has passed, everything held
/// back is delivered: B's heartbeats in it do not bring B back to life.
#[test]
fn held_back_heartbeats_do_not_revive_a_dead_node() {
    let pair = relayed_pair();
    pair.to_a.cut.store(true, Ordering::Relaxed);
    pair.to_b.cut.store(true, Ordering::Relaxed);
    let held_from = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    pair.b.signal("KILL");
    let killed = Instant::now();
    let held = pair.to_a.recorded_since(held_from);
    assert!(held.len() >= 4, "{} datagrams held back", held.len());
    wait_until(CONVERGE, "a to declare b dead", || members(&pair.a) == 1);
    std::thread::sleep(Duration::from_secs(11).saturating_sub(killed.elapsed()));
    let player = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut revived = false;
    for datagram in &held {
        player.send_to(datagram, pair.a_real).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        revived |= members(&pair.a) == 2;
    }
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(2) && !revived {
        revived = members(&pair.a) == 2;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !revived,
        "b came back to life from {} old datagrams",
        held.len()
    );
    assert!(dropped(&pair.a, "stale") >= held.len() as u64);
}

/// Puts `ring` in every node's key file, sends each SIGHUP, and waits
/// until each says it reloaded with `expected` (its stderr line).
fn roll(hosts: &[Shoal], files: &[PathBuf], ring: &[&Path], expected: &str) {
    for (host, file) in hosts.iter().zip(files) {
        write_ring(file, ring);
        host.signal("HUP");
        host.wait_for_log(expected, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} did not reload: `{expected}`", host.name()));
    }
}

/// A three-node mesh rolls from one cluster key to another without a
/// restart while every node is asked for an app: no request fails, no
/// gossip packet is refused, no member is lost, an app deployed in the
/// middle of the roll reaches every node, and afterwards the old key is
/// locked out.
#[test]
fn a_mesh_rolls_to_a_new_key_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.key"), dir.path().join("new.key"));
    let (old_fp, new_fp) = (keygen(&old), keygen(&new));
    let (hosts, files) = three_nodes_serving_hello(dir.path(), &old);
    let urls: Vec<String> = hosts.iter().map(|h| h.url("/hello")).collect();
    let load = Load::start(urls);
    std::thread::sleep(Duration::from_secs(1));

    // 1. The new key opens everywhere before anyone seals with it.
    let step = |sealing: &str, opening: &str| {
        format!("sealing with {sealing}, also opening with [{opening}]")
    };
    roll(&hosts, &files, &[&old, &new], &step(&old_fp, &new_fp));
    std::thread::sleep(Duration::from_secs(1));
    // 2. The new key seals: first on one node.
    roll(
        &hosts[..1],
        &files[..1],
        &[&new, &old],
        &step(&new_fp, &old_fp),
    );
    std::thread::sleep(Duration::from_secs(1));
    // An app deployed while the nodes seal under different keys reaches
    // every node over the peer API, and the load on /hello meets no 503
    // while the new state spreads (`readiness::Seen`).
    hosts[0].cli_ok(&shoal(), &["deploy", guests::HELLO, "--name", "midway"]);
    for host in &hosts {
        wait_until(CONVERGE, "every node to serve /midway", || {
            host.get("/midway").status == 200
        });
    }
    roll(
        &hosts[1..],
        &files[1..],
        &[&new, &old],
        &step(&new_fp, &old_fp),
    );
    std::thread::sleep(Duration::from_secs(1));
    // 3. The old key goes.
    roll(&hosts, &files, &[&new], &step(&new_fp, ""));
    std::thread::sleep(Duration::from_secs(2));
    let (sent, failures) = load.finish();
    eprintln!("{sent} requests during the roll, {} failed", failures.len());
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(sent > 100, "only {sent} requests");
    for host in &hosts {
        assert_eq!(members(host), 3, "{}", host.name());
        assert_eq!(dropped(host, "unauthenticated"), 0, "{}", host.name());
    }

    kept_out(&hosts[0], dir.path(), &old);
}

/// Three nodes, each with its own copy of the keyring `key`, serving the
/// hello guest; their key files.
fn three_nodes_serving_hello(dir: &Path, key: &Path) -> (Vec<Shoal>, Vec<PathBuf>) {
    let files: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("node-{i}.key"))).collect();
    let mut hosts: Vec<Shoal> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        write_ring(file, &[key]);
        let join: Vec<String> = hosts
            .first()
            .map(|seed| vec!["--join".to_string(), seed.gossip_addr()])
            .unwrap_or_default();
        let join: Vec<&str> = join.iter().map(String::as_str).collect();
        let data = dir.join(format!("data-{i}"));
        hosts.push(host(&data, file, &format!("n{i}"), &join));
    }
    for host in &hosts {
        wait_until(CONVERGE, "three live members", || members(host) == 3);
    }
    hosts[0].cli_ok(&shoal(), &["deploy", guests::HELLO, "--name", "hello"]);
    for host in &hosts {
        wait_until(CONVERGE, "every node to serve /hello", || {
            host.get("/hello").status == 200
        });
    }
    (hosts, files)
}

/// A node holding only the `old` key cannot join `member`'s mesh.
fn kept_out(member: &Shoal, dir: &Path, old: &Path) {
    let stale = host(
        &dir.join("stale"),
        old,
        "stale",
        &["--join", &member.gossip_addr()],
    );
    wait_until(CONVERGE, "the old key's packets to be refused", || {
        dropped(member, "unauthenticated") > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(members(member), 3);
    assert_eq!(members(&stale), 1);
}

/// A keyring file with a bad line is refused at start with the line's
/// number, and a bad file on SIGHUP leaves the keys in use.
#[test]
fn a_bad_keyring_names_its_line_and_a_bad_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    let fingerprint = keygen(&key);
    let ring = dir.path().join("ring.key");
    std::fs::write(
        &ring,
        format!("{}not a key\n", std::fs::read_to_string(&key).unwrap()),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (status, _, stderr) = run_to_exit(
        &shoal(),
        &[
            "host",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--gossip",
            "127.0.0.1:0",
            "--cluster-key-file",
            ring.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("shoal keygen"), "{stderr}");

    let node = host(&data, &key, "n", &[]);
    std::fs::copy(&ring, &key).unwrap();
    node.signal("HUP");
    node.wait_for_log("cluster keyring not reloaded", Duration::from_secs(10))
        .expect("the bad reload is reported");
    assert!(node.logs().contains("line 2"), "{}", node.logs());
    // Still serving, under the same key.
    assert_eq!(get(&format!("{}/v1/health", node.admin_url())).status, 200);
    assert!(!node.logs().contains("cluster keys reloaded"));
    assert!(node.logs().contains(&fingerprint));
}
