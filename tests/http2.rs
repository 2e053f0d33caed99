//! corelane's own HTTP/2 server (`src/proto/http/h2/`) through the real binary: an independent
//! client (Python's `h2`, python3-h2) for multiplexing, flow control and HPACK state across
//! parking; and a raw socket for what no well-behaved client sends (bad prefaces and frames,
//! malformed requests, the CONTINUATION flood, the HPACK bomb, rapid resets, slow prefaces),
//! each answered in HTTP/2's own terms (GOAWAY or RST_STREAM with the RFC's code, or a 431)
//! while other clients go on being served. curl, nghttp and h2load over h2c are in
//! `tests/http.rs` and `tests/http_fast_path.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use common::echo::{EchoBackend, pattern};
use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A proxy with one HTTP listener (`listener_extra` added) forwarding to `eps`.
fn proxy(eps: &[SocketAddr], listener_extra: &str) -> (Proxy, SocketAddr) {
    let (admin, listen) = (addr(), addr());
    let eps: Vec<(SocketAddr, u32)> = eps.iter().map(|a| (*a, 1)).collect();
    let cfg = base_toml(admin, 1)
        + &listener_toml(
            "web",
            listen,
            "app",
            &format!("protocol = \"http\"\n{listener_extra}"),
        )
        + &cluster_toml("app", "round_robin", &eps, "");
    (Proxy::start(&cfg, admin), listen)
}

// Frame types and flags (RFC 9113 6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

// Error codes (RFC 9113 7).
const NO_ERROR: u32 = 0;
const PROTOCOL_ERROR: u32 = 1;
const FLOW_CONTROL_ERROR: u32 = 3;
const FRAME_SIZE_ERROR: u32 = 6;
const REFUSED_STREAM: u32 = 7;
const COMPRESSION_ERROR: u32 = 9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literals without indexing, new names, no Huffman (RFC 7541 6.2.2): the
/// simplest encoding, written here independently of corelane's encoder.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (n, v) in fields {
        b.push(0);
        for s in [n, v] {
            assert!(s.len() < 127);
            b.push(s.len() as u8);
            b.extend_from_slice(s.as_bytes());
        }
    }
    b
}

fn get(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "h2.test"),
        (":path", path),
    ]
}

/// A frame as read back.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// The `:status` of a response header block as corelane encodes it (the first field:
    /// a static index, or a literal with the static name `:status`), after the table size
    /// update to 0 that starts a connection's first block.
    fn status(&self) -> u16 {
        let b = if self.payload[0] == 0x20 {
            &self.payload[1..]
        } else {
            &self.payload[..]
        };
        match b[0] {
            0x88 => 200,
            0x89 => 204,
            0x8a => 206,
            0x8b => 304,
            0x8c => 400,
            0x8d => 404,
            0x8e => 500,
            0x08 => std::str::from_utf8(&b[2..5]).unwrap().parse().unwrap(),
            b => panic!("not a :status first: {b:#x}"),
        }
    }
}

/// A raw HTTP/2 client.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    /// The last read found the connection ended, closed or reset (rather than timing out).
    eof: bool,
}

impl Raw {
    /// Connects, sends the preface and an empty SETTINGS, and acks the server's.
    fn connect(listen: SocketAddr) -> Raw {
        let mut r = Raw::bare(listen);
        r.send(PREFACE);
        r.send(&frame(SETTINGS, 0, 0, &[]));
        r.send(&frame(SETTINGS, ACK, 0, &[]));
        r
    }

    fn bare(listen: SocketAddr) -> Raw {
        let s = TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw {
            s,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next frame, or None at the end of the connection (or after 5 s of silence).
    fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let n = (self.buf[0] as usize) << 16
                    | (self.buf[1] as usize) << 8
                    | self.buf[2] as usize;
                if self.buf.len() >= 9 + n {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + n].to_vec(),
                    };
                    self.buf.drain(..9 + n);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return None;
                }
                // A reset ends it too (corelane closed with input it had not read).
                Err(e) => {
                    use std::io::ErrorKind::{TimedOut, WouldBlock};
                    self.eof = !matches!(e.kind(), WouldBlock | TimedOut);
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until a frame `f` matches (returned), or the connection ends (None).
    fn until(&mut self, f: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(x) = self.next() {
            if f(&x) {
                return Some(x);
            }
        }
        None
    }

    /// The GOAWAY's error code, then the connection must end.
    fn goaway(&mut self) -> u32 {
        let g = self.until(|f| f.kind == GOAWAY).expect("a GOAWAY");
        assert!(self.closed(), "the connection ends after its GOAWAY");
        g.code()
    }

    /// Whether the connection ends (corelane closes it), reading what comes before; not a
    /// 5-second silence.
    fn closed(&mut self) -> bool {
        while self.next().is_some() {}
        self.eof
    }

    /// Reads until `n` responses have come, each a 200.
    fn all_answered(&mut self, n: usize) {
        let mut answered = 0;
        while answered < n {
            let f = self
                .next()
                .unwrap_or_else(|| panic!("{answered} of {n} answered"));
            if f.kind == HEADERS {
                assert_eq!(f.status(), 200);
                answered += 1;
            }
        }
    }

    /// The RST_STREAM code for `stream`.
    fn reset(&mut self, stream: u32) -> u32 {
        self.until(|f| f.kind == RST_STREAM && f.stream == stream)
            .unwrap_or_else(|| panic!("no RST_STREAM on stream {stream}"))
            .code()
    }

    /// A GET on `stream`: its status and body.
    fn get(&mut self, stream: u32, path: &str) -> (u16, Vec<u8>) {
        self.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &block(&get(path)),
        ));
        self.response(stream)
    }

    fn response(&mut self, stream: u32) -> (u16, Vec<u8>) {
        let head = self
            .until(|f| f.kind == HEADERS && f.stream == stream)
            .unwrap_or_else(|| panic!("no response on stream {stream}"));
        let status = head.status();
        let mut body = Vec::new();
        if head.flags & END_STREAM == 0 {
            loop {
                let f = self
                    .until(|f| f.stream == stream)
                    .expect("the rest of the response");
                if f.kind == DATA {
                    body.extend_from_slice(&f.payload);
                }
                if f.flags & END_STREAM != 0 || f.kind == RST_STREAM {
                    break;
                }
            }
        }
        (status, body)
    }
}

