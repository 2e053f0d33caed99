//! One request of the fast path against its cluster: pick an endpoint, take a pooled
//! HTTP/1.1 connection (plain, or TLS for a cluster with `tls`) or open one, write the request head and body, read the response head,
//! and relay the response to the client as it arrives.
//!
//! Retries follow `super::super::forward`: a connect failure moves on to the policy's next
//! endpoint (up to the cluster's `connect_attempts`); a pooled connection that fails before
//! any response byte is replaced once by a fresh one to the same endpoint when the request
//! can be replayed (an idempotent method, no body); and such a request that fails on a fresh
//! connection, or gets a malformed response, is sent to another endpoint if the worker's
//! retry budget allows. Every answer
//! and failure is reported to the cluster's outlier detector (a 5xx counts as a failure).
//!
//! The request, head and body, goes upstream in one write (the caller has it whole). The
//! response comes through a buffer the connection borrows from the worker for the request. A
//! connection goes back to the worker's pool once its response has been relayed whole, if the
//! upstream keeps it open and sent nothing more; pooled connections that expire or that their
//! upstream closes are dropped by the worker's sweep (`super::super::idle`).
//!
//! Not here: the client connection and its requests (`super`), request and response heads
//! (`super::request`, `super::response`).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::chunked::Chunked;
use super::response::{self, Framing};
use crate::config::model::limits::MAX_CONNECT_ATTEMPTS;
use crate::io::buffers::BufferPool;
use crate::io::counted::{Io, UpstreamSide};
use crate::metrics::stats::EndpointStats;
use crate::tls::client::ClusterTls;
use crate::upstream::Cluster;
use crate::upstream::connect::NoUpstream;

use super::super::forward::{Failure, RetryBudget};
use super::super::handle::Waiting;
use super::super::pool::Pool;

/// An HTTP/1.1 connection to an endpoint, plain or TLS (a cluster with `tls`), with the bytes
/// read from it and not yet passed on (`buf[..filled]`). The endpoint's `active` gauge counts
/// it while it lives.
///
/// `buf` is one of the worker's buffers (`buffer_size`) while a request uses the connection,
/// and empty while it waits in the pool; a response head must fit in it (as nginx's
/// `proxy_buffer_size`), or the response is refused with 502.
pub struct UpConn {
    io: UpIo,
    buf: Box<[u8]>,
    filled: usize,
}

/// The socket of an [`UpConn`]: TCP, or TLS over it (rustls, the cluster's `tls`). Bytes are
/// counted on the socket (ciphertext over TLS), as the hyper path counts them.
enum UpIo {
    Plain(Io<UpstreamSide>),
    Tls(Box<tokio_rustls::client::TlsStream<Io<UpstreamSide>>>),
}

