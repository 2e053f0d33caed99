//! Active health checks, the network side: [`run`] performs one [`Probe`] against one
//! endpoint over a fresh TCP connection, and says whether it passed. A TCP check closes with
//! a reset (no TIME_WAIT, no FIN exchange); the others set `TCP_NODELAY` and close normally
//! after their exchange.
//!
//! What it does not do: scheduling, rise/fall counting, marking endpoints up or down, and
//! timeouts. The caller wraps each call in `tokio::time::timeout`; dropping the future closes
//! the connection and stops everything the probe started (nothing is spawned).
//!
//! Bounds: an HTTP body is read up to [`BODY_LIMIT`] bytes, and only when a body match is
//! asked for; a Redis or memcached reply line may be at most [`LINE_LIMIT`] bytes. A failure
//! reason is a short text for /status and logs; text quoted from the server is cut to
//! [`QUOTE_LIMIT`] characters.

use std::error::Error;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::tls::client::ClusterTls;

/// How much of an HTTP body is read and matched against `expect_body`.
pub const BODY_LIMIT: usize = 64 * 1024;
/// The longest Redis or memcached reply line accepted, without its CR LF.
pub const LINE_LIMIT: usize = 1024;
/// The most characters of a server's reply quoted in a failure reason.
pub const QUOTE_LIMIT: usize = 200;

const CLOSED: &str = "connection closed before a reply";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Connect, then close.
    Tcp,
    /// One HTTP/1.1 request on a fresh connection (over TLS, verified as requests are, for a
    /// cluster with `tls`); passes when the status is in `expect_status` (empty: any 2xx or
    /// 3xx, as HAProxy) and, if `expect_body` is set, the body (first 64 KiB only) contains it.
    Http {
        method: String,
        path: String,
        host: String,
        expect_status: Vec<u16>,
        expect_body: Option<String>,
        tls: Option<CheckTls>,
    },
    /// Redis: `AUTH <password>` first when `auth` is set (expects +OK), then `PING` (expects
    /// +PONG).
    Redis { auth: Option<String> },
    /// memcached: `version\r\n`, expects a line starting with `VERSION `.
    Memcache,
    /// MySQL/MariaDB: log in, `SELECT 1`, and for replicas read-only and lag
    /// ([`super::probe_mysql`]).
    Mysql(super::probe_mysql::MysqlCheck),
}

/// TLS for an HTTP check: the cluster's client configuration, offering only HTTP/1.1 (a
/// check is one HTTP/1.1 request, even to an `upstream_protocol = "h2"` cluster).
#[derive(Debug, Clone)]
pub struct CheckTls {
    /// The cluster's own configuration, what a check task is compared by.
    source: Arc<rustls::ClientConfig>,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl CheckTls {
    pub fn new(t: &ClusterTls) -> CheckTls {
        let mut config = (*t.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        CheckTls {
            source: t.config.clone(),
            config: Arc::new(config),
            server_name: t.server_name.clone(),
        }
    }
}

impl PartialEq for CheckTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.source, &other.source) && self.server_name == other.server_name
    }
}

impl Eq for CheckTls {}

/// Runs one probe against `addr`. Ok(()) when healthy, Err(reason) otherwise; the reason is a
/// short human-readable text for /status and logs, e.g. "connect: Connection refused (os error
/// 111)", "HTTP status 503", "body does not contain \"ok\"", "redis replied -NOAUTH
/// Authentication required.", "connection closed before a reply".
pub async fn run(probe: &Probe, addr: SocketAddr) -> Result<(), String> {
    match probe {
        Probe::Tcp => {
            // Connected is all a TCP check asks. Close with a reset, as HAProxy does, so a
            // check leaves no TIME_WAIT socket behind and costs no FIN exchange.
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            Ok(())
        }
        Probe::Http {
            method,
            path,
            host,
            expect_status,
            expect_body,
            tls,
        } => {
            // Build the request first: a bad method or path fails without connecting.
            let req = http_request(method, path, host)?;
            let stream = connect(addr).await?;
            let Some(t) = tls else {
                return http_exchange(stream, req, expect_status, expect_body.as_deref()).await;
            };
            let name = t
                .server_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
            let stream = tokio_rustls::TlsConnector::from(t.config.clone())
                .connect(name, stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            http_exchange(stream, req, expect_status, expect_body.as_deref()).await
        }
        Probe::Redis { auth } => redis(connect(addr).await?, auth.as_deref()).await,
        Probe::Memcache => memcache(connect(addr).await?).await,
        Probe::Mysql(c) => super::probe_mysql::check(connect(addr).await?, c).await,
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    Ok(stream)
}

fn http_request(method: &str, path: &str, host: &str) -> Result<Request<Empty<Bytes>>, String> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid HTTP method {method:?}"))?;
    Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, "corelane-health-check")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("invalid HTTP request (path {path:?}, host {host:?}): {e}"))
}

