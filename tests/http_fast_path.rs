//! The HTTP/1.1 fast path (`proto::http::h1`) through the real corelane binary: a scripted
//! upstream that answers with exact bytes (each framing, interim responses, broken heads, a
//! connection closed while pooled) and raw clients that pipeline requests or switch to a
//! request only the hyper path takes, on one connection.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// An upstream that reads each request (head and `Content-Length` body), records it, and
/// answers with what `answer` returns for it: the bytes, and whether to close afterwards.
struct Scripted {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<usize>>,
}

impl Scripted {
    fn start(answer: fn(&str) -> (Vec<u8>, bool)) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, c) = (requests.clone(), connections.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                *c.lock().unwrap() += 1;
                let r = r.clone();
                thread::spawn(move || serve(s, &r, answer));
            }
        });
        Scripted {
            addr,
            requests,
            connections,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream, log: &Mutex<Vec<String>>, answer: fn(&str) -> (Vec<u8>, bool)) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: its head, then its Content-Length body.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            // Decoded, so the log shows the body as sent.
            let mut body = Vec::new();
            let mut at = end;
            loop {
                let Some(nl) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buf[at..at + nl])
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                let need = at + nl + 2 + size + 2;
                if buf.len() < need {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                }
                body.extend_from_slice(&buf[at + nl + 2..at + nl + 2 + size]);
                at = need;
                if size == 0 {
                    break;
                }
            }
            let req = format!("{head}{}", String::from_utf8_lossy(&body));
            buf.drain(..at);
            log.lock().unwrap().push(req.clone());
            let (bytes, close) = answer(&req);
            if s.write_all(&bytes).is_err() || close {
                return;
            }
            continue;
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let req = String::from_utf8_lossy(&buf[..end + len]).into_owned();
        buf.drain(..end + len);
        log.lock().unwrap().push(req.clone());
        let (bytes, close) = answer(&req);
        if s.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

/// A proxy with one HTTP listener forwarding to `upstream`.
fn proxy(upstream: SocketAddr, listener_extra: &str) -> (Proxy, SocketAddr) {
    let (admin, listen) = (addr(), addr());
    let cfg = base_toml(admin, 1)
        + &listener_toml(
            "web",
            listen,
            "app",
            &format!("protocol = \"http\"\n{listener_extra}"),
        )
        + &cluster_toml("app", "round_robin", &[(upstream, 1)], "");
    (Proxy::start(&cfg, admin), listen)
}

