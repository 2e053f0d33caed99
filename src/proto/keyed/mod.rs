//! What the key-sharding engines (Redis, Memcached) share: a client's ordered reply queue
//! ([`replies`]) and each worker's pipelined connections to the servers of each cluster
//! ([`Shards`], [`Registry`]).
//!
//! A worker keeps one set of pipelines per server address (times `server_connections`) for as
//! long as some table names that server: a reload that keeps a server keeps its connections,
//! and a reload that drops it retires them once their requests are answered. Client sessions
//! take an `Rc<Shards>` for the table they route by and re-take it when the table changes.
//!
//! Health: a server whose active check fails is treated as twemproxy treats an ejected one.
//! With `auto_eject_hosts` it leaves the ring (only its keys move, to the next server, and
//! they come back when it does); without, its keys stay and their requests get an error at
//! once (`upstream::pipeline`).

pub mod replies;
pub mod route;
pub mod session;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;

use crate::config::model::Distribution;
use crate::shard::HashFn;
use crate::shard::ring::{self, Ring};
use crate::upstream::health::{self, Health};
use crate::upstream::pipeline::{Framing, Pipeline, Settings};
use crate::worker::TableRef;

/// The pipelines of one cluster's servers, in ring order, for one table generation.
#[derive(Debug)]
pub struct Shards<F: Framing> {
    /// `servers[i][c]`: connection `c` to the primary of ring server `i`.
    pub primaries: Vec<Vec<Rc<Pipeline<F>>>>,
    /// `replicas[i]`: one pipeline per replica of ring server `i` (connection 0 only).
    pub replicas: Vec<Vec<Rc<Pipeline<F>>>>,
    /// `auto_eject_hosts`: the ring over the servers not ejected, rebuilt when that changes.
    eject: Option<Eject>,
}

#[derive(Debug)]
struct Eject {
    servers: Vec<ring::Server>,
    /// The servers' health, in ring order: a server whose active check fails is off the ring.
    health: Vec<Arc<Health>>,
    distribution: Distribution,
    epoch: Rc<Cell<u64>>,
    live: RefCell<Live>,
}

/// The ring of the live servers (`None`: all are live, the table's ring serves), the epoch it
/// was built at, and when the next ejected server comes back.
#[derive(Debug, Default)]
struct Live {
    epoch: u64,
    health_epoch: u64,
    built: bool,
    ring: Option<(Ring, Vec<usize>)>,
    next_return: Option<Instant>,
}

impl<F: Framing> Shards<F> {
    /// The server for `key`: on `ring` (the table's), or, when `auto_eject_hosts` has taken
    /// servers out, on the ring of the others (as twemproxy rebuilds its continuum).
    pub fn locate(
        &self,
        ring: Option<&Ring>,
        hash: HashFn,
        tag: Option<[u8; 2]>,
        key: &[u8],
    ) -> usize {
        let Some(ring) = ring else { return 0 };
        let Some(e) = &self.eject else {
            return ring.locate(hash, tag, key);
        };
        let mut live = e.live.borrow_mut();
        let stale = !live.built
            || live.epoch != e.epoch.get()
            || live.health_epoch != health::EPOCH.load(Relaxed)
            || live.next_return.is_some_and(|t| Instant::now() >= t);
        if stale {
            *live = self.live_ring(e);
        }
        match &live.ring {
            Some((r, map)) => map[r.locate(hash, tag, key)],
            None => ring.locate(hash, tag, key),
        }
    }

    fn live_ring(&self, e: &Eject) -> Live {
        let now = Instant::now();
        let health_epoch = health::EPOCH.load(Relaxed);
        let mut next_return: Option<Instant> = None;
        let mut map = Vec::new();
        for (i, conns) in self.primaries.iter().enumerate() {
            match conns.iter().filter_map(|p| p.ejected(now)).max() {
                Some(t) => next_return = Some(next_return.map_or(t, |n| n.min(t))),
                None if e.health[i].is_up() => map.push(i),
                None => {}
            }
        }
        let ring = if map.len() == e.servers.len() || map.is_empty() {
            // All live: the table's ring. None live: keep it too; requests get errors.
            None
        } else {
            let servers: Vec<ring::Server> = map.iter().map(|&i| e.servers[i].clone()).collect();
            Ring::new(&servers, e.distribution).ok().map(|r| (r, map))
        };
        Live {
            epoch: e.epoch.get(),
            health_epoch,
            built: true,
            ring,
            next_return,
        }
    }

    /// The connection a client (by its number) uses to the primary of server `i`: always the
    /// same one, so one client's requests to one server stay in order.
    pub fn primary(&self, i: usize, client: u64) -> &Rc<Pipeline<F>> {
        let conns = &self.primaries[i];
        &conns[(client % conns.len() as u64) as usize]
    }

