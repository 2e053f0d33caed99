//! The Redis engine against real redis-server shards and real clients (a RESP client of our
//! own, redis-cli, redis-benchmark, python3-redis).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::redis::{RedisServer, Reply, Resp};
use common::{Proxy, base_toml, eventually, free_port, metric};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A proxy with one redis listener over `servers`; `cluster_extra` and `listener_extra` are
/// added to the cluster and listener tables.
fn proxy(servers: &[SocketAddr], listener_extra: &str, cluster_extra: &str) -> (Proxy, SocketAddr) {
    let admin = addr(free_port());
    let listen = addr(free_port());
    let eps: Vec<String> = servers
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    let cfg = format!(
        "{}[listeners.cache]\nlisten = \"{listen}\"\nprotocol = \"redis\"\ncluster = \"shards\"\n{listener_extra}\n\
         [clusters.shards]\nhash = \"md5\"\nhash_tag = \"{{}}\"\nendpoints = [{}]\n{cluster_extra}\n",
        base_toml(admin, 2),
        eps.join(", ")
    );
    (Proxy::start(&cfg, admin), listen)
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn three() -> Vec<RedisServer> {
    (0..3).map(|_| RedisServer::start()).collect()
}

/// Which of `servers` holds `key` (asked directly).
fn owner(servers: &[RedisServer], key: &str) -> Option<usize> {
    servers.iter().position(|s| {
        s.connect()
            .unwrap()
            .call(&[b"EXISTS", key.as_bytes()])
            .unwrap()
            == Reply::Int(1)
    })
}

#[test]
fn keys_spread_over_shards_and_come_back() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "", "");
    let mut c = Resp::connect(listen).unwrap();
    let mut used = [0; 3];
    for i in 0..60 {
        let k = format!("key:{i}");
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"v"]).unwrap(), ok());
        used[owner(&servers, &k).unwrap()] += 1;
        assert_eq!(c.call(&[b"GET", k.as_bytes()]).unwrap(), bulk("v"));
    }
    assert!(used.iter().all(|&n| n > 5), "{used:?}");
}

#[test]
fn pipelined_replies_keep_request_order() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "max_pipeline = 64", "");
    let mut c = Resp::connect(listen).unwrap();
    let mut buf = Vec::new();
    for i in 0..2000 {
        let k = format!("p{i}");
        Resp::encode(&[b"SET", k.as_bytes(), i.to_string().as_bytes()], &mut buf);
        Resp::encode(&[b"GET", k.as_bytes()], &mut buf);
        Resp::encode(&[b"PING"], &mut buf);
    }
    // One write of 6,000 commands, more than max_pipeline: the proxy must pace itself.
    c.send(&buf).unwrap();
    for i in 0..2000 {
        assert_eq!(c.read_reply().unwrap(), ok());
        assert_eq!(c.read_reply().unwrap(), bulk(&i.to_string()));
        assert_eq!(c.read_reply().unwrap(), Reply::Simple("PONG".into()));
    }
}

#[test]
fn multi_key_commands_are_split_and_merged() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "", "");
    let mut c = Resp::connect(listen).unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    let vals: Vec<String> = keys.iter().map(|k| format!("val-{k}")).collect();
    for (k, v) in keys.iter().zip(&vals) {
        mset.push(k.as_bytes());
        mset.push(v.as_bytes());
    }
    assert_eq!(c.call(&mset).unwrap(), ok());
    let owners: Vec<usize> = keys.iter().map(|k| owner(&servers, k).unwrap()).collect();
    assert!(
        owners.iter().any(|&o| o != owners[0]),
        "keys must span shards"
    );

    // MGET in the client's order, with a missing key in the middle and a repeated key.
    let mut mget: Vec<&[u8]> = vec![b"MGET", keys[3].as_bytes(), b"missing"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    mget.push(keys[3].as_bytes());
    let mut want = vec![bulk(&vals[3]), Reply::Bulk(None)];
    want.extend(vals.iter().map(|v| bulk(v)));
    want.push(bulk(&vals[3]));
    assert_eq!(c.call(&mget).unwrap(), Reply::Array(Some(want)));

    let some: Vec<&[u8]> = keys[..6].iter().map(|k| k.as_bytes()).collect();
    let with = |cmd: &'static [u8], extra: &[&'static [u8]]| {
        let mut v: Vec<&[u8]> = vec![cmd];
        v.extend(some.iter().copied());
        v.extend(extra.iter().copied());
        v
    };
    assert_eq!(c.call(&with(b"EXISTS", &[b"nope"])).unwrap(), Reply::Int(6));
    assert_eq!(c.call(&with(b"TOUCH", &[])).unwrap(), Reply::Int(6));
    assert_eq!(c.call(&with(b"DEL", &[b"nope"])).unwrap(), Reply::Int(6));
    assert_eq!(c.call(&with(b"EXISTS", &[])).unwrap(), Reply::Int(0));
    let rest: Vec<&[u8]> = std::iter::once(&b"UNLINK"[..])
        .chain(keys[6..].iter().map(|k| k.as_bytes()))
        .collect();
    assert_eq!(c.call(&rest).unwrap(), Reply::Int(6));
    // Odd MSET is refused as Redis refuses it.
    assert_eq!(
        c.call(&[b"MSET", b"a", b"1", b"b"]).unwrap(),
        Reply::Error("ERR wrong number of arguments for 'mset' command".into())
    );
}

