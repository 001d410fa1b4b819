//! The admin API against local processes and web pages: the token is
//! required on loopback too and the CLI finds it in the data dir; a
//! foreign Host, any Origin and a body of the wrong type are refused before
//! a route runs; the CLI sends its local token to its own host only; off
//! loopback the admin API has TLS (a recording relay between the CLI and
//! it sees no token), and peers still sync through it; the ingress serves
//! TLS with HTTP/2 by ALPN. `SHOAL_BIN` points the file at another binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_test_support::{Shoal, guests, run_to_exit, run_to_exit_env};

fn bin() -> String {
    shoal_test_support::shoal_bin!()
}

fn host(dir: &Path, args: &[&str]) -> Shoal {
    Shoal::host(&bin(), dir, args)
}

/// Sends one raw HTTP/1.1 request (`connection: close`) and returns the
/// status and body.
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer and close before reading a refused body.
    let _ = stream.write_all(body);
    let mut text = String::new();
    let _ = BufReader::new(stream).read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

#[test]
fn a_foreign_host_or_any_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let admin = shoal.admin.unwrap();
    let token = shoal.token();
    let spec = br#"{"name": "hello", "component": "0000000000000000000000000000000000000000000000000000000000000000"}"#;
    let put = |host: &str, extra: &str| {
        raw(
            admin,
            &format!(
                "PUT /v1/apps/hello HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json{extra}"
            ),
            spec,
        )
    };
    let (status, body) = put("evil.test:7070", "");
    assert_eq!(status, 403, "a rebound name was answered: {body}");
    assert!(body.contains("evil.test"), "{body}");
    let (status, body) = put(&admin.to_string(), "\r\norigin: http://evil.test:7070");
    assert_eq!(status, 403, "a web page was answered: {body}");
    let (status, body) = raw(
        admin,
        &format!(
            "GET /v1/health HTTP/1.1\r\nhost: evil.test:{}",
            admin.port()
        ),
        b"",
    );
    assert_eq!(status, 403, "health answered a rebound name: {body}");
    // By its address or as localhost the same request reaches the route.
    for name in [admin.to_string(), format!("localhost:{}", admin.port())] {
        let (status, body) = put(&name, "");
        assert!(![401, 403].contains(&status), "{name}: {status} {body}");
    }
}

#[test]
fn a_body_of_the_wrong_type_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let wasm = std::fs::read(guests::HELLO).unwrap();
    let reply = shoal.admin_send("POST", "/v1/components", "text/plain", &wasm);
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert!(reply.body.contains("application/wasm"), "{}", reply.body);
    let reply = shoal.admin_send("PUT", "/v1/apps/x", "text/plain", b"{}");
    assert_eq!(reply.status, 415, "{}", reply.body);
    // Nothing was stored.
    let stored = std::fs::read_dir(dir.path().join("components"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
    let reply = shoal.admin_send("POST", "/v1/components", "application/wasm", &wasm);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn without_the_token_loopback_is_refused_with_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let admin = shoal.admin.unwrap();
    let (status, body) = raw(
        admin,
        &format!("GET /v1/apps HTTP/1.1\r\nhost: {admin}"),
        b"",
    );
    assert_eq!(status, 401, "{body}");
    let file = dir.path().join("token");
    assert!(
        body.contains(file.to_str().unwrap()),
        "the refusal does not name {}: {body}",
        file.display()
    );
    let (status, body) = raw(
        admin,
        &format!("DELETE /v1/apps/x HTTP/1.1\r\nhost: {admin}"),
        b"",
    );
    assert_eq!(status, 401, "{body}");
    // The user at the keyboard notices nothing: the CLI reads the token.
    shoal.cli_ok(&bin(), &["deploy", guests::HELLO, "--name", "hello"]);
    let (table, _) = shoal.cli_ok(&bin(), &["ls"]);
    assert!(table.contains("hello"), "{table}");
}

/// A TCP relay on loopback to `upstream` that records every byte either
/// way; it lives as long as the test process.
fn recording_relay(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Arc::new(Mutex::new(Vec::new()));
    let recorded = record.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, recorded)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_cli_sends_the_local_token_to_its_own_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let token = shoal.token();
    let (relay, recorded) = recording_relay(shoal.admin.unwrap());
    let (status, _, stderr) = run_to_exit_env(
        &bin(),
        &["ls", "--admin", &format!("http://{relay}")],
        &[("SHOAL_DATA_DIR", dir.path().as_os_str())],
        Duration::from_secs(60),
    );
    assert!(
        !status.success() && stderr.contains("401") && stderr.contains("was not sent"),
        "the CLI talked to another address with the local token: {stderr}"
    );
    let bytes = recorded.lock().unwrap().clone();
    assert!(!bytes.is_empty(), "nothing went through the relay");
    assert!(
        !contains(&bytes, token.as_bytes()),
        "the local token went to another address"
    );
}

