//! The HTTP engine: HTTP/1.1 and HTTP/2 (ALPN over TLS, and h2c with prior knowledge) from
//! clients; HTTP/1.1 with keep-alive, or HTTP/2, to upstreams.
//!
//! Three servers share a listener's connections. HTTP/1.1 requests forwarded to HTTP/1.1
//! clusters, plain or TLS (the common case, and what wrk measures), take the hand-written fast path
//! ([`h1`]), written by hand for a measured reason given there; HTTP/2 connections (the
//! preface on a plain connection, ALPN `h2` over TLS) are served by corelane's own HTTP/2
//! server ([`h2`], also by hand, for the reasons given there), whose requests to HTTP/1.1
//! clusters take the same fast path and whose other requests go through [`handle`]
//! as hyper's do; the first HTTP/1.x request the fast path does not take (an upgrade, a
//! chunked upload, anything malformed) hands the connection to hyper,
//! which serves it to its end as described below. All apply the same rules. A listener with
//! `fast_path` off has every connection served by hyper.
//!
//! One connection on the hyper path, step by step ([`hyper_serve`]):
//! 1. hyper parses requests (limits: `max_header_size`, `max_headers`; `header_timeout` for
//!    each request's headers, which also bounds the idle time between keep-alive requests);
//!    malformed requests and smuggling forms (`Content-Length` with `Transfer-Encoding`, two
//!    lengths, bad chunks) are answered 400 by hyper and the connection closes;
//! 2. each request ([`handle`]) is routed against the routing table in use *now* (a reload
//!    applies to the next request): first matching route, else the listener's cluster
//!    ([`route`]);
//! 3. `respond` and `redirect` routes are answered there; `cluster` routes are forwarded
//!    ([`forward`]) after hop-by-hop headers are removed, `X-Forwarded-*` added and the header
//!    rules applied ([`headers`]); an `Upgrade` answered 101 becomes a tunnel ([`tunnel`]);
//!    a request to an HTTP/1.1 cluster (plain or TLS) without a body, or with a small one of known
//!    length, is sent over the fast path's pooled upstream sockets ([`h1::bridge`]), anything
//!    else over hyper's client;
//! 4. the upstream's response streams back (its connection returns to the worker's pool
//!    when the body ends, [`pool`]), with the response header rules applied; the request is
//!    counted and, if asked, written to the access log ([`access_log`]);
//! 5. a connection with no byte moving for the listener's `idle_timeout` is closed.
//!
//! Errors are short plain-text responses: 400 (hyper), 413 (`max_body`), 431 (hyper), 502
//! (upstream failed or unreachable), 503 (no healthy endpoint), 504 (no response within
//! `response_timeout` / `request_timeout`). No error panics or ends other requests. What is
//! answered before routing (400 and 431 by hyper, 408 by corelane for hyper too, which says
//! none, and the HTTP/2 server's own) is counted per listener and logged
//! ([`handle::refused`]), since no route saw it.
//!
//! TLS listeners do the handshake first (rustls, `crate::tls`; ALPN picks h2 or HTTP/1.1).
//!
//! An HTTP/1.1 keep-alive client idle between requests for `park_after`, and an HTTP/2
//! connection with no stream open as long, is parked (`worker::park`, [`park`]): plain or TLS,
//! with a TLS session kept boxed and its socket taken out of it (`io::detach`), and an HTTP/2
//! connection's state (`h2::conn::Connection`) boxed beside it. Connections on the hyper path
//! are not parked.
//!
//! Not here: TLS configurations (`crate::tls`), health (`crate::upstream::health`).

pub mod access_log;
pub mod body;
mod date;
mod forward;
pub mod h1;
pub mod h2;
mod handle;
mod headers;
mod idle;
mod io;
pub mod pool;
mod route;
mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::http::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::io::notify::LocalNotify;
use crate::metrics::counters::{GaugeGuard, OwnedGauge};
use crate::metrics::stats::ListenerStats;
use crate::metrics::stats::Refusal;
use crate::worker::park::{ResumeClient, Sleeper};
use crate::worker::{Accepted, Held, TableRef, Wake, Worker};
use body::ResponseBody;
pub use forward::RetryBudget;
use handle::handle;
pub use pool::Pool;
use std::time::Duration;

