//! Fuzzes the HTTP/2 server's codec: HPACK (Huffman strings, header blocks) and the
//! connection state machine fed a client's bytes.
//!
//! Invariants, not just "no panic". The first byte picks where the input is cut; the rest is:
//! - Huffman: decoding never panics; encoding the input and decoding it gives it back;
//! - HPACK: a block that decodes gives fields which, written out again by corelane's
//!   encoder, decode (with a fresh table) to the same fields; a block's every strict prefix
//!   either fails or decodes to a prefix of the fields;
//! - the connection: after a valid preface and SETTINGS, the input as frames gives the same
//!   events, the same result and the same output whether fed whole or in two pieces cut at
//!   the picked byte; what it writes is whole frames; a connection error stops it for good.
#![no_main]

use corelane::proto::http::h2::conn::{ConnError, Connection, Events, Limits};
use corelane::proto::http::h2::fields::Fields;
use corelane::proto::http::h2::frame::{self, Head, Reason};
use corelane::proto::http::h2::hpack::{Decoder, encode, huffman};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    huffman_round_trip(data);
    hpack(data);
    connection(data, pick as usize);
});

fn huffman_round_trip(data: &[u8]) {
    let _ = huffman::decode(data, &mut Vec::new());
    let mut enc = Vec::new();
    huffman::encode(data, &mut enc);
    assert_eq!(enc.len(), huffman::encoded_len(data));
    let mut back = Vec::new();
    huffman::decode(&enc, &mut back).expect("an encoded string decodes");
    assert_eq!(back, data);
}

fn decode(block: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut fields = Vec::new();
    Decoder::new(4096)
        .decode(block, &mut Vec::new(), usize::MAX, |n, v| {
            if fields.len() < 10_000 {
                fields.push((n.to_vec(), v.to_vec()));
            }
        })
        .ok()?;
    Some(fields)
}

fn hpack(block: &[u8]) {
    let Some(fields) = decode(block) else {
        return;
    };
    if fields.len() >= 10_000 {
        return;
    }
    let mut again = Vec::new();
    for (n, v) in &fields {
        if n == b":status" && v.len() == 3 && v.iter().all(u8::is_ascii_digit) && v[0] != b'0' {
            let s: u16 = std::str::from_utf8(v).unwrap().parse().unwrap();
            encode::status(&mut again, s);
        } else {
            encode::field(&mut again, n, v);
        }
    }
    let lower: Vec<_> = fields
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    assert_eq!(decode(&again).as_ref(), Some(&lower));
    for end in 0..block.len().min(64) {
        if let Some(p) = decode(&block[..end]) {
            assert!(p.len() <= fields.len());
            assert_eq!(p[..], fields[..p.len()], "prefix {end}");
        }
    }
}

#[derive(Default, PartialEq, Debug)]
struct Seen(Vec<String>);

impl Events for Seen {
    fn request(&mut self, stream: u32, f: &Fields, end: bool) {
        let fields: Vec<_> = f.iter().collect();
        self.0.push(format!(
            "request {stream} {:?} {:?} {:?} {end} {} {fields:?}",
            f.method(),
            f.path(),
            f.authority(),
            f.too_large()
        ));
    }
    fn data(&mut self, stream: u32, data: &[u8], end: bool) {
        self.0.push(format!("data {stream} {data:?} {end}"));
    }
    fn trailers(&mut self, stream: u32, f: &Fields) {
        self.0.push(format!("trailers {stream} {}", f.len()));
    }
    fn reset(&mut self, stream: u32, reason: Reason) {
        self.0.push(format!("reset {stream} {reason}"));
    }
    fn malformed(&mut self, stream: u32, f: &Fields) {
        self.0.push(format!("malformed {stream} {:?}", f.method()));
    }
}

const LIMITS: Limits = Limits {
    max_streams: 4,
    stream_window: 1000,
    conn_window: 3000,
    max_header_list: 2000,
    max_block: 4000,
};

/// Feeds `pieces` in order, keeping what a piece leaves unused; the events, the error (which
/// stops the feeding) and the output.
fn run(pieces: &[&[u8]]) -> (Seen, Option<ConnError>, Vec<u8>) {
    let mut c = Connection::new(LIMITS);
    let mut seen = Seen::default();
    let mut held = frame::PREFACE.to_vec();
    frame::write_settings(&mut held, &[]);
    let mut err = None;
    for p in pieces {
        held.extend_from_slice(p);
        match c.recv(&held, &mut seen) {
            Ok(used) => {
                assert!(used <= held.len());
                held.drain(..used);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    // Whatever the state, answering on every stream stays within the client's windows.
    for id in (1..40).step_by(2) {
        if c.is_open(id) {
            let room = c.send_room(id);
            c.send_headers(id, 200, std::iter::empty(), false);
            let sent = c.send_data(id, &[0u8; 40], true).unwrap_or(0);
            assert!(sent <= room.min(40));
        }
    }
    (seen, err, c.output().to_vec())
}

fn connection(data: &[u8], pick: usize) {
    let cut = pick % (data.len() + 1);
    let whole = run(&[data]);
    let split = run(&[&data[..cut], &data[cut..]]);
    assert_eq!(whole.0, split.0, "events");
    assert_eq!(whole.1, split.1, "error");
    assert_eq!(whole.2, split.2, "output");
    // The output is whole frames.
    let out = &whole.2;
    let mut pos = 0;
    while let Some(h) = Head::parse(&out[pos..]) {
        pos += frame::HEADER_LEN + h.len;
    }
    assert_eq!(pos, out.len());
}
