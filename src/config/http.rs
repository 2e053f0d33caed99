//! The HTTP part of the control file: what an `http` listener and a cluster behind one accept
//! (schema, validated model, and the checking between them).
//!
//! A listener's routes are tried in order and the first match wins; a request no route
//! matches goes to the listener's `cluster`. Header names and values are parsed here into
//! `http` types, so the data path never re-checks them. Only checks values; matching and
//! forwarding are `proto::http`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hyper::http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::ConfigError;
use super::validate::{invalid, positive_duration};

/// Keys of `[listeners.NAME]` that only HTTP listeners take (gathered from `ListenerFile`:
/// serde cannot flatten with `deny_unknown_fields`).
#[derive(Debug, Default)]
pub struct HttpListenerFile {
    /// Longest wait for a request's headers, also between requests of a keep-alive connection.
    pub header_timeout: Option<String>,
    /// Longest wait from a request's headers to the upstream's response headers.
    pub request_timeout: Option<String>,
    /// Longest a whole exchange may take, response body included (none by default).
    pub total_timeout: Option<String>,
    pub max_header_size: Option<u64>,
    pub max_headers: Option<u32>,
    pub max_body: Option<u64>,
    /// Serve HTTP/1.1 requests on the hand-written fast path where it applies (default).
    pub fast_path: Option<bool>,
    /// HTTP/2 clients: `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub http2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 clients: `SETTINGS_INITIAL_WINDOW_SIZE`, what a stream may send ahead.
    pub http2_stream_window: Option<u32>,
    /// HTTP/2 clients: what a connection's streams together may send ahead.
    pub http2_connection_window: Option<u32>,
    pub routes: Vec<RouteFile>,
    pub request_headers: Option<HeaderRulesFile>,
    pub response_headers: Option<HeaderRulesFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: Option<String>,
    /// `example.com` or `*.example.com` (any subdomain, not the apex).
    pub host: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub method: Option<String>,
    pub header: Option<HeaderMatchFile>,
    pub cluster: Option<String>,
    pub respond: Option<RespondFile>,
    pub redirect: Option<RedirectFile>,
    pub request_headers: Option<HeaderRulesFile>,
    pub response_headers: Option<HeaderRulesFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchFile {
    pub name: String,
    /// Absent: the header only has to be present.
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondFile {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectFile {
    pub location: String,
    pub status: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesFile {
    /// Appended (an existing header of that name is kept).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Replaces every header of that name.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Keys of `[clusters.NAME]` used when an HTTP listener forwards to the cluster (gathered
/// from `ClusterFile`).
#[derive(Debug, Default)]
pub struct HttpClusterFile {
    /// Longest wait for the response headers once the request is sent.
    pub response_timeout: Option<String>,
    /// Idle keep-alive connections each worker keeps per endpoint.
    pub pool_max_idle: Option<u32>,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Option<String>,
    /// What the hash policies hash: `client_ip`, `path`, `header:NAME`, `cookie:NAME`,
    /// `query:NAME`.
    pub hash_on: Option<String>,
    pub upstream_protocol: Option<UpstreamProtocol>,
}

/// What corelane speaks to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive, a pool of connections.
    #[default]
    Http1,
    /// HTTP/2: h2c with prior knowledge, or ALPN `h2` over TLS; one connection per worker.
    H2,
}

/// A validated HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListener {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub total_timeout: Option<Duration>,
    pub max_header_size: usize,
    pub max_headers: usize,
    pub max_body: Option<u64>,
    /// Whether the HTTP/1.1 fast path (`proto::http::h1`) may serve this listener's requests.
    pub fast_path: bool,
    pub http2: Http2Limits,
    pub routes: Vec<Route>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
}

/// What an HTTP/2 client of the listener may do at once (whichever server serves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// Streams open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused with
    /// `REFUSED_STREAM`, which clients retry.
    pub max_streams: u32,
    /// Request body bytes one stream may send before corelane has passed them on
    /// (`SETTINGS_INITIAL_WINDOW_SIZE`).
    pub stream_window: u32,
    /// The same for all of a connection's streams together: the most request body a
    /// connection can have waiting in corelane.
    pub connection_window: u32,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_streams: defaults::HTTP2_MAX_STREAMS,
            stream_window: defaults::HTTP2_STREAM_WINDOW,
            connection_window: defaults::HTTP2_CONNECTION_WINDOW,
        }
    }
}