impl UpIo {
    fn socket(&self) -> &Io<UpstreamSide> {
        match self {
            UpIo::Plain(io) => io,
            UpIo::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for UpIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            UpIo::Tls(tls) => std::pin::Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Plain(io) => std::pin::Pin::new(io).poll_write(cx, data),
            UpIo::Tls(tls) => std::pin::Pin::new(&mut **tls).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpIo::Plain(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
            UpIo::Tls(tls) => std::pin::Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpIo::Plain(io) => io.is_write_vectored(),
            UpIo::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
            UpIo::Tls(tls) => std::pin::Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpIo::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            UpIo::Tls(tls) => std::pin::Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

impl std::fmt::Debug for UpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpConn")
            .field("filled", &self.filled)
            .finish()
    }
}

impl Drop for UpConn {
    fn drop(&mut self) {
        let c = &self.io.socket().counted;
        c.0.workers.get(c.1).active.dec();
    }
}

impl UpConn {
    async fn open(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&ClusterTls>,
        stats: Arc<EndpointStats>,
        worker: usize,
    ) -> Result<UpConn, String> {
        let stream = super::super::pool::dial(addr, timeout).await?;
        let io = Io {
            stream: Arc::new(stream),
            counted: UpstreamSide(stats.clone(), worker),
        };
        let io = match tls {
            None => UpIo::Plain(io),
            Some(t) => UpIo::Tls(Box::new(
                super::super::pool::tls_handshake(t, addr, io, timeout).await?,
            )),
        };
        let counters = stats.workers.get(worker);
        counters.connections.inc();
        counters.active.inc();
        Ok(UpConn {
            io,
            buf: Box::default(),
            filled: 0,
        })
    }

    /// Whether the connection is still usable after sitting in the pool: nothing arrived on it
    /// (no close, no stray bytes; over TLS, records that carry no data, such as session
    /// tickets, are taken in). Costs no syscall unless the socket shows readable.
    pub fn still_open(&mut self) -> bool {
        // Over TLS, bytes rustls took in with a response's last read (plaintext past its end,
        // a close_notify) leave no trace on the socket: rustls tells.
        if let UpIo::Tls(tls) = &self.io {
            if !tls.get_ref().1.wants_read() {
                return false;
            }
        }
        let mut cx = Context::from_waker(Waker::noop());
        let socket = &self.io.socket().stream;
        match socket.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be left over from the last read of a response that filled the
            // buffer exactly; a read tells.
            Poll::Ready(Ok(())) => match &mut self.io {
                UpIo::Plain(io) => matches!(
                    io.stream.try_read(&mut [0u8; 1]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock
                ),
                UpIo::Tls(tls) => {
                    let mut scratch = [0u8; 1];
                    let mut rb = tokio::io::ReadBuf::new(&mut scratch);
                    std::pin::Pin::new(&mut **tls)
                        .poll_read(&mut cx, &mut rb)
                        .is_pending()
                }
            },
        }
    }

    /// Borrows a buffer from the worker for a request.
    fn attach(&mut self, buffers: &BufferPool) {
        if self.buf.is_empty() {
            self.buf = buffers.take();
        }
        self.filled = 0;
    }

    /// Gives the buffer back (the connection is idle or going away).
    pub fn detach(&mut self, buffers: &BufferPool) {
        if !self.buf.is_empty() {
            buffers.put(std::mem::take(&mut self.buf));
        }
        self.filled = 0;
    }

    /// The bytes read into the buffer from `pos` on.
    pub fn unread(&self, pos: usize) -> &[u8] {
        self.buf.get(pos..self.filled).unwrap_or(&[])
    }

    /// A copy of `range` of the buffer, for a body frame.
    pub fn bytes(&self, range: std::ops::Range<usize>) -> hyper::body::Bytes {
        hyper::body::Bytes::copy_from_slice(self.buf.get(range).unwrap_or(&[]))
    }

    /// Reads into the buffer from its start (what was there has been taken); 0 at EOF.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.filled = 0;
        let mut rb = tokio::io::ReadBuf::new(&mut self.buf);
        match std::pin::Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                self.filled = rb.filled().len();
                Poll::Ready(Ok(self.filled))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads more into the buffer; 0 at EOF.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.filled == self.buf.len() {
            return Err(io::Error::other("buffer full"));
        }
        self.io
            .read(&mut self.buf[self.filled..])
            .await
            .inspect(|n| self.filled += n)
    }
}

/// Writes `a` then `b`, as one vectored write when both fit.
pub async fn write_two<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut a: &[u8],
    mut b: &[u8],
) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            w.write(b).await?
        } else if b.is_empty() {
            w.write(a).await?
        } else {
            w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                .await?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

/// What the exchange needs of the request.
pub struct Request<'a> {
    /// The head for the upstream (`super::request::write_upstream`).
    pub head: &'a [u8],
    /// The whole request body (the caller has read it).
    pub body: &'a [u8],
    /// Idempotent and without a body: may be sent again after a failure.
    pub replayable: bool,
    /// A `HEAD` request (its response has no body).
    pub to_head: bool,
    pub key: &'a [u8],
    /// Time limit for the response head.
    pub deadline: Instant,
    /// Time limit for the whole response (`total_timeout`).
    pub total: Option<Instant>,
}

/// How the request went.
pub enum Outcome {
    /// A response was relayed (or its relay failed part way, `keep` false); what it was is
    /// in [`Reply::answered`].
    Answered {
        /// The client connection can take its next request.
        keep: bool,
    },
    /// Nothing reached the client: the caller answers with the failure's status.
    Failed(Failure),
}

/// The per-worker things the exchange uses.
pub struct Ctx<'a> {
    pub worker: usize,
    pub buffers: &'a BufferPool,
    pub pool: &'a Pool,
    pub budget: &'a RetryBudget,
}