/// A normal client keeps getting answers.
fn still_serves(listen: SocketAddr) {
    let mut c = Raw::connect(listen);
    let (status, body) = c.get(1, "/plain");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("path: /plain"));
}

/// Runs Python's `h2` (python3-h2) with `code`, after a preamble that connects to `listen`:
/// `conn`, `sock`, `pump()` (one read's events), `get_all(paths)` (GETs, multiplexed: their
/// statuses and bodies) and `echo(data)` (a POST to /echo as the windows allow: what came back).
fn python(listen: SocketAddr, code: &str) -> String {
    python_over(listen, false, code)
}

/// [`python`], over TLS (ALPN `h2`, the test certificate not verified) when `tls`.
fn python_over(listen: SocketAddr, tls: bool, code: &str) -> String {
    let preamble = format!(
        r#"
import socket, ssl, sys, time
import h2.connection, h2.config, h2.events, h2.settings
sock = socket.create_connection(("127.0.0.1", {port}))
if {tls}:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(sock, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
sock.settimeout(5)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
def flush():
    sock.sendall(conn.data_to_send())
def pump():
    data = sock.recv(65536)
    if not data:
        raise SystemExit("connection closed")
    ev = conn.receive_data(data)
    flush()
    return ev
def get_all(paths, extra=()):
    ids = []
    for p in paths:
        i = conn.get_next_available_stream_id()
        conn.send_headers(i, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test"), (":path", p), ("user-agent", "python-h2-test"), ("x-long-header", "v" * 60)] + list(extra), end_stream=True)
        ids.append(i)
    flush()
    status, body, open_ = {{}}, {{}}, set(ids)
    while open_:
        for e in pump():
            if isinstance(e, h2.events.ResponseReceived):
                status[e.stream_id] = dict(e.headers)[":status"]
            elif isinstance(e, h2.events.DataReceived):
                body.setdefault(e.stream_id, b"")
                body[e.stream_id] += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                open_.discard(e.stream_id)
            elif isinstance(e, h2.events.ConnectionTerminated):
                raise SystemExit("GOAWAY %r" % e)
        flush()
    return [(status.get(i), body.get(i, b"")) for i in ids]
def echo(up):
    """POSTs `up` to /echo as the windows allow; what came back."""
    i = conn.get_next_available_stream_id()
    conn.send_headers(i, [(":method", "POST"), (":scheme", "http"), (":authority", "h2.test"), (":path", "/echo")])
    flush()
    sent, back, done = 0, b"", False
    while not done:
        while sent < len(up):
            n = min(conn.local_flow_control_window(i), conn.max_outbound_frame_size, len(up) - sent)
            if n <= 0:
                break
            conn.send_data(i, up[sent:sent + n], end_stream=(sent + n == len(up)))
            sent += n
        flush()
        for e in pump():
            if isinstance(e, h2.events.DataReceived):
                back += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, i)
            elif isinstance(e, h2.events.StreamEnded):
                done = True
            elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit(repr(e))
        flush()
    return back
conn.initiate_connection()
flush()
"#,
        port = listen.port(),
        tls = if tls { "True" } else { "False" }
    );
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(preamble + code)
        .output()
        .expect("python3 with python3-h2 must be installed");
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python's h2 (an independent implementation, with HPACK's dynamic table and Huffman coding
/// on) multiplexes requests; an idle connection is parked, and after it wakes its requests
/// still decode: the HPACK table waited with it. Plain (h2c) and over TLS (ALPN h2, the TLS
/// session parked with it).
#[test]
fn an_independent_client_multiplexes_and_its_hpack_table_survives_parking() {
    for tls in [false, true] {
        let a = EchoBackend::start("a");
        let mut extra = "park_after = \"1s\"\n".to_owned();
        if tls {
            extra += &localhost_tls("web");
        }
        let (p, listen) = proxy(&[a.addr], &extra);
        let gauge = || {
            metric(
                &p.metrics(),
                "corelane_listener_connections_parked{listener=\"web\"}",
            )
        };
        let watcher = thread::spawn({
            let admin = p.admin;
            move || {
                // Parked while the client sleeps between its two batches.
                eventually(8, || {
                    let (_, text) = http(admin, "GET", "/metrics");
                    metric(
                        &text,
                        "corelane_listener_connections_parked{listener=\"web\"}",
                    ) == Some(1.0)
                })
            }
        });
        let out = python_over(
            listen,
            tls,
            r#"
first = get_all(["/a%d" % i for i in range(20)])
assert all(s == "200" for s, _ in first), first
assert all(b"path: /a" in b for _, b in first), first
time.sleep(3)
# The same fields again: the encoder refers to the table entries it made before.
second = get_all(["/b%d" % i for i in range(20)], [("cookie", "a=1"), ("cookie", "b=2")])
assert all(s == "200" for s, _ in second), second
assert all(b"cookie: a=1; b=2" in b for _, b in second), second[0]
print("ok", len(first) + len(second))
"#,
        );
        assert_eq!(out.trim(), "ok 40", "tls: {tls}");
        assert!(watcher.join().unwrap(), "never parked (tls: {tls})");
        assert_eq!(gauge(), Some(0.0), "it left the lot when it woke");
    }
}

/// The client's flow control is honoured: with a 1,000-byte window and its own updates, a
/// 200 KB response arrives whole, in frames no larger than the window; and an upload three
/// times the connection window arrives whole, so corelane gave the window back as it went.
#[test]
fn flow_control_both_ways() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    let out = python(
        listen,
        r#"
conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
flush()
i = conn.get_next_available_stream_id()
conn.send_headers(i, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test"), (":path", "/big?n=200000")], end_stream=True)
flush()
body, largest, done = b"", 0, False
while not done:
    for e in pump():
        if isinstance(e, h2.events.DataReceived):
            body += e.data
            largest = max(largest, len(e.data))
            conn.acknowledge_received_data(e.flow_controlled_length, i)
        elif isinstance(e, h2.events.StreamEnded):
            done = True
        elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
            raise SystemExit(repr(e))
    flush()
assert body == bytes(x % 251 for x in range(200000)), len(body)
assert largest <= 1000, largest
# Upload 3 MiB to /echo, as the windows allow.
up = bytes(x % 251 for x in range(3 << 20))
assert echo(up) == up
print("ok")
"#,
    );
    assert_eq!(out.trim(), "ok");
}

/// A gRPC-shaped exchange (`te: trailers`, a body of unknown length): the request streams
/// while its response streams back (each message echoed before the next is sent: full
/// duplex, nothing waits for the whole body), and a response's trailers arrive as a
/// trailers frame after its data. To an HTTP/1.1 upstream and to an HTTP/2 one.
#[test]
fn grpc_shaped_streams_are_full_duplex_with_trailers() {
    let a = EchoBackend::start("a");
    for upstream in ["h1", "h2"] {
        let (admin, listen) = (addr(), addr());
        let cfg = base_toml(admin, 1)
            + &listener_toml("web", listen, "app", "protocol = \"http\"\n")
            + &cluster_toml(
                "app",
                "round_robin",
                &[(a.addr, 1)],
                &format!(
                    "upstream_protocol = \"{}\"\n",
                    if upstream == "h1" { "http1" } else { "h2" }
                ),
            );
        let _p = Proxy::start(&cfg, admin);
        let out = python(
            listen,
            r#"
grpc = [("content-type", "application/grpc"), ("te", "trailers")]
i = conn.get_next_available_stream_id()
conn.send_headers(i, [(":method", "POST"), (":scheme", "http"), (":authority", "h2.test"), (":path", "/echo")] + grpc)
back, ended = b"", False
for n in range(1, 6):
    msg = b"message-%d;" % n
    conn.send_data(i, msg, end_stream=(n == 5))
    flush()
    # Each message comes back before the next is sent.
    while not back.endswith(msg):
        for e in pump():
            if isinstance(e, h2.events.DataReceived):
                back += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, i)
            elif isinstance(e, h2.events.StreamEnded):
                ended = True
            elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit(repr(e))
        flush()
while not ended:
    for e in pump():
        if isinstance(e, h2.events.StreamEnded):
            ended = True
assert back == b"".join(b"message-%d;" % n for n in range(1, 6)), back
i = conn.get_next_available_stream_id()
conn.send_headers(i, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test"), (":path", "/trailers")] + grpc, end_stream=True)
flush()
seen, ended = [], False
while not ended:
    for e in pump():
        if isinstance(e, h2.events.ResponseReceived):
            seen.append("head " + dict(e.headers)[":status"])
        elif isinstance(e, h2.events.DataReceived):
            seen.append("data " + e.data.decode())
            conn.acknowledge_received_data(e.flow_controlled_length, i)
        elif isinstance(e, h2.events.TrailersReceived):
            seen.append("trailers " + ",".join("%s=%s" % (k, v) for k, v in e.headers))
        elif isinstance(e, h2.events.StreamEnded):
            ended = True
        elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
            raise SystemExit(repr(e))
    flush()
print(" | ".join(seen))
"#,
        );
        assert_eq!(
            out.trim(),
            "head 200 | data data | trailers x-sum=42",
            "to an {upstream} upstream"
        );
    }
}

/// WebSocket over HTTP/2 (RFC 8441): corelane announces extended CONNECT; a CONNECT with
/// `:protocol` websocket reaches a real WebSocket server (Python's `websockets`) as an
/// HTTP/1.1 upgrade, the client gets 200, and WebSocket frames go both ways as DATA (a text
/// message, one of 100 KB in pieces the windows allow, a close that ends the stream).
/// Another `:protocol` is 501, an answer that is a 2xx without the switch 502, and a cluster
/// that speaks HTTP/2 upstream cannot take it (501).
#[test]
fn websocket_over_http2_reaches_an_http1_websocket_server() {
    let ws = common::ws::WsEcho::start();
    let plain =
        "[[listeners.web.routes]]\npath = \"/plain\"\nrespond = { status = 200, body = \"no\" }\n";
    let (_p, listen) = proxy(&[ws.addr], plain);
    let out = python(
        listen,
        r#"
import os
while conn.remote_settings.enable_connect_protocol != 1:
    pump()
def ws_frame(payload, op=1):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
def connect(protocol, path="/chat"):
    i = conn.get_next_available_stream_id()
    conn.send_headers(i, [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"), (":path", path), (":authority", "ws.test"), ("sec-websocket-version", "13"), ("origin", "http://ws.test")])
    flush()
    while True:
        for e in pump():
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == i:
                return i, dict(e.headers)
            if isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit(repr(e))
i, head = connect("websocket")
assert head[":status"] == "200", head
assert "sec-websocket-accept" not in head and "upgrade" not in head, head
got, ended = b"", False
def send(payload, op=1):
    data = ws_frame(payload, op)
    while data:
        n = min(conn.local_flow_control_window(i), conn.max_outbound_frame_size, len(data))
        if n > 0:
            conn.send_data(i, data[:n])
            data = data[n:]
            flush()
        else:
            read()
def read():
    global got, ended
    for e in pump():
        if isinstance(e, h2.events.DataReceived) and e.stream_id == i:
            got += e.data
            conn.acknowledge_received_data(e.flow_controlled_length, i)
        elif isinstance(e, h2.events.StreamEnded) and e.stream_id == i:
            ended = True
        elif isinstance(e, h2.events.StreamReset) and ended and e.error_code == 0:
            # Done: the client need not send the rest of its side (RFC 9113 8.1).
            pass
        elif isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
            raise SystemExit(repr(e))
    flush()
def message():
    """One whole server frame (unmasked): its opcode and payload."""
    global got
    while True:
        if len(got) >= 2:
            n, at = got[1] & 0x7f, 2
            if n == 126:
                n, at = int.from_bytes(got[2:4], "big"), 4
            elif n == 127:
                n, at = int.from_bytes(got[2:10], "big"), 10
            if len(got) >= at + n:
                op, payload, got = got[0] & 0x0f, got[at:at + n], got[at + n:]
                return op, payload
        if ended:
            raise SystemExit("stream ended mid-frame")
        read()
send(b"hello over h2")
assert message() == (1, b"hello over h2")
big = bytes(x % 251 for x in range(100000))
send(big, op=2)
assert message() == (2, big)
send(b"\x03\xe8", op=8)
assert message()[0] == 8
while not ended:
    read()
j, head = connect("connect-udp")
assert head[":status"] == "501", head
# A 2xx that is not a switch would read as the tunnel's success: 502.
j, head = connect("websocket", "/plain")
assert head[":status"] == "502", head
print("ok")
"#,
    );
    assert_eq!(out.trim(), "ok");
    // An HTTP/2 upstream cannot take an upgrade.
    let (_q, listen) = {
        let (admin, listen) = (addr(), addr());
        let cfg = base_toml(admin, 1)
            + &listener_toml("web", listen, "app", "protocol = \"http\"\n")
            + &cluster_toml(
                "app",
                "round_robin",
                &[(ws.addr, 1)],
                "upstream_protocol = \"h2\"\n",
            );
        (Proxy::start(&cfg, admin), listen)
    };
    let mut c = Raw::connect(listen);
    let connect = block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/chat"),
        (":authority", "ws.test"),
    ]);
    c.send(&frame(HEADERS, END_HEADERS, 1, &connect));
    assert_eq!(c.response(1).0, 501);
}

/// An upstream that switches, says "bye" and half-closes (FIN): the client gets "bye" and
/// END_STREAM with no reset, and what it sends afterwards still reaches the upstream, up to
/// its own END_STREAM (RFC 8441 4: an orderly close is END_STREAM, each way). A tunnel whose
/// client goes away (its connection closes) after ending its side, while the upstream is
/// silent, ends at once, not at `idle_timeout`.
#[test]
fn websocket_over_http2_half_closes_each_way() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
                s.write_all(switch).unwrap();
                if n == 0 {
                    s.write_all(b"bye").unwrap();
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                }
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
                let _ = tx.send((String::from_utf8_lossy(&head).into_owned(), rest));
                if n > 0 {
                    // Silent, and not closing.
                    thread::sleep(Duration::from_secs(30));
                }
            });
        }
    });
    let (p, listen) = proxy(&[up], "");
    let connect = block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/chat"),
        (":authority", "ws.test"),
        ("sec-websocket-version", "13"),
    ]);
    let mut c = Raw::connect(listen);
    c.send(&frame(HEADERS, END_HEADERS, 1, &connect));
    assert_eq!(c.response(1), (200, b"bye".to_vec()));
    c.send(&frame(DATA, 0, 1, b"after the upstream's end"));
    c.send(&frame(DATA, END_STREAM, 1, b""));
    let (head, rest) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("get /chat http/1.1\r\n"), "{head}");
    for line in [
        "upgrade: websocket",
        "connection: upgrade",
        "sec-websocket-key: ",
        "host: ws.test",
    ] {
        assert!(head.contains(line), "{line} in {head}");
    }
    assert_eq!(rest, b"after the upstream's end");
    // No reset on stream 1: the next frame for it, if any, is not RST_STREAM.
    c.send(&frame(PING, 0, 0, b"12345678"));
    let f = c
        .until(|f| f.kind == PING || (f.kind == RST_STREAM && f.stream == 1))
        .unwrap();
    assert_eq!(f.kind, PING, "stream 1 was reset");

    // The client ends its side and leaves; the upstream says nothing.
    let active = || {
        metric(
            &p.metrics(),
            "corelane_cluster_connections_active{cluster=\"app\"}",
        )
    };
    let mut c = Raw::connect(listen);
    c.send(&frame(HEADERS, END_HEADERS, 1, &connect));
    let head = c.until(|f| f.kind == HEADERS && f.stream == 1).unwrap();
    assert_eq!(head.status(), 200);
    c.send(&frame(DATA, END_STREAM, 1, b"last words"));
    let (_, rest) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(rest, b"last words");
    assert_eq!(active(), Some(1.0));
    drop(c);
    assert!(eventually(5, || active() == Some(0.0)), "{:?}", active());
}

