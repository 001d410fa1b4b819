//! The peer HTTP API, client side: bulk state moves here, never over
//! gossip. Requests carry a token sealed under the cluster key
//! (`x-shoal-peer`), and answers come back sealed, so only holders of the
//! key can ask, and nobody on the wire can read env values or bytes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use super::key::{ClusterKey, Purpose};
use crate::desired::Record;

/// The header that authenticates a peer request.
pub(crate) const TOKEN_HEADER: &str = "x-shoal-peer";
/// Largest answer read (a component of the largest upload, sealed).
const MAX_ANSWER: u64 = 2 << 30;
/// How long fetching a component may take (a large one over a slow link).
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a peer may take to start answering for a component (it reads
/// and seals the bytes first); a frozen peer costs this, not the whole
/// component timeout.
const COMPONENT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct PeerClient {
    key: ClusterKey,
    agent: ureq::Agent,
    /// How long a pull of the records may take in all.
    pull_timeout: Duration,
}

impl PeerClient {
    pub(crate) fn new(key: ClusterKey, pull_timeout: Duration) -> PeerClient {
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
        timeout: Option<Duration>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let client = self.clone();
        tokio::task::spawn_blocking(move || {
            let token = client.key.peer_token("GET", &path);
            let mut request = client.agent.get(format!("http://{peer}{path}"));
            if let Some(timeout) = timeout {
                request = request.config().timeout_global(Some(timeout)).build();
            }
            let mut response = request
                .header(TOKEN_HEADER, token)
                .call()
                .with_context(|| format!("peer {peer} did not answer GET {path}"))?;
            let status = response.status();
            if status == 404 {
                return Ok(None);
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_vec()
                .with_context(|| format!("reading GET {path} from peer {peer}"))?;
            anyhow::ensure!(
                status.is_success(),
                "peer {peer} answered GET {path} with {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let opened = client.key.open(Purpose::PeerHttp, &body).with_context(|| {
                format!("the answer of peer {peer} is not sealed with this mesh's cluster key")
            })?;
            Ok(Some(opened))
        })
        .await?
    }

    /// Every record `peer` holds, removals included.
    pub(crate) async fn records(&self, peer: SocketAddr) -> anyhow::Result<Vec<Record>> {
        let bytes = self
            .get(peer, "/v1/peer/records".into(), Some(self.pull_timeout))
            .await?
            .with_context(|| {
                format!("peer {peer} has no records API; is it running this version of Shoal?")
            })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("peer {peer} sent records this version cannot read"))
    }

    /// The bytes of component `sha256`, if `peer` has them.
    pub(crate) async fn component(
        &self,
        peer: SocketAddr,
        sha256: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        self.get(peer, format!("/v1/peer/components/{sha256}"), None)
            .await
    }
}