use crate::io::detach::Detachable;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the tasks of one client connection share.
struct Conn {
    worker: Rc<Worker>,
    /// The table the connection's last request was routed by, and its listener there;
    /// adopted anew when a reload publishes a table that still has the listener.
    table: std::cell::RefCell<Rc<TableRef>>,
    listener: std::cell::Cell<usize>,
    /// The listener's configured address (what tables are keyed by; for a wildcard listener
    /// it is not the socket's local address).
    listen: SocketAddr,
    peer: SocketAddr,
    /// `peer`'s address as an `X-Forwarded-For` value.
    peer_value: HeaderValue,
    /// `X-Forwarded-Proto`.
    scheme: &'static str,
    /// Requests of this connection waiting for their response headers.
    waiting: Rc<std::cell::Cell<usize>>,
}

/// Runs `hyper::rt` tasks (HTTP/2 streams) on this worker.
#[derive(Clone, Copy)]
pub(crate) struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

pub(crate) struct DrainSignal(LocalNotify);

impl Wake for DrainSignal {
    fn wake(&self) {
        self.0.notify();
    }
}

/// What a client connection's task holds, whichever path serves it.
struct Client {
    ctx: Rc<Conn>,
    io: io::Io<io::ClientSide>,
    idle: Idle,
    /// The connection's place under the listener's limits, kept while it lives.
    held: Held,
}

fn client(worker: &Rc<Worker>, conn: Accepted) -> Client {
    let (stream, held) = conn.split();
    let listener = &held.table.listeners[held.listener];
    let waiting = Rc::new(std::cell::Cell::new(0));
    let ctx = Rc::new(Conn {
        worker: worker.clone(),
        table: std::cell::RefCell::new(held.table.clone()),
        listener: std::cell::Cell::new(held.listener),
        listen: listener.config.listen,
        peer: held.peer,
        peer_value: headers::client_value(held.peer.ip()),
        scheme: if listener.tls.is_some() {
            "https"
        } else {
            "http"
        },
        waiting: waiting.clone(),
    });
    let counted = io::ClientSide::new(listener.stats.clone(), worker.id);
    let idle = Idle {
        activity: counted.activity.clone(),
        timeout: listener.config.idle_timeout,
        waiting,
    };
    let io = io::Io {
        stream: Arc::new(stream),
        counted,
    };
    Client {
        ctx,
        io,
        idle,
        held,
    }
}

/// Serves a client connection of a listener without TLS: the HTTP/1.1 fast path ([`h1`]),
/// corelane's HTTP/2 server ([`h2`]) for h2c, then hyper if a request needs it. Only the fast
/// path's state is in the task; the others' are boxed when they take over.
pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    serve_plain(worker, conn, None).await;
}

/// How long a client connection of `listener` may wait for its next request before it is
/// parked (`worker::park`), if it may be parked at all now.
fn park_after(listener: &crate::config::table::Listener, worker: &Worker) -> Option<Duration> {
    listener
        .config
        .park_after
        .filter(|p| *p < listener.config.idle_timeout)
        .filter(|_| !worker.drain.started() && worker.park.open())
}

/// A connection back from the parking lot.
enum Resumed {
    /// HTTP/1.1, idle since then.
    H1(Instant),
    /// HTTP/2, with its state.
    H2(Box<h2::conn::Connection>),
}

/// What a connection is served by once the fast path has read its first bytes.
enum Next {
    /// Done: closed, or parked.
    Done,
    H2(h2::Start),
    Hyper(Vec<u8>),
}

/// The fast path on `io`, for a connection new or back from the parking lot: what serves it
/// next. `park` parks it (the fast path found it idle, since the instant given).
async fn fast_path<S: h1::ClientIo>(
    ctx: &Conn,
    io: &mut S,
    idle: &Idle,
    listener: &crate::config::table::Listener,
    worker: &Worker,
    resumed: Option<Resumed>,
    park: impl FnOnce(Instant),
) -> Next {
    let cfg = &listener.config.http;
    let since = match resumed {
        Some(Resumed::H2(state)) => return Next::H2(h2::Start::Resumed(state)),
        Some(Resumed::H1(since)) => Some(since),
        None => None,
    };
    let served = h1::serve(
        ctx,
        io,
        idle.clone(),
        cfg.header_timeout,
        park_after(listener, worker),
        since,
    );
    match served.await {
        h1::End::Closed => Next::Done,
        h1::End::Park(since) => {
            park(since);
            Next::Done
        }
        h1::End::Hyper(prefix) if cfg.fast_path && h2::is_preface(&prefix) => {
            Next::H2(h2::Start::New(prefix))
        }
        h1::End::Hyper(prefix) => Next::Hyper(prefix),
    }
}