/// Sends `req` and checks the response, driving the connection alongside so that nothing
/// outlives the probe.
async fn http_exchange<S>(
    stream: S,
    req: Request<Empty<Bytes>>,
    expect_status: &[u16],
    expect_body: Option<&str>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_error(&e))?;
    let mut conn = pin!(conn);
    let mut check = pin!(async move {
        let resp = sender.send_request(req).await.map_err(|e| http_error(&e))?;
        check_response(resp, expect_status, expect_body).await
    });
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            result = &mut check => return result,
            // On Ok the outcome is already on its way to `check`; an Err is one hyper could
            // not hand to the request or body, so it is the most precise reason there is.
            result = &mut conn, if !conn_done => {
                result.map_err(|e| http_error(&e))?;
                conn_done = true;
            }
        }
    }
}

async fn check_response(
    resp: Response<Incoming>,
    expect_status: &[u16],
    expect_body: Option<&str>,
) -> Result<(), String> {
    let status = resp.status().as_u16();
    let status_ok = if expect_status.is_empty() {
        (200..400).contains(&status)
    } else {
        expect_status.contains(&status)
    };
    if !status_ok {
        return Err(format!("HTTP status {status}"));
    }
    let Some(needle) = expect_body else {
        return Ok(());
    };
    let body = read_body(resp.into_body(), BODY_LIMIT).await?;
    if contains(&body, needle.as_bytes()) {
        Ok(())
    } else {
        Err(format!("body does not contain {needle:?}"))
    }
}

/// Reads `body` until its end or until `limit` bytes are in hand, whichever comes first.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| http_error(&e))?;
        if let Ok(data) = frame.into_data() {
            let take = data.len().min(limit - buf.len());
            buf.extend_from_slice(&data[..take]);
        }
    }
    Ok(buf)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A hyper error with its causes ("HTTP: error reading a body from connection: Connection reset
/// by peer (os error 104)"); a connection closed before the response is [`CLOSED`].
fn http_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return CLOSED.to_owned();
    }
    let mut text = format!("HTTP: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn redis(stream: TcpStream, auth: Option<&str>) -> Result<(), String> {
    let mut conn = BufReader::new(stream);
    if let Some(password) = auth {
        send(&mut conn, &resp_command(&[b"AUTH", password.as_bytes()])).await?;
        let line = read_line(&mut conn).await?;
        if trim_eol(&line) != b"+OK" {
            return Err(format!("redis replied {} to AUTH", quote(&line)));
        }
    }
    send(&mut conn, b"PING\r\n").await?;
    let line = read_line(&mut conn).await?;
    if trim_eol(&line) != b"+PONG" {
        return Err(format!("redis replied {}", quote(&line)));
    }
    Ok(())
}

/// A RESP array of bulk strings, so a password may hold spaces or any byte.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn memcache(stream: TcpStream) -> Result<(), String> {
    let mut conn = BufReader::new(stream);
    send(&mut conn, b"version\r\n").await?;
    let line = read_line(&mut conn).await?;
    if !line.starts_with(b"VERSION ") {
        return Err(format!("memcached replied {}", quote(&line)));
    }
    Ok(())
}

