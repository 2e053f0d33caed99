//! End-to-end key placement parity between the real nutcracker (twemproxy 0.5, the Debian
//! `nutcracker` package) and the real `corelane` binary: the same three redis-servers behind
//! both proxies, one nutcracker pool and one corelane listener per case.
//!
//! For every case, with the servers flushed between directions:
//! 1. every key is SET through nutcracker, each server is asked directly which keys it holds,
//!    and every key is read back through corelane with GET: a key corelane places elsewhere
//!    reads nil;
//! 2. every key is SET through corelane, each server is asked again, and every key is read
//!    back through nutcracker;
//! 3. the two placements (key -> server) must be identical.
//!
//! `tests/shard_parity.rs` proves the library `Ring` against nutcracker; this file proves the
//! proxy as deployed (config parsing, endpoint names, weights, hash tags, request routing).
//!
//! Not covered: `distribution: random` (placement is not reproducible by design), redis
//! databases other than 0 (corelane serves database 0 only, so cases run one after the other
//! with FLUSHALL in between), and `auto_eject_hosts`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use common::nutcracker::Nutcracker;
use common::redis::{RedisServer, Reply, Resp};
use common::{Proxy, free_ports};

/// One pool as both proxies are told about it.
struct Case {
    hash: &'static str,
    dist: &'static str,
    tag: Option<&'static str>,
    /// Server names in config order; `None`: no names (both use `127.0.0.1:PORT`).
    names: Option<[&'static str; 3]>,
    weights: [u32; 3],
}

const fn case(
    hash: &'static str,
    dist: &'static str,
    tag: Option<&'static str>,
    names: Option<[&'static str; 3]>,
    weights: [u32; 3],
) -> Case {
    Case {
        hash,
        dist,
        tag,
        names,
        weights,
    }
}

const BRACES: Option<&str> = Some("{}");
const GREEK: Option<[&str; 3]> = Some(["gamma", "alpha", "beta"]);

const CASES: &[Case] = &[
    // ketama: the three hashes the brief names, with and without names, tags and weights.
    case("fnv1a_64", "ketama", BRACES, None, [1, 1, 1]),
    case("fnv1a_64", "ketama", BRACES, GREEK, [1, 2, 3]),
    case("fnv1a_64", "ketama", None, None, [1, 2, 3]),
    case("md5", "ketama", BRACES, None, [1, 2, 3]),
    case("md5", "ketama", None, GREEK, [1, 1, 1]),
    case("murmur", "ketama", BRACES, GREEK, [3, 2, 1]),
    case("murmur", "ketama", Some("$$"), None, [1, 2, 3]),
    // f32 rounding: nutcracker gives the weight-29 server 228 points, not 232.
    case(
        "fnv1a_64",
        "ketama",
        BRACES,
        Some(["w1", "w29", "w30"]),
        [1, 29, 30],
    ),
    // modula: servers are walked sorted by (name length, bytes), not in config order.
    case(
        "fnv1a_64",
        "modula",
        BRACES,
        Some(["bb", "a", "c"]),
        [1, 2, 3],
    ),
    case("fnv1a_64", "modula", None, None, [1, 1, 1]),
    case("md5", "modula", BRACES, None, [1, 2, 3]),
    case("md5", "modula", None, Some(["zz", "y", "xxx"]), [3, 1, 2]),
    case("murmur", "modula", BRACES, Some(["c", "b", "a"]), [1, 2, 3]),
    case("murmur", "modula", Some("$$"), None, [2, 1, 3]),
    // Every other hash function once, end to end.
    case("one_at_a_time", "ketama", BRACES, None, [1, 2, 3]),
    case("crc16", "modula", BRACES, GREEK, [1, 2, 3]),
    // Not crc32 with ketama: its 15-bit hash puts every key below the first ring point.
    case("crc32", "modula", BRACES, GREEK, [2, 1, 1]),
    case("crc32a", "ketama", None, None, [1, 2, 3]),
    case("fnv1_64", "ketama", BRACES, GREEK, [1, 2, 3]),
    case("fnv1_32", "modula", BRACES, None, [1, 2, 3]),
    case("fnv1a_32", "ketama", BRACES, None, [1, 1, 2]),
    case("hsieh", "ketama", BRACES, GREEK, [1, 2, 3]),
    case("jenkins", "modula", None, GREEK, [2, 3, 4]),
];

impl Case {
    fn describe(&self) -> String {
        format!(
            "{}/{} tag {:?} names {:?} weights {:?}",
            self.hash, self.dist, self.tag, self.names, self.weights
        )
    }

    fn name(&self, server: usize) -> Option<&str> {
        self.names.map(|n| n[server])
    }

    fn yaml(&self, i: usize, listen: u16, redis: &[RedisServer]) -> String {
        let mut y = format!(
            "p{i}:\n  listen: 127.0.0.1:{listen}\n  hash: {}\n  distribution: {}\n  \
             redis: true\n  auto_eject_hosts: false\n  timeout: 5000\n",
            self.hash, self.dist
        );
        if let Some(t) = self.tag {
            y += &format!("  hash_tag: \"{t}\"\n");
        }
        y += "  servers:\n";
        for (s, r) in redis.iter().enumerate() {
            let label = self.name(s).map(|n| format!(" {n}")).unwrap_or_default();
            y += &format!("   - 127.0.0.1:{}:{}{label}\n", r.port, self.weights[s]);
        }
        y
    }

    fn toml(&self, i: usize, listen: u16, redis: &[RedisServer]) -> String {
        let eps: Vec<String> = redis
            .iter()
            .enumerate()
            .map(|(s, r)| {
                let name = self
                    .name(s)
                    .map(|n| format!(", name = \"{n}\""))
                    .unwrap_or_default();
                format!(
                    "{{ addr = \"{}\", weight = {}{name} }}",
                    r.addr, self.weights[s]
                )
            })
            .collect();
        let tag = self
            .tag
            .map(|t| format!("hash_tag = \"{t}\"\n"))
            .unwrap_or_default();
        format!(
            "[listeners.l{i}]\nlisten = \"127.0.0.1:{listen}\"\nprotocol = \"redis\"\n\
             cluster = \"c{i}\"\n\
             [clusters.c{i}]\nhash = \"{}\"\ndistribution = \"{}\"\n{tag}endpoints = [{}]\n",
            self.hash,
            self.dist,
            eps.join(", ")
        )
    }
}

/// ASCII keys, keys with bytes >= 0x80, binary keys with CR/LF/NUL, hash-tagged keys and tag
/// edge cases (empty tag, unclosed tag, nested tags, `$` tags).
fn keys() -> Vec<Vec<u8>> {
    let mut k: Vec<Vec<u8>> = vec![b"{user1}:a".to_vec(), b"user1".to_vec()];
    k.extend((0..800).map(|i| format!("key:{i}").into_bytes()));
    k.extend((0..300).map(|i| format!("clé:{i}:ü").into_bytes()));
    k.extend((0..300u32).map(|i| {
        let mut b = vec![0x80 + (i % 128) as u8];
        b.extend(i.to_string().bytes());
        b.extend([0xfe, 0xff, 0x80 + (i % 7) as u8]);
        b
    }));
    k.extend((0..200u32).map(|i| {
        let [lo, hi, ..] = i.to_le_bytes();
        vec![0, b'\r', b'\n', b' ', lo, hi, 0xff, b'"', b'\r', b'\n']
    }));
    k.extend((0..500).map(|i| format!("{{user{}}}:{i}", i % 40).into_bytes()));
    k.extend((0..100u8).map(|i| vec![b'{', 0x80, 0x80 | (i % 16), b'}', b':', i, b'\n']));
    for i in 0..30 {
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

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn show(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// Pipelined batches: small enough that neither side's socket buffer fills.
const BATCH: usize = 500;

/// SETs `keys[i]` to `value(i)` through `port`; every reply must be +OK.
fn write_all(port: u16, keys: &[Vec<u8>], value: impl Fn(usize) -> Vec<u8>) {
    let mut c = Resp::connect(addr(port)).unwrap();
    for (b, batch) in keys.chunks(BATCH).enumerate() {
        let mut buf = Vec::new();
        for (j, k) in batch.iter().enumerate() {
            Resp::encode(&[b"SET", k, &value(b * BATCH + j)], &mut buf);
        }
        c.send(&buf).unwrap();
        for k in batch {
            let r = c.read_reply().unwrap();
            assert_eq!(r, Reply::Simple("OK".into()), "SET {} via :{port}", show(k));
        }
    }
}

/// GETs every key through `port`; the keys whose value is not `value(i)`, with what came back.
fn read_all(port: u16, keys: &[Vec<u8>], value: impl Fn(usize) -> Vec<u8>) -> Vec<String> {
    let mut c = Resp::connect(addr(port)).unwrap();
    let mut wrong = Vec::new();
    for (b, batch) in keys.chunks(BATCH).enumerate() {
        let mut buf = Vec::new();
        for k in batch {
            Resp::encode(&[b"GET", k], &mut buf);
        }
        c.send(&buf).unwrap();
        for (j, k) in batch.iter().enumerate() {
            let got = c.read_reply().unwrap();
            if got != Reply::Bulk(Some(value(b * BATCH + j))) {
                wrong.push(format!("{}: got {got:?}", show(k)));
            }
        }
    }
    wrong
}

/// Direct connections to the three servers.
struct Servers(Vec<Resp>);

impl Servers {
    fn flush(&mut self) {
        for c in &mut self.0 {
            assert_eq!(c.call(&[b"FLUSHALL"]).unwrap(), Reply::Simple("OK".into()));
        }
    }

    /// key -> index of the server that holds it; a key on two servers is an error.
    fn placement(&mut self) -> Result<HashMap<Vec<u8>, usize>, String> {
        let mut placed = HashMap::new();
        for (s, c) in self.0.iter_mut().enumerate() {
            let Reply::Array(Some(items)) = c.call(&[b"KEYS", b"*"]).unwrap() else {
                panic!("KEYS * did not answer an array");
            };
            for item in items {
                let Reply::Bulk(Some(k)) = item else {
                    panic!("KEYS item {item:?}");
                };
                if let Some(prev) = placed.insert(k.clone(), s) {
                    return Err(format!("{} on servers {prev} and {s}", show(&k)));
                }
            }
        }
        Ok(placed)
    }
}

/// Per-server key counts, to show the spread (and that weights were applied at all).
fn spread(placed: &HashMap<Vec<u8>, usize>) -> [usize; 3] {
    let mut per = [0; 3];
    placed.values().for_each(|&s| per[s] += 1);
    per
}

/// Runs one case in both directions; the problems found, if any.
fn check(nc: u16, cl: u16, servers: &mut Servers, keys: &[Vec<u8>]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut report = |what: &str, list: &[String]| {
        if !list.is_empty() {
            problems.push(format!(
                "{what}: {} of {} keys, e.g.\n      {}",
                list.len(),
                keys.len(),
                list[..list.len().min(5)].join("\n      ")
            ));
        }
    };
    let nc_value = |i: usize| format!("nc-{i}").into_bytes();
    let cl_value = |i: usize| format!("cl-{i}").into_bytes();

    // nutcracker writes, corelane reads.
    servers.flush();
    write_all(nc, keys, nc_value);
    let by_nc = servers.placement();
    report(
        "written via nutcracker, wrong via corelane",
        &read_all(cl, keys, nc_value),
    );

    // corelane writes, nutcracker reads.
    servers.flush();
    write_all(cl, keys, cl_value);
    let by_cl = servers.placement();
    report(
        "written via corelane, wrong via nutcracker",
        &read_all(nc, keys, cl_value),
    );

    match (by_nc, by_cl) {
        (Ok(by_nc), Ok(by_cl)) => {
            let moved: Vec<String> = keys
                .iter()
                .filter(|k| by_nc.get(*k) != by_cl.get(*k))
                .map(|k| {
                    let (n, c) = (by_nc.get(k), by_cl.get(k));
                    format!(
                        "{}: nutcracker server {n:?}, corelane server {c:?}",
                        show(k)
                    )
                })
                .collect();
            report("placed differently", &moved);
            let per = spread(&by_nc);
            if per.contains(&0) || by_nc.len() != keys.len() {
                problems.push(format!(
                    "degenerate spread {per:?} of {} keys: the case proves nothing",
                    keys.len()
                ));
            }
        }
        (Err(e), _) => problems.push(format!("nutcracker: {e}")),
        (_, Err(e)) => problems.push(format!("corelane: {e}")),
    }
    problems
}

#[test]
fn corelane_places_keys_where_real_nutcracker_does() {
    let started = Instant::now();
    let redis: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    // Distinct ports for every listener of both proxies, the admin and the stats port.
    let mut ports = free_ports(2 * CASES.len() + 2);
    let nc_ports: Vec<u16> = ports.drain(..CASES.len()).collect();
    let cl_ports: Vec<u16> = ports.drain(..CASES.len()).collect();

    let yaml: String = CASES
        .iter()
        .enumerate()
        .map(|(i, c)| c.yaml(i, nc_ports[i], &redis))
        .collect();
    let nc = Nutcracker::start(&yaml, &nc_ports, ports[1]);

    let admin = addr(ports[0]);
    let mut toml = format!("workers = 2\n[admin]\nlisten = \"{admin}\"\n");
    for (i, c) in CASES.iter().enumerate() {
        toml += &c.toml(i, cl_ports[i], &redis);
    }
    let proxy = Proxy::start(&toml, admin);

    let mut servers = Servers(redis.iter().map(|r| r.connect().unwrap()).collect());
    let keys = keys();
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let problems = check(nc_ports[i], cl_ports[i], &mut servers, &keys);
        if !problems.is_empty() {
            failures.push(format!(
                "case {i} ({}):\n    {}",
                case.describe(),
                problems.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- nutcracker log:\n{}\n--- corelane log:\n{}",
        failures.join("\n"),
        nc.log_text(),
        proxy.log_text()
    );
    eprintln!(
        "{} cases x {} keys, both directions, in {:?}",
        CASES.len(),
        keys.len(),
        started.elapsed()
    );
}