/// [`serve`], for a connection new (`resumed` None) or back from the parking lot.
async fn serve_plain(worker: Rc<Worker>, conn: Accepted, resumed: Option<Resumed>) {
    let Client {
        ctx,
        mut io,
        idle,
        held,
    } = client(&worker, conn);
    // Its own handle on the table: `held` goes to the parking lot if the connection parks.
    let table = held.table.clone();
    let listener = &table.listeners[held.listener];
    let _active = GaugeGuard::new(&listener.stats.workers.get(worker.id).active);
    let cfg = &listener.config.http;
    let mut parked = None;
    let next = fast_path(&ctx, &mut io, &idle, listener, &worker, resumed, |since| {
        parked = Some(since)
    })
    .await;
    let result = match next {
        Next::Done => {
            if let Some(since) = parked {
                // Idle between requests, nothing buffered: the connection waits in the
                // worker's parking lot, as a bare socket, until its client sends something.
                drop((ctx, idle));
                if let Ok(stream) = Arc::try_unwrap(io.stream) {
                    park(&worker, stream, held, Parking::H1(since), None);
                }
            }
            return;
        }
        Next::H2(start) => {
            let served = h2::serve(
                &ctx,
                &mut io,
                idle,
                cfg,
                start,
                park_after(listener, &worker),
            );
            if let h2::End::Park(state, since) = Box::pin(served).await {
                drop(ctx);
                if let Ok(stream) = Arc::try_unwrap(io.stream) {
                    park(&worker, stream, held, Parking::H2(state, since), None);
                }
            }
            return;
        }
        Next::Hyper(prefix) => {
            let h2 = h2::is_preface(&prefix);
            let (io, back) = h1::Rewind::new(prefix, io);
            let served = hyper_serve(ctx.clone(), TokioIo::new(io), cfg, &worker, idle);
            let r = Box::pin(served).await;
            if h2 {
                r
            } else {
                after_hyper(&ctx, cfg, r, back).await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = %listener.config.name, peer = %held.peer, error = %e, "client connection ended with an error");
    }
}

/// What a parked connection will speak when it wakes.
enum Parking {
    /// HTTP/1.1, idle since then: its header deadline (the smaller of `header_timeout` and
    /// `idle_timeout`) counts from there.
    H1(Instant),
    /// HTTP/2, with its state, quiet since then: `idle_timeout` counts from there.
    H2(Box<h2::conn::Connection>, Instant),
}

/// Puts an idle client connection in the worker's parking lot, its TLS session (with its
/// socket detached) boxed beside it if it has one, until its client sends something or its
/// deadline passes.
fn park(
    worker: &Rc<Worker>,
    stream: TcpStream,
    held: Held,
    parking: Parking,
    tls: Option<Box<io::TlsClient>>,
) {
    let listener = &held.table.listeners[held.listener];
    let config = &listener.config;
    let (deadline, since, h2) = match parking {
        Parking::H1(since) => (
            since + config.http.header_timeout.min(config.idle_timeout),
            since,
            None,
        ),
        Parking::H2(state, since) => (since + config.idle_timeout, since, Some(state)),
    };
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = %held.peer, error = %e, "could not park an idle HTTP client");
            return;
        }
    };
    let parked = Box::new(Parked {
        since,
        tls,
        h2,
        _active: OwnedGauge::new(listener.stats.clone(), worker.id, |s, w| {
            &s.workers.get(w).active
        }),
        _parked: OwnedGauge::new(listener.stats.clone(), worker.id, |s, w| {
            &s.workers.get(w).parked
        }),
        held,
    });
    worker
        .park
        .park(worker, Sleeper::Client(stream, parked), deadline);
}

