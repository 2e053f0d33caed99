//! The HTTP engine through the real corelane binary, with real clients (curl, a raw socket
//! for hostile input) and real hyper backends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::echo::{EchoBackend, pattern};
use common::web::ResetBackend;
use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A proxy with one HTTP listener (`listener_extra` added to it) forwarding to cluster `app`
/// over `eps`, plus any `extra` tables.
fn proxy(
    eps: &[SocketAddr],
    listener_extra: &str,
    cluster_extra: &str,
    extra: &str,
) -> (Proxy, SocketAddr) {
    let (admin, listen) = (addr(), addr());
    let eps: Vec<(SocketAddr, u32)> = eps.iter().map(|a| (*a, 1)).collect();
    let cfg = base_toml(admin, 2)
        + &listener_toml(
            "web",
            listen,
            "app",
            &format!("protocol = \"http\"\n{listener_extra}"),
        )
        + &cluster_toml("app", "round_robin", &eps, cluster_extra)
        + extra;
    (Proxy::start(&cfg, admin), listen)
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs curl with `args` and returns what came back.
fn curl(args: &[&str]) -> Reply {
    let dir = tempdir("curl");
    let (h, b) = (dir.join("h"), dir.join("b"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&b)
        .arg("-D")
        .arg(&h)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl must be installed");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let headers = std::fs::read_to_string(&h).unwrap_or_default();
    let body = std::fs::read(&b).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    Reply {
        status,
        headers,
        body,
    }
}

fn url(listen: SocketAddr, path: &str) -> String {
    format!("http://{listen}{path}")
}

/// Sends raw bytes and returns everything the proxy answers before closing (or 5 s).
fn raw(listen: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn routes_respond_redirect_and_forward_by_host_path_method_and_header() {
    let (a, b) = (EchoBackend::start("a"), EchoBackend::start("b"));
    let routes = r#"
[[listeners.web.routes]]
path = "/hello"
method = "GET"
respond = { status = 200, body = "hi\n", headers = { x-made-by = "corelane" } }
[[listeners.web.routes]]
path_prefix = "/old/"
redirect = { location = "https://example.com/new", status = 301 }
[[listeners.web.routes]]
host = "*.b.test"
cluster = "other"
[[listeners.web.routes]]
header = { name = "x-canary", value = "yes" }
cluster = "other"
"#;
    let other = format!(
        "[clusters.other]\nendpoints = [{{ addr = \"{}\" }}]\n",
        b.addr
    );
    let (_p, listen) = proxy(&[a.addr], routes, "", &other);

    let r = curl(&[&url(listen, "/hello")]);
    assert_eq!((r.status, r.text().as_str()), (200, "hi\n"));
    assert_eq!(r.header("x-made-by").as_deref(), Some("corelane"));
    let r = curl(&["-X", "POST", &url(listen, "/hello")]);
    assert_eq!(
        r.header("x-backend").as_deref(),
        Some("a"),
        "method must match"
    );
    let r = curl(&[&url(listen, "/old/page")]);
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://example.com/new")
    );
    let r = curl(&["-H", "Host: x.b.test", &url(listen, "/")]);
    assert_eq!(r.header("x-backend").as_deref(), Some("b"));
    let r = curl(&["-H", "Host: b.test", &url(listen, "/")]);
    assert_eq!(
        r.header("x-backend").as_deref(),
        Some("a"),
        "*.b.test is not b.test"
    );
    let r = curl(&["-H", "x-canary: yes", &url(listen, "/")]);
    assert_eq!(r.header("x-backend").as_deref(), Some("b"));
    let r = curl(&[&url(listen, "/nothing")]);
    assert_eq!(r.header("x-backend").as_deref(), Some("a"));
}

#[test]
fn header_rules_forwarded_headers_and_hop_by_hop() {
    let a = EchoBackend::start("a");
    let rules = r#"
request_headers = { set = { x-env = "prod" }, add = { x-tag = "two" }, remove = ["x-secret"] }
response_headers = { set = { server = "corelane" }, remove = ["x-backend"] }
"#;
    let (_p, listen) = proxy(&[a.addr], rules, "", "");
    let r = curl(&[
        "-H",
        "x-env: dev",
        "-H",
        "x-tag: one",
        "-H",
        "x-secret: s3cret",
        "-H",
        "Connection: keep-alive, x-hop",
        "-H",
        "x-hop: 1",
        "-H",
        "X-Forwarded-For: 10.1.2.3",
        &url(listen, "/path?q=1"),
    ]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text();
    let has = |line: &str| seen.lines().any(|l| l == line);
    assert!(has("path: /path?q=1"), "{seen}");
    assert!(has("version: HTTP/1.1"), "{seen}");
    assert!(has("x-env: prod"), "{seen}");
    assert!(has("x-tag: one") && has("x-tag: two"), "{seen}");
    assert!(
        !seen.contains("x-secret") && !seen.contains("x-hop"),
        "{seen}"
    );
    assert!(
        !seen
            .to_ascii_lowercase()
            .contains("connection: keep-alive, x-hop"),
        "{seen}"
    );
    assert!(has("x-forwarded-for: 10.1.2.3, 127.0.0.1"), "{seen}");
    assert!(has("x-forwarded-proto: http"), "{seen}");
    assert!(has(&format!("x-forwarded-host: {listen}")), "{seen}");
    assert!(has(&format!("host: {listen}")), "{seen}");
    assert_eq!(r.header("server").as_deref(), Some("corelane"));
    assert_eq!(r.header("x-backend"), None);
}

#[test]
fn large_chunked_bodies_arrive_identical_both_ways() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    let size = 24 << 20;
    let data = pattern(size);
    let dir = tempdir("upload");
    let file = dir.join("up.bin");
    std::fs::write(&file, &data).unwrap();
    // Upload chunked, echoed back.
    let r = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &url(listen, "/echo"),
    ]);
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "echoed body differs ({} bytes back)",
        r.body.len()
    );
    // Download a chunked response.
    let r = curl(&[&url(listen, &format!("/big?n={size}"))]);
    assert_eq!(r.status, 200);
    assert!(
        r.body == data,
        "downloaded body differs ({} bytes)",
        r.body.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Trailers go through both ways: announced in `Trailer` (end-to-end) and taken by a client
/// that says `TE: trailers` (which corelane says again upstream), over HTTP/1.1 on the fast
/// path and the hyper path, and from HTTP/2 clients to an HTTP/1.1 upstream.
#[test]
fn trailers_are_passed_on_both_ways() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    let upload = |path: &str| {
        raw(
            listen,
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTE: trailers\r\nTrailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n").as_bytes(),
        )
    };
    // A chunked upload's trailers reach the upstream, and come back with its echo.
    let seen = upload("/inspect");
    assert!(seen.contains("trailer x-checksum: abc\n"), "{seen}");
    assert!(seen.contains("te: trailers\n"), "{seen}");
    let echoed = upload("/echo");
    assert!(echoed.starts_with("HTTP/1.1 200"), "{echoed}");
    assert!(
        echoed.ends_with("5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"),
        "{echoed}"
    );
    // A response's trailers reach a client that takes them (the upstream sends them only to
    // one that says so), and not one that does not.
    let get = |te: &str| {
        raw(
            listen,
            format!("GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{te}\r\n")
                .as_bytes(),
        )
    };
    let with = get("TE: trailers\r\n");
    assert!(with.ends_with("\r\n0\r\nx-sum: 42\r\n\r\n"), "{with}");
    let without = get("");
    assert!(without.ends_with("4\r\ndata\r\n0\r\n\r\n"), "{without}");

    // HTTP/2 (h2c) clients: a body of known length with trailers reaches the HTTP/1.1 upstream
    // whole, trailers included; a response's trailers come back as a trailers frame.
    let dir = tempdir("trailers");
    let file = dir.join("body");
    std::fs::write(&file, b"hello h2").unwrap();
    let nghttp = |args: &[&str]| {
        let out = Command::new("nghttp").args(args).output().expect("nghttp");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let data = format!("--data={}", file.display());
    let seen = nghttp(&[
        &data,
        "--trailer=x-checksum: abc",
        "-H",
        "trailer: x-checksum",
        &url(listen, "/inspect"),
    ]);
    assert!(seen.contains("body-length: 8\n"), "{seen}");
    assert!(seen.contains("trailer x-checksum: abc\n"), "{seen}");
    let verbose = nghttp(&["-v", "-H", "te: trailers", &url(listen, "/trailers")]);
    let data_at = verbose.find("recv DATA").unwrap_or(usize::MAX);
    let sum_at = verbose.rfind("x-sum: 42").unwrap_or(0);
    assert!(sum_at > data_at && data_at != usize::MAX, "{verbose}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h2c_clients_reach_http1_upstreams() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    let r = curl(&["--http2-prior-knowledge", &url(listen, "/via-h2?x=1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.starts_with("HTTP/2 200"), "{}", r.headers);
    let seen = r.text();
    assert!(seen.contains("version: HTTP/1.1"), "{seen}");
    assert!(seen.contains("path: /via-h2?x=1"), "{seen}");
    assert!(seen.contains(&format!("host: {listen}")), "{seen}");
    let r = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "hello h2",
        &url(listen, "/echo"),
    ]);
    assert_eq!(r.text(), "hello h2");
}

