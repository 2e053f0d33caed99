//! HTTP/2 requests on the fast path: a request to an HTTP/1.1 cluster (plain or TLS), without a body
//! or with one of known length that fits in `buffer_size`, is planned from its decoded header
//! list as the HTTP/1.1 fast path plans its parsed head (`super::super::h1::plan_head`: the
//! same routing, rules, forwarding headers and upstream head), goes over the worker's pooled
//! upstream sockets (`super::super::h1::bridge::exchange_raw`), and its response head is
//! encoded for HTTP/2 straight from the upstream's ([`H2Head`]). No `http::Request` or
//! header map is built either way.
//!
//! Why: with every HTTP/2 request on the generic path (`super::stream::respond`), h2c cost
//! about 31,000 instructions per request (callgrind, bench/RESULTS.md), a third of them in
//! building and reading header maps both ways and in the generic path's future, against
//! 16,000 for an HTTP/1.1 request on the fast path.
//!
//! What it does not take goes to the generic path, which answers it the same way: `CONNECT`,
//! a target that is not a plain origin-form path, `expect` or `trailer` fields, no host, a
//! body of unknown length or larger than `buffer_size`, routes that respond or redirect
//! (which `plan_head` takes for HTTP/1.1 clients, and which are declined here), and whatever
//! `plan_head` does not take (h2 clusters, more fields than `max_headers`, a body over
//! `max_body`).
//!
//! Not here: the connection (`super::serve`), the stream's state (`super::stream`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::time::Instant;

use super::fields::Fields;
use super::hpack;
use super::stream::{Answers, Head, RecvBody, Shared, StreamState, deliver, with_length};
use crate::config::http::{HeaderRules, HttpCluster};
use crate::proto::http::Conn;
use crate::proto::http::body::{BodyState, ClientBody, Fault, RequestBody, ResponseBody};
use crate::proto::http::forward::Failure;
use crate::proto::http::h1::exchange::{self, HeadSink};
use crate::proto::http::h1::request::{self, HopByHop, each_rule, replaced};
use crate::proto::http::h1::response::{self, Framing};
use crate::proto::http::h1::{self, Plan, bridge};
use crate::proto::http::handle::{self, Finished, Waiting};
use crate::upstream::Cluster;
use crate::worker::Worker;

/// A request the fast path takes: its plan, and its upstream head and hash key (in buffers of
/// the worker's `VecPool`).
pub(super) struct Fast {
    plan: Plan,
    /// The plan's cluster.
    cluster: usize,
    head: Vec<u8>,
    key: Vec<u8>,
}

