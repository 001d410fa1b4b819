use std::io::Read;

use super::*;

const HEADER: u64 = 10_000;
const IDLE: u64 = 60_000;

fn limits(max_connections: usize) -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(HEADER),
        idle_timeout: Duration::from_millis(IDLE),
        http2_keep_alive: None,
        max_connections,
        drain: Duration::from_secs(1),
    }
}

#[test]
fn a_connection_without_a_head_is_closed_at_the_header_timeout() {
    let fresh = Seen {
        since: 1000,
        ..Seen::default()
    };
    assert_eq!(verdict(&fresh, 1000 + HEADER - 1, HEADER, IDLE), None);
    assert_eq!(
        verdict(&fresh, 1000 + HEADER, HEADER, IDLE),
        Some((Close::Now, Reason::Head))
    );
}

#[test]
fn an_idle_keep_alive_lasts_the_idle_timeout_unless_a_head_begins() {
    let idle = Seen {
        since: 1000,
        served: true,
        ..Seen::default()
    };
    assert_eq!(verdict(&idle, 1000 + HEADER * 2, HEADER, IDLE), None);
    assert_eq!(
        verdict(&idle, 1000 + IDLE, HEADER, IDLE),
        Some((Close::Gently, Reason::Idle))
    );
    // HTTP/1.1: the next head began arriving and stopped.
    let half = Seen {
        head_since: 5000,
        ..idle
    };
    assert_eq!(
        verdict(&half, 5000 + HEADER, HEADER, IDLE),
        Some((Close::Now, Reason::Head))
    );
    // HTTP/2 frames between requests (pings, settings) are no head.
    let h2 = Seen { h2: true, ..half };
    assert_eq!(verdict(&h2, 5000 + HEADER, HEADER, IDLE), None);
}

#[test]
fn a_request_in_flight_is_closed_only_when_its_client_stops_reading() {
    let busy = Seen {
        in_flight: 1,
        since: 1,
        served: true,
        ..Seen::default()
    };
    assert_eq!(verdict(&busy, 1 + IDLE * 10, HEADER, IDLE), None);
    let stalled = Seen {
        write_blocked: 2000,
        ..busy
    };
    assert_eq!(verdict(&stalled, 2000 + IDLE - 1, HEADER, IDLE), None);
    assert_eq!(
        verdict(&stalled, 2000 + IDLE, HEADER, IDLE),
        Some((Close::Now, Reason::Stalled))
    );
}

#[test]
fn half_sent_heads_give_way_before_idle_keep_alives() {
    let fresh_new = Seen {
        since: 900,
        ..Seen::default()
    };
    let idle_old = Seen {
        since: 100,
        served: true,
        ..Seen::default()
    };
    let busy = Seen {
        in_flight: 2,
        ..Seen::default()
    };
    assert!(victim_rank(&fresh_new) < victim_rank(&idle_old));
    assert_eq!(victim_rank(&busy), None);
}

#[test]
fn the_refusal_is_one_whole_response() {
    let text = std::str::from_utf8(REFUSED).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{text}"
    );
}

/// A connected pair on loopback: the server's side (tokio) and the client's.
async fn pair(listener: &tokio::net::TcpListener) -> (tokio::net::TcpStream, std::net::TcpStream) {
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_do_not() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let table = Table::new("test", "--max-connections", limits(2));
    let (s1, _c1) = pair(&listener).await;
    let first = table.admit(&s1).unwrap();
    let (s2, _c2) = pair(&listener).await;
    let second = table.admit(&s2).unwrap();
    let _busy = Guard::begin(&second.entry, http::Version::HTTP_11);

    // The third evicts the first, the only one with nothing in flight.
    let (s3, _c3) = pair(&listener).await;
    let third = table.admit(&s3).unwrap();
    assert_eq!(first.entry.closing(), Close::Now);
    assert_eq!(second.entry.closing(), Close::Open);
    drop(first);
    assert_eq!(table.len(), 2);

    // All busy: the fourth is refused with a 503.
    let _busy = Guard::begin(&third.entry, http::Version::HTTP_11);
    let (s4, mut c4) = pair(&listener).await;
    assert!(table.admit(&s4).is_none());
    drop(s4);
    let mut answer = String::new();
    c4.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(table.len(), 2);
}

#[tokio::test]
async fn a_request_done_starts_the_idle_clock_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let table = Table::new("test", "--max-connections", limits(8));
    let (s1, _c1) = pair(&listener).await;
    let registration = table.admit(&s1).unwrap();
    let entry = &registration.entry;
    entry.bytes_read();
    let guard = Guard::begin(entry, http::Version::HTTP_11);
    assert_eq!(entry.seen().in_flight, 1);
    std::thread::sleep(Duration::from_millis(5));
    table.clock.tick();
    drop(guard);
    let seen = entry.seen();
    assert_eq!((seen.in_flight, seen.head_since), (0, 0));
    assert!(seen.served && !seen.h2);
    assert!(seen.since > 1);
}

#[tokio::test]
async fn drain_waits_for_connections_to_go_then_drops_the_rest() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut short = limits(8);
    short.drain = Duration::from_millis(100);
    let table = Table::new("test", "--max-connections", short);
    let (s1, _c1) = pair(&listener).await;
    let registration = table.admit(&s1).unwrap();
    let entry = registration.entry.clone();
    // A connection that ignores the gentle request and goes only when told
    // to close now, as a busy one would after the drain limit.
    let held = tokio::spawn(async move {
        loop {
            entry.wake.notified().await;
            if entry.closing() == Close::Now {
                drop(registration);
                return;
            }
        }
    });
    let started = Instant::now();
    table.drain().await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(1));
    held.await.unwrap();
    assert_eq!(table.len(), 0);
}

#[tokio::test]
async fn failed_accepts_back_off_and_out_of_files_frees_one() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let table = Table::new("test", "--max-connections", limits(8));
    let (s1, _c1) = pair(&listener).await;
    let idle = table.admit(&s1).unwrap();
    let emfile = std::io::Error::from_raw_os_error(24);
    let waits: Vec<Duration> = (0..12).map(|_| table.accept_failed(&emfile)).collect();
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert!(waits[0] >= Duration::from_millis(10));
    assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
    // Out of descriptors: the idle connection was told to go.
    assert_eq!(idle.entry.closing(), Close::Now);
    // The next accept ends the streak: back to the shortest wait.
    let (s2, _c2) = pair(&listener).await;
    let _second = table.admit(&s2).unwrap();
    assert!(table.accept_failed(&emfile) < Duration::from_millis(100));
}
