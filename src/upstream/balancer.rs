//! Upstream selection: which endpoint of a cluster gets the next connection.
//!
//! Selection is split as Pingora splits it: [`Balancer::build`] runs off the data path when a
//! routing table is built (schedules, rings, tables), and [`Balancer::pick`] runs per
//! connection, reading only immutable data plus the calling worker's own slots (its round
//! robin cursor, its per-endpoint active counts). Workers therefore balance their own
//! connections independently, as nginx workers and Envoy threads do.
//!
//! `pick` takes the endpoints already tried for this connection and returns another one, so
//! failover after a refused connect follows each policy's own order (the next in the
//! schedule, the next point on the ring). Endpoints that their [`Health`] says are down or
//! ejected are skipped the same way, unless the caller asks to ignore health (panic mode).
//!
//! [`Health`]: super::health::Health

use std::collections::HashMap;
use std::net::SocketAddr;

use pingora_ketama::{Bucket, Continuum, DEFAULT_POINT_MULTIPLE};

use super::Endpoint;
use super::maglev::Maglev;
use super::wrr;
use crate::config::model::{EndpointConfig, LbPolicy};
use crate::metrics::counters::{Counter, PerWorker};

#[derive(Debug)]
pub enum Balancer {
    RoundRobin {
        order: Box<[u32]>,
        cursor: PerWorker<Counter>,
    },
    LeastConn {
        cursor: PerWorker<Counter>,
    },
    P2c,
    Ketama {
        ring: Ring,
        points: usize,
        index: HashMap<SocketAddr, usize>,
    },
    Maglev(Maglev),
}

impl Balancer {
    pub fn build(policy: LbPolicy, endpoints: &[EndpointConfig], workers: usize) -> Self {
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight.get()).collect();
        match policy {
            LbPolicy::RoundRobin => {
                let order = wrr::schedule(&weights);
                // Start each worker at a different point of the schedule so that the first
                // connections of all workers together are spread too.
                let cursor = PerWorker::<Counter>::new(workers);
                for w in 0..workers {
                    cursor.get(w).add((w * order.len() / workers.max(1)) as u64);
                }
                Balancer::RoundRobin {
                    order: order.into_boxed_slice(),
                    cursor,
                }
            }
            LbPolicy::LeastConn => {
                let cursor = PerWorker::<Counter>::new(workers);
                for w in 0..workers {
                    cursor.get(w).add(w as u64);
                }
                Balancer::LeastConn { cursor }
            }
            LbPolicy::P2c => Balancer::P2c,
            LbPolicy::Ketama => {
                let buckets: Vec<Bucket> = endpoints
                    .iter()
                    .map(|e| Bucket::new(e.addr, e.weight.get()))
                    .collect();
                let points = weights.iter().map(|w| *w as usize).sum::<usize>()
                    * DEFAULT_POINT_MULTIPLE as usize;
                Balancer::Ketama {
                    ring: Ring(Continuum::new(&buckets)),
                    points,
                    index: endpoints
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.addr, i))
                        .collect(),
                }
            }
            LbPolicy::Maglev => {
                let names: Vec<String> = endpoints.iter().map(|e| e.addr.to_string()).collect();
                Balancer::Maglev(Maglev::new(&names, &weights))
            }
        }
    }

    /// Whether [`Self::pick`] uses the hash key (so callers build it only when needed).
    pub fn uses_key(&self) -> bool {
        matches!(self, Balancer::Ketama { .. } | Balancer::Maglev(_))
    }

    /// The next endpoint (index into `endpoints`) for `worker`, not among `tried` and, when
    /// `healthy_only`, usable by its health; `None` when there is none.
    pub fn pick(
        &self,
        endpoints: &[Endpoint],
        worker: usize,
        key: &[u8],
        tried: &[usize],
        healthy_only: bool,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 || tried.len() >= n {
            return None;
        }
        let skip = |i: usize| tried.contains(&i) || (healthy_only && !endpoints[i].health.usable());
        match self {
            Balancer::RoundRobin { order, cursor } => {
                let c = cursor.get(worker);
                for _ in 0..order.len() {
                    let i = order[(c.get() % order.len() as u64) as usize] as usize;
                    c.inc();
                    if !skip(i) {
                        return Some(i);
                    }
                }
                None
            }
            Balancer::LeastConn { cursor } => {
                let c = cursor.get(worker);
                let start = (c.get() % n as u64) as usize;
                c.inc();
                least_loaded(endpoints, worker, (0..n).map(|k| (start + k) % n), skip)
            }
            Balancer::P2c => {
                if n >= 2 {
                    let a = fastrand::usize(..n);
                    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                    if let Some(i) = least_loaded(endpoints, worker, [a, b].into_iter(), skip) {
                        return Some(i);
                    }
                }
                least_loaded(endpoints, worker, 0..n, skip)
            }
            // The next point of the ring that is not skipped: only the keys of a skipped
            // endpoint move, and they move back when it returns.
            Balancer::Ketama {
                ring,
                points,
                index,
            } => ring
                .0
                .node_iter(key)
                .take(*points)
                .filter_map(|addr| index.get(addr).copied())
                .find(|i| !skip(*i)),
            Balancer::Maglev(m) => m.pick(key, skip),
        }
    }
}

/// pingora's ring, which does not implement `Debug`.
pub struct Ring(Continuum);

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ring")
    }
}

/// The candidate with the fewest active connections relative to its weight; the first of
/// equals wins, so rotating `candidates` rotates ties.
fn least_loaded(
    endpoints: &[Endpoint],
    worker: usize,
    candidates: impl Iterator<Item = usize>,
    skip: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    for i in candidates {
        if skip(i) {
            continue;
        }
        let e = &endpoints[i];
        let load = e.stats.workers.get(worker).active.get();
        let weight = u64::from(e.weight);
        // load/weight < best_load/best_weight, without division.
        let better = match best {
            None => true,
            Some((_, bl, bw)) => {
                u128::from(load) * u128::from(bw) < u128::from(bl) * u128::from(weight)
            }
        };
        if better {
            best = Some((i, load, weight));
        }
    }
    best.map(|(i, _, _)| i)
}