async fn send(conn: &mut BufReader<TcpStream>, bytes: &[u8]) -> Result<(), String> {
    conn.write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Reads one line, LF included, of at most [`LINE_LIMIT`] bytes before its CR LF.
async fn read_line<R: AsyncBufRead + Unpin>(conn: &mut R) -> Result<Vec<u8>, String> {
    let max = LINE_LIMIT + 2;
    let mut line = Vec::new();
    conn.take(max as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("read: {e}"))?;
    match line.last() {
        Some(b'\n') => Ok(line),
        None => Err(CLOSED.to_owned()),
        Some(_) if line.len() >= max => Err(format!("reply line longer than {LINE_LIMIT} bytes")),
        Some(_) => Err(format!(
            "connection closed in the middle of a reply: {}",
            quote(&line)
        )),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A reply line as text for a reason: without CR LF, lossy UTF-8, at most [`QUOTE_LIMIT`] chars.
fn quote(line: &[u8]) -> String {
    String::from_utf8_lossy(trim_eol(line))
        .chars()
        .take(QUOTE_LIMIT)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A server child process, killed on drop.
    struct Server {
        addr: SocketAddr,
        child: Child,
    }

    impl Server {
        /// Starts `program` (which must listen on `port`) and waits until it accepts.
        async fn start(program: &str, args: &[&str], port: u16) -> Server {
            let child = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{program} must be installed to run this test: {e}"));
            let mut server = Server {
                addr: local(port),
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while TcpStream::connect(server.addr).await.is_err() {
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!("{program} exited: {status}");
                }
                assert!(Instant::now() < deadline, "{program} did not start");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server
        }

        async fn redis(password: Option<&str>) -> Server {
            let port = free_port();
            let p = port.to_string();
            let mut args = vec!["--port", &p, "--bind", "127.0.0.1"];
            args.extend(["--save", "", "--appendonly", "no"]);
            if let Some(pw) = password {
                args.extend(["--requirepass", pw]);
            }
            Server::start("redis-server", &args, port).await
        }

        async fn memcached() -> Server {
            let port = free_port();
            let p = port.to_string();
            let args = ["-p", &p, "-U", "0", "-l", "127.0.0.1", "-u", "root"];
            Server::start("memcached", &args, port).await
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Accepts one connection, reads until `end` arrives (or EOF), writes `reply` and closes.
    /// The task resolves to what it read.
    async fn one_shot(end: &'static [u8], reply: Vec<u8>) -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0; 4096];
            while !contains(&got, end) {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            // The probe may stop reading early and close: write errors are expected.
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, task)
    }

    fn refused_addr() -> SocketAddr {
        local(free_port())
    }

    fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        [head.as_bytes(), body].concat()
    }

    fn http_probe(expect_status: &[u16], expect_body: Option<&str>) -> Probe {
        Probe::Http {
            method: "GET".into(),
            path: "/healthz".into(),
            host: "svc.local".into(),
            expect_status: expect_status.to_vec(),
            expect_body: expect_body.map(str::to_owned),
            tls: None,
        }
    }

    /// Runs `probe` against a one-shot HTTP server answering `reply`; returns the outcome and
    /// the request the server received.
    async fn http_case(probe: &Probe, reply: Vec<u8>) -> (Result<(), String>, String) {
        let (addr, server) = one_shot(b"\r\n\r\n", reply).await;
        let result = run(probe, addr).await;
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn tcp_connects_then_resets() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(run(&Probe::Tcp, addr).await, Ok(()));
        let (mut s, _) = listener.accept().await.unwrap();
        let e = s.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "probe must reset"
        );
    }

    #[tokio::test]
    async fn tcp_refused() {
        let err = run(&Probe::Tcp, refused_addr()).await.unwrap_err();
        assert!(err.starts_with("connect: "), "{err}");
        assert!(err.contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn http_ok_sends_the_expected_request() {
        let probe = http_probe(&[], Some("ok"));
        let (result, request) = http_case(&probe, http_response("200 OK", b"ok")).await;
        assert_eq!(result, Ok(()));
        let request = request.to_ascii_lowercase();
        assert!(
            request.starts_with("get /healthz http/1.1\r\n"),
            "{request}"
        );
        for header in [
            "host: svc.local",
            "user-agent: corelane-health-check",
            "connection: close",
        ] {
            assert!(request.contains(&format!("\r\n{header}\r\n")), "{request}");
        }
    }

    #[tokio::test]
    async fn http_status_503_fails() {
        let probe = http_probe(&[], None);
        let (result, _) = http_case(&probe, http_response("503 Unavailable", b"")).await;
        assert_eq!(result, Err("HTTP status 503".into()));
    }

    #[tokio::test]
    async fn http_expect_status() {
        // Empty list: 3xx passes; an explicit list is exact.
        let redirect = http_response("302 Found", b"");
        assert_eq!(http_case(&http_probe(&[], None), redirect).await.0, Ok(()));
        let (result, _) = http_case(&http_probe(&[204], None), http_response("200 OK", b"")).await;
        assert_eq!(result, Err("HTTP status 200".into()));
        let (result, _) = http_case(
            &http_probe(&[204], None),
            http_response("204 No Content", b""),
        )
        .await;
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn http_wrong_body_fails() {
        let probe = http_probe(&[], Some("ok"));
        let (result, _) = http_case(&probe, http_response("200 OK", b"degraded")).await;
        assert_eq!(result, Err("body does not contain \"ok\"".into()));
    }

    #[tokio::test]
    async fn http_body_is_matched_on_its_first_64_kib_only() {
        let mut body = vec![b'a'; 2 * BODY_LIMIT];
        body[..2].copy_from_slice(b"ok");
        body[BODY_LIMIT..BODY_LIMIT + 6].copy_from_slice(b"beyond");
        let reply = http_response("200 OK", &body);
        let (result, _) = http_case(&http_probe(&[], Some("ok")), reply.clone()).await;
        assert_eq!(result, Ok(()));
        let (result, _) = http_case(&http_probe(&[], Some("beyond")), reply).await;
        assert_eq!(result, Err("body does not contain \"beyond\"".into()));
    }

    #[tokio::test]
    async fn http_closed_without_reply() {
        let (result, request) = http_case(&http_probe(&[], None), Vec::new()).await;
        assert!(request.starts_with("GET /healthz"), "{request}");
        assert_eq!(result, Err(CLOSED.into()));
    }

    #[tokio::test]
    async fn http_garbage_and_truncated_replies() {
        let (result, _) = http_case(&http_probe(&[], None), b"SSH-2.0-x\r\n\r\n".to_vec()).await;
        assert_eq!(result, Err("HTTP: invalid HTTP version parsed".into()));
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok".to_vec();
        let (result, _) = http_case(&http_probe(&[], Some("ok")), reply).await;
        assert_eq!(
            result,
            Err("HTTP: error reading a body from connection: end of file before message length reached".into())
        );
    }

    #[tokio::test]
    async fn http_invalid_method_fails_before_connecting() {
        let probe = Probe::Http {
            method: "BAD METHOD".into(),
            path: "/".into(),
            host: "svc.local".into(),
            expect_status: Vec::new(),
            expect_body: None,
            tls: None,
        };
        let err = run(&probe, refused_addr()).await.unwrap_err();
        assert_eq!(err, "invalid HTTP method \"BAD METHOD\"");
    }

    #[tokio::test]
    async fn redis_ping() {
        let server = Server::redis(None).await;
        assert_eq!(run(&Probe::Redis { auth: None }, server.addr).await, Ok(()));
    }

    #[tokio::test]
    async fn redis_auth() {
        let server = Server::redis(Some("secret")).await;
        let probe = |auth: Option<&str>| Probe::Redis {
            auth: auth.map(str::to_owned),
        };
        assert_eq!(
            run(&probe(None), server.addr).await,
            Err("redis replied -NOAUTH Authentication required.".into())
        );
        assert_eq!(run(&probe(Some("secret")), server.addr).await, Ok(()));
        let err = run(&probe(Some("wrong")), server.addr).await.unwrap_err();
        assert!(err.starts_with("redis replied -WRONGPASS "), "{err}");
        assert!(err.ends_with(" to AUTH"), "{err}");
    }

    #[tokio::test]
    async fn memcache_version() {
        let server = Server::memcached().await;
        assert_eq!(run(&Probe::Memcache, server.addr).await, Ok(()));
    }

    #[tokio::test]
    async fn memcache_probe_against_redis_quotes_the_error() {
        let server = Server::redis(None).await;
        let err = run(&Probe::Memcache, server.addr).await.unwrap_err();
        assert!(
            err.starts_with("memcached replied -ERR unknown command 'version'"),
            "{err}"
        );
        assert!(!err.contains('\r') && !err.contains('\n'), "{err:?}");
    }

    #[tokio::test]
    async fn reply_lines_are_bounded() {
        // Exactly LINE_LIMIT bytes before CR LF passes.
        let mut line = b"VERSION ".to_vec();
        line.resize(LINE_LIMIT, b'1');
        line.extend_from_slice(b"\r\n");
        let (addr, _) = one_shot(b"\r\n", line).await;
        assert_eq!(run(&Probe::Memcache, addr).await, Ok(()));

        let mut line = b"VERSION ".to_vec();
        line.resize(LINE_LIMIT + 1, b'1');
        line.extend_from_slice(b"\r\n");
        let (addr, _) = one_shot(b"\r\n", line).await;
        let err = run(&Probe::Memcache, addr).await.unwrap_err();
        assert_eq!(err, "reply line longer than 1024 bytes");
    }

    #[tokio::test]
    async fn quoted_errors_are_cut_to_200_chars() {
        let reply = format!("-ERR {}\r\n", "é".repeat(500)).into_bytes();
        let (addr, _) = one_shot(b"\r\n", reply).await;
        let err = run(&Probe::Redis { auth: None }, addr).await.unwrap_err();
        let quoted = err.strip_prefix("redis replied ").unwrap();
        assert!(quoted.starts_with("-ERR éé"), "{err}");
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT);
    }

    #[tokio::test]
    async fn line_protocols_closed_without_reply() {
        let (addr, request) = one_shot(b"\r\n", Vec::new()).await;
        let result = run(&Probe::Redis { auth: None }, addr).await;
        assert_eq!(result, Err(CLOSED.into()));
        assert_eq!(request.await.unwrap(), "PING\r\n");

        let (addr, _) = one_shot(b"\r\n", b"VERSION 1.6".to_vec()).await;
        let err = run(&Probe::Memcache, addr).await.unwrap_err();
        assert_eq!(
            err,
            "connection closed in the middle of a reply: VERSION 1.6"
        );
    }
}