#[test]
fn upstream_connections_are_kept_alive_and_reused() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(listen).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                for _ in 0..200 {
                    s.write_all(b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let n = s.read(&mut buf).unwrap();
                    assert!(
                        buf[..n].starts_with(b"HTTP/1.1 204"),
                        "{:?}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(a.requests.load(Ordering::SeqCst), 1600);
    let conns = a.connections.load(Ordering::SeqCst);
    // At most one per concurrent request per worker: 8 clients over 2 workers.
    assert!(
        conns <= 8,
        "backend saw {conns} connections for 1600 requests"
    );
}

#[test]
fn upstream_errors_are_502_503_504() {
    let a = EchoBackend::start("a");
    // 502: nothing listens.
    let (_p, listen) = proxy(&[refused_addr()], "", "connect_attempts = 1\n", "");
    let r = curl(&[&url(listen, "/")]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.text(), "502 Bad Gateway\n");
    // 504: the upstream is slower than response_timeout.
    let (_p, listen) = proxy(&[a.addr], "", "response_timeout = \"300ms\"\n", "");
    let started = Instant::now();
    let r = curl(&[&url(listen, "/slow?ms=3000")]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    // 503: no healthy endpoint.
    let check = "[clusters.app.health_check]\nkind = \"tcp\"\ninterval = \"100ms\"\nfall = 1\n";
    let (p, listen) = proxy(&[refused_addr()], "", check, "");
    assert!(eventually(3, || p.status()["clusters"][0]["endpoints"][0]
        ["health"]["state"]
        == "down"));
    let r = curl(&[&url(listen, "/")]);
    assert_eq!(r.status, 503, "{}", r.text());
}

#[test]
fn client_errors_are_400_408_413_431() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(
        &[a.addr],
        "max_body = 1000\nheader_timeout = \"500ms\"\nmax_header_size = 8192\n",
        "",
        "",
    );
    // 413, declared and chunked.
    let big = "x".repeat(2000);
    let r = curl(&["--data-binary", &big, &url(listen, "/echo")]);
    assert_eq!(r.status, 413);
    let r = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &big,
        &url(listen, "/echo"),
    ]);
    assert_eq!(r.status, 413, "{}", r.text());
    let r = curl(&["--data-binary", "small", &url(listen, "/echo")]);
    assert_eq!(r.text(), "small");
    // 431.
    let huge = format!("x-big: {}", "y".repeat(20_000));
    let r = curl(&["-H", &huge, &url(listen, "/")]);
    assert_eq!(r.status, 431);
    // 431 for more header fields than `max_headers` (100 by default), HTTP/1.1 and HTTP/2;
    // 90 of them pass.
    let many = |n: usize, h2: bool| {
        let mut args: Vec<String> = (0..n)
            .flat_map(|i| ["-H".to_owned(), format!("x-h{i}: {i}")])
            .collect();
        if h2 {
            args.push("--http2-prior-knowledge".to_owned());
        }
        args.push(url(listen, "/"));
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).status
    };
    assert_eq!([many(120, false), many(120, true)], [431, 431]);
    assert_eq!([many(90, false), many(90, true)], [200, 200]);
    // 400.
    assert!(
        raw(listen, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n").starts_with("HTTP/1.1 400")
    );
    // 408: headers not finished in time.
    let started = Instant::now();
    let out = raw(listen, b"GET / HTTP/1.1\r\nHost: t\r\n");
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        3,
        "only the small body and the two requests within max_headers reached the backend"
    );
}

