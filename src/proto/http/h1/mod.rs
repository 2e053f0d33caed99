//! The HTTP/1.1 fast path: HTTP/1.1 client connections (plain, or TLS once ALPN chose
//! HTTP/1.1) whose requests are forwarded to HTTP/1.1 clusters are served here, by hand,
//! one task per connection, with no hyper in between; everything else goes to the hyper path
//! (`super::hyper_serve`).
//!
//! Why by hand (the issue asks for hyper unless a measured reason says otherwise): with hyper
//! on both sides, a small keep-alive request cost corelane 5.7-7.3 µs of user CPU against
//! nginx's 3.2-3.8 µs, for the same four syscalls (bench/RESULTS.md, "Where the HTTP time
//! goes"): header maps built and taken apart on both sides, the upstream connection's own
//! task and the channel to it, body frames. Here a request is parsed in place (httparse), its
//! upstream head written straight from the parsed one, and the response relayed from the
//! upstream connection's buffer as it arrives, in the connection's own task.
//!
//! What the fast path takes, request by request: HTTP/1.1, an origin-form target, one `Host`,
//! no body or a `Content-Length` body (`Expect: 100-continue` answered here), no
//! `Transfer-Encoding`, `Upgrade` or other `Expect`
//! (`request::parse`), routed to a cluster that speaks HTTP/1.1 (plain, or TLS: not
//! `upstream_protocol = "h2"`) or to a route that answers it (`respond`, `redirect`: written
//! out here as hyper writes them, [`local`]), within `max_headers`, `max_header_size` and
//! `max_body`, head
//! and body together within the worker's buffer (`buffer_size`, 32 KiB by default): the request
//! is read whole before it is forwarded, in one write, so an upstream that answers early never
//! meets a half-sent body. Larger uploads stream through hyper. HTTP/2's preface hands the
//! connection, with the bytes read so far, to corelane's HTTP/2 server (`super::h2`), which
//! plans its requests with [`plan_head`] too. The first request that is anything else (a
//! chunked upload, a WebSocket upgrade, a cluster with upstream HTTP/2, a malformed or
//! hostile request) hands the connection over to the hyper path with the bytes read so far,
//! and hyper serves it from there to its end: one switch, made before anything of that request
//! was forwarded, so each request is served whole by one path.
//!
//! The same rules hold on both paths: routing, header rules, `X-Forwarded-*`, hop-by-hop
//! headers, endpoint choice and retries, timeouts (`header_timeout` with 408,
//! `response_timeout`, `request_timeout`, `total_timeout`), error statuses (502, 503, 504),
//! per-route and per-cluster metrics and the access log, idle closing and draining.
//!
//! An idle connection holds no buffer here: a request borrows one from the worker's pool
//! when its first bytes arrive and gives it back when it is answered.
//!
//! Not here: the TLS handshake (`super::serve_tls`), HTTP/2 (`super::h2`, though its requests,
//! and most requests hyper serves, reach their upstream through this module's exchange:
//! [`bridge`]), upgrades, upstream TLS's configuration (`crate::tls::client`).

pub mod bridge;
pub mod chunked;
pub(in crate::proto::http) mod exchange;
pub mod request;
pub mod response;

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

pub use exchange::UpConn;

use super::forward::Failure;
use super::handle::{self, Finished, Logged, Waiting};
use super::idle::Idle;
use super::io::{ClientSide, Io};
use super::{Conn, DrainSignal, route};
use crate::config::http::{Action, HeaderRules};
use crate::io::notify::LocalNotify;
use crate::worker::{TableRef, Wake};

/// The interim response a client with `Expect: 100-continue` waits for before its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How the fast path left a connection.
pub(super) enum End {
    Closed,
    /// Idle for `park_after` between requests, nothing buffered: the caller may park it. The
    /// last request ended at the instant given (the idle time counts from there).
    Park(Instant),
    /// The hyper path takes it over, these bytes first.
    Hyper(Vec<u8>),
}

