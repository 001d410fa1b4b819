//! Builds the guest components in `tests/guests` and the examples in
//! `examples/` for `wasm32-wasip2`, and hands their paths to the tests as
//! `SHOAL_GUEST_<NAME>` and `SHOAL_EXAMPLE_<NAME>` variables.

use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[(&str, &str)] = &[
    ("HELLO", "hello.wasm"),
    ("PROBE", "probe.wasm"),
    ("P3_HELLO", "p3_hello.wasm"),
    ("CLI_ONLY", "cli-only.wasm"),
    ("COMPAT_WSTD", "compat_wstd.wasm"),
    ("COMPAT_SPIN", "compat_spin.wasm"),
    ("KV_PROBE", "kv_probe.wasm"),
    ("COMPAT_WASI_KV", "compat_wasi_kv.wasm"),
    ("COMPAT_SPIN_KV", "compat_spin_kv.wasm"),
    ("COMPAT_SPIN5", "compat_spin5.wasm"),
];

/// The examples, built with their own workspace's release profile.
const EXAMPLES: &[(&str, &str)] = &[
    ("EXAMPLE_HELLO", "hello.wasm"),
    ("EXAMPLE_JSON_API", "json_api.wasm"),
    ("EXAMPLE_ROUTER", "router.wasm"),
    ("EXAMPLE_FETCH", "fetch.wasm"),
    ("EXAMPLE_STREAM", "stream.wasm"),
    ("EXAMPLE_COUNTER", "counter.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    for dir in [
        "../../sdk/src",
        "../../sdk/macro/src",
        "../../sdk/Cargo.toml",
        "../../sdk/wit",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join(dir).display()
        );
    }
    build(
        &manifest_dir.join("../guests"),
        &out_dir.join("guests"),
        GUESTS,
        "SHOAL_GUEST_",
    );
    build(
        &manifest_dir.join("../../examples"),
        &out_dir.join("examples"),
        EXAMPLES,
        "SHOAL_",
    );
}

/// Builds the cargo workspace at `workspace` for `wasm32-wasip2` into
/// `target_dir` (its own: the outer cargo holds the lock on the main one)
/// and exports each artifact's path as `{prefix}{NAME}`.
fn build(
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
    artifacts: &[(&str, &str)],
    prefix: &str,
) {
    let guests = workspace;
    for entry in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", guests.join(entry).display());
    }
    for entry in std::fs::read_dir(guests).unwrap().flatten() {
        if entry.path().join("src").is_dir() {
            println!(
                "cargo:rerun-if-changed={}",
                entry.path().join("src").display()
            );
            println!(
                "cargo:rerun-if-changed={}",
                entry.path().join("Cargo.toml").display()
            );
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // The outer build's flags are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("running cargo to build the test guests");
    assert!(
        status.success(),
        "building `{}` failed; is the target installed? run `rustup target add wasm32-wasip2`",
        guests.display()
    );
    let release = target_dir.join("wasm32-wasip2/release");
    for (name, file) in artifacts {
        let path = release.join(file);
        assert!(path.exists(), "guest `{}` was not built", path.display());
        println!("cargo:rustc-env={prefix}{name}={}", path.display());
    }
}
