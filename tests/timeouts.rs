//! Timeouts and connection limits, end to end: a host under a low open-file
//! limit flooded with half-sent requests keeps answering and closes them;
//! idle and head-less connections are closed on time; shutdown drains for a
//! bounded time; and in a mesh, a frozen (SIGSTOPped) holder costs its
//! forwarded requests a 504 at their deadline plus the grace while deploys
//! still spread. Settings reach `shoal` through its `SHOAL_*` variables, so
//! the same tests run against an older binary (`SHOAL_BIN`) that lacks the
//! flags, and fail there on behaviour rather than on a flag. Every wait is
//! bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use shoal_test_support::{Mesh, Shoal, guests, wait_until};

/// The binary under test: `SHOAL_BIN`, else the one built here.
fn shoal() -> String {
    shoal_test_support::shoal_bin!()
}

/// A script that sets `env` and the open-file limit, then becomes `shoal`
/// (so signals reach it directly).
fn launcher(dir: &Path, nofile: Option<u32>, env: &[(&str, &str)]) -> String {
    let path = dir.join("shoal.sh");
    let mut script = String::from("#!/bin/sh\nset -e\n");
    if let Some(n) = nofile {
        script.push_str(&format!("ulimit -n {n}\n"));
    }
    for (key, value) in env {
        script.push_str(&format!("export {key}='{value}'\n"));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", shoal()));
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// GETs `url`, giving up after `within`; `None` if no answer came.
fn get_within(url: &str, within: Duration) -> Option<(u16, String, Duration)> {
    get_as(url, within, None)
}

/// GETs `path` from `host`'s admin API with its token, within `within`.
fn admin_within(host: &Shoal, path: &str, within: Duration) -> Option<(u16, String, Duration)> {
    let url = format!("{}{path}", host.admin_url());
    get_as(&url, within, Some(&host.token()))
}

fn get_as(url: &str, within: Duration, token: Option<&str>) -> Option<(u16, String, Duration)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(within))
        .build()
        .into();
    let started = Instant::now();
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    Some((response.status().as_u16(), body, started.elapsed()))
}

/// Opens up to `n` connections to `addr` (for 10 s at most), each sending
/// part of a request head; each with when it was connected.
fn half_sent(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    let started = Instant::now();
    let mut open = Vec::new();
    for i in 0..n {
        if started.elapsed() > Duration::from_secs(10) {
            eprintln!("gave up opening connections to {addr} after {i}");
            break;
        }
        // A port of a connection the server just closed may still be in
        // its TIME_WAIT: such a connect is retried after a second.
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(1500)) else {
            continue;
        };
        let _ = write!(stream, "GET /hello HTTP/1.1\r\nhost: {addr}\r\nx-part: {i}");
        open.push((stream, Instant::now()));
    }
    open
}

