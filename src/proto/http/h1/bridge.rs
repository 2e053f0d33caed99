//! The fast path's upstream exchange for requests on the generic path (`super::super::handle`:
//! HTTP/1.x connections handed over to hyper, and HTTP/2 requests the HTTP/2 server's fast
//! path does not take): a request to an HTTP/1.1 cluster (plain or TLS), without a body or with one of
//! known length that fits in `buffer_size`, goes over the worker's pooled sockets
//! (`super::exchange`) rather than a hyper client connection, and its response goes back as a
//! `Response<ResponseBody>`. A body is read whole first and sent with the head in one write,
//! as the fast path does. [`exchange_raw`] is that exchange with the response head left to
//! the caller's sink, which the HTTP/2 server's fast path (`super::super::h2`) uses to encode
//! it for HTTP/2 directly.
//!
//! Why: on h2c (h2load, bench/RESULTS.md, "HTTP/2 requests over the fast path's upstream
//! sockets") the hyper client side was the larger part of corelane's own CPU per request: a
//! connection task per upstream socket, a channel to it and a oneshot back, the response head
//! parsed into a header map value by value, the body passed through a channel. Here the
//! upstream head is written from the prepared request in one write, and the response head is
//! parsed in place into one shared buffer that the header values point into. A body that came
//! whole with its head (the common small response) becomes one data frame, and the connection
//! goes back to the pool before hyper sees the response; a longer one is read, and decoded
//! when chunked, as hyper polls it ([`RawBody`]). Both paths share one pool of upstream sockets
//! per worker.
//!
//! The exchange's rules apply unchanged: endpoint choice, retries and the retry budget,
//! outlier reports, the response deadline; `total_timeout` cuts a body still streaming.
//!
//! Not here: bodies of unknown length or larger than `buffer_size` (hyper's client streams
//! them while it reads the response, so an upstream that answers early is heard), upgrades,
//! h2 clusters (`super::super::forward`), and requests that announce trailers (a
//! `Trailer` header: hyper's client sends them in a chunked body); unannounced request
//! trailers are dropped, as hyper's client drops them. In a chunked response, chunk extensions
//! are dropped from the decoded body (as hyper's client does) and trailers go on as a
//! trailers frame.

use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Frame, SizeHint};
use hyper::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use hyper::{Request, Response};
use tokio::time::Instant;

use super::chunked::Chunked;
use super::exchange::{self, Exchanged, HeadSink, UpConn};
use super::response::{Framing, Head};
use crate::config::http::HttpCluster;
use crate::upstream::Cluster;
use crate::worker::Worker;

use super::super::body::{BodyError, Fault, RequestBody, ResponseBody, ResponseError};
use super::super::forward::Failure;
use super::super::headers;

/// Whether the bridge takes a prepared request: on a listener with `fast_path` on, not an
/// upgrade or a `CONNECT` (whose 2xx makes the connection a tunnel), to an HTTP/1.1 cluster
/// (plain or TLS), with no body or one whose length is known and at most `limit` bytes (a body
/// whose length is not to be told, for its trailers, is not: `RequestBody::Stream::length_hidden`).
pub fn takes(
    fast_path: bool,
    http: &HttpCluster,
    req: &Request<RequestBody>,
    upgrade: bool,
    limit: usize,
) -> bool {
    let small = match req.body() {
        RequestBody::Empty => true,
        body => hyper::body::Body::size_hint(body)
            .exact()
            .is_some_and(|n| n <= limit as u64),
    };
    fast_path && small && !upgrade && !http.h2 && *req.method() != Method::CONNECT
}

/// A response from upstream and the endpoint it came from.
pub struct Sent {
    pub response: Response<ResponseBody>,
    pub upstream: SocketAddr,
}

/// Sends `req` (prepared by `super::super::handle`: origin-form, headers final) until a
/// response head comes; the response with its body to come.
///
/// `limit` is when the request must be done by (`request_timeout`, `total_timeout`): a body
/// still arriving then is answered 408. The response head is then due within
/// `response_timeout` of the body's end, and by `limit`.
pub async fn forward(
    worker: &Rc<Worker>,
    cluster: &Cluster,
    http: &HttpCluster,
    req: &mut Request<RequestBody>,
    key: &[u8],
    limit: Instant,
    total: Option<Instant>,
) -> Result<Sent, Failure> {
    let mut body = Vec::new();
    if !matches!(req.body(), RequestBody::Empty) {
        let want = hyper::body::Body::size_hint(req.body())
            .exact()
            .unwrap_or(0);
        body = worker.vecs.take();
        body.reserve_exact(usize::try_from(want).unwrap_or(0));
        let read = tokio::time::timeout_at(limit, read_body(req.body_mut(), &mut body, want)).await;
        let failed = match read {
            Ok(Ok(())) => None,
            Err(_) => Some(Failure::Client(Fault::Slow)),
            Ok(Err(f)) => Some(Failure::Client(f)),
        };
        if let Some(f) = failed {
            worker.vecs.put(&mut body);
            return Err(f);
        }
    }
    let deadline = limit.min(Instant::now() + http.response_timeout);
    let sent = send(worker, cluster, http, req, &body, key, deadline, total).await;
    worker.vecs.put(&mut body);
    sent
}