/// Why an attempt ended without a response head.
enum AttemptError {
    /// The upstream connection failed or closed; `early` if no response byte came.
    Upstream {
        why: String,
        early: bool,
    },
    Bad(&'static str),
    /// The response head did not fit in `buffer_size`: the configuration's limit, not the
    /// endpoint's fault, and no other endpoint would do better.
    TooLarge,
}

/// What takes a response head once it has been read: the fast path writes the client's head
/// (`Reply`), the bridge builds hyper's (`super::bridge`). `buf` is what the head's fields
/// borrow from. An error refuses the response as malformed (502).
pub trait HeadSink {
    fn head(&mut self, buf: &[u8], head: &response::Head<'_>) -> Result<(), &'static str>;
}

impl HeadSink for Reply<'_> {
    fn head(&mut self, _: &[u8], h: &response::Head<'_>) -> Result<(), &'static str> {
        let close = self.close || h.framing == Framing::Close;
        self.out.clear();
        response::write_client(self.out, h, close, self.sets);
        Ok(())
    }
}

/// A response whose head has been read, and the connection it is coming on.
pub struct Exchanged {
    pub up: UpConn,
    pub head: HeadRead,
    /// The endpoint's pool key.
    pub uid: u64,
    pub upstream: SocketAddr,
    /// The endpoint's index in its cluster.
    pub endpoint: usize,
}

/// Sends a request the fast path has whole to the client's response relayed to its end.
pub async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    cluster: &Cluster,
    http: &crate::config::http::HttpCluster,
    req: &Request<'_>,
    client: &mut S,
    reply: &mut Reply<'_>,
) -> Outcome {
    match exchange(ctx, cluster, req, reply).await {
        Ok(x) => {
            report(cluster, x.endpoint, x.head.status);
            relay(ctx, http, x, req, client, reply).await
        }
        Err(f) => Outcome::Failed(f),
    }
}

/// Tells the cluster's outlier detector how endpoint `i` answered: a 5xx is a failure. The
/// caller of [`exchange`] does it once it has seen what it needs of the response (the bridge
/// looks at a body that came whole with its head first).
pub fn report(cluster: &Cluster, i: usize, status: u16) {
    if status >= 500 {
        cluster.failed(i, &format!("HTTP {status}"));
    } else {
        cluster.succeeded(i);
    }
}

/// Sends `req` (with the retries above) until a response head comes, which goes to `sink`;
/// the failure of the last try if none does. Failures are reported to the outlier detector
/// here; an answer is the caller's to report ([`report`]).
pub async fn exchange<H: HeadSink>(
    ctx: &Ctx<'_>,
    cluster: &Cluster,
    req: &Request<'_>,
    sink: &mut H,
) -> Result<Exchanged, Failure> {
    ctx.budget.request();
    let mut tried = [0usize; MAX_CONNECT_ATTEMPTS as usize];
    let attempts = cluster.connect_attempts.min(tried.len());
    let mut n = 0;
    let healthy_only = !cluster.panicking();
    let mut last = Failure::NoUpstream(NoUpstream::NoneHealthy);
    'endpoints: while n < attempts {
        let Some(i) = cluster.balancer.pick(
            &cluster.endpoints,
            ctx.worker,
            req.key,
            &tried[..n],
            healthy_only,
        ) else {
            break;
        };
        tried[n] = i;
        n += 1;
        let ep = &cluster.endpoints[i];
        // Pooled per endpoint and kind (plain or TLS), as on the hyper path.
        let uid = ep.stats.uid.wrapping_mul(4) | u64::from(cluster.tls.is_some()) << 1;
        let counters = ep.stats.workers.get(ctx.worker);
        let mut replaced = false;
        loop {
            let pooled = if replaced {
                None
            } else {
                ctx.pool.checkout_h1(uid)
            };
            let fresh = pooled.is_none();
            let mut up = match pooled {
                Some(u) => u,
                None => {
                    let limit = cluster.connect_timeout;
                    let tls = cluster.tls.as_ref();
                    match Box::pin(UpConn::open(
                        ep.addr,
                        limit,
                        tls,
                        ep.stats.clone(),
                        ctx.worker,
                    ))
                    .await
                    {
                        Ok(u) => u,
                        Err(why) => {
                            counters.connect_errors.inc();
                            cluster.failed(i, &why);
                            tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = %why, "upstream connect failed");
                            last = Failure::NoUpstream(NoUpstream::Unreachable);
                            continue 'endpoints;
                        }
                    }
                }
            };
            up.attach(ctx.buffers);
            counters.requests.inc();
            let sent = tokio::time::timeout_at(req.deadline, attempt(&mut up, req, sink)).await;
            if !matches!(sent, Ok(Ok(_))) {
                up.detach(ctx.buffers);
            }
            let head = match sent {
                Ok(Ok(head)) => head,
                Err(_) => {
                    counters.request_errors.inc();
                    cluster.failed(i, "no response before the deadline");
                    return Err(Failure::Timeout);
                }
                Ok(Err(AttemptError::TooLarge)) => {
                    counters.request_errors.inc();
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, "upstream response head larger than buffer_size");
                    return Err(Failure::Upstream(
                        "response head larger than buffer_size".to_owned(),
                    ));
                }
                Ok(Err(AttemptError::Bad(why))) => {
                    counters.request_errors.inc();
                    cluster.failed(i, why);
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = why, "upstream sent a bad response");
                    // As a failure mid-exchange: a replayable request may try another endpoint.
                    if req.replayable && n < attempts && ctx.budget.take() {
                        last = Failure::Upstream(why.to_owned());
                        continue 'endpoints;
                    }
                    return Err(Failure::Upstream(why.to_owned()));
                }
                Ok(Err(AttemptError::Upstream { why, early })) => {
                    if early && req.replayable && !fresh {
                        // Most likely closed by the upstream while pooled: try a fresh one.
                        replaced = true;
                        continue;
                    }
                    counters.request_errors.inc();
                    cluster.failed(i, &format!("failed before a response: {why}"));
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = %why, "upstream failed the request");
                    if early && req.replayable && n < attempts && ctx.budget.take() {
                        last = Failure::Upstream(why);
                        continue 'endpoints;
                    }
                    return Err(Failure::Upstream(why));
                }
            };
            return Ok(Exchanged {
                up,
                head,
                uid,
                upstream: ep.addr,
                endpoint: i,
            });
        }
    }
    Err(last)
}

