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
