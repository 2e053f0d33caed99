//! The Redis command table: for each command a sharding proxy forwards, where its keys are and
//! whether it only reads; for the rest, why it is answered locally or refused.
//!
//! Key positions follow Redis' own `COMMAND` key specs (first key, last key, step), plus a
//! `numkeys` form for commands whose key count is an argument (EVAL, ZUNIONSTORE, ...).
//! Commands not in the table are refused with an error naming them, never forwarded blind: a
//! command we cannot place could land on the wrong shard.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::LazyLock;

/// What the engine does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keys at `first..=last` (negative `last` counts from the end) every `step` arguments;
    /// they must all be on one shard.
    Keys { first: u8, last: i8, step: u8 },
    /// The argument at `at` says how many keys follow it; `dest` is an extra key at 1.
    NumKeys { at: u8, dest: bool },
    /// Split across shards and merged (MGET, MSET, DEL, ...).
    Split(Split),
    /// Answered by corelane itself.
    Local(Local),
    /// Refused: the reason is the error text.
    Refused(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// MGET: values in the client's key order.
    Mget,
    /// MSET: OK once every shard said OK.
    Mset,
    /// DEL, UNLINK, EXISTS, TOUCH: integer replies summed.
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Select,
    Command,
    Auth,
    Hello,
}

/// A table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    /// Read-only: may go to a replica.
    pub read: bool,
    /// Fewest arguments, the command name included (Redis' arity, as a minimum).
    pub min_args: u8,
}

const fn keys(first: u8, last: i8, step: u8) -> Kind {
    Kind::Keys { first, last, step }
}
const ONE: Kind = keys(1, 1, 1);
const ALL: Kind = keys(1, -1, 1);

const BLOCKING: &str = "blocking commands are not supported through a sharding proxy";
const MULTI: &str = "transactions are not supported through a sharding proxy";
const PUBSUB: &str = "pub/sub is not supported through a sharding proxy";
const KEYSPACE: &str =
    "commands over the whole keyspace are not supported through a sharding proxy";
const ADMIN: &str =
    "server administration commands are not supported through a proxy; connect to the server";

