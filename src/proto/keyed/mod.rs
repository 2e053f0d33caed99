//! What the key-sharding engines (Redis, Memcached) share: a client's ordered reply queue
//! ([`replies`]) and each worker's pipelined connections to the servers of each cluster
//! ([`Shards`], [`Registry`]).
//!
//! A worker keeps one set of pipelines per server address (times `server_connections`) for as
//! long as some table names that server: a reload that keeps a server keeps its connections,
//! and a reload that drops it retires them once their requests are answered. Client sessions
//! take an `Rc<Shards>` for the table they route by and re-take it when the table changes.

pub mod replies;
pub mod session;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::upstream::pipeline::{Framing, Pipeline, Settings};
use crate::worker::TableRef;

/// The pipelines of one cluster's servers, in ring order, for one table generation.
#[derive(Debug)]
pub struct Shards<F: Framing> {
    /// `servers[i][c]`: connection `c` to the primary of ring server `i`.
    pub primaries: Vec<Vec<Rc<Pipeline<F>>>>,
    /// `replicas[i]`: one pipeline per replica of ring server `i` (connection 0 only).
    pub replicas: Vec<Vec<Rc<Pipeline<F>>>>,
}

impl<F: Framing> Shards<F> {
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
}

impl<F: Framing> Registry<F> {
    pub fn new(hello: fn(&crate::config::model::Sharding) -> Option<Vec<u8>>) -> Self {
        Registry {
            pipes: RefCell::new(HashMap::new()),
            views: RefCell::new(Views {
                table: None,
                clusters: Vec::new(),
            }),
            hello,
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
        let settings = Settings {
            connect_timeout: c.connect_timeout,
            timeout: cfg.sharding.timeout,
            hello: (self.hello)(&cfg.sharding),
        };
        let auth = cfg.sharding.redis_auth.clone();
        let pipe = |addr: SocketAddr, conn: usize| {
            self.pipes
                .borrow_mut()
                .entry((addr, conn, auth.clone()))
                .and_modify(|p| p.update(settings.clone()))
                .or_insert_with(|| Pipeline::new(addr, settings.clone()))
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