#[test]
fn request_smuggling_forms_are_refused_before_the_upstream() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    // Content-Length with Transfer-Encoding: the chunked framing wins (RFC 9112 6.1), the
    // upstream sees one framing only, and the connection closes after the response, so bytes
    // hidden behind the declared length never become a second request.
    let out = raw(
        listen,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(out.contains("connection: close"), "{out:?}");
    assert!(
        !out.contains("content-length: 40"),
        "the upstream saw both framings: {out:?}"
    );
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out:?}");
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        1,
        "the smuggled request was not served"
    );

    // Refused at the head: the upstream never hears of them.
    let cases: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
    ];
    for (i, c) in cases.iter().enumerate() {
        let out = raw(listen, c);
        assert!(out.starts_with("HTTP/1.1 400"), "case {i}: {out:?}");
    }
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        1,
        "none of these reached the backend"
    );
    // A bad chunk size is found while the body streams: the client gets 400 (not 502: the
    // upstream is not to blame), and the next request is served on a sound connection.
    let out = raw(
        listen,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let r = curl(&[&url(listen, "/after")]);
    assert_eq!(r.status, 200);
}

#[test]
fn a_thousand_slow_clients_do_not_stop_a_normal_one() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "header_timeout = \"3s\"\n", "", "");
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(listen).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n").unwrap();
        slow.push(s);
    }
    for _ in 0..20 {
        let r = curl(&[&url(listen, "/fast")]);
        assert_eq!(r.status, 200);
    }
    // The slow ones are cut off at header_timeout with 408.
    thread::sleep(Duration::from_millis(3500));
    let mut s = slow.pop().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
}

