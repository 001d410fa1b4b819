//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`: what Spin 3 and 4
//! guests import. Cursors are strings (the engine's `u64` in decimal),
//! counters are kept as eight bytes little-endian (as Spin keeps them), and
//! compare-and-swap compares the version the guest last saw.

use wasmtime::component::Resource;

use super::backend::{CounterFormat, KvError};
use super::bindings::plain::wasi::keyvalue0_2_0_draft2::{atomics, batch, store};
use super::grant::{Bucket, Cas, Refusal, StateView};

use store::Error;

type Answer<T> = wasmtime::Result<Result<T, Error>>;

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::AccessDenied => Error::AccessDenied,
            other => Error::Other(other.to_string()),
        }
    }
}

impl From<KvError> for Error {
    fn from(error: KvError) -> Self {
        Error::Other(error.to_string())
    }
}

fn answer<T, E: Into<Error>>(result: Result<T, E>) -> Answer<T> {
    Ok(result.map_err(Into::into))
}

/// The engine's cursor a string cursor stands for.
fn parse_cursor(cursor: Option<String>) -> Result<Option<u64>, KvError> {
    cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                KvError::Invalid(format!(
                    "the cursor `{c}` is not one this store gave out; start the listing again without one"
                ))
            })
        })
        .transpose()
}

impl store::Host for StateView<'_> {
    async fn open(&mut self, identifier: String) -> Answer<Resource<Bucket>> {
        answer(StateView::open(self, &identifier))
    }
}