/// Reads one whole response from `s` (head, then its body by its framing); the response text
/// with a chunked body left as it came.
fn response(s: &mut TcpStream, to_head: bool) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let find = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k == name).then(|| v.trim().to_owned())
        })
    };
    if to_head || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304") {
    } else if find("transfer-encoding").as_deref() == Some("chunked") {
        // Until the last chunk's empty trailer line.
        let start = buf.len();
        let ended = |b: &[u8]| {
            let body = &b[start..];
            (body.starts_with(b"0\r\n") || body.windows(5).any(|w| w == b"\r\n0\r\n"))
                && body.ends_with(b"\r\n\r\n")
        };
        while !ended(&buf) {
            match s.read(&mut b) {
                Ok(1) => buf.push(b[0]),
                _ => break,
            }
        }
    } else if let Some(n) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0u8; n];
        s.read_exact(&mut body).unwrap();
        buf.extend_from_slice(&body);
    } else {
        let _ = s.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn client(listen: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn by_path(req: &str) -> (Vec<u8>, bool) {
    let path = req.split(' ').nth(1).unwrap_or("");
    let r: &[u8] = match path {
        "/length" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n\r\nhello",
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        "/interim" => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n",
        "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "/garbage" => b"HTTP/1.1 2x0 Nope\r\n\r\n",
        "/to-close" => return (b"HTTP/1.1 200 OK\r\nX-Framing: close\r\n\r\nuntil the end".to_vec(), true),
        "/rude" => return (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nrude".to_vec(), true),
        _ if req.starts_with("HEAD") => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    };
    (r.to_vec(), false)
}

#[test]
fn each_response_framing_is_relayed_exactly() {
    let up = Scripted::start(by_path);
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    let ask = |c: &mut TcpStream, method: &str, path: &str| {
        write!(c, "{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        response(c, method == "HEAD")
    };
    let r = ask(&mut c, "GET", "/length");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        r.contains("content-length: 5\r\n")
            && r.contains("X-Up: 1\r\n")
            && r.ends_with("\r\n\r\nhello"),
        "{r}"
    );
    // Chunked: relayed as it came (extensions and trailers too), its Content-Length dropped.
    let r = ask(&mut c, "GET", "/chunked");
    assert!(
        r.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{r}"
    );
    assert!(!r.to_ascii_lowercase().contains("content-length"), "{r}");
    assert!(
        r.ends_with("\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"),
        "{r}"
    );
    // 1xx interim responses are not passed on; the final one is.
    let r = ask(&mut c, "GET", "/interim");
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok"),
        "{r}"
    );
    let r = ask(&mut c, "GET", "/no-content");
    assert!(r.starts_with("HTTP/1.1 204 No Content\r\n"), "{r}");
    // HEAD: the length of the body that was not sent, and no body.
    let r = ask(&mut c, "HEAD", "/any");
    assert!(
        r.contains("Content-Length: 1234\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    // The same connection still works, and the upstream saw one connection for all of it.
    let r = ask(&mut c, "GET", "/length");
    assert!(r.ends_with("hello"), "{r}");
    assert_eq!(*up.connections.lock().unwrap(), 1);
    // A body delimited by the upstream's close: relayed, then the client connection closes.
    let r = ask(&mut c, "GET", "/to-close");
    assert!(
        r.contains("connection: close\r\n") && r.ends_with("\r\n\r\nuntil the end"),
        "{r}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        c.read_to_end(&mut rest).unwrap(),
        0,
        "closed after a close-delimited body"
    );
}

#[test]
fn a_broken_upstream_head_is_502_and_the_client_connection_goes_on() {
    let up = Scripted::start(by_path);
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    for path in ["/two-lengths", "/garbage"] {
        write!(c, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = response(&mut c, false);
        assert!(
            r.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && r.ends_with("502 Bad Gateway\n"),
            "{path}: {r}"
        );
    }
    write!(c, "GET /length HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(response(&mut c, false).ends_with("hello"));
}

#[test]
fn a_connection_the_upstream_closed_while_pooled_is_not_used() {
    let up = Scripted::start(by_path);
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    for i in 0..5 {
        // The upstream closes after each answer without saying so.
        write!(c, "GET /rude HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = response(&mut c, false);
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("rude"),
            "request {i}: {r}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        up.requests().len(),
        5,
        "each request reached the upstream once"
    );
    assert_eq!(*up.connections.lock().unwrap(), 5);
}

#[test]
fn pipelined_requests_are_answered_in_order_with_their_bodies() {
    let up = Scripted::start(|req| {
        let body = req.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        let path = req.split(' ').nth(1).unwrap_or("").to_owned();
        let text = format!("{path}:{body}");
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .into_bytes(),
            false,
        )
    });
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    c.write_all(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: t\r\n\r\nPUT /c HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nwxyz").unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\n/a:abc"));
    assert!(response(&mut c, false).ends_with("\r\n\r\n/b:"));
    assert!(response(&mut c, false).ends_with("\r\n\r\n/c:wxyz"));
    // A body sent in pieces after its head.
    c.write_all(b"POST /d HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    c.write_all(b"56789").unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\n/d:0123456789"));
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[0].starts_with("POST /a HTTP/1.1\r\n")
            && seen[0].contains("x-forwarded-for: 127.0.0.1\r\n"),
        "{}",
        seen[0]
    );
}

#[test]
fn a_request_for_the_hyper_path_takes_over_the_connection_mid_way() {
    let up = Scripted::start(echo_body);
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    // Fast path, then a chunked upload (hyper path from here on), then more requests.
    c.write_all(b"POST /1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst")
        .unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\nfirst"));
    c.write_all(b"POST /2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\nPOST /3 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird").unwrap();
    let r = response(&mut c, false);
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nsecond"),
        "{r}"
    );
    assert!(response(&mut c, false).ends_with("\r\n\r\nthird"));
    let seen = up.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // hyper sent the chunked body on with a length it knew, or chunked: either way, whole.
    assert!(seen[1].starts_with("POST /2 HTTP/1.1\r\n"), "{}", seen[1]);
}

/// `respond` and `redirect` routes are answered on the fast path with what hyper sends for
/// them (compared, header by header, with a `fast_path = false` listener's answers; only the
/// `date` value differs), counted and logged as any request; the connection stays on the fast
/// path, so it parks when idle, which a connection hyper serves never does.
#[test]
fn routes_that_answer_themselves_are_answered_on_the_fast_path_as_hyper_would() {
    let up = Scripted::start(by_path);
    let routes = r#"
response_headers = { add = { x-listener = "on" }, set = { x-set = "listener" } }
[[listeners.web.routes]]
path = "/hello"
respond = { status = 200, body = "hi\n", headers = { x-made-by = "corelane", x-set = "route" } }
response_headers = { add = { x-route = "hello" } }
[[listeners.web.routes]]
path = "/empty"
respond = { status = 204 }
[[listeners.web.routes]]
path = "/teapot"
respond = { status = 418, body = "short and stout" }
[[listeners.web.routes]]
path_prefix = "/old/"
redirect = { location = "https://example.com/new", status = 308 }
"#;
    let requests: [&[u8]; 7] = [
        b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /empty HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /old/x HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HEAD /old/y HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ];
    // Each response's status line, its header lines sorted (the date's value blanked), body.
    let answers = |listen: SocketAddr| -> Vec<String> {
        let mut c = client(listen);
        requests
            .iter()
            .map(|req| {
                c.write_all(req).unwrap();
                let r = response(&mut c, req.starts_with(b"HEAD"));
                let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
                let mut lines: Vec<String> = head.lines().map(str::to_ascii_lowercase).collect();
                let status = lines.remove(0);
                for l in &mut lines {
                    if l.starts_with("date: ") {
                        *l = "date: (now)".to_owned();
                    }
                }
                lines.sort();
                format!("{status} | {} | {body}", lines.join(", "))
            })
            .collect()
    };
    let (p, fast) = proxy(up.addr, &format!("park_after = \"1s\"\n{routes}"));
    let (_h, hyper) = proxy(up.addr, &format!("fast_path = false\n{routes}"));
    let got = answers(fast);
    assert_eq!(got, answers(hyper));
    assert_eq!(
        got[0],
        "http/1.1 200 ok | content-length: 3, date: (now), x-listener: on, x-made-by: corelane, x-route: hello, x-set: listener | hi\n"
    );
    assert!(got[1].ends_with("x-set: listener | "), "{}", got[1]);
    assert!(
        got[2].starts_with("http/1.1 204 no content | date: (now), x-listener"),
        "{}",
        got[2]
    );
    assert!(got[4].starts_with("http/1.1 308 permanent redirect | content-length: 0, date: (now), location: https://example.com/new"), "{}", got[4]);
    // An empty answer to HEAD says no length (hyper's implicit zero is not for HEAD).
    assert!(
        got[5].starts_with("http/1.1 308 permanent redirect | date: (now), location"),
        "{}",
        got[5]
    );
    assert!(got[6].contains("connection: close"), "{}", got[6]);
    assert!(up.requests().is_empty(), "nothing went upstream");
    // Counted per route, as any request.
    let m = p.metrics();
    let series = |route: &str, class: &str| {
        metric(
            &m,
            &format!(
                "corelane_http_responses_total{{listener=\"web\",route=\"{route}\",class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(series("route0", "2xx"), Some(3.0));
    assert_eq!(series("route2", "4xx"), Some(1.0));
    assert_eq!(series("route3", "3xx"), Some(2.0));
    // Still on the fast path after them: an idle keep-alive connection parks, and its next
    // request, forwarded, is served.
    let mut c = client(fast);
    c.write_all(requests[0]).unwrap();
    assert!(response(&mut c, false).ends_with("hi\n"));
    let parked = || {
        metric(
            &p.metrics(),
            "corelane_listener_connections_parked{listener=\"web\"}",
        )
    };
    assert!(eventually(5, || parked() == Some(1.0)), "{:?}", parked());
    c.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(response(&mut c, false).ends_with("hello"));
    // Pipelined: a local answer between forwarded ones, its body skipped, all in order.
    c.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\nPOST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbodyGET /length HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\nhello"));
    assert!(response(&mut c, false).ends_with("\r\n\r\nhi\n"));
    assert!(response(&mut c, false).ends_with("\r\n\r\nhello"));
}

/// `Expect: 100-continue` with a body that fits the buffer: the fast path says `100
/// Continue` (once), reads the body, forwards the request whole; the connection stays on the
/// fast path (it parks when idle). A body sent at once with the head gets no `100`.
#[test]
fn expect_100_continue_is_answered_on_the_fast_path() {
    let up = Scripted::start(echo_body);
    let (p, listen) = proxy(up.addr, "park_after = \"1s\"\nheader_timeout = \"30s\"");
    let mut c = client(listen);
    c.write_all(
        b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"he").unwrap();
    thread::sleep(Duration::from_millis(100));
    c.write_all(b"llo").unwrap();
    let r = response(&mut c, false);
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nhello"),
        "{r}"
    );
    // Whole already: straight to the answer.
    c.write_all(
        b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    )
    .unwrap();
    let r = response(&mut c, false);
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nabc"),
        "{r}"
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].ends_with("\r\n\r\nhello"), "{}", seen[0]);
    let parked = || {
        metric(
            &p.metrics(),
            "corelane_listener_connections_parked{listener=\"web\"}",
        )
    };
    assert!(eventually(5, || parked() == Some(1.0)), "{:?}", parked());
}

/// Sends `bytes` over TLS (openssl s_client, ALPN http/1.1) and returns all that came back
/// before the proxy closed or `wait` passed.
fn over_tls(listen: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args([
            "s_client", "-quiet", "-ign_eof", "-alpn", "http/1.1", "-connect",
        ])
        .arg(listen.to_string())
        .args(["-servername", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl must be installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(bytes).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    thread::sleep(wait);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    String::from_utf8_lossy(&reader.join().unwrap()).into_owned()
}

#[test]
fn tls_clients_are_served_by_the_fast_path_and_handed_over_too() {
    let up = Scripted::start(|req| {
        let path = req.split(' ').nth(1).unwrap_or("").to_owned();
        let body = req.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        let text = format!("{path}:{body};");
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
            .into_bytes(),
            false,
        )
    });
    let tls = localhost_tls("web");
    let (admin, listen) = (addr(), addr());
    let cfg = base_toml(admin, 1)
        + &listener_toml("web", listen, "app", "protocol = \"http\"")
        + &tls
        + &cluster_toml("app", "round_robin", &[(up.addr, 1)], "");
    let _p = Proxy::start(&cfg, admin);
    // Two fast-path requests, a chunked one (hyper from there), one more, then close.
    let out = over_tls(
        listen,
        b"GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabcPOST /3 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\nGET /4 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    );
    let bodies: Vec<&str> = out
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/1.1").next().unwrap_or(""))
        .collect();
    assert_eq!(bodies, ["/1:;", "/2:abc;", "/3:xy;", "/4:;"], "{out}");
    let seen = up.requests();
    assert!(
        seen[0].contains("x-forwarded-proto: https\r\n"),
        "{}",
        seen[0]
    );
    // One upstream connection for the fast path's requests, one for hyper's (its own pool).
    assert_eq!(*up.connections.lock().unwrap(), 2);
}

#[test]
fn a_client_that_stops_reading_a_response_is_closed_when_idle() {
    let up = Scripted::start(|_| {
        let n = 8 << 20;
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
        r.resize(r.len() + n, b'x');
        (r, false)
    });
    let (_p, listen) = proxy(up.addr, "idle_timeout = \"1s\"");
    let mut c = client(listen);
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Nothing is read while the proxy's writes fill the socket buffers and stall.
    thread::sleep(Duration::from_secs(4));
    let mut got = Vec::new();
    let r = c.read_to_end(&mut got);
    assert!(
        r.is_ok()
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection must have been closed, not left open: {r:?}"
    );
    assert!(got.len() < 8 << 20, "the response was cut, not finished");
}

#[test]
fn an_error_answer_to_head_has_no_body_and_the_next_answer_follows() {
    let (_p, listen) = proxy(refused_addr(), "");
    let mut c = client(listen);
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let first = response(&mut c, true);
    assert!(
        first.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && first.ends_with("\r\n\r\n"),
        "{first}"
    );
    let second = response(&mut c, false);
    assert!(
        second.starts_with("HTTP/1.1 502 Bad Gateway\r\n")
            && second.ends_with("\r\n\r\n502 Bad Gateway\n"),
        "the second answer must start right after the first head: {second:?}"
    );
}

#[test]
fn a_connection_token_naming_content_length_does_not_desync_the_upstream() {
    let up = Scripted::start(|req| {
        let path = req.split(' ').nth(1).unwrap_or("").to_owned();
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            )
            .into_bytes(),
            false,
        )
    });
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    let smuggled = b"GET /admin HTTP/1.1\r\nHost: internal\r\nX-Ignore: ";
    let mut req = format!(
        "POST /public HTTP/1.1\r\nHost: t\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    req.extend_from_slice(smuggled);
    c.write_all(&req).unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\n/public"));
    c.write_all(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\n/next"));
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].ends_with("\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal\r\nX-Ignore: "),
        "the body stayed a body: {:?}",
        seen[0]
    );
    assert!(seen[1].starts_with("GET /next "), "{:?}", seen[1]);
}

#[test]
fn an_idle_keep_alive_client_is_parked_and_served_again() {
    let up = Scripted::start(by_path);
    let (p, listen) = proxy(up.addr, "park_after = \"1s\"\nheader_timeout = \"30s\"");
    let gauge = |name: &str| {
        metric(
            &p.metrics(),
            &format!("corelane_listener_{name}{{listener=\"web\"}}"),
        )
    };
    let mut c = client(listen);
    c.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(response(&mut c, false).ends_with("hello"));
    assert!(
        eventually(5, || gauge("connections_parked") == Some(1.0)),
        "parked after park_after: {:?}",
        gauge("connections_parked")
    );
    assert_eq!(
        gauge("connections_active"),
        Some(1.0),
        "a parked connection is still active"
    );
    // Served again on the same connection, with the upstream connection it had.
    c.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(response(&mut c, false).ends_with("hello"));
    assert_eq!(gauge("connections_parked"), Some(0.0));
    assert_eq!(*up.connections.lock().unwrap(), 1);
    // A parked client that goes away is forgotten.
    assert!(eventually(5, || gauge("connections_parked") == Some(1.0)));
    drop(c);
    assert!(
        eventually(5, || gauge("connections_active") == Some(0.0)),
        "{:?}",
        gauge("connections_active")
    );
}

#[test]
fn a_parked_client_still_ends_at_header_timeout_after_its_last_request() {
    let up = Scripted::start(by_path);
    let (_p, listen) = proxy(up.addr, "park_after = \"1s\"\nheader_timeout = \"3s\"");
    let mut c = client(listen);
    c.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(response(&mut c, false).ends_with("hello"));
    let t = std::time::Instant::now();
    let mut rest = Vec::new();
    // Parked after 1 s, closed by the lot at 3 s (within its 1 s sweep), not left open (the
    // read would time out at 10 s).
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = c.read_to_end(&mut rest);
    let took = t.elapsed();
    assert!(r.is_ok() && rest.is_empty(), "{r:?} {rest:?}");
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");
}

#[test]
fn an_idle_tls_client_is_parked_with_its_session_and_served_again() {
    use std::process::{Command, Stdio};
    let up = Scripted::start(by_path);
    let tls = localhost_tls("web");
    let (p, listen) = proxy(
        up.addr,
        &format!("park_after = \"1s\"\nheader_timeout = \"30s\"\n{tls}"),
    );
    let gauge = |name: &str| {
        metric(
            &p.metrics(),
            &format!("corelane_listener_{name}{{listener=\"web\"}}"),
        )
    };
    for version in ["-tls1_3", "-tls1_2"] {
        let mut child = Command::new("openssl")
            .args([
                "s_client", "-quiet", "-ign_eof", version, "-alpn", "http/1.1",
            ])
            .args(["-connect", &listen.to_string(), "-servername", "localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl must be installed");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        stdin
            .write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert!(
            eventually(5, || gauge("connections_parked") == Some(1.0)),
            "{version}: parked after park_after: {:?}",
            gauge("connections_parked")
        );
        assert_eq!(gauge("connections_active"), Some(1.0), "{version}");
        // Woken by the next request, on the same TLS session (the client would fail to
        // decrypt anything else), then closed on request.
        stdin
            .write_all(b"GET /length HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = reader.join().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            out.matches("HTTP/1.1 200 OK\r\n").count(),
            2,
            "{version}: {out}"
        );
        assert!(out.ends_with("hello"), "{version}: {out}");
        assert!(
            eventually(5, || gauge("connections_active") == Some(0.0)
                && gauge("connections_parked") == Some(0.0)),
            "{version}: {:?} {:?}",
            gauge("connections_active"),
            gauge("connections_parked")
        );
    }
    // Both clients' requests went over the one pooled upstream connection.
    assert_eq!(up.requests().len(), 4);
    assert_eq!(*up.connections.lock().unwrap(), 1);
}

#[test]
fn a_parked_tls_client_gets_a_close_notify_at_its_deadline() {
    let up = Scripted::start(by_path);
    let tls = localhost_tls("web");
    let (p, listen) = proxy(
        up.addr,
        &format!("park_after = \"500ms\"\nheader_timeout = \"2s\"\n{tls}"),
    );
    let mut tls = tls_connect(listen);
    tls.write_all(b"GET /length HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"hello") {
        let n = tls.read(&mut chunk).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let metrics = p.metrics();
    assert!(
        eventually(5, || metric(
            &p.metrics(),
            "corelane_listener_connections_parked{listener=\"web\"}"
        ) == Some(1.0)),
        "{metrics}"
    );
    // Closed by the lot at the header deadline, with a close_notify: rustls reads a clean
    // end (a close without one is an UnexpectedEof error).
    let mut rest = Vec::new();
    let r = tls.read_to_end(&mut rest);
    assert!(r.is_ok() && rest.is_empty(), "{r:?} {rest:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

/// An HTTP/2 request with curl (prior knowledge): exit success, the response head (lowercase)
/// and the body.
fn h2(listen: SocketAddr, method: &str, path: &str) -> (bool, String, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge", "-i"])
        .args(if method == "HEAD" {
            vec!["-I"]
        } else {
            vec!["-X", method]
        })
        .arg(format!("http://{listen}{path}"))
        .output()
        .expect("curl must be installed");
    let all = out.stdout;
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(all.len(), |i| i + 4);
    (
        out.status.success(),
        String::from_utf8_lossy(&all[..split]).to_ascii_lowercase(),
        all[split..].to_vec(),
    )
}

/// Bodies larger than the proxy's read buffer (32 KiB), so they stream rather than arrive
/// whole with their head.
fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 23) as u8).collect()
}

fn by_path_streamed(req: &str) -> (Vec<u8>, bool) {
    let path = req.split(' ').nth(1).unwrap_or("");
    match path {
        "/big-length" => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n".to_vec();
            r.extend(big(300_000));
            (r, false)
        }
        "/big-chunked" => {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in big(300_000).chunks(70_001) {
                r.extend(format!("{:x};e=1\r\n", piece.len()).into_bytes());
                r.extend(piece);
                r.extend(b"\r\n");
            }
            r.extend(b"0\r\nx-trailer: t\r\n\r\n");
            (r, false)
        }
        "/big-close" => {
            let mut r = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            r.extend(big(100_000));
            (r, true)
        }
        "/broken-chunked" => {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend(b"10000\r\n");
            r.extend(big(0x10000));
            r.extend(b"\r\nzz\r\n");
            (r, true)
        }
        "/trailers" => (
            b"HTTP/1.1 200 Fine Thanks\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-secret\r\nConnection: x-other\r\nX-Secret: 1\r\nX-Other: 2\r\n\r\n5\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n".to_vec(),
            false,
        ),
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n".to_vec(),
            true,
        ),
        "/short" => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
            r.extend(big(50_000));
            (r, true)
        }
        _ => by_path(req),
    }
}