#[test]
fn idempotent_requests_are_retried_after_a_reset_and_posts_are_not() {
    let a = EchoBackend::start("a");
    let bad = ResetBackend::start();
    let (_p, listen) = proxy(&[bad.addr, a.addr], "", "connect_attempts = 2\n", "");
    for _ in 0..6 {
        let r = curl(&[&url(listen, "/x")]);
        assert_eq!(r.status, 200, "a GET is retried on the other endpoint");
    }
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(curl(&["--data-binary", "body", &url(listen, "/echo")]).status);
    }
    assert!(
        statuses.contains(&502),
        "a POST that was reset is not retried: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
}

/// A failed connect moves on to the next endpoint, for any method (nothing was sent); and
/// retries after a reset are bounded by the worker's retry budget (a reserve of 10, then a
/// fifth of requests), so an endpoint that resets everything cannot double the load.
#[test]
fn connect_failures_are_retried_and_resets_within_the_retry_budget() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[refused_addr(), a.addr], "", "connect_attempts = 2\n", "");
    for i in 0..6 {
        let r = if i % 2 == 0 {
            curl(&[&url(listen, "/x")])
        } else {
            curl(&["--data-binary", "body", &url(listen, "/echo")])
        };
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }

    let bad = ResetBackend::start();
    let (_p, listen) = proxy(&[bad.addr, a.addr], "", "connect_attempts = 2\n", "");
    let statuses: Vec<u16> = (0..100)
        .map(|_| curl(&[&url(listen, "/x")]).status)
        .collect();
    let failed = statuses.iter().filter(|&&s| s == 502).count();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 502),
        "{statuses:?}"
    );
    // Half the requests meet the reset; each worker retries its first ten or so (the reserve),
    // then about two in five of the rest, for the budget grows by 0.2 a request.
    assert!(
        statuses[..10].iter().all(|&s| s == 200),
        "the reserve covers the first retries: {statuses:?}"
    );
    assert!(
        (3..=40).contains(&failed),
        "{failed} of 100 failed: {statuses:?}"
    );
}

/// `hash_on` a header, a cookie or the path: every request with the same key reaches the
/// same endpoint, on either worker and over HTTP/1.1 or HTTP/2, and different keys spread
/// over both (ketama and maglev).
#[test]
fn hashing_on_a_header_a_cookie_or_the_path_keeps_each_key_on_one_endpoint() {
    let (a, b) = (EchoBackend::start("a"), EchoBackend::start("b"));
    let ways: [(&str, &str); 3] = [
        ("ketama", "header:x-user"),
        ("maglev", "cookie:sid"),
        ("ketama", "path"),
    ];
    for (lb, on) in ways {
        let (admin, listen) = (addr(), addr());
        let cfg = base_toml(admin, 2)
            + &listener_toml("web", listen, "app", "protocol = \"http\"\n")
            + &cluster_toml(
                "app",
                lb,
                &[(a.addr, 1), (b.addr, 1)],
                &format!("hash_on = \"{on}\"\n"),
            );
        let _p = Proxy::start(&cfg, admin);
        let mut placed = std::collections::BTreeMap::new();
        for key in 0..24 {
            let key = format!("user{key}");
            let (header, cookie) = (format!("x-user: {key}"), format!("other=1; sid={key}"));
            let target = url(listen, &format!("/{key}"));
            let mut args: Vec<&str> = match on {
                "header:x-user" => vec!["-H", &header],
                "cookie:sid" => vec!["-b", &cookie],
                _ => vec![],
            };
            args.push(&target);
            let mut seen = std::collections::BTreeSet::new();
            for i in 0..4 {
                let mut args = args.clone();
                if i % 2 == 1 {
                    args.push("--http2-prior-knowledge");
                }
                let r = curl(&args);
                assert_eq!(r.status, 200, "{lb} {on} {key}");
                seen.insert(r.header("x-backend").unwrap_or_default());
            }
            assert_eq!(seen.len(), 1, "{lb} {on}: {key} went to {seen:?}");
            placed.insert(key, seen.into_iter().next().unwrap_or_default());
        }
        let used: std::collections::BTreeSet<_> = placed.values().collect();
        assert_eq!(
            used.len(),
            2,
            "{lb} {on}: every key on one endpoint: {placed:?}"
        );
    }
}