/// A WebSocket stream the client resets closes its upstream connection, while the HTTP/2
/// connection goes on.
#[test]
fn a_reset_websocket_stream_closes_its_upstream_connection() {
    let ws = common::ws::WsEcho::start();
    let (p, listen) = proxy(&[ws.addr], "");
    let active = || {
        metric(
            &p.metrics(),
            "corelane_cluster_connections_active{cluster=\"app\"}",
        )
    };
    let mut c = Raw::connect(listen);
    let connect = block(&[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/chat"),
        (":authority", "ws.test"),
        ("sec-websocket-version", "13"),
    ]);
    c.send(&frame(HEADERS, END_HEADERS, 1, &connect));
    let head = c.until(|f| f.kind == HEADERS && f.stream == 1).unwrap();
    assert_eq!(head.status(), 200);
    // A masked text frame, "hello", and its echo (unmasked).
    let mask = [1u8, 2, 3, 4];
    let mut msg = vec![0x81, 0x85];
    msg.extend(mask);
    msg.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    c.send(&frame(DATA, 0, 1, &msg));
    let echo = c.until(|f| f.kind == DATA && f.stream == 1).unwrap();
    assert_eq!(echo.payload, b"\x81\x05hello");
    assert_eq!(active(), Some(1.0));
    c.send(&frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    assert!(eventually(5, || active() == Some(0.0)), "{:?}", active());
    // The connection still serves.
    c.send(&frame(HEADERS, END_HEADERS, 3, &connect));
    let head = c.until(|f| f.kind == HEADERS && f.stream == 3).unwrap();
    assert_eq!(head.status(), 200);
}

#[test]
fn bad_prefaces_and_frames_are_connection_errors() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    // Not the preface after its first line.
    let mut c = Raw::bare(listen);
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n");
    assert_eq!(c.goaway(), PROTOCOL_ERROR);
    // A first frame other than SETTINGS.
    let mut c = Raw::bare(listen);
    c.send(PREFACE);
    c.send(&frame(PING, 0, 0, &[0; 8]));
    assert_eq!(c.goaway(), PROTOCOL_ERROR);
    let cases: Vec<(Vec<u8>, u32)> = vec![
        // Larger than the 16 KiB corelane allows.
        (frame(DATA, 0, 1, &vec![0; 16_385]), FRAME_SIZE_ERROR),
        // A PING that is not 8 bytes; a SETTINGS not a multiple of 6.
        (frame(PING, 0, 0, &[0; 7]), FRAME_SIZE_ERROR),
        (frame(SETTINGS, 0, 0, &[0; 5]), FRAME_SIZE_ERROR),
        // ENABLE_PUSH = 2; a window over 2^31-1; MAX_FRAME_SIZE too small.
        (frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), PROTOCOL_ERROR),
        (
            frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            FLOW_CONTROL_ERROR,
        ),
        (
            frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0x10, 0]),
            PROTOCOL_ERROR,
        ),
        // The connection window past 2^31-1.
        (
            frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()),
            FLOW_CONTROL_ERROR,
        ),
        (
            frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()),
            PROTOCOL_ERROR,
        ),
        // Frames for streams that were never opened; an even stream id; push from a client.
        (frame(DATA, 0, 1, b"x"), PROTOCOL_ERROR),
        (frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()), PROTOCOL_ERROR),
        (
            frame(HEADERS, END_HEADERS | END_STREAM, 2, &block(&get("/"))),
            PROTOCOL_ERROR,
        ),
        (frame(5, END_HEADERS, 1, &[0, 0, 0, 2]), PROTOCOL_ERROR),
        // A CONTINUATION with no HEADERS before it; a header block that does not decode.
        (frame(CONTINUATION, END_HEADERS, 1, &[0x82]), PROTOCOL_ERROR),
        (frame(HEADERS, END_HEADERS, 1, &[0xbe]), COMPRESSION_ERROR),
        (
            frame(HEADERS, END_HEADERS, 1, &[0x00, 0x05, b'a']),
            COMPRESSION_ERROR,
        ),
    ];
    for (bytes, code) in cases {
        let mut c = Raw::connect(listen);
        c.send(&bytes);
        assert_eq!(c.goaway(), code, "{:?}", &bytes[..9]);
    }
    // A header block interrupted by another frame.
    let mut c = Raw::connect(listen);
    c.send(&frame(HEADERS, 0, 1, &block(&get("/"))));
    c.send(&frame(PING, 0, 0, &[0; 8]));
    assert_eq!(c.goaway(), PROTOCOL_ERROR);
    still_serves(listen);
}

