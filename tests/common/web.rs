//! HTTP backends for health tests: a hyper server that can be stopped and started again on
//! the same address, a backend that passes its health check but resets every data request,
//! and a small load generator that records every request's outcome with its time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A hyper HTTP/1.1 server answering `GET /healthz` with 200 "ok" (503 while `healthy` is
/// false) and anything else with 200 and its name as the body.
pub struct WebBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Data requests served (not health checks).
    pub hits: Arc<AtomicUsize>,
    /// Health checks received.
    pub checks: Arc<AtomicUsize>,
    pub healthy: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WebBackend {
    pub fn start(name: &str) -> WebBackend {
        let mut b = WebBackend {
            name: name.to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            hits: Arc::default(),
            checks: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            stop: None,
            thread: None,
        };
        b.run();
        b
    }

    /// Serves again on the same address after [`Self::stop`].
    pub fn restart(&mut self) {
        assert!(self.stop.is_none(), "already running");
        self.run();
    }

    /// Closes the listening socket and every open connection: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn run(&mut self) {
        let std_listener = bind_retrying(self.addr);
        std_listener.set_nonblocking(true).unwrap();
        self.addr = std_listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (name, hits, checks, healthy) = (
            Arc::new(self.name.clone()),
            self.hits.clone(),
            self.checks.clone(),
            self.healthy.clone(),
        );
        self.stop = Some(tx);
        self.thread = Some(thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => return,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let (name, hits, checks, healthy) =
                                (name.clone(), hits.clone(), checks.clone(), healthy.clone());
                            tokio::spawn(async move {
                                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                                    let reply = if req.uri().path() == "/healthz" {
                                        checks.fetch_add(1, Ordering::SeqCst);
                                        if healthy.load(Ordering::SeqCst) {
                                            (200, "ok".to_owned())
                                        } else {
                                            (503, "unhealthy".to_owned())
                                        }
                                    } else {
                                        hits.fetch_add(1, Ordering::SeqCst);
                                        (200, name.to_string())
                                    };
                                    async move {
                                        Response::builder()
                                            .status(reply.0)
                                            .body(Full::new(Bytes::from(reply.1)))
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
            // Dropping the runtime drops every connection task: their sockets close.
        }));
    }
}

impl Drop for WebBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `addr`, retrying for a moment (a just-closed port may linger).
fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

/// A backend that answers `GET /healthz` with 200 and resets every other request.
pub struct ResetBackend {
    pub addr: SocketAddr,
    pub resets: Arc<AtomicUsize>,
}

impl ResetBackend {
    pub fn start() -> ResetBackend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let resets = Arc::new(AtomicUsize::new(0));
        let r = resets.clone();
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let r = r.clone();
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    if head.starts_with(b"GET /healthz ") {
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    } else {
                        r.fetch_add(1, Ordering::SeqCst);
                        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    }
                });
            }
        });
        ResetBackend { addr, resets }
    }
}

/// One HTTP/1.1 request on a new connection through `proxy` (from the loopback address
/// `from`, if given): the body of a 200, or why it failed.
pub fn get(proxy: SocketAddr, from: Option<Ipv4Addr>) -> Result<String, String> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    if let Some(ip) = from {
        s.bind(&SocketAddr::new(ip.into(), 0).into())
            .map_err(|e| e.to_string())?;
    }
    s.connect_timeout(&proxy.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /data HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let resp = String::from_utf8_lossy(&resp);
    match resp.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_owned()),
        _ => Err(format!("bad response {resp:?}")),
    }
}

/// One request's outcome and when it was sent.
pub type Outcome = (Instant, Result<String, String>);

/// Threads sending requests through a proxy back to back until dropped, each outcome
/// recorded with the time it was sent.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    pub log: Arc<Mutex<Vec<Outcome>>>,
}

impl Load {
    pub fn start(proxy: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, log) = (stop.clone(), log.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let at = Instant::now();
                        let r = get(proxy, None);
                        log.lock().unwrap().push((at, r));
                        thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load { stop, threads, log }
    }

    /// Stops the threads and returns every outcome.
    pub fn finish(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