#[test]
fn upstream_5xx_ejects_an_endpoint() {
    let good = EchoBackend::start("good");
    let bad = EchoBackend::start("bad");
    bad.fail.store(true, Ordering::SeqCst);
    let outlier = "[clusters.app.outlier]\nconsecutive_failures = 3\nmax_ejection_percent = 50\n";
    let (p, listen) = proxy(&[good.addr, bad.addr], "", outlier, "");
    let statuses: Vec<u16> = (0..30).map(|_| curl(&[&url(listen, "/")]).status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses[statuses.len() - 10..].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    let h = &p.status()["clusters"][0]["endpoints"][1]["health"];
    assert_eq!(h["state"], "ejected", "{h}");
    assert!(h["reason"].as_str().unwrap().contains("HTTP 500"), "{h}");
}

/// `ketama` places keys exactly as nginx's `hash $arg_key consistent` does for the same
/// upstream list: the real nginx is the reference.
#[test]
fn ketama_placement_equals_nginx_hash_consistent() {
    let backends: Vec<EchoBackend> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| EchoBackend::start(n))
        .collect();
    let weights = [1, 1, 2, 1];
    let dir = tempdir("nginx");
    let nginx_port = free_port();
    let servers: String = backends
        .iter()
        .zip(weights)
        .map(|(b, w)| format!("server {} weight={w};\n", b.addr))
        .collect();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {dir};\n proxy_temp_path {dir};\n\
         upstream b {{ hash $arg_key consistent;\n{servers} }}\n\
         server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://b; }} }}\n}}\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let _nginx = StopOnDrop(
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .spawn()
            .expect("nginx must be installed to run this test"),
    );
    let nginx_addr: SocketAddr = format!("127.0.0.1:{nginx_port}").parse().unwrap();
    assert!(
        eventually(5, || TcpStream::connect(nginx_addr).is_ok()),
        "nginx did not start"
    );

    let (admin, listen) = (addr(), addr());
    let eps: Vec<(SocketAddr, u32)> = backends
        .iter()
        .zip(weights)
        .map(|(b, w)| (b.addr, w))
        .collect();
    let cfg = base_toml(admin, 2)
        + &listener_toml("web", listen, "app", "protocol = \"http\"")
        + &cluster_toml("app", "ketama", &eps, "hash_on = \"query:key\"\n");
    let _p = Proxy::start(&cfg, admin);

    let mut differ = Vec::new();
    let mut spread = std::collections::HashMap::new();
    for i in 0..300 {
        let path = format!("/?key=user{i}");
        let theirs = curl(&[&format!("http://{nginx_addr}{path}")]).header("x-backend");
        let ours = curl(&[&url(listen, &path)]).header("x-backend");
        assert!(theirs.is_some(), "nginx did not answer");
        *spread.entry(ours.clone()).or_insert(0) += 1;
        if theirs != ours {
            differ.push((i, theirs, ours));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 300 keys differ: {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
    assert_eq!(spread.len(), 4, "every backend gets keys: {spread:?}");
}

/// A child process stopped with SIGTERM when dropped (nginx's master then stops its workers;
/// SIGKILL would orphan them).
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// h2load (nghttp2) as an HTTP/2 client under load: many streams on few connections, all
/// answered, over HTTP/1.1 upstream connections that are reused.
#[test]
fn h2load_streams_all_succeed() {
    let a = EchoBackend::start("a");
    // Room in the pool for every concurrent stream, so connections are reused, not churned.
    let (_p, listen) = proxy(&[a.addr], "", "pool_max_idle = 256\n", "");
    let out = Command::new("h2load")
        .args(["-n", "4000", "-c", "8", "-m", "16"])
        .arg(url(listen, "/status/200"))
        .output()
        .expect("h2load (nghttp2-client) must be installed to run this test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 4000 2xx"), "{text}");
    let conns = a.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 8 * 16,
        "{conns} upstream connections for 128 concurrent streams"
    );
}

const WS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], max_size=None) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        big = bytes(i % 251 for i in range(1 << 20))
        await ws.send(big)
        assert await ws.recv() == big
        for i in range(100):
            await ws.send(f"m{i}")
            assert await ws.recv() == f"m{i}"
    print("ok")
asyncio.run(main())
"#;