#[test]
fn hash_tags_keep_multi_key_commands_on_one_shard() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "", "");
    let mut c = Resp::connect(listen).unwrap();
    // Same tag: one shard, so RENAME and SUNIONSTORE pass through.
    assert_eq!(c.call(&[b"SET", b"{user1}:a", b"x"]).unwrap(), ok());
    assert_eq!(
        c.call(&[b"RENAME", b"{user1}:a", b"{user1}:b"]).unwrap(),
        ok()
    );
    assert_eq!(c.call(&[b"GET", b"{user1}:b"]).unwrap(), bulk("x"));
    // Only the tag is hashed: `user1` itself lives with them.
    assert_eq!(c.call(&[b"SET", b"user1", b"y"]).unwrap(), ok());
    assert_eq!(owner(&servers, "{user1}:b"), owner(&servers, "user1"));
    // Keys on different shards: a clear error, nothing forwarded.
    let (a, b) = different_shard_keys(&servers, &mut c);
    let reply = c.call(&[b"RENAME", a.as_bytes(), b.as_bytes()]).unwrap();
    assert_eq!(
        reply,
        Reply::Error(
            "ERR corelane: the keys of RENAME are on different shards; give them one hash tag"
                .into()
        )
    );
    assert_eq!(c.call(&[b"GET", a.as_bytes()]).unwrap(), bulk("1"));
    let r = c
        .call(&[b"EVAL", b"return 1", b"2", a.as_bytes(), b.as_bytes()])
        .unwrap();
    assert!(matches!(r, Reply::Error(e) if e.contains("different shards")));
    let r = c
        .call(&[
            b"EVAL",
            b"return redis.call('GET', KEYS[1])",
            b"1",
            a.as_bytes(),
        ])
        .unwrap();
    assert_eq!(r, bulk("1"));
}

/// Two keys written through `c` that live on different servers.
fn different_shard_keys(servers: &[RedisServer], c: &mut Resp) -> (String, String) {
    let mut first: Option<(String, usize)> = None;
    for i in 0.. {
        let k = format!("k{i}");
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"1"]).unwrap(), ok());
        let o = owner(servers, &k).unwrap();
        match &first {
            None => first = Some((k, o)),
            Some((fk, fo)) if *fo != o => return (fk.clone(), k),
            Some(_) => {}
        }
    }
    unreachable!()
}

