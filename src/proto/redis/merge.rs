//! Merging the replies of a command split across shards into the one reply the client
//! expects: MGET values in the client's key order, MSET's single OK, and the summed counts of
//! DEL, UNLINK, EXISTS and TOUCH. The first error reply from any shard is the client's reply.

use super::resp;
use crate::proto::keyed::replies::Merge;

#[derive(Debug)]
pub enum RedisMerge {
    /// `order[k]` = (part, index in that part's MGET) of the client's `k`-th key.
    Mget {
        order: Vec<(u32, u32)>,
        parts: Vec<Vec<u8>>,
        error: Option<Vec<u8>>,
    },
    /// MSET: all parts must say OK.
    Ok { error: Option<Vec<u8>> },
    /// Integer replies summed.
    Sum { total: i64, error: Option<Vec<u8>> },
}

impl RedisMerge {
    pub fn mget(order: Vec<(u32, u32)>, parts: usize) -> Self {
        RedisMerge::Mget {
            order,
            parts: vec![Vec::new(); parts],
            error: None,
        }
    }
}

fn keep_first(error: &mut Option<Vec<u8>>, reply: &[u8]) {
    if error.is_none() {
        *error = Some(reply.to_vec());
    }
}

const BAD_REPLY: &[u8] = b"-ERR corelane: a shard sent an unexpected reply\r\n";

impl Merge for RedisMerge {
    fn part(&mut self, part: u32, reply: &[u8]) {
        match self {
            RedisMerge::Mget { parts, error, .. } => {
                if resp::is_error(reply) {
                    keep_first(error, reply);
                } else if let Some(p) = parts.get_mut(part as usize) {
                    *p = reply.to_vec();
                }
            }
            RedisMerge::Ok { error } => {
                if reply != b"+OK\r\n" {
                    keep_first(
                        error,
                        if resp::is_error(reply) {
                            reply
                        } else {
                            BAD_REPLY
                        },
                    );
                }
            }
            RedisMerge::Sum { total, error } => match resp::integer(reply) {
                Some(n) => *total = total.saturating_add(n),
                None => keep_first(
                    error,
                    if resp::is_error(reply) {
                        reply
                    } else {
                        BAD_REPLY
                    },
                ),
            },
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            RedisMerge::Mget {
                order,
                parts,
                error,
            } => {
                if let Some(e) = error {
                    out.extend_from_slice(e);
                    return;
                }
                let mut items: Vec<Vec<std::ops::Range<usize>>> = Vec::with_capacity(parts.len());
                for p in parts.iter() {
                    let mut v = Vec::new();
                    if resp::array_items(p, &mut v).is_none() {
                        out.extend_from_slice(BAD_REPLY);
                        return;
                    }
                    items.push(v);
                }
                let start = out.len();
                resp::write_array_header(out, order.len());
                for &(part, index) in order.iter() {
                    let item = items
                        .get(part as usize)
                        .and_then(|v| v.get(index as usize))
                        .zip(parts.get(part as usize));
                    match item {
                        Some((r, p)) => out.extend_from_slice(&p[r.clone()]),
                        None => {
                            out.truncate(start);
                            out.extend_from_slice(BAD_REPLY);
                            return;
                        }
                    }
                }
            }
            RedisMerge::Ok { error } => match error {
                Some(e) => out.extend_from_slice(e),
                None => out.extend_from_slice(b"+OK\r\n"),
            },
            RedisMerge::Sum { total, error } => match error {
                Some(e) => out.extend_from_slice(e),
                None => resp::write_integer(out, *total),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(mut m: RedisMerge, parts: &[(u32, &[u8])]) -> Vec<u8> {
        for (p, r) in parts {
            m.part(*p, r);
        }
        let mut out = Vec::new();
        m.finish(&mut out);
        out
    }

    #[test]
    fn mget_restores_the_client_key_order() {
        // Keys a, b, c: a and c on part 0, b on part 1.
        let m = RedisMerge::mget(vec![(0, 0), (1, 0), (0, 1)], 2);
        let out = merged(
            m,
            &[(1, b"*1\r\n$1\r\nB\r\n"), (0, b"*2\r\n$1\r\nA\r\n$-1\r\n")],
        );
        assert_eq!(out, b"*3\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n");
    }

    #[test]
    fn errors_and_sums() {
        let m = RedisMerge::mget(vec![(0, 0), (1, 0)], 2);
        let out = merged(m, &[(0, b"*1\r\n$1\r\nA\r\n"), (1, b"-ERR down\r\n")]);
        assert_eq!(out, b"-ERR down\r\n");
        let m = RedisMerge::mget(vec![(0, 0), (0, 1)], 1);
        assert_eq!(merged(m, &[(0, b"*1\r\n$1\r\nA\r\n")]), BAD_REPLY);
        let ok = || RedisMerge::Ok { error: None };
        assert_eq!(
            merged(ok(), &[(0, b"+OK\r\n"), (1, b"+OK\r\n")]),
            b"+OK\r\n"
        );
        assert_eq!(
            merged(ok(), &[(0, b"+OK\r\n"), (1, b"-ERR x\r\n")]),
            b"-ERR x\r\n"
        );
        let sum = || RedisMerge::Sum {
            total: 0,
            error: None,
        };
        assert_eq!(merged(sum(), &[(0, b":2\r\n"), (1, b":3\r\n")]), b":5\r\n");
        assert_eq!(merged(sum(), &[(0, b":2\r\n"), (1, b"+OK\r\n")]), BAD_REPLY);
    }
}