    /// A replica of server `i` for this client that is not in its backoff, if any.
    pub fn replica(&self, i: usize, client: u64) -> Option<&Rc<Pipeline<F>>> {
        let r = &self.replicas[i];
        if r.is_empty() {
            return None;
        }
        let start = (client % r.len() as u64) as usize;
        (0..r.len())
            .map(|k| &r[(start + k) % r.len()])
            .find(|p| !p.is_down())
    }
}

type Key = (SocketAddr, usize, Option<String>);

/// The shards built so far for the table in use, by cluster index.
#[derive(Debug)]
struct Views<F: Framing> {
    table: Option<Rc<TableRef>>,
    clusters: Vec<Option<Rc<Shards<F>>>>,
}

/// A worker's pipelines for one protocol.
#[derive(Debug)]
pub struct Registry<F: Framing> {
    pipes: RefCell<HashMap<Key, Rc<Pipeline<F>>>>,
    views: RefCell<Views<F>>,
    /// Sent first on each new connection, from the cluster settings (Redis AUTH).
    hello: fn(&crate::config::model::Sharding) -> Option<Vec<u8>>,
    /// Bumped when a server of this worker is ejected or returns.
    epoch: Rc<Cell<u64>>,
    worker: usize,
}

impl<F: Framing> Registry<F> {
    pub fn new(
        worker: usize,
        hello: fn(&crate::config::model::Sharding) -> Option<Vec<u8>>,
    ) -> Self {
        Registry {
            pipes: RefCell::new(HashMap::new()),
            views: RefCell::new(Views {
                table: None,
                clusters: Vec::new(),
            }),
            hello,
            epoch: Rc::new(Cell::new(0)),
            worker,
        }
    }

    /// The shards of cluster `cluster` of `table`.
    pub fn shards(&self, table: &Rc<TableRef>, cluster: usize) -> Rc<Shards<F>> {
        let mut views = self.views.borrow_mut();
        if !views.table.as_ref().is_some_and(|t| Rc::ptr_eq(t, table)) {
            self.retire_missing(table);
            *views = Views {
                table: Some(table.clone()),
                clusters: vec![None; table.clusters.len()],
            };
        }
        if let Some(Some(s)) = views.clusters.get(cluster) {
            return s.clone();
        }
        let s = Rc::new(self.build(table, cluster));
        if let Some(slot) = views.clusters.get_mut(cluster) {
            *slot = Some(s.clone());
        }
        s
    }

    fn build(&self, table: &TableRef, cluster: usize) -> Shards<F> {
        let c = &table.clusters[cluster];
        let cfg = &table.config.clusters[cluster];
        let sh = &cfg.sharding;
        let settings = Settings {
            connect_timeout: c.connect_timeout,
            timeout: sh.timeout,
            hello: (self.hello)(sh),
            eject: sh
                .auto_eject_hosts
                .then_some((sh.server_failure_limit, sh.server_retry_timeout)),
            stats: None,
            health: None,
        };
        let auth = cfg.sharding.redis_auth.clone();
        let pipe = |addr: SocketAddr, conn: usize| {
            let endpoint = c.endpoints.iter().find(|e| e.addr == addr);
            let settings = Settings {
                stats: endpoint.map(|e| e.stats.clone()),
                health: endpoint.map(|e| e.health.clone()),
                ..settings.clone()
            };
            self.pipes
                .borrow_mut()
                .entry((addr, conn, auth.clone()))
                .and_modify(|p| p.update(settings.clone()))
                .or_insert_with(|| {
                    Pipeline::new(addr, settings.clone(), self.epoch.clone(), self.worker)
                })
                .clone()
        };
        let n = cfg.sharding.server_connections;
        Shards {
            primaries: cfg
                .endpoints
                .iter()
                .map(|e| (0..n).map(|k| pipe(e.addr, k)).collect())
                .collect(),
            replicas: cfg
                .endpoints
                .iter()
                .map(|e| e.replicas.iter().map(|&r| pipe(r, 0)).collect())
                .collect(),
            eject: sh.auto_eject_hosts.then(|| Eject {
                health: c.endpoints.iter().map(|e| e.health.clone()).collect(),
                servers: cfg
                    .endpoints
                    .iter()
                    .map(|e| ring::Server {
                        point_name: e.point_name.clone(),
                        weight: e.weight.get(),
                    })
                    .collect(),
                distribution: sh.distribution,
                epoch: self.epoch.clone(),
                live: RefCell::new(Live::default()),
            }),
        }
    }

    /// Retires the pipelines to servers that `table` no longer has.
    fn retire_missing(&self, table: &TableRef) {
        let mut pipes = self.pipes.borrow_mut();
        pipes.retain(|(addr, conn, auth), p| {
            let kept = table.config.clusters.iter().any(|c| {
                c.sharding.redis_auth == *auth
                    && *conn < c.sharding.server_connections
                    && c.endpoints
                        .iter()
                        .any(|e| e.addr == *addr || e.replicas.contains(addr))
            });
            if !kept {
                p.retire();
            }
            kept
        });
    }
}