/// WebSocket through corelane, with the real `websockets` library on both ends.
#[test]
fn websocket_upgrade_is_tunnelled() {
    let ws = common::ws::WsEcho::start();
    let (_p, listen) = proxy(&[ws.addr], "", "", "");
    let out = Command::new("/usr/bin/python3")
        .args(["-c", WS_CLIENT, &format!("ws://{listen}/chat")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A proxy (2 workers) whose listener `web` (`listener_extra` added) keeps an access log,
/// forwarding to `backend`: the proxy, the listener's address and the log's path.
fn logging_proxy(
    backend: SocketAddr,
    name: &str,
    listener_extra: &str,
) -> (Proxy, SocketAddr, std::path::PathBuf) {
    let (admin, listen) = (addr(), addr());
    let log = tempdir(name).join("access.log");
    let cfg = format!(
        "workers = 2\n[admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"info\"\naccess_log = \"{}\"\n",
        log.display()
    ) + &listener_toml(
        "web",
        listen,
        "app",
        &format!("protocol = \"http\"\naccess_log = true\n{listener_extra}"),
    ) + &cluster_toml("app", "round_robin", &[(backend, 1)], "");
    (Proxy::start(&cfg, admin), listen, log)
}

/// Requests are counted by route and status class (and timed) in /metrics, and written to the
/// access log as JSON lines.
#[test]
fn metrics_by_route_and_class_and_the_access_log() {
    let a = EchoBackend::start("a");
    let (p, listen, log) = logging_proxy(
        a.addr,
        "alog",
        "[[listeners.web.routes]]\nname = \"hello\"\npath = \"/hello\"\nrespond = { status = 200, body = \"hi\" }\n",
    );
    for _ in 0..3 {
        assert_eq!(curl(&[&url(listen, "/hello")]).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(curl(&[&url(listen, "/status/503")]).status, 503);
    }
    assert_eq!(curl(&[&url(listen, "/slow?ms=300")]).status, 200);
    // A chunked body, over HTTP/1.1 (the fast path) and HTTP/2 (hyper).
    let big = url(listen, "/big?n=100000");
    assert_eq!(curl(&[&big]).body.len(), 100_000);
    assert_eq!(curl(&["--http2-prior-knowledge", &big]).body.len(), 100_000);
    let m = p.metrics();
    let get = |series: &str| metric(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
    assert_eq!(
        get("corelane_http_responses_total{listener=\"web\",route=\"hello\",class=\"2xx\"}"),
        3.0
    );
    assert_eq!(
        get("corelane_http_responses_total{listener=\"web\",route=\"default\",class=\"5xx\"}"),
        2.0
    );
    assert_eq!(
        get("corelane_http_responses_total{listener=\"web\",route=\"default\",class=\"2xx\"}"),
        3.0
    );
    assert_eq!(
        get("corelane_cluster_http_responses_total{cluster=\"app\",class=\"5xx\"}"),
        2.0
    );
    assert_eq!(
        get("corelane_cluster_http_responses_total{cluster=\"app\",class=\"2xx\"}"),
        3.0
    );
    // The slow response (300 ms) is in the histogram's upper buckets.
    let le = |b: &str| {
        get(&format!(
            "corelane_cluster_http_response_duration_seconds_bucket{{le=\"{b}\",cluster=\"app\"}}"
        ))
    };
    assert!(le("0.25") <= 4.0 && le("+Inf") == 5.0, "{m}");
    assert_eq!(
        get("corelane_http_response_duration_seconds_count{listener=\"web\",route=\"hello\"}"),
        3.0
    );
    assert_eq!(
        get("corelane_cluster_http_response_duration_seconds_count{cluster=\"app\"}"),
        5.0
    );

    let mut lines = Vec::new();
    assert!(
        eventually(5, || {
            lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.len() == 8
        }),
        "{lines:?}"
    );
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let e = entries.iter().find(|e| e["path"] == "/status/503").unwrap();
    assert_eq!(e["method"], "GET");
    assert_eq!(e["status"], 503);
    assert_eq!(e["route"], "default");
    assert_eq!(e["listener"], "web");
    assert_eq!(e["client"], "127.0.0.1");
    assert_eq!(e["upstream"], a.addr.to_string());
    assert_eq!(e["host"], listen.to_string());
    assert_eq!(e["bytes"], "status 503\n".len());
    let slow = entries.iter().find(|e| e["path"] == "/slow").unwrap();
    let ms = slow["duration_ms"].as_f64().unwrap();
    assert!((300.0..10_000.0).contains(&ms), "{slow}");
    for e in &entries {
        let (head, total) = (e["duration_ms"].as_f64(), e["total_ms"].as_f64());
        assert!(head.zip(total).is_some_and(|(h, t)| t >= h), "{e}");
    }
    // The bytes sent: the decoded body to the HTTP/2 client, the body as relayed (its chunk
    // framing too) on the fast path.
    let mut big: Vec<u64> = entries
        .iter()
        .filter(|e| e["path"] == "/big")
        .filter_map(|e| e["bytes"].as_u64())
        .collect();
    big.sort();
    assert_eq!(big.len(), 2, "{entries:?}");
    assert_eq!(big[0], 100_000);
    assert!((100_001..101_000).contains(&big[1]), "{big:?}");
    let e = entries.iter().find(|e| e["path"] == "/hello").unwrap();
    assert_eq!(
        (
            e["route"].as_str(),
            e["bytes"].as_u64(),
            e["upstream"].is_null()
        ),
        (Some("hello"), Some(2), true)
    );
}

/// Requests corelane answers before routing them (malformed 400, head too large 431, head
/// too slow 408) are counted for their listener and logged with a `null` route; an idle
/// keep-alive connection closed at `header_timeout` (no request begun) is neither. The same
/// holds on the hyper path, after the fast path handed a connection over.
#[test]
fn requests_refused_before_routing_are_counted_and_logged() {
    let a = EchoBackend::start("a");
    let (p, listen, log) = logging_proxy(
        a.addr,
        "refused",
        "header_timeout = \"700ms\"\nmax_header_size = 8192\n",
    );
    let two_lengths =
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
    assert!(raw(listen, two_lengths).starts_with("HTTP/1.1 400"));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(10_000)
    );
    assert!(raw(listen, big.as_bytes()).starts_with("HTTP/1.1 431"));
    // Slow: a head begun and not finished; and nothing at all.
    assert!(raw(listen, b"GET /slow HTTP/1.1\r\nHost: t\r\n").starts_with("HTTP/1.1 408"));
    assert!(raw(listen, b"").starts_with("HTTP/1.1 408"));
    // The hyper path (a chunked upload is handed to it): a head begun after a response is a
    // slow request; a connection idle after its response is not.
    let upload = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for then in [&b"GET /late HTTP/1.1\r\n"[..], b""] {
        let mut s = TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(upload).unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        thread::sleep(Duration::from_millis(100));
        s.write_all(then).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("HTTP/1.1 408"), "{out:?}");
    }
    let m = p.metrics();
    assert_eq!(refused_requests(&m), [1.0, 2.0, 1.0, 0.0]);
    // No route saw them.
    assert_eq!(
        metric(
            &m,
            "corelane_http_responses_total{listener=\"web\",route=\"default\",class=\"4xx\"}"
        ),
        Some(0.0)
    );
    let mut entries: Vec<serde_json::Value> = Vec::new();
    assert!(
        eventually(5, || {
            entries = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            entries.len() == 6
        }),
        "{entries:?}"
    );
    let mut statuses: Vec<u64> = entries
        .iter()
        .filter(|e| e["route"].is_null())
        .filter_map(|e| e["status"].as_u64())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [400, 408, 408, 431], "{entries:?}");
    let slow = entries.iter().find(|e| e["path"] == "/slow").unwrap();
    assert_eq!(
        (
            slow["method"].as_str(),
            slow["status"].as_u64(),
            slow["bytes"].as_u64()
        ),
        (Some("GET"), Some(408), Some(20)),
        "{slow}"
    );
    assert_eq!(slow["listener"], "web");
    assert!(
        slow["duration_ms"].as_f64().is_some_and(|ms| ms >= 600.0),
        "{slow}"
    );
}

/// An HTTP/2 connection with nothing to do is closed (GOAWAY) after the listener's
/// `idle_timeout`; one that is busy is not.
#[test]
fn idle_http2_connections_are_closed() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "idle_timeout = \"600ms\"\n", "", "");
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The h2 preface and an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => frames.extend_from_slice(&buf[..n]),
            Err(e) => panic!("not closed: {e}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "closed too early: {took:?}"
    );
    // The sweep runs once a second; the margin is for a loaded machine.
    assert!(took < Duration::from_secs(6), "closed late: {took:?}");
    // Walk the frames: a GOAWAY (type 7) must be among them.
    let mut i = 0;
    let mut types = Vec::new();
    while i + 9 <= frames.len() {
        let len = (usize::from(frames[i]) << 16)
            | (usize::from(frames[i + 1]) << 8)
            | usize::from(frames[i + 2]);
        types.push(frames[i + 3]);
        i += 9 + len;
    }
    assert!(types.contains(&7), "no GOAWAY among frame types {types:?}");
}

