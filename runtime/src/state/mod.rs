//! Guest state: the key-value stores and configuration an app is granted.
//!
//! The guest-facing interfaces (`wasi:keyvalue` drafts, `spin:key-value`,
//! `fermyon:spin/key-value`, `wasi:config`, Spin variables) are linked here
//! and all reach one small trait, [`KvBackend`]. The runtime never stores
//! anything itself: the host hands an engine in through
//! [`AppConfig::state`](crate::AppConfig::state) (SQLite on one host today,
//! a replicated engine later). Every mutation is one [`WriteRequest`] value,
//! so an engine can log it, replay it and apply it deterministically.

mod backend;
#[doc(hidden)]
pub mod conformance;
mod memory;

pub use backend::{
    ConfigValues, CounterFormat, Cursor, Entry, KeyPage, KvBackend, KvError, KvLimits, StoreId,
    WriteOp, WriteRequest, Written,
};
pub use memory::{MemoryKv, decode_counter, encode_counter};
