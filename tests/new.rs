//! `shoal new`: from nothing to a served component, as a developer does it,
//! and compile errors from the SDK's macro that point at the user's code.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal_test_support::{Shoal, run_to_exit};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn shoal_new(dir: &Path, name: &str) -> (bool, String) {
    let output = Command::new(SHOAL)
        .arg("new")
        .arg(name)
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
