//! The peer HTTP API, client side: bulk state moves here, never over
//! gossip. Requests carry a token sealed under the cluster key
//! (`x-shoal-peer`), and answers come back sealed, so only holders of the
//! key can ask, and nobody on the wire can read env values or bytes. The
//! state answer is sealed to its request ([`answer`](super::answer)), so
//! an old one cannot be replayed; component bytes are checked against
//! the sha256 asked for, which no replay can change. A node's figures
//! (counts per app, recent guest lines) for the dashboard come the same
//! way, sealed to their request as the state is.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use serde::{Deserialize, Serialize};

use super::answer;
use super::key::Purpose;
use super::keyring::Keyring;
use crate::desired::Record;
use crate::desired::pull::Pulled;
use crate::guest_logs::LogLine;
use crate::metrics::AppFigures;
use crate::spec::redacted;

/// The header that authenticates a peer request.
pub(crate) const TOKEN_HEADER: &str = "x-shoal-peer";
/// Largest answer read (a component of the largest upload, sealed).
const MAX_ANSWER: u64 = 2 << 30;
/// Largest state answer read: over a hundred thousand apps of a
/// kilobyte or two each, far past what a mesh holds.
const MAX_STATE: u64 = 256 << 20;

/// How sealed answers of a route are opened.
#[derive(Clone, Copy)]
enum Sealing {
    /// Bound to the request's token (the state).
    Bound,
    /// Under the purpose alone (component bytes, checked by their hash).
    Plain,
}

/// The state answer as sent: records stay raw until each is read, so one
/// this version cannot read does not cost the others.
#[derive(Deserialize)]
struct StateWire {
    horizon: u64,
    records: Vec<serde_json::Value>,
}

/// Largest figures answer read (counts of every app, a few hundred lines).
const MAX_FIGURES: u64 = 8 << 20;
/// How long a peer may take to answer for its figures: a dashboard polls
/// every second, and a frozen peer must not hold a poll longer.
const FIGURES_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node tells the dashboard of any node about itself
/// (`GET /v1/peer/figures?after=SEQ`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Figures {
    pub node: String,
    pub version: String,
    pub uptime_secs: u64,
    pub load: u32,
    /// Its clock when it answered, in ms since the epoch.
    pub at_ms: u64,
    /// Counts since it started, per app it served.
    pub apps: Vec<AppFigures>,
    /// The number of its last guest line (lower than one seen before: it
    /// restarted).
    pub log_seq: u64,
    /// Its guest lines numbered after the `after` asked for.
    pub logs: Vec<LogLine>,
}

/// How long fetching a component may take (a large one over a slow link).
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a peer may take to start answering for a component (it reads
/// and seals the bytes first); a frozen peer costs this, not the whole
/// component timeout.
const COMPONENT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct PeerClient {
    key: Keyring,
    agent: ureq::Agent,
    /// How long a pull of the records may take in all.
    pull_timeout: Duration,
}

impl PeerClient {
    pub(crate) fn new(key: Keyring, pull_timeout: Duration) -> PeerClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(COMPONENT_TIMEOUT))
            .timeout_recv_response(Some(COMPONENT_HEAD_TIMEOUT))
            .build()
            .into();
        PeerClient {
            key,
            agent,
            pull_timeout,
        }
    }

    /// GETs `path` from `peer` (within `timeout` in all, if given) and
    /// opens the sealed answer; `None` on 404.
    async fn get(
        &self,
        peer: SocketAddr,
        path: String,
        query: String,
        sealing: Sealing,
        limit: u64,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || {
            let token = client.key.peer_token("GET", &path);
            let mut request = client.agent.get(format!("http://{peer}{path}{query}"));
            if let Some(timeout) = timeout {
                request = request.config().timeout_global(Some(timeout)).build();
            }
            let mut response = request
                .header(TOKEN_HEADER, &token)
                .call()
                .with_context(|| format!("peer {peer} did not answer GET {path}"))?;
            let status = response.status();
            if status == 404 {
                return Ok(None);
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(limit)
                .read_to_vec()
                .with_context(|| format!("reading GET {path} from peer {peer}"))?;
            anyhow::ensure!(
                status.is_success(),
                "peer {peer} answered GET {path} with {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let opened = match sealing {
                Sealing::Bound => answer::open(&client.key, &token, &body),
                Sealing::Plain => client.key.open(Purpose::PeerHttp, &body),
            };
            let opened = opened.with_context(|| {
                format!("the answer of peer {peer} to GET {path} is not sealed with this mesh's cluster key for this request")
            })?;
            Ok(Some(opened))
        })
        .await?
    }

    /// Every record `peer` holds, removals included, and its horizon.
    /// Records this version cannot read are logged and named in
    /// [`Pulled::unread`].
    pub(crate) async fn state(&self, peer: SocketAddr) -> anyhow::Result<Pulled> {
        let bytes = self
            .get(
                peer,
                "/v1/peer/state".into(),
                String::new(),
                Sealing::Bound,
                MAX_STATE,
                Some(self.pull_timeout),
            )
            .await?
            .with_context(|| {
                format!(
                    "peer {peer} has no state API; it runs an older version of Shoal: upgrade it"
                )
            })?;
        let wire: StateWire = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "peer {peer} sent a state this version cannot read: {}",
                redacted(&e)
            )
        })?;
        let mut pulled = Pulled {
            horizon: wire.horizon,
            ..Pulled::default()
        };
        for value in wire.records {
            let name = value
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_owned);
            match serde_json::from_value::<Record>(value) {
                Ok(record) => pulled.records.push(record),
                Err(error) => {
                    let name = name.unwrap_or_default();
                    tracing::warn!(%peer, app = %name.escape_debug(), problem = %redacted(&error), "a peer's record cannot be read by this version of shoal; skipped");
                    pulled.unread.push(name);
                }
            }
        }
        Ok(pulled)
    }

    /// The bytes of component `sha256`, if `peer` has them.
    pub(crate) async fn component(
        &self,
        peer: SocketAddr,
        sha256: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let path = format!("/v1/peer/components/{sha256}");
        self.get(peer, path, String::new(), Sealing::Plain, MAX_ANSWER, None)
            .await
    }

    /// `peer`'s figures, with its guest lines numbered after `after`.
    pub(crate) async fn figures(&self, peer: SocketAddr, after: u64) -> anyhow::Result<Figures> {
        let bytes = self
            .get(
                peer,
                "/v1/peer/figures".into(),
                format!("?after={after}"),
                Sealing::Bound,
                MAX_FIGURES,
                Some(FIGURES_TIMEOUT),
            )
            .await?
            .with_context(|| {
                format!("peer {peer} has no figures API; it runs an older version of Shoal: upgrade it to see it on the dashboard")
            })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("peer {peer} sent figures this version cannot read"))
    }
}
