//! An upstream's HTTP/1.x response head as the fast path reads it (httparse), how its body is
//! framed (RFC 9112 6.3), and the head the client gets in its place.
//!
//! The client's head keeps the upstream's status, reason and end-to-end headers; hop-by-hop
//! headers go (RFC 9110 7.6.1); the framing is written anew (`Content-Length`), or kept for a
//! chunked body relayed as it is (its `Transfer-Encoding`, codings included); the response header
//! rules apply (route's, then listener's, as `super::super::handle::finish`).
//!
//! Not here: reading the body (`super::exchange`), requests (`super::request`).

use super::request::{HopByHop, decimal, line, replaced, tokens, write_rules};
use crate::config::http::HeaderRules;
use crate::proto::http::body::ResponseBody;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (a response to `HEAD`, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A response head read from upstream.
#[derive(Debug)]
pub struct Head<'b> {
    pub status: u16,
    pub reason: &'b str,
    pub headers: &'b [httparse::Header<'b>],
    pub framing: Framing,
    /// The upstream keeps the connection open after this response.
    pub reusable: bool,
    /// Bytes of the head.
    pub len: usize,
}

#[derive(Debug)]
pub enum Parsed<'b> {
    Partial,
    /// A 1xx interim response of `len` bytes (not 101): skipped.
    Interim {
        len: usize,
    },
    Head(Head<'b>),
    /// Malformed, contradictory framing, or a 101 nobody asked for.
    Bad(&'static str),
}

/// Header slots for a response head; a response with more is refused (502).
pub const MAX_HEADERS: usize = 100;

/// Parses the response head at the start of `buf`, for a request that was a `HEAD` if
/// `to_head`.
pub fn parse<'b>(
    buf: &'b [u8],
    slots: &'b mut [httparse::Header<'b>],
    to_head: bool,
) -> Parsed<'b> {
    let mut resp = httparse::Response::new(slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad("too many response headers"),
        Err(_) => return Parsed::Bad("malformed response head"),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Parsed::Bad("malformed response head");
    };
    if status == 101 {
        return Parsed::Bad("switched protocols unasked");
    }
    if status < 100 {
        return Parsed::Bad("malformed response head");
    }
    if (100..200).contains(&status) {
        return Parsed::Interim { len };
    }
    let headers: &'b [httparse::Header<'b>] = resp.headers;
    let mut reusable = version == 1;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("connection") {
            if tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close")) {
                reusable = false;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: chunked, or the body runs to the close.
            if let Some(last) = tokens(h.value).last() {
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for t in tokens(h.value) {
                match (decimal(t), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Parsed::Bad("invalid Content-Length"),
                }
            }
        }
    }
    let framing = if to_head || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    if framing == Framing::Close {
        reusable = false;
    }
    Parsed::Head(Head {
        status,
        reason: resp.reason.unwrap_or(""),
        headers,
        framing,
        reusable,
        len,
    })
}

