//! A decoded header list of an HTTP/2 request or of its trailers, checked as it is decoded
//! against RFC 9113 8.2 and 8.3: pseudo-header fields (`:method`, `:scheme`, `:authority`,
//! `:path`, and RFC 8441's `:protocol` with `CONNECT`) each at most once and before the
//! others, none in trailers; lowercase token
//! names; values without control characters or edge whitespace; no connection-specific
//! fields (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`; `te`
//! only as `trailers`); `content-length` digits, the same in every copy. Its size is counted
//! as RFC 9113 6.5.2 counts it (name, value and 32 per field) against the listener's
//! `max_header_size`.
//!
//! A list that breaks a rule is kept as malformed (the first reason), and one over the size
//! limit as too large, rather than stopping the decoding: the HPACK table must see every
//! field of a block whatever becomes of its stream.
//!
//! Not here: HPACK (`super::hpack`), turning a list into a request (`super::serve`).

use crate::proto::http::headers;

/// The pseudo-header fields of a request, in [`Fields::pseudo`]'s order.
const PSEUDO: [&[u8]; 5] = [b"method", b"scheme", b"authority", b"path", b"protocol"];

#[derive(Debug, Default)]
pub struct Fields {
    /// Names and values, back to back.
    bytes: Vec<u8>,
    /// Regular fields: (name start, value start, value end) in `bytes`.
    list: Vec<(u32, u32, u32)>,
    /// `:method`, `:scheme`, `:authority`, `:path`, `:protocol`: (start, end) in `bytes`.
    pseudo: [Option<(u32, u32)>; 5],
    size: usize,
    limit: usize,
    regular: bool,
    trailers: bool,
    too_large: bool,
    malformed: Option<&'static str>,
    content_length: Option<u64>,
}

impl Fields {
    /// Empties the list for the next block: a request's (`trailers` false) or trailers.
    pub fn reset(&mut self, limit: usize, trailers: bool) {
        self.bytes.clear();
        self.list.clear();
        self.pseudo = [None; 5];
        self.size = 0;
        self.limit = limit;
        self.regular = false;
        self.trailers = trailers;
        self.too_large = false;
        self.malformed = None;
        self.content_length = None;
    }

    /// Gives back spare memory (a connection about to wait idle).
    pub fn shrink(&mut self) {
        self.bytes = Vec::new();
        self.list = Vec::new();
    }

