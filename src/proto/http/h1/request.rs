//! A client's HTTP/1.1 request head as the fast path takes it (httparse, no copies), and the
//! head it sends upstream in its place.
//!
//! [`parse`] accepts only what the fast path forwards as is: HTTP/1.1, an origin-form target
//! of plain URI characters (RFC 3986 `pchar`, `/` and `?`: no fragment, no byte hyper's `Uri`
//! might treat differently), exactly one `Host` of visible ASCII, no body or one
//! `Content-Length` body, and none of `Transfer-Encoding`, `Upgrade`, an `Expect` other than
//! one `100-continue`, or `Connection: upgrade`. Everything else, malformed input included, is
//! [`Parsed::Other`]: the connection goes to the hyper path, which answers it (and answers
//! malformed requests and smuggling forms with 400 and 431 as before).
//!
//! [`write_upstream`] writes the request line and the headers with hop-by-hop headers removed
//! (RFC 9110 7.6.1, and whatever `Connection` names), the body's framing written by itself
//! (`Content-Length` is never taken from the client's headers, so no `Connection` token or
//! header rule can drop it), `X-Forwarded-For`, `-Proto` and `-Host`
//! set, and the header rules applied as `super::super::headers::apply` applies them, in the
//! same order (forwarding headers, then the listener's rules, then the route's).

use hyper::http::HeaderName;

use super::super::headers::{accepts_trailers, is_hop_by_hop, visible_str};
use super::super::route::Target;
use crate::config::http::HeaderRules;

/// Header slots the fast path parses into; a request with more goes to the hyper path (which
/// applies the listener's `max_headers`).
pub const MAX_HEADERS: usize = 64;

/// A request the fast path can forward.
#[derive(Debug)]
pub struct Head<'b> {
    pub method: &'b str,
    /// The origin-form target: path and query.
    pub target: &'b str,
    pub headers: &'b [httparse::Header<'b>],
    pub host: &'b str,
    pub content_length: u64,
    /// The request had a `Content-Length` header (the upstream gets one too).
    pub has_length: bool,
    /// The client asked to close after this request.
    pub close: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before its body.
    pub expect_continue: bool,
    /// Bytes of the head, up to and including its empty line.
    pub len: usize,
}

#[derive(Debug)]
pub enum Parsed<'b> {
    /// More bytes are needed.
    Partial,
    Head(Head<'b>),
    /// Not for the fast path (or malformed): the hyper path takes the connection.
    Other,
}

/// Parses the request head at the start of `buf`.
pub fn parse<'b>(buf: &'b [u8], slots: &'b mut [httparse::Header<'b>]) -> Parsed<'b> {
    let mut req = httparse::Request::new(slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    if method == "CONNECT" || !target.starts_with('/') || !target.bytes().all(plain_uri_byte) {
        return Parsed::Other;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let mut content_length = None;
    let mut close = false;
    let mut expect_continue = false;
    for h in headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Parsed::Other;
            }
            if !h.value.iter().all(|b| (0x21..0x7f).contains(b)) {
                return Parsed::Other;
            }
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Parsed::Other;
            };
            host = Some(v);
        } else if n.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Parsed::Other;
            }
            let Some(len) = decimal(h.value) else {
                return Parsed::Other;
            };
            content_length = Some(len);
        } else if n.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        } else if n.eq_ignore_ascii_case("expect") {
            // Anything else hyper answers (417).
            if expect_continue || !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Parsed::Other;
            }
            expect_continue = true;
        } else if n.eq_ignore_ascii_case("transfer-encoding") || n.eq_ignore_ascii_case("upgrade") {
            return Parsed::Other;
        }
    }
    let Some(host) = host else {
        return Parsed::Other;
    };
    if host.is_empty() {
        return Parsed::Other;
    }
    Parsed::Head(Head {
        method,
        target,
        headers,
        host,
        content_length: content_length.unwrap_or(0),
        has_length: content_length.is_some(),
        close,
        expect_continue,
        len,
    })
}

/// Parses `buf` with header slots of its own and hands the result to `f`.
pub fn with_parsed<R>(buf: &[u8], f: impl FnOnce(Parsed<'_>) -> R) -> R {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    f(parse(buf, &mut slots))
}

/// RFC 3986 `pchar`, `/` and `?`: the bytes of a target the fast path routes and forwards as
/// they are (anything else, `#` included, goes to hyper, which parses URIs its own way).
pub fn plain_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b)
}

/// A `Content-Length` value: decimal digits only, at most 18 of them.
pub fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