/// A request the fast path forwards: what was decided from its head.
pub(in crate::proto::http) struct Plan {
    pub table: Rc<TableRef>,
    pub listener: usize,
    /// Its route's index, or the number of routes for the listener's default.
    pub slot: usize,
    /// The cluster it goes to; None when its route answers it (`respond`, `redirect`).
    pub cluster: Option<usize>,
    pub head_len: usize,
    pub body_len: u64,
    pub close: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub continue_due: bool,
    pub to_head: bool,
    pub replayable: bool,
    pub logged: Option<Logged>,
}

enum Step {
    Partial,
    Other,
    Go(Plan),
}

/// Parses and routes the request at the start of `buf`, writing its upstream head into `out`
/// and its hash key into `key`.
fn plan(c: &Conn, buf: &[u8], out: &mut Vec<u8>, key: &mut Vec<u8>) -> Step {
    let mut slots = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
    let head = match request::parse(buf, &mut slots) {
        request::Parsed::Partial => return Step::Partial,
        request::Parsed::Other => return Step::Other,
        request::Parsed::Head(h) => h,
    };
    match plan_head(c, &head, out, key) {
        Some(p) => Step::Go(p),
        None => Step::Other,
    }
}

/// Routes a request head (HTTP/1.1's, or one made from an HTTP/2 request, `super::h2`):
/// the plan to forward it on the fast path, with its upstream head written into `out` and
/// its hash key into `key`; None if the fast path does not take it (the generic path,
/// `super::handle`, answers it).
pub(in crate::proto::http) fn plan_head(
    c: &Conn,
    head: &request::Head<'_>,
    out: &mut Vec<u8>,
    key: &mut Vec<u8>,
) -> Option<Plan> {
    let (table, li) = handle::routing(c);
    let listener = &table.listeners[li];
    let cfg = &listener.config.http;
    if !cfg.fast_path || head.headers.len() > cfg.max_headers || head.len > cfg.max_header_size {
        return None;
    }
    let found = route::find(&cfg.routes, head);
    let slot = found.map_or(cfg.routes.len(), |(i, _)| i);
    let route = found.map(|(_, r)| r);
    let logged = || {
        listener.config.access_log.then(|| Logged {
            method: head.method.to_owned(),
            host: Some(head.host.to_owned()),
            path: route::Target::path(head).to_owned(),
            at: std::time::SystemTime::now(),
        })
    };
    let cluster = match route.map(|r| &r.action) {
        None => listener.config.cluster,
        Some(Action::Forward(i)) => *i,
        // Answered by the route itself: nothing goes upstream.
        Some(Action::Respond { .. } | Action::Redirect { .. }) => {
            return Some(Plan {
                listener: li,
                slot,
                cluster: None,
                head_len: head.len,
                body_len: head.content_length,
                close: head.close,
                continue_due: head.expect_continue && head.content_length > 0,
                to_head: head.method == "HEAD",
                replayable: false,
                logged: logged(),
                table,
            });
        }
    };
    let cl = &table.clusters[cluster];
    let http = &table.config.clusters[cluster].http;
    if http.h2 || cfg.max_body.is_some_and(|m| head.content_length > m) {
        return None;
    }
    key.clear();
    if cl.balancer.uses_key() {
        let mut kb = [0u8; 64];
        key.extend_from_slice(handle::hash_key(&http.hash_on, head, c.peer, &mut kb));
    }
    let fwd = request::Forwarded {
        client: c.peer_value.as_bytes(),
        proto: c.scheme,
    };
    out.clear();
    match route {
        Some(r) => {
            request::write_upstream(out, head, &fwd, &[&cfg.request_headers, &r.request_headers])
        }
        None => request::write_upstream(out, head, &fwd, &[&cfg.request_headers]),
    }
    let logged = logged();
    let replayable = head.content_length == 0 && super::forward::idempotent(head.method);
    Some(Plan {
        listener: li,
        slot,
        cluster: Some(cluster),
        head_len: head.len,
        body_len: head.content_length,
        close: head.close,
        continue_due: head.expect_continue && head.content_length > 0,
        to_head: head.method == "HEAD",
        replayable,
        logged,
        table,
    })
}