/// HTTP/2 clients' requests without a body go over the fast path's pooled upstream sockets
/// (`h1::bridge`): every framing comes back decoded as HTTP/2 data, hop-by-hop headers
/// dropped, and the upstream socket is the one HTTP/1.1 clients use too.
#[test]
fn http2_requests_share_the_fast_paths_upstream_sockets() {
    let up = Scripted::start(by_path);
    let (_p, listen) = proxy(up.addr, "");
    let mut c = client(listen);
    write!(c, "GET /length HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(response(&mut c, false).ends_with("hello"));

    let (ok, head, body) = h2(listen, "GET", "/length");
    assert!(ok && head.starts_with("http/2 200"), "{head}");
    assert!(
        head.contains("content-length: 5\r\n") && head.contains("x-up: 1\r\n"),
        "{head}"
    );
    assert_eq!(body, b"hello");
    // Chunked: decoded (extensions go, as with hyper's client; trailers follow the data, and
    // curl -i prints them after the body); the upstream's contradicting Content-Length is not
    // passed on.
    let (ok, head, body) = h2(listen, "GET", "/chunked");
    assert!(ok && head.starts_with("http/2 200"), "{head}");
    assert!(
        !head.contains("content-length: 99") && !head.contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(
        body, b"hello worldx-trailer: t\r\n",
        "data, then the trailers"
    );
    let (ok, head, body) = h2(listen, "GET", "/interim");
    assert!(ok && head.starts_with("http/2 200"), "{head}");
    assert_eq!(body, b"ok");
    let (ok, head, body) = h2(listen, "GET", "/no-content");
    assert!(ok && head.starts_with("http/2 204"), "{head}");
    assert!(body.is_empty());
    let (ok, head, body) = h2(listen, "HEAD", "/any");
    assert!(ok && head.contains("content-length: 1234\r\n"), "{head}");
    assert!(body.is_empty());
    for path in ["/two-lengths", "/garbage"] {
        let (ok, head, _) = h2(listen, "GET", path);
        assert!(ok && head.starts_with("http/2 502"), "{path}: {head}");
    }
    let seen = up.requests();
    assert!(
        seen.iter().skip(1).all(|r| r.contains(" HTTP/1.1\r\n")
            && r.contains("host: 127.0.0.1:")
            && r.contains("x-forwarded-for: 127.0.0.1\r\n")
            && r.contains("x-forwarded-proto: http\r\n")),
        "{seen:?}"
    );
    // The broken heads closed theirs; until then one upstream connection served both paths.
    let (ok, _, body) = h2(listen, "GET", "/to-close");
    assert!(ok, "close-delimited");
    assert_eq!(body, b"until the end");
    assert_eq!(*up.connections.lock().unwrap(), 3, "{seen:?}");
}

/// Responses longer than a read stream through to HTTP/2 clients whole, each framing; a body
/// the upstream breaks or cuts short resets its stream (never a short body taken for whole),
/// and the proxy goes on serving.
#[test]
fn http2_clients_get_streamed_bodies_whole_or_a_reset() {
    let up = Scripted::start(by_path_streamed);
    let (_p, listen) = proxy(up.addr, "");
    let (ok, head, body) = h2(listen, "GET", "/big-length");
    assert!(ok && head.contains("content-length: 300000\r\n"), "{head}");
    assert!(
        body == big(300_000),
        "length body differs ({} bytes)",
        body.len()
    );
    let (ok, _, mut body) = h2(listen, "GET", "/big-chunked");
    assert!(ok);
    assert!(
        body.ends_with(b"x-trailer: t\r\n"),
        "trailers after the data"
    );
    body.truncate(body.len() - b"x-trailer: t\r\n".len());
    assert!(
        body == big(300_000),
        "chunked body differs ({} bytes)",
        body.len()
    );
    let (ok, _, body) = h2(listen, "GET", "/big-close");
    assert!(ok);
    assert!(
        body == big(100_000),
        "close-delimited body differs ({} bytes)",
        body.len()
    );
    // The Content-Length body came on one connection, kept for the chunked one.
    assert_eq!(*up.connections.lock().unwrap(), 1);
    for path in ["/broken-chunked", "/short"] {
        let (ok, _, body) = h2(listen, "GET", path);
        assert!(!ok, "{path}: the client must see the stream fail");
        assert!(body.len() < 100_000, "{path}");
    }
    // Trailers follow the data (curl -i prints them after the body); every `Connection`
    // header's names are dropped, as the hop-by-hop headers themselves.
    let (ok, head, body) = h2(listen, "GET", "/trailers");
    assert!(ok && head.starts_with("http/2 200"), "{head}");
    assert!(
        !head.contains("x-secret") && !head.contains("x-other"),
        "{head}"
    );
    assert_eq!(String::from_utf8_lossy(&body), "hellox-trailer: t\r\n");
    // Broken within the first read: nothing was sent yet, so it is a 502.
    let (ok, head, _) = h2(listen, "GET", "/bad-chunk");
    assert!(ok && head.starts_with("http/2 502"), "{head}");
    let (ok, _, body) = h2(listen, "GET", "/length");
    assert!(ok);
    assert_eq!(body, b"hello");
}

/// An HTTP/2 request with a small body of known length goes over the same pooled upstream
/// socket, head and body in one piece with the body's length; an empty one says length 0.
#[test]
fn http2_requests_with_small_bodies_take_the_pooled_sockets_too() {
    let up = Scripted::start(echo_body);
    let (_p, listen) = proxy(up.addr, "");
    let post = |data: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
            .args(["--data-binary", data])
            .arg(format!("http://{listen}/up"))
            .output()
            .expect("curl must be installed");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post("over h2"), "over h2");
    let big = "x".repeat(20_000);
    assert_eq!(post(&big), big);
    assert_eq!(post(""), "");
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[0].starts_with("POST /up HTTP/1.1\r\n")
            && seen[0].contains("content-length: 7\r\n")
            && seen[0].ends_with("\r\n\r\nover h2"),
        "{}",
        seen[0]
    );
    assert!(seen[1].contains("content-length: 20000\r\n"));
    assert!(seen[2].contains("content-length: 0\r\n"), "{}", seen[2]);
    assert_eq!(*up.connections.lock().unwrap(), 1, "one pooled socket");
}

