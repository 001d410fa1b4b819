//! Helpers for Shoal's end-to-end tests: the guest components, a handle on a
//! running `shoal` process that is killed on drop, and a small HTTP client.
//! Every wait here is bounded.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Paths of the guest components, built by this crate's build script.
mod mesh;
mod traffic;

pub use mesh::Mesh;
pub use traffic::{Noise, echo_duplex, upstream};

pub mod guests {
    /// The smallest WASIp2 hello world.
    pub const HELLO: &str = env!("SHOAL_GUEST_HELLO");
    /// A WASIp2 guest with one route per tested behaviour.
    pub const PROBE: &str = env!("SHOAL_GUEST_PROBE");
    /// A WASIp3 (`wasi:http/handler@0.3.0`) guest.
    pub const P3_HELLO: &str = env!("SHOAL_GUEST_P3_HELLO");
    /// A command component with no HTTP handler.
    pub const CLI_ONLY: &str = env!("SHOAL_GUEST_CLI_ONLY");
    /// A guest written with `wstd` (WASIp2).
    pub const COMPAT_WSTD: &str = env!("SHOAL_GUEST_COMPAT_WSTD");
    /// A guest written with spin-sdk 7 (WASIp3).
    pub const COMPAT_SPIN: &str = env!("SHOAL_GUEST_COMPAT_SPIN");
    /// A WASIp2 guest with one route per key-value and config call, on
    /// `wasi:keyvalue@0.2.0-draft2` and `wasi:config@0.2.0-draft-2024-09-27`.
    pub const KV_PROBE: &str = env!("SHOAL_GUEST_KV_PROBE");
    /// A guest on `wasi:keyvalue@0.2.0-draft` and `wasi:config@0.2.0-rc.1`
    /// as a wasmtime or wasmCloud user writes it (WASIp2).
    pub const COMPAT_WASI_KV: &str = env!("SHOAL_GUEST_COMPAT_WASI_KV");
    /// A guest written with spin-sdk 7's `key_value` and `variables`
    /// (WASIp3).
    pub const COMPAT_SPIN_KV: &str = env!("SHOAL_GUEST_COMPAT_SPIN_KV");
    /// A guest written with spin-sdk 5.2's `key_value` and `variables`
    /// (WASIp2, `fermyon:spin@2.0.0`).
    pub const COMPAT_SPIN5: &str = env!("SHOAL_GUEST_COMPAT_SPIN5");
}

/// Paths of the examples (`examples/`), built with their release profile.
pub mod examples {
    /// `examples/hello`.
    pub const HELLO: &str = env!("SHOAL_EXAMPLE_HELLO");
    /// `examples/json-api`.
    pub const JSON_API: &str = env!("SHOAL_EXAMPLE_JSON_API");
    /// `examples/router`.
    pub const ROUTER: &str = env!("SHOAL_EXAMPLE_ROUTER");
    /// `examples/fetch`.
    pub const FETCH: &str = env!("SHOAL_EXAMPLE_FETCH");
    /// `examples/stream`.
    pub const STREAM: &str = env!("SHOAL_EXAMPLE_STREAM");
    /// `examples/counter`.
    pub const COUNTER: &str = env!("SHOAL_EXAMPLE_COUNTER");
}

