//! The accept loop of one listener in one worker: accept, apply the listener's connection
//! limit, and hand the connection to the listener's protocol engine as a task of this worker.
//!
//! The listener's settings are looked up in the current routing table at every accept, so a
//! reload that changes them (cluster, timeouts, limits) applies to the next connection without
//! touching the socket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::conns::ConnToken;
use super::{ACCEPT_BACKOFF, TableRef, Worker};
use crate::config::model::Protocol;
use crate::metrics::stats::ListenerStats;
use crate::proto;

/// A connection handed to a protocol engine, with the table it was routed by.
#[derive(Debug)]
pub struct Accepted {
    pub table: Rc<TableRef>,
    /// Index into `table.listeners`.
    pub listener: usize,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    _slot: Option<ListenerSlot>,
    _token: ConnToken,
}

/// An accepted connection without its socket (parked, `worker::park`): it still holds its
/// place under the listener's `max_connections` and in the worker's open connections.
#[derive(Debug)]
pub struct Held {
    pub table: Rc<TableRef>,
    pub listener: usize,
    pub peer: SocketAddr,
    _slot: Option<ListenerSlot>,
    _token: ConnToken,
}

impl Held {
    /// The connection again, with its socket back (a parked connection resuming).
    pub fn rejoin(self, stream: TcpStream) -> Accepted {
        Accepted {
            table: self.table,
            listener: self.listener,
            stream,
            peer: self.peer,
            _slot: self._slot,
            _token: self._token,
        }
    }
}

impl Accepted {
    pub fn split(self) -> (TcpStream, Held) {
        let held = Held {
            table: self.table,
            listener: self.listener,
            peer: self.peer,
            _slot: self._slot,
            _token: self._token,
        };
        (self.stream, held)
    }
}

/// A reserved place under a listener's `max_connections`, given back on drop.
#[derive(Debug)]
struct ListenerSlot(Arc<ListenerStats>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.close();
    }
}

pub async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, addr: SocketAddr) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // ECONNABORTED and the like concern one connection; running out of file
                // descriptors or memory concerns all, so back off before trying again.
                if e.raw_os_error().is_some_and(is_exhaustion) {
                    tracing::warn!(worker = worker.id, %addr, error = %e, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                } else {
                    tracing::debug!(worker = worker.id, %addr, error = %e, "accept failed");
                }
                continue;
            }
        };
        let table = worker.table();
        let Some(index) = table.listener_index(addr) else {
            // The listener left the table and this loop is about to be stopped.
            continue;
        };
        let l = &table.listeners[index];
        let counters = l.stats.workers.get(worker.id);
        counters.accepted.inc();
        let slot = match l.config.max_connections {
            None => None,
            Some(max) if l.stats.try_open(u64::from(max.get())) => {
                Some(ListenerSlot(l.stats.clone()))
            }
            Some(_) => {
                counters.rejected.inc();
                tracing::debug!(listener = %l.config.name, %peer, "max_connections reached; closing");
                continue;
            }
        };
        let protocol = l.config.protocol;
        let accepted = Accepted {
            listener: index,
            stream,
            peer,
            _slot: slot,
            _token: worker.conns.token(),
            table,
        };
        match protocol {
            Protocol::Tcp => {
                tokio::task::spawn_local(proto::tcp::serve(worker.clone(), accepted));
            }
            Protocol::Redis => {
                tokio::task::spawn_local(proto::redis::session::serve(worker.clone(), accepted));
            }
            Protocol::Memcache => {
                tokio::task::spawn_local(proto::memcache::session::serve(worker.clone(), accepted));
            }
            Protocol::Http if accepted.table.listeners[accepted.listener].tls.is_some() => {
                tokio::task::spawn_local(proto::http::serve_tls(worker.clone(), accepted));
            }
            Protocol::Http => {
                tokio::task::spawn_local(proto::http::serve(worker.clone(), accepted));
            }
            Protocol::Mysql => {
                tokio::task::spawn_local(proto::mysql::session::serve(worker.clone(), accepted));
            }
        }
    }
}

fn is_exhaustion(errno: i32) -> bool {
    use nix::errno::Errno;
    [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM].contains(&Errno::from_raw(errno))
}
