//! One request, start to finish: route it against the table in use now, answer `respond` and
//! `redirect` routes, or prepare it (hop-by-hop headers, `X-Forwarded-*`, header rules, URI
//! form) and forward it to its cluster; then count it (status class and latency per route and
//! cluster) and log it if the listener keeps an access log.
//!
//! Not here: the connection around the requests (`super::serve`), the upstream exchange and
//! its retries (`super::forward`).

use std::net::SocketAddr;
use std::rc::Rc;

use hyper::http::uri::{Authority, PathAndQuery};
use hyper::http::{HeaderValue, StatusCode, Uri};
use hyper::{Request, Response, header};
use tokio::time::Instant;

use super::body::{self, ClientBody, RequestBody, ResponseBody};
use super::forward::{self, Ctx, Failure};
use super::{Conn, access_log, h1, headers, route, tunnel};
use crate::config::http::{Action, HashOn, Route};
use crate::config::model::Protocol;
use crate::metrics::counters::OwnedGauge;
use crate::metrics::stats::Refusal;
use crate::worker::TableRef;

/// The table and listener a request is routed by: the current table if it still has this
/// listener, else the one the connection last used (its listener is draining).
pub(super) fn routing(c: &Conn) -> (Rc<TableRef>, usize) {
    let now = c.worker.table();
    let mut current = c.table.borrow_mut();
    if !Rc::ptr_eq(&now, &current) {
        if let Some(i) = now.listener_index(c.listen) {
            if now.listeners[i].config.protocol == Protocol::Http {
                // Adopt it, so the old table is not kept alive by this connection.
                *current = now;
                c.listener.set(i);
            }
        }
    }
    (current.clone(), c.listener.get())
}

/// Answers one request and counts it: by status class and latency (to the response headers)
/// for its route and, when forwarded, its cluster.
pub(super) async fn handle(c: &Conn, req: Request<ClientBody>) -> Response<ResponseBody> {
    let started = Instant::now();
    let _waiting = Waiting::new(&c.waiting);
    let (table, li) = routing(c);
    let listener = &table.listeners[li];
    let found = route::find(&listener.config.http.routes, &req);
    let slot = found.map_or(listener.config.http.routes.len(), |(i, _)| i);
    let route = found.map(|(_, r)| r);
    let logged = listener.config.access_log.then(|| Logged {
        method: req.method().as_str().to_owned(),
        host: route::host_with_port(req.headers(), req.uri()).map(str::to_owned),
        path: req.uri().path().to_owned(),
        at: std::time::SystemTime::now(),
    });
    let (resp, cluster, upstream) = answer(c, &table, li, route, started, req).await;
    let done = Finished {
        route,
        slot,
        cluster,
        status: resp.status().as_u16(),
        upstream,
    };
    match record(c, &table, li, &done, (started, started.elapsed()), logged) {
        // The line waits for the end of the body.
        Some(line) => resp.map(|b| b.logged(line)),
        None => resp,
    }
}

/// What the access log needs from a request, taken before it is forwarded.
pub(super) struct Logged {
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub at: std::time::SystemTime,
}

/// How a request went, for [`record`].
pub(super) struct Finished<'a> {
    pub route: Option<&'a Route>,
    /// The route's index, or the number of routes for the listener's default.
    pub slot: usize,
    pub cluster: Option<usize>,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
}

/// Counts a request that arrived at `started` and whose response head went out `took` later
/// (status class and latency, for its route and cluster); and, if the listener keeps an
/// access log, makes its line, which the caller writes when the response has ended.
pub(super) fn record(
    c: &Conn,
    table: &TableRef,
    li: usize,
    done: &Finished<'_>,
    (started, took): (Instant, std::time::Duration),
    logged: Option<Logged>,
) -> Option<access_log::Pending> {
    let listener = &table.listeners[li];
    let w = c.worker.id;
    let line = logged.map(|l| access_log::Pending {
        ts: crate::control::unix_seconds(l.at),
        listener: listener.config.name.clone(),
        route: done
            .route
            .map_or(crate::config::table::DEFAULT_ROUTE, |r| r.name.as_str())
            .to_owned(),
        client: c.peer_value.to_str().unwrap_or("").to_owned(),
        method: l.method,
        host: l.host,
        path: l.path,
        status: done.status,
        upstream: done.upstream.map(|a| a.to_string()),
        duration_ms: took.as_secs_f64() * 1e3,
        started: started.into_std(),
        bytes: 0,
    });
    if let Some(r) = listener.routes.get(done.slot) {
        r.workers.get(w).responses.count(done.status);
        c.worker.histograms.record(r.uid, took);
    }
    if let Some(i) = done.cluster {
        let stats = &table.clusters[i].stats;
        stats.workers.get(w).http_responses.count(done.status);
        c.worker.histograms.record(stats.uid, took);
    }
    line
}

