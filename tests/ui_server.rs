//! The dashboard's server side against the real binary: the one-time login
//! link (`shoal ui`, `POST /v1/ui/login`) works once and for a minute, and
//! sets a cookie a page's script cannot read and other sites' requests do
//! not carry; without a session the page and the API say how to log in; a
//! POST without this listener's Origin or the session's CSRF token, and
//! any request naming a foreign Host, is refused; remove and rollback work;
//! every answer carries the CSP and nosniff headers. `SHOAL_BIN` points the
//! file at another binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal_test_support::{Shoal, guests};

fn bin() -> String {
    shoal_test_support::shoal_bin!()
}

fn host(dir: &Path, args: &[&str]) -> Shoal {
    Shoal::host(&bin(), dir, args)
}

/// A raw HTTP/1.1 exchange: status, headers (lowercased names), body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `addr` with `headers` (`connection: close`).
fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A fresh login link's path and query (`/ui/login?code=...`).
fn login_path(shoal: &Shoal) -> String {
    let reply = shoal.admin_send("POST", "/v1/ui/login", "application/json", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let link: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(link["expires_in_secs"], 60, "{link}");
    let url = link["url"].as_str().unwrap();
    let prefix = format!("{}/ui/login?code=", shoal.admin_url());
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(url.len(), prefix.len() + 64, "{url}");
    url[shoal.admin_url().len()..].to_string()
}

/// A logged-in browser: its cookie header and the page's CSRF token.
struct Browser {
    admin: SocketAddr,
    cookie: String,
    csrf: String,
}

impl Browser {
    fn log_in(shoal: &Shoal) -> Browser {
        let admin = shoal.admin.unwrap();
        let login = raw(admin, "GET", &login_path(shoal), &[]);
        assert_eq!(login.status, 303, "{}", login.body);
        let set = login.header("set-cookie").expect("a session cookie");
        let cookie = set.split(';').next().unwrap().to_string();
        let page = raw(admin, "GET", "/ui/", &[("cookie", &cookie)]);
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page
            .body
            .split("name=\"shoal-csrf\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page carries its CSRF token")
            .to_string();
        assert_eq!(csrf.len(), 32, "{csrf}");
        Browser {
            admin,
            cookie,
            csrf,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// The overview, as the page reads it.
    fn overview(&self) -> serde_json::Value {
        let reply = raw(
            self.admin,
            "GET",
            "/ui/api/overview",
            &[("cookie", &self.cookie)],
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_hardened(&reply, "the overview");
        serde_json::from_str(&reply.body).unwrap()
    }

    /// POSTs `path` as the page does: cookie, Origin and CSRF header.
    fn post(&self, path: &str) -> Raw {
        let origin = self.origin();
        raw(
            self.admin,
            "POST",
            path,
            &[
                ("cookie", &self.cookie),
                ("origin", &origin),
                ("x-shoal-csrf", &self.csrf),
            ],
        )
    }
}

fn assert_hardened(reply: &Raw, what: &str) {
    let csp = reply.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{what}: CSP {csp:?}"
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

#[test]
fn a_login_link_works_once_and_sets_a_strict_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &["--name", "n1"]);
    let admin = shoal.admin.unwrap();
    // The link needs the admin token.
    let anonymous = raw(admin, "POST", "/v1/ui/login", &[]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let path = login_path(&shoal);
    let login = raw(admin, "GET", &path, &[]);
    assert_eq!(login.status, 303, "{}", login.body);
    assert_eq!(login.header("location"), Some("/ui/"));
    let cookie = login.header("set-cookie").unwrap();
    assert!(cookie.starts_with("shoal_session="), "{cookie}");
    let value = cookie.split(';').next().unwrap()["shoal_session=".len()..].to_string();
    assert!(
        value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "{cookie}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag}: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "Secure over plain HTTP: {cookie}"
    );
    assert_hardened(&login, "the login");
    let again = raw(admin, "GET", &path, &[]);
    assert_eq!(again.status, 403, "a link worked twice: {}", again.body);
    assert!(
        again.body.contains("used or has expired") && again.body.contains("shoal ui"),
        "{}",
        again.body
    );
    assert!(again.header("set-cookie").is_none());
    let forged = raw(
        admin,
        "GET",
        &format!("/ui/login?code={}", "0".repeat(64)),
        &[],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    // The cookie opens the page, with this node's name in it.
    let cookie = format!("shoal_session={value}");
    let page = raw(admin, "GET", "/ui/", &[("cookie", &cookie)]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("name=\"shoal-node\" content=\"n1\""),
        "{}",
        page.body
    );
    assert!(!page.body.contains("{{CSRF}}"), "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_hardened(&page, "the page");
    // Logging out ends the session.
    let browser = Browser::log_in(&shoal);
    let out = browser.post("/ui/logout");
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let page = raw(admin, "GET", "/ui/", &[("cookie", &browser.cookie)]);
    assert_eq!(page.status, 401, "{}", page.body);
}

#[test]
fn without_a_session_the_page_and_the_api_say_how_to_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let admin = shoal.admin.unwrap();
    let bare = raw(admin, "GET", "/ui", &[]);
    assert_eq!(bare.status, 308, "{}", bare.body);
    assert_eq!(bare.header("location"), Some("/ui/"));
    let fake = "shoal_session=".to_string() + &"ab".repeat(32);
    for cookie in [None, Some(fake.as_str())] {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        let page = raw(admin, "GET", "/ui/", &headers);
        assert_eq!(page.status, 401, "{}", page.body);
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{:?}",
            page.headers
        );
        assert!(page.body.contains("shoal ui"), "{}", page.body);
        assert_hardened(&page, "the 401 page");
        let api = raw(admin, "GET", "/ui/api/overview", &headers);
        assert_eq!(api.status, 401, "{}", api.body);
        let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        assert!(
            json["error"].as_str().unwrap().contains("shoal ui"),
            "{json}"
        );
        assert_eq!(api.header("cache-control"), Some("no-store"));
        assert_hardened(&api, "the 401 JSON");
    }
    // The script and style need no session, and are revalidated by ETag.
    let script = raw(admin, "GET", "/ui/app.js", &[]);
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(script.header("cache-control"), Some("no-cache"));
    assert_hardened(&script, "the script");
    let etag = script.header("etag").unwrap();
    assert_eq!(etag.len(), 66, "{etag}");
    let cached = raw(admin, "GET", "/ui/app.js", &[("if-none-match", etag)]);
    assert_eq!(cached.status, 304);
    let style = raw(admin, "GET", "/ui/app.css", &[]);
    assert!(
        style
            .header("content-type")
            .unwrap()
            .starts_with("text/css")
    );
}

#[test]
fn a_foreign_origin_host_or_a_missing_csrf_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    shoal.cli_ok(&bin(), &["deploy", guests::HELLO, "--name", "hello"]);
    let browser = Browser::log_in(&shoal);
    let admin = browser.admin;
    let own = browser.origin();
    let remove = "/ui/api/apps/hello/remove";
    let cookie = ("cookie", browser.cookie.as_str());
    let csrf = ("x-shoal-csrf", browser.csrf.as_str());
    let refusals: [(&str, Vec<(&str, &str)>); 5] = [
        ("no Origin", vec![cookie, csrf]),
        (
            "a foreign Origin",
            vec![cookie, csrf, ("origin", "http://evil.test")],
        ),
        ("Origin null", vec![cookie, csrf, ("origin", "null")]),
        ("no CSRF header", vec![cookie, ("origin", &own)]),
        (
            "a wrong CSRF header",
            vec![
                cookie,
                ("origin", &own),
                ("x-shoal-csrf", "0123456789abcdef0123456789abcdef"),
            ],
        ),
    ];
    for (what, headers) in refusals {
        let reply = raw(admin, "POST", remove, &headers);
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert_hardened(&reply, what);
    }
    // A GET from another site's page is refused too; one with none is not.
    let foreign = raw(
        admin,
        "GET",
        "/ui/",
        &[cookie, ("origin", "http://evil.test")],
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    // A page rebound to 127.0.0.1 sends its own name: refused, even with
    // every other header right.
    let rebound = format!("evil.test:{}", admin.port());
    let rebound_origin = format!("http://{rebound}");
    for (method, path) in [
        ("GET", "/ui/"),
        ("GET", "/ui/login?code=x"),
        ("POST", remove),
    ] {
        let reply = raw(
            admin,
            method,
            path,
            &[
                ("host", &rebound),
                cookie,
                csrf,
                ("origin", &rebound_origin),
            ],
        );
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.body);
        assert!(reply.body.contains("evil.test"), "{}", reply.body);
    }
    // Nothing was removed; with everything right, it is.
    assert_eq!(shoal.admin_get("/v1/apps/hello").status, 200);
    let removed = browser.post(remove);
    assert_eq!(removed.status, 200, "{}", removed.body);
    let json: serde_json::Value = serde_json::from_str(&removed.body).unwrap();
    assert_eq!(json["removed"], "hello", "{json}");
    assert_eq!(shoal.admin_get("/v1/apps/hello").status, 404);
    let again = browser.post(remove);
    assert_eq!(again.status, 404, "{}", again.body);
}

#[test]
fn rollback_deploys_the_previous_versions_component_as_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &["--name", "n1"]);
    let deploy = |component: &str| {
        shoal.cli_ok(
            &bin(),
            &["deploy", component, "--name", "app", "--route", "/app"],
        );
    };
    let component = || {
        let reply = shoal.admin_get("/v1/apps/app");
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        (
            json["version"].as_u64().unwrap(),
            json["component"].as_str().unwrap().to_string(),
        )
    };
    deploy(guests::HELLO);
    let (_, v1) = component();
    let hello = shoal.get("/app/env?name=GREETING");
    assert_eq!(hello.status, 200, "{}", hello.body);
    let browser = Browser::log_in(&shoal);
    let can_roll_back = |overview: &serde_json::Value| {
        overview["apps"].as_array().unwrap()[0]["can_roll_back"].as_bool()
    };
    assert_eq!(can_roll_back(&browser.overview()), Some(false));
    let single = browser.post("/ui/api/apps/app/rollback");
    assert_eq!(single.status, 409, "{}", single.body);
    let json: serde_json::Value = serde_json::from_str(&single.body).unwrap();
    let message = json["error"].as_str().unwrap();
    assert!(
        message.contains("app `app` has no earlier version on node n1")
            && message.contains("shoal deploy"),
        "{message}"
    );
    shoal.cli_ok(
        &bin(),
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "app",
            "--route",
            "/app",
            "--env",
            "GREETING=v2",
        ],
    );
    let (version, v2) = component();
    assert_eq!(version, 2);
    assert_ne!(v1, v2);
    assert_ne!(
        shoal.get("/app/env?name=GREETING").body,
        hello.body,
        "v2 answers as v1 does"
    );
    let rolled = browser.post("/ui/api/apps/app/rollback");
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    let json: serde_json::Value = serde_json::from_str(&rolled.body).unwrap();
    assert_eq!(
        (
            json["name"].as_str(),
            json["version"].as_u64(),
            json["rolled_back_to"].as_u64()
        ),
        (Some("app"), Some(3), Some(1)),
        "{json}"
    );
    assert_eq!(component(), (3, v1.clone()));
    the_overview_lists_the_rollback(&browser);
    let served = shoal.get("/app/env?name=GREETING");
    assert_eq!(
        (served.status, &served.body),
        (200, &hello.body),
        "v3 does not answer as v1 did"
    );
    // An unknown app is 404, not 409.
    let unknown = browser.post("/ui/api/apps/nope/rollback");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

/// The overview lists the changes newest first, and v3 can go back again.
fn the_overview_lists_the_rollback(browser: &Browser) {
    let overview = browser.overview();
    let events: Vec<_> = overview["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        events,
        [("rollback", 3), ("deploy", 2), ("deploy", 1)],
        "{overview}"
    );
    assert_eq!(overview["events"][0]["origin"], "n1");
    let can_roll_back = overview["apps"].as_array().unwrap()[0]["can_roll_back"].as_bool();
    assert_eq!(can_roll_back, Some(true));
}

#[test]
fn shoal_ui_prints_a_working_link() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let (stdout, stderr) = shoal.cli_ok(&bin(), &["ui"]);
    let url = stdout.trim();
    let prefix = format!("{}/ui/login?code=", shoal.admin_url());
    assert!(url.starts_with(&prefix), "{stdout} {stderr}");
    assert!(stderr.contains("works once"), "{stderr}");
    let path = &url[shoal.admin_url().len()..];
    let login = raw(shoal.admin.unwrap(), "GET", path, &[]);
    assert_eq!(login.status, 303, "{}", login.body);
    assert!(login.header("set-cookie").is_some());
}