/// How long a `shoal` process may take to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything a process wrote to stderr, line by line, shared with a reader thread.
#[derive(Default)]
struct Lines {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Lines {
    fn wait_for(&self, timeout: Duration, mut found: impl FnMut(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(line) = guard.0[seen..].iter().find(|l| found(l)) {
                return Some(line.clone());
            }
            seen = guard.0.len();
            let now = Instant::now();
            if now >= deadline || guard.1 {
                return None;
            }
            guard = self.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// A running `shoal` process; killed when dropped.
pub struct Shoal {
    child: Child,
    stderr: Arc<Lines>,
    /// The address it serves HTTP on.
    pub addr: SocketAddr,
    /// The address of its admin API (`shoal host` only).
    pub admin: Option<SocketAddr>,
    /// Its gossip address and node name (`shoal host` only).
    pub gossip: Option<(SocketAddr, String)>,
    /// Its data directory (`shoal host` only).
    pub data_dir: Option<PathBuf>,
    /// A directory that lives as long as the process (its compile cache).
    scratch: Option<tempfile::TempDir>,
    /// `http` or `https`, as the admin API announced itself.
    admin_scheme: &'static str,
}

impl Shoal {
    /// Starts `shoal run COMPONENT --listen 127.0.0.1:0 ARGS...` with an
    /// empty compile cache of its own, and waits until it serves.
    pub fn run(bin: &str, component: &str, args: &[&str]) -> Shoal {
        let cache = tempfile::tempdir().unwrap();
        let mut shoal = Shoal::run_with_cache(bin, component, args, cache.path());
        shoal.scratch = Some(cache);
        shoal
    }

    /// Like [`Shoal::run`] with the given compile cache directory.
    pub fn run_with_cache(bin: &str, component: &str, args: &[&str], cache: &Path) -> Shoal {
        let mut command = Command::new(bin);
        command
            .args(["run", component, "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SHOAL_CACHE_DIR", cache)
            .env("SHOAL_LOG", "info")
            .env("NO_COLOR", "1");
        Shoal::spawn(command)
    }

    /// Starts `shoal host --data-dir DIR --listen :0 --admin :0 --gossip :0
    /// ARGS...` and waits until both its ingress and admin API serve.
    pub fn host(bin: &str, data_dir: &Path, args: &[&str]) -> Shoal {
        let mut command = Command::new(bin);
        command.arg("host").arg("--data-dir").arg(data_dir).args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        if !args.contains(&"--gossip") {
            command.args(["--gossip", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .env("SHOAL_LOG", "info")
            .env("NO_COLOR", "1");
        let mut shoal = Shoal::spawn(command);
        let line = shoal
            .stderr
            .wait_for(READY_TIMEOUT, |l| l.starts_with("admin API on http"))
            .expect("the admin API did not come up");
        shoal.admin = Some(address_in(&line));
        shoal.admin_scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        shoal.data_dir = Some(data_dir.to_path_buf());
        let line = shoal
            .stderr
            .wait_for(Duration::from_secs(1), |l| l.starts_with("gossip on "))
            .expect("no gossip line");
        // "gossip on ADDR as node `NAME` (...)"
        let mut words = line.split_whitespace().skip(2);
        let addr = words
            .next()
            .and_then(|w| w.parse().ok())
            .expect("gossip address");
        let name = words
            .nth(2)
            .map(|w| w.trim_matches('`').to_string())
            .expect("node name");
        shoal.gossip = Some((addr, name));
        shoal
    }

    /// The process id, to read its `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most memory the process has had resident, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib >> 10
    }

    /// The node name of a host.
    pub fn name(&self) -> &str {
        &self.gossip.as_ref().expect("not a host").1
    }

    /// The gossip address of a host, for `--join`.
    pub fn gossip_addr(&self) -> String {
        self.gossip.as_ref().expect("not a host").0.to_string()
    }

    /// The admin API's base URL (`shoal host` only).
    pub fn admin_url(&self) -> String {
        format!(
            "{}://{}",
            self.admin_scheme,
            self.admin.expect("not a host")
        )
    }

    /// The admin token the host keeps in its data dir (`shoal host` only).
    pub fn token(&self) -> String {
        let dir = self.data_dir.as_ref().expect("not a host");
        let token = std::fs::read_to_string(dir.join("token")).expect("no token in the data dir");
        token.trim().to_string()
    }

    /// GETs `path` from the admin API with the host's token.
    pub fn admin_get(&self, path: &str) -> Reply {
        let started = Instant::now();
        let request = agent()
            .get(format!("{}{path}", self.admin_url()))
            .header("authorization", format!("Bearer {}", self.token()));
        reply(started, request.call())
    }

    /// Sends `body` of `content_type` to the admin API with the token.
    pub fn admin_send(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let started = Instant::now();
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.admin_url()))
            .header("authorization", format!("Bearer {}", self.token()))
            .header("content-type", content_type)
            .body(body.to_vec())
            .unwrap();
        reply(started, agent().run(request))
    }

    /// Runs a CLI verb against this host's admin API (bounded), returning
    /// its exit status, stdout and stderr; it reads the token in the data dir.
    pub fn cli(&self, bin: &str, args: &[&str]) -> (ExitStatus, String, String) {
        let mut full: Vec<&str> = args.to_vec();
        let admin = self.admin_url();
        full.extend(["--admin", &admin]);
        let dir = self.data_dir.as_deref().expect("not a host");
        run_to_exit_env(
            bin,
            &full,
            &[("SHOAL_DATA_DIR", dir.as_os_str())],
            Duration::from_secs(120),
        )
    }

    /// Like [`Shoal::cli`], asserting success; returns stdout and stderr.
    pub fn cli_ok(&self, bin: &str, args: &[&str]) -> (String, String) {
        let (status, stdout, stderr) = self.cli(bin, args);
        assert!(
            status.success(),
            "`shoal {}` failed: {stderr}",
            args.join(" ")
        );
        (stdout, stderr)
    }

    /// Starts `wasmtime serve -Scli` on `component` if `wasmtime` is
    /// installed, to prove a component portable; `None` if it is not.
    pub fn wasmtime_serve(component: &str) -> Option<Shoal> {
        let found = Command::new("wasmtime")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("wasmtime is not installed; skipping the portability check");
            return None;
        }
        let mut command = Command::new("wasmtime");
        command.args(["serve", "-Scli", "--addr", "127.0.0.1:0", component]);
        Some(Shoal::spawn(command))
    }

    /// Spawns `command` and waits for its `on http://ADDR/` line.
    pub fn spawn(mut command: Command) -> Shoal {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting shoal");
        let stderr = Arc::new(Lines::default());
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[shoal] {line}");
                    stderr.lines.lock().unwrap().0.push(line);
                    stderr.changed.notify_all();
                }
                stderr.lines.lock().unwrap().1 = true;
                stderr.changed.notify_all();
            }
        });
        let ready = stderr.wait_for(READY_TIMEOUT, |l| {
            (l.contains(" on http://") || l.contains(" on https://")) && !l.starts_with("admin")
        });
        let Some(ready) = ready else {
            let _ = child.kill();
            panic!("shoal did not become ready within {READY_TIMEOUT:?}");
        };
        Shoal {
            child,
            stderr,
            addr: address_in(&ready),
            admin: None,
            gossip: None,
            data_dir: None,
            scratch: None,
            admin_scheme: "http",
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GETs `path`.
    pub fn get(&self, path: &str) -> Reply {
        get(&self.url(path))
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.stderr.wait_for(timeout, |l| l.contains(needle))
    }

    /// Everything written to stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lines.lock().unwrap().0.join("\n")
    }

