//! TLS termination through the real corelane binary: real clients (curl, openssl s_client)
//! and the test-only certificates of config/examples/certs (scripts/gen-test-certs.sh).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::echo::EchoBackend;
use common::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/certs")
}

fn cert(name: &str) -> String {
    certs().join(name).display().to_string()
}

/// `[listeners.web.tls]` with localhost (default) and *.example.test certificates.
fn tls_table(localhost: &str, extra: &str) -> String {
    format!(
        "[listeners.web.tls]\ncertificates = [\n  {{ cert = \"{}\", key = \"{}\", names = [\"localhost\"] }},\n  {{ cert = \"{}\", key = \"{}\", names = [\"www.example.test\", \"*.example.test\"] }},\n]\n{extra}",
        cert(&format!("{localhost}.crt")),
        cert(&format!("{localhost}.key")),
        cert("example.crt"),
        cert("example.key"),
    )
}

fn config(
    admin: SocketAddr,
    listen: SocketAddr,
    protocol: &str,
    backend: SocketAddr,
    tls: &str,
) -> String {
    base_toml(admin, 2)
        + &listener_toml(
            "web",
            listen,
            "app",
            &format!("protocol = \"{protocol}\"\n{tls}"),
        )
        + &cluster_toml("app", "round_robin", &[(backend, 1)], "")
}

/// curl over HTTPS to `host`:port (resolved to 127.0.0.1), trusting the test CA.
fn curl(listen: SocketAddr, host: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", &cert("ca.crt")])
        .args(["--resolve", &format!("{host}:{}:127.0.0.1", listen.port())])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(format!("https://{host}:{}/who", listen.port()))
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut t = tail.split(' ');
    let status = t.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = t.next().unwrap_or("").to_owned();
    (
        status,
        version,
        body.to_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The subject CN of the certificate the server presents for `sni` (none: no SNI).
fn presented(listen: SocketAddr, sni: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &listen.to_string()]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("subject=CN = ")
                .or_else(|| l.strip_prefix("subject=CN="))
        })
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn https_with_alpn_h2_and_http1() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let _p = Proxy::start(
        &config(admin, listen, "http", a.addr, &tls_table("localhost", "")),
        admin,
    );
    let (status, version, body) = curl(listen, "localhost", &["--http2"]);
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    let (status, version, _) = curl(listen, "localhost", &["--http1.1"]);
    assert_eq!((status, version.as_str()), (200, "1.1"));
    // TLS 1.0/1.1 are refused.
    let (status, _, err) = curl(listen, "localhost", &["--tlsv1.1", "--tls-max", "1.1"]);
    assert_eq!(status, 0, "{err}");
}

#[test]
fn sni_chooses_the_certificate() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let _p = Proxy::start(
        &config(admin, listen, "http", a.addr, &tls_table("localhost", "")),
        admin,
    );
    assert_eq!(presented(listen, Some("localhost")), "localhost");
    assert_eq!(
        presented(listen, Some("www.example.test")),
        "www.example.test"
    );
    assert_eq!(
        presented(listen, Some("api.example.test")),
        "www.example.test",
        "wildcard"
    );
    assert_eq!(
        presented(listen, Some("unknown.test")),
        "localhost",
        "default"
    );
    assert_eq!(presented(listen, None), "localhost", "no SNI: default");
    let (status, _, body) = curl(listen, "api.example.test", &[]);
    assert_eq!(status, 200, "{body}");
}

/// One `openssl s_client` connection to `listen` (SNI localhost) that saves its session to
/// `sess` (`flag` = `-sess_out`) or resumes it (`-sess_in`); its output.
fn s_client_session(
    listen: SocketAddr,
    version: &[&str],
    flag: &str,
    sess: &std::path::Path,
) -> String {
    let out = Command::new("openssl")
        .arg("s_client")
        .args(version)
        .args([
            "-connect",
            &listen.to_string(),
            "-servername",
            "localhost",
            flag,
        ])
        .arg(sess)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            // Give TLS 1.3 tickets (sent after the handshake) time to arrive.
            thread::sleep(Duration::from_millis(300));
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(b"Q\n");
            }
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_sessions_are_resumed() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let _p = Proxy::start(
        &config(admin, listen, "http", a.addr, &tls_table("localhost", "")),
        admin,
    );
    let dir = tempdir("sess");
    // Tickets (TLS 1.3 and 1.2), and the session cache by session ID (TLS 1.2 without
    // tickets: only the cache can resume it).
    let versions: [&[&str]; 3] = [&["-tls1_3"], &["-tls1_2"], &["-tls1_2", "-no_ticket"]];
    for (i, version) in versions.into_iter().enumerate() {
        let sess = dir.join(format!("s{i}"));
        let run = |flag: &str| s_client_session(listen, version, flag, &sess);
        let first = run("-sess_out");
        assert!(first.contains("New, TLSv1."), "{version:?}: {first}");
        let second = run("-sess_in");
        assert!(
            second.contains("Reused, TLSv1."),
            "{version:?}: not resumed:\n{second}"
        );
    }
}