#[test]
fn pings_and_settings_are_answered_and_unknown_frames_ignored() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    let server_settings = c
        .until(|f| f.kind == SETTINGS && f.flags & ACK == 0)
        .unwrap();
    // ENABLE_PUSH 0 and MAX_CONCURRENT_STREAMS 128 are announced.
    assert!(
        server_settings
            .payload
            .chunks(6)
            .any(|s| s == [0, 2, 0, 0, 0, 0])
    );
    assert!(
        server_settings
            .payload
            .chunks(6)
            .any(|s| s == [0, 3, 0, 0, 0, 128])
    );
    c.until(|f| f.kind == SETTINGS && f.flags & ACK != 0)
        .expect("our SETTINGS acked");
    c.send(&frame(PING, 0, 0, b"12345678"));
    let pong = c.until(|f| f.kind == PING).unwrap();
    assert_eq!((pong.flags, &pong.payload[..]), (ACK, &b"12345678"[..]));
    c.send(&frame(0x42, 0xff, 0, b"whatever"));
    c.send(&frame(PRIORITY, 0, 9, &[0, 0, 0, 1, 16]));
    let (status, _) = c.get(1, "/after-unknown-frames");
    assert_eq!(status, 200);
}

/// Requests HTTP/2 calls malformed are reset (PROTOCOL_ERROR) before they reach the upstream;
/// the connection goes on.
#[test]
fn malformed_requests_are_reset_and_never_forwarded() {
    let a = EchoBackend::start("a");
    let (p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f = get("/bad");
        f.extend_from_slice(extra);
        block(&f)
    };
    let bad: Vec<Vec<u8>> = vec![
        with(&[("Upper-Case", "x")]),
        with(&[("connection", "close")]),
        with(&[("transfer-encoding", "chunked")]),
        with(&[("te", "gzip")]),
        with(&[("x-bad", "a\r\nb")]),
        with(&[(":path", "/again")]),
        block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "h2.test"),
        ]),
        block(&[
            ("x-first", "1"),
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
        ]),
    ];
    let mut id = 1;
    for b in &bad {
        c.send(&frame(HEADERS, END_HEADERS | END_STREAM, id, b));
        assert_eq!(c.reset(id), PROTOCOL_ERROR, "stream {id}");
        id += 2;
    }
    // A body longer and shorter than its content-length.
    for body in [&b"toolong"[..], b"ab"] {
        let mut f = get("/echo");
        f[0] = (":method", "POST");
        f.push(("content-length", "4"));
        c.send(&frame(HEADERS, END_HEADERS, id, &block(&f)));
        c.send(&frame(DATA, END_STREAM, id, body));
        assert_eq!(c.reset(id), PROTOCOL_ERROR, "body {body:?}");
        id += 2;
    }
    // Self-dependency in a PRIORITY frame.
    c.send(&frame(PRIORITY, 0, id, &[0, 0, 0, id as u8, 16]));
    assert_eq!(c.reset(id), PROTOCOL_ERROR);
    id += 2;
    // CONNECT (and so RFC 8441's extended CONNECT) is not served: 501.
    let connect = block(&[(":method", "CONNECT"), (":authority", "h2.test:443")]);
    c.send(&frame(HEADERS, END_HEADERS, id, &connect));
    assert_eq!(c.response(id).0, 501);
    id += 2;
    let (status, _) = c.get(id, "/good");
    assert_eq!(status, 200);
    assert_eq!(
        a.requests.load(Ordering::SeqCst),
        1,
        "only the good request went on"
    );
    // The malformed requests (not the streams that went wrong later, after they were routed)
    // are counted for the listener, as its refused requests.
    let m = p.metrics();
    assert_eq!(refused_requests(&m), [bad.len() as f64, 0.0, 0.0, 1.0]);
    // Each reset corelane sent (the malformed requests, the bodies that broke their length,
    // the self-dependent stream) has an error code.
    let series = "corelane_http2_resets_total{listener=\"web\",by=\"corelane\"}";
    assert_eq!(metric(&m, series), Some((bad.len() + 3) as f64));
}

