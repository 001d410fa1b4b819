//! The mesh: hosts that find each other by gossip. A host without
//! `--join` is a mesh of one, on the same code path. This module knows
//! gossip and peers, never the node's state: the node's loops
//! (`node::control`, `node::sync`) drive it.
//!
//! - [`membership`]: the facade over chitchat (who is live, what each
//!   advertises), over [`transport`] (gossip sealed under the [`key`]s of
//!   the [`keyring`]).
//! - [`placement`]: who serves what, computed alike by every node.
//! - [`readiness`]: what each node advertises it serves, decoded into the
//!   table forwarding reads.
//! - [`peer`]: the client of other nodes' peer API (records, bytes), whose
//!   answers are sealed to their request ([`answer`]).
//! - [`forward`]: sends requests for apps served elsewhere to a ready node,
//!   over TLS to an ingress that has it ([`pinned`]: trusted by the
//!   certificate fingerprint its member gossips).
//! - [`listeners`]: every member's listeners, denied to guests.
//! - [`metrics`]: the mesh's part of `/metrics`.

pub(crate) mod answer;
pub(crate) mod forward;
pub mod key;
pub mod keyring;
pub(crate) mod listeners;
pub(crate) mod membership;
pub(crate) mod metrics;
pub(crate) mod peer;
pub(crate) mod pinned;
pub mod placement;
pub(crate) mod readiness;
pub mod transport;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keyring::Keyring;
use membership::{GossipConfig, Members, Membership, keys};
use placement::{Demand, Member as PlacementMember, Placement};
use transport::{SealedUdpTransport, TransportStats};

use self::forward::Forwarder;
use self::peer::PeerClient;
use self::readiness::ReadyTable;
use crate::desired::Desired;

/// How `shoal host` joins (or founds) a mesh.
#[derive(Debug, Clone)]
pub(crate) struct MeshConfig {
    /// Stable name of this node.
    pub name: String,
    /// Where gossip listens (UDP); port 0 picks a free one.
    pub gossip: SocketAddr,
    /// The gossip address peers should use, if not `gossip`.
    pub advertise: Option<SocketAddr>,
    /// Peers to join through.
    pub join: Vec<String>,
    pub key: Keyring,
    pub interval: Duration,
    /// Placement weight; default: the host's instance slots.
    pub capacity: Option<u32>,
    /// How much longer than an app's deadline a forwarded request may take.
    pub forward_grace: Duration,
    /// How long a pull of a peer's records may take.
    pub pull_timeout: Duration,
}

pub(crate) struct Mesh {
    pub me: String,
    pub gossip: SocketAddr,
    pub key: Keyring,
    pub membership: Membership,
    pub transport: Arc<TransportStats>,
    pub peer: PeerClient,
    pub forwarder: Arc<Forwarder>,
    /// Whether this node was started to join others (`--join`).
    pub joins: bool,
    placement: RwLock<Arc<Placement>>,
}

impl Mesh {
    /// Binds gossip and starts advertising this node.
    pub(crate) async fn start(
        config: &MeshConfig,
        data_dir: &Path,
        admin: SocketAddr,
        ingress: SocketAddr,
        ingress_cert: Option<String>,
        slots: u32,
    ) -> anyhow::Result<Mesh> {
        let listen = resolve_port(config.gossip)?;
        let advertise = match config.advertise {
            Some(advertise) => advertise,
            None if listen.ip().is_unspecified() => anyhow::bail!(
                "gossip listens on {listen}, which peers cannot dial; say which address they should use with `--advertise IP:{}`",
                listen.port()
            ),
            None => listen,
        };
        let gossip = GossipConfig {
            name: config.name.clone(),
            generation: membership::next_generation(data_dir)?,
            listen,
            advertise,
            seeds: config.join.clone(),
            interval: config.interval,
        };
        let capacity = config.capacity.unwrap_or(slots).max(1);
        let initial = vec![
            (
                keys::PEER.to_string(),
                reachable(admin, advertise.ip()).to_string(),
            ),
            (
                keys::INGRESS.to_string(),
                reachable(ingress, advertise.ip()).to_string(),
            ),
            (keys::CAPACITY.to_string(), capacity.to_string()),
            (keys::LOAD.to_string(), "0".to_string()),
        ];
        let initial: Vec<_> = initial
            .into_iter()
            .chain(ingress_cert.map(|pin| (keys::INGRESS_CERT.to_string(), pin)))
            .collect();
        let joins = !config.join.is_empty();
        let transport = Arc::new(TransportStats::default());
        let membership = Membership::start(
            &gossip,
            initial,
            &SealedUdpTransport::new(config.key.clone(), transport.clone()).never_to(advertise),
        )
        .await?;
        Ok(Mesh {
            me: config.name.clone(),
            gossip: advertise,
            key: config.key.clone(),
            membership,
            transport,
            peer: PeerClient::new(config.key.clone(), config.pull_timeout),
            forwarder: Arc::new(Forwarder::new(
                config.name.clone(),
                config.forward_grace,
                joins,
            )),
            joins,
            placement: RwLock::new(Arc::new(Placement::compute(&[], &[]))),
        })
    }

    /// Placement of `desired` over the members live now.
    pub(crate) fn place(&self, desired: &Desired) -> Placement {
        place(&self.membership.members(), desired)
    }

    /// The placement the controller last computed.
    pub(crate) fn placement(&self) -> Arc<Placement> {
        self.placement
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_placement(&self, placement: Arc<Placement>) {
        *self.placement.write().unwrap_or_else(|e| e.into_inner()) = placement;
    }

    /// Other nodes ready to serve the current version of `app`.
    pub(crate) fn ready_nodes(&self, app: &str) -> Vec<String> {
        self.forwarder.table().ready_nodes(app)
    }

    /// Which apps each live node serves at their current version.
    pub(crate) fn held(&self) -> HashMap<String, Vec<String>> {
        self.forwarder.table().held()
    }

    pub(crate) fn set_table(&self, table: ReadyTable) {
        self.forwarder.set_table(table);
    }
}

/// Placement of `desired` over the live members of `members`.
pub(crate) fn place(members: &Members, desired: &Desired) -> Placement {
    let members: Vec<PlacementMember> = members
        .live()
        .map(|m| PlacementMember {
            name: m.name.clone(),
            capacity: m.capacity,
        })
        .collect();
    let demands: Vec<Demand> = desired
        .apps()
        .map(|(_, spec)| Demand {
            app: spec.name.clone(),
            replicas: spec.replicas,
        })
        .collect();
    Placement::compute(&members, &demands)
}

/// A concrete port for `addr`: port 0 is replaced by a free one (gossip
/// must know its own address before it binds).
fn resolve_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot bind gossip on {addr}/udp: {e}"))?;
    Ok(socket.local_addr()?)
}

/// `bound` as peers should dial it: an unspecified IP is replaced by the
/// advertised one.
fn reachable(bound: SocketAddr, advertised: IpAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(advertised, bound.port())
    } else {
        bound
    }
}
