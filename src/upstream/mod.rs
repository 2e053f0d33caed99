//! Upstream clusters: their endpoints, how one is chosen ([`balancer`]) and how a connection
//! to it is opened with failover ([`connect`]).
//!
//! A [`Cluster`] is part of an immutable routing table; the only things that change under it
//! are per-worker counters. Health checking and outlier ejection are a later issue and will
//! plug into [`balancer::Balancer::pick`].

pub mod balancer;
pub mod connect;
mod hash;
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
}

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub weight: u32,
    pub stats: Arc<EndpointStats>,
}