    /// Adds one decoded field.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.size > self.limit {
            self.too_large = true;
        }
        if self.too_large || self.malformed.is_some() {
            return;
        }
        if let Some(p) = name.strip_prefix(b":") {
            let slot = PSEUDO.iter().position(|&n| n == p);
            let why = match slot {
                _ if self.trailers => Some("pseudo-header field in trailers"),
                _ if self.regular => Some("pseudo-header field after a regular one"),
                None => Some("unknown pseudo-header field"),
                Some(i) if self.pseudo[i].is_some() => Some("pseudo-header field repeated"),
                Some(_) if !valid_value(value) => Some("bad pseudo-header value"),
                Some(_) => None,
            };
            match (why, slot) {
                (Some(why), _) => self.malformed = Some(why),
                (None, Some(i)) => self.pseudo[i] = Some(self.store(value)),
                (None, None) => {}
            }
            return;
        }
        self.regular = true;
        let why = if !valid_name(name) {
            Some("field name not a lowercase token")
        } else if !valid_value(value) {
            Some("field value with a control character or edge whitespace")
        } else {
            match name {
                b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
                | b"upgrade" => Some("connection-specific field"),
                b"te" if !value.eq_ignore_ascii_case(b"trailers") => Some("te other than trailers"),
                b"content-length" => self.length(value).err(),
                _ => None,
            }
        };
        if let Some(why) = why {
            self.malformed = Some(why);
            return;
        }
        let n = self.bytes.len() as u32;
        self.bytes.extend_from_slice(name);
        let (v, end) = self.store(value);
        self.list.push((n, v, end));
    }

    fn store(&mut self, value: &[u8]) -> (u32, u32) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        (start, self.bytes.len() as u32)
    }

    fn length(&mut self, value: &[u8]) -> Result<(), &'static str> {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("bad content-length")?;
        match self.content_length.replace(n) {
            Some(m) if m != n => Err("two different content-lengths"),
            _ => Ok(()),
        }
    }

    /// Over the size limit: the stream is answered 431 (a request) or reset (trailers).
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// Why the list is malformed, if it is; for a request, also a missing or misplaced
    /// pseudo-header field (RFC 9113 8.3.1).
    pub fn malformed(&self) -> Option<&'static str> {
        if self.malformed.is_some() || self.trailers || self.too_large {
            return self.malformed;
        }
        let [method, scheme, authority, path, protocol] = self.pseudo;
        match method.map(|r| self.slice(r)) {
            None => Some("no :method"),
            Some(m) if !m.iter().all(|&b| headers::is_tchar(b)) => Some("bad :method"),
            // RFC 8441 4: `:protocol` only on a CONNECT, which then has all the others.
            Some(m) if protocol.is_some() && m != b"CONNECT" => Some(":protocol without CONNECT"),
            Some(b"CONNECT") if protocol.is_some() && (scheme.is_none() || path.is_none()) => {
                Some("extended CONNECT without :scheme or :path")
            }
            // CONNECT names only its authority (RFC 9113 8.5).
            Some(b"CONNECT")
                if protocol.is_none()
                    && (authority.is_none() || scheme.is_some() || path.is_some()) =>
            {
                Some("CONNECT needs :authority alone")
            }
            Some(b"CONNECT") if protocol.is_none() => None,
            // RFC 9113 8.3.1: no userinfo in an http or https authority, and not empty.
            _ if authority.is_some_and(|a| a.0 == a.1 || self.slice(a).contains(&b'@')) => {
                Some("empty :authority, or userinfo in it")
            }
            Some(_) if scheme.is_none() => Some("no :scheme"),
            Some(m) => match path.map(|p| self.slice(p)) {
                None | Some(b"") => Some("no :path"),
                // An absolute path, or `*` for OPTIONS (RFC 9113 8.3.1).
                Some(b"*") if m == b"OPTIONS" => None,
                Some(p) if p[0] == b'/' => None,
                Some(_) => Some(":path not a path"),
            },
        }
    }

    fn slice(&self, (a, b): (u32, u32)) -> &[u8] {
        &self.bytes[a as usize..b as usize]
    }

    fn pseudo(&self, i: usize) -> Option<&[u8]> {
        self.pseudo[i].map(|r| self.slice(r))
    }

    pub fn method(&self) -> &[u8] {
        self.pseudo(0).unwrap_or(b"")
    }

    pub fn scheme(&self) -> Option<&[u8]> {
        self.pseudo(1)
    }

    pub fn authority(&self) -> Option<&[u8]> {
        self.pseudo(2)
    }

    pub fn path(&self) -> Option<&[u8]> {
        self.pseudo(3)
    }

    /// RFC 8441's `:protocol` (an extended CONNECT).
    pub fn protocol(&self) -> Option<&[u8]> {
        self.pseudo(4)
    }

    /// The regular fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list.iter().map(|&(n, v, e)| {
            (
                &self.bytes[n as usize..v as usize],
                &self.bytes[v as usize..e as usize],
            )
        })
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| headers::is_tchar(b) && !b.is_ascii_uppercase())
}

