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
}

/// What a listener speaks. Later protocol engines (http, redis, memcache, mysql) add variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub lb: Option<LbPolicy>,
    pub connect_timeout: Option<String>,
    pub connect_attempts: Option<u32>,
    pub endpoints: Vec<EndpointFile>,
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
}
