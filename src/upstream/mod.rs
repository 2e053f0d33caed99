//! Upstream clusters: their endpoints, how one is chosen ([`balancer`]) and how a connection
//! to it is opened with failover ([`connect`]).
//!
//! A [`Cluster`] is part of an immutable routing table; the only things that change under it
//! are per-worker counters and each endpoint's [`health::Health`], which
//! [`balancer::Balancer::pick`] consults.

pub mod balancer;
pub mod connect;
mod hash;
pub mod health;
pub mod maglev;
pub mod pipeline;
mod wrr;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::model::LbPolicy;
use crate::metrics::stats::{ClusterStats, EndpointStats};

#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    pub lb: LbPolicy,
    pub connect_timeout: Duration,
    pub connect_attempts: usize,
    pub endpoints: Box<[Endpoint]>,
    pub balancer: balancer::Balancer,
    /// Key placement for redis and memcache listeners (twemproxy-compatible); `None` only if
    /// the servers cannot form a ring, which validation rejects.
    pub ring: Option<crate::shard::ring::Ring>,
    pub stats: Arc<ClusterStats>,
    pub outlier: Option<crate::config::model::Outlier>,
    pub panic_threshold: u32,
    /// TLS to the endpoints (HTTP listeners).
    pub tls: Option<crate::tls::client::ClusterTls>,
}

impl Cluster {
    /// Whether health is to be ignored because too few endpoints are usable (Envoy's panic
    /// mode). Counts only when a threshold is set: O(endpoints) per call.
    pub fn panicking(&self) -> bool {
        if self.panic_threshold == 0 {
            return false;
        }
        let usable = self.endpoints.iter().filter(|e| e.health.usable()).count();
        usable * 100 < self.panic_threshold as usize * self.endpoints.len()
    }

    /// Reports a data-path failure of `endpoints[i]` to the outlier detector, if configured.
    pub fn failed(&self, i: usize, why: &str) {
        if let Some(o) = &self.outlier {
            if self.endpoints[i].health.failure(o, &self.endpoints, why) {
                tracing::warn!(cluster = %self.name, endpoint = %self.endpoints[i].addr, "endpoint ejected");
            }
        }
    }

    /// Reports a data-path success of `endpoints[i]`.
    pub fn succeeded(&self, i: usize) {
        if self.outlier.is_some() {
            self.endpoints[i].health.success();
        }
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    pub stats: Arc<EndpointStats>,
    pub health: Arc<health::Health>,
}