/// A parked HTTP connection (`worker::park`): what it needs to be served again.
/// Counted as active and as parked while it waits.
struct Parked {
    held: Held,
    /// The end of its last request (HTTP/1.1), or since when it was quiet (HTTP/2): its
    /// deadlines count from here.
    since: Instant,
    /// A TLS connection's session, its socket detached (boxed: plain connections do not pay
    /// for it).
    tls: Option<Box<io::TlsClient>>,
    /// An HTTP/2 connection's state.
    h2: Option<Box<h2::conn::Connection>>,
    _active: OwnedGauge<ListenerStats>,
    _parked: OwnedGauge<ListenerStats>,
}

impl ResumeClient for Parked {
    fn resume(self: Box<Self>, worker: &Rc<Worker>, sock: std::net::TcpStream, _woken: bool) {
        let Parked {
            held,
            since,
            tls,
            h2,
            ..
        } = *self;
        match TcpStream::from_std(sock) {
            Ok(stream) => {
                let conn = held.rejoin(stream);
                let resumed = Some(match h2 {
                    Some(state) => Resumed::H2(state),
                    None => Resumed::H1(since),
                });
                match tls {
                    None => tokio::task::spawn_local(serve_plain(worker.clone(), conn, resumed)),
                    Some(tls) => {
                        tokio::task::spawn_local(serve_tls_h1(worker.clone(), conn, tls, resumed))
                    }
                };
            }
            Err(e) => {
                tracing::debug!(peer = %held.peer, error = %e, "could not resume a parked HTTP client");
            }
        }
    }

    /// An HTTP/2 client is told GOAWAY, and a TLS client gets a `close_notify` (as a live one
    /// closed when idle does), so that it sees a clean end rather than a truncation; a plain
    /// HTTP/1.1 one just sees the close.
    fn expire(self: Box<Self>, mut sock: std::net::TcpStream) {
        let Parked { tls, h2, .. } = *self;
        let mut goaway = Vec::new();
        if let Some(mut state) = h2 {
            state.goaway(h2::frame::Reason::NO_ERROR, "idle");
            goaway.extend_from_slice(state.output());
        }
        // A few dozen bytes into an idle socket's empty send buffer: they do not block.
        match tls {
            Some(mut tls) => {
                let session = &mut tls.get_mut().1;
                let _ = std::io::Write::write_all(&mut session.writer(), &goaway);
                session.send_close_notify();
                while session.wants_write() {
                    if !matches!(session.write_tls(&mut sock), Ok(n) if n > 0) {
                        break;
                    }
                }
            }
            None => {
                let _ = std::io::Write::write(&mut sock, &goaway);
            }
        }
    }
}

/// Serves a client connection of a TLS listener: the handshake, then the HTTP/1.1 fast path
/// (and hyper if a request needs it), or hyper for HTTP/2 when ALPN chose it.
pub async fn serve_tls(worker: Rc<Worker>, conn: Accepted) {
    let (stream, held) = conn.split();
    let listener = &held.table.listeners[held.listener];
    let (Some(tls), Some(t)) = (&listener.tls, &listener.config.tls) else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    // Counted as active from here; the socket goes back into the connection until the
    // handshake is done, with the counters it is to have.
    let active = GaugeGuard::new(&listener.stats.workers.get(worker.id).active);
    let io = Detachable::new(io::Io {
        stream: Arc::new(stream),
        counted: io::ClientSide::new(listener.stats.clone(), worker.id),
    });
    let mut tls = match tokio::time::timeout(t.handshake_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(e)) => {
            tracing::debug!(listener = %listener.config.name, peer = %held.peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = %listener.config.name, peer = %held.peer, "TLS handshake timed out");
            return;
        }
    };
    let Some(io) = tls.get_mut().0.detach() else {
        return;
    };
    let Ok(stream) = Arc::try_unwrap(io.stream) else {
        return;
    };
    drop(active);
    serve_tls_h1(worker, held.rejoin(stream), tls, None).await;
}

