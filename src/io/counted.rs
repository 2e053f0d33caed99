//! A socket as a tokio `AsyncRead`/`AsyncWrite` for code that needs one (hyper, rustls),
//! counting bytes into the listener's or the endpoint's counters. Reads and writes go straight
//! to the worker's `TcpStream` through [`super::pump`]'s transfers: a read shorter than the
//! buffer has drained the socket, so no extra `recv` is spent learning it would block.
//!
//! The stream is held by an `Arc` (so an engine can still write on it after handing it over,
//! e.g. HTTP's `408`), not an `Rc`, because hyper hands upgraded connections (WebSocket) over
//! as `Send` objects; it is only ever used by the worker that accepted it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::pump::{read_some, write_some, write_vectored_some};
use crate::metrics::stats::{EndpointCounters, EndpointStats, ListenerCounters, ListenerStats};

/// Where a socket's byte counts go.
pub trait Counted {
    fn count_in(&self, n: u64);
    fn count_out(&self, n: u64);
}

/// A listener's counters for one worker, and the connection's own byte count (its activity,
/// which an idle timeout watches).
pub struct ClientSide {
    pub stats: Arc<ListenerStats>,
    pub worker: usize,
    /// Bytes moved either way on this connection; written by its worker only.
    pub activity: Arc<AtomicU64>,
}

impl Counted for ClientSide {
    fn count_in(&self, n: u64) {
        self.counters().bytes_in.add(n);
        self.moved(n);
    }
    fn count_out(&self, n: u64) {
        self.counters().bytes_out.add(n);
        self.moved(n);
    }
}

impl ClientSide {
    pub fn new(stats: Arc<ListenerStats>, worker: usize) -> Self {
        ClientSide {
            stats,
            worker,
            activity: Arc::default(),
        }
    }

    fn counters(&self) -> &ListenerCounters {
        self.stats.workers.get(self.worker)
    }

    fn moved(&self, n: u64) {
        // One writer (this connection's worker): a plain load and store, no read-modify-write.
        self.activity
            .store(self.activity.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// An endpoint's counters for one worker.
pub struct UpstreamSide(pub Arc<EndpointStats>, pub usize);

impl UpstreamSide {
    fn counters(&self) -> &EndpointCounters {
        self.0.workers.get(self.1)
    }
}

impl Counted for UpstreamSide {
    fn count_in(&self, n: u64) {
        self.counters().bytes_in.add(n);
    }
    fn count_out(&self, n: u64) {
        self.counters().bytes_out.add(n);
    }
}

pub struct Io<C> {
    pub stream: Arc<TcpStream>,
    pub counted: C,
}

impl<C: Counted + Unpin> AsyncRead for Io<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match read_some(&self.stream, buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    self.counted.count_in(n as u64);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<C: Counted + Unpin> AsyncWrite for Io<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match write_some(&self.stream, data) {
                Ok(n) => {
                    self.counted.count_out(n as u64);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match write_vectored_some(&self.stream, bufs) {
                Ok(n) => {
                    self.counted.count_out(n as u64);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
