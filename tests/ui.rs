//! The dashboard in a real browser: Debian's headless Chromium, driven by
//! chromedriver over WebDriver, logs in with the link `shoal ui` prints and
//! watches a loopback mesh of three real hosts live; and the same page, at
//! a hundred nodes, stays sorted, filterable and narrow-window friendly.
//! Screenshots go to `<target dir>/ui-screens/`. Every wait is bounded.

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use serde_json::json;

#[path = "ui/fixture.rs"]
mod fixture;
#[path = "ui/mesh.rs"]
mod mesh;
#[path = "ui/webdriver.rs"]
mod webdriver;

use fixture::Fixture;
use webdriver::Browser;

/// One browser at a time: the machine has few cores.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// `<target dir>/ui-screens`, next to the `debug` folder holding `shoal`.
static SCREENS: LazyLock<PathBuf> = LazyLock::new(|| {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shoal"));
    bin.parent()
        .and_then(|debug| debug.parent())
        .map(|target| target.join("ui-screens"))
        .unwrap_or_else(|| PathBuf::from("target/ui-screens"))
});

/// The `data-node` of every row of the nodes table, in order.
const NODE_ROWS: &str =
    "return [...document.querySelectorAll('#nodes tbody tr')].map(r => [r.dataset.node, r.dataset.live]);";

/// Whether the page is wider than its window (a sideways scroll bar).
const OVERFLOWS: &str = "return document.documentElement.scrollWidth > window.innerWidth + 1;";

#[test]
fn at_a_hundred_nodes_the_page_sorts_dead_first_filters_and_fits_a_narrow_window() {
    let _turn = turn();
    let fixture = Fixture::start();
    let browser = Browser::start(1280, 1000);
    browser.goto(&fixture.url("/ui/"));
    let wait = Duration::from_secs(15);
    browser.wait_for(wait, "100 node rows", &format!(
        "return document.querySelectorAll('#nodes tbody tr').length === {};",
        fixture::NODES
    ));
    browser.wait_for(wait, "the chart's lines", "return document.querySelectorAll('#chart polyline').length;");
    // Dead nodes first, then by name.
    let rows = browser.script(NODE_ROWS, json!([]));
    let rows: Vec<(String, String)> = serde_json::from_value(rows).unwrap();
    let dead: Vec<&str> = rows.iter().filter(|r| r.1 == "false").map(|r| r.0.as_str()).collect();
    assert_eq!(dead, ["n007", "n027", "n047", "n067", "n087"], "{rows:?}");
    assert_eq!(rows[..5].iter().filter(|r| r.1 == "false").count(), 5, "dead first: {rows:?}");
    assert_eq!(rows[5].0, "n000", "then by name: {rows:?}");
    // The chart draws at most eight series and says how many it left out.
    let legend = browser.script("return document.querySelectorAll('#legend li svg').length;", json!([]));
    assert_eq!(legend, 8, "the eight busiest apps");
    let more = browser.script("return document.querySelector('#legend li.more').textContent;", json!([]));
    assert_eq!(more, "and 22 quieter apps, not drawn");
    browser.screenshot(&SCREENS, "hundred-nodes");

    // The filter box narrows the table as one types.
    browser.click("#node-filter");
    browser.type_into("#node-filter", "n04");
    browser.wait_for(wait, "ten rows matching n04", NODE_ROWS_MATCHING);
    // Sorting by name puts n000 first whatever its state.
    browser.type_into("#node-filter", "\u{e003}\u{e003}\u{e003}");
    browser.wait_for(wait, "the filter cleared", "return document.querySelectorAll('#nodes tbody tr').length === 100;");
    browser.click("#nodes th[data-sort=\"name\"] button");
    let first = browser.script("return document.querySelector('#nodes tbody tr').dataset.node;", json!([]));
    assert_eq!(first, "n000");

    // Remove goes through the confirmation dialog and carries the CSRF token.
    browser.click("button[data-action=\"remove\"][data-app=\"app-03\"]");
    browser.wait_for(wait, "the dialog", "return document.querySelector('#confirm').open;");
    browser.screenshot(&SCREENS, "confirm-remove");
    browser.click("#confirm-no");
    assert_eq!(fixture.seen().0, Vec::<String>::new(), "cancel sends nothing");
    browser.click("button[data-action=\"remove\"][data-app=\"app-03\"]");
    browser.click("#confirm-yes");
    browser.wait_for(wait, "app-03's row to go", "return !document.querySelector('#apps tr[data-app=\"app-03\"]');");
    assert_eq!(fixture.seen(), (vec!["app-03".to_string()], 0));

    // A log line that arrives shows up.
    browser.click("#log-app");
    browser.click("#log-app option[value=\"app-05\"]");
    browser.wait_for(wait, "a log line", "return document.querySelector('#log-lines').textContent.includes('app-05 says hello #3');");

    browser.resize(1280, 1800);
    browser.script("window.scrollTo(0, document.body.scrollHeight);", json!([]));
    browser.screenshot(&SCREENS, "hundred-nodes-tall");
    browser.resize(400, 900);
    browser.wait_for(wait, "the narrow layout", "return window.innerWidth <= 400;");
    browser.script("window.scrollTo(0, 0);", json!([]));
    assert_eq!(browser.script(OVERFLOWS, json!([])), false, "the page scrolls sideways at 400 px");
    browser.screenshot(&SCREENS, "hundred-nodes-narrow");
}

const NODE_ROWS_MATCHING: &str = "const rows = [...document.querySelectorAll('#nodes tbody tr')];
    return rows.length === 10 && rows.every(r => r.dataset.node.startsWith('n04'));";