/// What is known of a response once its head has been read; the head itself is still at the
/// start of the connection's buffer (`len` bytes), and the client's version of it is written.
pub struct HeadRead {
    pub status: u16,
    pub len: usize,
    pub framing: Framing,
    pub reusable: bool,
}

/// How the response head is passed on to the client.
pub struct Reply<'a> {
    /// Where the client's response head is written.
    pub out: &'a mut Vec<u8>,
    /// The client connection ends after this response (`Connection: close`).
    pub close: bool,
    /// Response header rules: route's, then listener's.
    pub sets: &'a [&'a crate::config::http::HeaderRules],
    /// Counts the request as waiting (the idle sweep spares the connection) until the
    /// response head arrives; a client that then stops reading is idle like any other.
    pub waiting: Option<Waiting<'a>>,
    /// Set when the response head went to the client.
    pub answered: Option<Answered>,
}

/// A response whose head went to the client.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub status: u16,
    /// Body bytes written to the client (a chunked body's framing included), once the body
    /// has been relayed.
    pub bytes: u64,
    pub upstream: SocketAddr,
    /// When its head was ready to go out.
    pub at: Instant,
}

/// Sends the request and reads up to the end of the response head (skipping 1xx), writing
/// the client's response head into `reply.out`.
async fn attempt<H: HeadSink>(
    up: &mut UpConn,
    req: &Request<'_>,
    sink: &mut H,
) -> Result<HeadRead, AttemptError> {
    // The head and the body in one write (and out of rustls's buffer, over TLS).
    let written = async {
        write_two(&mut up.io, req.head, req.body).await?;
        up.io.flush().await
    };
    written.await.map_err(|e| AttemptError::Upstream {
        why: e.to_string(),
        early: true,
    })?;
    // The response head.
    loop {
        match response_head(up, req.to_head, sink) {
            Some(Ok(h)) => return Ok(h),
            Some(Err(why)) => return Err(AttemptError::Bad(why)),
            None => {}
        }
        if up.filled == up.buf.len() {
            return Err(AttemptError::TooLarge);
        }
        let early = up.filled == 0;
        match up.fill().await {
            Ok(0) => {
                return Err(AttemptError::Upstream {
                    why: "connection closed".to_owned(),
                    early,
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(AttemptError::Upstream {
                    why: e.to_string(),
                    early,
                });
            }
        }
    }
}

/// Looks for a whole response head in `up.buf`, dropping 1xx interim responses before it;
/// hands it to `sink` when one is there. `None`: more bytes are needed.
fn response_head<H: HeadSink>(
    up: &mut UpConn,
    to_head: bool,
    sink: &mut H,
) -> Option<Result<HeadRead, &'static str>> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; response::MAX_HEADERS];
        let buf = &up.buf[..up.filled];
        match response::parse(buf, &mut slots, to_head) {
            response::Parsed::Head(h) => {
                if let Err(why) = sink.head(buf, &h) {
                    return Some(Err(why));
                }
                return Some(Ok(HeadRead {
                    status: h.status,
                    len: h.len,
                    framing: h.framing,
                    reusable: h.reusable,
                }));
            }
            response::Parsed::Interim { len } => {
                up.buf.copy_within(len..up.filled, 0);
                up.filled -= len;
            }
            response::Parsed::Bad(why) => return Some(Err(why)),
            response::Parsed::Partial => return None,
        }
    }
}