/// Reloads under load lose no request: keep-alive clients keep their connections and follow
/// the new table on their next request (a response header set by the listener changes).
#[test]
fn reloads_under_load_lose_no_request() {
    let (a, b) = (EchoBackend::start("a"), EchoBackend::start("b"));
    let (admin, listen) = (addr(), addr());
    let cfg = |generation: usize| {
        let eps: Vec<(SocketAddr, u32)> = if generation % 2 == 0 {
            vec![(a.addr, 1)]
        } else {
            vec![(a.addr, 1), (b.addr, 1)]
        };
        base_toml(admin, 2)
            + &listener_toml(
                "web",
                listen,
                "app",
                &format!(
                    "protocol = \"http\"\nresponse_headers = {{ set = {{ x-gen = \"{generation}\" }} }}\n"
                ),
            )
            + &cluster_toml("app", "round_robin", &eps, "")
    };
    let p = Proxy::start(&cfg(0), admin);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut s = TcpStream::connect(listen).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (mut ok, mut gens) = (0usize, std::collections::BTreeSet::new());
                let mut buf = vec![0u8; 16 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    s.write_all(b"GET /status/200 HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let n = s.read(&mut buf).unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                    if let Some(g) = text
                        .split("x-gen: ")
                        .nth(1)
                        .and_then(|t| t.split("\r\n").next())
                    {
                        gens.insert(g.to_owned());
                    }
                    ok += 1;
                }
                (ok, gens)
            })
        })
        .collect();
    for generation in 1..=20 {
        p.write_config(&cfg(generation));
        let s = p.sighup_and_wait();
        assert_eq!(s["last_reload"]["result"], "ok", "{s}");
        let r = curl(&[&url(listen, "/status/200")]);
        assert_eq!(r.status, 200, "a new connection after reload {generation}");
        assert_eq!(r.header("x-gen"), Some(generation.to_string()));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let (ok, gens) = c.join().expect("a keep-alive client failed");
        assert!(ok > 50, "{ok} requests");
        assert!(
            gens.len() > 5,
            "keep-alive connections followed the new tables: {gens:?}"
        );
    }
}

