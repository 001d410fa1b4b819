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
const NODE_ROWS: &str = "return [...document.querySelectorAll('#nodes tbody tr')].map(r => [r.dataset.node, r.dataset.live]);";

/// Whether the page is wider than its window (a sideways scroll bar).
const OVERFLOWS: &str = "return document.documentElement.scrollWidth > window.innerWidth + 1;";

/// How long the page may take to show what the fixture sends.
const SHOWS: Duration = Duration::from_secs(15);

#[test]
fn at_a_hundred_nodes_the_page_sorts_dead_first_filters_and_fits_a_narrow_window() {
    let _turn = turn();
    let fixture = Fixture::start();
    let browser = Browser::start(1280, 1000);
    browser.goto(&fixture.url("/ui/"));
    let rows = format!(
        "return document.querySelectorAll('#nodes tbody tr').length === {};",
        fixture::NODES
    );
    browser.wait_for(SHOWS, "100 node rows", &rows);
    let lines = "return document.querySelectorAll('#chart polyline').length;";
    browser.wait_for(SHOWS, "the chart's lines", lines);
    dead_first_then_by_name(&browser);
    chart_draws_eight(&browser);
    let low = browser.script(include_str!("ui/contrast.js"), json!([]));
    assert_eq!(low, json!([]), "text under 4.5:1 contrast");
    browser.screenshot(&SCREENS, "hundred-nodes");
    filter_and_sort(&browser);
    keyboard_and_dialog(&browser, &fixture);
    // A log line that arrives shows up.
    browser.click("#log-app");
    browser.click("#log-app option[value=\"app-05\"]");
    let line =
        "return document.querySelector('#log-lines').textContent.includes('app-05 says hello #3');";
    browser.wait_for(SHOWS, "a log line", line);
    browser.resize(1280, 1800);
    browser.script("window.scrollTo(0, document.body.scrollHeight);", json!([]));
    browser.screenshot(&SCREENS, "hundred-nodes-tall");
    narrow(&browser, "hundred-nodes-narrow");
}

fn dead_first_then_by_name(browser: &Browser) {
    let rows = browser.script(NODE_ROWS, json!([]));
    let rows: Vec<(String, String)> = serde_json::from_value(rows).unwrap();
    let dead: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == "false")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(dead, ["n007", "n027", "n047", "n067", "n087"], "{rows:?}");
    let first = rows[..5].iter().filter(|r| r.1 == "false").count();
    assert_eq!(first, 5, "dead first: {rows:?}");
    assert_eq!(rows[5].0, "n000", "then by name: {rows:?}");
}

/// The chart draws at most eight series and says how many it left out.
fn chart_draws_eight(browser: &Browser) {
    let legend = "return document.querySelectorAll('#legend li svg').length;";
    assert_eq!(
        browser.script(legend, json!([])),
        8,
        "the eight busiest apps"
    );
    let more = "return document.querySelector('#legend li.more').textContent;";
    assert_eq!(
        browser.script(more, json!([])),
        "and 22 quieter apps, not drawn"
    );
}

fn filter_and_sort(browser: &Browser) {
    browser.click("#node-filter");
    browser.type_into("#node-filter", "n04");
    browser.wait_for(SHOWS, "ten rows matching n04", NODE_ROWS_MATCHING);
    browser.type_into("#node-filter", "\u{e003}\u{e003}\u{e003}");
    let all = "return document.querySelectorAll('#nodes tbody tr').length === 100;";
    browser.wait_for(SHOWS, "the filter cleared", all);
    // Sorted by name, n000 comes first whatever its state.
    browser.click("#nodes th[data-sort=\"name\"] button");
    let first = "return document.querySelector('#nodes tbody tr').dataset.node;";
    assert_eq!(browser.script(first, json!([])), "n000");
}

/// Remove, from the keyboard: Enter on the button opens the dialog with
/// the focus on Cancel, Escape closes it sending nothing; Yes sends the
/// action with the CSRF token.
fn keyboard_and_dialog(browser: &Browser, fixture: &Fixture) {
    let button = "button[data-action=\"remove\"][data-app=\"app-03\"]";
    browser.script(
        &format!("document.querySelector('{button}').focus();"),
        json!([]),
    );
    browser.press(webdriver::ENTER);
    let open = "return document.querySelector('#confirm').open;";
    browser.wait_for(SHOWS, "the dialog", open);
    let focused = "return document.activeElement.id;";
    assert_eq!(browser.script(focused, json!([])), "confirm-no");
    browser.screenshot(&SCREENS, "confirm-remove");
    browser.press(webdriver::ESCAPE);
    let closed = "return !document.querySelector('#confirm').open;";
    browser.wait_for(SHOWS, "the dialog to close", closed);
    let back = format!("return document.activeElement === document.querySelector('{button}');");
    assert_eq!(browser.script(&back, json!([])), true, "focus returns");
    assert_eq!(fixture.seen(), (Vec::new(), 0), "cancel sends nothing");
    browser.click(button);
    browser.click("#confirm-yes");
    let gone = "return !document.querySelector('#apps tr[data-app=\"app-03\"]');";
    browser.wait_for(SHOWS, "app-03's row to go", gone);
    assert_eq!(fixture.seen(), (vec!["app-03".to_string()], 0));
}

/// At 360 and 400 px the page does not scroll sideways (the tables scroll
/// in their own boxes); saves `name` at 400 px.
fn narrow(browser: &Browser, name: &str) {
    for width in [360, 400] {
        browser.resize(width, 900);
        let narrow = format!("return window.innerWidth <= {width};");
        browser.wait_for(SHOWS, "the narrow layout", &narrow);
        browser.script("window.scrollTo(0, 0);", json!([]));
        assert_eq!(
            browser.script(OVERFLOWS, json!([])),
            false,
            "the page scrolls sideways at {width} px"
        );
    }
    browser.screenshot(&SCREENS, name);
}

const NODE_ROWS_MATCHING: &str = "const rows = [...document.querySelectorAll('#nodes tbody tr')];
    return rows.length === 10 && rows.every(r => r.dataset.node.startsWith('n04'));";
