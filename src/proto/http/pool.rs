//! Each worker's connections to HTTP upstreams, per endpoint.
//!
//! HTTP/1.1: a request takes the most recently used idle connection (LIFO keeps few
//! connections warm and lets the rest time out), or opens a new one; the response body gives
//! it back when it ends. A pooled connection is dropped when it has been idle longer than the
//! cluster's `pool_idle_timeout`, when the pool already holds `pool_max_idle` for that
//! endpoint, or when the upstream has closed it.
//!
//! The fast path's HTTP/1.1 connections (`super::h1`, plain or TLS) are pooled the same way,
//! in their own lists: they are sockets (or TLS streams), not hyper connections. Requests
//! hyper serves use them too, unless their body is large or of unknown length
//! (`super::h1::bridge`), so an HTTP/1.1 cluster sees one pool per worker whichever path a
//! request took; only such uploads and upgrades use hyper's connections here.
//!
//! HTTP/2 (`upstream_protocol = "h2"`): one connection per endpoint per worker carries every
//! request of that worker as streams; it is replaced when it closes.
//!
//! Nothing here is shared between workers.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::{BodyState, RequestBody};
use super::h1::UpConn;
use super::io::{Io, UpstreamSide};
use crate::metrics::stats::EndpointStats;
use crate::tls::client::ClusterTls;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// A request sender on an upstream connection.
#[derive(Debug)]
pub enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends `req`; if it could not be written at all, the error gives it back.
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match self {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// One worker's upstream connections, by endpoint (its stats `uid` and the connection kind).
#[derive(Debug, Default)]
pub struct Pool {
    /// Per endpoint, oldest first: requests take from the back (LIFO), pruning takes stale
    /// connections from the front.
    idle: RefCell<HashMap<u64, VecDeque<Idle>>>,
    shared: RefCell<HashMap<u64, http2::SendRequest<RequestBody>>>,
    /// HTTP/2 connections being opened, so other requests wait for them instead of opening
    /// more.
    opening: RefCell<HashMap<u64, Rc<tokio::sync::Notify>>>,
    /// The fast path's idle connections, per endpoint, oldest first (as `idle`), each with
    /// the time it expires (`pool_idle_timeout` after it was given back).
    h1: RefCell<HashMap<u64, VecDeque<(UpConn, Instant)>>>,
}

impl Pool {
    /// A connection to endpoint `uid` that is still open: its HTTP/2 connection, or an idle
    /// HTTP/1.1 one used within `max_age`.
    pub fn checkout(&self, uid: u64, max_age: Duration) -> Option<Sender> {
        if let Some(s) = self.shared.borrow().get(&uid) {
            if !s.is_closed() {
                return Some(Sender::H2(s.clone()));
            }
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&uid)?;
        let now = Instant::now();
        while let Some(i) = list.pop_back() {
            if !i.sender.is_closed() && now.duration_since(i.since) < max_age {
                return Some(Sender::H1(i.sender));
            }
        }
        None
    }

    /// An idle fast-path connection to endpoint `uid`, used within `max_age` and still open.
    pub fn checkout_h1(&self, uid: u64) -> Option<UpConn> {
        let mut idle = self.h1.borrow_mut();
        let list = idle.get_mut(&uid)?;
        let now = Instant::now();
        while let Some((mut c, expires)) = list.pop_back() {
            if now < expires && c.still_open() {
                return Some(c);
            }
        }
        None
    }

    /// Drops the fast path's idle connections that expired or were closed by their
    /// upstream (so none lingers half-closed, counted as active, after its endpoint went
    /// quiet or was removed by a reload); forgets endpoints with none left.
    pub fn prune_h1(&self) {
        let now = Instant::now();
        self.h1.borrow_mut().retain(|_, list| {
            list.retain_mut(|(c, expires)| now < *expires && c.still_open());
            !list.is_empty()
        });
    }

    /// Keeps a fast-path connection for the next request to `uid`, if the endpoint's list
    /// has room (after dropping connections too old at its front).
    pub fn put_h1(&self, uid: u64, conn: UpConn, max_idle: usize, max_age: Duration) {
        let now = Instant::now();
        let mut idle = self.h1.borrow_mut();
        let list = idle.entry(uid).or_default();
        while list.front().is_some_and(|(_, expires)| now >= *expires) {
            list.pop_front();
        }
        if list.len() < max_idle {
            list.push_back((conn, now + max_age));
        }
    }

    /// The HTTP/2 connection to `uid` being opened now, if any, to wait for.
    pub fn opening(&self, uid: u64) -> Option<Rc<tokio::sync::Notify>> {
        self.opening.borrow().get(&uid).cloned()
    }

    /// Marks an HTTP/2 connection to `uid` as being opened until the guard drops; `None` if
    /// another request is opening one already.
    pub fn open(self: &Rc<Self>, uid: u64) -> Option<Opening> {
        let mut opening = self.opening.borrow_mut();
        if opening.contains_key(&uid) {
            return None;
        }
        let notify = Rc::new(tokio::sync::Notify::new());
        opening.insert(uid, notify.clone());
        Some(Opening {
            pool: self.clone(),
            uid,
            notify,
        })
    }

    /// Forgets the HTTP/2 connection to `uid` (it failed; the next request opens another).
    pub fn forget_shared(&self, uid: u64) {
        self.shared.borrow_mut().remove(&uid);
    }

    /// Keeps a new HTTP/2 connection for the next requests to `uid`.
    pub fn share(&self, uid: u64, sender: &Sender) {
        if let Sender::H2(s) = sender {
            self.shared.borrow_mut().insert(uid, s.clone());
        }
    }

    fn put(&self, uid: u64, sender: Sender, max_idle: usize, max_age: Duration) {
        let Sender::H1(sender) = sender else {
            return; // HTTP/2 connections stay shared, not pooled.
        };
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(uid).or_default();
        // The oldest connections sink to the front: drop those closed or too old there, so
        // a burst's leftovers do not stay for ever (O(1) per connection given back).
        while list
            .front()
            .is_some_and(|i| i.sender.is_closed() || now.duration_since(i.since) >= max_age)
        {
            list.pop_front();
        }
        if list.len() < max_idle {
            list.push_back(Idle { sender, since: now });
        }
    }
}

/// Wakes the requests waiting for an HTTP/2 connection when it is open (or failed).
#[derive(Debug)]
pub struct Opening {
    pool: Rc<Pool>,
    uid: u64,
    notify: Rc<tokio::sync::Notify>,
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut opening = self.pool.opening.borrow_mut();
        if opening
            .get(&self.uid)
            .is_some_and(|n| Rc::ptr_eq(n, &self.notify))
        {
            opening.remove(&self.uid);
        }
        self.notify.notify_waiters();
    }
}

