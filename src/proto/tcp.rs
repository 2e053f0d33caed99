//! L4 proxying: connect the client to an endpoint of the listener's cluster and forward bytes
//! both ways until both sides close, one fails, or the listener's idle timeout passes.
//!
//! The upstream is chosen once per connection (hash policies key on the client's IP) and kept
//! for the connection's life, even if a reload changes the cluster. When no endpoint can be
//! reached the client's connection is reset, which is how a TCP client learns of a failure;
//! when one side resets mid-stream the other side is reset too rather than closed cleanly, so
//! an aborted transfer never looks like a complete one.
//!
//! Idle connections: when nothing has moved for the listener's `park_after` and both
//! directions wait to read, the connection is parked (`worker::park`): its task ends, its
//! sockets leave the runtime and wait in the worker's parking lot, and the first byte, close
//! or reset on either side starts a new forwarding task with the same upstream and counters.
//! The idle timeout counts from the last byte across parking.
//!
//! Health: down and ejected endpoints are not picked (`upstream::connect`); connect failures
//! and an upstream reset before its first byte count as failures for outlier detection.
//!
//! TLS listeners terminate TLS, then copy through [`splice`]: connect failures still count
//! for outlier detection, but an upstream reset is not told from a close there, so it is
//! neither counted nor passed on as a reset (the client's TLS connection is closed). They park
//! too: the client's TLS session waits boxed in [`Parked`], its socket taken out of it
//! (`io::detach`), and is given the socket back when the connection wakes.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::io::counted::{ClientSide, Io, UpstreamSide};
use crate::io::detach::{Detachable, TlsClient};
use crate::io::pump::{End, Side, Timing, pump};
use crate::io::splice::{Spliced, splice};
use crate::metrics::counters::OwnedGauge as Gauge;
use crate::metrics::stats::{EndpointStats, ListenerStats};
use crate::upstream::connect::connect;
use crate::worker::park::{Sleeper, Socks};
use crate::worker::{Accepted, Held, Worker};

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let table = conn.table.clone();
    let listener = &table.listeners[conn.listener];
    if let Some(tls) = listener.tls.clone() {
        return serve_tls(worker, conn, tls).await;
    }
    let active = Gauge::new(listener.stats.clone(), worker.id, |s, w| {
        &s.workers.get(w).active
    });
    let cluster = table.cluster_of(listener);

    // Boxed so the connect phase's state (timer, attempts) is freed once connected and does
    // not sit in every idle connection's task for its whole life.
    let connecting = Box::pin(connect(
        cluster,
        worker.id,
        &worker.histograms,
        conn.peer.ip(),
    ));
    let upstream = match connecting.await {
        Ok(u) => u,
        Err(why) => {
            cluster.stats.workers.get(worker.id).unavailable.inc();
            tracing::debug!(listener = %listener.config.name, cluster = %cluster.name, peer = %conn.peer, reason = why.reason(), "resetting client");
            reset(&conn.stream);
            return;
        }
    };
    let (client, held) = conn.split();
    let parked = Parked::new(held, (active, upstream.active), upstream.endpoint, None);
    forward(worker, parked, client, upstream.stream).await;
}

/// What a connection between its two sockets is, apart from them: all a parked connection
/// keeps (`worker::park`: a 40-byte slab entry with the sockets, and this, boxed).
pub struct Parked {
    held: Held,
    /// The listener's and the endpoint's `active` gauges, for the connection's life.
    _active: (Gauge<ListenerStats>, Gauge<EndpointStats>),
    /// Counts the connection as parked while it is.
    parked: Option<Gauge<ListenerStats>>,
    /// Index of the upstream's endpoint in its cluster (of `held.table`).
    endpoint: usize,
    /// The upstream has sent a byte (for the outlier detector).
    answered: bool,
    /// Nothing has moved since (the idle timeout counts from here across parking).
    idle_since: tokio::time::Instant,
    /// A TLS listener's connection: the client's session, its socket detached while parked
    /// (boxed: plain connections do not pay for it).
    tls: Option<Box<TlsClient>>,
}

impl Parked {
    /// A connection just connected to its cluster's endpoint `endpoint`, with its listener's
    /// and the endpoint's `active` gauges.
    fn new(
        held: Held,
        active: (Gauge<ListenerStats>, Gauge<EndpointStats>),
        endpoint: usize,
        tls: Option<Box<TlsClient>>,
    ) -> Self {
        Parked {
            held,
            _active: active,
            parked: None,
            endpoint,
            answered: false,
            idle_since: tokio::time::Instant::now(),
            tls,
        }
    }

