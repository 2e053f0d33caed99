//! The routing table: one immutable snapshot of everything the data path reads (listeners,
//! clusters, endpoints, balancers, counters), published through one `ArcSwap` so a worker sees
//! either the whole old table or the whole new one, never half an update.
//!
//! Building a table from a validated [`Config`] hands on the counters of listeners, clusters
//! and endpoints that exist in the previous table (matched by name, and by cluster name and
//! address for endpoints), so a reload does not reset them; an endpoint's health goes with its
//! counters, so a reload never brings a down endpoint back. Building never fails: everything
//! that can be wrong was rejected by validation.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::model::{ClusterConfig, Config, InitialHealth, ListenerConfig};
use crate::metrics::stats::{ClusterStats, EndpointStats, ListenerStats, RouteStats};
use crate::shard::ring::{self, Ring, RingError};
use crate::tls::TlsSet;
use crate::upstream::balancer::Balancer;
use crate::upstream::health::Health;
use crate::upstream::{Cluster, Endpoint};

#[derive(Debug)]
pub struct RoutingTable {
    /// 1 for the table the process started with, +1 for every successful reload.
    pub generation: u64,
    /// The worker count the counters were sized for (fixed for the life of the process).
    pub workers: usize,
    pub config: Config,
    pub listeners: Box<[Listener]>,
    pub clusters: Box<[Cluster]>,
    by_addr: HashMap<SocketAddr, usize>,
}

#[derive(Debug)]
pub struct Listener {
    pub config: ListenerConfig,
    pub stats: Arc<ListenerStats>,
    /// TLS termination, built from this load's certificate files.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP listeners: one per route, in order, then one for requests no route matched.
    pub routes: Box<[Arc<RouteStats>]>,
}

impl RoutingTable {
    pub fn build(
        config: Config,
        generation: u64,
        workers: usize,
        prev: Option<&RoutingTable>,
        tls: &TlsSet,
    ) -> Self {
        let clusters: Box<[Cluster]> = config
            .clusters
            .iter()
            .map(|c| {
                let old = prev.and_then(|p| p.clusters.iter().find(|o| o.name == c.name));
                let initially_up = c
                    .health_check
                    .as_ref()
                    .is_none_or(|h| h.initial == InitialHealth::Healthy);
                let endpoints = c
                    .endpoints
                    .iter()
                    .map(|e| {
                        let kept =
                            old.and_then(|o| o.endpoints.iter().find(|oe| oe.addr == e.addr));
                        Endpoint {
                            addr: e.addr,
                            weight: e.weight.get(),
                            stats: kept.map_or_else(
                                || Arc::new(EndpointStats::new(workers)),
                                |oe| oe.stats.clone(),
                            ),
                            health: kept.map_or_else(
                                || Arc::new(Health::new(initially_up)),
                                |oe| {
                                    if c.outlier.is_none() {
                                        oe.health.end_ejection();
                                    }
                                    oe.health.clone()
                                },
                            ),
                        }
                    })
                    .collect();
                Cluster {
                    name: c.name.clone(),
                    lb: c.lb,
                    connect_timeout: c.connect_timeout,
                    connect_attempts: c.connect_attempts,
                    endpoints,
                    balancer: Balancer::build(c.lb, &c.endpoints, workers),
                    ring: ring_of(c).ok(),
                    stats: old
                        .map_or_else(|| Arc::new(ClusterStats::new(workers)), |o| o.stats.clone()),
                    outlier: c.outlier.clone(),
                    panic_threshold: c.panic_threshold,
                    tls: tls.cluster(&c.name),
                }
            })
            .collect();
        let listeners: Box<[Listener]> = config
            .listeners
            .iter()
            .map(|l| Listener {
                tls: tls.get(&l.name),
                routes: route_stats(l, prev, workers),
                config: l.clone(),
                stats: prev
                    .and_then(|p| p.listeners.iter().find(|o| o.config.name == l.name))
                    .map_or_else(
                        || Arc::new(ListenerStats::new(workers)),
                        |o| o.stats.clone(),
                    ),
            })
            .collect();
        let by_addr = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.config.listen, i))
            .collect();
        RoutingTable {
            generation,
            workers,
            config,
            listeners,
            clusters,
            by_addr,
        }
    }

    /// Index into `listeners` of the listener bound at `addr`, if the table still has one there.
    pub fn listener_index(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// The cluster a listener forwards to.
    pub fn cluster_of(&self, listener: &Listener) -> &Cluster {
        &self.clusters[listener.config.cluster]
    }

    /// The histogram `uid`s of every endpoint, cluster and route in the table (to prune
    /// worker histograms of those that left).
    pub fn histogram_uids(&self) -> HashSet<u64> {
        let endpoints = self
            .clusters
            .iter()
            .flat_map(|c| c.endpoints.iter().map(|e| e.stats.uid));
        let clusters = self.clusters.iter().map(|c| c.stats.uid);
        let routes = self
            .listeners
            .iter()
            .flat_map(|l| l.routes.iter().map(|r| r.uid));
        endpoints.chain(clusters).chain(routes).collect()
    }
}