/// Serves a TLS client connection after its handshake, new or back from the parking lot,
/// its socket given in `conn` and attached to `tls` here: the HTTP/1.1 fast path, corelane's
/// HTTP/2 server when ALPN chose h2, and hyper for a request the fast path does not take (or
/// for HTTP/2 too on a listener with `fast_path` off).
async fn serve_tls_h1(
    worker: Rc<Worker>,
    conn: Accepted,
    mut tls: Box<io::TlsClient>,
    resumed: Option<Resumed>,
) {
    let Client {
        ctx,
        io,
        idle,
        held,
    } = client(&worker, conn);
    let stream = io.stream.clone();
    tls.get_mut().0.attach(io);
    let table = held.table.clone();
    let listener = &table.listeners[held.listener];
    let _active = GaugeGuard::new(&listener.stats.workers.get(worker.id).active);
    let cfg = &listener.config.http;
    let h2_alpn = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut parked = None;
    let next = if h2_alpn && !cfg.fast_path {
        Next::Hyper(Vec::new())
    } else if h2_alpn && resumed.is_none() {
        Next::H2(h2::Start::New(Vec::new()))
    } else {
        let park = |since| parked = Some(Parking::H1(since));
        fast_path(&ctx, &mut *tls, &idle, listener, &worker, resumed, park).await
    };
    match next {
        Next::Done => {}
        Next::H2(start) => {
            let served = h2::serve(
                &ctx,
                &mut *tls,
                idle.clone(),
                cfg,
                start,
                park_after(listener, &worker),
            );
            match Box::pin(served).await {
                h2::End::Park(state, since) => parked = Some(Parking::H2(state, since)),
                // Said goodbye already, `close_notify` included.
                h2::End::Closed => return,
            }
        }
        Next::Hyper(prefix) => {
            let h2 = h2_alpn || h2::is_preface(&prefix);
            let (io, back) = h1::Rewind::new(prefix, tls);
            let served = hyper_serve(ctx.clone(), TokioIo::new(io), cfg, &worker, idle);
            let mut r = Box::pin(served).await;
            if !h2 {
                r = after_hyper(&ctx, cfg, r, back).await;
            }
            if let Err(e) = r {
                tracing::debug!(listener = %listener.config.name, peer = %held.peer, error = %e, "client connection ended with an error");
            }
            return;
        }
    }
    match parked {
        Some(parking) => {
            // As a plain connection parks, with the session kept and its socket out.
            // Whatever rustls still holds for the client (a session ticket) goes first.
            let flush = tokio::io::AsyncWriteExt::flush(&mut *tls);
            if let Ok(Ok(())) = tokio::time::timeout(IDLE_GRACE, flush).await
                && !tls.get_ref().1.wants_write()
            {
                drop((ctx, idle, tls.get_mut().0.detach()));
                if let Ok(stream) = Arc::try_unwrap(stream) {
                    park(&worker, stream, held, parking, Some(tls));
                }
            } else {
                tracing::debug!(peer = %held.peer, "an idle TLS client could not be flushed to park; closing it");
            }
        }
        None => {
            // close_notify, so a client reading to the end sees a clean end.
            let bye = tokio::io::AsyncWriteExt::shutdown(&mut *tls);
            let _ = tokio::time::timeout(IDLE_GRACE, bye).await;
        }
    }
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// After hyper's end of an HTTP/1.x connection the fast path handed it: counts the requests
/// hyper refused (it answered 400 or 431 itself), and says 408 to a client whose request head
/// was not in within `header_timeout` (hyper just closes), counting it when a request had
/// begun.
async fn after_hyper<S: h1::ClientIo>(
    ctx: &Conn,
    cfg: &crate::config::http::HttpListener,
    r: Result<(), ConnError>,
    mut back: tokio::sync::oneshot::Receiver<h1::Back<S>>,
) -> Result<(), ConnError> {
    let Some(e) = r
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<hyper::Error>())
    else {
        return r;
    };
    let now = Instant::now();
    let why = if e.is_timeout() {
        // Back already: hyper's connection, which held it, has ended.
        let Ok(mut b) = back.try_recv() else {
            return r;
        };
        b.io.too_slow().await;
        let bye = tokio::io::AsyncWriteExt::shutdown(&mut b.io);
        let _ = tokio::time::timeout(IDLE_GRACE, bye).await;
        if !b.heard {
            return r;
        }
        handle::too_slow(ctx, &[], now.checked_sub(cfg.header_timeout).unwrap_or(now));
        return r;
    } else if e.is_parse_too_large() {
        // hyper says 414 for a target too long and 431 for the rest: its message tells.
        if e.to_string().starts_with("URI too long") {
            Refusal::UriTooLong
        } else {
            Refusal::TooLarge
        }
    } else if e.is_parse() {
        Refusal::Malformed
    } else {
        return r;
    };
    let refused = handle::Refused {
        why,
        method: None,
        host: None,
        path: None,
        started: now,
        bytes: 0,
    };
    handle::refused(ctx, &refused);
    r
}

