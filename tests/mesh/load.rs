//! Load for the mesh scenarios: sequential GETs, one thread per URL,
//! every answer recorded with when it was asked and how long it took.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One answer: when it was asked (from the load's start), its status (0:
/// no answer), whether it said `Retry-After`, how long it took, its body.
#[derive(Debug, Clone)]
pub struct Sample {
    pub url: String,
    pub at: Duration,
    pub status: u16,
    pub retry_after: bool,
    pub took: Duration,
    pub body: String,
}

/// GETs `url` once, bounded by `within`.
pub fn sample(agent: &ureq::Agent, url: &str, at: Duration) -> Sample {
    let asked = Instant::now();
    let (status, retry_after, body) = match agent.get(url).call() {
        Ok(mut reply) => {
            let body = reply.body_mut().read_to_string().unwrap_or_default();
            let retry = reply.headers().get("retry-after").is_some();
            (reply.status().as_u16(), retry, body)
        }
        Err(error) => (0, false, error.to_string()),
    };
    Sample {
        url: url.to_string(),
        at,
        status,
        retry_after,
        took: asked.elapsed(),
        body: body.trim().to_string(),
    }
}

/// A client that never treats a status as an error and gives up after `within`.
pub fn agent(within: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(within))
        .build()
        .into()
}

/// Sequential GETs, one thread per URL with `pause` between requests,
/// until [`Load::finish`].
pub struct Load {
    pub started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    pub fn start(urls: Vec<String>, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let threads = urls
            .into_iter()
            .map(|url| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let agent = agent(Duration::from_secs(60));
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        samples.push(sample(&agent, &url, started.elapsed()));
                        std::thread::sleep(pause);
                    }
                    samples
                })
            })
            .collect();
        Load {
            started,
            stop,
            threads,
        }
    }

    /// Stops the load: every URL's answers, in the order asked.
    pub fn finish(self) -> Vec<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

/// Every answer but a 200, described.
pub fn failures(samples: &[Vec<Sample>]) -> Vec<String> {
    samples
        .iter()
        .flatten()
        .filter(|s| s.status != 200)
        .map(|s| {
            format!(
                "{} at {:?}: {} after {:?} (retry-after: {}) {}",
                s.url, s.at, s.status, s.took, s.retry_after, s.body
            )
        })
        .collect()
}

/// How long after `from` a URL was served for good: from `from` to the
/// first request after the last failure among those asked by `until`
/// (zero if none failed); `None` if fewer than three successes follow it.
pub fn recovered(samples: &[Sample], from: Duration, until: Duration) -> Option<Duration> {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at + s.took >= from && s.at <= until)
        .collect();
    let Some(last) = window.iter().rposition(|s| s.status != 200) else {
        return Some(Duration::ZERO);
    };
    let after = &window[last + 1..];
    (after.len() >= 3).then(|| after[0].at.saturating_sub(from))
}