/// The route name under which an HTTP listener counts requests no route matched.
pub const DEFAULT_ROUTE: &str = "default";

impl HttpListener {
    /// The names its requests are counted under: each route's, then [`DEFAULT_ROUTE`].
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .map(|r| r.name.as_str())
            .chain(std::iter::once(DEFAULT_ROUTE))
    }
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener {
            header_timeout: defaults::HEADER_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
            total_timeout: None,
            max_header_size: defaults::MAX_HEADER_SIZE,
            max_headers: defaults::MAX_HEADERS,
            max_body: None,
            fast_path: true,
            http2: Http2Limits::default(),
            routes: Vec::new(),
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub host: Option<HostMatch>,
    pub path: Option<PathMatch>,
    pub method: Option<Method>,
    pub header: Option<(HeaderName, Option<HeaderValue>)>,
    pub action: Action,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lowercase host without port.
    Exact(String),
    /// `*.example.com`: the lowercase suffix `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Index into `Config::clusters`.
    Forward(usize),
    Respond {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        /// Shared, so that answering copies no byte of it.
        body: bytes::Bytes,
    },
    Redirect {
        status: StatusCode,
        location: HeaderValue,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }
}

/// A validated cluster's HTTP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCluster {
    pub response_timeout: Duration,
    pub max_idle: usize,
    pub idle_timeout: Duration,
    pub hash_on: HashOn,
    /// Speak HTTP/2 to the endpoints (`upstream_protocol = "h2"`).
    pub h2: bool,
}

impl Default for HttpCluster {
    fn default() -> Self {
        HttpCluster {
            response_timeout: defaults::RESPONSE_TIMEOUT,
            max_idle: defaults::MAX_IDLE,
            idle_timeout: defaults::POOL_IDLE_TIMEOUT,
            hash_on: HashOn::ClientIp,
            h2: false,
        }
    }
}

/// What `ketama` and `maglev` hash for an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    ClientIp,
    Path,
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

pub mod defaults {
    use std::time::Duration;

    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_HEADER_SIZE: usize = 64 * 1024;
    pub const MAX_HEADERS: usize = 100;
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_IDLE: usize = 64;
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// nginx's `http2_max_concurrent_streams`.
    pub const HTTP2_MAX_STREAMS: u32 = 128;
    pub const HTTP2_STREAM_WINDOW: u32 = 256 * 1024;
    pub const HTTP2_CONNECTION_WINDOW: u32 = 1024 * 1024;
}

/// The bounds of the `http2_*` keys: RFC 9113's smallest window (65,535, what a connection
/// starts with) to 16 MiB, the most request body one connection may make corelane hold.
const HTTP2_STREAMS: std::ops::RangeInclusive<u32> = 1..=10_000;
const HTTP2_WINDOW: std::ops::RangeInclusive<u32> = 65_535..=16 << 20;

/// hyper's smallest read buffer; header limits below it are not enforceable.
const MIN_HEADER_SIZE: u64 = 8192;