    /// Sends a signal (`"INT"`, `"TERM"`, `"KILL"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Shoal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address_in(line: &str) -> SocketAddr {
    line.split(" on http://")
        .nth(1)
        .or_else(|| line.split(" on https://").nth(1))
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Runs `shoal ARGS...` expecting it to exit by itself (bounded), and
/// returns its exit status, stdout and stderr.
pub fn run_to_exit(bin: &str, args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    run_to_exit_env(bin, args, &[], timeout)
}

/// Like [`run_to_exit`] with these environment variables set.
pub fn run_to_exit_env(
    bin: &str,
    args: &[&str],
    env: &[(&str, &OsStr)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env("SHOAL_CACHE_DIR", cache.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, stdout.join().unwrap(), stderr.join().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`shoal {}` did not exit within {timeout:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// The response headers, lowercased names.
    pub headers: Vec<(String, String)>,
    /// How long the exchange took.
    pub elapsed: Duration,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP client that never treats a status as an error and gives up after
/// 60 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(started: Instant, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("the HTTP exchange failed");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .expect("reading the body");
    Reply {
        status,
        body,
        headers,
        elapsed: started.elapsed(),
    }
}

/// GETs `url`.
pub fn get(url: &str) -> Reply {
    let started = Instant::now();
    reply(started, agent().get(url).call())
}

/// POSTs `body` to `url`.
pub fn post(url: &str, body: &[u8]) -> Reply {
    let started = Instant::now();
    reply(started, agent().post(url).send(body))
}

/// Polls `done` every 50 ms until it holds, for at most `timeout`; panics
/// naming `what` past it. Returns how long it took.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Polls `done` every 50 ms until it gives a value, for at most
/// `timeout`; panics naming `what` past it.
pub fn wait_for<T>(timeout: Duration, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let mut value = None;
    wait_until(timeout, what, || {
        value = done();
        value.is_some()
    });
    value.expect("given when the wait ended")
}

/// The `shoal` binary a test drives: the one cargo built for it, or the
/// one `SHOAL_BIN` names (to show a test fails on an older build).
#[macro_export]
macro_rules! shoal_bin {
    () => {
        $crate::bin_or_override(env!("CARGO_BIN_EXE_shoal"))
    };
}

/// `built`, unless `SHOAL_BIN` names another binary.
pub fn bin_or_override(built: &str) -> String {
    std::env::var("SHOAL_BIN").unwrap_or_else(|_| built.to_string())
}
