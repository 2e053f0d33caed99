//! The Memcached engine (ASCII protocol): a drop-in for twemproxy in front of a memcached
//! fleet.
//!
//! - [`codec`]: framing of requests and replies (sans-IO).
//! - [`merge`]: one `END`-terminated reply from the per-server parts of a split multi-get.
//! - [`session`]: one client connection: route each request by its key over the worker's
//!   pipelined server connections (`upstream::pipeline`), split multi-key retrievals.
//!
//! Requests are forwarded as the client sent them, except split retrievals (rebuilt per
//! server) and `noreply` requests, which are sent without `noreply` so that replies stay in
//! step; corelane drops the server's answer instead. Keys are placed as twemproxy places them.

pub mod codec;
pub mod merge;
pub mod session;

use crate::upstream::pipeline::Framing;
use codec::{Limits, ReplyKind, parse_reply_piece};

/// The ASCII protocol for the pipelined server connections.
#[derive(Debug)]
pub struct Ascii;

/// Resumable reply framing: the bytes of the reply's complete pieces seen so far.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    pos: usize,
}

/// Bounds on server replies: as large as anything a server may hold.
fn reply_limits() -> Limits {
    Limits {
        max_key_len: 250,
        max_value_len: 1 << 30,
        max_keys: usize::MAX,
        max_line: 2048,
    }
}

impl Framing for Ascii {
    type Kind = ReplyKind;
    type Scanner = ReplyScanner;
    type Merge = merge::Multiget;

    fn scan(
        s: &mut ReplyScanner,
        buf: &[u8],
        kind: ReplyKind,
    ) -> Result<Option<usize>, &'static str> {
        let limits = reply_limits();
        loop {
            let piece = parse_reply_piece(&buf[s.pos..], kind, &limits).map_err(|e| match e {
                codec::ReplyError::LineTooLong => "line too long",
                codec::ReplyError::ValueTooLarge => "value too large",
                codec::ReplyError::BadDataChunk => "bad data chunk",
                _ => "malformed reply",
            })?;
            let Some(piece) = piece else {
                return Ok(None);
            };
            s.pos += piece.len();
            if piece.is_last() {
                return Ok(Some(std::mem::take(&mut s.pos)));
            }
        }
    }

    fn error_reply(out: &mut Vec<u8>, msg: &str) {
        error(out, msg);
    }

    fn is_error(reply: &[u8]) -> bool {
        is_error(reply)
    }
}

/// Writes `SERVER_ERROR corelane: <msg>\r\n`, with any CR or LF in `msg` made a space.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(b"SERVER_ERROR corelane: ");
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Whether a complete reply is (or, for a retrieval, ends in) an error line.
pub fn is_error(reply: &[u8]) -> bool {
    reply.starts_with(b"ERROR")
        || reply.starts_with(b"CLIENT_ERROR")
        || reply.starts_with(b"SERVER_ERROR")
}
