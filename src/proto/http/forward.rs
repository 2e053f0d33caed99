//! Sending one request upstream over hyper's client: pick an endpoint (policy + health), take
//! a pooled connection or open one, send, and wait for the response headers within the
//! deadline. Used for what the fast path's exchange (`super::h1::bridge`) does not take:
//! bodies larger than `buffer_size` or of unknown length, upgrades, and TLS or HTTP/2
//! clusters.
//!
//! Retries, bounded: a connect failure moves on to the policy's next endpoint (up to the
//! cluster's `connect_attempts` endpoints); a pooled connection that turns out closed before
//! the request was written is replaced, on the same endpoint, without counting an attempt; and
//! an idempotent request without a body whose connection fails after it was written, before a
//! whole response head came (hyper does not say whether part of one did; the fast path's
//! exchange retries only before any response byte), is sent once more to another endpoint if
//! the worker's retry budget (20% of requests, plus a small reserve) allows. A malformed
//! response is not sent again. Anything else is answered with an error status by the caller
//! ([`Failure::status`]).
//!
//! Every failure and every answered request is reported to the cluster's outlier detector;
//! a 5xx response counts as a failure of its endpoint.

use std::cell::Cell;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::http::{HeaderMap, Method, StatusCode, Uri, Version};
use hyper::{Request, Response};
use tokio::time::Instant;

use super::body::{BodyState, Fault, RequestBody};
use super::pool::{self, Checkin, Pool};
use crate::config::model::limits::MAX_CONNECT_ATTEMPTS;
use crate::upstream::Cluster;
use crate::upstream::connect::NoUpstream;

/// Why no response came from upstream.
#[derive(Debug)]
pub enum Failure {
    NoUpstream(NoUpstream),
    /// The deadline passed before the response headers.
    Timeout,
    /// The upstream failed the exchange (reset, closed, malformed response).
    Upstream(String),
    /// The client's body failed while being sent.
    Client(Fault),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoUpstream(n) => f.write_str(n.reason()),
            Failure::Timeout => f.write_str("no response before the deadline"),
            Failure::Upstream(why) => write!(f, "upstream failed: {why}"),
            Failure::Client(Fault::TooLarge) => f.write_str("request body larger than max_body"),
            Failure::Client(Fault::Malformed) => f.write_str("client request body broken"),
            Failure::Client(Fault::Slow) => f.write_str("client request body too slow"),
        }
    }
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NoUpstream(NoUpstream::NoneHealthy) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::NoUpstream(NoUpstream::Unreachable) | Failure::Upstream(_) => {
                StatusCode::BAD_GATEWAY
            }
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::Client(Fault::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::Client(Fault::Malformed) => StatusCode::BAD_REQUEST,
            Failure::Client(Fault::Slow) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// A worker's retry budget: retries may be at most about a fifth of requests.
#[derive(Debug)]
pub struct RetryBudget {
    /// In tenths of a retry.
    tokens: Cell<u32>,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            tokens: Cell::new(Self::RESERVE),
        }
    }
}

impl RetryBudget {
    const PER_REQUEST: u32 = 2;
    const PER_RETRY: u32 = 10;
    const RESERVE: u32 = 100;

    pub(super) fn request(&self) {
        self.tokens
            .set((self.tokens.get() + Self::PER_REQUEST).min(Self::RESERVE));
    }

    fn can_take(&self) -> bool {
        self.tokens.get() >= Self::PER_RETRY
    }

    pub(super) fn take(&self) -> bool {
        let t = self.tokens.get();
        if t < Self::PER_RETRY {
            return false;
        }
        self.tokens.set(t - Self::PER_RETRY);
        true
    }
}

/// What a bodyless idempotent request needs to be sent again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// Whether a request with this method may be sent again after a failure (RFC 9110 9.2.2);
/// every path asks this before a retry.
pub fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

impl Replay {
    fn of(req: &Request<RequestBody>) -> Option<Replay> {
        let again = idempotent(req.method().as_str());
        (again && matches!(req.body(), RequestBody::Empty)).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        })
    }

    fn request(&self) -> Request<RequestBody> {
        let mut r = Request::new(RequestBody::Empty);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// The per-worker things forwarding uses.
pub struct Ctx<'a> {
    pub worker: usize,
    pub pool: &'a Rc<Pool>,
    pub budget: &'a RetryBudget,
}

/// A response from an upstream, with the connection to give back.
pub struct Answer {
    pub response: Response<Incoming>,
    pub checkin: Checkin,
    /// Index into the cluster's endpoints.
    pub endpoint: usize,
}

