//! Fuzzes the HTTP/1.1 fast path's codecs: request heads, response heads and chunked framing.
//!
//! Invariants, not just "no panic". The first byte picks where the input is cut (chunked
//! framing fed in two pieces); the rest is read as a request head, a response head and a
//! chunked body:
//! - requests: a head the fast path takes lies inside the input, every strict prefix of it
//!   is incomplete, and the head written upstream from it parses back as a fast-path head
//!   with the same method, target, host and length;
//! - responses: a head lies inside the input, every strict prefix is incomplete, and the head
//!   written to the client parses back with the same status and the same framing;
//! - chunked: the body's end is inside the input, and feeding it in two pieces gives the same
//!   end (or the same refusal) as feeding it whole; decoding it (`Chunked::decode`, as the
//!   bridge does) in two pieces gives the same data, trailer bytes and end as in one, and the
//!   same end as `feed`.
#![no_main]

use corelane::proto::http::h1::chunked::Chunked;
use corelane::proto::http::h1::{request, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    requests(data);
    responses(data, pick & 1 == 1);
    chunked(data, pick as usize);
    decoded(data, pick as usize);
});

fn requests(data: &[u8]) {
    let fwd = request::Forwarded {
        client: b"192.0.2.1",
        proto: "http",
    };
    request::with_parsed(data, |p| {
        let request::Parsed::Head(h) = p else {
            return;
        };
        assert!(h.len <= data.len());
        for end in 0..h.len {
            request::with_parsed(&data[..end], |q| {
                assert!(matches!(q, request::Parsed::Partial), "prefix {end}")
            });
        }
        if h.headers.len() + 3 > request::MAX_HEADERS {
            return; // The forwarding headers would pass the slots a re-parse has.
        }
        let mut out = Vec::new();
        request::write_upstream(&mut out, &h, &fwd, &[]);
        request::with_parsed(&out, |q| match q {
            request::Parsed::Head(u) => {
                assert_eq!(u.len, out.len());
                assert_eq!((u.method, u.target, u.host), (h.method, h.target, h.host));
                assert_eq!(u.content_length, h.content_length);
                assert!(!u.close, "Connection is hop-by-hop");
            }
            other => panic!("upstream head does not parse: {other:?}"),
        });
    });
}

fn responses(data: &[u8], to_head: bool) {
    response::with_parsed(data, to_head, |p| {
        let response::Parsed::Head(h) = p else {
            return;
        };
        assert!(h.len <= data.len());
        for end in 0..h.len {
            response::with_parsed(&data[..end], to_head, |q| {
                assert!(matches!(q, response::Parsed::Partial), "prefix {end}")
            });
        }
        let mut out = Vec::new();
        response::write_client(&mut out, &h, false, &[]);
        response::with_parsed(&out, to_head, |q| match q {
            response::Parsed::Head(c) => {
                assert_eq!(c.len, out.len());
                assert_eq!(c.status, h.status);
                assert_eq!(c.framing, h.framing);
            }
            other => panic!("client head does not parse: {other:?}"),
        });
    });
}

fn chunked(data: &[u8], cut: usize) {
    let mut whole = Chunked::default();
    let r = whole.feed(data).map(|n| (n, whole.done()));
    if let Ok((n, _)) = r {
        assert!(n <= data.len());
    }
    let cut = cut.min(data.len());
    let mut c = Chunked::default();
    let split = c.feed(&data[..cut]).and_then(|a| {
        if c.done() {
            return Ok((a, true));
        }
        c.feed(&data[cut..]).map(|b| (a + b, c.done()))
    });
    match (r, split) {
        (Err(_), Err(_)) => {}
        (a, b) => assert_eq!(a, b),
    }
}

/// Decodes `pieces` in turn: the data, the trailer section's bytes, and where the body ended.
fn decode(pieces: &[&[u8]]) -> Option<(Vec<u8>, Vec<u8>, usize, bool)> {
    let mut c = Chunked::default();
    let (mut data, mut trailers, mut used) = (Vec::new(), Vec::new(), 0);
    for piece in pieces {
        used += c.decode(piece, &mut data, &mut trailers).ok()?;
        assert!(used <= pieces.iter().map(|p| p.len()).sum());
    }
    Some((data, trailers, used, c.done()))
}

fn decoded(data: &[u8], cut: usize) {
    let cut = cut.min(data.len());
    let whole = decode(&[data]);
    let split = decode(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole, split);
    let mut c = Chunked::default();
    let fed = c.feed(data).ok().map(|n| (n, c.done()));
    assert_eq!(whole.map(|w| (w.2, w.3)), fed);
}
