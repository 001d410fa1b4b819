//! `shoal run` end to end: the real binary, real guests, loopback HTTP.

use std::time::Duration;

use shoal_test_support::{Shoal, echo_duplex, get, guests, post, run_to_exit, upstream};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

#[test]
fn hello_is_served_with_the_scheme_and_authority_the_client_used() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    let reply = shoal.get("/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello from shoal\n");
    let reply = shoal.get("/request?x=1");
    assert_eq!(
        reply.body.trim(),
        format!("http {} /request?x=1", shoal.addr)
    );
}

#[test]
fn ten_mebibytes_stream_through_an_echo_guest_both_ways_at_once() {
    // The guest echoes while the client still sends: this only completes
    // if neither side buffers the whole body.
    let shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    assert_eq!(echo_duplex(shoal.addr, "/echo", 10 << 20), (200, true));
    let p3 = Shoal::run(SHOAL, guests::P3_HELLO, &[]);
    assert_eq!(echo_duplex(p3.addr, "/echo", 10 << 20), (200, true));
}

#[test]
fn response_trailers_reach_a_client_that_accepts_them() {
    use std::io::{Read, Write};
    let shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    let mut stream = std::net::TcpStream::connect(shoal.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /trailers HTTP/1.1\r\nhost: x\r\nte: trailers\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (_, tail) = raw.split_once("\r\n0\r\n").expect("a chunked body");
    assert!(raw.contains("with trailers"), "{raw}");
    assert!(
        tail.to_ascii_lowercase().contains("x-checksum: 42"),
        "{raw}"
    );
}

#[test]
fn the_environment_is_granted_only_as_asked() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &["--env", "GREETING=hi there"]);
    assert_eq!(shoal.get("/env?name=GREETING").body, "hi there");
    assert_eq!(
        shoal.get("/env-count").body,
        "1",
        "the host's environment must not leak"
    );
    assert_eq!(shoal.get("/env?name=HOME").status, 404);

    let bare = Shoal::run(SHOAL, guests::PROBE, &[]);
    assert_eq!(bare.get("/env?name=GREETING").status, 404);
    assert_eq!(bare.get("/env-count").body, "0");
}

#[test]
fn outbound_http_is_denied_unless_allowed() {
    let up = upstream("pong");
    let fetch = format!("/fetch?url=http://{up}/ping");

    let denied = Shoal::run(SHOAL, guests::PROBE, &[]);
    let reply = denied.get(&fetch);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(
        denied
            .wait_for_log("--allow-outbound", Duration::from_secs(5))
            .is_some()
    );

    let other_port = format!("127.0.0.1:{}", up.port().wrapping_add(1));
    let wrong = Shoal::run(SHOAL, guests::PROBE, &["--allow-outbound", &other_port]);
    assert_eq!(wrong.get(&fetch).status, 403);

    let allowed = Shoal::run(SHOAL, guests::PROBE, &["--allow-outbound", &up.to_string()]);
    let reply = allowed.get(&fetch);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "upstream 200: pong")
    );

    // `*` is any public host: a loopback upstream needs its IP named.
    let any = Shoal::run(SHOAL, guests::PROBE, &["--allow-outbound", "*"]);
    let reply = any.get(&fetch);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (403, "outbound destination prohibited")
    );
    let line = any
        .wait_for_log("outbound request refused", Duration::from_secs(5))
        .expect("a log line saying why");
    assert!(line.contains("loopback"), "{line}");
}

#[test]
fn guest_output_reaches_the_host_log_tagged_with_the_app() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &["--name", "chatty"]);
    assert_eq!(shoal.get("/log").status, 200);
    let line = shoal
        .wait_for_log("line to stdout", Duration::from_secs(5))
        .expect("stdout line");
    assert!(line.contains("chatty") && line.contains("stdout"), "{line}");
    let line = shoal
        .wait_for_log("line to stderr", Duration::from_secs(5))
        .expect("stderr line");
    assert!(line.contains("chatty") && line.contains("stderr"), "{line}");
}

