//! The body type of the requests and responses that cross the runtime
//! boundary, and its error type.

/// The body type of requests and responses that cross the runtime boundary.
///
/// It is `wasmtime-wasi-http`'s boxed body so a guest's streaming body is
/// handed to the host without copying or buffering.
pub type Body = wasmtime_wasi_http::WasiBody;

/// The error type of [`Body`] streams.
pub type BodyError = wasmtime_wasi_http::Error;
