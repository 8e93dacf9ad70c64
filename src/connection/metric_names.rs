//! Names of every metric the crate records, in one place: every recorder (the driver's
//! events, the restore layer, the metrics reporter) uses these. Public as
//! [`mirror_reconnect::metrics::names`](crate::metrics::names).

/// Counter, labels `stream_id`, `reason`: connections judged failed.
pub const FAILURE_DETECTIONS: &str = "mirror_reconnect_failure_detections_total";
/// Counter, labels `stream_id`, `reason`: connect attempts (the first connection's
/// too, with reason `none`).
pub const RECONNECTION_ATTEMPTS: &str = "mirror_reconnect_reconnection_attempts_total";
/// Counter, label `stream_id`: reconnections that delivered a packet again.
pub const RECONNECTION_SUCCESSES: &str = "mirror_reconnect_reconnection_successes_total";
/// Counter, label `stream_id`: reconnections given up.
pub const RECONNECTION_FAILURES: &str = "mirror_reconnect_reconnection_failures_total";
/// Counter, labels `stream_id`, `outcome` (`answered`, `no_answer`): probes made while
/// waiting out a backoff delay (never counted as attempts).
pub const PROBES: &str = "mirror_reconnect_probes_total";
/// Counter, label `stream_id`: connects that started the backoff afresh because the
/// connection before stayed up at least `stable_after`.
pub const BACKOFF_RESETS: &str = "mirror_reconnect_backoff_resets_total";
/// Histogram, label `stream_id`: how long successful reconnections took, seconds.
pub const RECONNECTION_DURATION: &str = "mirror_reconnect_reconnection_duration_seconds";
/// Counter, labels `stream_id`, `op` (`load`, `save`), `kind`
/// ([`StorageErrorKind::as_str`](crate::restore::StorageErrorKind::as_str)): state-store
/// failures.
pub const STATE_STORE_ERRORS: &str = "mirror_reconnect_state_store_errors_total";
/// Gauge, labels `stream_id`, `state`: 1 for the stream's current state, 0 for the
/// others (see [`StreamState`](crate::metrics::StreamState)).
pub const STREAM_STATE: &str = "mirror_reconnect_stream_state";
/// Gauge, label `stream_id`: how long the current connection has been up, seconds.
pub const CONNECTION_UPTIME: &str = "mirror_reconnect_connection_uptime_seconds";
/// Counter, label `stream_id`: packets received, over all connections.
pub const PACKETS_RECEIVED: &str = "mirror_reconnect_packets_received_total";
/// Counter, label `stream_id`: payload bytes received, over all connections.
pub const BYTES_RECEIVED: &str = "mirror_reconnect_bytes_received_total";
/// Counter, label `stream_id`: bad packets and errors, over all connections.
pub const PACKET_ERRORS: &str = "mirror_reconnect_packet_errors_total";
/// Gauge, label `stream_id`: fraction of packets lost on the current connection.
pub const PACKET_LOSS: &str = "mirror_reconnect_packet_loss_ratio";
/// Gauge, label `stream_id`: round-trip time the protocol reports, seconds.
pub const LATENCY: &str = "mirror_reconnect_latency_seconds";
/// Gauge, label `stream_id`: time since the last packet, seconds.
pub const LAST_PACKET_AGE: &str = "mirror_reconnect_last_packet_age_seconds";
/// Counter, labels `stream_id`, `reason` ([`SwitchReason`](crate::failover::SwitchReason)):
/// switches of a [`Failover`](crate::failover::Failover) between sources.
pub const SOURCE_SWITCHES: &str = "mirror_reconnect_source_switches_total";
/// Gauge, labels `stream_id`, `source`: 1 for the active source of a
/// [`Failover`](crate::failover::Failover), 0 for the others.
pub const ACTIVE_SOURCE: &str = "mirror_reconnect_active_source";