/// CVE-2024-27316: CONTINUATION frames without end. The header block is bounded and the
/// connection is told ENHANCE_YOUR_CALM; others are served meanwhile.
#[test]
fn a_continuation_flood_is_cut() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "max_header_size = 8192\n");
    let mut c = Raw::connect(listen);
    c.send(&frame(HEADERS, 0, 1, &block(&get("/"))));
    // 8 KiB of fields allow a block of 16 KiB: 200 frames of 110 bytes pass it. A write may
    // fail once corelane has closed the connection.
    let filler = frame(
        CONTINUATION,
        0,
        1,
        &block(&[("x-filler", &"y".repeat(100))]),
    );
    for i in 0..200 {
        if c.s.write_all(&filler).is_err() {
            break;
        }
        if i == 100 {
            still_serves(listen);
        }
    }
    assert_eq!(c.goaway(), ENHANCE_YOUR_CALM);
    still_serves(listen);
}

/// The HPACK bomb: one large entry in the dynamic table, then a block naming it by index a
/// thousand times (1 KB of input for 4 MB of fields). The list is counted, not kept: 431, and
/// the connection (its table in step) goes on.
#[test]
fn an_hpack_bomb_is_431_and_the_connection_goes_on() {
    let a = EchoBackend::start("a");
    let (p, listen) = proxy(&[a.addr], "max_header_size = 16384\n");
    let mut c = Raw::connect(listen);
    // Literal with incremental indexing (0x40), new name: x-big, a 4,000-byte value.
    let mut b = block(&get("/first"));
    b.push(0x40);
    b.push(5);
    b.extend_from_slice(b"x-big");
    let value = "z".repeat(4000);
    b.push(0x7f);
    let mut rest = value.len() - 127;
    while rest >= 128 {
        b.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    b.push(rest as u8);
    b.extend_from_slice(value.as_bytes());
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
    let (status, _) = c.response(1);
    assert_eq!(status, 200);
    // Index 62 is that entry.
    let mut bomb = block(&get("/bomb"));
    bomb.extend(std::iter::repeat_n(0xbe, 1000));
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &bomb));
    let (status, _) = c.response(3);
    assert_eq!(status, 431);
    let mut again = block(&get("/again"));
    again.push(0xbe);
    c.send(&frame(HEADERS, END_HEADERS | END_STREAM, 5, &again));
    let (status, body) = c.response(5);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(&format!("x-big: {value}")));
    assert_eq!(a.requests.load(Ordering::SeqCst), 2);
    let series = "corelane_http_refused_requests_total{listener=\"web\",status=\"431\"}";
    assert_eq!(metric(&p.metrics(), series), Some(1.0));
}

