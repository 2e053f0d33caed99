//! Header handling between client and upstream: hop-by-hop headers removed (RFC 9110 7.6.1),
//! `X-Forwarded-For`, `-Proto` and `-Host` added, and the configured add / set / remove rules
//! applied.
//!
//! Trailers go through: `Trailer` (which fields a message's trailer section will hold) is
//! end-to-end and kept, and a client's `TE: trailers` is said again on the upstream hop
//! ([`accepts_trailers`]), since corelane passes trailers on to any client that accepts them.
//!
//! Framing headers (`Content-Length`, `Transfer-Encoding`) are not ours to keep: hyper frames
//! each side's message itself from the body it is given, so `Transfer-Encoding` is removed
//! with the other hop-by-hop headers and a smuggled pair of framing headers never reaches the
//! upstream (hyper rejects the request first).

use std::net::IpAddr;

use hyper::header;
use hyper::http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::http::HeaderRules;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`, and `Upgrade` (tunnels are set up by the
/// engine, not forwarded as a header). Both paths (hyper's and `super::h1`) drop these.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Whether a message's `TE` values (any number of headers) accept trailers: a `trailers`
/// member (RFC 9110 10.1.4). `TE` is hop-by-hop, so it is dropped with the others and this
/// is what is said again to the upstream.
pub fn accepts_trailers<'a>(te: impl IntoIterator<Item = &'a [u8]>) -> bool {
    te.into_iter().any(|v| {
        v.split(|&b| b == b',').any(|m| {
            let name = m.split(|&b| b == b';').next().unwrap_or(m);
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
    })
}

/// Whether `name` (any case) is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Whether `b` may be part of a token (RFC 9110 5.6.2): a field name or a method.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header value as text if it is visible ASCII (what `HeaderValue::to_str` accepts).
pub fn visible_str(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names (lowercase already) finds which are there; most messages have
    // none (HTTP/2 forbids them) or only `Connection`, so only those are looked up again.
    let mut found = [false; HOP_BY_HOP.len()];
    for k in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == k.as_str()) {
            found[i] = true;
        }
    }
    if found[0] {
        // Every `Connection` header counts (a message may carry several); the names they list
        // are removed after the walk over them.
        let mut named: Vec<HeaderName> = Vec::new();
        for conn in headers.get_all(header::CONNECTION) {
            let Ok(list) = conn.to_str() else { continue };
            for name in list.split(',').map(str::trim) {
                let ours =
                    name.eq_ignore_ascii_case("close") || name.eq_ignore_ascii_case("keep-alive");
                if !name.is_empty() && !ours {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                        named.push(n);
                    }
                }
            }
        }
        for n in named {
            headers.remove(n);
        }
    }
    for (h, _) in HOP_BY_HOP.iter().zip(found).filter(|(_, f)| *f) {
        headers.remove(*h);
    }
}

/// The client address as a header value, made once per connection.
pub fn client_value(client: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64];
    HeaderValue::from_str(ip_text(client, &mut buf)).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Appends the client (`client`, from [`client_value`]) to `X-Forwarded-For` and sets
/// `X-Forwarded-Proto` and, when the client sent a host, `X-Forwarded-Host`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let mut v = Vec::with_capacity(prev.len() + 2 + client.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        _ => Some(client.clone()),
    };
    if let Some(v) = value {
        headers.insert(xff, v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    if let Some(h) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h);
    }
}

fn ip_text(ip: IpAddr, buf: &mut [u8; 64]) -> &str {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(c, "{ip}");
    let n = c.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Applies `rules`: remove, then set (replacing), then add (appending).
pub fn apply(headers: &mut HeaderMap, rules: &HeaderRules) {
    for n in &rules.remove {
        headers.remove(n);
    }
    for (n, v) in &rules.set {
        headers.insert(n.clone(), v.clone());
    }
    for (n, v) in &rules.add {
        headers.append(n.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut m = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-connection", "close"),
            ("x-kept", "yes"),
            ("content-length", "3"),
            ("trailer", "x-checksum"),
        ]);
        strip_hop_by_hop(&mut m);
        let mut left: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        left.sort();
        // `Trailer` is end-to-end (RFC 9110 6.6.2): the trailers it announces are passed on.
        assert_eq!(left, ["content-length", "trailer", "x-kept"]);
        // Without any hop-by-hop header nothing changes; one alone still goes.
        let mut m = map(&[("x-kept", "yes"), ("date", "now")]);
        strip_hop_by_hop(&mut m);
        assert_eq!(m.len(), 2);
        let mut m = map(&[("x-kept", "yes"), ("te", "trailers")]);
        strip_hop_by_hop(&mut m);
        assert_eq!(m.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn te_accepts_trailers_only_when_it_says_so() {
        let yes: [&[&[u8]]; 4] = [
            &[b"trailers"],
            &[b"gzip;q=0.5, Trailers"],
            &[b"deflate", b" trailers ;q=1"],
            &[b"trailers,"],
        ];
        for te in yes {
            assert!(accepts_trailers(te.iter().copied()), "{te:?}");
        }
        let no: [&[&[u8]]; 4] = [&[], &[b"gzip"], &[b"trailersx"], &[b"x-trailers, chunked"]];
        for te in no {
            assert!(!accepts_trailers(te.iter().copied()), "{te:?}");
        }
    }

    #[test]
    fn forwarded_headers_append_the_client() {
        let mut m = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarded(
            &mut m,
            &client_value("192.0.2.7".parse().unwrap()),
            "http",
            Some(HeaderValue::from_static("a.example")),
        );
        assert_eq!(m["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(m["x-forwarded-proto"], "http");
        assert_eq!(m["x-forwarded-host"], "a.example");
        let mut m = HeaderMap::new();
        add_forwarded(&mut m, &client_value("::1".parse().unwrap()), "https", None);
        assert_eq!(m["x-forwarded-for"], "::1");
        assert!(!m.contains_key("x-forwarded-host"));
    }

    #[test]
    fn rules_remove_then_set_then_add() {
        let mut m = map(&[("a", "1"), ("b", "1"), ("b", "2"), ("c", "1")]);
        let h = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
        let v = |s: &'static str| HeaderValue::from_static(s);
        apply(
            &mut m,
            &HeaderRules {
                add: vec![(h("c"), v("2")), (h("d"), v("1"))],
                set: vec![(h("b"), v("9"))],
                remove: vec![h("a")],
            },
        );
        assert!(!m.contains_key("a"));
        assert_eq!(m.get_all("b").iter().collect::<Vec<_>>(), ["9"]);
        assert_eq!(m.get_all("c").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(m["d"], "1");
    }
}