#[test]
fn a_wasip3_guest_is_served_and_streams() {
    let shoal = Shoal::run(SHOAL, guests::P3_HELLO, &[]);
    assert!(shoal.logs().contains("wasip3"));
    let reply = shoal.get("/greet");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from wasip3 at /greet\n")
    );
    let body: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    let reply = shoal_test_support::agent()
        .post(&shoal.url("/echo"))
        .send(&body[..])
        .unwrap();
    assert_eq!(reply.status(), 200);
    let echoed = reply.into_body().read_to_vec().unwrap();
    assert!(echoed == body, "echo of 1 MiB differs");
}

#[test]
fn a_second_start_reuses_compiled_code() {
    let cache = tempfile::tempdir().unwrap();
    let first = Shoal::run_with_cache(SHOAL, guests::PROBE, &[], cache.path());
    assert!(first.logs().contains("cached=false"), "{}", first.logs());
    drop(first);
    let second = Shoal::run_with_cache(SHOAL, guests::PROBE, &[], cache.path());
    assert!(second.logs().contains("cached=true"), "{}", second.logs());
    assert_eq!(second.get("/").status, 200);
}

#[test]
fn request_bodies_over_the_limit_are_refused() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &["--max-request-body", "1KiB"]);
    let reply = post(&shoal.url("/echo"), &[b'x'; 2048]);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(post(&shoal.url("/echo"), &[b'x'; 512]).body.len(), 512);
}

#[test]
fn beyond_concurrency_and_queue_requests_get_503_with_retry_after() {
    let shoal = Shoal::run(
        SHOAL,
        guests::PROBE,
        &["--max-concurrency", "1", "--max-queue", "0"],
    );
    let url = shoal.url("/busy?ms=1500");
    let busy = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    let reply = shoal.get("/");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap().status, 200);
    assert_eq!(shoal.get("/").status, 200);
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits_zero() {
    let mut shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    let url = shoal.url("/busy?ms=1000");
    let in_flight = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    shoal.signal("TERM");
    let reply = in_flight.join().unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "busy 1000ms\n"));
    let status = shoal
        .wait_exit(Duration::from_secs(10))
        .expect("shoal exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut shoal = Shoal::run(SHOAL, guests::PROBE, &["--timeout", "60s"]);
    let url = shoal.url("/spin");
    std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(300));
    shoal.signal("INT");
    assert!(
        shoal
            .wait_for_log("shutting down", Duration::from_secs(5))
            .is_some()
    );
    shoal.signal("INT");
    let status = shoal
        .wait_exit(Duration::from_secs(5))
        .expect("the second signal exits at once");
    assert!(!status.success());
}

#[test]
fn wrong_input_exits_nonzero_saying_what_was_found_and_expected() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello, not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let missing = dir.path().join("missing.wasm");
    let cases: [(&str, &[&str]); 5] = [
        (
            missing.to_str().unwrap(),
            &["cannot read component", "No such file"],
        ),
        (
            text.to_str().unwrap(),
            &[
                "not a WebAssembly file",
                "the text \"hello, not wasm\"",
                "wasm32-wasip2",
            ],
        ),
        (
            core.to_str().unwrap(),
            &["core wasm module, not a component", "wasm32-wasip2"],
        ),
        (
            guests::CLI_ONLY,
            &[
                "exports no HTTP handler",
                "wasi:cli/run",
                "wasi:http/incoming-handler",
            ],
        ),
        (dir.path().to_str().unwrap(), &["is a directory"]),
    ];
    for (path, expected) in cases {
        let (status, _, stderr) = run_to_exit(
            SHOAL,
            &["run", path, "--listen", ":0"],
            Duration::from_secs(60),
        );
        assert!(!status.success(), "{path}: {stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{path}: expected {needle:?} in {stderr}"
            );
        }
    }
    let (status, _, stderr) = run_to_exit(
        SHOAL,
        &["run", guests::PROBE, "--timeout", "soon"],
        Duration::from_secs(30),
    );
    assert!(
        !status.success() && stderr.contains("`soon` is not a duration"),
        "{stderr}"
    );
    let (status, _, stderr) = run_to_exit(
        SHOAL,
        &["run", guests::PROBE, "--env", "NOEQUALS"],
        Duration::from_secs(30),
    );
    assert!(
        !status.success() && stderr.contains("KEY=VALUE"),
        "{stderr}"
    );
}