#[test]
fn local_and_refused_commands() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "", "");
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
    assert_eq!(c.call(&[b"ping", b"hi"]).unwrap(), bulk("hi"));
    assert_eq!(c.call(&[b"ECHO", b"x y"]).unwrap(), bulk("x y"));
    assert_eq!(c.call(&[b"SELECT", b"0"]).unwrap(), ok());
    assert!(
        matches!(c.call(&[b"SELECT", b"1"]).unwrap(), Reply::Error(e) if e.contains("only database 0"))
    );
    assert_eq!(c.call(&[b"COMMAND"]).unwrap(), Reply::Array(Some(vec![])));
    assert_eq!(
        c.call(&[b"HELLO", b"3"]).unwrap(),
        Reply::Error("NOPROTO sorry, this protocol version is not supported".into())
    );
    for (cmd, why) in [
        (&[&b"KEYS"[..], b"*"][..], "whole keyspace"),
        (&[b"BLPOP", b"q", b"0"], "blocking"),
        (&[b"MULTI"], "transactions"),
        (&[b"SUBSCRIBE", b"ch"], "pub/sub"),
        (&[b"CONFIG", b"GET", b"save"], "administration"),
    ] {
        match c.call(cmd).unwrap() {
            Reply::Error(e) => assert!(e.starts_with("ERR corelane: ") && e.contains(why), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        c.call(&[b"FOO", b"bar"]).unwrap(),
        Reply::Error("ERR unknown command 'FOO'".into())
    );
    assert_eq!(
        c.call(&[b"GET"]).unwrap(),
        Reply::Error("ERR wrong number of arguments for 'get' command".into())
    );
    // Inline commands work, and the connection still serves after every error above.
    c.send(b"SET inl val\r\nGET inl\r\n").unwrap();
    assert_eq!(c.read_reply().unwrap(), ok());
    assert_eq!(c.read_reply().unwrap(), bulk("val"));
    assert_eq!(c.call(&[b"QUIT"]).unwrap(), ok());
    assert!(c.read_reply().is_err(), "QUIT closes the connection");
}

#[test]
fn malformed_input_gets_redis_protocol_errors_and_a_close() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "max_bulk_len = 1000\nmax_args = 10", "");
    for (input, want) in [
        (
            &b"*1\r\n$x\r\n"[..],
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*a\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*11\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n$1001\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$'\r\n"),
        (
            b"SET \"a\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ] {
        let mut s = TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // A good command first: its reply comes before the error.
        s.write_all(b"PING\r\n").unwrap();
        s.write_all(input).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(
            got,
            format!("+PONG\r\n{want}"),
            "{:?}",
            input.escape_ascii().to_string()
        );
    }
    // A command that grows past max_query_buffer without ending is cut off.
    let (_p2, listen2) = proxy(&addrs, "max_query_buffer = 4096", "");
    let mut s = TcpStream::connect(listen2).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut big = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 5000));
    s.write_all(&big).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "-ERR Protocol error: query buffer over limit\r\n");
    // Other clients were not disturbed.
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
}