/// Echoes each request's body back with its length.
fn echo_body(req: &str) -> (Vec<u8>, bool) {
    let body = req.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        false,
    )
}

/// An HTTP/2 client that declares a length, sends part of the body and resets its stream
/// with NO_ERROR (which hyper reports as the body's end) gets nothing sent upstream: a short
/// body is never passed on as a whole one.
#[test]
fn an_http2_body_cut_short_by_a_reset_is_not_forwarded() {
    let up = Scripted::start(echo_body);
    let (_p, listen) = proxy(up.addr, "");
    // A pooled upstream socket, so the cut request could go out at once.
    let (ok, _, _) = h2(listen, "GET", "/x");
    assert!(ok);
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
    // HPACK: :method POST, :scheme http, :path /, :authority t, content-length 100.
    let block = [
        0x83, 0x86, 0x84, 0x41, 0x01, b't', 0x5c, 0x03, b'1', b'0', b'0',
    ];
    out.extend(frame(1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0, 0, 1, &[b'x'; 50])); // DATA, half the body
    s.write_all(&out).unwrap();
    // The reset comes while the proxy waits for the rest.
    thread::sleep(Duration::from_millis(200));
    s.write_all(&frame(3, 0, 1, &0u32.to_be_bytes())).unwrap(); // RST_STREAM(NO_ERROR)
    thread::sleep(Duration::from_millis(500));
    assert_eq!(up.requests().len(), 1, "{:?}", up.requests());
    // The proxy goes on serving.
    let (ok, _, body) = h2(listen, "GET", "/x");
    assert!(ok);
    assert!(body.is_empty());
    assert_eq!(up.requests().len(), 2);
}

/// A handed-over HTTP/1.1 request with `Expect: 100-continue`: hyper answers 100, the body
/// goes upstream with its head and without the `Expect` (already answered); a body that then
/// never comes is answered 408 at `request_timeout`, and nothing reaches the upstream.
#[test]
fn expect_continue_is_answered_here_and_a_body_that_never_comes_is_408() {
    let up = Scripted::start(echo_body);
    let (_p, listen) = proxy(up.addr, "request_timeout = \"1s\"\n");
    let mut c = client(listen);
    c.write_all(b"PUT /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"hello").unwrap();
    assert!(response(&mut c, false).ends_with("\r\n\r\nhello"));
    let seen = up.requests();
    assert!(
        seen.len() == 1 && !seen[0].to_ascii_lowercase().contains("expect"),
        "{seen:?}"
    );
    c.write_all(b"PUT /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    c.read_exact(&mut interim).unwrap();
    let r = response(&mut c, false);
    assert!(r.starts_with("HTTP/1.1 408 "), "{r}");
    assert_eq!(
        up.requests().len(),
        1,
        "the second never reached the upstream"
    );
}
