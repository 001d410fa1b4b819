//! Prometheus metrics (the `prometheus-client` crate): requests by app and
//! status, latency, instantiations, active instances, queue depth, compile
//! time, and the key-value engine's writes, commits and sizes per app.
//! Gauges are read from the apps and the engine at scrape time. Beside the
//! registry, per-app [`AppFigures`] (requests served here, 5xx, latency
//! buckets) that the dashboard reads without rendering the exposition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppLabel {
    pub app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AppStatus {
    pub app: String,
    pub status: u16,
}

/// The latency buckets' upper bounds: 0.25 ms to ~8 s, doubling.
const LATENCY_START: f64 = 0.000_25;
const LATENCY_BUCKETS: u16 = 16;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(LATENCY_START, 2.0, LATENCY_BUCKETS))
}

/// The upper bound of each latency bucket of [`AppFigures::buckets`], in
/// milliseconds; the last bucket (past the last bound) has none.
pub(crate) fn latency_bounds_ms() -> Vec<f64> {
    exponential_buckets(LATENCY_START * 1000.0, 2.0, LATENCY_BUCKETS).collect()
}

/// The bucket of a request that took `seconds`.
fn latency_bucket(seconds: f64) -> usize {
    let mut bound = LATENCY_START;
    for i in 0..usize::from(LATENCY_BUCKETS) {
        if seconds <= bound {
            return i;
        }
        bound *= 2.0;
    }
    usize::from(LATENCY_BUCKETS)
}

/// One app's counts since this host started, as the dashboard reads them:
/// requests served here (forwarded ones count where they were served),
/// those answered 5xx, and how many fell in each latency bucket (not
/// cumulative; one more bucket than [`latency_bounds_ms`] has bounds).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AppFigures {
    pub app: String,
    pub requests: u64,
    pub errors: u64,
    pub buckets: Vec<u64>,
}

/// The live counters behind [`AppFigures`].
struct AppCounts {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: Vec<AtomicU64>,
}

