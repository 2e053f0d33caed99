//! The control file's schema: what serde reads from TOML, before any checking.
//!
//! Every table denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Values that need parsing with a helpful message (addresses, durations) are kept as
//! strings here and converted in [`super::validate`], which knows the key path to report.
//! Listeners and clusters are TOML tables keyed by name (`[listeners.web]`), so a duplicated
//! name is rejected by the TOML parser itself.
//!
//! This module does not apply defaults or cross-check references; see [`super::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::http::{HeaderRulesFile, RouteFile};
pub use super::tls::{TlsFile, UpstreamTlsFile};
pub use crate::shard::{Distribution, HashFn};

/// The whole control file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Worker threads; default: the number of cores available to the process.
    pub workers: Option<usize>,
    /// Pin worker `i` to the `i`-th allowed core.
    pub pin_workers: Option<bool>,
    /// How long SIGTERM waits for open connections before exiting.
    pub shutdown_timeout: Option<String>,
    /// Size in bytes of each I/O buffer taken from a worker's pool while bytes are in flight.
    pub buffer_size: Option<usize>,
    pub admin: Option<AdminFile>,
    pub log: Option<LogFile>,
    #[serde(default)]
    pub listeners: BTreeMap<String, ListenerFile>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
    /// Where HTTP access logs go (listeners with `access_log = true`); default: stdout.
    pub access_log: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub listen: String,
    pub protocol: Option<Protocol>,
    pub cluster: String,
    pub backlog: Option<u32>,
    pub max_connections: Option<u32>,
    pub idle_timeout: Option<String>,
    /// TCP: idle time after which a connection's sockets are parked (`worker::park`);
    /// `"0s"`: never.
    pub park_after: Option<String>,
    /// Redis: the password clients must send with AUTH before any other command.
    pub auth: Option<String>,
    /// Redis and Memcached: requests a client may have in flight before corelane stops
    /// reading from it.
    pub max_pipeline: Option<u32>,
    /// Redis: longest bulk string; Memcached: longest value.
    pub max_bulk_len: Option<u64>,
    /// Redis: most arguments in one command; Memcached: most keys in one retrieval.
    pub max_args: Option<u32>,
    /// Redis: most bytes of one unfinished command held for a client (Redis'
    /// `client-query-buffer-limit`).
    pub max_query_buffer: Option<u64>,
    // HTTP listeners (see `config::http`).
    pub header_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub total_timeout: Option<String>,
    pub max_header_size: Option<u64>,
    pub max_headers: Option<u32>,
    pub max_body: Option<u64>,
    pub fast_path: Option<bool>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub http2_stream_window: Option<u32>,
    pub http2_connection_window: Option<u32>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    pub request_headers: Option<HeaderRulesFile>,
    pub response_headers: Option<HeaderRulesFile>,
    /// TLS termination (tcp, http and mysql listeners).
    pub tls: Option<TlsFile>,
    /// HTTP: one JSON line per request (see `[log] access_log`).
    pub access_log: Option<bool>,
    /// MySQL listeners: users, replicas, read-your-writes (see `config::mysql`).
    pub mysql: Option<super::mysql::MysqlListenerFile>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Bytes forwarded both ways to one endpoint chosen per connection.
    #[default]
    Tcp,
    /// RESP2 commands, each sent to the shard that owns its key.
    Redis,
    /// memcached ASCII commands, each sent to the server that owns its key.
    Memcache,
    /// HTTP/1.1 and HTTP/2 (h2c), each request routed and forwarded on its own.
    Http,
    /// MySQL/MariaDB client protocol, each statement routed to the primary or a replica.
    Mysql,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub lb: Option<LbPolicy>,
    pub connect_timeout: Option<String>,
    pub connect_attempts: Option<u32>,
    pub endpoints: Vec<EndpointFile>,
    // Key placement and server handling for redis and memcache listeners, named after
    // twemproxy's pool settings.
    pub hash: Option<HashFn>,
    pub hash_tag: Option<String>,
    pub distribution: Option<Distribution>,
    pub timeout: Option<String>,
    pub server_connections: Option<u32>,
    pub redis_auth: Option<String>,
    pub auto_eject_hosts: Option<bool>,
    pub server_failure_limit: Option<u32>,
    pub server_retry_timeout: Option<String>,
    pub read_from: Option<ReadFrom>,
    // Health.
    /// Active checks of every endpoint, run by the control plane.
    pub health_check: Option<HealthCheckFile>,
    /// Passive checks: eject endpoints that fail on the data path.
    pub outlier: Option<OutlierFile>,
    /// Percent of usable endpoints under which health is ignored (fail open); 0 never does.
    pub panic_threshold: Option<u32>,
    // HTTP (see `config::http`).
    pub response_timeout: Option<String>,
    pub pool_max_idle: Option<u32>,
    pub pool_idle_timeout: Option<String>,
    pub hash_on: Option<String>,
    /// `http1` (default) or `h2`.
    pub upstream_protocol: Option<super::http::UpstreamProtocol>,
    /// TLS to the endpoints (HTTP listeners).
    pub tls: Option<UpstreamTlsFile>,
}

