//! The mesh's part of `/metrics`, read at scrape time: members by state,
//! forwarding outcomes, and gossip traffic (including packets dropped, by
//! reason).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Mesh;

pub(crate) struct MeshCollector(pub Arc<Mesh>);

impl std::fmt::Debug for MeshCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCollector").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    let mut descriptor = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    if labels.is_empty() {
        metric.encode(descriptor)
    } else {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        metric.encode(descriptor.encode_family(&labels)?)
    }
}

impl Collector for MeshCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mesh = &self.0;
        let members = mesh.membership.members();
        let live = members.live().count() as i64;
        let dead = members.all.len() as i64 - live;
        for (state, value) in [("live", live), ("dead", dead)] {
            let gauge = ConstGauge::new(value);
            let mut descriptor = encoder.encode_descriptor(
                "mesh_members",
                "Members of the mesh this node knows, by state (itself included)",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(
                descriptor.encode_family(&vec![("state".to_string(), state.to_string())])?,
            )?;
        }
        let forward = &mesh.forwarder.stats;
        for (outcome, value) in [
            ("ok", &forward.forwarded),
            ("failed", &forward.failed),
            ("no_holder", &forward.no_holder),
        ] {
            counter(
                &mut encoder,
                "forwarded_requests",
                "Requests for apps served elsewhere, by outcome",
                &[("outcome", outcome)],
                value.load(Ordering::Relaxed),
            )?;
        }
        counter(
            &mut encoder,
            "forward_retries",
            "Forwarded requests sent once more after their connection failed",
            &[],
            forward.retried.load(Ordering::Relaxed),
        )?;
        let gossip = &mesh.transport;
        for (name, help, value) in [
            (
                "gossip_sent_bytes",
                "Gossip bytes sent (sealed)",
                &gossip.sent_bytes,
            ),
            (
                "gossip_received_bytes",
                "Gossip bytes received",
                &gossip.received_bytes,
            ),
        ] {
            counter(&mut encoder, name, help, &[], value.load(Ordering::Relaxed))?;
        }
        for (reason, value) in gossip.dropped_by_reason() {
            counter(
                &mut encoder,
                "gossip_dropped_packets",
                "Gossip packets dropped, by reason: not sealed with this mesh's keys (unauthenticated), replayed, stale, misaddressed, malformed, ...",
                &[("reason", reason)],
                value,
            )?;
        }
        Ok(())
    }
}
