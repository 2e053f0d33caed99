//! Key placement parity with the real nutcracker (twemproxy 0.5, the Debian `nutcracker`
//! package): three real redis-servers, one nutcracker with one pool per case (each pool on its
//! own redis database), a few thousand keys written through every pool, then each
//! redis-server asked directly which keys it holds. Every key must sit on the server that
//! `corelane::shard` computes.
//!
//! Not covered: servers on port 11211 (whose default name drops the port; tests cannot bind
//! 11211 safely) and `auto_eject_hosts`.

mod common;

use std::collections::HashMap;

use common::free_ports;
use common::nutcracker::Nutcracker;
use common::redis::{RedisServer, Reply, Resp};
use corelane::shard::ring::{Ring, Server, default_point_name};
use corelane::shard::{Distribution, HashFn};

/// One pool: how nutcracker is configured, and how we describe the same pool to `Ring`.
struct Case {
    hash: HashFn,
    dist: Distribution,
    tag: Option<[u8; 2]>,
    /// Server names in config order (`None`: no name, nutcracker uses `host:port`).
    names: [Option<String>; 3],
    weights: [u32; 3],
}

impl Case {
    fn new(hash: HashFn, dist: Distribution, tag: Option<&[u8; 2]>, weights: [u32; 3]) -> Case {
        Case {
            hash,
            dist,
            tag: tag.copied(),
            names: [None, None, None],
            weights,
        }
    }

    fn named(mut self, names: [&str; 3]) -> Case {
        self.names = names.map(|n| Some(n.to_owned()));
        self
    }

    fn servers(&self, redis: &[RedisServer]) -> Vec<Server> {
        redis
            .iter()
            .zip(&self.names)
            .zip(self.weights)
            .map(|((r, name), weight)| Server {
                point_name: name
                    .clone()
                    .unwrap_or_else(|| default_point_name("127.0.0.1", r.port)),
                weight,
            })
            .collect()
    }

    fn yaml(&self, pool: usize, listen: u16, redis: &[RedisServer]) -> String {
        let mut y = format!(
            "p{pool}:\n  listen: 127.0.0.1:{listen}\n  hash: {}\n  distribution: {}\n  \
             redis: true\n  redis_db: {pool}\n  auto_eject_hosts: false\n  timeout: 5000\n",
            config_name(&self.hash),
            config_name(&self.dist),
        );
        if let Some(t) = self.tag {
            y += &format!("  hash_tag: \"{}\"\n", String::from_utf8_lossy(&t));
        }
        y += "  servers:\n";
        for ((r, n), w) in redis.iter().zip(&self.names).zip(self.weights) {
            let label = n.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
            y += &format!("   - 127.0.0.1:{}:{w}{label}\n", r.port);
        }
        y
    }
}

/// The name nutcracker's config uses: our serde name.
fn config_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

fn cases() -> Vec<Case> {
    use Distribution::{Ketama, Modula, Random};
    use HashFn::*;
    let braces = Some(b"{}");
    let all = [
        OneAtATime, Md5, Crc16, Crc32, Crc32a, Fnv1_64, Fnv1a_64, Fnv1_32, Fnv1a_32, Hsieh, Murmur,
        Jenkins,
    ];
    // Every hash function with ketama, unnamed servers, equal weights, hash tag "{}".
    let mut v: Vec<Case> = all
        .iter()
        .map(|&h| Case::new(h, Ketama, braces, [1, 1, 1]))
        .collect();
    // Every hash function again with names, unequal weights and no tag.
    v.extend(
        all.iter()
            .map(|&h| Case::new(h, Ketama, None, [1, 2, 3]).named(["gamma", "alpha", "beta"])),
    );
    let long = |c: char| format!("{}{c}", "n".repeat(268));
    v.extend([
        Case::new(Murmur, Ketama, Some(b"$$"), [1, 2, 3]),
        Case::new(Hsieh, Ketama, braces, [5, 1, 1]),
        // f32 rounding gives the weight-29 server 228 points where exact arithmetic gives 232.
        Case::new(Fnv1a_64, Ketama, braces, [1, 29, 30]).named(["w1", "w29", "w30"]),
        // 269-byte names: point names "-100" and up exceed 272 bytes and are cut back.
        Case::new(Crc32a, Ketama, braces, [100, 1, 1]).named([&long('c'), &long('a'), &long('b')]),
        // Modula walks servers sorted by (name length, bytes), not in config order.
        Case::new(Fnv1a_64, Modula, braces, [1, 2, 3]).named(["bb", "a", "c"]),
        Case::new(Crc32, Modula, braces, [1, 1, 1]),
        Case::new(OneAtATime, Modula, None, [1, 2, 3]),
        Case::new(Md5, Modula, None, [3, 1, 2]).named(["zz", "y", "xxx"]),
        Case::new(Jenkins, Modula, braces, [2, 3, 4]).named(["s-2", "s-10", "s-1"]),
        Case::new(Murmur, Modula, Some(b"$$"), [1, 5, 2]).named(["c", "b", "a"]),
        Case::new(Fnv1_32, Random, braces, [1, 1, 100]),
    ]);
    v
}