/// Whether the server closed `stream`, waiting until `by` at most.
fn closed_by(stream: &mut TcpStream, by: Instant) -> bool {
    let wait = by
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // A refusal or any answer is followed by the close.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// What went wrong, collected so one run against an old binary reports
/// every failing point, not only the first.
type Failures = Vec<String>;

/// A host under `ulimit -n 256` (header-read timeout 3 s), joined by a peer
/// without the limit, serving `/hello` and a probe allowed to call an
/// upstream; returns them, and the probe's URL that calls out.
fn flooded_pair(scratch: &Path) -> (Shoal, Shoal, String) {
    let bin = launcher(scratch, Some(256), &[("SHOAL_HEADER_READ_TIMEOUT", "3s")]);
    let data = scratch.join("data");
    let host = Shoal::host(&bin, &data, &[]);
    let key = data.join("cluster.key");
    let peer_dir = scratch.join("peer");
    let join = [
        "--join",
        &host.gossip_addr(),
        "--cluster-key-file",
        key.to_str().unwrap(),
    ];
    let peer = Shoal::host(&shoal(), &peer_dir, &join);
    let upstream = shoal_test_support::upstream("pong");
    host.cli_ok(&shoal(), &["deploy", guests::HELLO, "--name", "hello"]);
    let allow = upstream.to_string();
    let probe = [
        "deploy",
        guests::PROBE,
        "--name",
        "probe",
        "--allow-outbound",
        &allow,
    ];
    host.cli_ok(&shoal(), &probe);
    let fetch = host.url(&format!("/probe/fetch?url=http://{upstream}/"));
    for url in [&host.url("/hello"), &fetch] {
        let ready = || get_within(url, Duration::from_secs(30)).is_some_and(|r| r.0 == 200);
        wait_until(Duration::from_secs(30), url, ready);
    }
    (host, peer, fetch)
}

/// Each of `checks` (what, URL) answers 200 within 2 s.
fn answers(checks: &[(&str, &str)], failures: &mut Failures) {
    for (what, url) in checks {
        match get_within(url, Duration::from_secs(2)) {
            Some((200, _, took)) => eprintln!("{what} answered in {took:?} during the flood"),
            other => failures.push(format!("{what} did not answer 200 within 2 s: {other:?}")),
        }
    }
}

/// Deploys cross both ways within 5 s: `host` pulls from `peer` (an
/// outbound connection of its own) and `peer` pulls from `host`'s admin
/// listener.
fn deploys_cross(host: &Shoal, peer: &Shoal, failures: &mut Failures) {
    peer.cli_ok(&shoal(), &["deploy", guests::HELLO, "--name", "late"]);
    let (status, _, stderr) = host.cli(&shoal(), &["deploy", guests::HELLO, "--name", "local"]);
    if !status.success() {
        failures.push(format!(
            "a deploy on the flooded host failed: {}",
            stderr.trim()
        ));
    }
    let deployed = Instant::now();
    let knows = |h: &Shoal, app: &str| {
        admin_within(h, &format!("/v1/apps/{app}"), Duration::from_secs(2))
            .is_some_and(|r| r.0 == 200)
    };
    let both = || knows(host, "late") && knows(peer, "local");
    while !both() && deployed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if both() {
        eprintln!(
            "deploys crossed in {:?} during the flood",
            deployed.elapsed()
        );
    } else {
        failures
            .push("deploys did not cross between the flooded host and its peer within 5 s".into());
    }
}

/// Every stale connection is closed by the server within `timeout` of its
/// connect (plus the sweeper's quarter of it and some slack).
fn stale_closed(stale: &mut [(TcpStream, Instant)], timeout: Duration, failures: &mut Failures) {
    let slack = Duration::from_millis(1500);
    let still_open = stale
        .iter_mut()
        .map(|(stream, connected)| closed_by(stream, *connected + timeout + slack))
        .filter(|closed| !closed)
        .count();
    eprintln!(
        "{still_open} of {} stale connections still open",
        stale.len()
    );
    if still_open > 0 {
        failures.push(format!(
            "{still_open} half-sent connections still open past the {timeout:?} header-read timeout"
        ));
    }
}

#[test]
fn half_sent_requests_under_a_low_file_limit_leave_the_host_answering() {
    let scratch = tempfile::tempdir().unwrap();
    let (host, peer, fetch) = flooded_pair(scratch.path());
    let health = format!("{}/v1/health", host.admin_url());

    // 300 half-sent requests on each listener: more than the process has
    // descriptors for.
    let flooded = Instant::now();
    let mut stale = half_sent(host.addr, 300);
    stale.extend(half_sent(host.admin.unwrap(), 300));
    eprintln!(
        "{} half-sent connections open after {:?}",
        stale.len(),
        flooded.elapsed()
    );

    let mut failures = Failures::new();
    let hello = host.url("/hello");
    let checks = [
        ("/v1/health", health.as_str()),
        ("/hello", hello.as_str()),
        ("a guest's outbound call", fetch.as_str()),
    ];
    answers(&checks, &mut failures);
    deploys_cross(&host, &peer, &mut failures);
    stale_closed(&mut stale, Duration::from_secs(3), &mut failures);
    if host
        .wait_for_log("connection cap reached", Duration::from_secs(1))
        .is_none()
    {
        failures.push("no log line says the connection cap was reached".into());
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // And the host still serves once they are gone.
    assert_eq!(
        get_within(&health, Duration::from_secs(2)).map(|r| r.0),
        Some(200)
    );
}

/// Asks `addr` for `len` bytes and reads none of them.
fn ask_and_never_read(addr: SocketAddr, len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /bytes?n={len} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

/// A connection that never sends a byte goes at the header-read timeout
/// (1 s); one that made a request stays through it (it is idle, not slow)
/// and goes at the idle timeout (3 s).
fn headless_and_idle_close(addr: SocketAddr, failures: &mut Failures) {
    let opened = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut kept = TcpStream::connect(addr).unwrap();
    write!(kept, "GET / HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 1024];
    let n = kept.read(&mut answer).unwrap_or(0);
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
    if !closed_by(&mut silent, opened + Duration::from_millis(2000)) {
        failures.push("a connection that sent nothing was open 2 s after connecting".into());
    }
    let silent_closed = opened.elapsed();
    if closed_by(&mut kept, opened + Duration::from_millis(2500)) {
        failures.push("an idle keep-alive closed before the idle timeout".into());
    } else if !closed_by(&mut kept, opened + Duration::from_millis(5000)) {
        failures
            .push("an idle keep-alive was open 5 s after its request (idle timeout 3 s)".into());
    }
    eprintln!(
        "head-less connection closed after {silent_closed:?}, idle one after {:?}",
        opened.elapsed()
    );
}

/// SIGTERM with a half-sent request open: `run` exits at the drain limit (1 s).
fn shutdown_is_bounded(run: &mut Shoal, failures: &mut Failures) {
    let mut half = half_sent(run.addr, 1);
    let _ = half[0].0.write_all(b"\r\nx-more: 1");
    let signalled = Instant::now();
    run.signal("TERM");
    match run.wait_exit(Duration::from_secs(8)) {
        Some(_) => eprintln!("exited {:?} after SIGTERM", signalled.elapsed()),
        None => failures.push("still running 8 s after SIGTERM (drain limit 1 s)".into()),
    }
    if signalled.elapsed() > Duration::from_secs(3) {
        let took = signalled.elapsed();
        failures.push(format!("shutdown took {took:?} with a 1 s drain limit"));
    }
}

#[test]
fn idle_headless_and_unread_connections_close_on_time_and_shutdown_is_bounded() {
    let scratch = tempfile::tempdir().unwrap();
    let settings = [
        ("SHOAL_HEADER_READ_TIMEOUT", "1s"),
        ("SHOAL_IDLE_TIMEOUT", "3s"),
        ("SHOAL_DRAIN_TIMEOUT", "1s"),
    ];
    let mut run = Shoal::run(
        &launcher(scratch.path(), None, &settings),
        guests::PROBE,
        &[],
    );
    let mut failures = Failures::new();

    // A client that asks for 32 MiB and reads none of it: the response
    // waits on it for the idle timeout, then the connection is dropped.
    const BIG: usize = 32 << 20;
    let asked = Instant::now();
    let mut unread = ask_and_never_read(run.addr, BIG);
    headless_and_idle_close(run.addr, &mut failures);
    std::thread::sleep(
        (asked + Duration::from_millis(4500)).saturating_duration_since(Instant::now()),
    );
    unread
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    let _ = unread.read_to_end(&mut received);
    eprintln!(
        "a client that stopped reading got {} of {BIG} bytes",
        received.len()
    );
    if received.len() >= BIG {
        failures.push(format!(
            "a response stalled on its client for 4.5 s was still whole ({} bytes; idle timeout 3 s)",
            received.len()
        ));
    }

    shutdown_is_bounded(&mut run, &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
}

fn admin(host: &Shoal, path: &str) -> Option<serde_json::Value> {
    let (status, body, _) = admin_within(host, path, Duration::from_secs(5))?;
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

/// Sends SIGCONT to a stopped host when dropped, even when the test fails.
struct Stopped<'a>(&'a Shoal);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[test]
fn a_frozen_holder_costs_its_requests_a_timeout_and_stalls_no_deploy() {
    const DEADLINE: Duration = Duration::from_secs(1);
    const GRACE: Duration = Duration::from_secs(2);
    let mesh = Mesh::start(&shoal(), 3, &[]);
    let bin = shoal();
    mesh.host(0).cli_ok(
        &bin,
        &["deploy", guests::HELLO, "--name", "solo", "--timeout", "1s"],
    );
    let mut holder = String::new();
    wait_until(Duration::from_secs(30), "a ready holder of solo", || {
        let Some(view) = admin(mesh.host(0), "/v1/apps/solo") else {
            return false;
        };
        let ready = view["ready_on"].as_array().cloned().unwrap_or_default();
        if let [node] = ready.as_slice() {
            holder = node.as_str().unwrap().to_string();
        }
        !holder.is_empty()
    });
    let h = mesh.index_of(&holder).expect("the holder is up");
    let (x, y) = (mesh.host((h + 1) % 3), mesh.host((h + 2) % 3));
    for host in [x, y] {
        wait_until(
            Duration::from_secs(30),
            "solo served through the others",
            || get_within(&host.url("/solo"), Duration::from_secs(5)).is_some_and(|r| r.0 == 200),
        );
    }

    mesh.host(h).signal("STOP");
    let _stopped = Stopped(mesh.host(h));
    let frozen = Instant::now();
    // Requests through both others go to the frozen holder.
    let requests: Vec<_> = [
        x.url("/solo"),
        y.url("/solo"),
        x.url("/solo"),
        y.url("/solo"),
    ]
    .into_iter()
    .map(|url| std::thread::spawn(move || get_within(&url, Duration::from_secs(15))))
    .collect();
    // Deploys on X must reach Y, whatever the frozen node holds up.
    x.cli_ok(&bin, &["deploy", guests::HELLO, "--name", "first"]);
    std::thread::sleep(Duration::from_millis(1500));
    x.cli_ok(&bin, &["deploy", guests::HELLO, "--name", "second"]);
    let deployed = Instant::now();
    let mut failures = Vec::new();
    while admin(y, "/v1/apps/second").is_none() && deployed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    match admin(y, "/v1/apps/second") {
        Some(_) => eprintln!(
            "a deploy on {} reached {} in {:?} with {holder} frozen",
            x.name(),
            y.name(),
            deployed.elapsed()
        ),
        None => failures.push(format!(
            "a deploy on {} did not reach {} within 5 s with {holder} frozen",
            x.name(),
            y.name()
        )),
    }
    for request in requests {
        match request.join().unwrap() {
            Some((504, body, took)) if took <= DEADLINE + GRACE + Duration::from_millis(750) => {
                eprintln!("forwarded request: 504 after {took:?}: {}", body.trim());
            }
            other => failures.push(format!(
                "a forwarded request to the frozen holder did not fail with 504 within {:?}: {other:?}",
                DEADLINE + GRACE
            )),
        }
    }
    eprintln!("holder frozen for {:?}", frozen.elapsed());
    assert!(failures.is_empty(), "{failures:#?}");
}