#[test]
fn client_certificates_are_required_when_configured() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let mtls = format!("client_ca = \"{}\"\n", cert("ca.crt"));
    let _p = Proxy::start(
        &config(
            admin,
            listen,
            "http",
            a.addr,
            &tls_table("localhost", &mtls),
        ),
        admin,
    );
    let (status, _, err) = curl(listen, "localhost", &[]);
    assert_eq!(status, 0, "no client certificate: refused ({err})");
    let (status, _, err) = curl(
        listen,
        "localhost",
        &[
            "--cert",
            &cert("other-client.crt"),
            "--key",
            &cert("other-client.key"),
        ],
    );
    assert_eq!(status, 0, "untrusted client certificate: refused ({err})");
    let (status, _, body) = curl(
        listen,
        "localhost",
        &["--cert", &cert("client.crt"), "--key", &cert("client.key")],
    );
    assert_eq!(status, 200, "{body}");
}

/// A session (ticket) from a listener without client certificates does not resume on one
/// that requires them: rustls would carry the session's (absent) certificate over.
#[test]
fn sessions_from_elsewhere_do_not_skip_client_certificates() {
    let a = EchoBackend::start("a");
    let (admin, open_listen, mtls_listen) = (addr(), addr(), addr());
    let mtls = format!("client_ca = \"{}\"\n", cert("ca.crt"));
    let cfg = base_toml(admin, 2)
        + &listener_toml(
            "open",
            open_listen,
            "app",
            &format!(
                "protocol = \"http\"\n{}",
                tls_table("localhost", "").replace("listeners.web", "listeners.open")
            ),
        )
        + &listener_toml(
            "strict",
            mtls_listen,
            "app",
            &format!(
                "protocol = \"http\"\n{}",
                tls_table("localhost", &mtls).replace("listeners.web", "listeners.strict")
            ),
        )
        + &cluster_toml("app", "round_robin", &[(a.addr, 1)], "");
    let _p = Proxy::start(&cfg, admin);
    let dir = tempdir("sess-mtls");
    let sess = dir.join("s");
    let run = |listen: SocketAddr, flag: &str| s_client_session(listen, &["-tls1_3"], flag, &sess);
    let first = run(open_listen, "-sess_out");
    assert!(first.contains("New, TLSv1.3"), "{first}");
    let second = run(mtls_listen, "-sess_in");
    assert!(
        !second.contains("Reused"),
        "resumed past client authentication:\n{second}"
    );
}

#[test]
fn tls_on_a_tcp_listener() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let _p = Proxy::start(
        &config(admin, listen, "tcp", a.addr, &tls_table("localhost", "")),
        admin,
    );
    let (status, version, body) = curl(listen, "localhost", &[]);
    assert_eq!((status, version.as_str()), (200, "1.1"), "{body}");
    assert!(body.contains("path: /who"), "{body}");
    assert!(
        !body.contains("x-forwarded-proto"),
        "L4: bytes pass untouched"
    );
}

/// Certificates are re-read on SIGHUP: new handshakes get the new certificate, requests in
/// flight keep going, and a reload with a broken certificate changes nothing.
#[test]
fn certificates_reload_under_traffic() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let p = Proxy::start(
        &config(admin, listen, "http", a.addr, &tls_table("localhost", "")),
        admin,
    );
    assert_eq!(presented(listen, Some("localhost")), "localhost");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let (status, _, _) = curl(listen, "localhost", &[]);
                    if status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    // A keep-alive connection open across the reload: it keeps its session and is served.
    let mut open = S_client::open(listen);
    open.send(b"GET /before HTTP/1.1\r\nHost: localhost\r\n\r\n");
    p.write_config(&config(
        admin,
        listen,
        "http",
        a.addr,
        &tls_table("localhost-rotated", ""),
    ));
    let s = p.sighup_and_wait();
    assert_eq!(s["last_reload"]["result"], "ok", "{s}");
    assert_eq!(presented(listen, Some("localhost")), "localhost rotated");
    open.send(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let out = open.finish();
    assert!(
        out.lines()
            .any(|l| l == "subject=CN = localhost" || l == "subject=CN=localhost"),
        "{out}"
    );
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    assert!(out.contains("path: /after"), "{out}");
    thread::sleep(Duration::from_millis(300));

    // A key that does not match its certificate: the reload is refused, nothing changes.
    let broken = tls_table("localhost", "").replace("localhost.key", "example.key");
    p.write_config(&config(admin, listen, "http", a.addr, &broken));
    let s = p.sighup_and_wait();
    assert_eq!(s["last_reload"]["result"], "error", "{s}");
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("listeners.web.tls.certificates[0]"),
        "{s}"
    );
    assert_eq!(presented(listen, Some("localhost")), "localhost rotated");
    thread::sleep(Duration::from_millis(300));

    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert!(ok.load(Ordering::SeqCst) > 10, "too little traffic");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during certificate reloads"
    );
}