/// ASCII keys, keys with bytes >= 0x80, binary keys, hash-tagged keys and tag edge cases.
fn keys() -> Vec<Vec<u8>> {
    let mut k: Vec<Vec<u8>> = vec![Vec::new()];
    k.extend((0..900).map(|i| format!("key:{i}").into_bytes()));
    k.extend((0..300).map(|i| format!("clé:{i}:ü").into_bytes()));
    k.extend((0..300u32).map(|i| {
        let mut b = vec![0x80 + (i % 128) as u8];
        b.extend(i.to_string().bytes());
        b.extend([0xfe, 0xff, 0x80 + (i % 7) as u8]);
        b
    }));
    k.extend((0..200u32).map(|i| {
        let [lo, hi, ..] = i.to_le_bytes();
        vec![0, b'\r', b'\n', b' ', lo, hi, 0xff, b'"']
    }));
    k.extend((0..600).map(|i| format!("{{user{}}}:{i}", i % 40).into_bytes()));
    k.extend((0..100u8).map(|i| {
        let mut b = b"{\x80".to_vec();
        b.extend([0x80 | (i % 16), b'}', b':', i]);
        b
    }));
    for i in 0..40 {
        for key in [
            format!("{{}}:{i}"),
            format!("{{user{i}"),
            format!("user{i}}}"),
            format!("{{a{{b{i}}}c}}"),
            format!("}}{{z{}}}:{i}", i % 3),
            format!("{{}}{{a{i}}}"),
            format!("${}$:{i}", i % 5),
            format!("$$:{i}"),
            format!("x${i}"),
        ] {
            k.push(key.into_bytes());
        }
    }
    let unique: std::collections::HashSet<&Vec<u8>> = k.iter().collect();
    assert_eq!(unique.len(), k.len(), "test keys must be distinct");
    k
}

/// SETs every key through the pool, pipelined, and checks every reply is +OK.
fn write_all(port: u16, keys: &[Vec<u8>]) {
    let mut c = Resp::connect(([127, 0, 0, 1], port).into()).unwrap();
    for batch in keys.chunks(500) {
        let mut buf = Vec::new();
        for k in batch {
            Resp::encode(&[b"SET", k, b"v"], &mut buf);
        }
        c.send(&buf).unwrap();
        for k in batch {
            let r = c.read_reply().unwrap();
            assert_eq!(r, Reply::Simple("OK".into()), "SET {k:x?}");
        }
    }
}

/// Every key in database `db` of `server`.
fn keys_on(server: &RedisServer, db: usize) -> Vec<Vec<u8>> {
    let mut c = server.connect().unwrap();
    let r = c.call(&[b"SELECT", db.to_string().as_bytes()]).unwrap();
    assert_eq!(r, Reply::Simple("OK".into()));
    match c.call(&[b"KEYS", b"*"]).unwrap() {
        Reply::Array(Some(items)) => items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(Some(k)) => k,
                other => panic!("KEYS item {other:?}"),
            })
            .collect(),
        other => panic!("KEYS {other:?}"),
    }
}

#[test]
fn placement_matches_real_nutcracker() {
    let cases = cases();
    let redis: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(None, cases.len() as u32))
        .collect();
    // Distinct ports for every pool and for the stats listener (free_port alone may repeat).
    let mut listens = free_ports(cases.len() + 1);
    let stats_port = listens.pop().unwrap();
    let conf: String = cases
        .iter()
        .enumerate()
        .map(|(i, c)| c.yaml(i, listens[i], &redis))
        .collect();
    let nc = Nutcracker::start(&conf, &listens, stats_port);
    let keys = keys();

    let mut failures = Vec::new();
    for (db, case) in cases.iter().enumerate() {
        write_all(listens[db], &keys);
        let mut placed: HashMap<Vec<u8>, usize> = HashMap::new();
        for (s, server) in redis.iter().enumerate() {
            for k in keys_on(server, db) {
                if let Some(prev) = placed.insert(k.clone(), s) {
                    failures.push(format!("pool p{db}: {k:x?} on servers {prev} and {s}"));
                }
            }
        }
        assert_eq!(placed.len(), keys.len(), "pool p{db}: keys lost or extra");

        let ring = Ring::new(&case.servers(&redis), case.dist).unwrap();
        if case.dist == Distribution::Random {
            // Weights are ignored: about a third each despite weights 1, 1, 100.
            let mut per = [0usize; 3];
            placed.values().for_each(|&s| per[s] += 1);
            let third = keys.len() / 3;
            if per.iter().any(|&n| n < third * 3 / 4) {
                failures.push(format!("pool p{db} (random): uneven spread {per:?}"));
            }
            continue;
        }
        let wrong: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                let want = ring.locate(case.hash, case.tag, k);
                let got = placed.get(k).copied();
                (got != Some(want)).then(|| format!("{k:x?}: nutcracker {got:?}, ours {want}"))
            })
            .collect();
        if !wrong.is_empty() {
            failures.push(format!(
                "pool p{db} ({:?}/{:?}, tag {:?}, names {:?}, weights {:?}): {} of {} keys \
                 misplaced, e.g.\n    {}",
                case.hash,
                case.dist,
                case.tag.map(|t| String::from_utf8_lossy(&t).into_owned()),
                case.names,
                case.weights,
                wrong.len(),
                keys.len(),
                wrong[..wrong.len().min(5)].join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- nutcracker log:\n{}",
        failures.join("\n"),
        nc.log_text()
    );
}
