//! Components built with the ecosystem's SDKs, exactly as their users build
//! them, are served unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_test_support::{Shoal, echo_duplex, guests};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn a_wstd_component_is_served_and_streams() {
    let shoal = Shoal::run(SHOAL, guests::COMPAT_WSTD, &[]);
    assert!(shoal.logs().contains("wasip2"));
    assert_eq!(shoal.get("/x").body, "hello from wstd at /x\n");
    assert_eq!(echo_duplex(shoal.addr, "/echo", 4 << 20), (200, true));
}

#[test]
fn a_spin_sdk_7_component_is_served() {
    let shoal = Shoal::run(SHOAL, guests::COMPAT_SPIN, &[]);
    assert!(shoal.logs().contains("wasip3"));
    let reply = shoal.get("/hello");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from spin-sdk at /hello\n")
    );
}

/// The componentize-py version `cargo xtask test` installs.
const COMPONENTIZE_PY: &str = "componentize-py";

/// The WASI 0.2 WIT files the `wasip2` crate ships (the guests depend on it,
/// so cargo has it unpacked).
fn wasi_wit() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registries = std::fs::read_dir(home.join("registry/src")).ok()?;
    registries.flatten().find_map(|registry| {
        std::fs::read_dir(registry.path())
            .ok()?
            .flatten()
            .find_map(|krate| {
                let name = krate.file_name().to_string_lossy().into_owned();
                let wit = krate.path().join("wit");
                (name.starts_with("wasip2-2.") && wit.join("deps/http.wit").is_file())
                    .then_some(wit)
            })
    })
}

fn componentize_python(app_dir: &Path, out: &Path) -> Option<()> {
    let found = Command::new(COMPONENTIZE_PY)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "componentize-py is missing; `cargo xtask test` installs it with pip"
        );
        eprintln!("componentize-py is not installed; skipping (`pip install componentize-py`)");
        return None;
    }
    let wit = wasi_wit().expect("the wasip2 crate's WIT files (cargo fetches them for the guests)");
    let mut child = Command::new(COMPONENTIZE_PY)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "wasi:http/proxy@0.2.12", "componentize", "app", "-o"])
        .arg(out)
        .current_dir(app_dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "componentize-py failed");
            return Some(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("componentize-py took over 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_componentize_py_component_is_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        include_str!("guests-python/app.py"),
    )
    .unwrap();
    let component = dir.path().join("python.wasm");
    if componentize_python(dir.path(), &component).is_none() {
        return;
    }
    let size = std::fs::metadata(&component).unwrap().len();
    let started = Instant::now();
    let shoal = Shoal::run(SHOAL, component.to_str().unwrap(), &[]);
    eprintln!(
        "python component ({size} bytes) ready in {:?}",
        started.elapsed()
    );
    let reply = shoal.get("/hi?x=1");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from python at /hi?x=1\n")
    );
}
