//! The Redis engine: a drop-in for twemproxy in front of a fleet of Redis shards.
//!
//! - [`resp`]: RESP2 framing of commands and replies (sans-IO).
//! - [`command`]: where each command's keys are, and what is answered locally or refused.
//! - [`merge`]: combining the replies of a command split across shards.
//! - [`session`]: one client connection: parse, route by key, forward over the worker's
//!   pipelined server connections (`upstream::pipeline`), reply in request order.
//!
//! Commands are forwarded as the client sent them; only split commands and inline commands
//! are re-encoded. Keys are placed exactly as twemproxy places them (`shard`).

pub mod command;
pub mod merge;
pub mod resp;
pub mod session;

use crate::config::model::Sharding;
use crate::upstream::pipeline::Framing;

/// RESP for the pipelined server connections.
#[derive(Debug)]
pub struct Resp;

impl Framing for Resp {
    type Kind = ();
    type Scanner = resp::ReplyScanner;
    type Merge = merge::RedisMerge;

    fn scan(s: &mut Self::Scanner, buf: &[u8], _: ()) -> Result<Option<usize>, &'static str> {
        s.scan(buf).map_err(|e| e.0)
    }

    fn error_reply(out: &mut Vec<u8>, msg: &str) {
        error(out, msg);
    }

    fn is_error(reply: &[u8]) -> bool {
        resp::is_error(reply)
    }
}

/// Writes `-ERR corelane: <msg>\r\n`, with any CR or LF in `msg` made a space.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(b"-ERR corelane: ");
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// The AUTH a new server connection sends first, when the cluster has `redis_auth`.
pub fn hello(sharding: &Sharding) -> Option<Vec<u8>> {
    sharding.redis_auth.as_ref().map(|pw| {
        let mut out = Vec::new();
        resp::write_array_header(&mut out, 2);
        resp::write_bulk(&mut out, b"AUTH");
        resp::write_bulk(&mut out, pw.as_bytes());
        out
    })
}