/// What is known of a request corelane answered before routing it.
pub(super) struct Refused<'a> {
    pub why: Refusal,
    pub method: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub path: Option<&'a [u8]>,
    /// When the request began to arrive (for a 408: when the wait for its head began).
    pub started: Instant,
    /// Body bytes of corelane's answer.
    pub bytes: u64,
}

/// Counts a request refused before routing (per listener, by status: no route saw it) and
/// logs it if the listener keeps an access log, with what is known of it.
pub(super) fn refused<'a>(c: &Conn, r: &Refused<'a>) {
    let (table, li) = routing(c);
    let listener = &table.listeners[li];
    listener.stats.workers.get(c.worker.id).http_refused[r.why as usize].inc();
    if !listener.config.access_log {
        return;
    }
    let text = |b: Option<&'a [u8]>| b.and_then(|b| std::str::from_utf8(b).ok());
    let took = r.started.elapsed();
    let now = std::time::SystemTime::now();
    let ms = took.as_secs_f64() * 1e3;
    access_log::record(&access_log::Entry {
        ts: crate::control::unix_seconds(now.checked_sub(took).unwrap_or(now)),
        listener: &listener.config.name,
        route: None,
        client: c.peer_value.to_str().unwrap_or(""),
        method: text(r.method),
        host: text(r.host),
        path: text(r.path),
        status: r.why.status(),
        bytes: r.bytes,
        upstream: None,
        duration_ms: ms,
        total_ms: ms,
    });
}

/// [`refused`] for a request whose head was not in within `header_timeout`, answered with
/// `io::RESPONSE_408`: `head` is what had arrived of it, from which the method and target are
/// logged when its request line is whole.
pub(super) fn too_slow(c: &Conn, head: &[u8], started: Instant) {
    let line = head
        .iter()
        .position(|&b| b == b'\n')
        .map(|end| head[..end].trim_ascii_end());
    let mut words = line.into_iter().flat_map(|l| l.split(|&b| b == b' '));
    let (method, path) = (words.next(), words.next());
    refused(
        c,
        &Refused {
            why: Refusal::Timeout,
            method,
            host: None,
            path,
            started,
            bytes: super::io::BODY_408,
        },
    );
}

/// Counts a request as waiting for its response headers while it lives.
pub(super) struct Waiting<'a>(&'a std::cell::Cell<usize>);