/// A client connection the fast path can serve: plain, or TLS once the handshake is done.
pub(super) trait ClientIo: AsyncRead + AsyncWrite + Unpin {
    /// Returns once a read would find something (or fail), without reading: a connection
    /// waiting for its next request holds no buffer.
    async fn ready(&self) -> std::io::Result<()>;
    /// [`ClientIo::ready`] as a poll.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    /// Tells a client too slow with its request head so: a 408 before the connection closes
    /// (best effort: a client that does not read is not waited for).
    async fn too_slow(&mut self);
}

impl<T: ClientIo> ClientIo for Box<T> {
    async fn ready(&self) -> std::io::Result<()> {
        (**self).ready().await
    }
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        (**self).poll_ready(cx)
    }
    async fn too_slow(&mut self) {
        (**self).too_slow().await;
    }
}

impl ClientIo for Io<ClientSide> {
    async fn ready(&self) -> std::io::Result<()> {
        self.stream.readable().await
    }
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream.poll_read_ready(cx)
    }
    async fn too_slow(&mut self) {
        super::io::send_408(&self.stream);
    }
}

impl ClientIo for super::io::TlsClient {
    async fn ready(&self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (io, tls) = self.get_ref();
        // Plaintext already decrypted (a pipelined request) is there to read now.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        match io.get() {
            Some(io) => io.stream.poll_read_ready(cx),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    async fn too_slow(&mut self) {
        // Inside TLS; the close_notify follows when the connection closes.
        let tell = async {
            self.write_all(super::io::RESPONSE_408).await?;
            self.flush().await
        };
        let _ = tokio::time::timeout(Duration::from_millis(100), tell).await;
    }
}

/// Serves a client connection until it ends or a request needs the hyper path.
///
/// `park_after`: how long it may wait for a request before [`End::Park`] (when the worker's
/// parking lot is open and it does not drain). `resumed`: the connection
/// comes back from the parking lot, idle since then: its first request's head is due by then
/// plus `header_timeout`, and it is not parked again before that request.
pub(super) async fn serve<S: ClientIo>(
    c: &Conn,
    io: &mut S,
    idle: Idle,
    header_timeout: Duration,
    park_after: Option<Duration>,
    mut resumed: Option<Instant>,
) -> End {
    let w = &*c.worker;
    // Stop early when the worker drains, or its idle sweep finds the connection idle.
    let stop = Rc::new(DrainSignal(LocalNotify::default()));
    w.drain
        .subscribe(Rc::downgrade(&(stop.clone() as Rc<dyn Wake>)));
    let _watched = w.idle.watch(idle, stop.clone());
    let timer = tokio::time::sleep(header_timeout);
    tokio::pin!(timer);
    let mut held: Option<Box<[u8]>> = None;
    let (mut start, mut end) = (0usize, 0usize);
    let mut key = Vec::new();
    loop {
        if w.drain.started() {
            if let Some(b) = held.take() {
                w.buffers.put(b);
            }
            return End::Closed;
        }
        let since = resumed.take();
        let may_park = since.is_none();
        let since = since.unwrap_or_else(Instant::now);
        let too_slow = since + header_timeout;
        if held.is_none() {
            // Waiting for the next request without a buffer. One timer: parking first, if
            // it comes before the header timeout.
            let park = park_after
                .filter(|_| may_park)
                .map(|p| since + p)
                .filter(|p| *p < too_slow);
            timer.as_mut().reset(park.unwrap_or(too_slow));
            // A stop (drain or idle) that came with the request's first bytes wins: nothing
            // of it was read yet.
            tokio::select! {
                biased;
                () = stop.0.notified() => return End::Closed,
                r = io.ready() => if r.is_err() {
                    return End::Closed;
                },
                () = &mut timer => {
                    if park.is_some() && !w.drain.started() {
                        return End::Park(since);
                    }
                    io.too_slow().await;
                    return End::Closed;
                }
            }
        }
        timer.as_mut().reset(too_slow);
        let mut buf = held.take().unwrap_or_else(|| w.buffers.take());
        let mut out = w.vecs.take();
        let give_back = |buf, out: &mut Vec<u8>| {
            w.buffers.put(buf);
            w.vecs.put(out);
        };
        // A request is taken whole, head and body, into the buffer before it is forwarded:
        // the upstream gets it in one write, and an early answer cannot meet a half-sent body.
        // A request larger than the buffer goes to hyper, which streams it.
        let mut planned: Option<Plan> = None;
        // A head can only end at a newline: parse again only when one came.
        let mut newline = end > start;
        let plan = loop {
            if let Some(p) = planned.take() {
                if end - start >= p.head_len + p.body_len as usize {
                    break p;
                }
                planned = Some(p);
            } else if newline {
                match plan(c, &buf[start..end], &mut out, &mut key) {
                    Step::Go(p)
                        if (p.head_len as u64).saturating_add(p.body_len) > buf.len() as u64 =>
                    {
                        let prefix = buf[start..end].to_vec();
                        give_back(buf, &mut out);
                        return End::Hyper(prefix);
                    }
                    Step::Go(p) if end - start >= p.head_len + p.body_len as usize => break p,
                    Step::Go(mut p) => {
                        // The client waits before its body: it gets the go-ahead, once, and
                        // the body is then due within `request_timeout` (408 after), as on
                        // the hyper path.
                        if std::mem::take(&mut p.continue_due) {
                            let cfg = &p.table.listeners[p.listener].config.http;
                            timer.as_mut().reset(Instant::now() + cfg.request_timeout);
                            let sent = async {
                                io.write_all(CONTINUE).await?;
                                io.flush().await
                            };
                            if sent.await.is_err() {
                                give_back(buf, &mut out);
                                return End::Closed;
                            }
                        }
                        planned = Some(p);
                    }
                    Step::Other => {
                        let prefix = buf[start..end].to_vec();
                        give_back(buf, &mut out);
                        return End::Hyper(prefix);
                    }
                    Step::Partial => {}
                }
            }
            if end == buf.len() {
                if start == 0 {
                    // A head larger than the buffer: the hyper path applies its limits.
                    let prefix = buf[..end].to_vec();
                    give_back(buf, &mut out);
                    return End::Hyper(prefix);
                }
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let read = tokio::select! {
                biased;
                () = stop.0.notified() => Ok(0),
                r = io.read(&mut buf[end..]) => r,
                () = &mut timer => {
                    io.too_slow().await;
                    if end > start {
                        handle::too_slow(c, &buf[start..end], since);
                    }
                    Ok(0)
                }
            };
            match read {
                Ok(n) if n > 0 => {
                    newline = buf[end..end + n].contains(&b'\n');
                    end += n;
                }
                _ => {
                    give_back(buf, &mut out);
                    return End::Closed;
                }
            }
        };
        let mut reply_head = w.vecs.take();
        // Boxed: the exchange's state exists while a request is in flight, not in the task of
        // every idle connection.
        let keep = Box::pin(one(
            c,
            io,
            &stop,
            plan,
            &buf,
            &mut start,
            &out,
            &key,
            &mut reply_head,
        ))
        .await;
        w.vecs.put(&mut out);
        w.vecs.put(&mut reply_head);
        if !keep {
            w.buffers.put(buf);
            return End::Closed;
        }
        // Empty lines before a request line are ignored (RFC 9112 2.2), so that a stray CRLF
        // after a body does not keep the buffer (and the connection from parking).
        while start < end && matches!(buf[start], b'\r' | b'\n') {
            start += 1;
        }
        if start == end {
            // Nothing pipelined: the buffer goes back while the connection waits.
            (start, end) = (0, 0);
            w.buffers.put(buf);
        } else {
            held = Some(buf);
        }
    }
}

/// Forwards one planned request (head and body in `buf[*start..]`) and answers the client;
/// counts and logs it. Whether the connection can take another request.
#[allow(clippy::too_many_arguments)]
async fn one<S: ClientIo>(
    c: &Conn,
    io: &mut S,
    stop: &DrainSignal,
    plan: Plan,
    buf: &[u8],
    start: &mut usize,
    upstream_head: &[u8],
    key: &[u8],
    reply_head: &mut Vec<u8>,
) -> bool {
    let Some(ci) = plan.cluster else {
        return local(c, io, stop, plan, start, reply_head).await;
    };
    let w = &*c.worker;
    let started = Instant::now();
    let table = &plan.table;
    let listener = &table.listeners[plan.listener];
    let cfg = &listener.config.http;
    let route = cfg.routes.get(plan.slot);
    let cluster = &table.clusters[ci];
    let http = &table.config.clusters[ci].http;
    let total = cfg.total_timeout.map(|t| started + t);
    let mut deadline = (started + cfg.request_timeout).min(started + http.response_timeout);
    if let Some(t) = total {
        deadline = deadline.min(t);
    }
    let body_at = *start + plan.head_len;
    let body = &buf[body_at..body_at + plan.body_len as usize];
    *start = body_at + body.len();
    let close = plan.close || w.drain.started();
    let no_rules = HeaderRules::default();
    let route_rules = route.map_or(&no_rules, |r| &r.response_headers);
    let sets = [route_rules, &cfg.response_headers];
    let req = exchange::Request {
        head: upstream_head,
        body,
        replayable: plan.replayable,
        to_head: plan.to_head,
        key,
        deadline,
        total,
    };
    let ctx = exchange::Ctx {
        worker: w.id,
        buffers: &w.buffers,
        pool: &w.http_pool,
        budget: &w.http_budget,
    };
    let mut reply = exchange::Reply {
        out: &mut *reply_head,
        close,
        sets: &sets,
        waiting: Some(Waiting::new(&c.waiting)),
        answered: None,
    };
    let outcome = {
        let exchange = exchange::forward(&ctx, cluster, http, &req, &mut *io, &mut reply);
        tokio::select! {
            biased;
            o = exchange => Some(o),
            () = idle_stop(stop, w) => None,
        }
    };
    let answered = reply.answered;
    drop(reply);
    let (done, keep) = match (outcome, answered) {
        // Counted when the response head went out, as the hyper path does.
        (outcome, Some(a)) => {
            let keep = matches!(outcome, Some(exchange::Outcome::Answered { keep: true }));
            let done = Finished {
                route,
                slot: plan.slot,
                cluster: Some(ci),
                status: a.status,
                upstream: Some(a.upstream),
            };
            ((done, a.at, a.bytes), keep)
        }
        (Some(exchange::Outcome::Failed(f)), None) => {
            if let Failure::NoUpstream(_) = f {
                cluster.stats.workers.get(w.id).unavailable.inc();
            }
            tracing::debug!(cluster = %cluster.name, peer = %c.peer, failure = %f, "request failed");
            let status = f.status();
            let keep = !close;
            let len = error_response(reply_head, status, !keep, plan.to_head);
            let sent = answer(io, reply_head, stop, w).await;
            let done = Finished {
                route,
                slot: plan.slot,
                cluster: Some(ci),
                status: status.as_u16(),
                upstream: None,
            };
            (
                (done, Instant::now(), if sent { len } else { 0 }),
                sent && keep,
            )
        }
        // Stopped before any response: nothing to count.
        (_, None) => return false,
    };
    let (done, at, bytes) = done;
    let timing = (started, at - started);
    if let Some(mut line) = handle::record(c, table, plan.listener, &done, timing, plan.logged) {
        // The response has been relayed: its line goes now.
        line.bytes = bytes;
        line.write();
    }
    keep && !close
}

/// Answers a request its route answers (`respond`, `redirect`), with what the hyper path
/// would send ([`handle::local`], written out by [`response::write_local`]); a body the
/// request had is skipped. Counted and logged as every request is. Whether the connection
/// can take another request.
async fn local<S: ClientIo>(
    c: &Conn,
    io: &mut S,
    stop: &DrainSignal,
    plan: Plan,
    start: &mut usize,
    out: &mut Vec<u8>,
) -> bool {
    let w = &*c.worker;
    let started = Instant::now();
    *start += plan.head_len + plan.body_len as usize;
    let table = &plan.table;
    let cfg = &table.listeners[plan.listener].config.http;
    let route = cfg.routes.get(plan.slot);
    let Some(resp) = route.and_then(|r| handle::local(r, cfg)) else {
        return false;
    };
    let close = plan.close || w.drain.started();
    let len = response::write_local(out, &resp, close, plan.to_head);
    let sent = answer(io, out, stop, w).await;
    let done = Finished {
        route,
        slot: plan.slot,
        cluster: None,
        status: resp.status().as_u16(),
        upstream: None,
    };
    let timing = (started, started.elapsed());
    if let Some(mut line) = handle::record(c, table, plan.listener, &done, timing, plan.logged) {
        line.bytes = if sent { len } else { 0 };
        line.write();
    }
    sent && !close
}

/// Writes an answer corelane made itself (`out`, whole); whether it all went out before the
/// client was found idle.
async fn answer<S: ClientIo>(
    io: &mut S,
    out: &[u8],
    stop: &DrainSignal,
    w: &crate::worker::Worker,
) -> bool {
    let sent = async {
        io.write_all(out).await?;
        io.flush().await
    };
    tokio::select! {
        biased;
        r = sent => r.is_ok(),
        () = idle_stop(stop, w) => false,
    }
}

/// Returns when the connection is found idle (a client that stopped reading); a drain lets
/// the request finish.
async fn idle_stop(stop: &DrainSignal, w: &crate::worker::Worker) {
    loop {
        stop.0.notified().await;
        if !w.drain.started() {
            return;
        }
    }
}

/// A short plain-text error response, as the hyper path's (without the body for a `HEAD`);
/// the body's length.
fn error_response(out: &mut Vec<u8>, status: hyper::StatusCode, close: bool, to_head: bool) -> u64 {
    let reason = status.canonical_reason().unwrap_or("error");
    let mut n = itoa::Buffer::new();
    let body_len = 3 + 1 + reason.len() + 1;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(n.format(body_len).as_bytes());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if to_head {
        return 0;
    }
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    body_len as u64
}

/// A client connection handed to the hyper path: the bytes the fast path had read, then the
/// socket. When hyper is done with it (drops it), the socket comes back through the receiver
/// [`Rewind::new`] gives, so that a 408 can still be said on it (hyper says none).
pub(super) struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    /// `None` only once dropped.
    inner: Option<S>,
    /// Bytes came from the client since the last went to it: a request had begun to arrive.
    /// An estimate, for counting 408s: bytes of a body hyper drains after answering count
    /// too, and a pipelined request begun before a response went out does not.
    heard: bool,
    back: Option<tokio::sync::oneshot::Sender<Back<S>>>,
}

/// A connection back from hyper.
pub(super) struct Back<S> {
    pub io: S,
    /// Bytes had come from the client since the last went to it (a request had begun).
    pub heard: bool,
}

impl<S> Rewind<S> {
    pub(super) fn new(
        prefix: Vec<u8>,
        inner: S,
    ) -> (Self, tokio::sync::oneshot::Receiver<Back<S>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let io = Rewind {
            heard: !prefix.is_empty(),
            prefix,
            pos: 0,
            inner: Some(inner),
            back: Some(tx),
        };
        (io, rx)
    }

    fn inner(&mut self) -> std::io::Result<Pin<&mut S>>
    where
        S: Unpin,
    {
        match &mut self.inner {
            Some(s) => Ok(Pin::new(s)),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl<S> Drop for Rewind<S> {
    fn drop(&mut self) {
        if let (Some(io), Some(tx)) = (self.inner.take(), self.back.take()) {
            let _ = tx.send(Back {
                io,
                heard: self.heard,
            });
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let from = self.pos;
            buf.put_slice(&self.prefix[from..from + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = std::task::ready!(self.inner()?.poll_read(cx, buf));
        // Line ends alone (after a body) begin no request.
        if buf.filled()[before..]
            .iter()
            .any(|b| !matches!(b, b'\r' | b'\n'))
        {
            self.heard = true;
        }
        Poll::Ready(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::task::ready!(self.inner()?.poll_write(cx, data));
        self.heard &= !matches!(r, Ok(n) if n > 0);
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::task::ready!(self.inner()?.poll_write_vectored(cx, bufs));
        self.heard &= !matches!(r, Ok(n) if n > 0);
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(S::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner()?.poll_shutdown(cx)
    }
}
