//! The dashboard of a real loopback mesh of three `shoal host` processes,
//! logged in with the link `shoal ui` prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal_test_support::{Mesh, Shoal, guests, wait_until};

use super::webdriver::Browser;
use super::{SCREENS, narrow, turn};

/// How long anything the mesh must converge on may take.
const CONVERGE: Duration = Duration::from_secs(30);
/// The failure detector marks a killed node dead in ~2-3 s; allow 15.
const DEAD_WITHIN: Duration = Duration::from_secs(15);

fn shoal() -> String {
    shoal_test_support::shoal_bin!()
}

/// `shoal ui` against `host`: the one-time login URL it prints.
fn login_link(host: &Shoal) -> String {
    let (stdout, stderr) = host.cli_ok(&shoal(), &["ui"]);
    stdout
        .split_whitespace()
        .chain(stderr.split_whitespace())
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .filter(|w| w.contains("/ui/login?code="))
        .unwrap_or_else(|| panic!("`shoal ui` printed no login link:\n{stdout}\n{stderr}"))
        .to_string()
}

/// GETs `path` from `host`'s ingress in a loop until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let agent = shoal_test_support::agent();
            let mut ok = 0;
            while !flag.load(Ordering::Relaxed) {
                if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            ok
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns how many requests were answered 200.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `SHOAL_UI_LOAD_SECS=N` keeps the load on for N s before the chart's
/// screenshot (for a fuller chart in docs/dashboard.png); by default the
/// test goes on as soon as the rise shows.
fn hold() {
    let secs = std::env::var("SHOAL_UI_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    if let Some(secs) = secs {
        std::thread::sleep(Duration::from_secs(secs));
    }
}

/// Deploys the probe guest, which prints lines, as `chatty` on every node.
const DEPLOY_CHATTY: [&str; 6] = [
    "deploy",
    guests::PROBE,
    "--name",
    "chatty",
    "--replicas",
    "all",
];

/// Roll back and Remove, each through its confirmation dialog, and the
/// changes they make listed under Recent changes.
fn actions(browser: &Browser, a: &Shoal) {
    a.cli_ok(&shoal(), &DEPLOY_CHATTY);
    browser.wait_for(
        CONVERGE,
        "chatty v2, which can roll back",
        "
        const row = document.querySelector('#apps tr[data-app=\"chatty\"]');
        const version = row?.querySelector('td.version').textContent;
        const back = row?.querySelector('button[data-action=\"rollback\"]');
        return version === 'v2' && !back.disabled || {pending: [version, back?.title]};",
    );
    browser.click("button[data-action=\"rollback\"][data-app=\"chatty\"]");
    browser.wait_for(
        CONVERGE,
        "the confirmation",
        "return document.querySelector('#confirm').open;",
    );
    browser.screenshot(&SCREENS, "mesh-5-confirm-rollback");
    browser.click("#confirm-yes");
    let (said, _) = browser.wait_for(
        CONVERGE,
        "word of the rollback",
        "
        const toast = document.querySelector('#toast');
        return !toast.hidden && toast.textContent;",
    );
    assert_eq!(said, "Rolled chatty back to version 1 (now version 3).");
    browser.wait_for(CONVERGE, "chatty v3", "
        return document.querySelector('#apps tr[data-app=\"chatty\"] td.version')?.textContent === 'v3';");
    browser.wait_for(
        CONVERGE,
        "the deploys and the rollback under Recent changes",
        "
        const kinds = [...document.querySelectorAll('#events li')].map(li => li.dataset.kind);
        return kinds.includes('rollback') && kinds.filter(k => k === 'deploy').length >= 2;",
    );

    browser.click("button[data-action=\"remove\"][data-app=\"chatty\"]");
    browser.wait_for(
        CONVERGE,
        "the confirmation",
        "return document.querySelector('#confirm').open;",
    );
    browser.click("#confirm-yes");
    browser.wait_for(
        CONVERGE,
        "chatty's row to go",
        "return !document.querySelector('#apps tr[data-app=\"chatty\"]');",
    );
    wait_until(CONVERGE, "chatty gone from the ingress", || {
        a.get("/chatty/hello").status == 404
    });
    browser.wait_for(
        CONVERGE,
        "the removal under Recent changes",
        "return !!document.querySelector('#events li[data-kind=\"remove\"]');",
    );
}

/// The req/s the apps table shows for `app` (None while it shows none).
const APP_RPS: &str =
    "const cell = document.querySelector(`#apps tr[data-app=\"${arguments[0]}\"] td.rps`);
    const value = cell ? parseFloat(cell.textContent) : NaN;
    return Number.isNaN(value) ? null : value;";

#[test]
fn the_dashboard_follows_a_live_mesh_its_load_a_dead_node_and_a_guest_log_line() {
    let _turn = turn();
    let mut mesh = Mesh::start(&shoal(), 3, &[]);
    let a = mesh.host(0);
    a.cli_ok(&shoal(), &DEPLOY_CHATTY);
    wait_until(CONVERGE, "chatty served on every node", || {
        mesh.live().all(|h| h.get("/chatty/hello").status == 200)
    });

    let browser = Browser::start(1280, 1000);
    log_in(&browser, &mesh);
    let load = load_shows(&browser, mesh.host(0));
    logs_follow(&browser, mesh.host(0));
    browser.resize(1280, 1400);
    // kill -9 node-c: its row turns dead within the failure-detector window.
    let victim = mesh.host(2).name().to_string();
    mesh.kill(2);
    let killed = Instant::now();
    let dead = format!(
        "return !!document.querySelector('#nodes tr[data-node=\"{victim}\"][data-live=\"false\"]');"
    );
    browser.wait_for(DEAD_WITHIN, "the killed node's row to turn dead", &dead);
    eprintln!("{victim} shown dead {:?} after kill -9", killed.elapsed());
    assert!(load.finish() > 0, "the load was never answered");
    let first = "return document.querySelector('#nodes tbody tr').dataset.node;";
    assert_eq!(
        browser.script(first, json!([])),
        victim.as_str(),
        "dead first"
    );
    browser.screenshot(&SCREENS, "mesh-4-dead-node");
    browser.click("input[name=\"chart-by\"][value=\"nodes\"]");
    let legend = format!(
        "return [...document.querySelectorAll('#legend li')].some(li => li.textContent.includes('{victim} (dead)'));"
    );
    browser.wait_for(CONVERGE, "the chart per node, the dead one marked", &legend);
    browser.click("input[name=\"chart-by\"][value=\"apps\"]");

    actions(&browser, mesh.host(0));
    browser.resize(1280, 1500);
    browser.script("window.scrollTo(0, 0);", json!([]));
    browser.screenshot(&SCREENS, "mesh-6-whole-page");
    narrow(&browser, "mesh-7-narrow");
    // Log out: the page reloads to the login hint, the cookie gone.
    browser.click("#logout");
    let out = "return document.body.textContent.includes('shoal ui') && !document.querySelector('#nodes');";
    browser.wait_for(CONVERGE, "the logged-out page", out);
}

/// Opens the link `shoal ui` prints: the page, with every node live.
fn log_in(browser: &Browser, mesh: &Mesh) {
    browser.goto(&login_link(mesh.host(0)));
    let url = browser.url();
    assert!(url.ends_with("/ui/"), "the login link led to {url}");
    let names: Vec<String> = mesh.live().map(|h| h.name().to_string()).collect();
    let live = format!(
        "return {names:?}.every(n => document.querySelector(`#nodes tr[data-node=\"${{n}}\"][data-live=\"true\"]`));"
    );
    let (_, took) = browser.wait_for(CONVERGE, "three live nodes", &live);
    eprintln!("three live nodes shown {took:?} after the login");
    let rows = "return document.querySelectorAll('#nodes tbody tr').length;";
    assert_eq!(browser.script(rows, json!([])), 3);
    browser.screenshot(&SCREENS, "mesh-1-three-nodes");
}

/// Load on chatty: its req/s rises from (about) nothing. Returns the load,
/// still running.
fn load_shows(browser: &Browser, a: &Shoal) -> Load {
    let before = browser
        .script(APP_RPS, json!(["chatty"]))
        .as_f64()
        .unwrap_or(0.0);
    let load = Load::start(a.url("/chatty/hello"));
    let risen = format!(
        "const v = (() => {{ {} }})(); return v !== null && v > Math.max(5, {before} * 2) ? v : null;",
        APP_RPS.replace("arguments[0]", "'chatty'")
    );
    let (rps, took) = browser.wait_for(CONVERGE, "chatty's req/s to rise past 5", &risen);
    eprintln!("chatty's req/s went from {before} to {rps} in {took:?}");
    let lines = "return document.querySelectorAll('#chart polyline').length;";
    browser.wait_for(CONVERGE, "the chart's line for chatty", lines);
    hold();
    browser.screenshot(&SCREENS, "mesh-2-load");
    load
}

/// The log view follows a line the guest prints.
fn logs_follow(browser: &Browser, a: &Shoal) {
    browser.click("#log-app");
    browser.click("#log-app option[value=\"chatty\"]");
    let open = "return document.querySelector('#log-state').textContent.startsWith('following');";
    browser.wait_for(CONVERGE, "the log stream to open", open);
    let asked = Instant::now();
    assert_eq!(a.get("/chatty/log").status, 200);
    let line =
        "return document.querySelector('#log-lines').textContent.includes('line to stdout');";
    let (_, took) = browser.wait_for(CONVERGE, "the line the guest printed", line);
    eprintln!(
        "a guest log line showed {took:?} after its request ({:?} in all)",
        asked.elapsed()
    );
    browser.screenshot(&SCREENS, "mesh-3-logs");
}