impl<'a> Waiting<'a> {
    pub(super) fn new(n: &'a std::cell::Cell<usize>) -> Self {
        n.set(n.get() + 1);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The response to one request, the cluster it was forwarded to and the endpoint that
/// answered, if any.
async fn answer(
    c: &Conn,
    table: &TableRef,
    li: usize,
    route: Option<&Route>,
    started: Instant,
    req: Request<ClientBody>,
) -> (Response<ResponseBody>, Option<usize>, Option<SocketAddr>) {
    let listener = &table.listeners[li];
    let cfg = &listener.config.http;
    // HTTP/2 clients send each cookie as a field of its own (RFC 9113 8.2.3): they count as
    // the one `Cookie` line HTTP/1.1 would carry.
    let cookies = req.headers().get_all(header::COOKIE).iter().count();
    if req.headers().len() - cookies.saturating_sub(1) > cfg.max_headers {
        // hyper counts an HTTP/1 request's fields itself; HTTP/2 has only a size limit
        // (`max_header_list_size`), so the count is checked here.
        let too_many = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return (error(too_many, "too many header fields"), None, None);
    }
    let cluster_index = match route {
        None => listener.config.cluster,
        Some(r) => match (&r.action, local(r, cfg)) {
            (Action::Forward(i), _) => *i,
            (_, Some(resp)) => return (resp, None, None),
            // Only `Forward` has no local answer.
            (_, None) => {
                return (
                    error(StatusCode::INTERNAL_SERVER_ERROR, "no route action"),
                    None,
                    None,
                );
            }
        },
    };
    let (resp, upstream) = forward_to(c, table, li, route, cluster_index, started, req).await;
    (resp, Some(cluster_index), upstream)
}

/// Forwards a request to cluster `cluster_index`; the response and the endpoint that answered.
async fn forward_to(
    c: &Conn,
    table: &TableRef,
    li: usize,
    route: Option<&Route>,
    cluster_index: usize,
    started: Instant,
    mut req: Request<ClientBody>,
) -> (Response<ResponseBody>, Option<SocketAddr>) {
    let listener = &table.listeners[li];
    let cfg = &listener.config.http;
    let cluster = &table.clusters[cluster_index];
    let http = &table.config.clusters[cluster_index].http;

    if let (Some(max), Some(len)) = (cfg.max_body, content_length(&req)) {
        if len > max {
            return (
                error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                None,
            );
        }
    }
    let mut key_buf = [0u8; 64];
    let key: Vec<u8> = if cluster.balancer.uses_key() {
        hash_key(&http.hash_on, &req, c.peer, &mut key_buf).to_vec()
    } else {
        Vec::new()
    };
    // An upgrade (WebSocket): the client's side of the tunnel, once the upstream agrees.
    let upgrade = upgrade_of(&req);
    let client_side = upgrade.is_some().then(|| tunnel::Client::of(&mut req));
    let body_state = Rc::new(body::BodyState::default());
    if upgrade.is_some() && http.h2 {
        return (
            error(
                StatusCode::NOT_IMPLEMENTED,
                "upgrades need an HTTP/1.1 upstream",
            ),
            None,
        );
    }
    // HTTP/2 upstreams take an absolute URI: its scheme follows the cluster's TLS.
    let h2 = http.h2.then_some(if cluster.tls.is_some() {
        "https"
    } else {
        "http"
    });
    let mut upstream_req = match prepare(req, c, h2, route, cfg, &body_state) {
        Ok(r) => r,
        Err(status) => return (error(status, "bad request"), None),
    };
    if let Some(u) = &upgrade {
        let h = upstream_req.headers_mut();
        // Appended: a `Connection: te` (see `prepare`) stays.
        h.append(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u.clone());
    }
    let mut deadline = (started + cfg.request_timeout).min(Instant::now() + http.response_timeout);
    if let Some(t) = cfg.total_timeout {
        deadline = deadline.min(started + t);
    }
    let w = &c.worker;
    if h1::bridge::takes(
        cfg.fast_path,
        http,
        &upstream_req,
        upgrade.is_some(),
        w.buffers.size(),
    ) {
        let total = cfg.total_timeout.map(|t| started + t);
        let limit = total.map_or(started + cfg.request_timeout, |t| {
            t.min(started + cfg.request_timeout)
        });
        let sent =
            h1::bridge::forward(w, cluster, http, &mut upstream_req, &key, limit, total).await;
        return match sent {
            Ok(sent) => (finish(sent.response, route, cfg), Some(sent.upstream)),
            Err(f) => (failed(c, cluster, f), None),
        };
    }
    let fctx = Ctx {
        worker: w.id,
        pool: &w.http_pool,
        budget: &w.http_budget,
    };
    match forward::forward(
        &fctx,
        cluster,
        http,
        upstream_req,
        &key,
        deadline,
        &body_state,
    )
    .await
    {
        Ok(mut answer) => {
            let switching = answer.response.status() == StatusCode::SWITCHING_PROTOCOLS;
            let tunnel = match (switching, client_side) {
                (false, _) => None,
                (true, Some(client_side)) => {
                    let upstream_side = hyper::upgrade::on(&mut answer.response);
                    Some((client_side, upstream_side))
                }
                (true, None) => {
                    tracing::debug!(cluster = %cluster.name, "upstream switched protocols unasked");
                    return (error(StatusCode::BAD_GATEWAY, "Bad Gateway"), None);
                }
            };
            let (mut parts, inner) = answer.response.into_parts();
            let upgrade_to = parts.headers.get(header::UPGRADE).cloned();
            headers::strip_hop_by_hop(&mut parts.headers);
            let checkin = match tunnel {
                None => Some(answer.checkin),
                Some((client_side, upstream_side)) => {
                    parts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    if let Some(u) = upgrade_to {
                        parts.headers.insert(header::UPGRADE, u);
                    }
                    // The upstream connection leaves hyper's hands (and its `active` gauge)
                    // for the tunnel's: still open, still the endpoint's load.
                    let held = cluster.endpoints.get(answer.endpoint).map(|e| {
                        OwnedGauge::new(e.stats.clone(), w.id, |s, w| &s.workers.get(w).active)
                    });
                    tokio::task::spawn_local(tunnel::run(
                        c.worker.clone(),
                        client_side,
                        upstream_side,
                        listener.config.idle_timeout,
                        held,
                    ));
                    // The connection now belongs to the tunnel.
                    None
                }
            };
            let deadline = cfg
                .total_timeout
                .map(|t| Box::pin(tokio::time::sleep_until(started + t)));
            let body = ResponseBody::Upstream {
                inner,
                checkin,
                deadline,
            };
            let from = cluster.endpoints.get(answer.endpoint).map(|e| e.addr);
            (finish(Response::from_parts(parts, body), route, cfg), from)
        }
        Err(f) => (failed(c, cluster, f), None),
    }
}

/// The answer to a request that got no response from its cluster.
pub(super) fn failed(
    c: &Conn,
    cluster: &crate::upstream::Cluster,
    f: Failure,
) -> Response<ResponseBody> {
    if let Failure::NoUpstream(_) = f {
        cluster.stats.workers.get(c.worker.id).unavailable.inc();
    }
    tracing::debug!(cluster = %cluster.name, peer = %c.peer, failure = %f, "request failed");
    let status = f.status();
    error(status, status.canonical_reason().unwrap_or("error"))
}

/// The protocol an HTTP/1.1 request asks to switch to (`Connection: upgrade` with an
/// `Upgrade` header), if any.
fn upgrade_of<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != hyper::Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())?
}

