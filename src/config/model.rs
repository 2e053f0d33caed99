//! The validated configuration: every value checked, every default applied, every reference
//! resolved. Code past [`super::validate`] reads these types and never re-checks them.
//!
//! This is plain data. Runtime objects built from it (balancers, counters) live in
//! [`super::table`].

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

pub use super::file::{CheckKind, InitialHealth, LbPolicy, LogFormat, Protocol, ReadFrom};
pub use super::http::{HttpCluster, HttpListener};
pub use super::mysql::{MysqlListener, MysqlUser, NoReplica, ReadYourWrites};
pub use super::tls::{TlsListener, UpstreamTls};
pub use crate::shard::{Distribution, HashFn};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub workers: usize,
    pub pin_workers: bool,
    pub shutdown_timeout: Duration,
    pub buffer_size: usize,
    pub admin: AdminConfig,
    pub log: LogConfig,
    /// Sorted by name.
    pub listeners: Vec<ListenerConfig>,
    /// Sorted by name.
    pub clusters: Vec<ClusterConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    /// Where HTTP access logs go; `None`: standard output.
    pub access_log: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    /// Index into [`Config::clusters`].
    pub cluster: usize,
    pub backlog: u32,
    pub max_connections: Option<NonZeroU32>,
    pub idle_timeout: Duration,
    /// TCP (without TLS): park a connection idle this long (`worker::park`); `None`: never.
    pub park_after: Option<Duration>,
    /// Limits and client authentication of the redis and memcache engines.
    pub keyed: KeyedListener,
    /// Routes, limits and timeouts of HTTP listeners (defaults on other listeners).
    pub http: HttpListener,
    /// TLS termination, if configured (paths resolved against the control file's directory).
    pub tls: Option<TlsListener>,
    /// HTTP: log every request (JSON lines).
    pub access_log: bool,
    /// Present on `protocol = "mysql"` listeners only.
    pub mysql: Option<MysqlListener>,
}

/// Settings of a redis or memcache listener (present, and ignored, on TCP listeners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedListener {
    pub auth: Option<String>,
    pub max_pipeline: usize,
    pub max_bulk_len: usize,
    pub max_args: usize,
    pub max_query_buffer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub name: String,
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    /// Distinct endpoints tried for one connection, at least 1, at most the endpoint count.
    pub connect_attempts: usize,
    pub endpoints: Vec<EndpointConfig>,
    pub sharding: Sharding,
    pub health_check: Option<HealthCheck>,
    pub outlier: Option<Outlier>,
    /// Below this percentage of usable endpoints, health is ignored (fail open); 0: never.
    pub panic_threshold: u32,
    /// Used when an HTTP listener forwards to this cluster.
    pub http: HttpCluster,
    /// TLS to the endpoints (HTTP listeners only).
    pub tls: Option<UpstreamTls>,
}

/// An active check of every endpoint of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Each wait is `interval` plus a random part below `jitter`.
    pub jitter: Duration,
    pub rise: u32,
    pub fall: u32,
    pub initial: InitialHealth,
    /// `kind = "http"` only (defaults otherwise).
    pub http: HttpCheck,
    /// `kind = "mysql"` only.
    pub mysql: Option<MysqlCheck>,
}

/// What a `mysql` check logs in with and asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlCheck {
    pub user: String,
    pub password: String,
    /// Check as a replica: `read_only`, and lagging at most this much.
    pub max_replication_lag: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub path: String,
    /// `None`: the endpoint's address.
    pub host: Option<String>,
    /// Empty: any 2xx or 3xx.
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
}

/// Passive ejection of endpoints that fail on the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlier {
    pub consecutive_failures: u32,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
}

/// How a cluster behind redis and memcache listeners places keys and treats its servers, with
/// twemproxy's meanings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharding {
    pub hash: HashFn,
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: Distribution,
    /// Longest wait for one reply before the request is answered with an error.
    pub timeout: Duration,
    /// Connections each worker keeps to each server; requests are pipelined over them.
    pub server_connections: usize,
    pub redis_auth: Option<String>,
    /// Take a failing server off the ring (its keys move) instead of answering errors.
    pub auto_eject_hosts: bool,
    pub server_failure_limit: u32,
    pub server_retry_timeout: Duration,
    pub read_from: ReadFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    pub addr: SocketAddr,
    pub weight: NonZeroU32,
    /// The string that places this server on a ketama ring: its `name`, else twemproxy's
    /// default (`host:port`, or `host` for port 11211).
    pub point_name: String,
    pub replicas: Vec<SocketAddr>,
}

/// Defaults, in one place so README and code agree.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    pub const ADMIN_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    pub const BUFFER_SIZE: usize = 32 * 1024;
    pub const BACKLOG: u32 = 1024;
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    pub const PARK_AFTER: Duration = Duration::from_secs(5);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const CONNECT_ATTEMPTS: u32 = 3;
    pub const LOG_LEVEL: &str = "info";
    pub const MAX_PIPELINE: usize = 1024;
    pub const MAX_BULK_LEN: usize = 64 << 20;
    pub const MAX_ARGS: usize = 1 << 20;
    pub const MAX_QUERY_BUFFER: usize = 1 << 30;
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    pub const SERVER_FAILURE_LIMIT: u32 = 2;
    pub const SERVER_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
    pub const CHECK_RISE: u32 = 2;
    pub const CHECK_FALL: u32 = 3;
    pub const CONSECUTIVE_FAILURES: u32 = 5;
    pub const BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
    pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
    pub const MAX_EJECTION_PERCENT: u32 = 10;
}

/// Bounds enforced by validation.
pub mod limits {
    pub const MAX_WORKERS: usize = 1024;
    pub const MAX_WEIGHT: u32 = 1000;
    pub const MAX_ENDPOINTS: usize = 10_000;
    pub const MAX_CONNECT_ATTEMPTS: u32 = 16;
    pub const MIN_BUFFER: usize = 1024;
    pub const MAX_BUFFER: usize = 1 << 20;
    pub const MAX_NAME_LEN: usize = 64;
    pub const MAX_SERVER_CONNECTIONS: u32 = 64;
    pub const MAX_PIPELINE: u32 = 1 << 16;
    pub const MAX_BULK_LEN: u64 = 512 << 20;
    pub const MAX_ARGS: u32 = 1 << 24;
    pub const MAX_QUERY_BUFFER: u64 = 4 << 30;
    pub const MIN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
    pub const MAX_RISE_FALL: u32 = 100;
    pub const MAX_CONSECUTIVE_FAILURES: u32 = 1000;
}
