//! `shoal host` and the CLI verbs end to end: deploy, list, route, log,
//! remove, restart after kill -9, redeploy under load, bad input, tokens.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shoal_test_support::{Shoal, agent, get, guests};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn host(dir: &Path) -> Shoal {
    Shoal::host(SHOAL, dir, &[])
}

#[test]
fn deploy_list_route_log_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    let (_, stderr) = shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "probe",
            "--env",
            "GREETING=hi",
        ],
    );
    assert!(stderr.contains("deployed `probe` v1 (wasip2"), "{stderr}");
    shoal.cli_ok(SHOAL, &["deploy", guests::P3_HELLO, "--name", "p3"]);

    assert_eq!(shoal.get("/probe/env?name=GREETING").body, "hi");
    assert_eq!(shoal.get("/p3/x").body, "hello from wasip3 at /x\n");
    assert_eq!(shoal.get("/probe/log").status, 200);

    let (table, _) = shoal.cli_ok(SHOAL, &["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("REQUESTS"),
        "{table}"
    );
    let probe = lines
        .iter()
        .find(|l| l.starts_with("probe"))
        .expect("probe listed");
    assert!(
        probe.contains("/probe") && probe.contains("ready") && probe.contains("v1"),
        "{probe}"
    );
    assert!(
        probe.trim_end().ends_with('2'),
        "two requests counted: {probe}"
    );

    let (logs, _) = shoal.cli_ok(SHOAL, &["logs", "probe"]);
    assert!(
        logs.contains("stdout line to stdout") && logs.contains("stderr line to stderr"),
        "{logs}"
    );

    let (status, _) = shoal.cli_ok(SHOAL, &["status"]);
    assert!(
        status.contains("status    ok") && status.contains("apps      2"),
        "{status}"
    );

    let metrics = shoal.admin_get("/metrics").body;
    assert!(
        metrics.contains("shoal_requests_total{app=\"probe\",status=\"200\"} 2"),
        "{metrics}"
    );
    for family in [
        "shoal_request_duration_seconds",
        "shoal_instantiations",
        "shoal_active_instances",
        "shoal_queue_depth",
        "shoal_compile_duration_seconds",
    ] {
        assert!(metrics.contains(family), "{family} missing");
    }

    shoal.cli_ok(SHOAL, &["rm", "probe"]);
    let gone = shoal.get("/probe/");
    assert_eq!(
        (gone.status, gone.body.as_str()),
        (404, "no app is routed at /probe/\n")
    );
    let (status, _, stderr) = shoal.cli(SHOAL, &["rm", "probe"]);
    assert!(
        !status.success() && stderr.contains("no app named `probe`"),
        "{stderr}"
    );
}

#[test]
fn logs_follow_streams_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    shoal.cli_ok(SHOAL, &["deploy", guests::PROBE, "--name", "probe"]);
    let url = format!("{}/v1/apps/probe/logs?follow=true", shoal.admin_url());
    let auth = format!("Bearer {}", shoal.token());
    let follower = std::thread::spawn(move || {
        let response = agent()
            .get(&url)
            .header("authorization", auth)
            .call()
            .unwrap();
        let mut reader = std::io::BufReader::new(response.into_body().into_reader());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        line
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(shoal.get("/probe/log").status, 200);
    let line = follower.join().unwrap();
    assert!(line.contains("stdout line to stdout"), "{line}");
}

#[test]
fn routing_by_host_then_longest_prefix_with_the_prefix_stripped() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::PROBE, "--name", "api", "--route", "/api"],
    );
    shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "api-v2",
            "--route",
            "/api/v2",
        ],
    );
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::PROBE, "--name", "root", "--route", "/"],
    );
    shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::P3_HELLO,
            "--name",
            "site",
            "--hostname",
            "site.example",
        ],
    );
    let addr = shoal.addr;

    assert_eq!(
        shoal.get("/api/request").body.trim(),
        format!("http {addr} /request /api")
    );
    assert_eq!(
        shoal.get("/api/v2/request?q=1").body.trim(),
        format!("http {addr} /request?q=1 /api/v2")
    );
    assert_eq!(
        shoal.get("/apiary/request").status,
        404,
        "prefixes match whole segments; root answers 404 for its unknown path"
    );
    assert_eq!(
        shoal.get("/request").body.trim(),
        format!("http {addr} /request")
    );

    let by_host = agent()
        .get(&shoal.url("/api/anything"))
        .header("host", "site.example:8080")
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(
        by_host, "hello from wasip3 at /api/anything\n",
        "a hostname route gets the path unchanged"
    );
}

#[test]
fn an_unmatched_request_gets_a_plain_404() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    let reply = shoal.get("/nothing/here");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "no app is routed at /nothing/here\n")
    );
}

