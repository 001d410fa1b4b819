//! `shoal new`: from nothing to a served component, as a developer does it,
//! and compile errors from the SDK's macro that point at the user's code.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal_test_support::{Shoal, run_to_exit};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn shoal_new(dir: &Path, name: &str) -> (bool, String) {
    shoal_new_with(dir, name, &[])
}

fn shoal_new_with(dir: &Path, name: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(SHOAL)
        .arg("new")
        .arg(name)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `cargo build --release` in `project`, as the README says: one command.
fn cargo_build(project: &Path, target: &Path) -> (bool, String) {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release"])
        .current_dir(project)
        // Shared by this file's tests so the SDK is compiled once.
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn target_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("shoal-new-test-target")
}

#[test]
fn new_build_run_answers_200_and_new_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = shoal_new(dir.path(), "my-app");
    assert!(ok, "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
    let project = dir.path().join("my-app");
    let (ok, stderr) = cargo_build(&project, &target_dir());
    assert!(ok, "{stderr}");
    let wasm = target_dir().join("wasm32-wasip2/release/my_app.wasm");
    let shoal = Shoal::run(SHOAL, wasm.to_str().unwrap(), &[]);
    let reply = shoal.get("/?name=Shoal");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "Hello, Shoal!\n")
    );

    std::fs::write(project.join("marker"), "mine").unwrap();
    let (ok, stderr) = shoal_new(dir.path(), "my-app");
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(project.join("marker")).unwrap(),
        "mine"
    );

    let (status, _, stderr) = run_to_exit(SHOAL, &["new", "Bad Name"], Duration::from_secs(30));
    assert!(
        !status.success() && stderr.contains("invalid project name"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_handler_signature_is_reported_at_the_users_code() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shoal_new(dir.path(), "bad-sig").0);
    let project = dir.path().join("bad-sig");
    std::fs::write(
        project.join("src/lib.rs"),
        "#[shoal_sdk::http]\nfn handle(a: shoal_sdk::Request, b: u32) -> shoal_sdk::Result<shoal_sdk::Response> {\n    todo!()\n}\n",
    )
    .unwrap();
    let (ok, stderr) = cargo_build(&project, &target_dir());
    assert!(!ok);
    assert!(
        stderr.contains("an HTTP handler takes exactly one argument"),
        "{stderr}"
    );
    assert!(
        stderr.contains("src/lib.rs:2:"),
        "the error should point at the signature: {stderr}"
    );

    std::fs::write(
        project.join("src/lib.rs"),
        "#[shoal_sdk::http]\nfn handle(req: shoal_sdk::Request) -> u32 {\n    7\n}\n",
    )
    .unwrap();
    let (ok, stderr) = cargo_build(&project, &target_dir());
    assert!(!ok);
    assert!(
        stderr.contains("IntoResponse") && stderr.contains("src/lib.rs:2:"),
        "{stderr}"
    );
}

/// `shoal new --template kv` in a fresh directory, then `cargo build`:
/// the component's path, and the directory it lives as long as.
fn new_kv_project(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = shoal_new_with(dir.path(), name, &["--template", "kv"]);
    assert!(ok, "{stderr}");
    let artifact = name.replace('-', "_");
    assert!(
        stderr.contains(&format!(
            "{artifact}.wasm --kv default --config greeting=hi"
        )),
        "{stderr}"
    );
    let (ok, stderr) = cargo_build(&dir.path().join(name), &target_dir());
    assert!(ok, "{stderr}");
    let wasm = target_dir().join(format!("wasm32-wasip2/release/{artifact}.wasm"));
    (dir, wasm)
}

/// The kv template builds, and its component imports the key-value and
/// config interfaces (only those its handler calls end up imported).
#[test]
fn the_kv_template_builds_a_component_importing_kv_and_config() {
    let (_dir, wasm) = new_kv_project("my-kv");
    let bytes = std::fs::read(&wasm).unwrap();
    for import in [
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:config/store@0.2.0-draft-2024-09-27",
    ] {
        assert!(
            bytes.windows(import.len()).any(|w| w == import.as_bytes()),
            "{} does not import {import}",
            wasm.display()
        );
    }
}

/// What the kv template makes counts its visits and greets from config.
#[test]
fn the_kv_template_counts_visits_and_greets_from_config() {
    let (_dir, wasm) = new_kv_project("kv-count");
    let args = [
        "--kv",
        "default",
        "--config",
        "greeting=hi",
        "--state-dir",
        ":memory:",
    ];
    let shoal = Shoal::run(SHOAL, wasm.to_str().unwrap(), &args);
    assert_eq!(shoal.get("/").body, "hi, visitor number 1!\n");
    assert_eq!(shoal.get("/").body, "hi, visitor number 2!\n");
    let put = shoal_test_support::agent()
        .put(&shoal.url("/values/colour"))
        .send("teal")
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(shoal.get("/values/colour").body, "teal");
    assert_eq!(shoal.get("/values/size").status, 404);
}
