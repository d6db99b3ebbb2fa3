//! The JSON documents of the admin API (documented in the README's "Operating" section).
//! Field names are snake_case; sizes are bytes, times ms, seqs plain numbers.

use std::path::Path;

use serde_json::{json, Value};

use super::{Connection, DestinationsReport, StatusReport};
use crate::broker::{messages_from, Browsed, BrowsedBody, DestinationStats, Fetch, Message};
use crate::journal::{read_now, Extent};

pub fn error_body(status: u16, why: &str) -> String {
    json!({ "status": status, "error": why }).to_string()
}

/// The answer to an op: how many messages (or connections) it affected.
pub fn done(affected: u64) -> String {
    json!({ "ok": true, "affected": affected }).to_string()
}

pub fn status(report: &StatusReport) -> String {
    let core = &report.core;
    let replicas: Vec<Value> = core
        .replicas
        .iter()
        .map(|r| {
            json!({
                "name": report.replica_names.get(&r.link),
                "address": r.address,
                "state": r.state,
                "acked_seq": r.acked.0,
                "lag_records": r.lag_records,
                "lag_bytes": r.lag_bytes,
                "lag_ms": r.lag_ms,
            })
        })
        .collect();
    let copying: Vec<Value> = report
        .copies
        .iter()
        .map(|(to, sent, total)| json!({ "to": to, "bytes_done": sent, "bytes_total": total }))
        .collect();
    json!({
        "name": report.name,
        "version": env!("CARGO_PKG_VERSION"),
        "role": core.role.to_string(),
        "is_master": core.role.is_master(),
        "epoch": core.epoch.0,
        "seq": core.last_seq.0,
        "durable_seq": core.durable_seq.0,
        "uptime_ms": report.now_ms.saturating_sub(report.started_at_ms),
        "connections": report.connections,
        "max_connections": report.max_connections,
        "messages": core.messages,
        "paged_messages": core.paged,
        "memory": { "used": core.memory_used, "limit": report.memory_limit },
        "disk": { "used": core.disk_used, "limit": report.disk_limit, "segments": core.segments },
        "master": report.master,
        "replication_address": report.replication_address,
        "last_role_change": core.last_change.as_ref().map(|change| json!({
            "from": change.from.to_string(),
            "to": change.to.to_string(),
            "why": change.why,
            "at_seq": change.at_seq.0,
            "at_ms": report.last_change_at_ms,
        })),
        "in_sync": core.in_sync,
        "min_replicas": core.min_replicas,
        "succession": core.succession,
        "replicas": replicas,
        "lost_replicas": report.lost_replicas.iter().map(|lost| json!({
            "name": lost.name,
            "why": lost.why,
            "at_ms": lost.at_ms,
        })).collect::<Vec<Value>>(),
        "copies": copying,
    })
    .to_string()
}

fn destination(stats: &DestinationStats, oldest_age_ms: Option<u64>) -> Value {
    json!({
        "name": stats.name,
        "depth": stats.depth,
        "consumers": stats.consumers,
        "enqueued": stats.enqueued,
        "dequeued": stats.dequeued,
        "in_flight": stats.in_flight,
        "bytes": stats.bytes,
        "oldest_age_ms": oldest_age_ms,
    })
}

pub fn queues(report: &DestinationsReport) -> String {
    let queues: Vec<Value> = report
        .queues
        .iter()
        .map(|(stats, age)| destination(stats, *age))
        .collect();
    json!({ "queues": queues }).to_string()
}

pub fn topics(report: &DestinationsReport) -> String {
    let topics: Vec<Value> = report
        .topics
        .iter()
        .map(|stats| destination(stats, None))
        .collect();
    json!({ "topics": topics }).to_string()
}

/// A browsed message: its body (read back from the journal if it was paged out), why
/// there is none, or `None` past the browse's byte budget.
pub struct Shown {
    pub item: Browsed,
    pub message: Option<Result<std::sync::Arc<Message>, String>>,
}

/// The messages of a browse, bodies included while their sizes add up to at most
/// `budget` bytes (`admin.max_browse_bytes`): the paged-out ones among those are read
/// back (blocking: file reads), each record decoded once; the rest are listed without.
pub fn browsed(dir: &Path, items: Vec<(Browsed, Option<Extent>)>, budget: usize) -> Vec<Shown> {
    let mut spent = 0usize;
    let within: Vec<bool> = items
        .iter()
        .map(|(item, _)| {
            spent = spent.saturating_add(item.size as usize);
            spent <= budget
        })
        .collect();
    let reads: Vec<(Fetch, Extent)> = items
        .iter()
        .zip(&within)
        .filter_map(
            |((item, extent), within)| match (&item.body, extent, within) {
                (BrowsedBody::Paged(fetch), Some(extent), true) => Some((fetch.clone(), *extent)),
                _ => None,
            },
        )
        .collect();
    let extents: Vec<Extent> = reads.iter().map(|(_, extent)| *extent).collect();
    let fetched = read_now(dir, &extents);
    let mut read_back = messages_from(
        reads
            .into_iter()
            .map(|(fetch, _)| fetch)
            .zip(fetched)
            .collect(),
    )
    .into_iter();
    items
        .into_iter()
        .zip(within)
        .map(|((item, extent), within)| {
            let message = within.then(|| match (&item.body, extent) {
                (BrowsedBody::InMemory(message), _) => Ok(message.clone()),
                (BrowsedBody::Paged(_), Some(_)) => read_back
                    .next()
                    .unwrap_or_else(|| Err("not read".to_string())),
                (BrowsedBody::Paged(_), None) => {
                    Err("its segment was compacted meanwhile".to_string())
                }
                (BrowsedBody::Unreadable, _) => Err("its record does not read back".to_string()),
            });
            Shown { item, message }
        })
        .collect()
}

pub fn browse(queue: &str, shown: &[Shown]) -> String {
    let messages: Vec<Value> = shown
        .iter()
        .map(|shown| {
            let item = &shown.item;
            let mut value = json!({
                "message_id": item.id.to_string(),
                "redeliveries": item.redeliveries,
                "size": item.size,
            });
            match &shown.message {
                None => value["body_omitted"] = json!("past admin.max_browse_bytes"),
                Some(Ok(message)) => {
                    let headers: serde_json::Map<String, Value> = message
                        .headers
                        .iter()
                        .map(|(name, v)| (name.clone(), Value::String(v.clone())))
                        .collect();
                    value["persistent"] = json!(message.persistent);
                    value["headers"] = Value::Object(headers);
                    match std::str::from_utf8(&message.body) {
                        Ok(text) => value["body"] = json!(text),
                        Err(_) => {
                            use base64::Engine;
                            let encoded =
                                base64::engine::general_purpose::STANDARD.encode(&message.body);
                            value["body_base64"] = json!(encoded);
                        }
                    }
                }
                Some(Err(why)) => value["unreadable"] = json!(why),
            }
            value
        })
        .collect();
    json!({ "queue": queue, "messages": messages }).to_string()
}

pub fn connections(connections: &[Connection]) -> String {
    let list: Vec<Value> = connections
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "peer": c.peer,
                "login": c.login,
                "version": c.version,
                "connected_at_ms": c.connected_at_ms,
            })
        })
        .collect();
    json!({ "connections": list }).to_string()
}
