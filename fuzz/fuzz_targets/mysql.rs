//! Fuzzes the MySQL packet framing and payload parsers.
//!
//! Invariants, not just "no panic":
//! - framing: a frame found is inside the input, its payload has exactly `len` bytes, no frame
//!   is found in any strict prefix of its bytes, and re-framing its payload with `write` from
//!   the same sequence id gives a frame of the same length and parts;
//! - payloads: a greeting that parses encodes to bytes that parse to the same greeting; OK
//!   and ERR packets that corelane writes from parsed values parse back to them;
//! - replies: the reply reader takes the packets as any command's reply without panicking,
//!   and once it says a reply is done, the rest starts a new one;
//! - statements: classifying the input is deterministic, and a `/* corelane:primary */`
//!   comment in front gives the hint and leaves the route as it was;
//! - prepared statements: parameter types put into an execute packet are read back out.
#![no_main]

use corelane::proto::mysql::classify::{Hint, classify};
use corelane::proto::mysql::packet::{self, FrameError};
use corelane::proto::mysql::reply::{Expect, ReplyReader, Step};
use corelane::proto::mysql::stmt;
use corelane::proto::mysql::wire::{self, HandshakeResponse41, HandshakeV10, Reply};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The whole input as a stream of packets.
    let mut readers = [
        Expect::Results,
        Expect::Prepare,
        Expect::Rows,
        Expect::Fields,
        Expect::One,
    ]
    .map(|e| (e, ReplyReader::new(e)));
    let mut rest = data;
    while let Ok(Some(f)) = packet::frame(rest, MAX) {
        assert!(f.consumed <= rest.len() && f.consumed >= packet::HEADER * f.parts);
        let p = packet::payload(rest, &f);
        assert_eq!(p.len(), f.len);
        for n in [0, f.consumed / 2, f.consumed - 1] {
            assert!(matches!(packet::frame(&rest[..n], MAX), Ok(None)), "prefix {n}");
        }
        let mut again = Vec::new();
        packet::write(&mut again, f.seq, &p);
        let g = packet::frame(&again, MAX).unwrap().unwrap();
        assert_eq!((g.len, g.parts, g.seq), (f.len, f.parts, f.seq));
        payloads(&p);
        for (expect, r) in &mut readers {
            match r.feed(&p, p.len()) {
                Ok(Step::More) => {}
                Ok(Step::Done { .. }) | Err(_) => *r = ReplyReader::new(*expect),
            }
        }
        rest = &rest[f.consumed..];
    }
    if let Err(FrameError::TooLarge { len, max }) = packet::frame(rest, MAX) {
        assert!(len > max);
    }
    // And the whole input as one payload, one statement, one execute packet.
    payloads(data);
    let c = classify(data);
    assert_eq!(c, classify(data));
    let mut hinted = b"/* corelane:primary */ ".to_vec();
    hinted.extend_from_slice(data);
    let h = classify(&hinted);
    assert_eq!(h.hint, Some(Hint::Primary));
    if c.hint.is_none() {
        assert_eq!(h.route, c.route, "{:?}", String::from_utf8_lossy(data));
    }
    if let Some((&n, rest)) = data.split_first() {
        let params = u16::from(n % 8);
        let types = vec![3u8; 2 * usize::from(params)];
        if let Some(with) = stmt::with_types(rest, params, &types) {
            assert_eq!(stmt::bound_types(&with, params), Some(&types[..]));
        }
    }
});

fn payloads(p: &[u8]) {
    if let Ok(h) = HandshakeV10::parse(p) {
        let mut out = Vec::new();
        h.encode(&mut out);
        let back = HandshakeV10::parse(&out).expect("an encoded greeting parses");
        assert_eq!(back.server_version, h.server_version);
        assert_eq!(back.connection_id, h.connection_id);
        assert_eq!(back.capabilities, h.capabilities);
        assert_eq!(back.auth_plugin, h.auth_plugin);
    }
    let _ = HandshakeResponse41::parse(p);
    match Reply::parse(p) {
        Ok(Reply::Ok(ok)) => {
            let mut out = Vec::new();
            wire::put_ok(&mut out, &ok);
            assert_eq!(Reply::parse(&out), Ok(Reply::Ok(ok)));
        }
        Ok(Reply::Err(e)) => {
            if let Some(state) = e.sql_state.and_then(|s| <[u8; 5]>::try_from(s).ok()) {
                if let Ok(msg) = std::str::from_utf8(e.message) {
                    let mut out = Vec::new();
                    wire::put_err(&mut out, e.code, &state, msg);
                    assert_eq!(Reply::parse(&out), Ok(Reply::Err(e)));
                }
            }
        }
        _ => {}
    }
}