/// CVE-2023-44487: streams opened and reset at once, over and over. corelane says
/// ENHANCE_YOUR_CALM once its reset budget is spent; other clients are served throughout.
#[test]
fn rapid_resets_end_the_connection() {
    let a = EchoBackend::start("a");
    let (p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    let mut batch = Vec::new();
    let mut id = 1u32;
    for _ in 0..2000 {
        batch.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &block(&get("/slow?ms=1000")),
        ));
        batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        id += 2;
    }
    let _ = c.s.write_all(&batch);
    assert_eq!(c.goaway(), ENHANCE_YOUR_CALM);
    still_serves(listen);
    // What an operator sees: the resets, and the connection ended for them.
    let m = p.metrics();
    let get = |series: &str| metric(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
    let resets = get("corelane_http2_resets_total{listener=\"web\",by=\"client\"}");
    assert!((200.0..=2000.0).contains(&resets), "{resets}");
    assert_eq!(
        get("corelane_http2_connection_errors_total{listener=\"web\",error=\"ENHANCE_YOUR_CALM\"}"),
        1.0
    );
    assert_eq!(
        get("corelane_http2_connection_errors_total{listener=\"web\",error=\"PROTOCOL_ERROR\"}"),
        0.0
    );
}

/// More streams than `SETTINGS_MAX_CONCURRENT_STREAMS` (128): the extra one is refused
/// (REFUSED_STREAM, which a client may retry), the others are answered.
#[test]
fn streams_beyond_the_limit_are_refused() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    let mut all = Vec::new();
    for i in 0..129u32 {
        all.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1 + 2 * i,
            &block(&get("/slow?ms=500")),
        ));
    }
    c.send(&all);
    let refused = 1 + 2 * 128;
    assert_eq!(c.reset(refused), REFUSED_STREAM);
    c.all_answered(128);
}

