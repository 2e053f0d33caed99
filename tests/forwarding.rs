//! L4 forwarding through the real binary: half-close, failover, byte-exact large transfers,
//! idle timeout, connection limits, and what a client sees when no endpoint is reachable.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn start(cluster: &str, listener_extra: &str, workers: usize) -> (Proxy, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg =
        base_toml(admin, workers) + &listener_toml("l", listen, "c", listener_extra) + cluster;
    (Proxy::start(&cfg, admin), listen)
}

#[test]
fn half_close_is_passed_on_and_the_other_direction_continues() {
    let b = Backend::start("echo");
    let (_p, listen) = start(&cluster_toml("c", "round_robin", &[(b.addr, 1)], ""), "", 1);
    let mut s = connect_from(listen, None);
    s.write_all(b"hello").unwrap();
    // Our FIN must reach the backend (it answers EOF with "bye") while the direction
    // back to us stays open for the echo and the bye.
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "echo\nhellobye\n");
}

#[test]
fn refused_endpoint_fails_over_to_the_next() {
    let dead = refused_addr();
    let live = Backend::start("live");
    let cluster = cluster_toml(
        "c",
        "round_robin",
        &[(dead, 1), (live.addr, 1)],
        "connect_attempts = 2",
    );
    let (p, listen) = start(&cluster, "", 1);
    for _ in 0..10 {
        assert_eq!(which_backend(listen, None), "live");
    }
    let m = p.metrics();
    let errors = metric(
        &m,
        &format!("corelane_endpoint_connect_errors_total{{cluster=\"c\",endpoint=\"{dead}\"}}"),
    );
    // The schedule is dead, live, dead, live...: each connection tries the dead endpoint
    // first and fails over to the live one (health checks, a later issue, take it out).
    assert_eq!(errors, Some(10.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "corelane_cluster_upstream_unavailable_total{cluster=\"c\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn no_reachable_endpoint_resets_the_client() {
    let cluster = cluster_toml(
        "c",
        "round_robin",
        &[(refused_addr(), 1), (refused_addr(), 1)],
        "",
    );
    let (p, listen) = start(&cluster, "", 1);
    // The reset can come so soon that it already ends the client's connect (seen as the
    // connect's own error); either way the client must see a reset.
    let r =
        std::net::TcpStream::connect_timeout(&listen, Duration::from_secs(5)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.read(&mut [0u8; 16])
        });
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "expected a reset, got {r:?}"
    );
    let m = p.metrics();
    assert_eq!(
        metric(
            &m,
            "corelane_cluster_upstream_unavailable_total{cluster=\"c\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "corelane_cluster_connect_errors_total{cluster=\"c\"}"),
        Some(2.0),
        "{m}"
    );
}

/// A pseudo-random byte stream that is cheap to regenerate for checking.
fn pattern(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8 ^ (i as u8)
}

#[test]
fn large_transfer_arrives_byte_for_byte_both_ways() {
    const LEN: usize = 64 << 20;
    let b = Backend::start("echo");
    let (p, listen) = start(&cluster_toml("c", "round_robin", &[(b.addr, 1)], ""), "", 2);
    let mut s = connect_from(listen, None);
    assert_eq!(greeting(&mut s), "echo");
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk: Vec<u8> = (0..LEN).map(pattern).collect();
        for part in chunk.chunks(1 << 20) {
            w.write_all(part).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(LEN + 4);
    s.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), LEN + 4, "echoed bytes plus bye");
    let bad = (0..LEN).find(|&i| got[i] != pattern(i));
    assert_eq!(bad, None, "first differing byte");
    assert_eq!(&got[LEN..], b"bye\n");
    let m = p.metrics();
    assert_eq!(
        metric(&m, "corelane_listener_received_bytes_total{listener=\"l\"}"),
        Some(LEN as f64)
    );
    assert_eq!(
        metric(
            &m,
            &format!(
                "corelane_endpoint_received_bytes_total{{cluster=\"c\",endpoint=\"{}\"}}",
                b.addr
            )
        ),
        Some((LEN + 4 + 5) as f64),
        "greeting, echo and bye"
    );
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let b = Backend::start("echo");
    let (_p, listen) = start(
        &cluster_toml("c", "round_robin", &[(b.addr, 1)], ""),
        "idle_timeout = \"300ms\"",
        1,
    );
    let mut s = connect_from(listen, None);
    assert_eq!(greeting(&mut s), "echo");
    // Traffic keeps it alive past the timeout...
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(150));
        s.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).unwrap();
    }
    // ...silence closes it.
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(
        eventually(5, || b.open.load(std::sync::atomic::Ordering::SeqCst) == 0),
        "upstream side closed too"
    );
}

