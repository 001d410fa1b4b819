//! The contract every [`KvBackend`] keeps, as one async check that panics
//! with the broken rule: [`MemoryKv`](super::MemoryKv) runs it in a unit
//! test, the host's SQLite engine in its own, and a replicated engine will
//! run it too. It expects an engine with nothing in the stores of the apps
//! it uses (`conf-*`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::backend::{CounterFormat, KvBackend, KvError, StoreId, WriteOp, WriteRequest, Written};

/// Quota for the checks that do not test quotas.
const ROOMY: u64 = 64 << 20;

/// Checks the whole contract against `backend`; panics naming the first
/// rule it breaks.
#[doc(hidden)]
pub async fn run(backend: Arc<dyn KvBackend>) {
    let b = backend.as_ref();
    round_trips(b).await;
    versions(b).await;
    pagination(b).await;
    foreign_cursors(b).await;
    increments(b, CounterFormat::Decimal).await;
    increments(b, CounterFormat::I64Le).await;
    swaps(b).await;
    batches(b).await;
    set_many_is_atomic_under_quota(b).await;
    quota_accounting(b).await;
    isolation(b).await;
}

fn store(app: &str, name: &str) -> StoreId {
    StoreId::new(app, name)
}

/// Writes `op` to `store` with `quota`.
async fn write(
    b: &dyn KvBackend,
    store: &StoreId,
    op: WriteOp,
    quota: u64,
) -> Result<Written, KvError> {
    b.write(WriteRequest {
        store: store.clone(),
        op,
        quota,
    })
    .await
}

async fn set(b: &dyn KvBackend, store: &StoreId, key: &str, value: &[u8]) {
    let op = WriteOp::Set {
        key: key.into(),
        value: value.to_vec(),
    };
    let done = write(b, store, op, ROOMY).await;
    assert_eq!(done, Ok(Written::Done), "set {store} {key}");
}

async fn value(b: &dyn KvBackend, store: &StoreId, key: &str) -> Option<Vec<u8>> {
    b.get(store, key).await.expect("get").map(|e| e.value)
}

/// Every key of `store`, page by page of `limit`, checking that no key
/// comes twice.
async fn all_keys(b: &dyn KvBackend, store: &StoreId, limit: usize) -> (BTreeSet<String>, usize) {
    let mut keys = BTreeSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = b.list_keys(store, cursor, limit).await.expect("list_keys");
        pages += 1;
        assert!(page.keys.len() <= limit, "a page holds more than its limit");
        for key in page.keys {
            assert!(keys.insert(key.clone()), "`{key}` was listed twice");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (keys, pages),
        }
        assert!(pages < 10_000, "listing never ends");
    }
}

async fn round_trips(b: &dyn KvBackend) {
    let s = store("conf-round", "default");
    assert_eq!(b.get(&s, "k").await, Ok(None), "an unwritten key is absent");
    assert_eq!(b.exists(&s, "k").await, Ok(false));
    set(b, &s, "k", b"v1").await;
    assert_eq!(value(b, &s, "k").await.as_deref(), Some(&b"v1"[..]));
    assert_eq!(b.exists(&s, "k").await, Ok(true));
    set(b, &s, "k", b"").await;
    assert_eq!(
        value(b, &s, "k").await.as_deref(),
        Some(&b""[..]),
        "an empty value is a value, not an absence"
    );
    let binary: Vec<u8> = (0..=255).collect();
    set(b, &s, "a/b c\u{e9}", &binary).await;
    assert_eq!(value(b, &s, "a/b c\u{e9}").await, Some(binary));
    let deleted = write(b, &s, WriteOp::Delete { key: "k".into() }, ROOMY).await;
    assert_eq!(deleted, Ok(Written::Done));
    assert_eq!(b.get(&s, "k").await, Ok(None), "a deleted key is absent");
    assert_eq!(b.exists(&s, "k").await, Ok(false));
    let again = write(b, &s, WriteOp::Delete { key: "k".into() }, ROOMY).await;
    assert_eq!(again, Ok(Written::Done), "deleting an absent key succeeds");
    let many = b
        .get_many(&s, &["a/b c\u{e9}".into(), "missing".into()])
        .await
        .expect("get_many");
    assert_eq!(many.len(), 2, "get_many answers one slot per key");
    assert!(many[0].is_some() && many[1].is_none(), "{many:?}");
}