/// Plans a request (`end`: it has no body) for the fast path, if the fast path takes it.
pub(super) fn plan(c: &Conn, fields: &Fields, end: bool) -> Option<Fast> {
    let w = &c.worker;
    let method = std::str::from_utf8(fields.method()).ok()?;
    let target = std::str::from_utf8(fields.path()?).ok()?;
    if method == "CONNECT"
        || !target.starts_with('/')
        || !target.bytes().all(request::plain_uri_byte)
    {
        return None;
    }
    let length = fields.content_length();
    let body_len = match (end, length) {
        (true, _) => 0,
        (false, Some(n)) if n <= w.buffers.size() as u64 => n,
        (false, _) => return None,
    };
    // HTTP/2 clients may split `cookie` into several fields; an HTTP/1.1 upstream gets one
    // (RFC 9113 8.2.3).
    let cookies = fields.iter().filter(|(n, _)| *n == b"cookie").count();
    let mut joined = Vec::new();
    if cookies > 1 {
        for (_, v) in fields.iter().filter(|(n, _)| *n == b"cookie") {
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(v);
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
    let mut n = 0;
    let mut host: Option<&[u8]> = None;
    let mut cookie_done = false;
    for (name, value) in fields.iter() {
        let value = match name {
            b"expect" | b"trailer" => return None,
            b"host" if host.is_some() => return None,
            b"host" => *host.insert(value),
            b"cookie" if cookies > 1 => {
                if std::mem::replace(&mut cookie_done, true) {
                    continue;
                }
                &joined[..]
            }
            _ => value,
        };
        *slots.get_mut(n)? = httparse::Header {
            name: std::str::from_utf8(name).ok()?,
            value,
        };
        n += 1;
    }
    let host = match (host, fields.authority()) {
        (Some(h), _) => h,
        (None, Some(a)) => {
            *slots.get_mut(n)? = httparse::Header {
                name: "host",
                value: a,
            };
            n += 1;
            a
        }
        (None, None) => return None,
    };
    if host.is_empty() || !host.iter().all(|b| (0x21..0x7f).contains(b)) {
        return None;
    }
    let head = request::Head {
        method,
        target,
        headers: &slots[..n],
        host: std::str::from_utf8(host).ok()?,
        content_length: body_len,
        has_length: length.is_some(),
        close: false,
        // Answered by the HTTP/2 server (`expect` fields are not taken here).
        expect_continue: false,
        // The list's size was held to `max_header_size` as it was decoded.
        len: 0,
    };
    let mut out = w.vecs.take();
    let mut key = w.vecs.take();
    let plan = h1::plan_head(c, &head, &mut out, &mut key);
    // A route that answers itself (`respond`, `redirect`) is answered by the generic path.
    match plan.and_then(|p| Some((p.cluster?, p))) {
        Some((cluster, plan)) => Some(Fast {
            plan,
            cluster,
            head: out,
            key,
        }),
        None => {
            w.vecs.put(&mut out);
            w.vecs.put(&mut key);
            None
        }
    }
}

/// One fast-path request's task: its body read whole (if it has one), the exchange, the
/// response head encoded, then the body passed on as it comes; counted and logged as every
/// request is.
pub(super) async fn forward(
    ctx: Rc<Conn>,
    shared: Rc<Shared>,
    st: Rc<RefCell<StreamState>>,
    mut fast: Fast,
    body: Option<RecvBody>,
) {
    let _answers = Answers(&st, &shared);
    let started = Instant::now();
    let w = &ctx.worker;
    let logged = fast.plan.logged.take();
    let plan = &fast.plan;
    let listener = &plan.table.listeners[plan.listener];
    let cfg = &listener.config.http;
    let route = cfg.routes.get(plan.slot);
    let cluster = &plan.table.clusters[fast.cluster];
    let http = &plan.table.config.clusters[fast.cluster].http;
    let total = cfg.total_timeout.map(|t| started + t);
    let limit = total.map_or(started + cfg.request_timeout, |t| {
        t.min(started + cfg.request_timeout)
    });
    let sets = [
        route.map_or(&NO_RULES, |r| &r.response_headers),
        &cfg.response_headers,
    ];
    let mut sink = H2Head {
        block: w.vecs.take(),
        sets: &sets,
        status: 0,
    };
    let waiting = Waiting::new(&ctx.waiting);
    let up = Upstream {
        worker: w,
        cluster,
        http,
        plan,
        head: &fast.head,
        key: &fast.key,
    };
    // Boxed: the exchange's future is large, and kept in place it would be kept twice over
    // in this task (rustc #62958), which tokio copies whole as the task changes stage.
    let sent = Box::pin(up.exchange(body, limit, total, &mut sink)).await;
    drop(waiting);
    let (resp_head, body, status, upstream) = match sent {
        Ok((body, upstream)) => (Head::Encoded(sink.block), body, sink.status, Some(upstream)),
        Err(f) => {
            w.vecs.put(&mut sink.block);
            let (mut parts, body) = handle::failed(&ctx, cluster, f).into_parts();
            with_length(parts.status, &mut parts.headers, &body);
            let status = parts.status.as_u16();
            (Head::Map(parts.status, parts.headers), body, status, None)
        }
    };
    let done = Finished {
        route,
        slot: plan.slot,
        cluster: Some(fast.cluster),
        status,
        upstream,
    };
    let took = (started, started.elapsed());
    let body = match handle::record(&ctx, &plan.table, plan.listener, &done, took, logged) {
        // The line waits for the end of the body.
        Some(line) => body.logged(line),
        None => body,
    };
    let to_head = plan.to_head;
    w.vecs.put(&mut fast.head);
    w.vecs.put(&mut fast.key);
    deliver(&st, &shared, resp_head, (!to_head).then_some(body)).await;
}

/// No header rules (a request that matched no route).
static NO_RULES: HeaderRules = HeaderRules {
    add: Vec::new(),
    set: Vec::new(),
    remove: Vec::new(),
};

/// Where a fast-path request goes.
struct Upstream<'a> {
    worker: &'a Rc<Worker>,
    cluster: &'a Cluster,
    http: &'a HttpCluster,
    plan: &'a Plan,
    head: &'a [u8],
    key: &'a [u8],
}

impl Upstream<'_> {
    /// Reads the request body whole (by `limit`: else 408), then sends the request until a
    /// response head comes.
    async fn exchange(
        &self,
        body: Option<RecvBody>,
        limit: Instant,
        total: Option<Instant>,
        sink: &mut H2Head<'_>,
    ) -> Result<(ResponseBody, SocketAddr), Failure> {
        let w = self.worker;
        let mut bytes = Vec::new();
        if let Some(b) = body {
            bytes = w.vecs.take();
            let want = self.plan.body_len;
            bytes.reserve_exact(usize::try_from(want).unwrap_or(0));
            let mut rb = RequestBody::Stream {
                inner: ClientBody::H2(b),
                // `max_body` was checked against its length.
                left: None,
                state: Rc::new(BodyState::default()),
                length_hidden: false,
            };
            let read = tokio::time::timeout_at(limit, bridge::read_body(&mut rb, &mut bytes, want));
            let failed = match read.await {
                Ok(Ok(())) => None,
                Ok(Err(f)) => Some(f),
                Err(_) => Some(Fault::Slow),
            };
            if let Some(f) = failed {
                w.vecs.put(&mut bytes);
                return Err(Failure::Client(f));
            }
        }
        let r = exchange::Request {
            head: self.head,
            body: &bytes,
            replayable: self.plan.replayable,
            to_head: self.plan.to_head,
            key: self.key,
            deadline: limit.min(Instant::now() + self.http.response_timeout),
            total,
        };
        let sent = bridge::exchange_raw(w, self.cluster, self.http, &r, sink).await;
        w.vecs.put(&mut bytes);
        sent
    }
}