    /// Serves the connection again; `woken`: one of its sockets has something.
    pub fn resume(mut self, worker: &Rc<Worker>, socks: Socks, woken: bool) {
        self.parked = None;
        // A plain connection wakes on a byte or its end: activity. Over TLS only plaintext
        // is, and what woke the connection may decrypt to nothing (part of a record): the
        // clock goes on from the last plaintext, and `splice` reads what came before it looks
        // at the clock.
        if woken && self.tls.is_none() {
            self.idle_since = tokio::time::Instant::now();
        }
        let [client, upstream] = socks.map(TcpStream::from_std);
        match (client, upstream) {
            (Ok(client), Ok(upstream)) if self.tls.is_some() => {
                tokio::task::spawn_local(forward_tls(worker.clone(), self, client, upstream));
            }
            (Ok(client), Ok(upstream)) => {
                tokio::task::spawn_local(forward(worker.clone(), self, client, upstream));
            }
            // The runtime could not take the sockets back: they are closed (dropped).
            _ => tracing::debug!(peer = %self.held.peer, "could not resume a parked connection"),
        }
    }
}

/// Forwards bytes between the client and its upstream until the connection ends, or parks it
/// when it has been idle for the listener's `park_after`.
async fn forward(worker: Rc<Worker>, mut c: Parked, client: TcpStream, upstream: TcpStream) {
    let table = c.held.table.clone();
    let listener = &table.listeners[c.held.listener];
    let lc = listener.stats.workers.get(worker.id);
    let cluster = table.cluster_of(listener);
    let endpoint = &cluster.endpoints[c.endpoint];
    let ec = endpoint.stats.workers.get(worker.id);
    let answered = Cell::new(c.answered);
    let cfg = &listener.config;

    let end = pump(
        &client,
        &upstream,
        &worker.buffers,
        Timing {
            idle: cfg.idle_timeout,
            park_after: cfg.park_after.filter(|_| worker.park.open()),
            idle_since: c.idle_since,
        },
        |n| {
            lc.bytes_in.add(n);
            ec.bytes_out.add(n);
        },
        |n| {
            answered.set(true);
            ec.bytes_in.add(n);
            lc.bytes_out.add(n);
        },
    )
    .await;
    c.answered = answered.get();
    if let End::Parked { idle_since } = end {
        c.idle_since = idle_since;
        park(&worker, c, client, upstream);
        return;
    }
    // For the outlier detector, an endpoint that resets a connection before sending a byte
    // failed it (HAProxy's `observe layer4`); anything else is a success.
    match &end {
        End::Failed {
            side: Side::B,
            error,
        } if !c.answered => {
            cluster.failed(c.endpoint, &format!("reset before any reply: {error}"));
        }
        _ => cluster.succeeded(c.endpoint),
    }
    match end {
        End::Closed | End::Parked { .. } => {}
        End::Idle => {
            tracing::debug!(listener = %cfg.name, peer = %c.held.peer, "idle timeout");
        }
        End::Failed { side, error } => {
            tracing::debug!(listener = %cfg.name, peer = %c.held.peer, upstream = %endpoint.addr, ?side, %error, "connection aborted");
            reset(match side {
                Side::A => &upstream,
                Side::B => &client,
            });
        }
    }
}

/// Puts an idle connection in the worker's parking lot until one of its sockets has
/// something or its idle timeout (from `c.idle_since`) passes.
fn park(worker: &Rc<Worker>, mut c: Parked, client: TcpStream, upstream: TcpStream) {
    let listener = &c.held.table.listeners[c.held.listener];
    match (client.into_std(), upstream.into_std()) {
        (Ok(client), Ok(upstream)) => {
            let deadline = c.idle_since + listener.config.idle_timeout;
            c.parked = Some(Gauge::new(listener.stats.clone(), worker.id, |s, w| {
                &s.workers.get(w).parked
            }));
            let lot = worker.park.clone();
            lot.park(
                worker,
                Sleeper::Pair([client, upstream], Box::new(c)),
                deadline,
            );
        }
        // Not expected (the sockets are registered); the connection is closed.
        _ => tracing::debug!(peer = %c.held.peer, "could not park a connection"),
    }
}

