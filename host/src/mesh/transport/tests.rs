//! The transport under chitchat: binding, and whole nodes that meet (or
//! never do) over it.

use std::time::Duration;

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
};
use tokio::time::{Instant, timeout};

use super::*;
use crate::mesh::key::ClusterKey;
use codec::LOOPBACK;
use test_support::{ARRIVES, load, syn};

#[tokio::test]
async fn binding_a_taken_address_fails_and_sending_to_nobody_succeeds() {
    let key = ClusterKey::generate();
    let transport =
        SealedUdpTransport::new(Keyring::single(key), Arc::new(TransportStats::default()));
    let mut a = transport.open(LOOPBACK).await.unwrap();
    let taken = a.local_addr().unwrap();
    let error = transport.open(taken).await.err().unwrap();
    assert!(
        format!("{error:#}").contains(&taken.to_string()),
        "{error:#}"
    );
    let nobody: SocketAddr = ([127, 0, 0, 2], taken.port()).into();
    a.send(nobody, syn("anyone?")).await.unwrap();
}

fn free_addr() -> SocketAddr {
    std::net::UdpSocket::bind(LOOPBACK)
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn node(
    name: &str,
    key: &ClusterKey,
    seeds: &[SocketAddr],
) -> (ChitchatHandle, Arc<TransportStats>) {
    let addr = free_addr();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(name.to_string(), 0, addr),
        cluster_id: "shoal-test".to_string(),
        gossip_interval: Duration::from_millis(50),
        listen_addr: addr,
        seed_nodes: seeds.iter().map(SocketAddr::to_string).collect(),
        failure_detector_config: FailureDetectorConfig {
            initial_interval: Duration::from_millis(50),
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(60),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    };
    let stats = Arc::new(TransportStats::default());
    let transport = SealedUdpTransport::new(Keyring::single(key.clone()), stats.clone());
    let handle = chitchat::spawn_chitchat(config, vec![("role".into(), name.into())], &transport)
        .await
        .unwrap();
    (handle, stats)
}

async fn live_nodes(handle: &ChitchatHandle) -> usize {
    handle
        .with_chitchat(|chitchat| chitchat.live_nodes().count())
        .await
}

async fn shut_down(handle: ChitchatHandle) {
    timeout(ARRIVES, handle.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn chitchat_nodes_with_the_same_key_meet() {
    let key = ClusterKey::generate();
    let (a, a_stats) = node("a", &key, &[]).await;
    let (b, b_stats) = node("b", &key, &[a.chitchat_id().gossip_advertise_addr]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while live_nodes(&a).await < 2 || live_nodes(&b).await < 2 {
        assert!(
            Instant::now() < deadline,
            "nodes with the same key never met"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // They share state, not just heartbeats.
    let b_id = b.chitchat_id().clone();
    let role = a
        .with_chitchat(|chitchat| {
            chitchat
                .node_state(&b_id)
                .and_then(|state| state.get("role").map(str::to_string))
        })
        .await;
    assert_eq!(role.as_deref(), Some("b"));
    assert_eq!(
        load(&a_stats.dropped_packets) + load(&b_stats.dropped_packets),
        0
    );
    assert!(load(&a_stats.received_bytes) > 0 && load(&b_stats.sent_bytes) > 0);
    shut_down(a).await;
    shut_down(b).await;
}

#[tokio::test]
async fn chitchat_nodes_with_different_keys_never_meet() {
    let (a, a_stats) = node("a", &ClusterKey::generate(), &[]).await;
    let (b, _) = node(
        "b",
        &ClusterKey::generate(),
        &[a.chitchat_id().gossip_advertise_addr],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(live_nodes(&a).await, 1);
        assert_eq!(live_nodes(&b).await, 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(load(&a_stats.dropped_packets) > 0);
    shut_down(a).await;
    shut_down(b).await;
}
