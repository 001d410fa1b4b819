//! Steady requests while a mesh changes keys, and key files written the
//! way an operator should.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_test_support::agent;

/// Writes `keys` (a keyring, primary first) to `file` the way an operator
/// should: a temporary file renamed over it.
pub fn write_ring(file: &Path, keys: &[&Path]) {
    let text: String = keys
        .iter()
        .map(|key| std::fs::read_to_string(key).unwrap())
        .collect();
    let temporary = file.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, file).unwrap();
}

/// Requests to every node, one after another, until stopped; what failed.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(urls: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, n, f) = (stop.clone(), sent.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let client = agent();
            while !s.load(Ordering::Relaxed) {
                for url in &urls {
                    n.fetch_add(1, Ordering::Relaxed);
                    match client.get(url).call() {
                        Ok(reply) if reply.status() == 200 => {}
                        Ok(reply) => f.lock().unwrap().push(format!("{url}: {}", reply.status())),
                        Err(error) => f.lock().unwrap().push(format!("{url}: {error}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Load {
            stop,
            sent,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops; how many requests were sent, and the failures.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}