pub fn listener(
    key: &str,
    f: HttpListenerFile,
    clusters: &HashMap<&str, usize>,
) -> Result<HttpListener, ConfigError> {
    let dur = |field: &str, v: &Option<String>, default: Duration| match v {
        Some(s) => positive_duration(&format!("{key}.{field}"), s),
        None => Ok(default),
    };
    let max_header_size = match f.max_header_size {
        None => defaults::MAX_HEADER_SIZE,
        Some(n) if (MIN_HEADER_SIZE..=1 << 20).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid(
                format!("{key}.max_header_size"),
                format!("{n} is outside {MIN_HEADER_SIZE}..=1048576 bytes"),
            ));
        }
    };
    let max_headers = match f.max_headers {
        None => defaults::MAX_HEADERS,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            return Err(invalid(
                format!("{key}.max_headers"),
                format!("{n} is outside 1..=10000"),
            ));
        }
    };
    let within =
        |field: &str, v: Option<u32>, range: std::ops::RangeInclusive<u32>, default| match v {
            None => Ok(default),
            Some(n) if range.contains(&n) => Ok(n),
            Some(n) => Err(invalid(
                format!("{key}.{field}"),
                format!("{n} is outside {}..={}", range.start(), range.end()),
            )),
        };
    let http2 = Http2Limits {
        max_streams: within(
            "http2_max_concurrent_streams",
            f.http2_max_concurrent_streams,
            HTTP2_STREAMS,
            defaults::HTTP2_MAX_STREAMS,
        )?,
        stream_window: within(
            "http2_stream_window",
            f.http2_stream_window,
            HTTP2_WINDOW,
            defaults::HTTP2_STREAM_WINDOW,
        )?,
        connection_window: within(
            "http2_connection_window",
            f.http2_connection_window,
            HTTP2_WINDOW,
            defaults::HTTP2_CONNECTION_WINDOW,
        )?,
    };
    if f.max_body == Some(0) {
        return Err(invalid(format!("{key}.max_body"), "must be at least 1"));
    }
    let routes = f
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| route(&format!("{key}.routes[{i}]"), i, r, clusters))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, r) in routes.iter().enumerate() {
        let ok = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name != "default"
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !ok {
            return Err(invalid(
                format!("{key}.routes[{i}].name"),
                format!(
                    "{:?} must be 1..=64 characters of A-Z a-z 0-9 _ - . and not \"default\" (the name of unmatched requests)",
                    r.name
                ),
            ));
        }
        if let Some(j) = routes[..i].iter().position(|o| o.name == r.name) {
            return Err(invalid(
                format!("{key}.routes[{i}].name"),
                format!("{:?} is also the name of routes[{j}]", r.name),
            ));
        }
    }
    Ok(HttpListener {
        header_timeout: dur(
            "header_timeout",
            &f.header_timeout,
            defaults::HEADER_TIMEOUT,
        )?,
        request_timeout: dur(
            "request_timeout",
            &f.request_timeout,
            defaults::REQUEST_TIMEOUT,
        )?,
        total_timeout: f
            .total_timeout
            .as_ref()
            .map(|t| positive_duration(&format!("{key}.total_timeout"), t))
            .transpose()?,
        max_header_size,
        max_headers,
        max_body: f.max_body,
        fast_path: f.fast_path.unwrap_or(true),
        http2,
        routes,
        request_headers: rules(&format!("{key}.request_headers"), f.request_headers)?,
        response_headers: rules(&format!("{key}.response_headers"), f.response_headers)?,
    })
}

