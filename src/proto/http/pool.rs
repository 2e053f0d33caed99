//! Each worker's keep-alive connections to HTTP upstreams, per endpoint: a request takes the
//! most recently used idle connection (LIFO keeps few connections warm and lets the rest time
//! out), or opens a new one; the response body gives it back when it ends.
//!
//! A pooled connection is dropped when it has been idle longer than the cluster's
//! `pool_idle_timeout`, when the pool already holds `pool_max_idle` for that endpoint, or when
//! the upstream has closed it. Nothing here is shared between workers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::RequestBody;
use super::io::{Io, UpstreamSide};
use crate::metrics::stats::EndpointStats;
use crate::tls::client::ClusterTls;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

pub type Sender = SendRequest<RequestBody>;

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// One worker's idle upstream connections, by endpoint (its stats `uid`).
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<HashMap<u64, Vec<Idle>>>,
}

impl Pool {
    /// An idle connection to endpoint `uid` that is still open and was used within `max_age`.
    pub fn checkout(&self, uid: u64, max_age: Duration) -> Option<Sender> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&uid)?;
        let now = Instant::now();
        while let Some(i) = list.pop() {
            if !i.sender.is_closed() && now.duration_since(i.since) < max_age {
                return Some(i.sender);
            }
        }
        None
    }

    fn put(&self, uid: u64, sender: Sender, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(uid).or_default();
        if list.len() < max_idle {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Idle connections held now (all endpoints).
    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// A connection in use, to be given back when its response has been read.
#[derive(Debug)]
pub struct Checkin {
    pub pool: Rc<Pool>,
    pub uid: u64,
    pub sender: Sender,
    pub max_idle: usize,
}

impl Checkin {
    pub fn give_back(self) {
        self.pool.put(self.uid, self.sender, self.max_idle);
    }
}

/// Opens a connection to `addr` (over TLS when the cluster has `tls`) and starts its hyper
/// connection task on this worker. The endpoint's `active` gauge counts it while it lives.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&ClusterTls>,
    stats: Arc<EndpointStats>,
    worker: usize,
) -> Result<Sender, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".to_owned()),
    };
    let _ = stream.set_nodelay(true);
    let io = Io {
        stream: Arc::new(stream),
        counted: UpstreamSide(stats.clone(), worker),
    };
    match tls {
        None => start(TokioIo::new(io), addr, stats, worker).await,
        Some(t) => {
            let name = t
                .server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
            let handshake = TlsConnector::from(t.config.clone()).connect(name, io);
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(s)) => start(TokioIo::new(s), addr, stats, worker).await,
                Ok(Err(e)) => Err(format!("TLS: {e}")),
                Err(_) => Err("TLS handshake timed out".to_owned()),
            }
        }
    }
}

/// The HTTP/1.1 handshake on an open connection, and its connection task.
async fn start<I>(
    io: I,
    addr: SocketAddr,
    stats: Arc<EndpointStats>,
    worker: usize,
) -> Result<Sender, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let counters = stats.workers.get(worker);
    counters.connections.inc();
    counters.active.inc();
    tokio::task::spawn_local(async move {
        // With upgrades: a 101 response hands the socket over to a tunnel.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
        }
        stats.workers.get(worker).active.dec();
    });
    Ok(sender)
}
