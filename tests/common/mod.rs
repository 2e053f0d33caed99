//! Test harness: runs the real `corelane` binary on loopback with a control file written to a
//! temporary directory, real TCP backends on threads, and small clients for the admin API.
#![allow(dead_code)]

pub mod echo;
pub mod mariadb;
pub mod nutcracker;
pub mod redis;
pub mod web;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_corelane");

/// A port that was free a moment ago (bind to port 0, read it, release it), never one this
/// test process was given before: the kernel may hand the same port to two binds in a row.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports that were free a moment ago, none given out before in this process.
pub fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
        // Held until all are picked, so this call cannot get one port twice either.
        held.push(l);
    }
    ports
}

/// A loopback address where nothing listens: connecting to it is refused. It is on
/// 127.0.0.2, where no test binds anything, so a parallel test cannot take the port.
pub fn refused_addr() -> SocketAddr {
    SocketAddr::new([127, 0, 0, 2].into(), free_port())
}

pub fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "corelane-test-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running corelane process.
pub struct Proxy {
    pub child: Child,
    pub admin: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Proxy {
    /// Writes `config` (which must use `admin` as its admin address) and starts corelane.
    pub fn start(config: &str, admin: SocketAddr) -> Proxy {
        let dir = tempdir("proxy");
        let path = dir.join("corelane.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("corelane.log");
        let child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Proxy {
            child,
            admin,
            config: path,
            log,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("corelane exited early ({status}):\n{}", self.log_text());
            }
            if let Ok((200, _)) = try_http(self.admin, "GET", "/healthz") {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("corelane did not become ready:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).unwrap();
    }

    /// Rewrites the control file (not yet reloaded).
    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config, config).unwrap();
    }

    /// Sends SIGHUP and waits until /status reports a reload newer than `before_reloads`.
    pub fn sighup_and_wait(&self) -> serde_json::Value {
        let before = self.reload_count();
        self.signal(Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if reloads(&s) > before {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "reload not seen:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn reload_count(&self) -> u64 {
        reloads(&self.status())
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = http(self.admin, "GET", "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn metrics(&self) -> String {
        let (code, body) = http(self.admin, "GET", "/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Waits up to 10 s for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "corelane did not exit:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reloads(status: &serde_json::Value) -> u64 {
    status["reloads"]["ok"].as_u64().unwrap() + status["reloads"]["error"].as_u64().unwrap()
}

/// The value of the sample whose name and labels are exactly `series`
/// (`name{label="v",...}` as printed), if present.
/// `corelane_http_refused_requests_total` of listener `web` for statuses 400, 408, 431 and
/// 501, from the metrics text `m`.
pub fn refused_requests(m: &str) -> [f64; 4] {
    ["400", "408", "431", "501"].map(|status| {
        let series =
            format!("corelane_http_refused_requests_total{{listener=\"web\",status=\"{status}\"}}");
        metric(m, &series).unwrap_or_else(|| panic!("no {series} in\n{m}"))
    })
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A minimal HTTP/1.0 client for the admin API: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    try_http(addr, method, path).unwrap()
}

pub fn try_http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: admin\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response {resp:?}")))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((code, body))
}

/// A TCP backend that greets every connection with `<name>\n`, echoes what it receives,
/// and on the client's EOF writes `bye\n` and closes.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap())
    }

    pub fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let l = TcpListener::bind(addr).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (n, a, o) = (name.to_owned(), accepted.clone(), open.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (n, o) = (n.clone(), o.clone());
                o.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let _ = echo(&mut s, &n);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            accepted,
            open,
        }
    }
}

fn echo(s: &mut TcpStream, name: &str) -> std::io::Result<()> {
    s.write_all(format!("{name}\n").as_bytes())?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            s.write_all(b"bye\n")?;
            return Ok(());
        }
        s.write_all(&buf[..n])?;
    }
}

/// Connects to `addr` from the loopback address `from` (or the default), with timeouts.
pub fn connect_from(addr: SocketAddr, from: Option<Ipv4Addr>) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(ip) = from {
        s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())
            .unwrap();
    }
    s.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads the backend's greeting line: which backend this connection reached.
pub fn greeting(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap() == 1 {
        if b[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b[0]);
    }
    panic!("connection closed before a greeting (got {line:?})");
}

/// Opens a connection through the proxy and returns the backend that answered.
pub fn which_backend(addr: SocketAddr, from: Option<Ipv4Addr>) -> String {
    let mut s = connect_from(addr, from);
    let name = greeting(&mut s);
    s.shutdown(Shutdown::Write).unwrap();
    name
}

/// Reads lines until `pred` holds for the whole text so far, or 10 s pass.
pub fn read_until(s: &mut TcpStream, pred: impl Fn(&str) -> bool) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pred(&text) && Instant::now() < deadline {
        if r.read_line(&mut text).unwrap_or(0) == 0 {
            break;
        }
    }
    text
}

/// Polls `f` until it returns true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The global part of a control file.
pub fn base_toml(admin: SocketAddr, workers: usize) -> String {
    format!(
        "workers = {workers}\nshutdown_timeout = \"5s\"\n[admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"debug\"\n"
    )
}

pub fn listener_toml(name: &str, addr: SocketAddr, cluster: &str, extra: &str) -> String {
    format!("[listeners.{name}]\nlisten = \"{addr}\"\ncluster = \"{cluster}\"\n{extra}\n")
}

pub fn cluster_toml(name: &str, lb: &str, endpoints: &[(SocketAddr, u32)], extra: &str) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(a, w)| format!("{{ addr = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        "[clusters.{name}]\nlb = \"{lb}\"\nendpoints = [{}]\n{extra}\n",
        eps.join(", ")
    )
}

/// Accepts any server certificate: these tests are about what comes after the handshake.
#[derive(Debug)]
pub struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client connection (rustls, SNI `localhost`, any certificate accepted), reads timing
/// out after 10 s.
pub fn tls_connect(listen: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    let session =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(listen).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rustls::StreamOwned::new(session, sock)
}

/// The `[listeners.NAME.tls]` table of a listener that terminates TLS with the test
/// certificate for `localhost` (config/examples/certs).
pub fn localhost_tls(listener: &str) -> String {
    let certs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/certs");
    format!(
        "[listeners.{listener}.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\", names = [\"localhost\"] }}]\n",
        certs.join("localhost.crt").display(),
        certs.join("localhost.key").display()
    )
}