/// `[clusters.NAME.health_check]`: an active check of each endpoint (HAProxy's defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    pub kind: CheckKind,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// Each wait is `interval` plus a random part of up to `jitter`.
    pub jitter: Option<String>,
    /// Passing checks in a row that bring an endpoint up.
    pub rise: Option<u32>,
    /// Failing checks in a row that take an endpoint down.
    pub fall: Option<u32>,
    /// Health of an endpoint that appears (at start or on reload) before its first checks.
    pub initial: Option<InitialHealth>,
    // kind = "http" only.
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub expect_body: Option<String>,
    // kind = "mysql" only.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Check as a replica: `read_only`, and `Seconds_Behind_Master` at most this.
    pub max_replication_lag: Option<String>,
}

/// What an active check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 request; the status (and optionally the body) is checked.
    Http,
    /// `PING` (after `AUTH` when the cluster has `redis_auth`), expecting `+PONG`.
    Redis,
    /// `version`, expecting `VERSION ...`.
    Memcache,
    /// Log in (`mysql_native_password`), `SELECT 1`; for replicas also `read_only` and lag.
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialHealth {
    #[default]
    Healthy,
    Unhealthy,
}

/// `[clusters.NAME.outlier]`: passive ejection (Envoy's outlier detection).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    /// Failures in a row (connect errors and timeouts, resets before any reply) that eject.
    pub consecutive_failures: Option<u32>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_time: Option<String>,
    /// Most endpoints of the cluster ejected at once, in percent (one may always be).
    pub max_ejection_percent: Option<u32>,
}

/// Where a Redis shard's read-only commands go when the shard has replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Every command goes to the primary (replicas are ignored).
    #[default]
    Primary,
    /// Reads go to a replica, or to the primary when no replica is reachable.
    PreferReplica,
    /// Reads go to a replica only; an unreachable replica is an error.
    Replica,
}

/// Upstream selection policy of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Smooth weighted round robin (nginx's algorithm); plain rotation when weights are equal.
    #[default]
    RoundRobin,
    /// Fewest active connections relative to weight; ties rotate.
    LeastConn,
    /// Power of two random choices: the less loaded of two random endpoints.
    P2c,
    /// Consistent hashing with nginx-compatible placement (`hash $remote_addr consistent`).
    Ketama,
    /// Maglev consistent hashing (Google's lookup table).
    Maglev,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    pub addr: String,
    pub weight: Option<u32>,
    /// Sharded clusters: the name that places keys on the ring (twemproxy's server name).
    pub name: Option<String>,
    /// Redis: replicas of this shard, for read-only commands (see `read_from`).
    #[serde(default)]
    pub replicas: Vec<String>,
}