#[test]
fn over_tls_the_link_is_https_and_the_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &["--tls-self-signed"]);
    assert!(shoal.admin_url().starts_with("https://"));
    let (stdout, _) = shoal.cli_ok(&bin(), &["ui"]);
    let url = stdout.trim();
    assert!(
        url.starts_with(&format!("{}/ui/login?code=", shoal.admin_url())),
        "{url}"
    );
    let cert = dir.path().join("tls-cert.pem");
    let curl = |url: &str| {
        let output = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "30", "--cacert"])
            .arg(&cert)
            .arg(url)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let login = curl(url);
    let cookie = login
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {login}"));
    assert!(
        login.starts_with("HTTP/") && login.contains(" 303"),
        "{login}"
    );
    assert!(cookie.trim_end().ends_with("; Secure"), "{cookie}");
    // In clear, the TLS listener's dashboard refuses.
    let clear = raw(shoal.admin.unwrap(), "GET", "/ui/app.js", &[]);
    assert_eq!(clear.status, 403, "{}", clear.body);
}

#[test]
fn an_expired_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path(), &[]);
    let path = login_path(&shoal);
    // The link's minute passes.
    std::thread::sleep(Duration::from_secs(61));
    let login = raw(shoal.admin.unwrap(), "GET", &path, &[]);
    assert_eq!(login.status, 403, "an expired link worked: {}", login.body);
    assert!(login.body.contains("expired"), "{}", login.body);
    assert!(login.header("set-cookie").is_none());
}