/// The `http2_*` keys: what corelane's SETTINGS and first WINDOW_UPDATE say, and the stream
/// limit enforced; the same from hyper's server on a listener with `fast_path = false`.
#[test]
fn http2_limits_come_from_the_listener() {
    let a = EchoBackend::start("a");
    for fast_path in [true, false] {
        let keys = format!(
            "fast_path = {fast_path}\nhttp2_max_concurrent_streams = 3\nhttp2_stream_window = 100000\nhttp2_connection_window = 200000\n"
        );
        let (_p, listen) = proxy(&[a.addr], &keys);
        let mut c = Raw::bare(listen);
        c.send(PREFACE);
        c.send(&frame(SETTINGS, 0, 0, &[]));
        let settings = c
            .until(|f| f.kind == SETTINGS && f.flags & ACK == 0)
            .expect("SETTINGS");
        let said: Vec<(u16, u32)> = settings
            .payload
            .chunks(6)
            .map(|e| {
                let id = u16::from_be_bytes([e[0], e[1]]);
                (id, u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
            })
            .collect();
        // SETTINGS_MAX_CONCURRENT_STREAMS (3) and SETTINGS_INITIAL_WINDOW_SIZE (4).
        assert!(said.contains(&(3, 3)), "fast_path {fast_path}: {said:?}");
        assert!(
            said.contains(&(4, 100_000)),
            "fast_path {fast_path}: {said:?}"
        );
        let update = c
            .until(|f| f.kind == WINDOW_UPDATE && f.stream == 0)
            .expect("the connection's WINDOW_UPDATE");
        let increment = u32::from_be_bytes(update.payload[..4].try_into().unwrap());
        assert_eq!(increment, 200_000 - 65_535, "fast_path {fast_path}");
        c.send(&frame(SETTINGS, ACK, 0, &[]));
        let mut all = Vec::new();
        for id in [1, 3, 5, 7] {
            let slow = block(&get("/slow?ms=300"));
            all.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &slow));
        }
        c.send(&all);
        assert_eq!(c.reset(7), REFUSED_STREAM, "fast_path {fast_path}");
        c.all_answered(3);
    }
}

/// Slow prefaces (slowloris over HTTP/2): a connection that has not finished its preface and
/// first SETTINGS, or a header block, within `header_timeout` is closed; a normal client is
/// served meanwhile.
#[test]
fn slow_prefaces_and_header_blocks_are_closed() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "header_timeout = \"1s\"\n");
    let mut slow: Vec<Raw> = (0..200)
        .map(|_| {
            let mut r = Raw::bare(listen);
            r.send(&PREFACE[..20]);
            r
        })
        .collect();
    // The preface's first line went through the HTTP/1.1 path, which handed the connection on.
    let mut mid_block = Raw::connect(listen);
    mid_block.send(&frame(HEADERS, 0, 1, &block(&get("/"))));
    // Part of a frame, and no more.
    let mut mid_frame = Raw::connect(listen);
    mid_frame.send(&frame(HEADERS, END_HEADERS, 1, &vec![0x82; 3000])[..100]);
    still_serves(listen);
    // Five finish in time, and are served.
    for (i, r) in slow.iter_mut().take(5).enumerate() {
        r.send(&PREFACE[20..]);
        r.send(&frame(SETTINGS, 0, 0, &[]));
        let (status, _) = r.get(1, &format!("/late{i}"));
        assert_eq!(status, 200);
    }
    assert_eq!(mid_block.goaway(), NO_ERROR);
    assert_eq!(mid_frame.goaway(), NO_ERROR);
    for r in &mut slow[5..] {
        assert!(r.closed(), "a slow preface is closed");
    }
    still_serves(listen);
}

/// A client that says GOAWAY keeps its open stream, and the connection then closes; a
/// draining worker says GOAWAY (NO_ERROR) to its HTTP/2 clients and lets their streams end.
#[test]
fn goaway_either_way_lets_open_streams_finish() {
    let a = EchoBackend::start("a");
    let (mut p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    c.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&get("/slow?ms=300")),
    ));
    c.send(&frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    let (status, _) = c.response(1);
    assert_eq!(status, 200);
    assert!(c.closed(), "closed once its stream ended");

    let mut c = Raw::connect(listen);
    c.send(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&get("/slow?ms=800")),
    ));
    thread::sleep(Duration::from_millis(200));
    p.signal(nix::sys::signal::Signal::SIGTERM);
    let g = c.until(|f| f.kind == GOAWAY).expect("GOAWAY on drain");
    assert_eq!(g.code(), NO_ERROR);
    assert_eq!(
        u32::from_be_bytes(g.payload[..4].try_into().unwrap()),
        1,
        "last stream"
    );
    let (status, _) = c.response(1);
    assert_eq!(status, 200);
    assert!(p.wait_exit().success());
}

/// `Expect: 100-continue` over HTTP/2: the interim response comes when the body is wanted,
/// the upstream never sees the `expect`, and a request body reaches it whole.
#[test]
fn expect_100_continue_over_http2() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    let mut c = Raw::connect(listen);
    let mut f = get("/describe");
    f[0] = (":method", "POST");
    f.extend([("content-length", "5"), ("expect", "100-continue")]);
    c.send(&frame(HEADERS, END_HEADERS, 1, &block(&f)));
    let interim = c.until(|f| f.kind == HEADERS && f.stream == 1).unwrap();
    assert_eq!(interim.status(), 100);
    assert_eq!(interim.flags & END_STREAM, 0);
    c.send(&frame(DATA, END_STREAM, 1, b"hello"));
    let (status, body) = c.response(1);
    assert_eq!(status, 200);
    let seen = String::from_utf8_lossy(&body).to_lowercase();
    assert!(seen.contains("body-length: 5"), "{seen}");
    assert!(!seen.contains("expect"), "{seen}");
}

