//! Fuzzes the memcached ASCII codec: requests, and server replies of both kinds.
//!
//! Invariants, not just "no panic": the first byte picks tight or default limits; the rest is
//! read as a client stream and as a server stream, each frame consuming `len` bytes. Every
//! frame is non-empty and inside the input, its ranges are inside it and within the limits,
//! a data block is followed by `\r\n`, every strict prefix of a request is incomplete, and the
//! rewrites the proxy will send (`write_without_noreply`, `write_retrieval`) parse back to the
//! same command and keys. An error that lets the connection go on skips a non-empty line.
#![no_main]

use corelane::proto::memcache::codec::{
    Command, Limits, Piece, ReplyKind, Request, parse_reply, parse_reply_piece, parse_request,
    write_retrieval, write_without_noreply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let limits = if pick & 1 == 0 {
        Limits {
            max_key_len: 8,
            max_value_len: 16,
            max_keys: 3,
            max_line: 32,
        }
    } else {
        Limits::default()
    };
    requests(data, &limits);
    replies(data, ReplyKind::Retrieval, &limits);
    replies(data, ReplyKind::Line, &limits);
});

fn requests(mut data: &[u8], limits: &Limits) {
    while !data.is_empty() {
        match parse_request(data, limits) {
            Ok(Some(req)) => {
                check_request(data, &req, limits);
                data = &data[req.len..];
            }
            Ok(None) => return,
            Err(e) => match e.skip() {
                Some(n) => {
                    assert!(n > 0 && n <= data.len() && data[n - 1] == b'\n', "skip {n}");
                    data = &data[n..];
                }
                None => return,
            },
        }
    }
}

fn check_request(buf: &[u8], req: &Request, limits: &Limits) {
    assert!(req.len > 0 && req.len <= buf.len());
    assert!(req.keys.len() <= limits.max_keys);
    for key in &req.keys {
        assert!(!key.is_empty() && key.len() <= limits.max_key_len && key.end <= req.len);
    }
    let keyed = req.command.is_storage()
        || matches!(
            req.command,
            Command::Delete | Command::Incr | Command::Decr | Command::Touch
        );
    match req.keys.len() {
        0 => assert!(!keyed && !req.command.is_retrieval()),
        1 => assert!(keyed || req.command.is_retrieval()),
        _ => assert!(req.command.is_retrieval()),
    }
    match &req.data {
        Some(d) => {
            assert!(req.command.is_storage() && d.len() <= limits.max_value_len);
            assert_eq!((d.end + 2, &buf[d.end..req.len]), (req.len, &b"\r\n"[..]));
        }
        None => assert!(!req.command.is_storage() && buf[req.len - 1] == b'\n'),
    }
    if let Some(e) = &req.exptime {
        assert!(e.end <= req.len);
    }
    // Every strict prefix is incomplete (checked at a few cuts to stay fast).
    for cut in [0, req.len / 3, req.len / 2, req.len - 1] {
        assert_eq!(parse_request(&buf[..cut], limits), Ok(None), "cut at {cut}");
    }
    let mut out = Vec::new();
    write_without_noreply(buf, req, &mut out);
    let again = reparse(&out, limits);
    assert_eq!(
        (again.command, again.noreply, again.data.clone().map(|d| d.len())),
        (req.command, false, req.data.clone().map(|d| d.len()))
    );
    assert_eq!(keys(&out, &again), keys(buf, req));
    if req.command.is_retrieval() {
        out.clear();
        write_retrieval(buf, req, (0..req.keys.len()).rev(), &mut out);
        let again = reparse(&out, limits);
        let mut want = keys(buf, req);
        want.reverse();
        assert_eq!((again.command, keys(&out, &again)), (req.command, want));
    }
}

fn reparse(out: &[u8], limits: &Limits) -> Request {
    match parse_request(out, limits) {
        Ok(Some(again)) if again.len == out.len() => again,
        other => panic!(
            "rewrite {:?} parsed as {other:?}",
            String::from_utf8_lossy(out)
        ),
    }
}

fn keys<'a>(buf: &'a [u8], req: &Request) -> Vec<&'a [u8]> {
    req.keys.iter().map(|k| &buf[k.clone()]).collect()
}

fn replies(mut data: &[u8], kind: ReplyKind, limits: &Limits) {
    while !data.is_empty() {
        let Ok(Some(reply)) = parse_reply(data, kind, limits) else {
            return;
        };
        assert!(reply.len > 0 && reply.len <= data.len());
        assert!(reply.values.len() <= limits.max_keys);
        assert!(kind == ReplyKind::Retrieval || reply.values.is_empty());
        let mut at = 0;
        for v in &reply.values {
            assert!(v.block.start == at && v.block.end <= reply.len);
            assert!(v.key.start > v.block.start && v.key.end <= v.data.start);
            assert!(v.key.len() <= limits.max_key_len && v.data.len() <= limits.max_value_len);
            assert_eq!(&data[v.data.end..v.block.end], b"\r\n");
            at = v.block.end;
        }
        assert_eq!(&data[reply.len - 2..reply.len], b"\r\n");
        // Streaming by pieces frames the same reply.
        let mut end = 0;
        while let Ok(Some(piece)) = parse_reply_piece(&data[end..], kind, limits) {
            end += piece.len();
            if piece.is_last() {
                break;
            }
            assert!(matches!(piece, Piece::Value(_)));
        }
        assert_eq!(end, reply.len);
        data = &data[reply.len..];
    }
}