/// (name, kind, read-only, minimum arguments).
#[rustfmt::skip]
const TABLE: &[(&str, Kind, bool, u8)] = &[
    // Strings
    ("get", ONE, true, 2), ("set", ONE, false, 3), ("setnx", ONE, false, 3),
    ("setex", ONE, false, 4), ("psetex", ONE, false, 4), ("getset", ONE, false, 3),
    ("getdel", ONE, false, 2), ("getex", ONE, false, 2), ("append", ONE, false, 3),
    ("strlen", ONE, true, 2), ("incr", ONE, false, 2), ("decr", ONE, false, 2),
    ("incrby", ONE, false, 3), ("decrby", ONE, false, 3), ("incrbyfloat", ONE, false, 3),
    ("getrange", ONE, true, 4), ("substr", ONE, true, 4), ("setrange", ONE, false, 4),
    ("getbit", ONE, true, 3), ("setbit", ONE, false, 4), ("bitcount", ONE, true, 2),
    ("bitpos", ONE, true, 3), ("bitfield", ONE, false, 2), ("bitfield_ro", ONE, true, 2),
    ("lcs", keys(1, 2, 1), true, 3),
    ("mget", Kind::Split(Split::Mget), true, 2), ("mset", Kind::Split(Split::Mset), false, 3),
    ("msetnx", keys(1, -1, 2), false, 3),
    // Keys
    ("del", Kind::Split(Split::Sum), false, 2), ("unlink", Kind::Split(Split::Sum), false, 2),
    ("exists", Kind::Split(Split::Sum), true, 2), ("touch", Kind::Split(Split::Sum), true, 2),
    ("expire", ONE, false, 3), ("pexpire", ONE, false, 3), ("expireat", ONE, false, 3),
    ("pexpireat", ONE, false, 3), ("expiretime", ONE, true, 2), ("pexpiretime", ONE, true, 2),
    ("ttl", ONE, true, 2), ("pttl", ONE, true, 2), ("persist", ONE, false, 2),
    ("type", ONE, true, 2), ("dump", ONE, true, 2), ("restore", ONE, false, 4),
    ("rename", keys(1, 2, 1), false, 3), ("renamenx", keys(1, 2, 1), false, 3),
    ("copy", keys(1, 2, 1), false, 3), ("sort", ONE, false, 2), ("sort_ro", ONE, true, 2),
    ("object", keys(2, 2, 1), true, 3),
    // Hashes
    ("hget", ONE, true, 3), ("hset", ONE, false, 4), ("hsetnx", ONE, false, 4),
    ("hmget", ONE, true, 3), ("hmset", ONE, false, 4), ("hdel", ONE, false, 3),
    ("hlen", ONE, true, 2), ("hstrlen", ONE, true, 3), ("hexists", ONE, true, 3),
    ("hincrby", ONE, false, 4), ("hincrbyfloat", ONE, false, 4), ("hkeys", ONE, true, 2),
    ("hvals", ONE, true, 2), ("hgetall", ONE, true, 2), ("hscan", ONE, true, 3),
    ("hrandfield", ONE, true, 2),
    // Lists
    ("lpush", ONE, false, 3), ("rpush", ONE, false, 3), ("lpushx", ONE, false, 3),
    ("rpushx", ONE, false, 3), ("lpop", ONE, false, 2), ("rpop", ONE, false, 2),
    ("llen", ONE, true, 2), ("lindex", ONE, true, 3), ("lset", ONE, false, 4),
    ("lrange", ONE, true, 4), ("ltrim", ONE, false, 4), ("lrem", ONE, false, 4),
    ("linsert", ONE, false, 5), ("lpos", ONE, true, 3),
    ("rpoplpush", keys(1, 2, 1), false, 3), ("lmove", keys(1, 2, 1), false, 5),
    ("lmpop", Kind::NumKeys { at: 1, dest: false }, false, 4),
    // Sets
    ("sadd", ONE, false, 3), ("srem", ONE, false, 3), ("scard", ONE, true, 2),
    ("sismember", ONE, true, 3), ("smismember", ONE, true, 3), ("smembers", ONE, true, 2),
    ("spop", ONE, false, 2), ("srandmember", ONE, true, 2), ("sscan", ONE, true, 3),
    ("smove", keys(1, 2, 1), false, 4), ("sinter", ALL, true, 2), ("sunion", ALL, true, 2),
    ("sdiff", ALL, true, 2), ("sinterstore", ALL, false, 3), ("sunionstore", ALL, false, 3),
    ("sdiffstore", ALL, false, 3), ("sintercard", Kind::NumKeys { at: 1, dest: false }, true, 3),
    // Sorted sets
    ("zadd", ONE, false, 4), ("zincrby", ONE, false, 4), ("zrem", ONE, false, 3),
    ("zcard", ONE, true, 2), ("zcount", ONE, true, 4), ("zlexcount", ONE, true, 4),
    ("zscore", ONE, true, 3), ("zmscore", ONE, true, 3), ("zrank", ONE, true, 3),
    ("zrevrank", ONE, true, 3), ("zrange", ONE, true, 4), ("zrevrange", ONE, true, 4),
    ("zrangebyscore", ONE, true, 4), ("zrevrangebyscore", ONE, true, 4),
    ("zrangebylex", ONE, true, 4), ("zrevrangebylex", ONE, true, 4),
    ("zremrangebyrank", ONE, false, 4), ("zremrangebyscore", ONE, false, 4),
    ("zremrangebylex", ONE, false, 4), ("zpopmin", ONE, false, 2), ("zpopmax", ONE, false, 2),
    ("zrandmember", ONE, true, 2), ("zscan", ONE, true, 3),
    ("zrangestore", keys(1, 2, 1), false, 5),
    ("zunionstore", Kind::NumKeys { at: 2, dest: true }, false, 4),
    ("zinterstore", Kind::NumKeys { at: 2, dest: true }, false, 4),
    ("zdiffstore", Kind::NumKeys { at: 2, dest: true }, false, 4),
    ("zunion", Kind::NumKeys { at: 1, dest: false }, true, 3),
    ("zinter", Kind::NumKeys { at: 1, dest: false }, true, 3),
    ("zdiff", Kind::NumKeys { at: 1, dest: false }, true, 3),
    ("zintercard", Kind::NumKeys { at: 1, dest: false }, true, 3),
    ("zmpop", Kind::NumKeys { at: 1, dest: false }, false, 4),
    // HyperLogLog, geo, streams
    ("pfadd", ONE, false, 2), ("pfcount", ALL, true, 2), ("pfmerge", ALL, false, 2),
    ("geoadd", ONE, false, 5), ("geodist", ONE, true, 4), ("geohash", ONE, true, 2),
    ("geopos", ONE, true, 2), ("geosearch", ONE, true, 7),
    ("geosearchstore", keys(1, 2, 1), false, 8),
    ("xadd", ONE, false, 5), ("xlen", ONE, true, 2), ("xrange", ONE, true, 4),
    ("xrevrange", ONE, true, 4), ("xdel", ONE, false, 3), ("xtrim", ONE, false, 4),
    ("xack", ONE, false, 4), ("xpending", ONE, true, 3), ("xclaim", ONE, false, 6),
    ("xautoclaim", ONE, false, 6), ("xgroup", keys(2, 2, 1), false, 3),
    ("xinfo", keys(2, 2, 1), true, 3), ("xsetid", ONE, false, 3),
    // Scripting: the keys given must share a shard.
    ("eval", Kind::NumKeys { at: 2, dest: false }, false, 3),
    ("evalsha", Kind::NumKeys { at: 2, dest: false }, false, 3),
    ("eval_ro", Kind::NumKeys { at: 2, dest: false }, true, 3),
    ("evalsha_ro", Kind::NumKeys { at: 2, dest: false }, true, 3),
    ("fcall", Kind::NumKeys { at: 2, dest: false }, false, 3),
    ("fcall_ro", Kind::NumKeys { at: 2, dest: false }, true, 3),
    // Answered by corelane.
    ("ping", Kind::Local(Local::Ping), true, 1), ("echo", Kind::Local(Local::Echo), true, 2),
    ("quit", Kind::Local(Local::Quit), true, 1), ("select", Kind::Local(Local::Select), true, 2),
    ("command", Kind::Local(Local::Command), true, 1), ("auth", Kind::Local(Local::Auth), true, 2),
    ("hello", Kind::Local(Local::Hello), true, 1),
    // Refused.
    ("blpop", Kind::Refused(BLOCKING), false, 3), ("brpop", Kind::Refused(BLOCKING), false, 3),
    ("brpoplpush", Kind::Refused(BLOCKING), false, 4), ("blmove", Kind::Refused(BLOCKING), false, 6),
    ("blmpop", Kind::Refused(BLOCKING), false, 5), ("bzpopmin", Kind::Refused(BLOCKING), false, 3),
    ("bzpopmax", Kind::Refused(BLOCKING), false, 3), ("bzmpop", Kind::Refused(BLOCKING), false, 5),
    ("xread", Kind::Refused(BLOCKING), false, 4), ("xreadgroup", Kind::Refused(BLOCKING), false, 7),
    ("wait", Kind::Refused(BLOCKING), false, 3), ("waitaof", Kind::Refused(BLOCKING), false, 4),
    ("multi", Kind::Refused(MULTI), false, 1), ("exec", Kind::Refused(MULTI), false, 1),
    ("discard", Kind::Refused(MULTI), false, 1), ("watch", Kind::Refused(MULTI), false, 2),
    ("unwatch", Kind::Refused(MULTI), false, 1),
    ("subscribe", Kind::Refused(PUBSUB), false, 2), ("unsubscribe", Kind::Refused(PUBSUB), false, 1),
    ("psubscribe", Kind::Refused(PUBSUB), false, 2), ("punsubscribe", Kind::Refused(PUBSUB), false, 1),
    ("ssubscribe", Kind::Refused(PUBSUB), false, 2), ("sunsubscribe", Kind::Refused(PUBSUB), false, 1),
    ("publish", Kind::Refused(PUBSUB), false, 3), ("spublish", Kind::Refused(PUBSUB), false, 3),
    ("pubsub", Kind::Refused(PUBSUB), false, 2), ("monitor", Kind::Refused(PUBSUB), false, 1),
    ("keys", Kind::Refused(KEYSPACE), false, 2), ("scan", Kind::Refused(KEYSPACE), false, 2),
    ("randomkey", Kind::Refused(KEYSPACE), false, 1), ("dbsize", Kind::Refused(KEYSPACE), false, 1),
    ("flushdb", Kind::Refused(KEYSPACE), false, 1), ("flushall", Kind::Refused(KEYSPACE), false, 1),
    ("swapdb", Kind::Refused(KEYSPACE), false, 3), ("move", Kind::Refused(KEYSPACE), false, 3),
    ("migrate", Kind::Refused(KEYSPACE), false, 6),
    ("script", Kind::Refused(ADMIN), false, 2), ("function", Kind::Refused(ADMIN), false, 2),
    ("config", Kind::Refused(ADMIN), false, 2), ("client", Kind::Refused(ADMIN), false, 2),
    ("info", Kind::Refused(ADMIN), false, 1), ("debug", Kind::Refused(ADMIN), false, 2),
    ("shutdown", Kind::Refused(ADMIN), false, 1), ("save", Kind::Refused(ADMIN), false, 1),
    ("bgsave", Kind::Refused(ADMIN), false, 1), ("bgrewriteaof", Kind::Refused(ADMIN), false, 1),
    ("lastsave", Kind::Refused(ADMIN), false, 1), ("slaveof", Kind::Refused(ADMIN), false, 3),
    ("replicaof", Kind::Refused(ADMIN), false, 3), ("sync", Kind::Refused(ADMIN), false, 1),
    ("psync", Kind::Refused(ADMIN), false, 3), ("cluster", Kind::Refused(ADMIN), false, 2),
    ("readonly", Kind::Refused(ADMIN), false, 1), ("readwrite", Kind::Refused(ADMIN), false, 1),
    ("acl", Kind::Refused(ADMIN), false, 2), ("slowlog", Kind::Refused(ADMIN), false, 2),
    ("latency", Kind::Refused(ADMIN), false, 2), ("memory", Kind::Refused(ADMIN), false, 2),
    ("role", Kind::Refused(ADMIN), false, 1), ("time", Kind::Refused(ADMIN), false, 1),
    ("failover", Kind::Refused(ADMIN), false, 1), ("reset", Kind::Refused(ADMIN), false, 1),
    ("module", Kind::Refused(ADMIN), false, 2), ("lolwut", Kind::Refused(ADMIN), false, 1),
];