async fn versions(b: &dyn KvBackend) {
    let s = store("conf-versions", "default");
    set(b, &s, "a", b"1").await;
    let first = b.get(&s, "a").await.unwrap().unwrap().version;
    set(b, &s, "b", b"1").await;
    let other = b.get(&s, "b").await.unwrap().unwrap().version;
    set(b, &s, "a", b"2").await;
    let second = b.get(&s, "a").await.unwrap().unwrap().version;
    assert!(
        first < other,
        "versions grow store-wide ({first} then {other})"
    );
    assert!(other < second, "an overwrite gets a newer version");
    let read = b.get(&s, "a").await.unwrap().unwrap().version;
    assert_eq!(read, second, "a read does not change the version");
}

async fn pagination(b: &dyn KvBackend) {
    let s = store("conf-pages", "default");
    let pairs: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("key-{i:05}"), vec![b'x'; i % 7]))
        .collect();
    let wanted: BTreeSet<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    for chunk in pairs.chunks(500) {
        let op = WriteOp::SetMany(chunk.to_vec());
        assert_eq!(write(b, &s, op, ROOMY).await, Ok(Written::Done));
    }
    let (keys, pages) = all_keys(b, &s, 1000).await;
    assert_eq!(pages, 3, "2500 keys by 1000 are three pages");
    assert_eq!(keys, wanted, "the pages hold every key, no gaps");

    // Overwrites and deletes between pages neither repeat nor lose the
    // keys that stay.
    let first = b.list_keys(&s, None, 1000).await.unwrap();
    set(b, &s, &first.keys[0], b"changed").await;
    let gone = first.keys[1].clone();
    write(b, &s, WriteOp::Delete { key: gone.clone() }, ROOMY)
        .await
        .unwrap();
    let mut seen: BTreeSet<String> = first.keys.iter().cloned().collect();
    let mut cursor = first.next;
    while let Some(at) = cursor {
        let page = b.list_keys(&s, Some(at), 1000).await.unwrap();
        for key in page.keys {
            assert!(seen.insert(key.clone()), "`{key}` came again after a write");
        }
        cursor = page.next;
    }
    assert_eq!(seen, wanted, "a cursor outlives overwrites and deletes");
    let (after, _) = all_keys(b, &s, 1000).await;
    assert!(!after.contains(&gone) && after.len() == 2499);

    let empty = b.list_keys(&store("conf-pages", "empty"), None, 10).await;
    assert_eq!(empty.map(|p| (p.keys.len(), p.next)), Ok((0, None)));
}

async fn foreign_cursors(b: &dyn KvBackend) {
    let mine = store("conf-cursor", "default");
    let theirs = store("conf-cursor-other", "default");
    let sibling = store("conf-cursor", "other");
    for s in [&mine, &theirs, &sibling] {
        for i in 0..5 {
            set(b, s, &format!("k{i}"), b"v").await;
        }
    }
    let page = b.list_keys(&mine, None, 2).await.unwrap();
    let cursor = page.next.expect("two of five keys leave a cursor");
    for other in [&theirs, &sibling] {
        match b.list_keys(other, Some(cursor), 2).await {
            Err(KvError::Invalid(message)) => assert!(
                message.contains("another store"),
                "the refusal names the cause: {message}"
            ),
            got => panic!("a cursor of {mine} was accepted by {other}: {got:?}"),
        }
    }
    let unknown = store("conf-cursor", "never-written");
    assert!(
        matches!(
            b.list_keys(&unknown, Some(cursor), 2).await,
            Err(KvError::Invalid(_))
        ),
        "a cursor of {mine} was accepted by an unwritten store"
    );
    assert!(b.list_keys(&mine, Some(cursor), 2).await.is_ok());
}

