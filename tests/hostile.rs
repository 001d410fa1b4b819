//! Hostile guests: each is answered within its bound with a short plain
//! reason, while healthy requests keep being served, and a guest burning
//! CPU does not starve the others.

use std::time::{Duration, Instant};

use shoal_test_support::{Reply, Shoal, get, guests};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

fn in_background(shoal: &Shoal, path: &str) -> std::thread::JoinHandle<Reply> {
    let url = shoal.url(path);
    std::thread::spawn(move || get(&url))
}

#[test]
fn hostile_guests_fail_alone_and_fast_while_healthy_requests_are_served() {
    let shoal = Shoal::run(
        SHOAL,
        guests::PROBE,
        &["--timeout", "2s", "--memory", "64MiB"],
    );
    let started = Instant::now();
    let hostile = [
        ("/spin", 504, "did not answer within its 2s deadline"),
        ("/oom", 500, "exceeded its memory limit of 67108864 bytes"),
        ("/recurse", 500, "crashed"),
        ("/panic", 500, "crashed: panic"),
        ("/no-response", 502, "returned no response"),
    ]
    .map(|(path, status, reason)| (path, status, reason, in_background(&shoal, path)));

    // Meanwhile, the healthy route answers.
    for _ in 0..10 {
        let reply = shoal.get("/");
        assert_eq!(reply.status, 200);
        assert!(
            reply.elapsed < Duration::from_secs(1),
            "healthy request took {:?}",
            reply.elapsed
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    for (path, status, reason, handle) in hostile {
        let reply = handle.join().unwrap();
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert!(reply.body.contains(reason), "{path}: {:?}", reply.body);
        assert!(
            !reply.body.contains("wasm backtrace") && reply.body.lines().count() == 1,
            "{path}: {:?}",
            reply.body
        );
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "hostile requests took {:?}",
        started.elapsed()
    );
    // The detail is in the log, and the host still serves.
    assert!(
        shoal
            .wait_for_log("kind=\"memory_limit\"", Duration::from_secs(5))
            .is_some()
    );
    assert!(shoal.logs().contains("the probe panicked on purpose"));
    assert_eq!(shoal.get("/").status, 200);
}

#[test]
fn a_guest_failing_mid_body_aborts_its_response() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    let mut response = shoal_test_support::agent()
        .get(&shoal.url("/panic-mid-body"))
        .call()
        .expect("the head arrives");
    assert_eq!(response.status(), 200);
    // The body is cut off, not ended as if complete.
    let mut body = String::new();
    let read = std::io::Read::read_to_string(&mut response.body_mut().as_reader(), &mut body);
    assert!(read.is_err(), "the body ended cleanly: {body:?}");
    assert!(
        shoal
            .wait_for_log("the probe panicked mid-body", Duration::from_secs(5))
            .is_some()
    );
    assert_eq!(shoal.get("/").status, 200);
}

#[test]
fn guests_burning_cpu_do_not_starve_a_cheap_request() {
    let shoal = Shoal::run(SHOAL, guests::PROBE, &[]);
    assert_eq!(shoal.get("/").status, 200);
    let busy: Vec<_> = (0..4)
        .map(|_| in_background(&shoal, "/busy?ms=1500"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut latencies: Vec<Duration> = (0..7)
        .map(|_| {
            let reply = shoal.get("/");
            assert_eq!(reply.status, 200);
            std::thread::sleep(Duration::from_millis(60));
            reply.elapsed
        })
        .collect();
    latencies.sort();
    for handle in busy {
        assert_eq!(handle.join().unwrap().status, 200);
    }
    let median = latencies[latencies.len() / 2];
    eprintln!("cheap request latency while 4 guests spin: {latencies:?}");
    assert!(
        median < Duration::from_millis(100),
        "median {median:?} of {latencies:?}"
    );
}