/// TLS termination: the handshake (rustls), then bytes both ways between the decrypted client
/// stream and a plain upstream connection ([`forward_tls`]).
async fn serve_tls(worker: Rc<Worker>, conn: Accepted, tls: Arc<rustls::ServerConfig>) {
    let table_ref = conn.table.clone();
    let table = &*table_ref;
    let listener = &table.listeners[conn.listener];
    let active = Gauge::new(listener.stats.clone(), worker.id, |s, w| {
        &s.workers.get(w).active
    });
    let cluster = table.cluster_of(listener);
    let handshake = listener
        .config
        .tls
        .as_ref()
        .map_or(Duration::from_secs(10), |t| t.handshake_timeout);
    let (stream, held) = conn.split();
    let io = Detachable::new(Io {
        stream: Arc::new(stream),
        counted: ClientSide::new(listener.stats.clone(), worker.id),
    });
    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(io);
    let mut session = match tokio::time::timeout(handshake, accept).await {
        Ok(Ok(s)) => Box::new(s),
        Ok(Err(error)) => {
            tracing::debug!(listener = %listener.config.name, peer = %held.peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = %listener.config.name, peer = %held.peer, "TLS handshake timed out");
            return;
        }
    };
    let connecting = Box::pin(connect(
        cluster,
        worker.id,
        &worker.histograms,
        held.peer.ip(),
    ));
    let upstream = match connecting.await {
        Ok(u) => u,
        Err(why) => {
            cluster.stats.workers.get(worker.id).unavailable.inc();
            tracing::debug!(listener = %listener.config.name, cluster = %cluster.name, peer = %held.peer, reason = why.reason(), "closing client");
            return;
        }
    };
    let Some(client) = session.get_mut().0.detach() else {
        return;
    };
    let Ok(client) = Arc::try_unwrap(client.stream) else {
        return;
    };
    let c = Parked::new(
        held,
        (active, upstream.active),
        upstream.endpoint,
        Some(session),
    );
    forward_tls(worker, c, client, upstream.stream).await;
}

/// Copies between a TLS client's session (its socket attached here) and its upstream
/// ([`splice`]) until both sides close, one fails, or the idle timeout passes; or parks the
/// connection, session included, when it has been idle for the listener's `park_after`.
async fn forward_tls(worker: Rc<Worker>, mut c: Parked, client: TcpStream, upstream: TcpStream) {
    let Some(mut session) = c.tls.take() else {
        return;
    };
    let table = c.held.table.clone();
    let listener = &table.listeners[c.held.listener];
    let cluster = table.cluster_of(listener);
    let endpoint = &cluster.endpoints[c.endpoint];
    let cfg = &listener.config;
    let client = Arc::new(client);
    session.get_mut().0.attach(Io {
        stream: client.clone(),
        counted: ClientSide::new(listener.stats.clone(), worker.id),
    });
    let mut up = Io {
        stream: Arc::new(upstream),
        counted: UpstreamSide(endpoint.stats.clone(), worker.id),
    };
    let park_after = cfg.park_after.filter(|_| worker.park.open());
    loop {
        let timing = Timing {
            idle: cfg.idle_timeout,
            park_after,
            idle_since: c.idle_since,
        };
        match splice(&mut *session, &mut up, timing, &worker.buffers).await {
            // Parked only with nothing left for rustls to send (`splice` flushed it).
            Spliced::Parked { idle_since } if !session.get_ref().1.wants_write() => {
                c.idle_since = idle_since;
                drop(session.get_mut().0.detach());
                c.tls = Some(session);
                match (Arc::try_unwrap(client), Arc::try_unwrap(up.stream)) {
                    (Ok(client), Ok(upstream)) => park(&worker, c, client, upstream),
                    _ => tracing::debug!(peer = %c.held.peer, "could not park a connection"),
                }
            }
            Spliced::Parked { idle_since } => {
                // rustls has something to send (a reply to a KeyUpdate, say): send it, and
                // look again.
                c.idle_since = idle_since;
                if tokio::io::AsyncWriteExt::flush(&mut *session)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Spliced::Done(..) => cluster.succeeded(c.endpoint),
            Spliced::Idle => {
                tracing::debug!(listener = %cfg.name, peer = %c.held.peer, "idle timeout");
            }
            Spliced::Failed(error) => {
                tracing::debug!(listener = %cfg.name, peer = %c.held.peer, upstream = %endpoint.addr, %error, "connection aborted");
            }
        }
        return;
    }
}

/// Makes the coming close send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
