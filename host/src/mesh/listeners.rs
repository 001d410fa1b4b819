//! The listeners of every member of the mesh (gossip, peer and admin API,
//! ingress), which guests may never reach: a guest that could call another
//! node's admin or peer API could deploy or remove apps mesh-wide. The set
//! only grows while this host runs, so a member that left or was declared
//! dead stays out of reach too.

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_runtime::DeniedAddrs;
use tokio::sync::watch;

use super::membership::Members;

/// Adds every member's listeners to `denied`, now and whenever the
/// membership changes, until the membership stops.
pub(crate) async fn deny_to_guests(
    mut members: watch::Receiver<Arc<Members>>,
    denied: DeniedAddrs,
) {
    loop {
        let view = members.borrow_and_update().clone();
        let before = denied.len();
        denied.extend(listeners(&view));
        if denied.len() != before {
            tracing::debug!(denied = denied.len(), "member listeners denied to guests");
        }
        if members.changed().await.is_err() {
            return;
        }
    }
}

/// Every address a member advertises.
fn listeners(members: &Members) -> impl Iterator<Item = SocketAddr> + '_ {
    members
        .all
        .values()
        .flat_map(|m| [Some(m.gossip), m.peer, m.ingress])
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::membership::Member;

    fn member(name: &str, port: u16) -> Member {
        Member {
            name: name.into(),
            generation: 1,
            gossip: SocketAddr::from(([10, 0, 0, 1], port)),
            live: false,
            peer: Some(SocketAddr::from(([10, 0, 0, 1], port + 1))),
            ingress: Some(SocketAddr::from(([10, 0, 0, 1], port + 2))),
            capacity: 1,
            load: 0,
            state: String::new(),
            ready: String::new(),
            ingress_cert: None,
        }
    }

    #[tokio::test]
    async fn every_member_seen_stays_denied() {
        let mut members = Members::default();
        members.all.insert("a".into(), member("a", 7000));
        let (sender, receiver) = watch::channel(Arc::new(members.clone()));
        let denied = DeniedAddrs::new();
        let task = tokio::spawn(deny_to_guests(receiver, denied.clone()));
        for _ in 0..1000 {
            if denied.len() == 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(denied.len(), 3, "a's gossip, peer and ingress addresses");
        members.all.clear();
        members.all.insert("b".into(), member("b", 8000));
        sender.send(Arc::new(members)).unwrap();
        drop(sender);
        task.await.unwrap();
        for port in [7000, 7001, 7002, 8000, 8001, 8002] {
            assert!(
                denied.denies(SocketAddr::from(([10, 0, 0, 1], port))),
                "{port}"
            );
        }
        assert!(!denied.denies(SocketAddr::from(([10, 0, 0, 1], 7003))));
    }
}