/// Encodes an upstream's HTTP/1.x response head as an HTTP/2 header block: `:status`, the
/// end-to-end fields (hop-by-hop ones go, RFC 9110 7.6.1 and RFC 9113 8.2.2; the length stays
/// only where the body keeps it: a `Content-Length` body, or none at all), then the response
/// header rules (route's, then listener's), as `response::write_client` does for HTTP/1.1.
struct H2Head<'a> {
    block: Vec<u8>,
    sets: &'a [&'a HeaderRules],
    status: u16,
}

impl HeadSink for H2Head<'_> {
    fn head(&mut self, _: &[u8], h: &response::Head<'_>) -> Result<(), &'static str> {
        let out = &mut self.block;
        out.clear();
        self.status = h.status;
        hpack::encode::status(out, h.status);
        let keep_length = matches!(h.framing, Framing::Length(_) | Framing::Empty);
        let hop = HopByHop::of(h.headers);
        for x in h.headers {
            let n = x.name;
            if hop.drops(n)
                || (!keep_length && n.eq_ignore_ascii_case("content-length"))
                || replaced(self.sets, n)
            {
                continue;
            }
            hpack::encode::field(out, n.as_bytes(), x.value);
        }
        each_rule(self.sets, |n, v| hpack::encode::field(out, n, v));
        Ok(())
    }
}
