//! Outbound HTTP for guests, checked against the address it connects to.
//!
//! Every request a guest sends goes through [`Outbound::send`]: the URI's
//! host is judged by the app's policy before anything is resolved (so a
//! guest cannot make the host look up names it may not reach), then the
//! host is resolved here, every address it resolves to is judged, and the
//! connection goes to exactly those checked addresses, never through a
//! second lookup (a name that changes its answer between check and connect
//! gains nothing). TLS still verifies, and `Host` still carries, the name
//! the guest used. A redirect is a new request from the guest, judged the
//! same way.
//!
//! A refusal is a `wasi:http` error the guest sees (`http-request-denied`
//! for a host no rule names, `destination-ip-prohibited` for an address it
//! may not reach), a warning in the host's log, and a line in the app's log
//! saying why and what to allow.

mod connect;

pub(crate) use connect::Sent;
use connect::{DEFAULT_TIMEOUT, Destination};

use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::guest_log::{GuestStream, LogSink};
use crate::policy::{Policy, Refusal};

/// One app's way out: its policy and where refusals are logged.
#[derive(Clone)]
pub(crate) struct Outbound {
    pub app: Arc<str>,
    pub policy: Arc<Policy>,
    pub sink: Arc<dyn LogSink>,
}

impl Outbound {
    /// Checks `request` against the policy, resolves its host, checks every
    /// address, and sends it to a checked address.
    pub(crate) async fn send(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Sent, HttpError> {
        let dest = Destination::of(request.uri()).ok_or(HttpError::HttpRequestUriInvalid)?;
        if let Err(refusal) = self.policy.check_host(&dest.host, dest.port) {
            return Err(self.refuse(&dest, &refusal));
        }
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(DEFAULT_TIMEOUT);
        let addrs = match dest.literal() {
            Some(addr) => vec![addr],
            None => connect::resolve(&dest, connect_timeout).await?,
        };
        for addr in &addrs {
            if let Err(refusal) = self.policy.check_addr(*addr) {
                return Err(self.refuse(&dest, &refusal));
            }
        }
        tracing::debug!(app = %self.app, host = %dest.host, port = dest.port, ?addrs, "outbound request");
        connect::send(&dest, &addrs, request, options, connect_timeout).await
    }

    /// Logs why a request was refused, in the host's log and the app's,
    /// and gives the error the guest sees.
    fn refuse(&self, dest: &Destination, refusal: &Refusal) -> HttpError {
        let address = refusal.is_address();
        tracing::warn!(
            app = %self.app,
            host = %dest.host,
            port = dest.port,
            reason = %refusal,
            "outbound request refused"
        );
        self.sink
            .line(&self.app, GuestStream::Stderr, &format!("shoal: {refusal}"));
        if address {
            HttpError::DestinationIpProhibited
        } else {
            HttpError::HttpRequestDenied
        }
    }
}