impl Target for Head<'_> {
    fn method(&self) -> &str {
        self.method
    }
    fn path(&self) -> &str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }
    fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
    fn host(&self) -> Option<&str> {
        Some(self.host)
    }
    fn header_values<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        let name = name.as_str();
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Which headers of a message are hop-by-hop: the standard ones
/// (`super::super::headers::is_hop_by_hop`) and those its `Connection` headers name.
pub struct HopByHop<'h> {
    headers: &'h [httparse::Header<'h>],
    /// A `Connection` header names something besides `close` and `keep-alive` (the usual
    /// case is that none does, and then no header is looked up in it).
    names_others: bool,
}

impl<'h> HopByHop<'h> {
    pub fn of(headers: &'h [httparse::Header<'h>]) -> Self {
        let names_others = connection_tokens(headers)
            .any(|t| !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive"));
        HopByHop {
            headers,
            names_others,
        }
    }

    /// Whether header `name` is not to be passed on.
    pub fn drops(&self, name: &str) -> bool {
        is_hop_by_hop(name)
            || (self.names_others
                && connection_tokens(self.headers).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    }
}

fn connection_tokens<'h>(headers: &'h [httparse::Header<'h>]) -> impl Iterator<Item = &'h [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
}

/// Whether a rule set from `sets` on removes or replaces header `name` (so what came before
/// does not survive).
pub fn replaced(sets: &[&HeaderRules], name: &str) -> bool {
    sets.iter().any(|r| {
        r.remove
            .iter()
            .any(|n| n.as_str().eq_ignore_ascii_case(name))
            || r.set
                .iter()
                .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    })
}

pub fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes what `sets` add and set, each surviving only if no later set removes or replaces it.
pub fn write_rules(out: &mut Vec<u8>, sets: &[&HeaderRules]) {
    each_rule(sets, |n, v| line(out, n, v));
}

/// Calls `f` with each field `sets` add and set, in order, each only if no later set removes
/// or replaces it.
pub fn each_rule(sets: &[&HeaderRules], mut f: impl FnMut(&[u8], &[u8])) {
    for (i, r) in sets.iter().enumerate() {
        let later = &sets[i + 1..];
        for (k, (n, v)) in r.set.iter().enumerate() {
            // A later `set` of the same name in the same rules replaces this one.
            let again = r.set[k + 1..].iter().any(|(m, _)| m == n);
            if !again && !replaced(later, n.as_str()) {
                f(n.as_str().as_bytes(), v.as_bytes());
            }
        }
        for (n, v) in &r.add {
            if !replaced(later, n.as_str()) {
                f(n.as_str().as_bytes(), v.as_bytes());
            }
        }
    }
}

/// What the forwarding headers say about the client connection.
pub struct Forwarded<'a> {
    /// The client's address (`X-Forwarded-For`).
    pub client: &'a [u8],
    /// `X-Forwarded-Proto`.
    pub proto: &'static str,
}

/// Writes the request head the upstream gets for `head`: its request line as HTTP/1.1, its
/// headers less hop-by-hop ones, the forwarding headers, then `sets` (listener's, route's).
pub fn write_upstream(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    fwd: &Forwarded<'_>,
    sets: &[&HeaderRules],
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prev_xff: Option<&[u8]> = None;
    let hop = HopByHop::of(head.headers);
    let mut te_trailers = false;
    for h in head.headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("te") {
            // Dropped as hop-by-hop below; said again after the headers if it takes trailers.
            te_trailers |= accepts_trailers([h.value]);
        }
        if n.eq_ignore_ascii_case("x-forwarded-for") {
            prev_xff.get_or_insert(h.value);
            continue;
        }
        // `Expect: 100-continue` was answered here: the body goes with the head.
        if n.eq_ignore_ascii_case("content-length")
            || n.eq_ignore_ascii_case("expect")
            || n.eq_ignore_ascii_case("x-forwarded-proto")
            || n.eq_ignore_ascii_case("x-forwarded-host")
            || hop.drops(n)
            || replaced(sets, n)
        {
            continue;
        }
        line(out, n.as_bytes(), h.value);
    }
    if !replaced(sets, "x-forwarded-for") {
        out.extend_from_slice(b"x-forwarded-for: ");
        // As the hyper path: a previous value that is not visible ASCII is not kept.
        if let Some(prev) = prev_xff.filter(|p| !p.is_empty() && visible_str(p).is_some()) {
            out.extend_from_slice(prev);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(fwd.client);
        out.extend_from_slice(b"\r\n");
    }
    if head.has_length {
        let mut n = itoa::Buffer::new();
        line(
            out,
            b"content-length",
            n.format(head.content_length).as_bytes(),
        );
    }
    if !replaced(sets, "x-forwarded-proto") {
        line(out, b"x-forwarded-proto", fwd.proto.as_bytes());
    }
    if !replaced(sets, "x-forwarded-host") {
        line(out, b"x-forwarded-host", head.host.as_bytes());
    }
    if te_trailers {
        // The client takes trailers, and so does corelane on its behalf (as the hyper path).
        line(out, b"te", b"trailers");
        line(out, b"connection", b"te");
    }
    write_rules(out, sets);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::http::HeaderValue;

    fn with_head<R>(text: &[u8], f: impl FnOnce(Parsed<'_>) -> R) -> R {
        with_parsed(text, f)
    }

    fn upstream(text: &[u8], sets: &[&HeaderRules]) -> String {
        let client = HeaderValue::from_static("192.0.2.7");
        with_head(text, |p| {
            let Parsed::Head(h) = p else {
                panic!("not a fast-path head: {p:?}");
            };
            let mut out = Vec::new();
            let fwd = Forwarded {
                client: client.as_bytes(),
                proto: "http",
            };
            write_upstream(&mut out, &h, &fwd, sets);
            String::from_utf8(out).unwrap()
        })
    }

    #[test]
    fn golden_request_heads() {
        let text = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:7080\r\nUser-Agent: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        with_head(text, |p| {
            let Parsed::Head(h) = p else { panic!("{p:?}") };
            assert_eq!(h.method, "GET");
            assert_eq!(Target::path(&h), "/a/b");
            assert_eq!(Target::query(&h), Some("x=1"));
            assert_eq!(h.host, "example.com:7080");
            assert_eq!(h.content_length, 5);
            assert!(h.close);
            assert_eq!(h.len, text.len() - 5);
        });
        assert_eq!(
            upstream(
                b"POST /p HTTP/1.1\r\nhost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-proto: https\r\ncontent-length: 0\r\n\r\n",
                &[]
            ),
            "POST /p HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 10.0.0.1, 192.0.2.7\r\ncontent-length: 0\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\nte: trailers\r\nconnection: te\r\n\r\n"
        );
        // A TE without `trailers` goes as hop-by-hop; `Trailer` is end-to-end and stays.
        assert_eq!(
            upstream(
                b"GET / HTTP/1.1\r\nHost: h\r\nTE: gzip\r\nTrailer: x-sum\r\n\r\n",
                &[]
            ),
            "GET / HTTP/1.1\r\nHost: h\r\nTrailer: x-sum\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\nx-forwarded-host: h\r\n\r\n"
        );
    }

    #[test]
    fn the_body_length_reaches_the_upstream_whatever_connection_says() {
        // A `Connection` token naming Content-Length must not drop the framing (the body
        // would be read upstream as a second request).
        let out = upstream(
            b"POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 44\r\n\r\n",
            &[],
        );
        assert!(out.contains("\r\ncontent-length: 44\r\n"), "{out}");
        let rules = HeaderRules {
            remove: vec![HeaderName::from_static("content-length")],
            ..HeaderRules::default()
        };
        let out = upstream(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
            &[&rules],
        );
        assert!(out.contains("\r\ncontent-length: 3\r\n"), "{out}");
    }

    #[test]
    fn expect_100_continue_is_taken_and_said() {
        let text =
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue \r\nContent-Length: 5\r\n\r\n";
        with_head(text, |p| match p {
            Parsed::Head(h) => assert!(h.expect_continue && h.content_length == 5),
            other => panic!("{other:?}"),
        });
        with_head(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", |p| {
            assert!(matches!(p, Parsed::Head(h) if !h.expect_continue))
        });
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let text = b"GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        for end in 0..text.len() {
            with_head(&text[..end], |p| {
                assert!(matches!(p, Parsed::Partial), "prefix {end}: {p:?}")
            });
        }
    }

    #[test]
    fn what_the_fast_path_leaves_to_hyper() {
        for text in [
            &b"GET / HTTP/1.0\r\nHost: h\r\n\r\n"[..],
            b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
            // Targets hyper's URI parser sees differently (a fragment) or might refuse.
            b"GET /admin#x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a<b> HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\x80\r\n\r\n",
        ] {
            with_head(text, |p| {
                assert!(
                    matches!(p, Parsed::Other),
                    "{:?}: {p:?}",
                    String::from_utf8_lossy(text)
                )
            });
        }
    }

    #[test]
    fn rules_apply_in_order_remove_set_add() {
        let rules = |add: &[(&'static str, &'static str)],
                     set: &[(&'static str, &'static str)],
                     remove: &[&'static str]| HeaderRules {
            add: add
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            set: set
                .iter()
                .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
                .collect(),
            remove: remove.iter().map(|n| HeaderName::from_static(n)).collect(),
        };
        let listener = rules(&[("x-a", "1")], &[("x-b", "2")], &["x-drop"]);
        let route = rules(&[("x-b", "3")], &[("x-a", "9")], &["x-forwarded-host"]);
        let out = upstream(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Drop: d\r\nX-A: 0\r\nX-B: 0\r\n\r\n",
            &[&listener, &route],
        );
        assert_eq!(
            out,
            "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\nx-b: 2\r\nx-a: 9\r\nx-b: 3\r\n\r\n"
        );
    }
}