/// `upstream_protocol = "h2"`: requests travel to the upstream as HTTP/2 streams over one
/// connection per worker.
#[test]
fn http2_to_upstreams_multiplexes_requests() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "upstream_protocol = \"h2\"\n", "");
    let r = curl(&[&url(listen, "/seen?x=1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text();
    assert!(seen.contains("version: HTTP/2.0"), "{seen}");
    assert!(
        seen.contains("path: /seen?x=1")
            || seen.contains(&format!("path: http://{listen}/seen?x=1")),
        "{seen}"
    );
    let r = curl(&["--data-binary", "over h2", &url(listen, "/echo")]);
    assert_eq!(r.text(), "over h2");
    // A Host that is more than an authority cannot reach the upstream's :path.
    let out = raw(
        listen,
        b"GET /public HTTP/1.1\r\nHost: a.test/admin?\r\nConnection: close\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(curl(&[&url(listen, "/status/204")]).status, 204);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let conns = a.connections.load(Ordering::SeqCst);
    assert!(
        conns <= 2,
        "{conns} upstream connections: one per worker expected"
    );
}

/// `Expect: 100-continue`: the client gets `100 Continue` from corelane (curl would otherwise
/// wait a second before sending its body) and the body reaches the upstream.
#[test]
fn expect_100_continue_is_answered() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "", "", "");
    let body = "y".repeat(100_000);
    let started = Instant::now();
    let r = curl(&[
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "5",
        "--data-binary",
        &body,
        &url(listen, "/echo"),
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "curl waited for a 100 that never came"
    );
}

/// A request waiting for a slow upstream keeps its connection: idleness counts only
/// connections with nothing in flight.
#[test]
fn a_slow_response_is_not_cut_by_the_idle_timeout() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "idle_timeout = \"300ms\"\n", "", "");
    let r = curl(&[&url(listen, "/slow?ms=1500")]);
    assert_eq!((r.status, r.text().as_str()), (200, "slow\n"));
}

/// `total_timeout` bounds the whole exchange, response body included: a body still streaming
/// when it passes is cut, rather than running on.
#[test]
fn total_timeout_cuts_a_body_that_streams_too_long() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "total_timeout = \"700ms\"\n", "", "");
    let dir = tempdir("slow-upload");
    let file = dir.join("up.bin");
    std::fs::write(&file, vec![b'z'; 60_000]).unwrap();
    let started = Instant::now();
    // Uploaded at 20 KB/s and echoed back as it arrives: 3 s for the whole body.
    let r = curl(&[
        "--limit-rate",
        "20k",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &url(listen, "/echo"),
    ]);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "not cut: {took:?}");
    assert!(
        r.body.len() < 60_000,
        "the whole body came through: {}",
        r.body.len()
    );
    // Without a total timeout the same exchange completes.
    let (_p2, listen2) = proxy(&[a.addr], "", "", "");
    let r = curl(&[
        "--limit-rate",
        "200k",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &url(listen2, "/echo"),
    ]);
    assert_eq!(r.body.len(), 60_000);
}