/// A connection in use, to be given back when its response has been read.
#[derive(Debug)]
pub struct Checkin {
    pub pool: Rc<Pool>,
    pub uid: u64,
    pub sender: Sender,
    pub max_idle: usize,
    pub max_age: Duration,
    /// The request's body, if it had one: the connection is reused only once it was sent whole.
    pub request: Option<Rc<BodyState>>,
}

impl Checkin {
    pub fn give_back(self) {
        if self.request.as_ref().is_some_and(|b| !b.done.get()) {
            return;
        }
        self.pool
            .put(self.uid, self.sender, self.max_idle, self.max_age);
    }
}

/// A TCP connection to `addr` within `timeout`, with Nagle off: how both paths reach an
/// endpoint.
pub async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".to_owned()),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a connection to `addr` (over TLS when the cluster has `tls`; HTTP/2 when `h2`) and
/// starts its hyper connection task on this worker. The endpoint's `active` gauge counts it
/// while it lives.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&ClusterTls>,
    h2: bool,
    stats: Arc<EndpointStats>,
    worker: usize,
) -> Result<Sender, String> {
    let stream = dial(addr, timeout).await?;
    let io = Io {
        stream: Arc::new(stream),
        counted: UpstreamSide(stats.clone(), worker),
    };
    match tls {
        None => start(TokioIo::new(io), h2, addr, stats, worker).await,
        Some(t) => {
            let s = tls_handshake(t, addr, io, timeout).await?;
            start(TokioIo::new(s), h2, addr, stats, worker).await
        }
    }
}

/// The TLS handshake with endpoint `addr` of a cluster with `tls` (its server name, or the
/// endpoint's IP), within `timeout`: how both paths reach a TLS endpoint.
pub async fn tls_handshake(
    t: &ClusterTls,
    addr: SocketAddr,
    io: Io<UpstreamSide>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<Io<UpstreamSide>>, String> {
    let name = t
        .server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    let handshake = TlsConnector::from(t.config.clone()).connect(name, io);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("TLS: {e}")),
        Err(_) => Err("TLS handshake timed out".to_owned()),
    }
}

/// The HTTP handshake on an open connection, and its connection task.
async fn start<I>(
    io: I,
    h2: bool,
    addr: SocketAddr,
    stats: Arc<EndpointStats>,
    worker: usize,
) -> Result<Sender, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let counters = stats.workers.get(worker);
    let sender = if h2 {
        // Flow-control windows large enough that a few clients not reading their responses
        // cannot stall the other streams of the connection.
        let (sender, conn) = http2::Builder::new(super::LocalExec)
            .timer(hyper_util::rt::TokioTimer::new())
            .initial_stream_window_size(2 << 20)
            .initial_connection_window_size(256 << 20)
            .handshake(io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::task::spawn_local(watch(conn, addr, stats.clone(), worker));
        Sender::H2(sender)
    } else {
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // With upgrades: a 101 response hands the socket over to a tunnel.
        tokio::task::spawn_local(watch(conn.with_upgrades(), addr, stats.clone(), worker));
        Sender::H1(sender)
    };
    counters.connections.inc();
    counters.active.inc();
    Ok(sender)
}

/// Runs a connection until it ends, keeping the endpoint's `active` gauge.
async fn watch<F, E>(conn: F, addr: SocketAddr, stats: Arc<EndpointStats>, worker: usize)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(e) = conn.await {
        tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
    }
    stats.workers.get(worker).active.dec();
}