static BY_NAME: LazyLock<HashMap<&'static [u8], Spec>> = LazyLock::new(|| {
    TABLE
        .iter()
        .map(|&(name, kind, read, min_args)| {
            (
                name.as_bytes(),
                Spec {
                    kind,
                    read,
                    min_args,
                },
            )
        })
        .collect()
});

/// Longest command name in the table (longer names are unknown without a lookup).
const MAX_NAME: usize = 24;

/// The table entry for a command name, in any letter case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut lower = [0u8; MAX_NAME];
    let lower = &mut lower[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    BY_NAME.get(&*lower)
}

/// Why the keys of a command could not be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The numkeys argument is not a number in range.
    BadNumKeys,
}

/// The argument indices of the keys of a `Keys` or `NumKeys` command with `argc` arguments
/// (already checked against `min_args`); `arg(i)` reads argument `i`.
pub fn key_indices<'a>(
    kind: Kind,
    argc: usize,
    arg: impl Fn(usize) -> &'a [u8],
) -> Result<Range<usize>, KeyError> {
    match kind {
        Kind::Keys { first, last, .. } => {
            let first = usize::from(first);
            let last = if last < 0 {
                argc as isize + isize::from(last)
            } else {
                isize::from(last)
            };
            let end = (last.max(0) as usize + 1).min(argc);
            Ok(first.min(end)..end)
        }
        Kind::NumKeys { at, .. } => {
            let at = usize::from(at);
            let n = (at < argc)
                .then(|| arg(at))
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(KeyError::BadNumKeys)?;
            if at + 1 + n > argc {
                return Err(KeyError::BadNumKeys);
            }
            Ok(at + 1..at + 1 + n)
        }
        _ => Ok(1..argc.min(2)),
    }
}

