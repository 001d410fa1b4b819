//! What lives in each request's store: the WASI and wasi:http contexts, the
//! resource table (capped), the memory limiter (charged what the table
//! holds), the hook that sends outbound HTTP through `outbound/`, and the
//! app's grant of key-value stores and configuration (`state/`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::guest_log::{GuestOutput, GuestStream, LineBudget, LogSink};
use crate::host_memory::{self, MAX_FIELDS_SIZE, MAX_TABLE_ENTRIES};
use crate::limits::MemoryLimiter;
use crate::outbound::{Outbound, Sent};
use crate::policy::Policy;
use crate::state::{StateCtx, StateGrant, StateView};

/// The data of one instance's [`wasmtime::Store`].
pub(crate) struct StoreData {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    state: StateCtx,
    pub(crate) limiter: MemoryLimiter,
}

impl StoreData {
    /// A fresh context that grants exactly what `policy` and `grant` say;
    /// guest output goes to `sink` within the app's `budget`.
    pub(crate) fn new(
        app: &Arc<str>,
        policy: &Arc<Policy>,
        grant: &Arc<StateGrant>,
        memory_limit: u64,
        sink: &Arc<dyn LogSink>,
        budget: &Arc<LineBudget>,
    ) -> Self {
        let output = |stream| GuestOutput::new(app.clone(), stream, sink.clone(), budget.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&policy.env)
            .stdout(output(GuestStream::Stdout))
            .stderr(output(GuestStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_SIZE);
        StoreData {
            table,
            wasi: wasi.build(),
            http,
            hooks: OutboundHooks(Outbound {
                app: app.clone(),
                policy: policy.clone(),
                sink: sink.clone(),
            }),
            state: StateCtx::new(grant),
            limiter: MemoryLimiter::new(memory_limit),
        }
    }

    /// Charges what the resource table holds now to the memory limit;
    /// `false` when the store is over it.
    pub(crate) fn charge_host_memory(&mut self) -> bool {
        let unsent_body = (OUTGOING_BODY_BUFFER_CHUNKS * OUTGOING_BODY_CHUNK_SIZE) as u64;
        let held = host_memory::held(&mut self.table, unsent_body);
        self.limiter.charge_host(held)
    }

    /// What the state interfaces (key-value, config) work on.
    pub(crate) fn state(&mut self) -> StateView<'_> {
        StateView {
            ctx: &mut self.state,
            table: &mut self.table,
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