#[test]
fn a_recording_relay_never_sees_the_token_of_a_tls_admin() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &["--tls-self-signed"]);
    assert!(
        shoal.admin_url().starts_with("https://"),
        "{}",
        shoal.admin_url()
    );
    let token = shoal.token();
    let cert = dir.path().join("tls-cert.pem");
    let (relay, recorded) = recording_relay(shoal.admin.unwrap());
    let through_relay = |args: &[&str]| {
        let relay_url = format!("https://{relay}");
        let mut full = args.to_vec();
        full.extend([
            "--admin",
            relay_url.as_str(),
            "--cacert",
            cert.to_str().unwrap(),
            "--token",
            token.as_str(),
        ]);
        run_to_exit(&bin(), &full, Duration::from_secs(120))
    };
    let (status, _, stderr) = through_relay(&["deploy", guests::HELLO, "--name", "hello"]);
    assert!(
        status.success(),
        "deploy through the relay failed: {stderr}"
    );
    let (status, stdout, stderr) = through_relay(&["ls"]);
    assert!(status.success() && stdout.contains("hello"), "{stderr}");
    let bytes = recorded.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "little went through the relay");
    assert_eq!(bytes[0], 0x16, "the CLI did not start with a TLS handshake");
    assert!(
        !contains(&bytes, token.as_bytes()),
        "the token crossed the relay in clear"
    );
    assert!(
        !contains(&bytes, b"authorization"),
        "a request head crossed in clear"
    );
    // Locally the CLI finds the URL, the token and the certificate itself.
    let (status, stdout, stderr) = run_to_exit_env(
        &bin(),
        &["ls"],
        &[("SHOAL_DATA_DIR", dir.path().as_os_str())],
        Duration::from_secs(60),
    );
    assert!(status.success() && stdout.contains("hello"), "{stderr}");
    // The token does not count in clear on a TLS admin API.
    let admin = shoal.admin.unwrap();
    let (status, body) = raw(
        admin,
        &format!("GET /v1/apps HTTP/1.1\r\nhost: {admin}\r\nauthorization: Bearer {token}"),
        b"",
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn an_admin_api_off_loopback_without_tls_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut command = Command::new(bin());
    command.arg("host").arg("--data-dir").arg(dir.path()).args([
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "0.0.0.0:0",
        "--gossip",
        "127.0.0.1:0",
    ]);
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = lines.join().unwrap().join("\n");
    let status = exited.unwrap_or_else(|| {
        panic!("the host served its admin API off loopback without TLS: {text}")
    });
    assert!(!status.success());
    assert!(
        text.contains("--tls-self-signed") && text.contains("--tls-cert"),
        "the refusal does not say how to make TLS: {text}"
    );
}