/// Writes the response head and body to the client as they come; gives the connection back
/// to the pool when the response ended cleanly and the upstream keeps it.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    http: &crate::config::http::HttpCluster,
    x: Exchanged,
    req: &Request<'_>,
    client: &mut S,
    reply: &mut Reply<'_>,
) -> Outcome {
    let Exchanged {
        mut up,
        head,
        uid,
        upstream,
        ..
    } = x;
    reply.waiting = None;
    let answered = reply.answered.insert(Answered {
        status: head.status,
        bytes: 0,
        upstream,
        at: Instant::now(),
    });
    // Counted as it goes: a relay stopped part-way (the client stopped reading) has sent
    // what it has sent.
    let sent = &mut answered.bytes;
    let body = relay_body(&mut up, head.len, head.framing, client, reply.out, sent);
    let ended = match req.total {
        Some(t) => tokio::time::timeout_at(t, body)
            .await
            .unwrap_or(Ok(BodyEnd::Cut)),
        None => body.await,
    };
    up.detach(ctx.buffers);
    let keep = match ended {
        Ok(BodyEnd::Whole { reuse }) => {
            if reuse && head.reusable {
                ctx.pool.put_h1(uid, up, http.max_idle, http.idle_timeout);
            }
            !reply.close && head.framing != Framing::Close
        }
        Ok(BodyEnd::Cut) | Err(_) => false,
    };
    Outcome::Answered { keep }
}

/// How a relayed body ended.
enum BodyEnd {
    /// As framed; `reuse` when nothing followed it on the connection.
    Whole { reuse: bool },
    /// The upstream broke the framing or closed early: the client got a cut response.
    Cut,
}

/// Relays the body after the head (`head_len` bytes at the start of `up.buf`), the client's
/// response head `out` first, counting the body bytes written in `sent`.
async fn relay_body<S: AsyncWrite + Unpin>(
    up: &mut UpConn,
    head_len: usize,
    framing: Framing,
    client: &mut S,
    out: &[u8],
    sent: &mut u64,
) -> io::Result<BodyEnd> {
    let after = up.filled - head_len;
    let mut chunked = Chunked::default();
    let mut left = 0u64;
    let mut broken = false;
    let first = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => {
            let k = (after as u64).min(n);
            left = n - k;
            k as usize
        }
        Framing::Chunked => match chunked.feed(&up.buf[head_len..up.filled]) {
            Ok(k) => k,
            Err(_) => {
                broken = true;
                0
            }
        },
        Framing::Close => after,
    };
    write_two(client, out, &up.buf[head_len..head_len + first]).await?;
    client.flush().await?;
    *sent = first as u64;
    if broken {
        return Ok(BodyEnd::Cut);
    }
    let mut extra = after > first;
    let mut ended = match framing {
        Framing::Empty => true,
        Framing::Length(_) => left == 0,
        Framing::Chunked => chunked.done(),
        Framing::Close => false,
    };
    while !ended {
        let n = match up.io.read(&mut up.buf).await {
            Ok(0) if framing == Framing::Close => return Ok(BodyEnd::Whole { reuse: false }),
            Ok(0) | Err(_) => return Ok(BodyEnd::Cut),
            Ok(n) => n,
        };
        let take = match framing {
            Framing::Length(_) => {
                let k = (n as u64).min(left);
                left -= k;
                ended = left == 0;
                k as usize
            }
            Framing::Chunked => match chunked.feed(&up.buf[..n]) {
                Ok(k) => {
                    ended = chunked.done();
                    k
                }
                Err(_) => return Ok(BodyEnd::Cut),
            },
            Framing::Empty | Framing::Close => n,
        };
        client.write_all(&up.buf[..take]).await?;
        client.flush().await?;
        *sent += take as u64;
        extra = take < n;
    }
    up.filled = 0;
    Ok(BodyEnd::Whole { reuse: !extra })
}