/// No control character but HTAB, no DEL, no whitespace at either end (RFC 9113 8.2.1, with
/// the other control characters refused too, as HTTP/1.1 upstreams would misread them).
fn valid_value(value: &[u8]) -> bool {
    let edge = |b: &u8| *b == b' ' || *b == b'\t';
    !value.first().is_some_and(edge)
        && !value.last().is_some_and(edge)
        && value
            .iter()
            .all(|&b| (b >= 0x20 || b == b'\t') && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)], trailers: bool) -> Fields {
        let mut f = Fields::default();
        f.reset(1000, trailers);
        for (n, v) in list {
            f.push(n.as_bytes(), v.as_bytes());
        }
        f
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b"),
    ];

    #[test]
    fn a_request_is_split_into_pseudo_and_regular_fields() {
        let mut list = GET.to_vec();
        list.extend([
            ("accept", "*/*"),
            ("content-length", "3"),
            ("te", "trailers"),
        ]);
        let f = fields(&list, false);
        assert_eq!(f.malformed(), None);
        assert_eq!(f.method(), b"GET");
        assert_eq!(f.scheme(), Some(&b"https"[..]));
        assert_eq!(f.authority(), Some(&b"example.com"[..]));
        assert_eq!(f.path(), Some(&b"/a?b"[..]));
        let regular: Vec<_> = f.iter().collect();
        assert_eq!(
            regular,
            [
                (&b"accept"[..], &b"*/*"[..]),
                (b"content-length", b"3"),
                (b"te", b"trailers")
            ]
        );
        assert_eq!(f.content_length(), Some(3));
        let connect = fields(&[(":method", "CONNECT"), (":authority", "a:443")], false);
        assert_eq!(connect.malformed(), None);
        let star = [(":method", "OPTIONS"), (":scheme", "http"), (":path", "*")];
        assert_eq!(fields(&star, false).malformed(), None);
        // RFC 8441's extended CONNECT: all four, and `:protocol`.
        let ws = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":authority", "a.test"),
            (":path", "/chat"),
        ];
        let ws = fields(&ws, false);
        assert_eq!(ws.malformed(), None);
        assert_eq!(ws.protocol(), Some(&b"websocket"[..]));
        assert_eq!(ws.path(), Some(&b"/chat"[..]));
    }

    #[test]
    fn malformed_requests_say_why() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[(":scheme", "http"), (":path", "/")], "no :method"),
            (&[(":method", "GET"), (":path", "/")], "no :scheme"),
            (
                &[(":method", "GET"), (":scheme", "http"), (":path", "")],
                "no :path",
            ),
            (
                &[(":method", "G T"), (":scheme", "http"), (":path", "/")],
                "bad :method",
            ),
            (
                &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", "u@h"),
                    (":path", "/"),
                ],
                "userinfo",
            ),
            (
                &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", ""),
                    (":path", "/"),
                ],
                "empty :authority",
            ),
            (
                &[(":method", "GET"), (":scheme", "http"), (":path", "*")],
                "not a path",
            ),
            (
                &[(":method", "GET"), (":scheme", "http"), (":path", "a/b")],
                "not a path",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "a:1"),
                    (":path", "/"),
                ],
                "CONNECT",
            ),
            (
                &[
                    (":method", "GET"),
                    (":protocol", "websocket"),
                    (":scheme", "http"),
                    (":path", "/"),
                ],
                ":protocol without CONNECT",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":authority", "a:1"),
                ],
                "extended CONNECT without",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":scheme", "http"),
                    (":path", "chat"),
                ],
                "not a path",
            ),
            (&[("accept", "x"), (":method", "GET")], "after a regular"),
            (&[(":method", "GET"), (":method", "GET")], "repeated"),
            (&[(":status", "200")], "unknown pseudo"),
            (&[("Accept", "x")], "lowercase"),
            (&[("a b", "x")], "lowercase"),
            (&[("x", "a\r\nb")], "control"),
            (&[("x", " a")], "edge"),
            (&[("x", "a\0")], "control"),
            (&[("connection", "close")], "connection-specific"),
            (&[("transfer-encoding", "chunked")], "connection-specific"),
            (&[("upgrade", "h2c")], "connection-specific"),
            (&[("te", "gzip")], "te other"),
            (
                &[("content-length", "1"), ("content-length", "2")],
                "two different",
            ),
            (&[("content-length", "-1")], "bad content-length"),
            (&[("content-length", "")], "bad content-length"),
        ];
        for (list, why) in cases {
            let mut l = GET.to_vec();
            if list.iter().any(|(n, _)| n.starts_with(':')) {
                l.clear();
            }
            l.extend_from_slice(list);
            let got = fields(&l, false).malformed().unwrap_or("none");
            assert!(got.contains(why), "{list:?}: {got}");
        }
        // The same content-length twice is fine.
        let mut l = GET.to_vec();
        l.extend([("content-length", "2"), ("content-length", "2")]);
        assert_eq!(fields(&l, false).malformed(), None);
    }

    #[test]
    fn trailers_take_no_pseudo_fields() {
        assert_eq!(fields(&[("grpc-status", "0")], true).malformed(), None);
        assert!(fields(&[(":path", "/")], true).malformed().is_some());
    }

    #[test]
    fn size_counts_32_per_field_and_stops_at_the_limit() {
        let mut f = Fields::default();
        f.reset(100, false);
        f.push(b":method", b"GET"); // 42
        f.push(b":path", b"/"); // 38: 80
        assert!(!f.too_large());
        f.push(b"ab", b"cd"); // 36: 116
        assert!(f.too_large());
        assert_eq!(f.iter().count(), 0, "not kept once too large");
    }
}