#[test]
fn auth_for_clients_and_for_servers() {
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start_with(Some("serverpw"), 16))
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "auth = \"clientpw\"", "redis_auth = \"serverpw\"");
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(
        c.call(&[b"GET", b"a"]).unwrap(),
        Reply::Error("NOAUTH Authentication required.".into())
    );
    assert_eq!(
        c.call(&[b"AUTH", b"serverpw"]).unwrap(),
        Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(c.call(&[b"AUTH", b"default", b"clientpw"]).unwrap(), ok());
    for i in 0..20 {
        let k = format!("a{i}");
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"1"]).unwrap(), ok());
    }
    // Servers with a password corelane does not know: every request gets a clear error.
    let (_p2, listen2) = proxy(&addrs, "", "redis_auth = \"wrong\"");
    let mut c = Resp::connect(listen2).unwrap();
    match c.call(&[b"GET", b"a1"]).unwrap() {
        Reply::Error(e) => assert!(e.contains("authentication refused"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A redis-server killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// redis-server on a given port (to restart a shard where it was).
fn redis_at(port: u16) -> Killed {
    let dir = common::tempdir("redis-at");
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    assert!(eventually(10, || {
        Resp::connect(addr(port))
            .and_then(|mut c| c.call(&[b"PING"]))
            .is_ok()
    }));
    child
}

#[test]
fn a_dead_shard_fails_only_its_requests_and_comes_back() {
    let port = free_port();
    let dying = redis_at(port);
    let alive = RedisServer::start();
    let (p, listen) = proxy(&[addr(port), alive.addr], "", "timeout = \"2s\"");
    let mut c = Resp::connect(listen).unwrap();
    // Keys on each shard.
    let mut on_dying = Vec::new();
    let mut on_alive = Vec::new();
    for i in 0..40 {
        let k = format!("d{i}");
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"1"]).unwrap(), ok());
        if alive
            .connect()
            .unwrap()
            .call(&[b"EXISTS", k.as_bytes()])
            .unwrap()
            == Reply::Int(1)
        {
            on_alive.push(k);
        } else {
            on_dying.push(k);
        }
    }
    assert!(!on_dying.is_empty() && !on_alive.is_empty());
    drop(dying);
    // A pipeline over both shards: the dead shard's requests get errors, the others answers.
    let mut buf = Vec::new();
    for k in on_dying.iter().chain(&on_alive) {
        Resp::encode(&[b"GET", k.as_bytes()], &mut buf);
    }
    c.send(&buf).unwrap();
    for _ in &on_dying {
        match c.read_reply().unwrap() {
            Reply::Error(e) => assert!(e.starts_with("ERR corelane: server 127.0.0.1:"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    for _ in &on_alive {
        assert_eq!(c.read_reply().unwrap(), bulk("1"));
    }
    // The failures are counted on the dead endpoint; every request on the cluster.
    let m = p.metrics();
    let dead = format!(
        "corelane_endpoint_request_errors_total{{cluster=\"shards\",endpoint=\"127.0.0.1:{port}\"}}"
    );
    assert_eq!(
        common::metric(&m, &dead),
        Some(on_dying.len() as f64),
        "{m}"
    );
    let total = common::metric(&m, "corelane_cluster_requests_total{cluster=\"shards\"}").unwrap();
    assert!(total >= 40.0 + on_alive.len() as f64, "{total}");
    // Back on the same port: after the backoff, requests reach it again.
    let back = redis_at(port);
    assert!(eventually(10, || {
        c.call(&[b"SET", on_dying[0].as_bytes(), b"2"]).unwrap() == ok()
    }));
    assert_eq!(
        c.call(&[b"GET", on_dying[0].as_bytes()]).unwrap(),
        bulk("2")
    );
    drop(back);
}

#[test]
fn a_silent_server_times_out_with_an_error() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let keep = std::thread::spawn(move || {
        let held: Vec<TcpStream> = silent.incoming().take(2).filter_map(Result::ok).collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    let (_p, listen) = proxy(&[silent_addr], "", "timeout = \"300ms\"");
    let mut c = Resp::connect(listen).unwrap();
    let started = std::time::Instant::now();
    match c.call(&[b"GET", b"a"]).unwrap() {
        Reply::Error(e) => assert!(e.contains("no reply within 300ms"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(c.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
    drop(keep);
}

#[test]
fn reads_go_to_replicas_when_asked() {
    let primary = RedisServer::start();
    let replica = RedisServer::start();
    // Not a real replication link: distinct values show which server answered.
    primary
        .connect()
        .unwrap()
        .call(&[b"SET", b"k", b"primary"])
        .unwrap();
    replica
        .connect()
        .unwrap()
        .call(&[b"SET", b"k", b"replica"])
        .unwrap();
    let (admin, listen) = (addr(free_port()), addr(free_port()));
    let cfg = |read_from: &str| replica_toml(admin, listen, primary.addr, replica.addr, read_from);
    let p = Proxy::start(&cfg("prefer_replica"), admin);
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"GET", b"k"]).unwrap(), bulk("replica"));
    assert_eq!(c.call(&[b"SET", b"w", b"1"]).unwrap(), ok());
    assert_eq!(
        primary.connect().unwrap().call(&[b"GET", b"w"]).unwrap(),
        bulk("1")
    );
    // A reload to read_from = primary moves reads at once, on the same connection.
    p.write_config(&cfg("primary"));
    p.sighup_and_wait();
    assert_eq!(c.call(&[b"GET", b"k"]).unwrap(), bulk("primary"));
}

#[test]
fn reload_moves_keys_to_the_new_ring() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    let admin = addr(free_port());
    let listen = addr(free_port());
    let cfg = |servers: &[SocketAddr]| {
        let eps: Vec<String> = servers
            .iter()
            .map(|s| format!("{{ addr = \"{s}\" }}"))
            .collect();
        format!(
            "{}[listeners.cache]\nlisten = \"{listen}\"\nprotocol = \"redis\"\ncluster = \"s\"\n\
             [clusters.s]\nendpoints = [{}]\n",
            base_toml(admin, 2),
            eps.join(", ")
        )
    };
    let p = Proxy::start(&cfg(&[a.addr]), admin);
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"SET", b"x", b"1"]).unwrap(), ok());
    assert_eq!(
        a.connect().unwrap().call(&[b"GET", b"x"]).unwrap(),
        bulk("1")
    );
    p.write_config(&cfg(&[b.addr]));
    p.sighup_and_wait();
    // The open connection follows the new table on its next command.
    assert_eq!(c.call(&[b"GET", b"x"]).unwrap(), Reply::Bulk(None));
    assert_eq!(c.call(&[b"SET", b"x", b"2"]).unwrap(), ok());
    assert_eq!(
        b.connect().unwrap().call(&[b"GET", b"x"]).unwrap(),
        bulk("2")
    );
    assert_eq!(
        a.connect().unwrap().call(&[b"GET", b"x"]).unwrap(),
        bulk("1")
    );
}

#[test]
fn real_clients_redis_cli_benchmark_and_python() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (_p, listen) = proxy(&addrs, "", "");
    let port = listen.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(cli(&["SET", "cli", "yes"]), "OK");
    assert_eq!(cli(&["GET", "cli"]), "yes");
    assert_eq!(cli(&["MSET", "c1", "1", "c2", "2", "c3", "3"]), "OK");
    assert_eq!(cli(&["MGET", "c1", "nope", "c3"]), "1\n\n3");

    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "-n",
            "20000",
            "-c",
            "20",
        ])
        .args(["-P", "16", "-t", "set,get,mset,incr,lpush,lpop"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for t in ["SET", "GET", "MSET (10 keys)", "INCR", "LPUSH", "LPOP"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("{t}: ")) && l.contains("requests per second")),
            "{t} missing:\n{text}"
        );
    }
    // redis-benchmark's INCR counter went up by exactly its request count.
    assert_eq!(cli(&["GET", "counter:__rand_int__"]), "20000");

    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={port})\n\
         p = r.pipeline(transaction=False)\n\
         for i in range(500): p.set(f'py{{i}}', i)\n\
         p.execute()\n\
         vals = r.mget([f'py{{i}}' for i in range(500)])\n\
         assert vals == [str(i).encode() for i in range(500)], vals[:5]\n\
         assert r.delete(*[f'py{{i}}' for i in range(500)]) == 500\n\
         print('ok')\n"
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auto_eject_hosts_moves_keys_off_a_dead_shard_and_back() {
    let port = free_port();
    let dying = redis_at(port);
    let alive = RedisServer::start();
    let (_p, listen) = proxy(
        &[addr(port), alive.addr],
        "",
        "auto_eject_hosts = true\nserver_failure_limit = 1\nserver_retry_timeout = \"1s\"",
    );
    let mut c = Resp::connect(listen).unwrap();
    let key = (0..)
        .map(|i| format!("e{i}"))
        .find(|k| {
            assert_eq!(c.call(&[b"SET", k.as_bytes(), b"1"]).unwrap(), ok());
            alive
                .connect()
                .unwrap()
                .call(&[b"EXISTS", k.as_bytes()])
                .unwrap()
                == Reply::Int(0)
        })
        .unwrap();
    drop(dying);
    // The first request sees the failure; once ejected, the key lives on the other shard.
    assert!(matches!(
        c.call(&[b"GET", key.as_bytes()]).unwrap(),
        Reply::Error(_)
    ));
    assert!(eventually(5, || c
        .call(&[b"SET", key.as_bytes(), b"2"])
        .unwrap()
        == ok()));
    assert_eq!(
        alive
            .connect()
            .unwrap()
            .call(&[b"GET", key.as_bytes()])
            .unwrap(),
        bulk("2")
    );
    // Back after server_retry_timeout: the key's reads go to its own shard again.
    let back = redis_at(port);
    back_set(port, &key, "3");
    assert!(eventually(10, || c
        .call(&[b"GET", key.as_bytes()])
        .unwrap()
        == bulk("3")));
    drop(back);
}

