//! The Shoal runtime: a wasmtime sandbox and local scheduler for `wasi:http`
//! components.
//!
//! It takes component bytes and an app's policy and limits, and turns HTTP
//! requests into HTTP responses, one fresh instance per request. It knows
//! nothing of sockets, command lines, databases or peers: the `shoal` binary
//! (`host/`) owns all of those.
//!
//! The flow: [`Runtime::new`] builds a [`wasmtime::Engine`] (pooling
//! allocator, epoch interruption, async) and a [`Linker`] with the full WASI
//! 0.2 import set; a second engine with component-model concurrency and
//! WASI 0.3 follows when a component needs it ([`EngineFlavor`]).
//! [`Runtime::compile`] validates a component and compiles it, through the
//! on-disk [`CompileCache`]. [`Runtime::prepare`] pre-instantiates it with
//! an [`AppConfig`] into an [`App`], and [`App::handle`] serves one request.
//!
//! [`Linker`]: wasmtime::component::Linker

mod app;
mod body;
mod cache;
mod component;
mod deadline;
mod denied;
mod driver;
mod engine;
mod error;
mod guest_log;
mod host_memory;
mod instance;
mod limits;
mod outbound;
mod policy;
mod ranges;
mod scheduler;
pub mod state;

pub use app::{App, AppConfig, AppStats};
pub use body::{Body, BodyError};
pub use cache::CompileCache;
pub use component::{Compiled, HandlerKind, precompile, sha256_hex};
pub use denied::DeniedAddrs;
pub use engine::{EngineFlavor, Precompiler, Runtime, RuntimeConfig};
pub use error::{LoadError, RequestError, RuntimeError};
pub use guest_log::{GuestStream, LogSink, TracingSink};
pub use limits::Limits;
pub use policy::{OutboundRule, Policy};