/// Big bodies through the generic path (larger than `buffer_size`, streamed), both ways,
/// arrive identical.
#[test]
fn large_bodies_stream_both_ways() {
    let a = EchoBackend::start("a");
    let (_p, listen) = proxy(&[a.addr], "");
    let dir = tempdir("h2-upload");
    let file = dir.join("up");
    std::fs::write(&file, pattern(5 << 20)).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--http2-prior-knowledge",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{listen}/echo"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout == pattern(5 << 20),
        "{} bytes back",
        out.stdout.len()
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--http2-prior-knowledge"])
        .arg(format!("http://{listen}/big?n={}", 7 << 20))
        .output()
        .unwrap();
    assert!(
        out.stdout == pattern(7 << 20),
        "{} bytes down",
        out.stdout.len()
    );
}

/// Request bodies nobody reads (a `respond` route, a 431) still give the connection's window
/// back: 2.4 MB of them on one connection, each sent with its head so that it is there before
/// its response, more than twice the 1 MiB window, and the connection goes on.
#[test]
fn unread_request_bodies_give_the_window_back() {
    let a = EchoBackend::start("a");
    let routes = "max_header_size = 8192\n[[listeners.web.routes]]\npath = \"/r\"\nrespond = { status = 200, body = \"made here\\n\" }\n";
    let (_p, listen) = proxy(&[a.addr], routes);
    let mut c = Raw::connect(listen);
    let chunk = vec![b'u'; 15_000];
    let long = "v".repeat(100);
    for i in 0..80u32 {
        let id = 1 + 2 * i;
        let mut f = get("/r");
        f[0] = (":method", "POST");
        if i % 2 == 1 {
            // Over max_header_size: answered 431 without a task.
            f.extend(std::iter::repeat_n(("x-long", long.as_str()), 90));
        }
        let mut bytes = frame(HEADERS, END_HEADERS, id, &block(&f));
        bytes.extend(frame(DATA, 0, id, &chunk));
        bytes.extend(frame(DATA, END_STREAM, id, &chunk));
        c.send(&bytes);
        let (status, _) = c.response(id);
        assert_eq!(status, if i % 2 == 1 { 431 } else { 200 }, "stream {id}");
    }
    let (status, body) = c.get(161, "/r");
    assert_eq!((status, &body[..]), (200, &b"made here\n"[..]));
}

/// On HTTP/2's fast path the same rules hold as everywhere: request and response header rules
/// (route's and listener's), `X-Forwarded-*`, `Host` from `:authority`, split cookies joined,
/// `te: trailers` said again upstream; the response comes back with lowercase names and no
/// connection-specific fields. A route that responds is answered by corelane itself.
#[test]
fn http2_requests_get_the_same_rules() {
    let a = EchoBackend::start("a");
    let rules = r#"request_headers = { set = { x-env = "prod" }, add = { x-tag = "two" }, remove = ["x-secret"] }
response_headers = { set = { server = "corelane" }, remove = ["x-backend"] }
[[listeners.web.routes]]
path_prefix = "/r/"
cluster = "app"
request_headers = { add = { x-route = "r" } }
response_headers = { add = { x-route-out = "yes" } }
[[listeners.web.routes]]
path = "/made"
respond = { status = 202, body = "made\n", headers = { x-made = "1" } }
"#;
    let (_p, listen) = proxy(&[a.addr], rules);
    let out = python(
        listen,
        r#"
def one(path, extra):
    i = conn.get_next_available_stream_id()
    conn.send_headers(i, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test:8443"), (":path", path)] + extra, end_stream=True)
    flush()
    head, body, done = None, b"", False
    while not done:
        for e in pump():
            if isinstance(e, h2.events.ResponseReceived):
                head = e.headers
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, i)
            elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        flush()
    return head, body.decode()
head, seen = one("/r/x?q=1", [("x-env", "dev"), ("x-tag", "one"), ("x-secret", "s"), ("cookie", "a=1"), ("cookie", "b=2"), ("te", "trailers"), ("x-forwarded-for", "10.1.2.3")])
lines = seen.splitlines()
for want in ["path: /r/x?q=1", "version: HTTP/1.1", "x-env: prod", "x-tag: one", "x-tag: two", "x-route: r",
             "cookie: a=1; b=2", "te: trailers", "x-forwarded-for: 10.1.2.3, 127.0.0.1",
             "x-forwarded-proto: http", "x-forwarded-host: h2.test:8443", "host: h2.test:8443"]:
    assert want in lines, (want, seen)
assert "x-secret" not in seen, seen
h = dict(head)
assert h[":status"] == "200", head
assert h["server"] == "corelane" and h["x-route-out"] == "yes" and "x-backend" not in h, head
assert all(k == k.lower() for k, _ in head), head
assert not any(k in ("connection", "keep-alive", "transfer-encoding") for k, _ in head), head
head, body = one("/made", [])
h = dict(head)
assert h[":status"] == "202" and h["x-made"] == "1" and body == "made\n", (head, body)
print("ok")
"#,
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
}

/// A `buffer_size` smaller than a frame (16 KiB) still takes whole frames: an upload in
/// 16 KiB DATA frames arrives whole.
#[test]
fn frames_larger_than_the_buffers_still_pass() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let cfg = "buffer_size = 4096\n".to_owned()
        + &base_toml(admin, 1)
        + &listener_toml("web", listen, "app", "protocol = \"http\"\n")
        + &cluster_toml("app", "round_robin", &[(a.addr, 1)], "");
    let _p = Proxy::start(&cfg, admin);
    let out = python(
        listen,
        r#"
up = bytes(x % 251 for x in range(300000))
assert echo(up) == up
print("ok", conn.max_outbound_frame_size)
"#,
    );
    assert_eq!(out.trim(), "ok 16384");
}