fn back_set(port: u16, key: &str, value: &str) {
    let mut d = Resp::connect(addr(port)).unwrap();
    assert_eq!(
        d.call(&[b"SET", key.as_bytes(), value.as_bytes()]).unwrap(),
        ok()
    );
}

/// SIGTERM: the proxy exits well within `shutdown_timeout` (5 s in base_toml), having closed
/// `clients`, which are idle.
fn sigterm_closes_them_at_once(p: &mut Proxy, clients: &mut [Resp]) {
    let started = std::time::Instant::now();
    p.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(p.wait_exit().success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for c in clients {
        assert!(c.read_reply().is_err(), "the connection is closed");
    }
}

#[test]
fn sigterm_closes_idle_clients_without_waiting_for_the_timeout() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    // base_toml sets shutdown_timeout = 5s.
    let (mut p, listen) = proxy(&addrs, "", "");
    let mut clients: Vec<Resp> = (0..4).map(|_| Resp::connect(listen).unwrap()).collect();
    for c in &mut clients {
        assert_eq!(c.call(&[b"SET", b"k", b"v"]).unwrap(), ok());
    }
    sigterm_closes_them_at_once(&mut p, &mut clients);
}

#[test]
fn each_worker_keeps_server_connections_per_server() {
    let server = RedisServer::start();
    let (_p, listen) = proxy(&[server.addr], "", "server_connections = 3");
    // Many clients, so that every worker and every connection of each gets used.
    let mut clients: Vec<Resp> = (0..40).map(|_| Resp::connect(listen).unwrap()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let k = format!("c{i}");
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"1"]).unwrap(), ok());
    }
    let info = match server
        .connect()
        .unwrap()
        .call(&[b"INFO", b"clients"])
        .unwrap()
    {
        Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    let connected: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 2 workers x 3 connections, plus this INFO connection; never one per client.
    assert!((2..=7).contains(&connected), "{connected}");
}