/// The answer of a `respond` or `redirect` route, its header rules applied (None for a
/// `cluster` route). Both paths answer with it: the hyper path as it is, the HTTP/1.1 fast
/// path written out by hand (`h1::local`).
pub(super) fn local(
    route: &Route,
    cfg: &crate::config::http::HttpListener,
) -> Option<Response<ResponseBody>> {
    let resp = match &route.action {
        Action::Forward(_) => return None,
        Action::Respond {
            status,
            headers,
            body,
        } => {
            let mut resp = Response::new(ResponseBody::full(body.clone()));
            *resp.status_mut() = *status;
            for (n, v) in headers {
                resp.headers_mut().append(n.clone(), v.clone());
            }
            resp
        }
        Action::Redirect { status, location } => {
            let mut resp = Response::new(ResponseBody::Full(None));
            *resp.status_mut() = *status;
            resp.headers_mut()
                .insert(header::LOCATION, location.clone());
            resp
        }
    };
    Some(finish(resp, Some(route), cfg))
}

/// Applies the response header rules (route's, then listener's).
fn finish(
    mut resp: Response<ResponseBody>,
    route: Option<&Route>,
    cfg: &crate::config::http::HttpListener,
) -> Response<ResponseBody> {
    if let Some(r) = route {
        headers::apply(resp.headers_mut(), &r.response_headers);
    }
    headers::apply(resp.headers_mut(), &cfg.response_headers);
    resp
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The request as the upstream gets it: origin-form URI, `Host` kept (or taken from an h2
/// authority), hop-by-hop headers out, forwarding headers and rules in.
fn prepare(
    req: Request<ClientBody>,
    c: &Conn,
    h2: Option<&'static str>,
    route: Option<&Route>,
    cfg: &crate::config::http::HttpListener,
    state: &Rc<body::BodyState>,
) -> Result<Request<RequestBody>, StatusCode> {
    let (mut parts, inner) = req.into_parts();
    let host = route::host_with_port(&parts.headers, &parts.uri)
        .and_then(|h| HeaderValue::from_str(h).ok());
    if !parts.headers.contains_key(header::HOST) {
        if let Some(h) = &host {
            parts.headers.insert(header::HOST, h.clone());
        }
    }
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = pq.parse::<Uri>().map_err(|_| StatusCode::BAD_REQUEST)?;
    }
    if let Some(scheme) = h2 {
        // HTTP/2 carries the host as `:authority`. It must be an authority and nothing more
        // (a `Host: a.com/admin?` must not become part of the path the upstream sees).
        let authority = match &host {
            Some(h) => Authority::try_from(h.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?,
            None => Authority::from_static("localhost"),
        };
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        parts.headers.remove(header::HOST);
        parts.version = hyper::Version::HTTP_2;
    } else {
        parts.version = hyper::Version::HTTP_11;
    }
    let te = parts.headers.get_all(header::TE).iter();
    let te_trailers = headers::accepts_trailers(te.map(HeaderValue::as_bytes));
    headers::strip_hop_by_hop(&mut parts.headers);
    if te_trailers {
        // The client takes trailers, and so does corelane on its behalf (TE is hop-by-hop,
        // and over HTTP/1.1 a TE must be named in Connection).
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
        if h2.is_none() {
            parts
                .headers
                .append(header::CONNECTION, HeaderValue::from_static("te"));
        }
    }
    headers::add_forwarded(&mut parts.headers, &c.peer_value, c.scheme, host);
    headers::apply(&mut parts.headers, &cfg.request_headers);
    if let Some(r) = route {
        headers::apply(&mut parts.headers, &r.request_headers);
    }
    // Trailers announced to an HTTP/1.1 upstream need a chunked body (hyper sends those the
    // `Trailer` header names), so a length the client gave is not passed on.
    let length_hidden = h2.is_none() && parts.headers.contains_key(header::TRAILER);
    if length_hidden {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let body = if hyper::body::Body::is_end_stream(&inner) {
        RequestBody::Empty
    } else {
        RequestBody::Stream {
            inner,
            left: cfg.max_body,
            state: state.clone(),
            length_hidden,
        }
    };
    Ok(Request::from_parts(parts, body))
}

/// What a hash policy hashes for this request.
pub(super) fn hash_key<'a, T: route::Target>(
    on: &HashOn,
    req: &'a T,
    peer: SocketAddr,
    buf: &'a mut [u8; 64],
) -> &'a [u8] {
    match on {
        HashOn::ClientIp => {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{}", peer.ip());
            let n = cur.position() as usize;
            &buf[..n]
        }
        HashOn::Path => req.path().as_bytes(),
        HashOn::Header(n) => req.header_values(n).next().unwrap_or(&[]),
        HashOn::Cookie(name) => req
            .header_values(&header::COOKIE)
            .filter_map(headers::visible_str)
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == name).then_some(v.as_bytes())
            })
            .unwrap_or(&[]),
        HashOn::Query(name) => req
            .query()
            .and_then(|q| {
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == name).then_some(v.as_bytes())
                })
            })
            .unwrap_or(&[]),
    }
}

