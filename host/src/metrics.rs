//! Prometheus metrics (the `prometheus-client` crate): requests by app and
//! status, latency, instantiations, active instances, queue depth, compile
//! time, and the key-value engine's writes, commits and sizes per app.
//! Gauges are read from the apps and the engine at scrape time.

use std::sync::Mutex;
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

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
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
        }
    }

    /// The key-value writer's counters, registered here.
    pub(crate) fn kv(&self) -> KvMetrics {
        self.kv.clone()
    }

    pub(crate) fn request(&self, app: &str, status: u16, elapsed: Duration) {
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
}