#[test]
fn replica_reads_fall_back_or_fail_as_configured() {
    let primary = RedisServer::start();
    let replica_port = free_port();
    let replica = redis_at(replica_port);
    primary
        .connect()
        .unwrap()
        .call(&[b"SET", b"k", b"primary"])
        .unwrap();
    Resp::connect(addr(replica_port))
        .unwrap()
        .call(&[b"SET", b"k", b"replica"])
        .unwrap();
    let (admin, listen) = (addr(free_port()), addr(free_port()));
    let cfg =
        |read_from: &str| replica_toml(admin, listen, primary.addr, addr(replica_port), read_from);
    let p = Proxy::start(&cfg("replica"), admin);
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"GET", b"k"]).unwrap(), bulk("replica"));
    drop(replica);
    // replica only: reads fail once the replica is known to be down; writes still work.
    assert!(eventually(5, || matches!(
        c.call(&[b"GET", b"k"]).unwrap(),
        Reply::Error(e) if e.contains("no replica")
    )));
    assert_eq!(c.call(&[b"SET", b"w", b"1"]).unwrap(), ok());
    // prefer_replica: the same outage sends reads to the primary.
    p.write_config(&cfg("prefer_replica"));
    p.sighup_and_wait();
    assert!(eventually(5, || c.call(&[b"GET", b"k"]).unwrap() == bulk("primary")));
}

/// One shard with one replica behind a redis listener, reads placed by `read_from`.
fn replica_toml(
    admin: SocketAddr,
    listen: SocketAddr,
    primary: SocketAddr,
    replica: SocketAddr,
    read_from: &str,
) -> String {
    format!(
        "{}[listeners.cache]\nlisten = \"{listen}\"\nprotocol = \"redis\"\ncluster = \"s\"\n\
         [clusters.s]\nread_from = \"{read_from}\"\n\
         endpoints = [{{ addr = \"{primary}\", replicas = [\"{replica}\"] }}]\n",
        base_toml(admin, 1),
    )
}

/// `redis` health checks on a sharded cluster. With `auto_eject_hosts`, a shard that fails
/// its check leaves the ring: only its keys move, and they come back when it does. Without,
/// its keys stay put and their requests get an error at once.
#[test]
fn health_checks_take_a_dead_shard_out_of_the_ring() {
    let check = "[clusters.shards.health_check]\nkind = \"redis\"\ninterval = \"100ms\"\nfall = 2\nrise = 2\n";
    let mut servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (p, listen) = proxy(&addrs, "", &format!("auto_eject_hosts = true\n{check}"));
    let mut c = Resp::connect(listen).unwrap();
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for k in &keys {
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"v"]).unwrap(), ok());
    }
    let before: Vec<usize> = keys.iter().map(|k| owner(&servers, k).unwrap()).collect();
    assert!(before.contains(&2));
    let state = |p: &Proxy| p.status()["clusters"][0]["endpoints"][2]["health"]["state"].clone();
    let dead = addrs[2];
    servers[2].stop();
    assert!(eventually(3, || state(&p) == "down"), "{}", p.status());
    for (k, was) in keys.iter().zip(&before) {
        let got = c.call(&[b"GET", k.as_bytes()]).unwrap();
        if *was == 2 {
            // Routed to a live shard, which does not have it.
            assert_eq!(got, Reply::Bulk(None), "{k}");
        } else {
            assert_eq!(got, bulk("v"), "{k} moved though its shard is up");
        }
    }
    servers[2].restart();
    assert!(eventually(3, || state(&p) == "up"), "{}", p.status());
    for (k, was) in keys.iter().zip(&before) {
        assert_eq!(c.call(&[b"SET", k.as_bytes(), b"w"]).unwrap(), ok());
        assert_eq!(
            owner(&servers, k),
            Some(*was),
            "{k} did not come back to its shard"
        );
    }
    drop(p);

    // Without auto_eject_hosts: the keys stay, and fail fast with a reason.
    let (p, listen) = proxy(&addrs, "", check);
    let mut c = Resp::connect(listen).unwrap();
    servers[2].stop();
    assert!(eventually(3, || state(&p) == "down"));
    let k = &keys[before.iter().position(|o| *o == 2).unwrap()];
    match c.call(&[b"GET", k.as_bytes()]).unwrap() {
        Reply::Error(e) => assert!(e.contains(&format!("{dead} is down (health check)")), "{e}"),
        other => panic!("{other:?}"),
    }
    let k = &keys[before.iter().position(|o| *o == 0).unwrap()];
    assert_eq!(c.call(&[b"GET", k.as_bytes()]).unwrap(), bulk("w"));
}