/// The step between keys of a `Keys` command (MSETNX: every second argument).
pub fn key_step(kind: Kind) -> usize {
    match kind {
        Kind::Keys { step, .. } => usize::from(step.max(1)),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(cmd: &str) -> Result<Vec<String>, KeyError> {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        let spec = lookup(args[0]).unwrap();
        let r = key_indices(spec.kind, args.len(), |i| args[i])?;
        let mut out = Vec::new();
        let mut i = r.start;
        if let Kind::NumKeys { dest: true, .. } = spec.kind {
            out.push(cmd.split(' ').nth(1).unwrap().to_owned());
        }
        while i < r.end {
            out.push(String::from_utf8(args[i].to_vec()).unwrap());
            i += key_step(spec.kind);
        }
        Ok(out)
    }

    #[test]
    fn key_positions() {
        let cases: &[(&str, &[&str])] = &[
            ("GET a", &["a"]),
            ("set a 1 EX 10", &["a"]),
            ("rename a b", &["a", "b"]),
            ("smove a b m", &["a", "b"]),
            ("sinterstore d a b", &["d", "a", "b"]),
            ("msetnx a 1 b 2", &["a", "b"]),
            ("eval s 2 a b x y", &["a", "b"]),
            ("eval s 0", &[]),
            ("zunionstore d 2 a b WEIGHTS 1 2", &["d", "a", "b"]),
            ("zinter 2 a b", &["a", "b"]),
            ("object encoding k", &["k"]),
        ];
        for (cmd, want) in cases {
            assert_eq!(keys_of(cmd).unwrap(), *want, "{cmd}");
        }
        assert_eq!(keys_of("eval s 3 a b"), Err(KeyError::BadNumKeys));
        assert_eq!(keys_of("eval s x a"), Err(KeyError::BadNumKeys));
    }

    #[test]
    fn lookup_ignores_case_and_knows_what_it_refuses() {
        assert_eq!(lookup(b"GeT").unwrap().kind, ONE);
        assert!(lookup(b"mget").unwrap().read);
        assert!(!lookup(b"SET").unwrap().read);
        assert!(matches!(
            lookup(b"blpop").unwrap().kind,
            Kind::Refused(BLOCKING)
        ));
        assert!(matches!(lookup(b"KEYS").unwrap().kind, Kind::Refused(_)));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
        assert!(TABLE.iter().all(|(n, ..)| n.len() <= MAX_NAME));
    }
}
