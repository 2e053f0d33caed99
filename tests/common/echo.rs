//! An HTTP/1.1 and h2c backend (hyper) for the HTTP engine's tests. Every response carries
//! `x-backend: NAME`. Paths:
//! - `/echo`: the request body, streamed back as it arrives, with its trailers (announced in a
//!   `Trailer` header if the request announced them);
//! - `/big?n=N`: N bytes of a fixed pattern, chunked;
//! - `/trailers`: `data`, then the trailer `x-sum: 42` (announced in `Trailer`; hyper sends it
//!   to an HTTP/1.1 client only if the request said `TE: trailers`);
//! - `/status/NNN`: that status;
//! - `/slow?ms=N`: answers after N ms;
//! - anything else: a text description of the request (method, path, version, headers, body
//!   length, trailers as `trailer name: value`), one `name: value` per line.
//!
//! It counts the connections it accepts and the requests it serves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Body = BoxBody<Bytes, hyper::Error>;

pub struct EchoBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// While set, every request is answered 500.
    pub fail: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The pattern `/big` sends: byte i is `i % 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

impl EchoBackend {
    pub fn start(name: &str) -> EchoBackend {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let fail = Arc::new(AtomicBool::new(false));
        let (n, c, r, f) = (
            Arc::new(name.to_owned()),
            connections.clone(),
            requests.clone(),
            fail.clone(),
        );
        thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => return,
                        a = l.accept() => {
                            let Ok((s, _)) = a else { continue };
                            c.fetch_add(1, Ordering::SeqCst);
                            let (n, r, f) = (n.clone(), r.clone(), f.clone());
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| {
                                    r.fetch_add(1, Ordering::SeqCst);
                                    handle(n.clone(), f.load(Ordering::SeqCst), req)
                                });
                                // HTTP/1.1, or HTTP/2 with prior knowledge (h2c).
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    hyper_util::rt::TokioExecutor::new(),
                                )
                                .serve_connection(TokioIo::new(s), svc)
                                .await;
                            });
                        }
                    }
                }
            });
        });
        EchoBackend {
            name: name.to_owned(),
            addr,
            connections,
            requests,
            fail,
            stop: Some(tx),
        }
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

fn query(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok())?
    })
}

async fn handle(
    name: Arc<String>,
    fail: bool,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut resp = if fail {
        let mut r = Response::new(full("failing\n"));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    } else if path == "/echo" {
        let announced = req.headers().get(hyper::header::TRAILER).cloned();
        let mut r = Response::new(req.into_body().boxed());
        if let Some(t) = announced {
            r.headers_mut().insert(hyper::header::TRAILER, t);
        }
        r
    } else if path == "/trailers" {
        let mut sum = hyper::HeaderMap::new();
        sum.insert("x-sum", "42".parse().unwrap());
        let frames = [
            Frame::data(Bytes::from_static(b"data")),
            Frame::trailers(sum),
        ];
        let mut r = Response::new(Frames(frames.into()).boxed());
        r.headers_mut()
            .insert(hyper::header::TRAILER, "x-sum".parse().unwrap());
        r
    } else if path == "/big" {
        let n = query(&req, "n").unwrap_or(0) as usize;
        let data = pattern(n);
        let chunks = data.chunks(64 * 1024).map(Bytes::copy_from_slice);
        Response::new(Frames(chunks.map(Frame::data).collect()).boxed())
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}\n")));
        *r.status_mut() = code.parse().unwrap_or(hyper::StatusCode::BAD_REQUEST);
        r
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_millis(query(&req, "ms").unwrap_or(1000))).await;
        Response::new(full("slow\n"))
    } else {
        let mut text = format!(
            "method: {}\npath: {}\nversion: {:?}\n",
            req.method(),
            req.uri(),
            req.version()
        );
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let (body, trailers) = match req.into_body().collect().await {
            Ok(b) => {
                let t = b.trailers().cloned();
                (b.to_bytes().len(), t)
            }
            Err(_) => (0, None),
        };
        text.push_str(&format!("body-length: {body}\n"));
        for (k, v) in trailers.iter().flatten() {
            let v = String::from_utf8_lossy(v.as_bytes());
            text.push_str(&format!("trailer {k}: {v}\n"));
        }
        Response::new(full(text))
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// Frames sent as they are, each separately (data, so that a response is chunked rather than
/// one buffer, and trailers).
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}