/// Reads a request body whole into `out`: exactly `want` bytes, its declared length. Fewer
/// is a broken body even when it ended without an error (an HTTP/2 client may reset its
/// stream with NO_ERROR mid-body, which hyper reports as the body's end).
pub(in crate::proto::http) async fn read_body(
    body: &mut RequestBody,
    out: &mut Vec<u8>,
    want: u64,
) -> Result<(), Fault> {
    while let Some(frame) =
        std::future::poll_fn(|cx| hyper::body::Body::poll_frame(Pin::new(&mut *body), cx)).await
    {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    if (out.len() + d.len()) as u64 > want {
                        return Err(Fault::Malformed);
                    }
                    out.extend_from_slice(d);
                }
            }
            Err(BodyError::TooLarge) => return Err(Fault::TooLarge),
            Err(BodyError::Client(_)) => return Err(Fault::Malformed),
        }
    }
    if out.len() as u64 != want {
        return Err(Fault::Malformed);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn send(
    worker: &Rc<Worker>,
    cluster: &Cluster,
    http: &HttpCluster,
    req: &Request<RequestBody>,
    body: &[u8],
    key: &[u8],
    deadline: Instant,
    total: Option<Instant>,
) -> Result<Sent, Failure> {
    let mut head = worker.vecs.take();
    write_head(&mut head, req, body.len());
    let method = req.method();
    let r = exchange::Request {
        head: &head,
        body,
        replayable: body.is_empty() && super::super::forward::idempotent(method.as_str()),
        to_head: *method == Method::HEAD,
        key,
        deadline,
        total,
    };
    let mut sink = ToHyper::default();
    let sent = exchange_raw(worker, cluster, http, &r, &mut sink).await;
    worker.vecs.put(&mut head);
    let (body, upstream) = sent?;
    let Some((status, headers, reason)) = sink.parts.take() else {
        // Not reached: an exchange answers only once the sink took a head.
        return Err(Failure::Upstream("no response head".to_owned()));
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    if let Some(r) = reason {
        resp.extensions_mut().insert(r);
    }
    Ok(Sent {
        response: resp,
        upstream,
    })
}

/// Sends a request (head written, body whole) over the worker's pooled sockets until a
/// response head comes, which goes to `sink`; the response body to come (whole already when
/// it came with its head), and the endpoint that answered. The answer is reported to the
/// outlier detector, a broken body (nothing of it passed on yet) as the endpoint's failure.
pub async fn exchange_raw<H: HeadSink>(
    worker: &Rc<Worker>,
    cluster: &Cluster,
    http: &HttpCluster,
    r: &exchange::Request<'_>,
    sink: &mut H,
) -> Result<(ResponseBody, SocketAddr), Failure> {
    let ctx = exchange::Ctx {
        worker: worker.id,
        buffers: &worker.buffers,
        pool: &worker.http_pool,
        budget: &worker.http_budget,
    };
    let x = exchange::exchange(&ctx, cluster, r, sink).await?;
    let (upstream, endpoint, code) = (x.upstream, x.endpoint, x.head.status);
    let mut raw = RawBody::new(worker.clone(), x, http, r.total);
    let body = match raw.whole() {
        Whole::Yes(b) => ResponseBody::full(b),
        Whole::Not => ResponseBody::Raw(Box::new(raw)),
        Whole::Broken => {
            // Nothing went to the client yet: a 502, and the endpoint's failure.
            let why = "broken chunked body";
            if let Some(ep) = cluster.endpoints.get(endpoint) {
                ep.stats.workers.get(worker.id).request_errors.inc();
            }
            cluster.failed(endpoint, why);
            return Err(Failure::Upstream(why.to_owned()));
        }
    };
    exchange::report(cluster, endpoint, code);
    Ok((body, upstream))
}

/// The request line and headers, as HTTP/1.1, for a request whose body (read whole) is
/// `body_len` bytes.
fn write_head(out: &mut Vec<u8>, req: &Request<RequestBody>, body_len: usize) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in req.headers() {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::EXPECT {
            // Answered already (hyper sent 100 Continue when the body was read): the body goes
            // with the head, and some servers refuse `Expect` (417), so nginx drops it too.
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if had_length || body_len > 0 {
        // The length of the body as read, whatever the client's header said.
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Builds hyper's response head from the upstream's: status, headers, and the reason phrase
/// when it is not the status's usual one (hyper writes it to HTTP/1.x clients).
#[derive(Default)]
struct ToHyper {
    parts: Option<(StatusCode, HeaderMap, Option<hyper::ext::ReasonPhrase>)>,
}

const MALFORMED: &str = "malformed response head";

impl HeadSink for ToHyper {
    fn head(&mut self, buf: &[u8], h: &Head<'_>) -> Result<(), &'static str> {
        let status = StatusCode::from_u16(h.status).map_err(|_| MALFORMED)?;
        // One copy of the head; the header values are slices of it.
        let shared = Bytes::copy_from_slice(&buf[..h.len]);
        let mut map = HeaderMap::with_capacity(h.headers.len());
        for x in h.headers {
            let name = HeaderName::from_bytes(x.name.as_bytes()).map_err(|_| MALFORMED)?;
            let value = match within(buf, x.value) {
                Some(r) if r.end <= shared.len() => HeaderValue::from_maybe_shared(shared.slice(r)),
                _ => HeaderValue::from_bytes(x.value),
            }
            .map_err(|_| MALFORMED)?;
            map.append(name, value);
        }
        headers::strip_hop_by_hop(&mut map);
        // The body's length is hyper's to write (from the body); a response without one
        // (HEAD, 204, 304) keeps the upstream's.
        if h.framing != Framing::Empty {
            map.remove(header::CONTENT_LENGTH);
        }
        let reason = (Some(h.reason) != status.canonical_reason())
            .then(|| hyper::ext::ReasonPhrase::try_from(h.reason.as_bytes()).ok())
            .flatten();
        self.parts = Some((status, map, reason));
        Ok(())
    }
}

/// Where `part` lies in `buf`, if it is a slice of it.
fn within(buf: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= buf.len()).then_some(start..end)
}

/// Whether a body is all in the buffer already.
enum Whole {
    Yes(Bytes),
    Not,
    Broken,
}

/// A response body read from its upstream connection as hyper polls for it. The connection
/// goes back to the worker's pool when the body has ended cleanly (with nothing after it); a
/// body dropped before its end, broken or cut closes it. The connection's buffer is the
/// worker's and goes back to it either way.
pub struct RawBody {
    worker: Rc<Worker>,
    up: Option<UpConn>,
    /// Start of the bytes in the connection's buffer not yet taken.
    pos: usize,
    framing: Framing,
    /// `Length`: body bytes not yet handed on.
    left: u64,
    chunked: Chunked,
    /// A chunked body's trailer section as read (up to 4 KiB, `Chunked`'s bound), handed on
    /// as a trailers frame after the data.
    trailers: Vec<u8>,
    reusable: bool,
    uid: u64,
    max_idle: usize,
    max_age: Duration,
    /// `total_timeout`.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBody")
            .field("framing", &self.framing)
            .field("left", &self.left)
            .finish()
    }
}

impl RawBody {
    fn new(worker: Rc<Worker>, x: Exchanged, http: &HttpCluster, total: Option<Instant>) -> Self {
        RawBody {
            worker,
            up: Some(x.up),
            pos: x.head.len,
            framing: x.head.framing,
            left: match x.head.framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunked: Chunked::default(),
            trailers: Vec::new(),
            reusable: x.head.reusable,
            uid: x.uid,
            max_idle: http.max_idle,
            max_age: http.idle_timeout,
            deadline: total.map(|t| Box::pin(tokio::time::sleep_until(t))),
        }
    }

    /// The bytes read and not yet taken.
    fn buffered(&self) -> &[u8] {
        self.up.as_ref().map_or(&[], |u| u.unread(self.pos))
    }

    /// The whole body, if it is all in the buffer: then the connection is done with.
    fn whole(&mut self) -> Whole {
        let pos = self.pos;
        let buf = self.up.as_ref().map_or(&[][..], |u| u.unread(pos));
        let body = match self.framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) if n <= buf.len() as u64 => {
                let b = Bytes::copy_from_slice(&buf[..n as usize]);
                self.pos += n as usize;
                self.left = 0;
                b
            }
            Framing::Chunked => {
                let mut c = self.chunked.clone();
                let (mut data, mut trailers) = (Vec::new(), Vec::new());
                let Ok(at) = c.decode(buf, &mut data, &mut trailers) else {
                    return Whole::Broken;
                };
                // Not all here yet; or trailers (more than the final CRLF), which go as a
                // frame of their own, from `poll_frame`.
                if !c.done() || trailers.len() > 2 {
                    return Whole::Not;
                }
                self.chunked = c;
                self.pos += at;
                Bytes::from(data)
            }
            Framing::Length(_) | Framing::Close => return Whole::Not,
        };
        self.finish(true);
        Whole::Yes(body)
    }

    /// The body has been read to its end (a close-delimited one ends at the close).
    fn ended(&self) -> bool {
        match self.framing {
            Framing::Empty => true,
            Framing::Length(_) => self.left == 0,
            Framing::Chunked => self.chunked.done(),
            Framing::Close => false,
        }
    }

    /// Lets the connection go: back to the pool if the body ended `clean`ly, the upstream
    /// keeps the connection and nothing followed the body; closed otherwise.
    fn finish(&mut self, clean: bool) {
        let Some(mut up) = self.up.take() else {
            return;
        };
        let after = !up.unread(self.pos).is_empty();
        up.detach(&self.worker.buffers);
        if clean && self.reusable && !after {
            self.worker
                .http_pool
                .put_h1(self.uid, up, self.max_idle, self.max_age);
        }
    }

    /// Takes the next piece of body from the buffer: where its data is in the buffer, if any.
    fn take(&mut self) -> Result<Option<Range<usize>>, &'static str> {
        let pos = self.pos;
        let buf = self.up.as_ref().map_or(&[][..], |u| u.unread(pos));
        let from = self.pos;
        match self.framing {
            Framing::Empty => {
                self.pos += buf.len();
                Ok(None)
            }
            Framing::Length(_) => {
                let n = (buf.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                // Bytes after the body stay unread: `finish` sees them.
                self.pos += n;
                Ok(Some(from..from + n))
            }
            Framing::Chunked => {
                let was_trailers = self.chunked.in_trailers();
                let (n, run) = self.chunked.next(buf).map_err(|_| "broken chunked body")?;
                if was_trailers {
                    self.trailers.extend_from_slice(&buf[..n]);
                }
                self.pos += n;
                Ok(run.map(|r| from + r.start..from + r.end))
            }
            Framing::Close => {
                self.pos += buf.len();
                Ok(Some(from..from + buf.len()))
            }
        }
    }

    /// The trailers read, once, if there were any.
    fn trailer_map(&mut self) -> Option<HeaderMap> {
        let bytes = std::mem::take(&mut self.trailers);
        let mut slots = [httparse::EMPTY_HEADER; super::response::MAX_HEADERS];
        let Ok(httparse::Status::Complete((_, fields))) =
            httparse::parse_headers(&bytes, &mut slots)
        else {
            tracing::debug!("upstream trailers dropped: malformed or more than 100 fields");
            return None;
        };
        let mut map = HeaderMap::new();
        for f in fields {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                map.append(n, v);
            }
        }
        // Fields that must not be trailers in HTTP/2 (RFC 9113 8.2.2), or mean framing.
        headers::strip_hop_by_hop(&mut map);
        map.remove(header::CONTENT_LENGTH);
        (!map.is_empty()).then_some(map)
    }

    fn fail(&mut self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, ResponseError>>> {
        self.finish(false);
        Poll::Ready(Some(Err(ResponseError::Broken(why))))
    }
}

impl hyper::body::Body for RawBody {
    type Data = Bytes;
    type Error = ResponseError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseError>>> {
        let this = self.get_mut();
        if let Some(d) = &mut this.deadline {
            if d.as_mut().poll(cx).is_ready() {
                this.finish(false);
                return Poll::Ready(Some(Err(ResponseError::Cut)));
            }
        }
        loop {
            if this.up.is_none() {
                return Poll::Ready(this.trailer_map().map(|t| Ok(Frame::trailers(t))));
            }
            if !this.buffered().is_empty() && !this.ended() {
                let run = match this.take() {
                    Ok(r) => r,
                    Err(why) => return this.fail(why),
                };
                let data = match (&this.up, run) {
                    (Some(up), Some(r)) if !r.is_empty() => Some(up.bytes(r)),
                    _ => None,
                };
                if this.ended() {
                    this.finish(true);
                }
                match data {
                    Some(d) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    None => continue,
                }
            }
            if this.ended() {
                this.finish(true);
                continue;
            }
            let Some(up) = this.up.as_mut() else {
                return Poll::Ready(None);
            };
            this.pos = 0;
            match up.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if this.framing == Framing::Close => {
                    this.finish(false);
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail("upstream closed before the body ended"),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => return this.fail("upstream failed mid-body"),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.up.is_none() && self.trailers.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(_) => SizeHint::with_exact(self.left),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for RawBody {
    fn drop(&mut self) {
        // Not read to its end: the rest of the response is still on the connection.
        self.finish(false);
    }
}
