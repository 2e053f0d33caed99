//! Merging a multi-key retrieval split across servers: the `VALUE` items of every part, in
//! the client's key order, then one `END`. A server error in any part is the client's reply
//! (the first one), as a client cannot tell which keys it concerns.

use std::ops::Range;

use super::codec::{ReplyKind, parse_reply};
use super::{is_error, reply_limits};
use crate::proto::keyed::replies::Merge;

/// A value's key and its whole `VALUE ...` block, as ranges of a part's reply.
type KeyBlock = (Range<usize>, Range<usize>);

#[derive(Debug)]
pub struct Multiget {
    /// For each key the client asked for, in its order: the part that has it, and the key.
    order: Vec<(u32, Box<[u8]>)>,
    parts: Vec<Vec<u8>>,
    error: Option<Vec<u8>>,
}

impl Multiget {
    pub fn new(order: Vec<(u32, Box<[u8]>)>, parts: usize) -> Self {
        Multiget {
            order,
            parts: vec![Vec::new(); parts],
            error: None,
        }
    }
}

impl Merge for Multiget {
    fn part(&mut self, part: u32, reply: &[u8]) {
        if is_error(reply) || !reply.ends_with(b"END\r\n") {
            if self.error.is_none() {
                // Values may come before the error line: keep only the last line.
                let body = reply.strip_suffix(b"\r\n").unwrap_or(reply);
                let start = body
                    .windows(2)
                    .rposition(|w| w == b"\r\n")
                    .map_or(0, |i| i + 2);
                self.error = Some(reply[start..].to_vec());
            }
        } else if let Some(p) = self.parts.get_mut(part as usize) {
            *p = reply.to_vec();
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(e) = &self.error {
            out.extend_from_slice(e);
            return;
        }
        let limits = reply_limits();
        // Each part's items, and a cursor: a server answers in the order it was asked.
        let mut items: Vec<(Vec<KeyBlock>, usize)> = self
            .parts
            .iter()
            .map(|p| match parse_reply(p, ReplyKind::Retrieval, &limits) {
                Ok(Some(r)) => (r.values.into_iter().map(|v| (v.key, v.block)).collect(), 0),
                _ => (Vec::new(), 0),
            })
            .collect();
        for (part, key) in &self.order {
            let Some((values, next)) = items.get_mut(*part as usize) else {
                continue;
            };
            let body = &self.parts[*part as usize];
            if let Some((k, block)) = values.get(*next) {
                if body[k.clone()] == **key {
                    out.extend_from_slice(&body[block.clone()]);
                    *next += 1;
                }
            }
        }
        out.extend_from_slice(b"END\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Box<[u8]> {
        k.as_bytes().into()
    }

    #[test]
    fn values_come_in_the_client_order_with_one_end() {
        // Keys a (part 0), b (part 1), c (part 0, a miss), d (part 1).
        let mut m = Multiget::new(
            vec![(0, key("a")), (1, key("b")), (0, key("c")), (1, key("d"))],
            2,
        );
        m.part(1, b"VALUE b 0 1\r\nB\r\nVALUE d 5 2\r\nDD\r\nEND\r\n");
        m.part(0, b"VALUE a 0 1\r\nA\r\nEND\r\n");
        let mut out = Vec::new();
        m.finish(&mut out);
        assert_eq!(
            out,
            b"VALUE a 0 1\r\nA\r\nVALUE b 0 1\r\nB\r\nVALUE d 5 2\r\nDD\r\nEND\r\n"
        );
    }

    #[test]
    fn an_error_part_is_the_reply() {
        let mut m = Multiget::new(vec![(0, key("a")), (1, key("b"))], 2);
        m.part(0, b"VALUE a 0 1\r\nA\r\nEND\r\n");
        m.part(1, b"SERVER_ERROR corelane: server down\r\n");
        let mut out = Vec::new();
        m.finish(&mut out);
        assert_eq!(out, b"SERVER_ERROR corelane: server down\r\n");
    }
}
