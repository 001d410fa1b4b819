//! Guest state: the key-value stores and configuration an app is granted.
//!
//! The guest-facing interfaces (`wasi:keyvalue` drafts, `spin:key-value`,
//! `fermyon:spin/key-value`, `wasi:config`, Spin variables) are linked here
//! and all reach one small trait, [`KvBackend`]. The runtime never stores
//! anything itself: the host hands an engine in through
//! [`AppConfig::state`](crate::AppConfig::state) (SQLite on one host today,
//! a replicated engine later). Every mutation is one [`WriteRequest`] value,
//! so an engine can log it, replay it and apply it deterministically.
//!
//! A call flows: the guest's import → the linker closure `bindgen!` made
//! (`bindings`) → the interface's impl on [`StateView`] (`wasi_kv`,
//! `wasi_kv2`, `spin_kv`, `config`) → the grant and the runtime's checks
//! (`grant`, `ops`) → `Arc<dyn KvBackend>`.

mod backend;
mod bindings;
mod config;
#[doc(hidden)]
pub mod conformance;
mod grant;
mod memory;
mod ops;
mod spin_kv;
mod wasi_kv;
mod wasi_kv2;

pub use backend::{
    ConfigValues, CounterFormat, Cursor, Entry, KeyPage, KvBackend, KvError, KvLimits, StoreId,
    WriteOp, WriteRequest, Written,
};
pub use memory::{MemoryKv, decode_counter, encode_counter};

pub(crate) use bindings::{add_concurrent_to_linker, add_to_linker};
pub(crate) use grant::{StateCtx, StateGrant, StateView};