/// `curl ARGS...` (bounded), its exit status and stdout.
fn curl(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new("timeout")
        .arg("30")
        .arg("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is not installed");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn curl_reaches_a_tls_ingress_over_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &["--ingress-tls-self-signed"]);
    shoal.cli_ok(&bin(), &["deploy", guests::HELLO, "--name", "hello"]);
    let cert = dir.path().join("tls-cert.pem");
    let cert = cert.to_str().unwrap();
    let url = format!("https://{}/hello", shoal.addr);
    let (code, out) = curl(&["--http2", "--cacert", cert, "-w", "\n%{http_version}", &url]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n2"), "not HTTP/2: {out}");
    assert!(out.contains("hello"), "{out}");
    let (code, out) = curl(&[
        "--http1.1",
        "--cacert",
        cert,
        "-w",
        "\n%{http_version}",
        &url,
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n1.1"), "not HTTP/1.1: {out}");
    // Without the certificate curl refuses the host: the name is checked.
    let (code, _) = curl(&[&url]);
    assert_eq!(
        code,
        Some(60),
        "curl trusted a self-signed certificate it was not given"
    );
    // `shoal run` takes a certificate and key too.
    let key = dir.path().join("tls-key.pem");
    let run = Shoal::run(
        &bin(),
        guests::HELLO,
        &["--tls-cert", cert, "--tls-key", key.to_str().unwrap()],
    );
    let url = format!("https://{}/", run.addr);
    let (code, out) = curl(&["--http2", "--cacert", cert, "-w", "\n%{http_version}", &url]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.ends_with("\n2") && out.contains("hello"), "{out}");
}

/// GETs `path` from a TLS admin API with curl, trusting the host's
/// self-signed certificate; the answer, if it succeeded.
fn admin_text(host: &Shoal, dir: &Path, path: &str) -> Option<String> {
    let cert = dir.join("tls-cert.pem");
    let auth = format!("authorization: Bearer {}", host.token());
    let url = format!("{}{path}", host.admin_url());
    let (code, out) = curl(&["-f", "--cacert", cert.to_str().unwrap(), "-H", &auth, &url]);
    (code == Some(0)).then_some(out)
}

fn admin_json(host: &Shoal, dir: &Path, path: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&admin_text(host, dir, path)?).ok()
}

#[test]
fn members_with_tls_listeners_still_sync_and_forward() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tls = ["--tls-self-signed", "--ingress-tls-self-signed"];
    let a = host(a_dir.path(), &[&tls[..], &["--name", "node-a"]].concat());
    let key = a_dir.path().join("cluster.key");
    let join = [
        "--name",
        "node-b",
        "--cluster-key-file",
        key.to_str().unwrap(),
        "--join",
        &a.gossip_addr(),
    ];
    let b = host(b_dir.path(), &[&tls[..], &join[..]].concat());
    a.cli_ok(&bin(), &["deploy", guests::HELLO, "--name", "hello"]);
    // node-b learns the app through the peer API of node-a's TLS listener.
    let started = Instant::now();
    let holder = loop {
        let view = admin_json(&b, b_dir.path(), "/v1/apps/hello");
        let ready = view
            .as_ref()
            .and_then(|v| v["ready_on"][0].as_str().map(str::to_string));
        if let Some(holder) = ready {
            break holder;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "node-b never saw the app ready: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The other node forwards to the holder's TLS ingress.
    let (other, dir) = if holder == "node-a" {
        (&b, &b_dir)
    } else {
        (&a, &a_dir)
    };
    let cert = dir.path().join("tls-cert.pem");
    let url = format!("https://{}/hello", other.addr);
    let started = Instant::now();
    loop {
        let (code, out) = curl(&["-f", "--cacert", cert.to_str().unwrap(), &url]);
        if code == Some(0) && out.contains("hello") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} never forwarded to {holder}'s TLS ingress: {code:?} {out}",
            other.name()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = admin_text(other, dir.path(), "/metrics").unwrap_or_default();
    let forwarded = metrics
        .lines()
        .find(|l| l.starts_with("shoal_forwarded_requests_total{outcome=\"ok\"}"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok());
    assert!(
        forwarded.is_some_and(|n| n >= 1.0),
        "not forwarded: {metrics}"
    );
}
