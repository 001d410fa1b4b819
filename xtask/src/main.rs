//! `cargo xtask <task>`: the project's automation, in Rust so it runs
//! wherever cargo does. Each task installs what it needs first.
//!
//! - `demo [ARGS...]`: build the `hello` example and serve it with
//!   `shoal run` (extra ARGS go to `shoal run`).
//! - `test`: formatting, clippy, the runtime's dependency rule, `layers`
//!   and `sizes`, then every test of the workspace (unit and end-to-end);
//!   it installs componentize-py and Debian's chromium + chromium-driver
//!   (for the dashboard's browser tests) when missing.
//! - `layers`: every reference between modules points down the floors
//!   declared in `layers.rs`, and no files refer to each other in a cycle.
//! - `sizes`: no source file over 600 lines, no function over 80.
//! - `bench`: the benchmark harness, `bench/run.sh`.
//! - `mesh-sim [ARGS...]`: the mesh simulation (100 nodes, 1,000 apps by
//!   default), `shoal mesh-sim` built in release.
//! - `chaos [--minutes M] [--seed S] [--release]`: a chaos soak (issue 16):
//!   five hosts in network namespaces (root; else loopback-only faults)
//!   under load, random faults for M minutes (default 10) from seed S
//!   (decimal or 0x hex; default from the clock, always printed), then the
//!   checker; the report is in `target/chaos/<seed>/`. The short run
//!   (fixed seed, ~60 s) is part of `test`.

mod layers;
mod lexer;
mod refs;
mod sizes;
mod source_tree;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(),
        Some("chaos") => chaos(&args[1..]),
        Some("layers") => layers::run(&root()),
        Some("sizes") => sizes::run(&root()),
        Some("bench") => run(Command::new("bash").arg(root().join("bench/run.sh"))),
        Some("mesh-sim") => run(cargo()
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "shoal-host",
                "--bin",
                "shoal",
                "--",
                "mesh-sim",
            ])
            .args(&args[1..])),
        _ => Err(
            "usage: cargo xtask <demo [SHOAL RUN ARGS...] | test | layers | sizes | bench | mesh-sim [ARGS...] | chaos [--minutes M] [--seed S] [--release]>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of xtask's manifest directory, which
/// `cargo run` (the `cargo xtask` alias) passes at run time. The path baked
/// in at build time is only a fallback: a target directory shared between
/// clones keeps a built xtask after its clone moves.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

/// Guests are built for `wasm32-wasip2`; add the target if it is missing.
fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))
        .map_err(|e| format!("{e}; install the target with `rustup target add wasm32-wasip2`"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn demo(shoal_args: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    let examples_target = target_dir().join("examples");
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
            "examples/Cargo.toml",
            "-p",
            "hello",
        ])
        .arg("--target-dir")
        .arg(&examples_target))?;
    let hello = examples_target.join("wasm32-wasip2/release/hello.wasm");
    run(cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "shoal-host",
            "--",
            "run",
        ])
        .arg(hello)
        .args(shoal_args))
}

/// `chaos --minutes M --seed S [--release]`: the chaos suite's ignored
/// `soak` test, with its output shown.
fn chaos(args: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    let mut command = cargo();
    command.arg("test");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next().cloned().ok_or_else(|| {
                format!("`{name}` needs a value, e.g. `cargo xtask chaos {name} 10`")
            })
        };
        match arg.as_str() {
            "--minutes" => {
                let minutes = value("--minutes")?;
                minutes
                    .parse::<u32>()
                    .map_err(|_| format!("--minutes `{minutes}` is not a whole number"))?;
                command.env("SHOAL_CHAOS_MINUTES", minutes);
            }
            "--seed" => {
                command.env("SHOAL_CHAOS_SEED", value("--seed")?);
            }
            "--release" => {
                command.arg("--release");
            }
            other => {
                return Err(format!(
                    "unknown chaos flag `{other}`; usage: cargo xtask chaos [--minutes M] [--seed S] [--release]"
                ));
            }
        }
    }
    run(command.args([
        "-p",
        "shoal-host",
        "--test",
        "chaos",
        "--",
        "--ignored",
        "--exact",
        "soak",
        "--nocapture",
    ]))
}

/// The guest-side workspaces, built apart from the host's.
const GUEST_WORKSPACES: &[&str] = &[
    "sdk/Cargo.toml",
    "examples/Cargo.toml",
    "tests/guests/Cargo.toml",
];

fn test() -> Result<(), String> {
    ensure_wasm_target()?;
    run(cargo().args(["fmt", "--all", "--check"]))
        .map_err(|e| format!("{e}; format the code with `cargo fmt --all`"))?;
    for manifest in GUEST_WORKSPACES {
        run(cargo().args(["fmt", "--all", "--check", "--manifest-path", manifest])).map_err(
            |e| format!("{e}; format the code with `cargo fmt --all --manifest-path {manifest}`"),
        )?;
    }
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    for manifest in ["sdk/Cargo.toml", "examples/Cargo.toml"] {
        run(cargo().args([
            "clippy",
            "--manifest-path",
            manifest,
            "--target",
            "wasm32-wasip2",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    runtime_stays_off_the_network()?;
    // Both source checks report before either fails the run.
    let (layers, sizes) = (layers::run(&root()), sizes::run(&root()));
    layers.and(sizes)?;
    ensure_componentize_py();
    ensure_chromium();
    // The SDK's pure logic (router, query, errors) is tested on the host.
    run(cargo().args(["test", "--manifest-path", "sdk/Cargo.toml"]))?;
    run(cargo().args(["test", "--workspace"]))
}

/// The compatibility tests build a Python component with componentize-py,
/// from PyPI. A failed install is reported; the test then says what is
/// missing.
fn ensure_componentize_py() {
    let found = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    let installed = run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "componentize-py==0.25.1",
    ]));
    if let Err(error) = installed {
        eprintln!(
            "xtask: could not install componentize-py ({error}); the Python compatibility test will fail"
        );
    }
}

/// The dashboard's browser tests (`tests/ui.rs`) drive Debian's headless
/// Chromium through chromedriver; install both when either is missing. A
/// failed install is reported; the test then says how to install them.
fn ensure_chromium() {
    let found = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if found("chromium") && found("chromedriver") {
        return;
    }
    let installed = run(Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .or_else(|_| {
        // A machine whose package lists are stale or empty: refresh once.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    });
    if let Err(error) = installed {
        eprintln!(
            "xtask: could not install chromium and chromium-driver ({error}); the dashboard's browser tests will fail (as root: `apt-get install -y chromium chromium-driver`)"
        );
    }
}

/// The runtime never touches the network: no listener, no gossip, no
/// database. Its dependency tree must not contain what would let it.
fn runtime_stays_off_the_network() -> Result<(), String> {
    let output = cargo()
        .args([
            "tree",
            "-p",
            "shoal-runtime",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    let tree = String::from_utf8_lossy(&output.stdout);
    let forbidden = ["chitchat", "rusqlite", "clap ", "hyper-util", "axum"];
    for name in forbidden {
        if tree.lines().any(|line| {
            line.starts_with(name.trim_end()) && line[name.trim_end().len()..].starts_with(' ')
        }) {
            return Err(format!(
                "shoal-runtime depends on `{}`; the runtime must not know sockets, CLIs, storage or peers (see ARCHITECTURE.md)",
                name.trim()
            ));
        }
    }
    Ok(())
}