fn route(
    key: &str,
    index: usize,
    r: RouteFile,
    clusters: &HashMap<&str, usize>,
) -> Result<Route, ConfigError> {
    let host = match r.host {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.*_".contains(&b));
            match h.strip_prefix("*.") {
                Some(rest) if ok && !rest.is_empty() && !rest.contains('*') => {
                    Some(HostMatch::Suffix(format!(".{rest}")))
                }
                None if ok && !h.contains('*') => Some(HostMatch::Exact(h)),
                _ => {
                    return Err(invalid(
                        format!("{key}.host"),
                        format!("{h:?} is not a host name or *.domain"),
                    ));
                }
            }
        }
    };
    let path = match (r.path, r.path_prefix) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                format!("{key}.path_prefix"),
                "a route matches `path` or `path_prefix`, not both",
            ));
        }
        (Some(p), None) => Some(PathMatch::Exact(check_path(&format!("{key}.path"), p)?)),
        (None, Some(p)) => Some(PathMatch::Prefix(check_path(
            &format!("{key}.path_prefix"),
            p,
        )?)),
        (None, None) => None,
    };
    let method = match r.method {
        None => None,
        Some(m) => Some(
            Method::from_bytes(m.as_bytes())
                .ok()
                .filter(|_| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or_else(|| {
                    invalid(
                        format!("{key}.method"),
                        format!("{m:?} is not an HTTP method"),
                    )
                })?,
        ),
    };
    let header = match r.header {
        None => None,
        Some(h) => Some((
            name(&format!("{key}.header.name"), &h.name)?,
            h.value
                .map(|v| value(&format!("{key}.header.value"), &v))
                .transpose()?,
        )),
    };
    let actions = [
        r.cluster.is_some(),
        r.respond.is_some(),
        r.redirect.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(invalid(
            key,
            "a route needs exactly one of `cluster`, `respond` or `redirect`",
        ));
    }
    let action =
        if let Some(c) = r.cluster {
            Action::Forward(*clusters.get(c.as_str()).ok_or_else(|| {
                invalid(format!("{key}.cluster"), format!("unknown cluster {c:?}"))
            })?)
        } else if let Some(resp) = r.respond {
            Action::Respond {
                status: status(&format!("{key}.respond.status"), resp.status, 200..=599)?,
                headers: resp
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        let k = format!("{key}.respond.headers.{n}");
                        Ok((rule_name(&k, n)?, value(&k, v)?))
                    })
                    .collect::<Result<_, ConfigError>>()?,
                body: bytes::Bytes::from(resp.body),
            }
        } else if let Some(rd) = r.redirect {
            Action::Redirect {
                status: status(
                    &format!("{key}.redirect.status"),
                    rd.status.unwrap_or(302),
                    300..=399,
                )?,
                location: value(&format!("{key}.redirect.location"), &rd.location)?,
            }
        } else {
            return Err(invalid(key, "a route needs an action"));
        };
    Ok(Route {
        name: r.name.unwrap_or_else(|| format!("route{index}")),
        host,
        path,
        method,
        header,
        action,
        request_headers: rules(&format!("{key}.request_headers"), r.request_headers)?,
        response_headers: rules(&format!("{key}.response_headers"), r.response_headers)?,
    })
}

fn check_path(key: &str, p: String) -> Result<String, ConfigError> {
    if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            key,
            format!("{p:?} must start with / and have no spaces or control characters"),
        ));
    }
    Ok(p)
}

fn status(
    key: &str,
    s: u16,
    range: std::ops::RangeInclusive<u16>,
) -> Result<StatusCode, ConfigError> {
    if !range.contains(&s) {
        return Err(invalid(
            key,
            format!("{s} is outside {}..={}", range.start(), range.end()),
        ));
    }
    StatusCode::from_u16(s).map_err(|_| invalid(key, format!("{s} is not an HTTP status")))
}

fn name(key: &str, n: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(n.as_bytes())
        .map_err(|_| invalid(key, format!("{n:?} is not a header name")))
}

fn value(key: &str, v: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(v).map_err(|_| invalid(key, format!("{v:?} is not a valid header value")))
}

/// Headers that frame a message or describe one connection: the engine writes them itself,
/// so header rules may not touch them (a removed `Content-Length` would let a body be read
/// upstream as a second request; an added one would contradict the real framing).
const ENGINE_HEADERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn rule_name(key: &str, n: &str) -> Result<HeaderName, ConfigError> {
    let h = name(key, n)?;
    if ENGINE_HEADERS.contains(&h.as_str()) {
        return Err(invalid(
            key,
            format!(
                "{n:?} is written by corelane itself (framing or hop-by-hop) and cannot be changed by rules"
            ),
        ));
    }
    Ok(h)
}

