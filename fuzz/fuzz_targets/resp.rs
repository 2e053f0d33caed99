//! Fuzzes the RESP codec: client commands, server replies, and merging split replies.
//!
//! Invariants, not just "no panic". The first byte picks the limits (bits 0-1) and how the
//! stream is cut into reads (bits 2-3); the rest is read as a client stream and as a server
//! stream, each frame consuming `len` bytes:
//! - commands: `len` is non-empty and inside the input, argument ranges lie inside the frame
//!   in order, at most `max_args` of them, a bulk argument is at most `max_bulk_len` and ends
//!   in CRLF, an inline command ends its line; every strict prefix is incomplete;
//! - replies: `len` is non-empty and inside the input and ends in CRLF, every strict prefix is
//!   incomplete, `integer` reads exactly the `:` replies, `array_items` gives contiguous
//!   ranges that end where the reply ends;
//! - resumability: the same bytes fed to a fresh parser (scanner) in reads of pseudo-random
//!   sizes give the same frames, and the same end (incomplete, or an error at the same frame);
//! - merging: MGET, MSET and summed replies built from the replies found are themselves one
//!   complete reply.
#![no_main]

use std::ops::Range;

use corelane::config::model::{defaults, limits as most};
use corelane::proto::keyed::replies::Merge;
use corelane::proto::redis::merge::RedisMerge;
use corelane::proto::redis::resp::{
    Limits, MAX_INLINE, ReplyScanner, Request, RequestParser, array_items, integer, is_error,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let limits = match pick & 3 {
        0 => Limits {
            max_args: defaults::MAX_ARGS,
            max_bulk_len: defaults::MAX_BULK_LEN,
        },
        1 => Limits {
            max_args: 3,
            max_bulk_len: 8,
        },
        2 => Limits {
            max_args: 1,
            max_bulk_len: 1,
        },
        _ => Limits {
            max_args: most::MAX_ARGS as usize,
            max_bulk_len: most::MAX_BULK_LEN as usize,
        },
    };
    let reads = Reads::new(pick, data);

    let whole = requests(data, limits, None);
    assert_eq!(requests(data, limits, Some(reads.clone())), whole);

    let (found, end) = replies(data, None);
    assert_eq!(replies(data, Some(reads)), (found.clone(), end));
    let found: Vec<&[u8]> = found.iter().map(|r| &data[r.clone()]).collect();
    merges(pick, &found);
});

/// How a stream ended: waiting for more bytes, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Incomplete,
    Error,
}

/// Sizes of successive reads, derived from the input so that a crash reproduces.
#[derive(Clone)]
struct Reads {
    state: u64,
    min: usize,
    spread: u64,
}

impl Reads {
    fn new(pick: u8, data: &[u8]) -> Self {
        // FNV-1a of the input seeds the sizes; at most about 64 reads keep big inputs fast.
        let state = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Reads {
            state: state | 1,
            min: (data.len() / 64).max(1),
            spread: [1, 4, 32, 512][usize::from(pick >> 2 & 3)],
        }
    }

    fn next(&mut self) -> usize {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.min + (self.state % self.spread) as usize
    }
}

/// One command: its length, argument ranges and whether it was inline.
type Frame = (usize, Vec<Range<usize>>, bool);

/// Parses every command in `data`, from the whole buffer at once or in `reads`.
fn requests(data: &[u8], limits: Limits, mut reads: Option<Reads>) -> (Vec<Frame>, End) {
    let mut parser = RequestParser::default();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut avail = if reads.is_some() { 0 } else { data.len() };
    loop {
        let buf = &data[at..avail];
        match parser.parse(buf, limits) {
            Ok(Some(req)) => {
                check_request(buf, &req, limits);
                frames.push((req.len, req.args.to_vec(), req.inline));
                at += req.len;
            }
            Ok(None) => match reads.as_mut() {
                Some(r) if avail < data.len() => avail = (avail + r.next()).min(data.len()),
                _ => return (frames, End::Incomplete),
            },
            Err(_) => return (frames, End::Error),
        }
    }
}