fn parked_clients(p: &Proxy) -> Option<f64> {
    metric(
        &p.metrics(),
        "corelane_listener_connections_parked{listener=\"cache\"}",
    )
}

#[test]
fn idle_clients_are_parked_and_served_again() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (p, listen) = proxy(&addrs, "park_after = \"200ms\"\nmax_pipeline = 64", "");
    let mut a = Resp::connect(listen).unwrap();
    let mut b = Resp::connect(listen).unwrap();
    assert_eq!(a.call(&[b"SET", b"park:a", b"1"]).unwrap(), ok());
    assert_eq!(b.call(&[b"SET", b"park:b", b"2"]).unwrap(), ok());
    for round in 0..3 {
        assert!(
            eventually(5, || parked_clients(&p) == Some(2.0)),
            "round {round}: both idle clients parked"
        );
        // A woken client gets its replies in order, a pipeline over max_pipeline included.
        let mut buf = Vec::new();
        for i in 0..200 {
            let k = format!("park:{round}:{i}");
            Resp::encode(&[b"SET", k.as_bytes(), i.to_string().as_bytes()], &mut buf);
            Resp::encode(&[b"GET", k.as_bytes()], &mut buf);
        }
        a.send(&buf).unwrap();
        for i in 0..200 {
            assert_eq!(a.read_reply().unwrap(), ok());
            assert_eq!(a.read_reply().unwrap(), bulk(&i.to_string()));
        }
        assert_eq!(b.call(&[b"GET", b"park:a"]).unwrap(), bulk("1"));
    }
    // QUIT to a parked client is answered, then the connection closes.
    assert!(eventually(5, || parked_clients(&p) == Some(2.0)));
    assert_eq!(a.call(&[b"QUIT"]).unwrap(), ok());
    assert!(a.read_reply().is_err(), "closed after QUIT");
    // A client that goes away while parked is forgotten.
    drop(b);
    assert!(eventually(5, || parked_clients(&p) == Some(0.0)
        && metric(
            &p.metrics(),
            "corelane_listener_connections_active{listener=\"cache\"}"
        ) == Some(0.0)));
}

#[test]
fn parked_clients_time_out_and_sigterm_closes_them() {
    let servers = three();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (mut p, listen) = proxy(
        &addrs,
        "park_after = \"100ms\"\nidle_timeout = \"1500ms\"",
        "",
    );
    let mut c = Resp::connect(listen).unwrap();
    assert_eq!(c.call(&[b"PING"]).unwrap(), Reply::Simple("PONG".into()));
    let started = std::time::Instant::now();
    assert!(eventually(5, || parked_clients(&p) == Some(1.0)));
    assert!(c.read_reply().is_err(), "closed by the idle timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    // Parked clients do not hold up a shutdown (base_toml: shutdown_timeout = 5s).
    let mut clients: Vec<Resp> = (0..3).map(|_| Resp::connect(listen).unwrap()).collect();
    for c in &mut clients {
        assert_eq!(c.call(&[b"SET", b"k", b"v"]).unwrap(), ok());
    }
    assert!(eventually(5, || parked_clients(&p) == Some(3.0)));
    sigterm_closes_them_at_once(&mut p, &mut clients);
}