#[test]
fn a_killed_host_restarts_with_every_acknowledged_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::PROBE, "--name", "probe", "--env", "K=v1"],
    );
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::PROBE, "--name", "probe", "--env", "K=v2"],
    );
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::P3_HELLO, "--name", "p3", "--route", "/"],
    );
    shoal.signal("KILL");
    drop(shoal);

    let started = Instant::now();
    let shoal = host(dir.path());
    let reply = shoal.get("/probe/env?name=K");
    let elapsed = started.elapsed();
    eprintln!("restart to first 200: {elapsed:?}");
    assert_eq!(reply.body, "v2");
    assert_eq!(shoal.get("/x").body, "hello from wasip3 at /x\n");
    let (table, _) = shoal.cli_ok(SHOAL, &["ls"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("probe") && l.contains("v2")),
        "{table}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[test]
fn a_host_killed_during_deploys_keeps_no_partial_state() {
    let dir = tempfile::tempdir().unwrap();
    for delay_ms in [0u64, 5, 15, 40, 80] {
        let shoal = host(dir.path());
        let admin = shoal.admin_url();
        let data_dir = dir.path().to_path_buf();
        let deploy = std::thread::spawn(move || {
            shoal_test_support::run_to_exit_env(
                SHOAL,
                &[
                    "deploy",
                    guests::P3_HELLO,
                    "--name",
                    "racer",
                    "--admin",
                    &admin,
                ],
                &[("SHOAL_DATA_DIR", data_dir.as_os_str())],
                Duration::from_secs(60),
            )
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        shoal.signal("KILL");
        drop(shoal);
        let (status, _, _) = deploy.join().unwrap();
        let acknowledged = status.success();

        let shoal = host(dir.path());
        let (table, _) = shoal.cli_ok(SHOAL, &["ls"]);
        let listed = table.lines().any(|l| l.starts_with("racer"));
        if acknowledged {
            assert!(
                listed,
                "acknowledged deploy lost (delay {delay_ms} ms): {table}"
            );
        }
        if listed {
            assert_eq!(shoal.get("/racer/").status, 200);
        }
        // Component bytes no deployment refers to are swept at start.
        let stored = std::fs::read_dir(dir.path().join("components"))
            .unwrap()
            .count();
        assert_eq!(
            stored,
            usize::from(listed),
            "delay {delay_ms} ms: {stored} files, listed {listed}"
        );
        if listed {
            shoal.cli_ok(SHOAL, &["rm", "racer"]);
        }
    }
}

#[test]
fn a_redeploy_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "app",
            "--route",
            "/",
            "--env",
            "V=1",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            let url = shoal.url("/env?name=V");
            std::thread::spawn(move || {
                let agent = agent();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match agent.get(&url).call() {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => bad.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for version in 2..=4 {
        std::thread::sleep(Duration::from_millis(300));
        let env = format!("V={version}");
        shoal.cli_ok(
            SHOAL,
            &[
                "deploy",
                guests::PROBE,
                "--name",
                "app",
                "--route",
                "/",
                "--env",
                &env,
            ],
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for handle in load {
        handle.join().unwrap();
    }
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    eprintln!("redeploy under load: {ok} ok, {bad} failed");
    assert!(ok > 100, "too little load to mean anything: {ok}");
    assert_eq!(bad, 0);
    assert_eq!(shoal.get("/env?name=V").body, "4");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::host(SHOAL, dir.path(), &["--max-upload", "150KiB"]);
    shoal.cli_ok(
        SHOAL,
        &["deploy", guests::PROBE, "--name", "app", "--env", "V=good"],
    );
    shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::HELLO,
            "--name",
            "taken",
            "--route",
            "/taken",
        ],
    );

    let files = tempfile::tempdir().unwrap();
    for (args, expected) in bad_deploys(files.path()) {
        let mut full = vec!["deploy"];
        full.extend(args.iter().map(String::as_str));
        let (status, _, stderr) = shoal.cli(SHOAL, &full);
        assert!(!status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert_eq!(
            shoal.get("/app/env?name=V").body,
            "good",
            "{args:?} replaced the good version"
        );
    }
    let (table, _) = shoal.cli_ok(SHOAL, &["ls"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    // Refused uploads stored nothing: two components, for two apps.
    assert_eq!(
        std::fs::read_dir(dir.path().join("components"))
            .unwrap()
            .count(),
        2
    );

    // Raw API errors are JSON with the fix.
    let reply = shoal.admin_send("POST", "/v1/components", "application/wasm", b"junk");
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("\"error\"") && reply.body.contains("not a WebAssembly file"),
        "{}",
        reply.body
    );
    let reply = shoal.admin_get("/v1/nope");
    assert_eq!(reply.status, 404);
}

/// Deploys that must be refused (arguments after `deploy`), each with what
/// its error must say; the files they name are written under `files`.
fn bad_deploys(files: &std::path::Path) -> Vec<(Vec<String>, &'static str)> {
    let write = |name: &str, bytes: &[u8]| {
        let path = files.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let probe = std::fs::read(guests::PROBE).unwrap();
    let not_wasm = write("notes.wasm", b"this is not wasm");
    let truncated = write("truncated.wasm", &probe[..probe.len() / 2]);
    let core = write("core.wasm", b"\0asm\x01\0\0\0");
    let big = write(
        "big.wasm",
        &[probe.as_slice(), &vec![0u8; 100 << 10]].concat(),
    );
    let cases: Vec<(Vec<&str>, &'static str)> = vec![
        (
            vec![not_wasm.as_str(), "--name", "app"],
            "not a WebAssembly file",
        ),
        (
            vec![truncated.as_str(), "--name", "app"],
            "the component is invalid",
        ),
        (
            vec![core.as_str(), "--name", "app"],
            "core wasm module, not a component",
        ),
        (
            vec![guests::CLI_ONLY, "--name", "app"],
            "exports no HTTP handler",
        ),
        (
            vec![big.as_str(), "--name", "app"],
            "over the limit of 153600 bytes; start the host with a larger `--max-upload`",
        ),
        (
            vec![guests::HELLO, "--name", "Not_Valid"],
            "invalid app name `Not_Valid`",
        ),
        (
            vec![guests::HELLO, "--name", "app", "--route", "/taken"],
            "route `/taken` is already taken by app `taken`",
        ),
        (
            vec![guests::HELLO, "--name", "app", "--route", "no-slash"],
            "invalid route `no-slash`",
        ),
        (
            vec![guests::HELLO, "--name", "app", "--memory", "4GiB"],
            "--max-memory",
        ),
    ];
    cases
        .into_iter()
        .map(|(args, expected)| (args.into_iter().map(str::to_string).collect(), expected))
        .collect()
}

#[test]
fn no_host_answering_says_how_to_start_one() {
    let (status, _, stderr) = shoal_test_support::run_to_exit(
        SHOAL,
        &["ls", "--admin", "http://127.0.0.1:9"],
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("no Shoal host answers at http://127.0.0.1:9")
            && stderr.contains("`shoal host`"),
        "{stderr}"
    );
}

#[test]
fn a_token_guards_the_admin_api_and_guests_cannot_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = Shoal::host(SHOAL, dir.path(), &["--token", "s3cret"]);
    let apps = format!("{}/v1/apps", shoal.admin_url());
    assert_eq!(get(&apps).status, 401);
    let wrong = agent()
        .get(&apps)
        .header("authorization", "Bearer nope")
        .call()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = agent()
        .get(&apps)
        .header("authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(right.status(), 200);
    let (status, _, stderr) = shoal.cli(SHOAL, &["ls", "--token", "nope"]);
    assert!(
        !status.success() && stderr.contains("401") && stderr.contains("--token"),
        "{stderr}"
    );

    shoal.cli_ok(
        SHOAL,
        &[
            "deploy",
            guests::PROBE,
            "--name",
            "probe",
            "--allow-outbound",
            "*",
            "--token",
            "s3cret",
        ],
    );
    let admin = shoal.admin.unwrap();
    let reply = shoal.get(&format!("/probe/fetch?url=http://{admin}/v1/health"));
    assert_eq!(
        reply.status, 403,
        "a guest reached the admin API: {}",
        reply.body
    );
    let reply = shoal.get(&format!(
        "/probe/fetch?url=http://localhost:{}/v1/health",
        admin.port()
    ));
    assert_eq!(
        reply.status, 403,
        "a guest reached the admin API by name: {}",
        reply.body
    );
}

#[test]
fn a_shoal_toml_deploys_several_apps_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let shoal = host(dir.path());
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(guests::PROBE, project.path().join("probe.wasm")).unwrap();
    let manifest = project.path().join("shoal.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[app]]\nname = \"probe\"\ncomponent = \"probe.wasm\"\nroute = \"/p\"\nenv = {{ GREETING = \"from toml\" }}\ntimeout = \"5s\"\n\n\
             [[app]]\nname = \"p3\"\ncomponent = \"{}\"\nhostname = \"p3.example\"\n",
            guests::P3_HELLO
        ),
    )
    .unwrap();
    let (_, stderr) = shoal.cli_ok(SHOAL, &["deploy", "-f", manifest.to_str().unwrap()]);
    assert!(
        stderr.contains("deployed `probe` v1") && stderr.contains("deployed `p3` v1"),
        "{stderr}"
    );
    assert_eq!(shoal.get("/p/env?name=GREETING").body, "from toml");

    std::fs::write(
        &manifest,
        "[[app]]\nname = \"probe\"\ncomponent = \"probe.wasm\"\nrouet = \"/q\"\n",
    )
    .unwrap();
    let (status, _, stderr) = shoal.cli(SHOAL, &["deploy", "-f", manifest.to_str().unwrap()]);
    assert!(
        !status.success() && stderr.contains("unknown field `rouet`"),
        "{stderr}"
    );
    assert_eq!(shoal.get("/p/env?name=GREETING").body, "from toml");
}
