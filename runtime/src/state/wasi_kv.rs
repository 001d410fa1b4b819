//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft`: what `wasmtime serve`
//! and wasmCloud guests import. Cursors are the engine's `u64`, counters
//! are kept as ASCII decimal (as wasmtime keeps them).

use wasmtime::component::Resource;

use super::backend::{CounterFormat, KvError};
use super::bindings::plain::wasi::keyvalue0_2_0_draft::{atomics, batch, store};
use super::grant::{Bucket, Refusal, StateView};

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
        cursor: Option<u64>,
    ) -> Answer<store::KeyResponse> {
        let page = self.handle(&bucket)?.list(cursor).await;
        answer(page.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.next,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close(bucket)
    }
}

impl atomics::Host for StateView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Answer<u64> {
        let handle = self.handle(&bucket)?;
        let result = async {
            let delta = i64::try_from(delta).map_err(|_| {
                KvError::Invalid(format!(
                    "incrementing `{key}` by {delta} overflows a 64-bit counter"
                ))
            })?;
            let value = handle
                .increment(key.clone(), delta, CounterFormat::Decimal)
                .await?;
            u64::try_from(value).map_err(|_| {
                KvError::Invalid(format!(
                    "the counter at `{key}` is negative ({value}), which this interface's unsigned counters cannot show"
                ))
            })
        };
        answer(result.await)
    }
}

impl batch::Host for StateView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        let values = self.handle(&bucket)?.get_many(&keys).await;
        answer(values.map(|values| {
            keys.into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|v| (key, v)))
                .collect()
        }))
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
