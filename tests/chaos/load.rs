//! A bounded load over every node and app, and what it saw: one
//! [`Event`] per request, live streaks of successes (so the schedule can
//! wait for recovery), and one [`Sample`] of each process's memory and
//! descriptors per second.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cluster::{Pids, Place};
use crate::net;

/// The apps under load: 1 replica, 2 replicas, every node.
pub const APPS: [&str; 3] = ["r1", "r2", "rall"];
/// Time between the starts of two requests of one (node, app): with three
/// apps, 30 requests a second per node.
const INTERVAL: Duration = Duration::from_millis(100);
/// An app's deadline in this suite (its spec's `timeout_ms`).
pub const DEADLINE_MS: u32 = 2_000;
/// The most times a request is forwarded (`mesh::forward::MAX_HOPS`).
pub const MAX_HOPS: u64 = 2;
/// The default forward grace.
pub const GRACE_MS: u32 = 2_000;
/// Longer than any bounded answer (deadline + grace + 5 s): past it a
/// request is recorded as hung.
const CLIENT_TIMEOUT: Duration = Duration::from_millis((DEADLINE_MS + GRACE_MS + 5_000) as u64);

/// What a request ended as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Ok,
    /// 503: no ready instance in the mesh.
    NoHolder,
    /// 503: the hop guard (moved while forwarded).
    Moved,
    /// Any other 503.
    Unavailable,
    BadGateway,
    GatewayTimeout,
    /// No answer: refused, reset, cut.
    Conn,
    /// No answer within the client's bound.
    Hung,
    Other,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::NoHolder => "503-no-holder",
            Class::Moved => "503-moved",
            Class::Unavailable => "503-other",
            Class::BadGateway => "502",
            Class::GatewayTimeout => "504",
            Class::Conn => "connection",
            Class::Hung => "hung",
            Class::Other => "other",
        }
    }
}

/// One request.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub node: u8,
    pub app: u8,
    /// Milliseconds since the run's epoch.
    pub start: u32,
    pub end: u32,
    /// 0 without an answer.
    pub status: u16,
    pub class: Class,
    pub retry_after: bool,
}

/// One process's resources at one time.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub node: u8,
    pub incarnation: u16,
    pub at: u32,
    pub rss_kib: u64,
    pub fds: u32,
}

/// The run's clock: milliseconds since `epoch`.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> u32 {
        self.0.elapsed().as_millis() as u32
    }
}

/// Per (node, app): consecutive successes so far, and when the latest began.
pub struct Streaks(Vec<(AtomicU64, AtomicU64)>);

impl Streaks {
    fn slot(&self, node: usize, app: usize) -> &(AtomicU64, AtomicU64) {
        &self.0[node * APPS.len() + app]
    }

    /// Whether every (node, app) has its last 3 requests successful, the
    /// latest begun after `since`.
    pub fn all_served_since(&self, since: u32) -> bool {
        self.0.iter().all(|(run, last)| {
            run.load(Ordering::Relaxed) >= 3 && last.load(Ordering::Relaxed) >= since as u64
        })
    }
}

/// The running load; it stops when dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub streaks: Arc<Streaks>,
    threads: Vec<JoinHandle<Vec<Event>>>,
    sampler: Option<JoinHandle<Vec<Sample>>>,
}

impl Load {
    pub fn start(places: &[Place], pids: Pids, clock: Clock) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let slots = (0..places.len() * APPS.len())
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        let streaks = Arc::new(Streaks(slots));
        let mut threads = Vec::new();
        for (node, place) in places.iter().enumerate() {
            for app in 0..APPS.len() {
                let (place, stop, streaks) = (place.clone(), stop.clone(), streaks.clone());
                threads.push(std::thread::spawn(move || {
                    requests(&place, node, app, clock, &stop, &streaks)
                }));
            }
        }
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || sample(&pids, clock, &stop))
        };
        Load {
            stop,
            streaks,
            threads,
            sampler: Some(sampler),
        }
    }

    /// Stops; every request, in order of start, and the samples.
    pub fn finish(mut self) -> (Vec<Event>, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut events: Vec<Event> = std::mem::take(&mut self.threads)
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        events.sort_by_key(|e| (e.start, e.node, e.app));
        let samples = self.sampler.take().map(|s| s.join().unwrap());
        (events, samples.unwrap_or_default())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn requests(
    place: &Place,
    node: usize,
    app: usize,
    clock: Clock,
    stop: &AtomicBool,
    streaks: &Streaks,
) -> Vec<Event> {
    if let Some(ns) = &place.ns {
        net::enter(ns);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_TIMEOUT))
        .build()
        .into();
    let url = format!("http://{}/{}", place.ingress, APPS[app]);
    let (run, last) = streaks.slot(node, app);
    let mut events = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let start = clock.now();
        let (status, class, retry_after) = one(&agent, &url);
        if class == Class::Ok {
            run.fetch_add(1, Ordering::Relaxed);
            last.store(start as u64, Ordering::Relaxed);
        } else {
            run.store(0, Ordering::Relaxed);
        }
        events.push(Event {
            node: node as u8,
            app: app as u8,
            start,
            end: clock.now(),
            status,
            class,
            retry_after,
        });
        std::thread::sleep(INTERVAL.saturating_sub(started.elapsed()));
    }
    events
}

fn one(agent: &ureq::Agent, url: &str) -> (u16, Class, bool) {
    let mut response = match agent.get(url).call() {
        Ok(response) => response,
        Err(ureq::Error::Timeout(_)) => return (0, Class::Hung, false),
        Err(_) => return (0, Class::Conn, false),
    };
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let mut body = String::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(4096)
        .read_to_string(&mut body);
    let class = match status {
        _ if read.is_err() => Class::Conn,
        200 => Class::Ok,
        503 if body.contains("has no ready instance") => Class::NoHolder,
        503 if body.contains("moved while this request was forwarded") => Class::Moved,
        503 => Class::Unavailable,
        502 => Class::BadGateway,
        504 => Class::GatewayTimeout,
        _ => Class::Other,
    };
    if class == Class::Other {
        eprintln!("chaos: {url} answered {status}: {}", body.trim_end());
    }
    (status, class, retry_after)
}

fn sample(pids: &Pids, clock: Clock, stop: &AtomicBool) -> Vec<Sample> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let live: Vec<_> = pids.lock().unwrap().clone();
        for (node, slot) in live.iter().enumerate() {
            let Some((pid, incarnation)) = *slot else {
                continue;
            };
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u32);
            if let (Some(rss_kib), Ok(fds)) = (rss_kib, fds) {
                samples.push(Sample {
                    node: node as u8,
                    incarnation,
                    at: clock.now(),
                    rss_kib,
                    fds,
                });
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    samples
}

/// The longest a request may take before it counts as hung.
pub fn client_timeout_ms() -> u32 {
    CLIENT_TIMEOUT.as_millis() as u32
}