async fn increments(b: &dyn KvBackend, format: CounterFormat) {
    let s = store("conf-counters", &format!("{format:?}").to_lowercase());
    let incr = |key: &str, delta: i64| WriteOp::Increment {
        key: key.into(),
        delta,
        format,
    };
    assert_eq!(
        write(b, &s, incr("c", 5), ROOMY).await,
        Ok(Written::Counter(5))
    );
    assert_eq!(
        write(b, &s, incr("c", -7), ROOMY).await,
        Ok(Written::Counter(-2))
    );
    let shown = match format {
        CounterFormat::Decimal => b"-2".to_vec(),
        CounterFormat::I64Le => (-2i64).to_le_bytes().to_vec(),
    };
    assert_eq!(value(b, &s, "c").await, Some(shown), "{format:?} as stored");

    set(b, &s, "text", b"not a number").await;
    match write(b, &s, incr("text", 1), ROOMY).await {
        Err(KvError::Invalid(message)) => assert!(message.contains("not a counter"), "{message}"),
        got => panic!("incrementing text answered {got:?}"),
    }
    assert_eq!(
        value(b, &s, "text").await.as_deref(),
        Some(&b"not a number"[..])
    );

    assert_eq!(
        write(b, &s, incr("big", i64::MAX), ROOMY).await,
        Ok(Written::Counter(i64::MAX))
    );
    match write(b, &s, incr("big", 1), ROOMY).await {
        Err(KvError::Invalid(message)) => assert!(message.contains("overflow"), "{message}"),
        got => panic!("an overflowing increment answered {got:?}"),
    }
    assert_eq!(
        value(b, &s, "big").await,
        Some(super::encode_counter(i64::MAX, format)),
        "an overflow leaves the counter as it was"
    );
}

async fn swaps(b: &dyn KvBackend) {
    let s = store("conf-swaps", "default");
    let swap = |expected: Option<u64>, value: &[u8]| WriteOp::Swap {
        key: "k".into(),
        expected,
        value: value.to_vec(),
    };
    assert_eq!(
        write(b, &s, swap(None, b"first"), ROOMY).await,
        Ok(Written::Swapped),
        "a swap expecting absence succeeds on an absent key"
    );
    let entry = b.get(&s, "k").await.unwrap().expect("swapped in");
    assert_eq!(entry.value, b"first");
    match write(b, &s, swap(None, b"again"), ROOMY).await {
        Ok(Written::Conflict { current }) => assert_eq!(current, Some(entry.clone())),
        got => panic!("a swap expecting absence on a present key answered {got:?}"),
    }
    let stale = entry.version.wrapping_sub(1);
    match write(b, &s, swap(Some(stale), b"stale"), ROOMY).await {
        Ok(Written::Conflict { current }) => assert_eq!(current, Some(entry.clone())),
        got => panic!("a swap at an old version answered {got:?}"),
    }
    assert_eq!(
        write(b, &s, swap(Some(entry.version), b"second"), ROOMY).await,
        Ok(Written::Swapped)
    );
    let now = b.get(&s, "k").await.unwrap().unwrap();
    assert!(
        now.value == b"second" && now.version > entry.version,
        "{now:?}"
    );
    write(b, &s, WriteOp::Delete { key: "k".into() }, ROOMY)
        .await
        .unwrap();
    match write(b, &s, swap(Some(now.version), b"late"), ROOMY).await {
        Ok(Written::Conflict { current }) => assert_eq!(current, None),
        got => panic!("a swap on a deleted key answered {got:?}"),
    }
    assert_eq!(b.get(&s, "k").await, Ok(None));
}

async fn batches(b: &dyn KvBackend) {
    let s = store("conf-batches", "default");
    let pairs = vec![
        ("a".to_string(), b"1".to_vec()),
        ("b".into(), b"2".to_vec()),
    ];
    assert_eq!(
        write(b, &s, WriteOp::SetMany(pairs), ROOMY).await,
        Ok(Written::Done)
    );
    let got = b
        .get_many(&s, &["b".into(), "x".into(), "a".into()])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]);
    let keys = vec!["a".to_string(), "x".into()];
    assert_eq!(
        write(b, &s, WriteOp::DeleteMany(keys), ROOMY).await,
        Ok(Written::Done)
    );
    assert_eq!(b.exists(&s, "a").await, Ok(false));
    assert_eq!(b.exists(&s, "b").await, Ok(true));
}

async fn set_many_is_atomic_under_quota(b: &dyn KvBackend) {
    let s = store("conf-atomic", "default");
    let quota = 1000;
    let fill = WriteOp::Set {
        key: "fill".into(),
        value: vec![0; 600],
    };
    assert_eq!(write(b, &s, fill, quota).await, Ok(Written::Done));
    let pairs: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("m{i}"), vec![1; 100])).collect();
    match write(b, &s, WriteOp::SetMany(pairs), quota).await {
        Err(KvError::Limit(message)) => {
            assert!(
                message.contains("1000"),
                "the refusal names the quota: {message}"
            )
        }
        got => panic!("a set-many over the quota answered {got:?}"),
    }
    for i in 0..5 {
        assert_eq!(
            b.get(&s, &format!("m{i}")).await,
            Ok(None),
            "a refused set-many left `m{i}`"
        );
    }
    let (keys, _) = all_keys(b, &s, 100).await;
    assert_eq!(keys.len(), 1, "only `fill` is listed: {keys:?}");
}

