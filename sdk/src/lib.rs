//! The Shoal guest SDK: write an HTTP component as an ordinary function.
//!
//! ```ignore
//! use shoal_sdk::{Request, RequestExt, Response, Result};
//!
//! #[shoal_sdk::http]
//! fn handle(req: Request) -> Result<Response> {
//!     let name = req.query_param("name").unwrap_or_else(|| "world".into());
//!     Ok(shoal_sdk::text(format!("Hello, {name}!\n")))
//! }
//! ```
//!
//! The handler may be `async fn` too; it can then await the SDK's own
//! futures ([`fetch_async`], [`Body::next_chunk`], [`sleep`]), several at
//! once with any executor-agnostic combinator (`futures::join!`, ...).
//!
//! Requests and responses work with the [`http`](http_types) crate's
//! types: [`Request`] has the accessors of `http::Request<Body>` (and
//! converts to and from one), reading each part from the host only when
//! asked; [`Response`] is `http::Response<ResponseBody>`. Errors are values: [`Error`] carries
//! the status it answers with, and `?` converts any error (bad JSON → 400,
//! a denied outbound request → 403, anything else → 500).
//!
//! State and configuration: [`kv::Store`] keeps values between requests
//! (`shoal run --kv default`), and [`config::get`] reads the values the
//! host sets (`--config greeting=hi`).
//!
//! The SDK is built only on the standard `wasi:http` interfaces (through
//! the `wasip2` crate), so a component made with it runs on Shoal and on
//! any other `wasi:http` host (`wasmtime serve -Scli`) unchanged; [`kv`]
//! and [`config`] add `wasi:keyvalue` and `wasi:config` (the drafts Spin
//! links), imported only by a component that calls them. Build with
//! `cargo build --target wasm32-wasip2 --release`.
#![deny(missing_docs)]

mod bindings;
mod body;
pub mod config;
mod error;
mod executor;
mod fetch;
pub mod kv;
mod query;
mod request;
mod response;
mod router;
mod serve;
mod writer;

/// The [`http`](https://docs.rs/http) crate the request and response types come from.
pub use ::http as http_types;
pub use ::http::{HeaderValue, Method, StatusCode, header};
pub use body::Body;
pub use error::{Error, FetchError, Result};
pub use executor::sleep;
pub use fetch::{fetch, fetch_async};
pub use query::{Params, RequestExt};
pub use request::Request;
#[cfg(feature = "json")]
pub use response::json;
pub use response::{IntoResponse, Producer, Response, ResponseBody, empty, stream, text};
pub use router::Router;
pub use shoal_sdk_macro::http;
pub use writer::BodyWriter;

/// The value of environment variable `key`, as granted by the host
/// (`shoal run --env KEY=VALUE`, `shoal deploy --env KEY=VALUE`,
/// `wasmtime serve -Scli --env KEY=VALUE`); a component sees nothing of
/// the host's own environment. `None` if it is not set (or not UTF-8).
pub fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[doc(hidden)]
pub mod __private {
    pub use crate::response::IntoResponse;
    pub use crate::serve::{into_response, run_async, serve};
    pub use wasip2;
    pub use wasip2::exports::http::incoming_handler::Guest;
    pub use wasip2::http::types::{IncomingRequest, ResponseOutparam};
}
