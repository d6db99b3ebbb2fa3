//! `/metrics` in the Prometheus text exposition format (0.0.4): the only file that names
//! `prometheus_client`.
//!
//! Each scrape encodes one snapshot (the shell's status and destinations, and the
//! process's `meter::METERS`) through a collector registered in a fresh registry, so
//! nothing here keeps state between scrapes and every figure of one scrape is of one
//! moment of the core.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{DestinationsReport, StatusReport};
use crate::meter::{Histogram, METERS};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition of one snapshot.
pub fn render(status: &StatusReport, destinations: &DestinationsReport) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        status: status.clone(),
        destinations: destinations.clone(),
    }));
    let mut text = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
        Ok(()) => text,
        // Writing to a String does not fail; a bad name would, and is a bug here.
        Err(error) => format!("# the metrics did not encode: {error}\n"),
    }
}

#[derive(Debug)]
struct Snapshot {
    status: StatusReport,
    destinations: DestinationsReport,
}

/// One metric family's values: (labels, value).
type Labelled = Vec<(Vec<(&'static str, String)>, f64)>;
/// One figure of a destination, or of a replica.
type PerDestination = fn(&crate::broker::DestinationStats) -> f64;
type PerReplica = fn(&crate::core::ReplicaStatus) -> f64;

fn one(value: impl Into<f64>) -> Labelled {
    vec![(Vec::new(), value.into())]
}

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: &Labelled,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        let labels = labels.as_slice();
        let mut labelled = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => labelled.encode_counter::<NoLabelSet, _, f64>(value, None)?,
            _ => labelled.encode_gauge(value)?,
        }
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    histogram: &Histogram,
) -> Result<(), std::fmt::Error> {
    let (sum, count, buckets) = histogram.snapshot();
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let status = &self.status;
        let core = &status.core;
        let gauges: [(&str, &str, Labelled); 11] = [
            (
                "mirrormq_info",
                "This broker: name, version and role (always 1).",
                vec![(
                    vec![
                        ("name", status.name.clone()),
                        ("version", env!("CARGO_PKG_VERSION").to_string()),
                        ("role", core.role.to_string()),
                    ],
                    1.0,
                )],
            ),
            (
                "mirrormq_is_master",
                "1 on a master, 0 otherwise.",
                one(u8::from(core.role.is_master())),
            ),
            (
                "mirrormq_epoch",
                "The store's epoch (one more at each promotion).",
                one(core.epoch.0 as f64),
            ),
            (
                "mirrormq_seq",
                "The last record's seq.",
                one(core.last_seq.0 as f64),
            ),
            (
                "mirrormq_durable_seq",
                "Every record up to this seq is on this broker's disk.",
                one(core.durable_seq.0 as f64),
            ),
            (
                "mirrormq_connections",
                "Client connections open.",
                one(status.connections as f64),
            ),
            (
                "mirrormq_messages",
                "Messages stored (paged out or not).",
                one(core.messages as f64),
            ),
            (
                "mirrormq_memory_bytes",
                "Message memory in use, and its limit (broker.max_memory).",
                vec![
                    (vec![("kind", "used".to_string())], core.memory_used as f64),
                    (
                        vec![("kind", "limit".to_string())],
                        status.memory_limit as f64,
                    ),
                ],
            ),
            (
                "mirrormq_disk_bytes",
                "Journal bytes on disk, and the limit (broker.max_disk).",
                vec![
                    (vec![("kind", "used".to_string())], core.disk_used as f64),
                    (
                        vec![("kind", "limit".to_string())],
                        status.disk_limit as f64,
                    ),
                ],
            ),
            (
                "mirrormq_replicas_in_sync",
                "Slaves in sync with this master.",
                one(core.in_sync as f64),
            ),
            (
                "mirrormq_min_replicas",
                "replication.min_replicas.",
                one(core.min_replicas as f64),
            ),
        ];
        for (name, help, values) in &gauges {
            family(&mut encoder, name, help, Gauge, values)?;
        }
        let counters: [(&str, &str, u64); 6] = [
            (
                "mirrormq_frames_received",
                "STOMP frames read from clients.",
                METERS.frames_in.get(),
            ),
            (
                "mirrormq_frames_sent",
                "STOMP frames written to clients.",
                METERS.frames_out.get(),
            ),
            (
                "mirrormq_bytes_received",
                "Bytes read from client connections.",
                METERS.bytes_in.get(),
            ),
            (
                "mirrormq_bytes_sent",
                "Bytes written to client connections.",
                METERS.bytes_out.get(),
            ),
            (
                "mirrormq_receipts",
                "RECEIPT frames written.",
                METERS.receipts.get(),
            ),
            (
                "mirrormq_connections_accepted",
                "Client connections accepted.",
                METERS.connections.get(),
            ),
        ];
        for (name, help, value) in counters {
            family(&mut encoder, name, help, Counter, &one(value as f64))?;
        }
        let queue: [(&str, &str, MetricType, PerDestination); 6] = [
            (
                "mirrormq_queue_depth",
                "Messages stored in the queue.",
                Gauge,
                |s| s.depth as f64,
            ),
            (
                "mirrormq_queue_consumers",
                "Consumers of the queue.",
                Gauge,
                |s| s.consumers as f64,
            ),
            (
                "mirrormq_queue_in_flight",
                "Messages delivered and not yet acknowledged.",
                Gauge,
                |s| s.in_flight as f64,
            ),
            (
                "mirrormq_queue_bytes",
                "Bytes of the messages stored in the queue.",
                Gauge,
                |s| s.bytes as f64,
            ),
            (
                "mirrormq_queue_enqueued",
                "Messages that entered the queue since the broker started.",
                Counter,
                |s| s.enqueued as f64,
            ),
            (
                "mirrormq_queue_dequeued",
                "Messages that left the queue since the broker started.",
                Counter,
                |s| s.dequeued as f64,
            ),
        ];
        for (name, help, kind, value) in queue {
            let values = self
                .destinations
                .queues
                .iter()
                .map(|(stats, _)| (vec![("queue", stats.name.clone())], value(stats)))
                .collect();
            family(&mut encoder, name, help, kind, &values)?;
        }
        let topic: [(&str, &str, MetricType, PerDestination); 2] = [
            (
                "mirrormq_topic_subscribers",
                "Subscribers of the topic.",
                Gauge,
                |s| s.consumers as f64,
            ),
            (
                "mirrormq_topic_published",
                "Messages published to the topic while it had subscribers.",
                Counter,
                |s| s.enqueued as f64,
            ),
        ];
        for (name, help, kind, value) in topic {
            let values = self
                .destinations
                .topics
                .iter()
                .map(|stats| (vec![("topic", stats.name.clone())], value(stats)))
                .collect();
            family(&mut encoder, name, help, kind, &values)?;
        }
        let replica: [(&str, &str, PerReplica); 3] = [
            (
                "mirrormq_replica_lag_records",
                "Records the slave has not acknowledged.",
                |r| r.lag_records as f64,
            ),
            (
                "mirrormq_replica_lag_bytes",
                "Bytes of records shipped to the slave and not acknowledged.",
                |r| r.lag_bytes as f64,
            ),
            (
                "mirrormq_replica_lag_seconds",
                "Age of the oldest record the slave has not acknowledged.",
                |r| r.lag_ms as f64 / 1e3,
            ),
        ];
        for (name, help, value) in replica {
            let values = core
                .replicas
                .iter()
                .map(|r| {
                    // The link id keeps two slaves of one name (or none) apart.
                    let name = status
                        .replica_names
                        .get(&r.link)
                        .cloned()
                        .unwrap_or_default();
                    let labels = vec![
                        ("replica", name),
                        ("link", r.link.0.to_string()),
                        ("state", r.state.to_string()),
                    ];
                    (labels, value(r))
                })
                .collect();
            family(&mut encoder, name, help, Gauge, &values)?;
        }
        histogram(
            &mut encoder,
            "mirrormq_fsync_seconds",
            "Time of one journal fdatasync.",
            &METERS.fsync,
        )?;
        histogram(
            &mut encoder,
            "mirrormq_receipt_latency_seconds",
            "From reading a SEND that asks for a receipt to writing its RECEIPT (one SEND at a time per connection).",
            &METERS.receipt_latency,
        )
    }
}