/// Serves a connection (the rest of it, after the fast path) with hyper: HTTP/1.1 and
/// HTTP/2, each request through [`handle`].
async fn hyper_serve<I>(
    ctx: Rc<Conn>,
    io: I,
    cfg: &crate::config::http::HttpListener,
    worker: &Worker,
    idle: Idle,
) -> Result<(), ConnError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        // Boxed: a request's future is several KB (routing, forwarding, retries) and hyper
        // moves it into its stream task for every HTTP/2 stream; a box moves as a pointer.
        Box::pin(async move {
            Ok::<_, Infallible>(handle(&ctx, req.map(body::ClientBody::Hyper)).await)
        })
    });
    let mut builder = auto::Builder::new(LocalExec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_size)
        .max_headers(cfg.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.http2.max_streams)
        .initial_stream_window_size(cfg.http2.stream_window)
        .initial_connection_window_size(cfg.http2.connection_window)
        .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX));
    run(&builder, io, svc, worker, idle).await
}

use idle::Idle;
pub use idle::{IdleSweep, run as idle_sweep};

/// Serves one client connection until it ends, closing it gracefully when the worker drains
/// or when no byte has moved either way for the listener's `idle_timeout` (an HTTP/2
/// connection with no streams, a client that stopped reading).
async fn run<I, S>(
    builder: &auto::Builder<LocalExec>,
    io: I,
    svc: S,
    worker: &Worker,
    idle: Idle,
) -> Result<(), ConnError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<ResponseBody>,
            Error = Infallible,
        >,
    S::Future: 'static,
{
    // One signal for both reasons to stop early: the worker drains, or the worker's idle
    // sweep finds the connection idle (a sweep per worker, not a timer per connection that
    // the connection task would poll on every wake-up).
    let stop = Rc::new(DrainSignal(LocalNotify::default()));
    worker
        .drain
        .subscribe(Rc::downgrade(&(stop.clone() as Rc<dyn Wake>)));
    let _watched = worker.idle.watch(idle, stop.clone());
    let served = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(served);
    if !worker.drain.started() {
        tokio::select! {
            r = served.as_mut() => return r,
            () = stop.0.notified() => {}
        }
    }
    served.as_mut().graceful_shutdown();
    if worker.drain.started() {
        return served.await;
    }
    // Idle: say goodbye (GOAWAY for HTTP/2), and close for good if the client does not
    // finish the goodbye (HTTP/2's wants a PING answered) within a moment.
    tracing::debug!("client connection idle; closing");
    match tokio::time::timeout(IDLE_GRACE, served).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// How long an idle connection's goodbye may take before it is closed regardless.
const IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    /// What a parked HTTP/1.1 client keeps (a slab entry with its socket, and its box): the
    /// 0.5 KB an idle client may cost, with room to spare.
    #[test]
    fn a_parked_client_is_small() {
        let entry = crate::worker::park::entry_size();
        let boxed = std::mem::size_of::<super::Parked>();
        println!("parked HTTP client: slab entry {entry}, {boxed} bytes boxed");
        assert!(entry + boxed <= 256, "{entry} + {boxed}");
    }

    /// What a parked HTTP/2 client keeps besides: its connection's state, boxed, with its
    /// HPACK table's entries (none for a client that indexes nothing; at most the 4 KiB of
    /// `SETTINGS_HEADER_TABLE_SIZE` and the entries' own allocations).
    #[test]
    fn a_parked_http2_client_is_small() {
        use super::h2::conn::{Connection, Limits};
        let limits = Limits {
            max_streams: 128,
            stream_window: 1 << 18,
            conn_window: 1 << 20,
            max_header_list: 65_536,
            max_block: 131_072,
        };
        let mut conn = Connection::new(limits);
        let n = conn.output().len();
        conn.written(n);
        conn.shrink();
        let state = std::mem::size_of::<Connection>();
        let entry = crate::worker::park::entry_size();
        let boxed = std::mem::size_of::<super::Parked>();
        println!("parked HTTP/2 client: slab entry {entry}, {boxed} boxed, {state} of state");
        assert!(entry + boxed + state <= 512, "{entry} + {boxed} + {state}");
    }
}
