//! Route matching: the first route of the listener whose conditions all hold (host, path,
//! method, header) decides what happens to a request; no match forwards to the listener's
//! cluster.
//!
//! Host is compared without its port and without case; a `*.example.com` route matches any
//! subdomain but not `example.com` itself (as nginx's `server_name *.example.com`). Paths are
//! compared byte for byte on the request's path (no query), as received: no decoding or
//! normalisation, so what matches is what the upstream sees.

use hyper::Request;
use hyper::http::{HeaderMap, HeaderName, Uri};

use crate::config::http::{HostMatch, PathMatch, Route};

/// The host a request is for, with its port: the `Host` header, or the authority of an
/// absolute URI (HTTP/2 `:authority`).
pub fn host_with_port<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    match headers.get(hyper::header::HOST) {
        Some(h) => h.to_str().ok(),
        None => uri.authority().map(|a| a.as_str()),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// What routing and hashing look at in a request: a hyper request, or the fast path's parsed
/// HTTP/1.1 head (`super::h1`).
pub trait Target {
    fn method(&self) -> &str;
    /// The path, without the query.
    fn path(&self) -> &str;
    fn query(&self) -> Option<&str>;
    /// The host with its port, as [`host_with_port`] finds it.
    fn host(&self) -> Option<&str>;
    /// The values of header `name`, in order.
    fn header_values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]>;
}

impl<B> Target for Request<B> {
    fn method(&self) -> &str {
        Request::method(self).as_str()
    }
    fn path(&self) -> &str {
        self.uri().path()
    }
    fn query(&self) -> Option<&str> {
        self.uri().query()
    }
    fn host(&self) -> Option<&str> {
        host_with_port(self.headers(), self.uri())
    }
    fn header_values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        self.headers().get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// The first of `routes` that matches, with its index.
pub fn find<'r, T: Target>(routes: &'r [Route], req: &T) -> Option<(usize, &'r Route)> {
    let parts_host = || req.host().map(strip_port);
    routes.iter().enumerate().find(|(_, r)| {
        if let Some(m) = &r.method {
            if req.method() != m.as_str() {
                return false;
            }
        }
        if let Some(p) = &r.path {
            let path = req.path();
            let ok = match p {
                PathMatch::Exact(e) => path == e,
                PathMatch::Prefix(pre) => path.starts_with(pre.as_str()),
            };
            if !ok {
                return false;
            }
        }
        if let Some(h) = &r.host {
            let Some(host) = parts_host() else {
                return false;
            };
            let ok = match h {
                HostMatch::Exact(e) => host.eq_ignore_ascii_case(e),
                HostMatch::Suffix(s) => {
                    host.len() > s.len()
                        && host.as_bytes()[host.len() - s.len()..]
                            .eq_ignore_ascii_case(s.as_bytes())
                }
            };
            if !ok {
                return false;
            }
        }
        if let Some((name, value)) = &r.header {
            let mut values = req.header_values(name);
            let ok = match value {
                None => values.next().is_some(),
                Some(v) => values.any(|x| x == v.as_bytes()),
            };
            if !ok {
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn routes(extra: &str) -> Vec<Route> {
        let text = format!(
            "[listeners.l]\nlisten = \"127.0.0.1:7001\"\nprotocol = \"http\"\ncluster = \"c\"\n{extra}\n\
             [clusters.c]\nendpoints = [{{ addr = \"127.0.0.1:9001\" }}]\n"
        );
        parse(&text).unwrap().listeners[0].http.routes.clone()
    }

    fn req(method: &str, uri: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn which(rs: &[Route], r: &Request<()>) -> Option<String> {
        find(rs, r).map(|(_, r)| r.name.clone())
    }

    #[test]
    fn first_match_wins_and_every_condition_must_hold() {
        let rs = routes(
            r#"
            [[listeners.l.routes]]
            name = "api-post"
            path_prefix = "/api/"
            method = "POST"
            respond = { status = 201 }
            [[listeners.l.routes]]
            name = "api"
            path_prefix = "/api/"
            respond = { status = 200 }
            [[listeners.l.routes]]
            name = "exact"
            path = "/health"
            respond = { status = 200 }
            [[listeners.l.routes]]
            name = "wild"
            host = "*.Example.com"
            respond = { status = 200 }
            [[listeners.l.routes]]
            name = "apex"
            host = "example.com"
            respond = { status = 200 }
            [[listeners.l.routes]]
            name = "canary"
            header = { name = "x-canary", value = "1" }
            respond = { status = 200 }
            [[listeners.l.routes]]
            name = "debug"
            header = { name = "x-debug" }
            respond = { status = 200 }
            "#,
        );
        let w = |m, u, h, hs: &[(&str, &str)]| which(&rs, &req(m, u, h, hs));
        assert_eq!(w("POST", "/api/x", None, &[]).as_deref(), Some("api-post"));
        assert_eq!(w("GET", "/api/x?q=1", None, &[]).as_deref(), Some("api"));
        assert_eq!(w("GET", "/api", None, &[]), None, "prefix is /api/");
        assert_eq!(w("GET", "/health", None, &[]).as_deref(), Some("exact"));
        assert_eq!(w("GET", "/health/x", None, &[]), None);
        assert_eq!(
            w("GET", "/", Some("a.EXAMPLE.com:8080"), &[]).as_deref(),
            Some("wild")
        );
        assert_eq!(
            w("GET", "/", Some("example.com"), &[]).as_deref(),
            Some("apex")
        );
        assert_eq!(w("GET", "/", Some("badexample.com"), &[]), None);
        assert_eq!(
            w("GET", "http://b.example.com/x", None, &[]).as_deref(),
            Some("wild"),
            "h2 authority"
        );
        assert_eq!(
            w("GET", "/", None, &[("x-canary", "1")]).as_deref(),
            Some("canary")
        );
        assert_eq!(w("GET", "/", None, &[("x-canary", "2")]), None);
        assert_eq!(
            w("GET", "/", None, &[("x-debug", "")]).as_deref(),
            Some("debug")
        );
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
