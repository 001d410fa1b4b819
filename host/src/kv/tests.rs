use std::collections::BTreeSet;
use std::sync::Arc;

use shoal_runtime::state::{
    CounterFormat, KvBackend, KvError, StoreId, WriteOp, WriteRequest, Written,
};

use super::{AppUsage, SqliteKv, StoreUsage};
use crate::metrics::KvMetrics;

fn set(store: &StoreId, key: &str, value: Vec<u8>) -> WriteRequest {
    WriteRequest {
        store: store.clone(),
        op: WriteOp::Set {
            key: key.into(),
            value,
        },
        quota: u64::MAX,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kv_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("kv.db"), KvMetrics::default()).unwrap();
    shoal_runtime::state::conformance::run(Arc::new(kv)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_versions_outlive_a_reopen_and_the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let s = StoreId::new("app", "default");
    let first = {
        let kv = SqliteKv::open(&path, KvMetrics::default()).unwrap();
        kv.write(set(&s, "k", b"v".to_vec())).await.unwrap();
        kv.get(&s, "k").await.unwrap().unwrap().version
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "kv.db is the owner's only");
    let kv = SqliteKv::open(&path, KvMetrics::default()).unwrap();
    assert_eq!(kv.get(&s, "k").await.unwrap().unwrap().value, b"v");
    kv.write(set(&s, "k", b"w".to_vec())).await.unwrap();
    let second = kv.get(&s, "k").await.unwrap().unwrap().version;
    assert!(
        second > first,
        "versions go on after a reopen ({first}, {second})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_usage_and_purge_an_app() {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("kv.db"), KvMetrics::default()).unwrap();
    let a = StoreId::new("a", "default");
    let a2 = StoreId::new("a", "sessions");
    let b = StoreId::new("b", "default");
    kv.write(set(&a, "k1", vec![0; 10])).await.unwrap();
    kv.write(set(&a2, "k2", vec![0; 20])).await.unwrap();
    kv.write(set(&b, "k3", vec![0; 30])).await.unwrap();
    assert_eq!(
        kv.stores("a").unwrap(),
        vec![
            StoreUsage {
                store: "default".into(),
                keys: 1,
                bytes: 12
            },
            StoreUsage {
                store: "sessions".into(),
                keys: 1,
                bytes: 22
            },
        ]
    );
    let usage = kv.usage_by_app().unwrap();
    assert_eq!(usage.len(), 2, "{usage:?}");
    assert_eq!(
        kv.usage("a"),
        AppUsage {
            app: "a".into(),
            stores: 2,
            keys: 2,
            bytes: 34
        }
    );
    let purged = kv.purge("a").await.unwrap();
    assert_eq!((purged.stores, purged.keys, purged.bytes), (2, 2, 34));
    assert_eq!(kv.get(&a, "k1").await, Ok(None));
    assert!(kv.stores("a").unwrap().is_empty());
    assert_eq!(kv.get(&b, "k3").await.unwrap().unwrap().value.len(), 30);
    assert_eq!(
        kv.purge("a").await.unwrap().stores,
        0,
        "purging twice is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = KvMetrics::default();
    let kv = Arc::new(SqliteKv::open(&dir.path().join("kv.db"), metrics.clone()).unwrap());
    let s = StoreId::new("app", "default");
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let (kv, s) = (kv.clone(), s.clone());
            tokio::spawn(async move { kv.write(set(&s, &format!("k{i}"), vec![1; 64])).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(Written::Done));
    }
    let (writes, commits) = (metrics.writes.get(), metrics.commits.get());
    assert_eq!(writes, 400);
    assert!(
        commits < writes / 2,
        "400 concurrent writes took {commits} commits: no group commit"
    );
    assert_eq!(kv.usage("app").keys, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(SqliteKv::open(&dir.path().join("kv.db"), KvMetrics::default()).unwrap());
    let s = StoreId::new("app", "default");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (kv, s) = (kv.clone(), s.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..25 {
                    let op = WriteOp::Increment {
                        key: "n".into(),
                        delta: 1,
                        format: CounterFormat::I64Le,
                    };
                    let request = WriteRequest {
                        store: s.clone(),
                        op,
                        quota: u64::MAX,
                    };
                    match kv.write(request).await {
                        Ok(Written::Counter(n)) => seen.push(n),
                        other => panic!("increment answered {other:?}"),
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        for n in task.await.unwrap() {
            assert!(all.insert(n), "two increments both answered {n}");
        }
    }
    assert_eq!(all, (1..=800).collect::<BTreeSet<i64>>());
    let value = kv.get(&s, "n").await.unwrap().unwrap().value;
    assert_eq!(value, 800i64.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_whole_and_reads_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.db");
    let kv = Arc::new(
        SqliteKv::open_with(&path, KvMetrics::default(), |conn| {
            conn.execute_batch("PRAGMA max_page_count = 40")
        })
        .unwrap(),
    );
    let s = StoreId::new("app", "default");
    kv.write(set(&s, "before", b"kept".to_vec())).await.unwrap();
    // Concurrent batches of 8 KiB values until the file cannot grow.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (kv, s) = (kv.clone(), s.clone());
            tokio::spawn(async move {
                let pairs: Vec<(String, Vec<u8>)> = (0..4)
                    .map(|j| (format!("k{i}-{j}"), vec![i as u8; 8 << 10]))
                    .collect();
                let op = WriteOp::SetMany(pairs);
                (
                    i,
                    kv.write(WriteRequest {
                        store: s,
                        op,
                        quota: u64::MAX,
                    })
                    .await,
                )
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let keys: Vec<String> = (0..4).map(|j| format!("k{i}-{j}")).collect();
        let present = kv.get_many(&s, &keys).await.unwrap();
        match result {
            Ok(Written::Done) => {
                assert!(present.iter().all(Option::is_some), "acked {i} is partial")
            }
            Err(KvError::Io(message)) => {
                refused += 1;
                assert!(message.contains("full"), "{message}");
                assert!(
                    present.iter().all(Option::is_none),
                    "refused {i} left keys: {present:?}"
                );
            }
            other => panic!("a write on a full disk answered {other:?}"),
        }
    }
    assert!(refused > 0, "40 pages never filled");
    assert_eq!(kv.get(&s, "before").await.unwrap().unwrap().value, b"kept");
    let other = StoreId::new("other", "default");
    assert_eq!(
        kv.list_keys(&other, None, 10).await.map(|p| p.keys.len()),
        Ok(0)
    );
    let small = kv.write(set(&s, "before", b"kep2".to_vec())).await;
    assert_eq!(small, Ok(Written::Done), "a write that fits still works");
}