/// An `openssl s_client` connection (SNI localhost) that sends what it is given and, once
/// finished, reads until the server closes (10 s at most).
#[allow(non_camel_case_types)]
struct S_client(std::process::Child);

impl S_client {
    fn open(listen: SocketAddr) -> S_client {
        let child = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-ign_eof", "-connect"])
            .arg(listen.to_string())
            .args(["-servername", "localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl must be installed");
        S_client(child)
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.0.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
        thread::sleep(Duration::from_millis(300));
    }

    /// Everything the client printed: the handshake, then what the server sent.
    fn finish(self) -> String {
        let out = self.0.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A TLS client too slow with its request head is told 408 inside TLS before the close, as a
/// plain one is.
#[test]
fn a_slow_tls_client_is_told_408() {
    let a = EchoBackend::start("a");
    let (admin, listen) = (addr(), addr());
    let tls = format!("header_timeout = \"500ms\"\n{}", tls_table("localhost", ""));
    let _p = Proxy::start(&config(admin, listen, "http", a.addr, &tls), admin);
    let mut slow = S_client::open(listen);
    slow.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    let out = slow.finish();
    assert!(out.contains("HTTP/1.1 408 Request Timeout"), "{out}");
    assert_eq!(a.requests.load(Ordering::SeqCst), 0);
    // The same on a connection the fast path handed to hyper (a chunked upload goes there),
    // which says no 408 itself: corelane says it once hyper gives the connection back.
    let mut slow = S_client::open(listen);
    slow.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    slow.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n");
    let out = slow.finish();
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert!(out.contains("HTTP/1.1 408 Request Timeout"), "{out}");
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
}

/// An nginx serving HTTPS with the test `localhost` certificate.
struct NginxTls {
    addr: SocketAddr,
    child: std::process::Child,
}

impl NginxTls {
    fn start() -> NginxTls {
        let dir = tempdir("nginx-tls");
        let port = free_port();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
             server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {c}; ssl_certificate_key {k};\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n\
             location / {{ return 200 \"tls backend $ssl_protocol $ssl_server_name\\n\"; }} }} }}\n",
            d = dir.display(),
            c = cert("localhost.crt"),
            k = cert("localhost.key"),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .spawn()
            .expect("nginx must be installed to run this test");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(eventually(5, || std::net::TcpStream::connect(addr).is_ok()));
        NginxTls { addr, child }
    }
}

impl Drop for NginxTls {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// TLS to an upstream (real nginx over HTTPS): verified against the configured CA and name,
/// refused (502) when the certificate does not check out, accepted with `verify = false`.
#[test]
fn tls_to_upstreams_is_verified() {
    let backend = NginxTls::start();
    let plain_get = |tls: &str| {
        let (admin, listen) = (addr(), addr());
        let cfg = base_toml(admin, 2)
            + &listener_toml("web", listen, "app", "protocol = \"http\"")
            + &cluster_toml(
                "app",
                "round_robin",
                &[(backend.addr, 1)],
                &format!("[clusters.app.tls]\n{tls}"),
            );
        let _p = Proxy::start(&cfg, admin);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg(format!("http://{listen}/"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = plain_get(&format!(
        "ca = \"{}\"\nserver_name = \"localhost\"\n",
        cert("ca.crt")
    ));
    assert!(ok.starts_with("tls backend TLSv1."), "{ok}");
    assert!(ok.contains("localhost"), "SNI sent: {ok}");
    assert!(ok.ends_with("200"), "{ok}");
    // The endpoint's IP is in the certificate too.
    let by_ip = plain_get(&format!("ca = \"{}\"\n", cert("ca.crt")));
    assert!(by_ip.ends_with("200"), "{by_ip}");
    let wrong_ca = plain_get(&format!(
        "ca = \"{}\"\nserver_name = \"localhost\"\n",
        cert("other-ca.crt")
    ));
    assert!(wrong_ca.ends_with("502"), "{wrong_ca}");
    let wrong_name = plain_get(&format!(
        "ca = \"{}\"\nserver_name = \"www.example.test\"\n",
        cert("ca.crt")
    ));
    assert!(wrong_name.ends_with("502"), "{wrong_name}");
    let unverified = plain_get(&format!(
        "ca = \"{}\"\nverify = false\n",
        cert("other-ca.crt")
    ));
    assert!(unverified.ends_with("200"), "{unverified}");
}

/// HTTP/1.1 keep-alive clients (and h2c ones) reach a TLS upstream through the fast path: its
/// TLS connections are pooled and reused (one for many requests, nginx's TLS 1.3 session
/// tickets that arrive while it waits in the pool taken in), and the client connection,
/// never handed to hyper, parks when idle.
#[test]
fn tls_upstreams_are_pooled_on_the_fast_path() {
    let backend = NginxTls::start();
    let (admin, listen) = (addr(), addr());
    let cfg = base_toml(admin, 1)
        + &listener_toml(
            "web",
            listen,
            "app",
            "protocol = \"http\"\npark_after = \"1s\"\nheader_timeout = \"30s\"",
        )
        + &cluster_toml(
            "app",
            "round_robin",
            &[(backend.addr, 1)],
            &format!(
                "[clusters.app.tls]\nca = \"{}\"\nserver_name = \"localhost\"\n",
                cert("ca.crt")
            ),
        );
    let p = Proxy::start(&cfg, admin);
    let series = |name: &str| metric(&p.metrics(), name).unwrap_or(-1.0);
    let mut c = std::net::TcpStream::connect(listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let one = |c: &mut std::net::TcpStream| {
        c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("localhost\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    for i in 0..5 {
        let r = one(&mut c);
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("tls backend TLSv1.3 localhost"), "{r}");
        if i == 0 {
            // Let the session tickets arrive while the connection sits in the pool.
            thread::sleep(Duration::from_millis(300));
        }
    }
    assert_eq!(
        series("corelane_cluster_connections_total{cluster=\"app\"}"),
        1.0
    );
    let parked = "corelane_listener_connections_parked{listener=\"web\"}";
    assert!(
        eventually(5, || series(parked) == 1.0),
        "{}",
        series(parked)
    );
    assert!(one(&mut c).contains("tls backend"));
    // HTTP/2 clients' requests take the same pooled connection.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(format!("http://{listen}/"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tls backend TLSv1.3"));
    assert_eq!(
        series("corelane_cluster_connections_total{cluster=\"app\"}"),
        1.0
    );
}

/// HTTP health checks of a cluster with `tls` are sent over TLS, verified as requests are:
/// the endpoint stays up behind a certificate that checks out, and goes down (the reason
/// says TLS) behind one that does not. (Sent in plain text, nginx would answer 400.)
#[test]
fn http_health_checks_of_tls_clusters_use_tls() {
    let backend = NginxTls::start();
    for (ca, up) in [("ca.crt", 1.0), ("other-ca.crt", 0.0)] {
        let (admin, listen) = (addr(), addr());
        let cfg = base_toml(admin, 1)
            + &listener_toml("web", listen, "app", "protocol = \"http\"")
            + &cluster_toml(
                "app",
                "round_robin",
                &[(backend.addr, 1)],
                &format!(
                    "[clusters.app.tls]\nca = \"{}\"\nserver_name = \"localhost\"\n\
                     [clusters.app.health_check]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"100ms\"\nfall = 2\nrise = 2\n",
                    cert(ca)
                ),
            );
        let p = Proxy::start(&cfg, admin);
        let series = format!(
            "corelane_endpoint_up{{cluster=\"app\",endpoint=\"{}\"}}",
            backend.addr
        );
        let checks = format!(
            "corelane_endpoint_health_check_duration_seconds_count{{cluster=\"app\",endpoint=\"{}\"}}",
            backend.addr
        );
        // Several checks done, and the endpoint where it should be.
        assert!(
            eventually(10, || {
                let m = p.metrics();
                metric(&m, &checks).is_some_and(|n| n >= 5.0) && metric(&m, &series) == Some(up)
            }),
            "{ca}: {}",
            p.metrics()
        );
        if up == 0.0 {
            let (_, status) = http(admin, "GET", "/status");
            assert!(status.contains("TLS"), "{status}");
        }
    }
}