#[test]
fn max_connections_closes_connections_over_the_limit() {
    let b = Backend::start("echo");
    let (p, listen) = start(
        &cluster_toml("c", "round_robin", &[(b.addr, 1)], ""),
        "max_connections = 2",
        2,
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(listen, None);
        assert_eq!(greeting(&mut s), "echo");
        held.push(s);
    }
    let mut third = connect_from(listen, None);
    let mut buf = Vec::new();
    let _ = third.read_to_end(&mut buf);
    assert!(buf.is_empty(), "over the limit gets nothing");
    assert_eq!(
        metric(
            &p.metrics(),
            "corelane_listener_connections_rejected_total{listener=\"l\"}"
        ),
        Some(1.0)
    );
    // A place frees up when a connection closes.
    drop(held.pop());
    assert!(eventually(5, || {
        let mut s = connect_from(listen, None);
        let mut b = [0u8; 5];
        s.read_exact(&mut b).is_ok() && &b == b"echo\n"
    }));
}

#[test]
fn backend_reset_is_passed_on_as_a_reset() {
    // A backend that accepts, sends a little, then aborts the connection with RST.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            s.write_all(b"partial").unwrap();
            thread::sleep(Duration::from_millis(100));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
    });
    let (_p, listen) = start(&cluster_toml("c", "round_robin", &[(addr, 1)], ""), "", 1);
    let mut s = connect_from(listen, None);
    let mut got = [0u8; 7];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"partial");
    let mut rest = [0u8; 16];
    let r = s.read(&mut rest);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "an aborted upstream must not look like a clean end: {r:?}"
    );
}

#[test]
fn connect_timeout_fails_over_to_the_next_endpoint() {
    // A listener that never accepts, with its accept queue filled: the kernel drops further
    // SYNs, so connecting to it hangs until the connect timeout.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    stuck.listen(0).unwrap();
    let stuck_addr = stuck.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&stuck_addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(200));
    let live = Backend::start("live");
    let cluster = cluster_toml(
        "c",
        "round_robin",
        &[(stuck_addr, 1), (live.addr, 1)],
        "connect_timeout = \"300ms\"\nconnect_attempts = 2",
    );
    let (p, listen) = start(&cluster, "", 1);
    let started = Instant::now();
    assert_eq!(which_backend(listen, None), "live");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "waited for the timeout first: {took:?}"
    );
    let m = p.metrics();
    let errors = format!(
        "corelane_endpoint_connect_errors_total{{cluster=\"c\",endpoint=\"{stuck_addr}\"}}"
    );
    assert_eq!(metric(&m, &errors), Some(1.0), "{m}");
}

fn parked(p: &Proxy) -> Option<f64> {
    metric(
        &p.metrics(),
        "corelane_listener_connections_parked{listener=\"l\"}",
    )
}

fn active(p: &Proxy) -> Option<f64> {
    metric(
        &p.metrics(),
        "corelane_listener_connections_active{listener=\"l\"}",
    )
}

fn endpoint_active(p: &Proxy, endpoint: SocketAddr) -> Option<f64> {
    metric(
        &p.metrics(),
        &format!("corelane_endpoint_connections_active{{cluster=\"c\",endpoint=\"{endpoint}\"}}"),
    )
}

#[test]
fn idle_tls_connections_are_parked_with_their_session_and_wake_on_either_side() {
    // A line echo server that answers `push` when told to (once the connection is parked).
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = server.local_addr().unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let mut wait = Some(wait);
    thread::spawn(move || {
        let (s, _) = server.accept().unwrap();
        let mut lines = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut lines, &mut line).unwrap_or(0) > 0 {
            let mut w = s.try_clone().unwrap();
            if line == "push\n" {
                let Some(wait) = wait.take() else { break };
                thread::spawn(move || {
                    let _ = wait.recv();
                    let _ = w.write_all(b"pushed\n");
                });
            } else {
                let _ = w.write_all(line.as_bytes());
            }
            line.clear();
        }
    });
    let tls = "park_after = \"300ms\"\n".to_owned() + &localhost_tls("l");
    let (p, listen) = start(&cluster_toml("c", "round_robin", &[(up, 1)], ""), &tls, 1);
    let mut tls = tls_connect(listen);
    let line = |tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>| {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\n") {
            assert_eq!(tls.read(&mut b).unwrap(), 1, "{got:?}");
            got.push(b[0]);
        }
        String::from_utf8(got).unwrap()
    };
    tls.write_all(b"hello\n").unwrap();
    assert_eq!(line(&mut tls), "hello\n");
    // Woken by the client, on the same session.
    assert!(
        eventually(5, || parked(&p) == Some(1.0)),
        "{:?}",
        parked(&p)
    );
    assert_eq!(active(&p), Some(1.0));
    tls.write_all(b"again\n").unwrap();
    assert_eq!(line(&mut tls), "again\n");
    assert_eq!(parked(&p), Some(0.0));
    // Woken by the upstream: its bytes are encrypted with the session kept while parked.
    tls.write_all(b"push\n").unwrap();
    assert!(
        eventually(5, || parked(&p) == Some(1.0)),
        "{:?}",
        parked(&p)
    );
    go.send(()).unwrap();
    assert_eq!(line(&mut tls), "pushed\n");
    assert_eq!(parked(&p), Some(0.0));
    drop(tls);
    assert!(
        eventually(5, || active(&p) == Some(0.0) && parked(&p) == Some(0.0)),
        "{:?} {:?}",
        active(&p),
        parked(&p)
    );
}

