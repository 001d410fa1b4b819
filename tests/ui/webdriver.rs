//! A small blocking WebDriver client: Debian's `chromedriver` driving
//! headless `chromium` over the W3C WebDriver HTTP API, on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver's key codes.
pub const ENTER: &str = "\u{e007}";
pub const ESCAPE: &str = "\u{e00c}";
/// What to do when a browser is missing.
const INSTALL: &str = "install Debian's headless browser and its driver: `apt-get install -y chromium chromium-driver` as root (`cargo xtask test` does it when they are missing)";

/// One browser session; the browser and its driver end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// The first of `names` found on `PATH` or as an absolute path.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        let candidate = Path::new(name);
        if candidate.is_absolute() && candidate.is_file() {
            return Some(candidate.to_path_buf());
        }
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() {
                return Some(dir.join(name));
            }
        }
    }
    None
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// session of `width` x `height` on a fresh profile.
    pub fn start(width: u32, height: u32) -> Browser {
        let chromium =
            find_program(&["chromium", "/usr/lib/chromium/chromium", "chromium-browser"])
                .unwrap_or_else(|| panic!("no `chromium` on PATH: {INSTALL}"));
        let chromedriver = find_program(&["chromedriver", "/usr/lib/chromium/chromedriver"])
            .unwrap_or_else(|| panic!("no `chromedriver` on PATH: {INSTALL}"));
        let (driver, port) = spawn_driver(&chromedriver);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.to_str().unwrap(), "args": args},
        }}});
        let reply = browser.raw("POST", "/session", Some(capabilities));
        browser.session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start a session: {reply}"))
            .to_string();
        browser
    }

    /// One WebDriver call; returns the whole JSON reply.
    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .unwrap();
        let mut reply = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    /// A call on this session; panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = self.raw(method, &format!("/session/{}{path}", self.session), body);
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The URL the browser is on.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `body` (a function body: `return ...;`) in the page with `args`.
    pub fn script(&self, body: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": body, "args": args })),
        )
    }

    /// The page's first element matching `css`, as WebDriver names it.
    pub fn find(&self, css: &str) -> Option<String> {
        let reply = self.raw(
            "POST",
            &format!("/session/{}/element", self.session),
            Some(json!({ "using": "css selector", "value": css })),
        );
        match reply["value"][ELEMENT].as_str() {
            Some(id) => Some(id.to_string()),
            None if reply["value"]["error"] == "no such element" => None,
            None => panic!("WebDriver: finding `{css}`: {reply}"),
        }
    }

    /// Clicks the first element matching `css` as a user would (it must
    /// be visible and not covered).
    pub fn click(&self, css: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("no element `{css}` to click"));
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("no element `{css}` to type into"));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses and releases `key` on whatever has the focus.
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key},
        ]}]});
        self.call("POST", "/actions", Some(actions));
    }

    /// Polls `body` (a script returning a value) every 100 ms until it gives
    /// something truthy (an object with a `pending` key is not: it says what
    /// the page saw instead), for at most `timeout`; panics naming `what` past
    /// it, with the page's last answer. Returns the value and how long it took.
    pub fn wait_for(&self, timeout: Duration, what: &str, body: &str) -> (Value, Duration) {
        let started = Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < timeout {
            last = self.script(body, json!([]));
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                // `{pending: ...}`: not yet, and what the page saw instead.
                Value::Object(o) => !o.contains_key("pending"),
            };
            if truthy {
                return (last, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting for {what}; the page last said {last}");
    }

    /// Resizes the window to `width` x `height` CSS pixels.
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Saves a PNG of the viewport as `dir/name.png` and returns its path.
    pub fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let encoded = self.call("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().expect("a base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.agent.delete(format!("{}{path}", self.base)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts `chromedriver --port=0` and reads the port it chose.
fn spawn_driver(program: &Path) -> (Child, u16) {
    let mut driver = Command::new(program)
        .args(["--port=0", "--allowed-ips=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", program.display()));
    let stdout = driver.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('.').parse::<u16>().ok());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => (driver, port),
        _ => {
            let _ = driver.kill();
            panic!("chromedriver did not say which port it listens on within 30 s");
        }
    }
}

/// Decodes standard base64 (WebDriver's screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().fold(0u32, |acc, d| (acc << 6) | d) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decodes_padded_and_unpadded_text() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aA=="), b"h");
}