pub async fn forward(
    ctx: &Ctx<'_>,
    cluster: &Cluster,
    http: &crate::config::http::HttpCluster,
    mut req: Request<RequestBody>,
    key: &[u8],
    deadline: Instant,
    body: &Rc<BodyState>,
) -> Result<Answer, Failure> {
    ctx.budget.request();
    let has_body = !matches!(req.body(), RequestBody::Empty);
    let mut tried = [0usize; MAX_CONNECT_ATTEMPTS as usize];
    let attempts = cluster.connect_attempts.min(tried.len());
    // A copy for a second try exists only where a second endpoint could take it.
    let replay = if attempts > 1 && ctx.budget.can_take() {
        Replay::of(&req)
    } else {
        None
    };
    let mut n = 0;
    let healthy_only = !cluster.panicking();
    let mut last = Failure::NoUpstream(NoUpstream::NoneHealthy);
    while n < attempts {
        let Some(i) = cluster.balancer.pick(
            &cluster.endpoints,
            ctx.worker,
            key,
            &tried[..n],
            healthy_only,
        ) else {
            break;
        };
        tried[n] = i;
        n += 1;
        let ep = &cluster.endpoints[i];
        // Pooled connections are per endpoint and per kind (plain or TLS, HTTP/1.1 or 2), so
        // a reload that changes the kind does not reuse connections of the old one.
        let flavor = u64::from(http.h2) | u64::from(cluster.tls.is_some()) << 1;
        let uid = ep.stats.uid.wrapping_mul(4) | flavor;
        let counters = ep.stats.workers.get(ctx.worker);
        // Pooled connections first; one found closed is replaced without counting an attempt.
        loop {
            let mut pooled = ctx.pool.checkout(uid, http.idle_timeout);
            let mut opening = None;
            if pooled.is_none() && http.h2 {
                // One HTTP/2 connection per endpoint: open it, or wait (within the deadline)
                // for the request opening it.
                loop {
                    if let Some(o) = ctx.pool.open(uid) {
                        opening = Some(o);
                        break;
                    }
                    if let Some(n) = ctx.pool.opening(uid) {
                        let wait = n.notified();
                        if tokio::time::timeout_at(deadline, wait).await.is_err() {
                            return Err(Failure::Timeout);
                        }
                    }
                    pooled = ctx.pool.checkout(uid, http.idle_timeout);
                    if pooled.is_some() {
                        break;
                    }
                }
            }
            let fresh = pooled.is_none();
            let mut sender = match pooled {
                Some(s) => s,
                // Boxed: opening a connection (TLS handshake included) is rare and its state
                // is large; inline, it would make every request's future that large, and the
                // HTTP/2 server moves that future on every stream.
                None => match Box::pin(pool::connect(
                    ep.addr,
                    cluster.connect_timeout,
                    cluster.tls.as_ref(),
                    http.h2,
                    ep.stats.clone(),
                    ctx.worker,
                ))
                .await
                {
                    Ok(s) => s,
                    Err(why) => {
                        counters.connect_errors.inc();
                        cluster.failed(i, &why);
                        tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = %why, "upstream connect failed");
                        last = Failure::NoUpstream(NoUpstream::Unreachable);
                        break;
                    }
                },
            };
            if fresh {
                ctx.pool.share(uid, &sender);
            }
            // Requests waiting for this HTTP/2 connection may use it now.
            drop(opening);
            let ready = match tokio::time::timeout_at(deadline, sender.ready()).await {
                Ok(r) => r,
                Err(_) => return Err(Failure::Timeout),
            };
            if ready.is_err() {
                ctx.pool.forget_shared(uid);
                if fresh {
                    counters.connect_errors.inc();
                    cluster.failed(i, "connection closed at once");
                    last = Failure::NoUpstream(NoUpstream::Unreachable);
                    break;
                }
                continue;
            }
            counters.requests.inc();
            let sent = tokio::time::timeout_at(deadline, sender.send(req)).await;
            match sent {
                Ok(Ok(response)) => {
                    if response.status().is_server_error() {
                        cluster.failed(i, &format!("HTTP {}", response.status().as_u16()));
                    } else {
                        cluster.succeeded(i);
                    }
                    return Ok(Answer {
                        response,
                        checkin: Checkin {
                            pool: ctx.pool.clone(),
                            uid,
                            sender,
                            max_idle: http.max_idle,
                            max_age: http.idle_timeout,
                            // A connection whose request is still uploading (the upstream
                            // answered early) is not given to the next request.
                            request: has_body.then(|| body.clone()),
                        },
                        endpoint: i,
                    });
                }
                Err(_) => {
                    counters.request_errors.inc();
                    // A client still sending its body is slow, not the endpoint.
                    if body.done.get() || !has_body {
                        cluster.failed(i, "no response before the deadline");
                    }
                    return Err(Failure::Timeout);
                }
                Ok(Err(mut e)) => {
                    if let Some(r) = e.take_message() {
                        // Not written: the connection was already gone. A pooled one is
                        // replaced; a fresh one counts as a failed attempt.
                        req = r;
                        ctx.pool.forget_shared(uid);
                        if fresh {
                            cluster.failed(i, "connection closed before the request");
                            last = Failure::NoUpstream(NoUpstream::Unreachable);
                            break;
                        }
                        continue;
                    }
                    counters.request_errors.inc();
                    if let Some(f) = body.fault.get() {
                        // The client's fault, not the endpoint's.
                        return Err(Failure::Client(f));
                    }
                    let e = e.into_error();
                    // A malformed response is the upstream's answer, not a lost exchange: it
                    // is not sent again (hyper tells no more, so a connection lost part-way
                    // through a response head counts as lost before it).
                    let answered = e.is_parse();
                    let why = e.to_string();
                    cluster.failed(i, &format!("failed before a response: {why}"));
                    tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = %why, "upstream failed the request");
                    match &replay {
                        Some(r) if !answered && n < attempts && ctx.budget.take() => {
                            req = r.request();
                            last = Failure::Upstream(why);
                            break;
                        }
                        _ => return Err(Failure::Upstream(why)),
                    }
                }
            }
        }
        // Next endpoint: after a connect failure `req` was never sent; after a failure
        // mid-exchange it is the replay.
    }
    Err(last)
}
