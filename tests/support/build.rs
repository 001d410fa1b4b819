//! Builds the guest components in `tests/guests` for `wasm32-wasip2` and
//! hands their paths to the tests as `SHOAL_GUEST_<NAME>` variables.

use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[(&str, &str)] = &[
    ("HELLO", "hello.wasm"),
    ("PROBE", "probe.wasm"),
    ("P3_HELLO", "p3_hello.wasm"),
    ("CLI_ONLY", "cli-only.wasm"),
    ("COMPAT_WSTD", "compat_wstd.wasm"),
    ("COMPAT_SPIN", "compat_spin.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let guests = manifest_dir.join("../guests");
    println!("cargo:rerun-if-changed={}", guests.display());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    // A target dir of its own: the outer cargo holds the lock on the main one.
    let target_dir = out_dir.join("guests");
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
        .arg(&target_dir);
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
        "building the test guests failed; is the target installed? run `rustup target add wasm32-wasip2`"
    );
    let release = target_dir.join("wasm32-wasip2/release");
    for (name, file) in GUESTS {
        let path = release.join(file);
        assert!(path.exists(), "guest `{}` was not built", path.display());
        println!("cargo:rustc-env=SHOAL_GUEST_{name}={}", path.display());
    }
}