pub(super) fn error(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(format!("{} {text}\n", status.as_u16())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hash_keys_come_from_where_hash_on_says() {
        let peer: SocketAddr = "192.0.2.9:5555".parse().unwrap();
        let r = req(
            "/a/b?x=1&user=alice&y",
            &[("x-user", "bob"), ("cookie", "a=1; session=s3; b=2")],
        );
        let key = |on: HashOn| {
            let mut buf = [0u8; 64];
            String::from_utf8(hash_key(&on, &r, peer, &mut buf).to_vec()).unwrap()
        };
        assert_eq!(key(HashOn::ClientIp), "192.0.2.9");
        assert_eq!(key(HashOn::Path), "/a/b");
        assert_eq!(
            key(HashOn::Header(hyper::header::HeaderName::from_static(
                "x-user"
            ))),
            "bob"
        );
        assert_eq!(key(HashOn::Cookie("session".into())), "s3");
        assert_eq!(key(HashOn::Query("user".into())), "alice");
        assert_eq!(key(HashOn::Query("y".into())), "");
        assert_eq!(key(HashOn::Query("missing".into())), "");
        assert_eq!(key(HashOn::Cookie("missing".into())), "");
    }

    #[test]
    fn upgrades_need_connection_upgrade_and_an_upgrade_header() {
        let ws = req(
            "/",
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        assert_eq!(upgrade_of(&ws).unwrap(), "websocket");
        assert!(upgrade_of(&req("/", &[("upgrade", "websocket")])).is_none());
        assert!(upgrade_of(&req("/", &[("connection", "upgrade")])).is_none());
        let mut h10 = req("/", &[("connection", "upgrade"), ("upgrade", "websocket")]);
        *h10.version_mut() = hyper::Version::HTTP_10;
        assert!(upgrade_of(&h10).is_none(), "HTTP/1.1 only");
    }
}
