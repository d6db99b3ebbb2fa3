//! The documented defaults of every config key that has one.

use super::{ByteSize, Endpoint};
pub fn max_redeliveries() -> u32 {
    6
}
pub fn max_memory() -> ByteSize {
    ByteSize(512 << 20)
}
pub fn segment_size() -> ByteSize {
    ByteSize(32 << 20)
}
pub fn max_disk() -> ByteSize {
    ByteSize(32 << 30)
}
pub fn compact_interval_ms() -> u64 {
    30_000
}
pub fn lock_retry_ms() -> u64 {
    1000
}
pub fn dedup_window() -> usize {
    10_000
}
pub fn worker_threads() -> usize {
    1
}
/// As `broker::DEFAULT_SELECTOR_SCAN`, what a broker built without a config uses.
pub fn selector_scan() -> usize {
    1000
}
pub fn max_selector_depth() -> usize {
    32
}
pub fn max_like_pattern() -> usize {
    256
}
pub fn max_browse() -> usize {
    10_000
}
pub fn status_interval_ms() -> u64 {
    10_000
}
pub fn stomp_bind() -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: 61613,
    }
}
pub fn max_frame_size() -> ByteSize {
    ByteSize(10 << 20)
}
pub fn max_headers() -> usize {
    1000
}
pub fn max_header_length() -> usize {
    10 * 1024
}
pub fn max_connections() -> usize {
    2000
}
pub fn connect_timeout_ms() -> u64 {
    30_000
}
pub fn min_heartbeat_ms() -> u64 {
    100
}
pub fn heartbeat_grace() -> f64 {
    1.5
}
pub fn default_prefetch() -> u32 {
    1000
}
pub fn max_pending_frames() -> usize {
    20_000
}
pub fn max_transaction_frames() -> usize {
    10_000
}
pub fn ack_timeout_ms() -> u64 {
    2000
}
pub fn max_slaves() -> usize {
    4
}
pub fn sync_streams() -> usize {
    2
}
pub fn min_replicas_timeout_ms() -> u64 {
    10_000
}
pub fn repl_heartbeat_ms() -> u64 {
    200
}
pub fn repl_heartbeat_misses() -> u32 {
    3
}

impl Default for super::StompConfig {
    fn default() -> Self {
        // One source of defaults: an empty table through serde.
        toml::from_str("").expect("every [stomp] field has a default")
    }
}

impl Default for super::ReplicationConfig {
    fn default() -> Self {
        toml::from_str("").expect("every [replication] field has a default")
    }
}