/// Parses `buf` with header slots of its own and hands the result to `f`.
pub fn with_parsed<R>(buf: &[u8], to_head: bool, f: impl FnOnce(Parsed<'_>) -> R) -> R {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    f(parse(buf, &mut slots, to_head))
}

/// Writes the head the client gets for `head`: `close` adds `Connection: close` (the client
/// connection ends after this response); `sets` are the response rules (route's, listener's).
pub fn write_client(out: &mut Vec<u8>, head: &Head<'_>, close: bool, sets: &[&HeaderRules]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&three_digits(head.status));
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_length = head.framing == Framing::Empty;
    let hop = HopByHop::of(head.headers);
    for h in head.headers {
        let n = h.name;
        if n.eq_ignore_ascii_case("transfer-encoding") {
            // A chunked body is relayed as it is: its codings (`gzip, chunked`) go with it.
            if head.framing == Framing::Chunked {
                line(out, n.as_bytes(), h.value);
            }
            continue;
        }
        if hop.drops(n)
            || (!keep_length && n.eq_ignore_ascii_case("content-length"))
            || replaced(sets, n)
        {
            continue;
        }
        line(out, n.as_bytes(), h.value);
    }
    match head.framing {
        Framing::Length(n) => {
            let mut b = itoa::Buffer::new();
            line(out, b"content-length", b.format(n).as_bytes());
        }
        Framing::Chunked | Framing::Empty | Framing::Close => {}
    }
    if close {
        line(out, b"connection", b"close");
    }
    write_rules(out, sets);
    out.extend_from_slice(b"\r\n");
}

/// Writes the whole of a response corelane makes itself (a `respond` or `redirect` route's,
/// `super::super::handle::local`) into `out`, as hyper writes it: status line (`<none>` for a
/// status with no standard reason), its headers, `content-length` (none for 204 and 304,
/// which have no body, nor for an empty answer to `HEAD`) and `date`, then the body
/// unless the request was a `HEAD` (`to_head`). `close` adds `Connection: close`. The body's
/// length as sent.
pub fn write_local(
    out: &mut Vec<u8>,
    resp: &hyper::Response<ResponseBody>,
    close: bool,
    to_head: bool,
) -> u64 {
    use hyper::header;
    let status = resp.status();
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (n, v) in resp.headers() {
        // The framing and the connection are corelane's to say.
        if n == header::CONTENT_LENGTH || n == header::TRANSFER_ENCODING || n == header::CONNECTION
        {
            continue;
        }
        dated |= n == header::DATE;
        line(out, n.as_str().as_bytes(), v.as_bytes());
    }
    let body: &[u8] = match resp.body() {
        ResponseBody::Full(Some(b)) => b,
        _ => &[],
    };
    let bodiless =
        status == hyper::StatusCode::NO_CONTENT || status == hyper::StatusCode::NOT_MODIFIED;
    // As hyper: no length for a status without a body, nor an implicit zero for a `HEAD`.
    let no_length = bodiless || (to_head && body.is_empty());
    if !no_length {
        let mut b = itoa::Buffer::new();
        line(out, b"content-length", b.format(body.len()).as_bytes());
    }
    if !dated {
        super::super::date::write(out);
    }
    if close {
        line(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if to_head || bodiless {
        return 0;
    }
    out.extend_from_slice(body);
    body.len() as u64
}

fn three_digits(status: u16) -> [u8; 3] {
    let s = status.min(999);
    [
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<R>(text: &[u8], to_head: bool, f: impl FnOnce(Parsed<'_>) -> R) -> R {
        with_parsed(text, to_head, f)
    }

    fn framing(text: &[u8]) -> Result<(Framing, bool), &'static str> {
        with(text, false, |p| match p {
            Parsed::Head(h) => Ok((h.framing, h.reusable)),
            Parsed::Bad(why) => Err(why),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn golden_framing() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Ok((Framing::Chunked, true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok((Framing::Close, false))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\n\r\n"),
            Ok((Framing::Close, false))
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n"),
            Ok((Framing::Length(1), false))
        );
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Ok((Framing::Empty, true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            Ok((Framing::Length(0), false))
        );
        with(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, |p| {
            assert!(matches!(
                p,
                Parsed::Head(Head {
                    framing: Framing::Empty,
                    ..
                })
            ))
        });
        with(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200",
            false,
            |p| assert!(matches!(p, Parsed::Interim { len: 40 }), "{p:?}"),
        );
    }

    #[test]
    fn contradictions_are_bad() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 042 Odd\r\n\r\n",
        ] {
            assert!(
                framing(text).is_err(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn every_prefix_is_partial() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\n";
        for end in 0..text.len() {
            with(&text[..end], false, |p| {
                assert!(matches!(p, Parsed::Partial), "{end}: {p:?}")
            });
        }
    }

    #[test]
    fn the_client_head_is_reframed_without_hop_by_hop_headers() {
        let text = b"HTTP/1.1 200 Fine\r\nServer: s\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        with(text, false, |p| {
            let Parsed::Head(h) = p else { panic!("{p:?}") };
            let mut out = Vec::new();
            write_client(&mut out, &h, true, &[]);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "HTTP/1.1 200 Fine\r\nServer: s\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n\r\n"
            );
        });
        with(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
            |p| {
                let Parsed::Head(h) = p else { panic!("{p:?}") };
                let mut out = Vec::new();
                write_client(&mut out, &h, false, &[]);
                let out = String::from_utf8(out).unwrap();
                assert!(
                    out.contains("\r\nTransfer-Encoding: gzip, chunked\r\n"),
                    "{out}"
                );
            },
        );
        with(b"HTTP/1.1 404 \r\ncontent-length: 7\r\n\r\n", false, |p| {
            let Parsed::Head(h) = p else { panic!("{p:?}") };
            let mut out = Vec::new();
            write_client(&mut out, &h, false, &[]);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "HTTP/1.1 404 \r\ncontent-length: 7\r\n\r\n"
            );
        });
    }
}