async fn quota_accounting(b: &dyn KvBackend) {
    let one = store("conf-quota", "one");
    let two = store("conf-quota", "two");
    let quota = 100;
    let put = |key: &str, len: usize| WriteOp::Set {
        key: key.into(),
        value: vec![7; len],
    };
    // "a" + 59 bytes = 60 used.
    assert_eq!(write(b, &one, put("a", 59), quota).await, Ok(Written::Done));
    // Another store of the same app shares the quota: 60 + 41 > 100.
    assert!(matches!(
        write(b, &two, put("b", 40), quota).await,
        Err(KvError::Limit(_))
    ));
    // Exactly at the quota is allowed: 60 + 40 = 100.
    assert_eq!(write(b, &two, put("b", 39), quota).await, Ok(Written::Done));
    // An overwrite counts the new size only: "a" + 9 leaves 50 free.
    assert_eq!(write(b, &one, put("a", 9), quota).await, Ok(Written::Done));
    assert_eq!(write(b, &one, put("c", 49), quota).await, Ok(Written::Done));
    assert!(matches!(
        write(b, &one, put("d", 0), quota).await,
        Err(KvError::Limit(_))
    ));
    // A delete gives its bytes back.
    let delete = WriteOp::Delete { key: "c".into() };
    assert_eq!(write(b, &one, delete, quota).await, Ok(Written::Done));
    assert_eq!(write(b, &one, put("d", 49), quota).await, Ok(Written::Done));
    let batch = WriteOp::DeleteMany(vec!["a".into(), "d".into()]);
    assert_eq!(write(b, &one, batch, quota).await, Ok(Written::Done));
    // Left: "b" (40 bytes) in `two`.
    assert_eq!(write(b, &one, put("e", 59), quota).await, Ok(Written::Done));
    assert!(matches!(
        write(b, &one, put("f", 0), quota).await,
        Err(KvError::Limit(_))
    ));
    // Another app has a quota of its own.
    let other = store("conf-quota-other", "one");
    assert_eq!(
        write(b, &other, put("a", 99), quota).await,
        Ok(Written::Done)
    );
    // Shrinking under a quota lowered meanwhile is allowed only to fit.
    assert!(matches!(
        write(b, &one, put("e", 10), 10).await,
        Err(KvError::Limit(_))
    ));
}

async fn isolation(b: &dyn KvBackend) {
    let a = store("conf-iso-a", "default");
    let a2 = store("conf-iso-a", "second");
    let other = store("conf-iso-b", "default");
    set(b, &a, "x", b"from a").await;
    assert_eq!(
        b.get(&other, "x").await,
        Ok(None),
        "app b reads app a's key"
    );
    assert_eq!(b.exists(&other, "x").await, Ok(false));
    assert_eq!(
        b.get(&a2, "x").await,
        Ok(None),
        "a store reads its sibling's key"
    );
    assert_eq!(b.get_many(&other, &["x".into()]).await, Ok(vec![None]));
    let listed = b.list_keys(&other, None, 100).await.unwrap();
    assert!(listed.keys.is_empty(), "app b lists app a's keys");
    set(b, &other, "x", b"from b").await;
    write(b, &other, WriteOp::Delete { key: "x".into() }, ROOMY)
        .await
        .unwrap();
    assert_eq!(
        value(b, &a, "x").await.as_deref(),
        Some(&b"from a"[..]),
        "app b's delete reached app a"
    );
    let incr = WriteOp::Increment {
        key: "n".into(),
        delta: 1,
        format: CounterFormat::Decimal,
    };
    write(b, &a, incr.clone(), ROOMY).await.unwrap();
    assert_eq!(write(b, &other, incr, ROOMY).await, Ok(Written::Counter(1)));
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_kv_keeps_the_contract() {
        super::run(std::sync::Arc::new(super::super::MemoryKv::new())).await;
    }
}