fn rules(key: &str, r: Option<HeaderRulesFile>) -> Result<HeaderRules, ConfigError> {
    let Some(r) = r else {
        return Ok(HeaderRules::default());
    };
    let pairs = |field: &str, m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(n, v)| {
                let k = format!("{key}.{field}.{n}");
                Ok((rule_name(&k, n)?, value(&k, v)?))
            })
            .collect::<Result<Vec<_>, ConfigError>>()
    };
    Ok(HeaderRules {
        add: pairs("add", &r.add)?,
        set: pairs("set", &r.set)?,
        remove: r
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| rule_name(&format!("{key}.remove[{i}]"), n))
            .collect::<Result<_, _>>()?,
    })
}

pub fn cluster(key: &str, f: HttpClusterFile) -> Result<HttpCluster, ConfigError> {
    let d = HttpCluster::default();
    let max_idle = match f.pool_max_idle {
        None => d.max_idle,
        Some(n) if n <= 10_000 => n as usize,
        Some(n) => {
            return Err(invalid(
                format!("{key}.pool_max_idle"),
                format!("{n} is outside 0..=10000"),
            ));
        }
    };
    let hash_on = match f.hash_on.as_deref() {
        None | Some("client_ip") => HashOn::ClientIp,
        Some("path") => HashOn::Path,
        Some(s) => match s.split_once(':') {
            Some(("header", n)) => HashOn::Header(name(&format!("{key}.hash_on"), n)?),
            Some(("cookie", n)) if !n.is_empty() => HashOn::Cookie(n.to_owned()),
            Some(("query", n)) if !n.is_empty() => HashOn::Query(n.to_owned()),
            _ => {
                return Err(invalid(
                    format!("{key}.hash_on"),
                    format!("{s:?} is not client_ip, path, header:NAME, cookie:NAME or query:NAME"),
                ));
            }
        },
    };
    Ok(HttpCluster {
        response_timeout: match &f.response_timeout {
            Some(s) => positive_duration(&format!("{key}.response_timeout"), s)?,
            None => d.response_timeout,
        },
        max_idle,
        idle_timeout: match &f.pool_idle_timeout {
            Some(s) => positive_duration(&format!("{key}.pool_idle_timeout"), s)?,
            None => d.idle_timeout,
        },
        hash_on,
        h2: f.upstream_protocol == Some(UpstreamProtocol::H2),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn with(listener: &str, cluster: &str) -> String {
        format!(
            "[listeners.l]\nlisten = \"127.0.0.1:7001\"\nprotocol = \"http\"\ncluster = \"c\"\n{listener}\n\
             [clusters.c]\nendpoints = [{{ addr = \"127.0.0.1:9001\" }}]\n{cluster}\n"
        )
    }

    fn error_key(listener: &str, cluster: &str) -> String {
        parse(&with(listener, cluster))
            .unwrap_err()
            .key()
            .to_owned()
    }

    #[test]
    fn bad_values_name_their_key() {
        let r = "[[listeners.l.routes]]\n";
        for (listener, cluster, key) in [
            (format!("{r}path = \"/a\""), "", "listeners.l.routes[0]"),
            (
                format!("{r}cluster = \"c\"\nrespond = {{ status = 200 }}"),
                "",
                "listeners.l.routes[0]",
            ),
            (
                format!("{r}cluster = \"nope\""),
                "",
                "listeners.l.routes[0].cluster",
            ),
            (
                format!("{r}path = \"a\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[0].path",
            ),
            (
                format!("{r}path = \"/a\"\npath_prefix = \"/b\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[0].path_prefix",
            ),
            (
                format!("{r}host = \"a.*.com\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[0].host",
            ),
            (
                format!("{r}method = \"get\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[0].method",
            ),
            (
                format!("{r}respond = {{ status = 99 }}"),
                "",
                "listeners.l.routes[0].respond.status",
            ),
            (
                format!("{r}redirect = {{ location = \"/x\", status = 200 }}"),
                "",
                "listeners.l.routes[0].redirect.status",
            ),
            (
                format!("{r}name = \"default\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[0].name",
            ),
            (
                format!("{r}name = \"x\"\ncluster = \"c\"\n{r}name = \"x\"\ncluster = \"c\""),
                "",
                "listeners.l.routes[1].name",
            ),
            (
                "request_headers = { set = { \"bad header\" = \"1\" } }".to_owned(),
                "",
                "listeners.l.request_headers.set.bad header",
            ),
            (
                "request_headers = { remove = [\"Content-Length\"] }".to_owned(),
                "",
                "listeners.l.request_headers.remove[0]",
            ),
            (
                "response_headers = { add = { transfer-encoding = \"chunked\" } }".to_owned(),
                "",
                "listeners.l.response_headers.add.transfer-encoding",
            ),
            (
                "max_header_size = 100".to_owned(),
                "",
                "listeners.l.max_header_size",
            ),
            ("max_body = 0".to_owned(), "", "listeners.l.max_body"),
            (
                format!("{r}respond = {{ status = 200, headers = {{ connection = \"close\" }} }}"),
                "",
                "listeners.l.routes[0].respond.headers.connection",
            ),
            (
                "http2_max_concurrent_streams = 0".to_owned(),
                "",
                "listeners.l.http2_max_concurrent_streams",
            ),
            (
                "http2_stream_window = 65534".to_owned(),
                "",
                "listeners.l.http2_stream_window",
            ),
            (
                "http2_connection_window = 16777217".to_owned(),
                "",
                "listeners.l.http2_connection_window",
            ),
            (String::new(), "hash_on = \"body\"", "clusters.c.hash_on"),
            (
                String::new(),
                "pool_max_idle = 100000",
                "clusters.c.pool_max_idle",
            ),
            (
                String::new(),
                "upstream_protocol = \"h3\"",
                "clusters.c.upstream_protocol",
            ),
            (
                String::new(),
                "[clusters.c.tls]\nserver_name = \"bad name\"",
                "clusters.c.tls.server_name",
            ),
        ] {
            assert_eq!(error_key(&listener, cluster), key, "{listener} / {cluster}");
        }
    }

    #[test]
    fn http2_limits_are_read_with_their_defaults() {
        let l = |text: &str| parse(text).unwrap().listeners[0].http.http2;
        assert_eq!(l(&with("", "")), super::Http2Limits::default());
        let keys = "http2_max_concurrent_streams = 10000\nhttp2_stream_window = 65535\nhttp2_connection_window = 16777216";
        let expect = super::Http2Limits {
            max_streams: 10_000,
            stream_window: 65_535,
            connection_window: 16 << 20,
        };
        assert_eq!(l(&with(keys, "")), expect);
    }

    #[test]
    fn http_keys_are_refused_on_other_listeners() {
        let text = with("max_body = 10", "").replace("protocol = \"http\"", "protocol = \"tcp\"");
        assert_eq!(parse(&text).unwrap_err().key(), "listeners.l.max_body");
        let text = with("http2_stream_window = 100000", "")
            .replace("protocol = \"http\"", "protocol = \"tcp\"");
        assert_eq!(
            parse(&text).unwrap_err().key(),
            "listeners.l.http2_stream_window"
        );
        let text = with("", "[clusters.c.tls]\nverify = false")
            .replace("protocol = \"http\"", "protocol = \"tcp\"");
        assert_eq!(parse(&text).unwrap_err().key(), "clusters.c.tls");
        let text = with(
            "[listeners.l.tls]\ncertificates = [{ cert = \"a\", key = \"b\" }]",
            "",
        )
        .replace("protocol = \"http\"", "protocol = \"redis\"");
        assert_eq!(parse(&text).unwrap_err().key(), "listeners.l.tls");
    }
}
