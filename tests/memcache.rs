//! The Memcached engine against real memcached servers and real clients (a socket client of
//! our own, and libmemcached's memccp/memccat/memcslap).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Proxy, base_toml, eventually, free_port, metric};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A memcached process, killed on drop.
struct Memcached {
    addr: SocketAddr,
    child: Child,
}

impl Memcached {
    fn start() -> Memcached {
        Self::at(free_port())
    }

    fn at(port: u16) -> Memcached {
        let child = Command::new("memcached")
            .args([
                "-u",
                "root",
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached must be installed");
        let m = Memcached {
            addr: addr(port),
            child,
        };
        assert!(eventually(10, || TcpStream::connect(m.addr).is_ok()));
        m
    }

    fn get(&self, key: &str) -> String {
        talk(self.addr, format!("get {key}\r\n").as_bytes(), b"END\r\n")
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `req` and reads until the reply ends with `until` (or the connection closes).
fn talk(to: SocketAddr, req: &[u8], until: &[u8]) -> String {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    read_until(&mut s, until)
}

fn read_until(s: &mut TcpStream, until: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !got.ends_with(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn proxy(servers: &[SocketAddr], listener_extra: &str) -> (Proxy, SocketAddr) {
    let admin = addr(free_port());
    let listen = addr(free_port());
    let eps: Vec<String> = servers
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    let cfg = format!(
        "{}[listeners.mc]\nlisten = \"{listen}\"\nprotocol = \"memcache\"\ncluster = \"pool\"\n{listener_extra}\n\
         [clusters.pool]\nhash = \"md5\"\ntimeout = \"2s\"\nendpoints = [{}]\n",
        base_toml(admin, 2),
        eps.join(", ")
    );
    (Proxy::start(&cfg, admin), listen)
}

fn two() -> Vec<Memcached> {
    vec![Memcached::start(), Memcached::start()]
}

#[test]
fn storage_and_retrieval_split_across_servers() {
    let servers = two();
    let addrs: Vec<SocketAddr> = servers.iter().map(|m| m.addr).collect();
    let (_p, listen) = proxy(&addrs, "");
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    let mut req = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        req.extend_from_slice(
            format!("set {k} {i} 0 {}\r\nv{i}\r\n", format!("v{i}").len()).as_bytes(),
        );
    }
    let stored = talk(listen, &req, &"STORED\r\n".repeat(20).into_bytes());
    assert_eq!(stored, "STORED\r\n".repeat(20));
    // The keys landed on both servers, each key on exactly one.
    let on_first = keys
        .iter()
        .filter(|k| servers[0].get(k).starts_with("VALUE"))
        .count();
    let on_second = keys
        .iter()
        .filter(|k| servers[1].get(k).starts_with("VALUE"))
        .count();
    assert!(on_first > 0 && on_second > 0 && on_first + on_second == 20);

    // One multi-get, in the client's order, misses skipped, one END.
    let line = format!("get {} missing {}\r\n", keys[5], keys.join(" "));
    let got = talk(listen, line.as_bytes(), b"END\r\n");
    let mut want = format!("VALUE {} 5 2\r\nv5\r\n", keys[5]);
    for (i, k) in keys.iter().enumerate() {
        want += &format!("VALUE {k} {i} {}\r\nv{i}\r\n", format!("v{i}").len());
    }
    want += "END\r\n";
    assert_eq!(got, want);
    // gets carries CAS values, and gat touches: both split the same way.
    let got = talk(
        listen,
        format!("gets {} {}\r\n", keys[0], keys[1]).as_bytes(),
        b"END\r\n",
    );
    assert_eq!(got.matches("VALUE ").count(), 2, "{got}");
    let got = talk(
        listen,
        format!("gat 100 {} {}\r\n", keys[2], keys[3]).as_bytes(),
        b"END\r\n",
    );
    assert!(
        got.starts_with(&format!("VALUE {} 2 2\r\nv2\r\n", keys[2])),
        "{got}"
    );
}

#[test]
fn every_command_and_noreply() {
    let servers = two();
    let addrs: Vec<SocketAddr> = servers.iter().map(|m| m.addr).collect();
    let (_p, listen) = proxy(&addrs, "");
    let script: &[(&str, &str)] = &[
        ("set a 1 0 1\r\nA\r\n", "STORED\r\n"),
        ("add a 0 0 1\r\nX\r\n", "NOT_STORED\r\n"),
        ("replace a 2 0 1\r\nB\r\n", "STORED\r\n"),
        ("append a 0 0 1\r\nC\r\n", "STORED\r\n"),
        ("prepend a 0 0 1\r\nD\r\n", "STORED\r\n"),
        ("get a\r\n", "VALUE a 2 3\r\nDBC\r\nEND\r\n"),
        ("set n 0 0 1 noreply\r\n5\r\n", ""),
        ("incr n 10\r\n", "15\r\n"),
        ("decr n 20\r\n", "0\r\n"),
        ("incr n 1 noreply\r\n", ""),
        ("touch n 100\r\n", "TOUCHED\r\n"),
        ("delete n noreply\r\n", ""),
        ("delete n\r\n", "NOT_FOUND\r\n"),
        ("cas a 0 0 1 1\r\nZ\r\n", "EXISTS\r\n"),
        ("version\r\n", "VERSION corelane-"),
        (
            "flush_all\r\n",
            "SERVER_ERROR corelane: flush_all is not supported through a sharding proxy\r\n",
        ),
        ("stats\r\n", "SERVER_ERROR corelane: stats is not supported"),
        ("bogus\r\n", "ERROR\r\n"),
        ("get nothing here\r\n", "END\r\n"),
    ];
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // One pipelined write: replies in order, noreply requests answered by nothing.
    let all: String = script.iter().map(|(r, _)| *r).collect::<String>()
        + "set last 0 0 4\r\nLAST\r\nget last\r\n";
    s.write_all(all.as_bytes()).unwrap();
    let got = read_until(&mut s, b"LAST\r\nEND\r\n");
    let mut rest = got.as_str();
    for (req, want) in script.iter().filter(|(_, w)| !w.is_empty()) {
        assert!(rest.starts_with(want), "after {req:?}: {rest:?}");
        let end = rest.find("\r\n").unwrap() + 2;
        let end = if want.starts_with("VALUE") {
            rest.find("END\r\n").unwrap() + 5
        } else {
            end
        };
        rest = &rest[end..];
    }
    assert_eq!(rest, "STORED\r\nVALUE last 0 4\r\nLAST\r\nEND\r\n");
}

#[test]
fn malformed_requests_get_memcached_errors() {
    let servers = two();
    let addrs: Vec<SocketAddr> = servers.iter().map(|m| m.addr).collect();
    let (_p, listen) = proxy(&addrs, "max_bulk_len = 100");
    // Recoverable: the line is answered and skipped.
    let long_key = "k".repeat(251);
    let got = talk(
        listen,
        format!("get {long_key}\r\nincr a x\r\nversion\r\n").as_bytes(),
        b"\r\nVERSION",
    );
    assert!(got.starts_with("CLIENT_ERROR bad command line format\r\nCLIENT_ERROR invalid numeric delta argument\r\n"), "{got}");
    // Unrecoverable: a bad data chunk or a value over the limit ends the connection.
    let got = talk(listen, b"set a 0 0 1\r\nABC\r\nversion\r\n", b"never");
    assert_eq!(got, "CLIENT_ERROR bad data chunk\r\n");
    let got = talk(listen, b"set a 0 0 101\r\n", b"never");
    assert_eq!(got, "SERVER_ERROR object too large for cache\r\n");
    // The proxy still serves.
    assert!(talk(listen, b"version\r\n", b"\r\n").starts_with("VERSION"));
}

#[test]
fn a_dead_server_fails_only_its_keys_and_comes_back() {
    let port = free_port();
    let dying = Memcached::at(port);
    let alive = Memcached::start();
    let (_p, listen) = proxy(&[dying.addr, alive.addr], "");
    let keys: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
    let mut req = Vec::new();
    for k in &keys {
        req.extend_from_slice(format!("set {k} 0 0 1\r\n1\r\n").as_bytes());
    }
    talk(listen, &req, &"STORED\r\n".repeat(30).into_bytes());
    let on_alive: Vec<&String> = keys
        .iter()
        .filter(|k| alive.get(k).starts_with("VALUE"))
        .collect();
    let on_dying: Vec<&String> = keys.iter().filter(|k| !on_alive.contains(k)).collect();
    assert!(!on_alive.is_empty() && !on_dying.is_empty());
    drop(dying);
    let got = talk(
        listen,
        format!("get {}\r\nget {}\r\n", on_dying[0], on_alive[0]).as_bytes(),
        b"1\r\nEND\r\n",
    );
    assert!(
        got.starts_with("SERVER_ERROR corelane: server 127.0.0.1:"),
        "{got}"
    );
    assert!(
        got.ends_with(&format!("VALUE {} 0 1\r\n1\r\nEND\r\n", on_alive[0])),
        "{got}"
    );
    // A split get that touches the dead server is one error, not a partial answer.
    let got = talk(
        listen,
        format!("get {} {}\r\n", on_dying[0], on_alive[0]).as_bytes(),
        b"\r\n",
    );
    assert!(got.starts_with("SERVER_ERROR corelane:"), "{got}");
    let _back = Memcached::at(port);
    assert!(eventually(10, || {
        talk(
            listen,
            format!("set {} 0 0 1\r\n2\r\n", on_dying[0]).as_bytes(),
            b"\r\n",
        ) == "STORED\r\n"
    }));
}

#[test]
fn real_clients_memccp_memccat_and_memcslap() {
    let servers = two();
    let addrs: Vec<SocketAddr> = servers.iter().map(|m| m.addr).collect();
    let (_p, listen) = proxy(&addrs, "");
    let spec = format!("--servers={listen}");
    let dir = common::tempdir("memc");
    let file = dir.join("payload.txt");
    std::fs::write(&file, "hello through corelane").unwrap();
    let st = Command::new("memccp")
        .arg(&spec)
        .arg(&file)
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("memccat")
        .arg(&spec)
        .arg("payload.txt")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "hello through corelane"
    );
    let out = Command::new("memcslap")
        .arg(&spec)
        .args(["--concurrency=4", "--execute-number=2000", "--test=set"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("memcslap")
        .arg(&spec)
        .args(["--concurrency=4", "--execute-number=2000", "--test=get"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn idle_clients_are_parked_and_served_again() {
    let servers = two();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let (p, listen) = proxy(&addrs, "park_after = \"200ms\"");
    let parked = || {
        metric(
            &p.metrics(),
            "corelane_listener_connections_parked{listener=\"mc\"}",
        )
    };
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"set park:1 0 0 3\r\none\r\nset park:2 0 0 3\r\ntwo\r\n")
        .unwrap();
    assert_eq!(
        read_until(&mut s, b"STORED\r\nSTORED\r\n"),
        "STORED\r\nSTORED\r\n"
    );
    for round in 0..2 {
        assert!(eventually(5, || parked() == Some(1.0)), "round {round}");
        // A multi-key get split across both servers after waking, merged in key order.
        s.write_all(b"get park:2 park:1 park:none\r\n").unwrap();
        assert_eq!(
            read_until(&mut s, b"END\r\n"),
            "VALUE park:2 0 3\r\ntwo\r\nVALUE park:1 0 3\r\none\r\nEND\r\n"
        );
    }
    assert!(eventually(5, || parked() == Some(1.0)));
    s.write_all(b"quit\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "quit closes without a reply");
    assert!(eventually(5, || parked() == Some(0.0)));
}