/// The route counters of an HTTP listener, handed on from `prev` for routes of the same
/// listener and name.
fn route_stats(
    l: &ListenerConfig,
    prev: Option<&RoutingTable>,
    workers: usize,
) -> Box<[Arc<RouteStats>]> {
    if l.protocol != crate::config::model::Protocol::Http {
        return Box::new([]);
    }
    let old = prev.and_then(|p| p.listeners.iter().find(|o| o.config.name == l.name));
    l.http
        .route_names()
        .map(|name| {
            old.and_then(|o| {
                o.config
                    .http
                    .route_names()
                    .position(|n| n == name)
                    .and_then(|i| o.routes.get(i).cloned())
            })
            .unwrap_or_else(|| Arc::new(RouteStats::new(workers)))
        })
        .collect()
}

pub use super::http::DEFAULT_ROUTE;

/// The placement ring of a cluster's endpoints (validation builds it once to check it).
pub fn ring_of(c: &ClusterConfig) -> Result<Ring, RingError> {
    let servers: Vec<ring::Server> = c
        .endpoints
        .iter()
        .map(|e| ring::Server {
            point_name: e.point_name.clone(),
            weight: e.weight.get(),
        })
        .collect();
    Ring::new(&servers, c.sharding.distribution)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const A: &str = r#"
        [listeners.l]
        listen = "127.0.0.1:7001"
        cluster = "c"
        [clusters.c]
        endpoints = [{ addr = "127.0.0.1:9001" }, { addr = "127.0.0.1:9002" }]
    "#;

    #[test]
    fn counters_survive_for_what_stays() {
        let t1 = RoutingTable::build(parse(A).unwrap(), 1, 2, None, &TlsSet::default());
        t1.listeners[0].stats.workers.get(0).accepted.add(3);
        t1.clusters[0].endpoints[0]
            .stats
            .workers
            .get(1)
            .connections
            .add(5);
        let b = A.replace("127.0.0.1:9001", "127.0.0.1:9003");
        let t2 = RoutingTable::build(parse(&b).unwrap(), 2, 2, Some(&t1), &TlsSet::default());
        assert_eq!(t2.listeners[0].stats.workers.sum(|c| &c.accepted), 3);
        let e = |t: &RoutingTable, port: u16| {
            t.clusters[0]
                .endpoints
                .iter()
                .find(|e| e.addr.port() == port)
                .map(|e| e.stats.clone())
        };
        // 9001 left; 9002 stayed and kept its identity; 9003 is new.
        assert!(e(&t2, 9001).is_none());
        assert!(Arc::ptr_eq(&e(&t1, 9002).unwrap(), &e(&t2, 9002).unwrap()));
        assert_eq!(e(&t2, 9003).unwrap().workers.sum(|c| &c.connections), 0);
        assert!(
            t2.listener_index("127.0.0.1:7001".parse().unwrap())
                .is_some()
        );
        assert!(
            t2.listener_index("127.0.0.1:7002".parse().unwrap())
                .is_none()
        );
    }
}
