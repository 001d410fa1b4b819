//! Where `shoal run` keeps an app's key-value stores: the state dir it
//! prints, one run per state dir, `:memory:`, and the default under the
//! data dir by app name.

use std::process::Command;
use std::time::Duration;

use shoal_test_support::{Shoal, guests, run_to_exit_env};

use super::bin;

#[test]
fn run_keeps_state_where_it_says_and_one_run_per_state_dir() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("state");
    let dir_arg = dir.to_str().unwrap();
    let mut first = Shoal::run(
        &bin(),
        guests::HELLO,
        &["--kv", "default", "--state-dir", dir_arg],
    );
    let line = first
        .wait_for_log("state: ", Duration::from_secs(5))
        .expect("no state line");
    assert!(
        line.contains(&format!("{dir_arg}/kv.db")) && line.contains(":memory:"),
        "{line}"
    );
    assert!(dir.join("kv.db").is_file());
    let (status, _, err) = run_to_exit_env(
        &bin(),
        &[
            "run",
            guests::HELLO,
            "--listen",
            "127.0.0.1:0",
            "--kv",
            "default",
            "--state-dir",
            dir_arg,
        ],
        &[],
        Duration::from_secs(120),
    );
    assert!(
        !status.success() && err.contains("another `shoal run`"),
        "{err}"
    );
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(20)).is_some());
    let tables = rusqlite::Connection::open(dir.join("kv.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM kv_meta", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(tables, 2, "kv.db holds the schema");
    // After a stop, the state dir is free again, data and all.
    let again = Shoal::run(
        &bin(),
        guests::HELLO,
        &["--kv", "default", "--state-dir", dir_arg],
    );
    assert!(
        again
            .wait_for_log("state: ", Duration::from_secs(5))
            .is_some()
    );
    drop(again);
}

#[test]
fn run_keeps_nothing_in_memory_and_no_state_without_kv() {
    let memory = Shoal::run(
        &bin(),
        guests::HELLO,
        &["--kv", "default", "--state-dir", ":memory:"],
    );
    assert!(
        memory
            .wait_for_log("state: in memory", Duration::from_secs(5))
            .is_some()
    );
    drop(memory);

    let plain = Shoal::run(&bin(), guests::HELLO, &[]);
    assert!(
        plain
            .wait_for_log("state: ", Duration::from_secs(1))
            .is_none(),
        "no --kv, no state"
    );
}

#[test]
fn run_keeps_state_under_the_data_dir_by_app_name() {
    let scratch = tempfile::tempdir().unwrap();
    let xdg = scratch.path().join("xdg");
    let mut command = Command::new(bin());
    command
        .args([
            "run",
            guests::HELLO,
            "--listen",
            "127.0.0.1:0",
            "--kv",
            "default",
            "--name",
            "counter",
        ])
        .env("XDG_DATA_HOME", &xdg)
        .env("SHOAL_CACHE_DIR", scratch.path().join("cache"))
        .env("NO_COLOR", "1");
    let by_name = Shoal::spawn(command);
    let wanted = xdg.join("shoal/run/counter/kv.db");
    let line = by_name
        .wait_for_log("state: ", Duration::from_secs(5))
        .expect("no state line");
    assert!(line.contains(wanted.to_str().unwrap()), "{line}");
    assert!(wanted.is_file());
}