fn check_request(buf: &[u8], req: &Request, limits: Limits) {
    let len = req.len;
    assert!(len > 0 && len <= buf.len(), "len {len} of {}", buf.len());
    assert!(req.args.len() <= limits.max_args);
    let mut after = 0;
    for a in req.args {
        assert!(
            after <= a.start && a.start <= a.end && a.end <= len,
            "{a:?} in {len}"
        );
        after = a.end;
    }
    if req.inline {
        assert_ne!(buf[0], b'*');
        assert_eq!(buf[len - 1], b'\n');
        assert!(len <= MAX_INLINE + 1, "inline command of {len} bytes");
        for a in req.args {
            assert!(!a.is_empty() && a.end < len);
            let bad = |b: &u8| matches!(b, b' ' | b'\t' | b'"' | b'\'' | b'\n');
            assert!(!buf[a.clone()].iter().any(bad));
        }
    } else {
        assert_eq!(buf[0], b'*');
        for a in req.args {
            assert!(a.len() <= limits.max_bulk_len);
            assert_eq!(&buf[a.start - 1..a.start], b"\n");
            assert_eq!(&buf[a.end..a.end + 2], b"\r\n");
        }
        let header_end = req.args.last().map_or(len, |a| a.end + 2);
        assert_eq!(header_end, len);
    }
    // Every strict prefix is incomplete (checked at a few cuts to stay fast).
    for cut in [0, len / 3, len / 2, len - 1] {
        let mut p = RequestParser::default();
        assert_eq!(p.parse(&buf[..cut], limits), Ok(None), "cut at {cut}");
    }
}

/// Scans every reply in `data`, from the whole buffer at once or in `reads`.
fn replies(data: &[u8], mut reads: Option<Reads>) -> (Vec<Range<usize>>, End) {
    let mut scanner = ReplyScanner::default();
    let mut found = Vec::new();
    let mut at = 0;
    let mut avail = if reads.is_some() { 0 } else { data.len() };
    loop {
        let buf = &data[at..avail];
        match scanner.scan(buf) {
            Ok(Some(len)) => {
                check_reply(buf, len);
                found.push(at..at + len);
                at += len;
            }
            Ok(None) => match reads.as_mut() {
                Some(r) if avail < data.len() => avail = (avail + r.next()).min(data.len()),
                _ => return (found, End::Incomplete),
            },
            Err(_) => return (found, End::Error),
        }
    }
}

fn check_reply(buf: &[u8], len: usize) {
    assert!(len > 0 && len <= buf.len(), "len {len} of {}", buf.len());
    let reply = &buf[..len];
    assert!(matches!(reply[0], b'+' | b'-' | b':' | b'$' | b'*'));
    assert!(reply.ends_with(b"\r\n"));
    for cut in [0, len / 3, len / 2, len - 1] {
        assert_eq!(
            ReplyScanner::default().scan(&reply[..cut]),
            Ok(None),
            "cut {cut}"
        );
    }
    assert_eq!(integer(reply).is_some(), reply[0] == b':');
    assert_eq!(is_error(reply), reply[0] == b'-');
    let mut items = Vec::new();
    if array_items(reply, &mut items).is_some() {
        assert_eq!(reply[0], b'*');
        let mut at = items.first().map_or(len, |i| i.start);
        assert_eq!(reply[at - 1], b'\n');
        for i in &items {
            assert!(
                i.start == at && i.end > i.start && i.end <= len,
                "{i:?} at {at}"
            );
            assert_eq!(reply[i.start], b'$');
            assert!(reply[..i.end].ends_with(b"\r\n"));
            at = i.end;
        }
        assert_eq!(at, len);
    }
}

/// Merges the first replies as the parts of an MGET, an MSET and a summed count; each merged
/// reply must be one complete reply.
fn merges(pick: u8, replies: &[&[u8]]) {
    let replies = &replies[..replies.len().min(4)];
    if replies.is_empty() {
        return;
    }
    let parts = replies.len() as u32;
    // The client's keys: a few (part, index) pairs, a part past the end now and then.
    let order = (0..u32::from(pick >> 4) % 6)
        .map(|k| ((k + u32::from(pick)) % (parts + 1), k % 3))
        .collect();
    let merged = [
        RedisMerge::mget(order, replies.len()),
        RedisMerge::Ok { error: None },
        RedisMerge::Sum {
            total: 0,
            error: None,
        },
    ];
    for mut m in merged {
        for (part, r) in (0..).zip(replies) {
            m.part(part, r);
        }
        let mut out = Vec::new();
        m.finish(&mut out);
        let scanned = ReplyScanner::default().scan(&out);
        assert_eq!(
            scanned,
            Ok(Some(out.len())),
            "{m:?} gave {:?}",
            out.escape_ascii().to_string()
        );
    }
}