impl AppCounts {
    fn new() -> AppCounts {
        AppCounts {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: (0..=LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn compile_histogram() -> Histogram {
    // 1 ms to ~2 min.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

fn commit_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// What the key-value writer counts: write jobs, commits (their ratio is
/// the group-commit factor) and the time of each commit. Clones count into
/// the same series.
#[derive(Clone, Debug)]
pub(crate) struct KvMetrics {
    pub writes: Counter,
    pub commits: Counter,
    pub commit_seconds: Histogram,
}

impl Default for KvMetrics {
    fn default() -> Self {
        KvMetrics {
            writes: Counter::default(),
            commits: Counter::default(),
            commit_seconds: commit_histogram(),
        }
    }
}

/// One app's key-value data, for a scrape.
pub(crate) struct KvGauges {
    pub app: String,
    pub bytes: u64,
    pub keys: u64,
}

pub(crate) struct Metrics {
    registry: Registry,
    kv: KvMetrics,
    kv_bytes: Family<AppLabel, Gauge>,
    kv_keys: Family<AppLabel, Gauge>,
    requests: Family<AppStatus, Counter>,
    latency: Family<AppLabel, Histogram, fn() -> Histogram>,
    compile: Family<AppLabel, Histogram, fn() -> Histogram>,
    instantiations: Family<AppLabel, Gauge>,
    active: Family<AppLabel, Gauge>,
    queued: Family<AppLabel, Gauge>,
    /// Serialises scrapes: gauges are reset and refilled for each one.
    scrape: Mutex<()>,
    /// What [`Metrics::figures`] reads.
    counts: RwLock<HashMap<String, Arc<AppCounts>>>,
}

/// What a scrape needs to know of one app.
pub(crate) struct AppGauges {
    pub app: String,
    pub instantiations: u64,
    pub active: usize,
    pub queued: usize,
}

impl Metrics {
    /// Metrics, with `extra` read at every scrape (the mesh's).
    pub(crate) fn new(extra: Option<Box<dyn prometheus_client::collector::Collector>>) -> Metrics {
        let mut registry = Registry::with_prefix("shoal");
        if let Some(extra) = extra {
            registry.register_collector(extra);
        }
        let requests = Family::<AppStatus, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let compile = Family::new_with_constructor(compile_histogram as fn() -> Histogram);
        let instantiations = Family::<AppLabel, Gauge>::default();
        let active = Family::<AppLabel, Gauge>::default();
        let queued = Family::<AppLabel, Gauge>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by app and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by app",
            latency.clone(),
        );
        registry.register(
            "compile_duration_seconds",
            "Time to compile (or load from cache) a component, by app",
            compile.clone(),
        );
        registry.register(
            "instantiations",
            "Instances created by the app's current version",
            instantiations.clone(),
        );
        registry.register(
            "active_instances",
            "Instances running now, by app",
            active.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for an instance, by app",
            queued.clone(),
        );
        let kv = KvMetrics::default();
        let kv_bytes = Family::<AppLabel, Gauge>::default();
        let kv_keys = Family::<AppLabel, Gauge>::default();
        register_kv(&mut registry, &kv, &kv_bytes, &kv_keys);
        Metrics {
            registry,
            kv,
            kv_bytes,
            kv_keys,
            requests,
            latency,
            compile,
            instantiations,
            active,
            queued,
            scrape: Mutex::new(()),
            counts: RwLock::default(),
        }
    }

    /// The key-value writer's counters, registered here.
    pub(crate) fn kv(&self) -> KvMetrics {
        self.kv.clone()
    }

    /// A request served here by `app`'s guest: in the registry and in
    /// [`Metrics::figures`].
    pub(crate) fn request(&self, app: &str, status: u16, elapsed: Duration) {
        self.count(app, status, elapsed);
        self.record(app, status, elapsed);
    }

    /// A request for `app` this node forwarded to another: in the registry
    /// only (the node that served it counts it in its figures).
    pub(crate) fn forwarded(&self, app: &str, status: u16, elapsed: Duration) {
        self.record(app, status, elapsed);
    }

    /// The registry's request count and latency.
    fn record(&self, app: &str, status: u16, elapsed: Duration) {
        let label = AppStatus {
            app: app.to_string(),
            status,
        };
        self.requests.get_or_create(&label).inc();
        let label = AppLabel { app: label.app };
        self.latency
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    fn count(&self, app: &str, status: u16, elapsed: Duration) {
        let known = self
            .counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(app)
            .cloned();
        let counts = known.unwrap_or_else(|| {
            let mut counts = self.counts.write().unwrap_or_else(|e| e.into_inner());
            counts
                .entry(app.to_string())
                .or_insert_with(|| Arc::new(AppCounts::new()))
                .clone()
        });
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        counts.buckets[latency_bucket(elapsed.as_secs_f64())].fetch_add(1, Ordering::Relaxed);
    }

    /// Every app's counts since this host started, by name.
    pub(crate) fn figures(&self) -> Vec<AppFigures> {
        let counts = self.counts.read().unwrap_or_else(|e| e.into_inner());
        let mut figures: Vec<AppFigures> = counts
            .iter()
            .map(|(app, c)| AppFigures {
                app: app.clone(),
                requests: c.requests.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                buckets: c
                    .buckets
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
            })
            .collect();
        figures.sort_by(|a, b| a.app.cmp(&b.app));
        figures
    }

    pub(crate) fn compiled(&self, app: &str, elapsed: Duration) {
        self.compile
            .get_or_create(&AppLabel {
                app: app.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with gauges from `apps` and the
    /// key-value data of `kv`.
    pub(crate) fn render(
        &self,
        apps: impl IntoIterator<Item = AppGauges>,
        kv: impl IntoIterator<Item = KvGauges>,
    ) -> String {
        let _guard = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.instantiations.clear();
        self.active.clear();
        self.queued.clear();
        self.kv_bytes.clear();
        self.kv_keys.clear();
        for data in kv {
            let label = AppLabel { app: data.app };
            self.kv_bytes.get_or_create(&label).set(data.bytes as i64);
            self.kv_keys.get_or_create(&label).set(data.keys as i64);
        }
        for app in apps {
            let label = AppLabel { app: app.app };
            self.instantiations
                .get_or_create(&label)
                .set(app.instantiations as i64);
            self.active.get_or_create(&label).set(app.active as i64);
            self.queued.get_or_create(&label).set(app.queued as i64);
        }
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn register_kv(
    registry: &mut Registry,
    kv: &KvMetrics,
    bytes: &Family<AppLabel, Gauge>,
    keys: &Family<AppLabel, Gauge>,
) {
    registry.register(
        "kv_writes",
        "Key-value writes the engine applied or refused",
        kv.writes.clone(),
    );
    registry.register(
        "kv_commits",
        "Key-value transactions committed (writes / commits is the group-commit factor)",
        kv.commits.clone(),
    );
    registry.register(
        "kv_commit_seconds",
        "Time of one key-value batch, from BEGIN to the end of COMMIT (its fsync)",
        kv.commit_seconds.clone(),
    );
    registry.register(
        "kv_bytes",
        "Bytes (keys plus values) an app keeps in its key-value stores",
        bytes.clone(),
    );
    registry.register(
        "kv_keys",
        "Keys an app keeps in its key-value stores",
        keys.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_gauges() {
        let metrics = Metrics::new(None);
        metrics.request("hello", 200, Duration::from_millis(2));
        let text = metrics.render(
            [AppGauges {
                app: "hello".into(),
                instantiations: 3,
                active: 1,
                queued: 0,
            }],
            [KvGauges {
                app: "hello".into(),
                bytes: 42,
                keys: 2,
            }],
        );
        metrics.kv().writes.inc();
        assert!(
            text.contains("shoal_requests_total{app=\"hello\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_active_instances{app=\"hello\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("shoal_kv_bytes{app=\"hello\"} 42"), "{text}");
        assert!(text.contains("shoal_kv_keys{app=\"hello\"} 2"), "{text}");
        assert!(text.contains("shoal_kv_commits_total 0"), "{text}");
        assert!(text.contains("shoal_kv_commit_seconds_bucket"), "{text}");
    }

    #[test]
    fn figures_count_served_requests_errors_and_buckets() {
        let metrics = Metrics::new(None);
        metrics.request("a", 200, Duration::from_micros(100));
        metrics.request("a", 503, Duration::from_millis(3));
        metrics.request("a", 200, Duration::from_secs(60));
        metrics.forwarded("a", 200, Duration::from_millis(1));
        let figures = metrics.figures();
        assert_eq!(figures.len(), 1);
        let a = &figures[0];
        assert_eq!((a.app.as_str(), a.requests, a.errors), ("a", 3, 1));
        assert_eq!(a.buckets.len(), latency_bounds_ms().len() + 1);
        assert_eq!(a.buckets[0], 1, "0.1 ms is in the first bucket");
        assert_eq!(a.buckets[4], 1, "3 ms is in (2, 4] ms: {:?}", a.buckets);
        assert_eq!(a.buckets[16], 1, "60 s is past the last bound");
        assert_eq!(latency_bounds_ms()[0], 0.25);
    }
}
