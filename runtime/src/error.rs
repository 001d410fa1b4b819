//! Errors of the runtime: loading a component, and serving a request.

use std::time::Duration;

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    /// The WASI imports could not be linked.
    #[error("cannot link the WASI imports: {0}")]
    Link(String),
}

/// A component could not be loaded. Each message says what was found and
/// what Shoal expects.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error(
        "not a WebAssembly file (it starts with {found}); expected a wasm component \
         such as `target/wasm32-wasip2/release/NAME.wasm`"
    )]
    NotWasm {
        /// A short description of the first bytes.
        found: String,
    },
    /// A core module instead of a component.
    #[error(
        "this is a core wasm module, not a component; build for `wasm32-wasip2` \
         (`cargo build --target wasm32-wasip2`) or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The component failed validation or compilation.
    #[error("the component is invalid: {0}")]
    Invalid(String),
    /// The component imports something Shoal does not provide.
    #[error(
        "the component imports something Shoal does not provide: {0}; Shoal links \
         WASI 0.2 (cli, clocks, filesystem, io, random, sockets, http) and WASI 0.3"
    )]
    UnsatisfiedImport(String),
    /// The component exports no HTTP handler.
    #[error(
        "the component exports no HTTP handler (it exports: {exports}); expected \
         `wasi:http/incoming-handler@0.2.x` or `wasi:http/handler@0.3.x`"
    )]
    NoHttpExport {
        /// The names the component does export.
        exports: String,
    },
    /// The process compiling the component failed for a reason of its own
    /// (killed, out of memory), not because the component is invalid.
    #[error("compiling the component failed: {0}")]
    Compiler(String),
    /// The compile cache could not be read or written.
    #[error("compile cache at `{path}`: {reason}")]
    Cache {
        /// The cache path involved.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A request could not be answered by the guest. Each variant knows the
/// HTTP status and the short plain reason a client gets; the detail goes to
/// the log only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Too many requests in flight or queued for this app.
    #[error("app `{app}` is at its concurrency limit; retry shortly")]
    Overloaded {
        /// The app.
        app: String,
    },
    /// The request exceeded its deadline.
    #[error("app `{app}` did not answer within its {}s deadline", timeout.as_secs_f64())]
    Timeout {
        /// The app.
        app: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The guest tried to grow its memory beyond the limit.
    #[error("app `{app}` exceeded its memory limit of {limit} bytes")]
    MemoryLimit {
        /// The app.
        app: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest trapped (panic, stack overflow, unreachable, ...).
    #[error("app `{app}` crashed: {reason}")]
    Trap {
        /// The app.
        app: String,
        /// A one-line reason, never a backtrace.
        reason: String,
    },
    /// The guest returned without producing a response.
    #[error("app `{app}` returned no response")]
    NoResponse {
        /// The app.
        app: String,
    },
    /// The guest could not be instantiated.
    #[error("app `{app}` could not be started: {reason}")]
    Instantiation {
        /// The app.
        app: String,
        /// A one-line reason.
        reason: String,
    },
}

impl RequestError {
    /// The HTTP status code a client should get for this error.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Overloaded { .. } => 503,
            RequestError::Timeout { .. } => 504,
            RequestError::NoResponse { .. } => 502,
            RequestError::MemoryLimit { .. }
            | RequestError::Trap { .. }
            | RequestError::Instantiation { .. } => 500,
        }
    }

    /// Seconds a client should wait before retrying, when retrying helps.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            RequestError::Overloaded { .. } => Some(1),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::Overloaded { .. } => "overloaded",
            RequestError::Timeout { .. } => "timeout",
            RequestError::MemoryLimit { .. } => "memory_limit",
            RequestError::Trap { .. } => "trap",
            RequestError::NoResponse { .. } => "no_response",
            RequestError::Instantiation { .. } => "instantiation",
        }
    }
}
