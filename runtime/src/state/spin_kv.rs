//! Spin's key-value interfaces: `fermyon:spin/key-value@2.0.0` (spin-sdk
//! 2 to 5, synchronous, on both engines) and `spin:key-value/key-value@3.0.0`
//! (spin-sdk 7, `async func`s, on the concurrent engine only), whose
//! `get-keys` streams the keys page by page ([`KeyStream`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, Resource, StreamProducer, StreamReader, StreamResult,
    VecBuffer,
};

use super::backend::{Cursor, KeyPage, KvError};
use super::bindings::concurrent::spin::key_value::key_value as v3;
use super::bindings::plain::fermyon::spin::key_value as v2;
use super::grant::{Bucket, Handle, HasState, Refusal, StateView};

macro_rules! spin_errors {
    ($error:ty) => {
        impl From<Refusal> for $error {
            fn from(refusal: Refusal) -> Self {
                match refusal {
                    Refusal::AccessDenied => <$error>::AccessDenied,
                    Refusal::TableFull(_) => <$error>::StoreTableFull,
                    Refusal::Kv(error) => <$error>::Other(error.to_string()),
                }
            }
        }

        impl From<KvError> for $error {
            fn from(error: KvError) -> Self {
                <$error>::Other(error.to_string())
            }
        }
    };
}

spin_errors!(v2::Error);
spin_errors!(v3::Error);

fn answer<T, E: Into<F>, F>(result: Result<T, E>) -> wasmtime::Result<Result<T, F>> {
    Ok(result.map_err(Into::into))
}

type V2<T> = wasmtime::Result<Result<T, v2::Error>>;

impl v2::Host for StateView<'_> {}

impl v2::HostStore for StateView<'_> {
    async fn open(&mut self, label: String) -> V2<Resource<Bucket>> {
        answer(StateView::open(self, &label))
    }

    async fn get(&mut self, store: Resource<Bucket>, key: String) -> V2<Option<Vec<u8>>> {
        answer(self.handle(&store)?.get(&key).await)
    }

    async fn set(&mut self, store: Resource<Bucket>, key: String, value: Vec<u8>) -> V2<()> {
        answer(self.handle(&store)?.set(key, value).await)
    }

    async fn delete(&mut self, store: Resource<Bucket>, key: String) -> V2<()> {
        answer(self.handle(&store)?.delete(key).await)
    }

    async fn exists(&mut self, store: Resource<Bucket>, key: String) -> V2<bool> {
        answer(self.handle(&store)?.exists(&key).await)
    }

    async fn get_keys(&mut self, store: Resource<Bucket>) -> V2<Vec<String>> {
        answer(self.handle(&store)?.all_keys().await)
    }

    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close(store)
    }
}

type V3<T> = wasmtime::Result<Result<T, v3::Error>>;

impl v3::Host for StateView<'_> {}

impl v3::HostStore for StateView<'_> {
    fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close(store)
    }
}

/// The handle of `store`, taken out of the store data so that no borrow
/// of it is held across the engine's await.
fn handle<T: Send>(
    acc: &Accessor<T, HasState>,
    store: &Resource<Bucket>,
) -> wasmtime::Result<Handle> {
    acc.with(|mut access| access.get().handle(store))
}

impl<T: Send> v3::HostStoreWithStore<T> for HasState {
    async fn open(acc: &Accessor<T, Self>, label: String) -> V3<Resource<Bucket>> {
        answer(acc.with(|mut access| access.get().open(&label)))
    }

    async fn get(
        acc: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> V3<Option<Vec<u8>>> {
        answer(handle(acc, &store)?.get(&key).await)
    }

    async fn set(
        acc: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> V3<()> {
        answer(handle(acc, &store)?.set(key, value).await)
    }

    async fn delete(acc: &Accessor<T, Self>, store: Resource<Bucket>, key: String) -> V3<()> {
        answer(handle(acc, &store)?.delete(key).await)
    }

    async fn exists(acc: &Accessor<T, Self>, store: Resource<Bucket>, key: String) -> V3<bool> {
        answer(handle(acc, &store)?.exists(&key).await)
    }

    async fn get_keys(
        acc: &Accessor<T, Self>,
        store: Resource<Bucket>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), v3::Error>>)> {
        let handle = handle(acc, &store)?;
        let (done, result) = oneshot::channel();
        acc.with(|mut access| {
            let keys = StreamReader::new(&mut access, KeyStream::new(handle, done))?;
            // The stream's producer reports how listing ended; if it is
            // dropped first (the guest stopped reading), it ended well.
            let result = async move { Ok::<_, wasmtime::Error>(result.await.unwrap_or(Ok(()))) };
            Ok((keys, FutureReader::new(&mut access, result)?))
        })
    }
}

type Page = Pin<Box<dyn Future<Output = Result<KeyPage, KvError>> + Send>>;

/// Streams a store's keys, one engine page at a time: the next page is
/// only asked for once the guest has read the last, so a listing never
/// holds more than one page.
struct KeyStream {
    handle: Handle,
    /// The page to ask for next (`Some(None)`: the first); `None` once the
    /// last page was handed out.
    next: Option<Option<Cursor>>,
    fetching: Option<Page>,
    done: Option<oneshot::Sender<Result<(), v3::Error>>>,
}

impl KeyStream {
    fn new(handle: Handle, done: oneshot::Sender<Result<(), v3::Error>>) -> Self {
        KeyStream {
            handle,
            next: Some(None),
            fetching: None,
            done: Some(done),
        }
    }

    fn finish(&mut self, result: Result<(), v3::Error>) -> StreamResult {
        if let Some(done) = self.done.take() {
            // The guest may have dropped the future: nobody to tell.
            let _ = done.send(result);
        }
        StreamResult::Dropped
    }
}

impl<D> StreamProducer<D> for KeyStream {
    type Item = String;
    type Buffer = VecBuffer<String>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let this = self.get_mut();
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let Some(after) = this.next else {
            return Poll::Ready(Ok(this.finish(Ok(()))));
        };
        let fetching = this.fetching.get_or_insert_with(|| {
            let handle = this.handle.clone();
            Box::pin(async move { handle.list(after).await })
        });
        match fetching.as_mut().poll(cx) {
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => {
                this.fetching = None;
                Poll::Ready(Ok(this.finish(Err(error.into()))))
            }
            Poll::Ready(Ok(page)) => {
                this.fetching = None;
                this.next = page.next.map(Some);
                if page.keys.is_empty() && this.next.is_none() {
                    return Poll::Ready(Ok(this.finish(Ok(()))));
                }
                dst.set_buffer(page.keys.into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
        }
    }
}

impl Drop for KeyStream {
    fn drop(&mut self) {
        self.finish(Ok(()));
    }
}