impl store::HostBucket for StateView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<Option<Vec<u8>>> {
        answer(self.handle(&bucket)?.get(&key).await)
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Answer<()> {
        answer(self.handle(&bucket)?.set(key, value).await)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<()> {
        answer(self.handle(&bucket)?.delete(key).await)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<bool> {
        answer(self.handle(&bucket)?.exists(&key).await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Answer<store::KeyResponse> {
        let handle = self.handle(&bucket)?;
        let page = async { handle.list(parse_cursor(cursor)?).await };
        answer(page.await.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.next.map(|c| c.to_string()),
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close(bucket)
    }
}

impl atomics::HostCas for StateView<'_> {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Answer<Resource<Cas>> {
        let handle = self.handle(&bucket)?;
        let seen = match handle.entry(&key).await {
            Ok(entry) => entry.map(|e| e.version),
            Err(error) => return answer(Err(error)),
        };
        let cas = Cas { handle, key, seen };
        answer(
            self.table
                .push(cas)
                .map_err(|e| KvError::Unavailable(format!("cannot start a compare-and-swap: {e}"))),
        )
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Answer<Option<Vec<u8>>> {
        let (handle, key) = {
            let cas = self.table.get(&cas)?;
            (cas.handle.clone(), cas.key.clone())
        };
        match handle.entry(&key).await {
            Ok(entry) => {
                // The swap is decided against what the guest saw last.
                self.table.get_mut(&cas)?.seen = entry.as_ref().map(|e| e.version);
                Ok(Ok(entry.map(|e| e.value)))
            }
            Err(error) => answer(Err(error)),
        }
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl atomics::Host for StateView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Answer<i64> {
        let handle = self.handle(&bucket)?;
        answer(handle.increment(key, delta, CounterFormat::I64Le).await)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { handle, key, seen } = self.table.delete(cas)?;
        match handle.swap(key.clone(), seen, value).await {
            Ok(None) => Ok(Ok(())),
            Ok(Some(current)) => {
                let seen = current.map(|e| e.version);
                let retry = self.table.push(Cas { handle, key, seen });
                Ok(Err(match retry {
                    Ok(retry) => atomics::CasError::CasFailed(retry),
                    Err(e) => atomics::CasError::StoreError(Error::Other(format!(
                        "the value moved on, and a new compare-and-swap cannot start: {e}"
                    ))),
                }))
            }
            Err(error) => Ok(Err(atomics::CasError::StoreError(error.into()))),
        }
    }
}

impl batch::Host for StateView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Answer<Vec<(String, Option<Vec<u8>>)>> {
        let values = self.handle(&bucket)?.get_many(&keys).await;
        answer(values.map(|values| keys.into_iter().zip(values).collect()))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        answer(self.handle(&bucket)?.set_many(key_values).await)
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Answer<()> {
        answer(self.handle(&bucket)?.delete_many(keys).await)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtime::component::ResourceTable;

    use super::atomics::{Host as _, HostCas as _};
    use super::store::HostBucket as _;
    use super::*;
    use crate::policy::Policy;
    use crate::state::backend::{KvBackend, KvLimits};
    use crate::state::grant::{StateCtx, StateGrant};
    use crate::state::memory::MemoryKv;

    fn grant(stores: &[&str], backend: Option<Arc<dyn KvBackend>>) -> Arc<StateGrant> {
        let policy = Policy {
            kv_stores: stores.iter().map(|s| s.to_string()).collect(),
            ..Policy::default()
        };
        let limits = KvLimits {
            max_open: 2,
            ..KvLimits::default()
        };
        StateGrant::new(&Arc::from("app"), &policy, &limits, backend)
    }

    #[tokio::test]
    async fn stores_are_denied_unless_granted_and_backed() {
        let memory: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
        for (stores, backend, name) in [
            (&["default"][..], None, "default"),
            (&["default"][..], Some(memory.clone()), "other"),
        ] {
            let mut ctx = StateCtx::new(&grant(stores, backend));
            let mut table = ResourceTable::new();
            let mut view = StateView {
                ctx: &mut ctx,
                table: &mut table,
            };
            let opened = store::Host::open(&mut view, name.into()).await.unwrap();
            assert!(matches!(opened, Err(Error::AccessDenied)), "{name}");
        }
    }

    #[tokio::test]
    async fn the_open_cap_and_compare_and_swap_work_on_memory_kv() {
        let mut ctx = StateCtx::new(&grant(&["default"], Some(Arc::new(MemoryKv::new()))));
        let mut table = ResourceTable::new();
        let mut view = StateView {
            ctx: &mut ctx,
            table: &mut table,
        };
        let a = view.open("").unwrap_or_else(|e| panic!("{e}"));
        let _b = view.open("default").unwrap_or_else(|e| panic!("{e}"));
        let third = store::Host::open(&mut view, "default".into())
            .await
            .unwrap();
        assert!(
            matches!(&third, Err(Error::Other(m)) if m.contains("limit 2 per instance")),
            "{third:?}"
        );

        let cas = view.new(borrow(&a), "k".into()).await.unwrap().unwrap();
        view.set(borrow(&a), "k".into(), b"theirs".to_vec())
            .await
            .unwrap()
            .unwrap();
        let Err(atomics::CasError::CasFailed(retry)) =
            view.swap(cas, b"mine".to_vec()).await.unwrap()
        else {
            panic!("a swap against a moved key must fail");
        };
        assert_eq!(
            view.current(borrow(&retry)).await.unwrap().unwrap(),
            Some(b"theirs".to_vec())
        );
        assert!(view.swap(retry, b"mine".to_vec()).await.unwrap().is_ok());
        let got = view.get(borrow(&a), "k".into()).await.unwrap().unwrap();
        assert_eq!(got, Some(b"mine".to_vec()));
        let n = view
            .increment(borrow(&a), "n".into(), 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 3);
        let raw = view.get(borrow(&a), "n".into()).await.unwrap().unwrap();
        assert_eq!(
            raw,
            Some(3i64.to_le_bytes().to_vec()),
            "draft2 counters are i64 LE"
        );
        store::HostBucket::drop(&mut view, a).await.unwrap();
        assert!(
            view.open("default").is_ok(),
            "closing a store frees its place"
        );
    }

    /// A borrowed handle to the same resource, as a guest passes one.
    fn borrow<T: 'static>(resource: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(resource.rep())
    }
}
