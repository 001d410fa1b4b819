//! A page-only server for the dashboard at a size no loopback mesh of
//! processes reaches: it serves the real `host/ui` files, under the real
//! Content-Security-Policy, with the contract's JSON and event-stream
//! shapes for a hundred nodes and thirty apps. It records the actions the
//! page posts.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const INDEX: &str = include_str!("../../host/ui/index.html");
const SCRIPT: &str = include_str!("../../host/ui/app.js");
const STYLE: &str = include_str!("../../host/ui/app.css");
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
pub const CSRF: &str = "0123456789abcdef0123456789abcdef";

/// Nodes and apps of the fixture; `dead` nodes are every 20th.
pub const NODES: usize = 100;
pub const APPS: usize = 30;

#[derive(Default)]
struct Seen {
    removed: Vec<String>,
    bad_posts: usize,
}

pub struct Fixture {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn node_name(i: usize) -> String {
    format!("n{i:03}")
}

fn app_name(i: usize) -> String {
    format!("app-{i:02}")
}

fn dead(i: usize) -> bool {
    i % 20 == 7
}

impl Fixture {
    pub fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = shared.clone();
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
        Fixture { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The apps the page removed, and how many posts lacked the CSRF header.
    pub fn seen(&self) -> (Vec<String>, usize) {
        let seen = self.seen.lock().unwrap();
        (seen.removed.clone(), seen.bad_posts)
    }
}

const KINDS: [&str; 3] = ["deploy", "remove", "rollback"];

fn overview(removed: &[String]) -> Value {
    let apps: Vec<Value> = (0..APPS)
        .map(app_name)
        .filter(|a| !removed.contains(a))
        .enumerate()
        .map(|(i, name)| {
            let holders: Vec<String> = (0..3).map(|k| node_name((i * 3 + k) % NODES)).collect();
            let ready = if i == 4 { 2 } else { 3 };
            let ready_on = &holders[..ready];
            json!({"name": name, "version": 1 + i % 4, "route": format!("/{name}"), "hostname": null,
                "replicas": "3", "wanted": 3, "ready": ready,
                "nodes": holders, "ready_on": ready_on,
                "req_per_s": (i * 7 % 50) as f64 + 0.5, "errors_per_s": if i == 2 { 1.5 } else { 0.0 },
                "error_rate": if i == 2 { 0.05 } else { 0.0 }, "p50_ms": 0.4, "p99_ms": 2.5 + i as f64,
                "kv_bytes": i * 1000, "kv_keys": i, "deployed_at": now_ms() / 1000 - 600,
                "can_roll_back": i % 4 != 0})
        })
        .collect();
    let nodes: Vec<Value> = (0..NODES)
        .map(|i| {
            json!({"name": node_name(i), "address": format!("127.0.0.1:{}", 7000 + i),
                "ingress": format!("127.0.0.1:{}", 8000 + i), "live": !dead(i), "me": i == 0,
                "load": i % 9, "apps": [app_name(i % APPS)], "version": "0.9.0",
                "uptime_secs": 3600 + i * 61, "req_per_s": (i % 13) as f64,
                "errors_per_s": 0.0, "figures_age_ms": 700})
        })
        .collect();
    let events: Vec<Value> = (0..12)
        .map(|i| {
            json!({"at_ms": now_ms() - i * 45_000, "kind": KINDS[i as usize % 3],
            "app": app_name(i as usize), "version": 2, "origin": node_name(i as usize)})
        })
        .collect();
    json!({"node": node_name(0), "version": "0.9.0", "generated_at_ms": now_ms(),
        "nodes": nodes, "apps": apps, "events": events})
}

fn sample(t_ms: u64) -> Value {
    let wave = ((t_ms / 1000) % 60) as f64;
    let apps: serde_json::Map<String, Value> = (0..APPS)
        .map(|i| (app_name(i), json!({"rps": (i * 7 % 50) as f64 + wave / 4.0, "eps": if i == 2 { 1.5 } else { 0.0 }, "p50_ms": 0.4, "p99_ms": 2.5})))
        .collect();
    let nodes: serde_json::Map<String, Value> = (0..NODES)
        .map(|i| (node_name(i), json!({"rps": if dead(i) { 0.0 } else { (i % 13) as f64 + wave / 8.0 }, "eps": 0.0, "live": !dead(i)})))
        .collect();
    json!({"t_ms": t_ms, "apps": apps, "nodes": nodes})
}

fn serve(mut stream: TcpStream, seen: &Mutex<Seen>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    let mut csrf = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        csrf |= lower.starts_with("x-shoal-csrf:") && header.trim().ends_with(CSRF);
    }
    let send = |stream: &mut TcpStream, status: &str, kind: &str, body: &str| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncontent-security-policy: {CSP}\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    };
    match (method, path.as_str()) {
        ("GET", "/ui/") => {
            let page = INDEX
                .replace("{{CSRF}}", CSRF)
                .replace("{{NODE}}", &node_name(0));
            send(&mut stream, "200 OK", "text/html; charset=utf-8", &page);
        }
        ("GET", "/ui/app.js") => send(&mut stream, "200 OK", "text/javascript", SCRIPT),
        ("GET", "/ui/app.css") => send(&mut stream, "200 OK", "text/css", STYLE),
        ("GET", "/ui/api/overview") => {
            let removed = seen.lock().unwrap().removed.clone();
            send(
                &mut stream,
                "200 OK",
                "application/json",
                &overview(&removed).to_string(),
            );
        }
        ("GET", "/ui/api/stream") => stream_samples(stream),
        ("GET", p) if p.starts_with("/ui/api/logs/") => {
            stream_logs(stream, &p["/ui/api/logs/".len()..])
        }
        ("POST", p) if p.starts_with("/ui/api/apps/") && p.ends_with("/remove") => {
            let app = p["/ui/api/apps/".len()..p.len() - "/remove".len()].to_string();
            let mut seen = seen.lock().unwrap();
            if !csrf {
                seen.bad_posts += 1;
                return send(
                    &mut stream,
                    "403 Forbidden",
                    "application/json",
                    r#"{"error":"no CSRF"}"#,
                );
            }
            seen.removed.push(app.clone());
            send(
                &mut stream,
                "200 OK",
                "application/json",
                &json!({"removed": app}).to_string(),
            );
        }
        _ => send(
            &mut stream,
            "404 Not Found",
            "application/json",
            r#"{"error":"not here"}"#,
        ),
    }
}

fn sse_head(stream: &mut TcpStream) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).is_ok()
}

fn stream_samples(mut stream: TcpStream) {
    if !sse_head(&mut stream) {
        return;
    }
    let now = now_ms();
    let history: Vec<Value> = (0..120).rev().map(|k| sample(now - k * 1000)).collect();
    let first = format!(
        "event: history\ndata: {}\n\n",
        json!({ "samples": history })
    );
    if stream.write_all(first.as_bytes()).is_err() {
        return;
    }
    while stream
        .write_all(format!("event: sample\ndata: {}\n\n", sample(now_ms())).as_bytes())
        .is_ok()
    {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn stream_logs(mut stream: TcpStream, app: &str) {
    if !sse_head(&mut stream) {
        return;
    }
    for seq in 0.. {
        let line = json!({"node": node_name(seq as usize % 3), "seq": seq, "at_ms": now_ms(),
            "text": format!("{app} says hello #{seq}")});
        if stream
            .write_all(format!("event: line\ndata: {line}\n\n").as_bytes())
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(if seq < 5 { 0 } else { 700 }));
    }
}
