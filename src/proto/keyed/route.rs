//! What a Redis or Memcached client connection routes by: the routing table of the moment,
//! its listener's settings, the worker's pipelines to the cluster's servers, and the client's
//! reply queue. Both engines embed a [`Route`] and add their protocol's parsing on top.
//!
//! The table is re-checked once per batch of requests ([`Route::refresh_table`]), so after a
//! reload a connection's next requests follow the new placement.

use std::rc::Rc;

use super::Shards;
use super::replies::Replies;
use crate::config::model::KeyedListener;
use crate::upstream::pipeline::Framing;
use crate::worker::{Accepted, TableRef, Worker};

pub struct Route<F: Framing> {
    pub worker: Rc<Worker>,
    /// The table in use; replaced only with `listener` (`refresh_table`).
    table: Rc<TableRef>,
    /// The client's listener in `table`; its settings are read from there (not copied, so
    /// that a parked client keeps less).
    listener: usize,
    pub cluster: usize,
    shards: Option<Rc<Shards<F>>>,
    /// The worker's pipelines of this protocol.
    registry: fn(&Worker) -> &super::Registry<F>,
    pub replies: Rc<Replies<F::Merge>>,
    /// Picks this client's connection among `server_connections`.
    pub client: u64,
    /// QUIT, an unrecoverable error or the client's EOF: answer what is in flight, then close.
    pub quit: bool,
}

impl<F: Framing> Route<F> {
    pub fn new(
        worker: &Rc<Worker>,
        conn: &Accepted,
        registry: fn(&Worker) -> &super::Registry<F>,
    ) -> Self {
        let l = &conn.table.listeners[conn.listener].config;
        Route {
            worker: worker.clone(),
            table: conn.table.clone(),
            listener: conn.listener,
            cluster: l.cluster,
            shards: None,
            registry,
            replies: Rc::new(Replies::default()),
            client: fastrand::u64(..),
            quit: false,
        }
    }

    /// Adopts a newer routing table if the listener is still in it; returns whether it did.
    pub fn refresh_table(&mut self) -> bool {
        let t = self.worker.table();
        if Rc::ptr_eq(&t, &self.table) {
            return false;
        }
        let listen = self.table.listeners[self.listener].config.listen;
        let Some(i) = t.listener_index(listen) else {
            return false;
        };
        self.cluster = t.listeners[i].config.cluster;
        self.listener = i;
        self.table = t;
        self.shards = None;
        true
    }

    /// The routing table in use.
    pub fn table(&self) -> &TableRef {
        &self.table
    }

    /// The listener's settings, from the table in use.
    pub fn settings(&self) -> &KeyedListener {
        &self.table.listeners[self.listener].config.keyed
    }

    /// Lets go of the shard map (a parked client); [`Route::shards`] fetches it again.
    pub fn forget_shards(&mut self) {
        self.shards = None;
    }

    pub fn shards(&mut self) -> Rc<Shards<F>> {
        if let Some(s) = &self.shards {
            return s.clone();
        }
        let s = (self.registry)(&self.worker).shards(&self.table, self.cluster);
        self.shards = Some(s.clone());
        s
    }

    /// The ring index of the server that owns `key`.
    pub fn locate(&mut self, key: &[u8]) -> usize {
        let shards = self.shards();
        let c = &self.table.clusters[self.cluster];
        let sh = &self.table.config.clusters[self.cluster].sharding;
        shards.locate(c.ring.as_ref(), sh.hash, sh.hash_tag, key)
    }

    /// A reply made by corelane, in its turn.
    pub fn reply(&self, bytes: &[u8]) {
        self.replies.local(|o| o.extend_from_slice(bytes));
    }
}

/// The parts of a command split by server: `parts[p] = (server, indices of its keys)` in order
/// of first appearance, and for each key `(part, index within the part)`.
pub type Split = (Vec<(usize, Vec<usize>)>, Vec<(u32, u32)>);

/// Groups keys (given by their servers, in the client's order) into one part per server.
pub fn split_by_server(servers: &[usize]) -> Split {
    let mut parts: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut order = Vec::with_capacity(servers.len());
    for (k, &s) in servers.iter().enumerate() {
        let p = match parts.iter().position(|(ps, _)| *ps == s) {
            Some(p) => p,
            None => {
                parts.push((s, Vec::new()));
                parts.len() - 1
            }
        };
        order.push((p as u32, parts[p].1.len() as u32));
        parts[p].1.push(k);
    }
    (parts, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_first_appearance() {
        let (parts, order) = split_by_server(&[2, 0, 2, 1, 0]);
        assert_eq!(parts, vec![(2, vec![0, 2]), (0, vec![1, 4]), (1, vec![3])]);
        assert_eq!(order, vec![(0, 0), (1, 0), (0, 1), (2, 0), (1, 1)]);
    }
}
