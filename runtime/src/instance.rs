//! What lives in each request's store: the WASI and wasi:http contexts, the
//! memory limiter, and the hook that sends outbound HTTP through
//! `outbound/`.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::guest_log::{GuestOutput, GuestStream, LogSink};
use crate::limits::MemoryLimiter;
use crate::outbound::{Outbound, Sent};
use crate::policy::Policy;

/// The data of one instance's [`wasmtime::Store`].
pub(crate) struct StoreData {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
}

impl StoreData {
    /// A fresh context that grants exactly what `policy` says.
    pub(crate) fn new(
        app: &Arc<str>,
        policy: &Arc<Policy>,
        memory_limit: u64,
        sink: &Arc<dyn LogSink>,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&policy.env)
            .stdout(GuestOutput::new(
                app.clone(),
                GuestStream::Stdout,
                sink.clone(),
            ))
            .stderr(GuestOutput::new(
                app.clone(),
                GuestStream::Stderr,
                sink.clone(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        StoreData {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks(Outbound {
                app: app.clone(),
                policy: policy.clone(),
                sink: sink.clone(),
            }),
            limiter: MemoryLimiter::new(memory_limit),
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Sends every outgoing request through [`Outbound`], which checks it
/// against the app's policy and the address it resolves to.
struct OutboundHooks(Outbound);

type SendFuture = Box<dyn Future<Output = Result<Sent, HttpError>> + Send>;

/// Writes to an outgoing body buffered before the guest waits for them to be
/// sent, and the largest write taken at once: a guest writing 64 KiB in the
/// 4 KiB pieces `blocking-write-and-flush` allows does not wait for the
/// connection to take each piece (wasmtime's default buffers one), and a
/// body holds at most 1 MiB in flight (wasmtime's default allows two 1 MiB
/// writes).
const OUTGOING_BODY_BUFFER_CHUNKS: usize = 16;
const OUTGOING_BODY_CHUNK_SIZE: usize = 64 << 10;

impl WasiHttpHooks for OutboundHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_SIZE
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        Box::new(self.0.clone().send(request, options))
    }
}