#[test]
fn a_parked_tls_connection_woken_by_bytes_that_decrypt_to_nothing_still_idles_out() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = server.local_addr().unwrap();
    thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        let mut b = [0u8; 64];
        while let Ok(n) = s.read(&mut b) {
            if n == 0 || s.write_all(&b[..n]).is_err() {
                break;
            }
        }
    });
    let tls =
        "park_after = \"100ms\"\nidle_timeout = \"1500ms\"\n".to_owned() + &localhost_tls("l");
    let (p, listen) = start(&cluster_toml("c", "round_robin", &[(up, 1)], ""), &tls, 1);
    let mut tls = tls_connect(listen);
    tls.write_all(b"hi").unwrap();
    let mut got = [0u8; 2];
    tls.read_exact(&mut got).unwrap();
    let t = Instant::now();
    // Then, one byte every 250 ms of a TLS record that never completes, straight on the
    // socket: each wakes the parked connection, none is plaintext, so none is activity.
    let record = [0x17u8, 0x03, 0x03, 0x00, 0x40];
    let mut closed_at = None;
    for i in 0..20 {
        thread::sleep(Duration::from_millis(250));
        if active(&p) == Some(0.0) {
            closed_at = Some(t.elapsed());
            break;
        }
        let _ = tls.sock.write_all(&[*record.get(i).unwrap_or(&0)]);
    }
    let closed_at = closed_at.expect("still open after 5 s of partial-record wakes");
    assert!(closed_at >= Duration::from_millis(1400), "{closed_at:?}");
}

#[test]
fn idle_connections_are_parked_and_wake_on_either_side() {
    let b = Backend::start("echo");
    let (p, listen) = start(
        &cluster_toml("c", "round_robin", &[(b.addr, 1)], ""),
        "park_after = \"200ms\"",
        1,
    );
    let mut s = connect_from(listen, None);
    assert_eq!(greeting(&mut s), "echo");
    for round in 0..3 {
        // Idle past park_after: the connection leaves its task and the runtime...
        assert!(
            eventually(5, || parked(&p) == Some(1.0)),
            "round {round}: parked"
        );
        assert_eq!(active(&p), Some(1.0), "a parked connection is still open");
        // Its endpoint still counts it (least_conn and p2c read that count).
        assert_eq!(endpoint_active(&p, b.addr), Some(1.0), "round {round}");
        // ...and the client's next bytes wake it, in order and complete.
        let msg = format!("round {round}: {}", "x".repeat(round * 1000));
        s.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
    }
    // A FIN while parked is passed on: the backend answers EOF with "bye" and closes.
    assert!(eventually(5, || parked(&p) == Some(1.0)));
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "bye\n");
    assert!(eventually(5, || active(&p) == Some(0.0) && parked(&p) == Some(0.0)));
    assert_eq!(endpoint_active(&p, b.addr), Some(0.0));
}

#[test]
fn a_parked_connection_gets_upstream_bytes_and_resets() {
    // The upstream speaks first, goes quiet long enough for the connection to be parked,
    // speaks again unprompted, then aborts with RST.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            s.write_all(b"first").unwrap();
            thread::sleep(Duration::from_millis(900));
            s.write_all(b"second").unwrap();
            thread::sleep(Duration::from_millis(100));
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
    });
    let (p, listen) = start(
        &cluster_toml("c", "round_robin", &[(addr, 1)], ""),
        "park_after = \"150ms\"",
        1,
    );
    let mut s = connect_from(listen, None);
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
    assert!(eventually(5, || parked(&p) == Some(1.0)), "parked");
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"second");
    let mut rest = [0u8; 16];
    let r = s.read(&mut rest);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the reset is passed on after a wake-up too: {r:?}"
    );
}

#[test]
fn a_parked_connection_is_closed_at_its_idle_timeout() {
    let b = Backend::start("echo");
    let (p, listen) = start(
        &cluster_toml("c", "round_robin", &[(b.addr, 1)], ""),
        "park_after = \"100ms\"\nidle_timeout = \"1500ms\"",
        1,
    );
    let mut s = connect_from(listen, None);
    assert_eq!(greeting(&mut s), "echo");
    let started = Instant::now();
    assert!(eventually(5, || parked(&p) == Some(1.0)), "parked");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(6),
        "closed by the idle timeout, not by parking: {waited:?}"
    );
    assert!(rest.is_empty());
    assert!(eventually(5, || b
        .open
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
        && active(&p) == Some(0.0)
        && parked(&p) == Some(0.0)));
}
