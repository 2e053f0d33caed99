//! The connection loop shared by the Redis and Memcached engines: read what the client sent,
//! let the protocol's [`Handler`] route every complete request, and write the replies back in
//! request order, in as few syscalls as the replies allow.
//!
//! Flow control: the loop stops reading from a client that has `max_pipeline` requests in
//! flight or is not reading its replies (the kernel buffers are the only queue), and resumes
//! with the requests already buffered when room appears. While the client is idle it holds no
//! pool buffer, only reply buffers of at most [`SMALL_BUFFER`] bytes. The idle timeout is
//! checked lazily: the timer is re-armed only when it fires, not on every request. When the
//! worker drains (SIGTERM), the client is answered what is in flight and then closed, rather
//! than kept until `shutdown_timeout`.
//!
//! What a request means, and where it goes, is the handler's business.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::route::Route;
use crate::io::buffers::{BufferPool, VecPool};
use crate::io::readbuf::ReadBuf;
use crate::metrics::counters::GaugeGuard;
use crate::upstream::pipeline::Framing;
use crate::worker::{Accepted, Drain, Wake, Worker};

/// Serves one client connection of a keyed engine with `h` until it ends; `engine` names it
/// in logs.
pub async fn serve<H: Handler>(worker: Rc<Worker>, conn: Accepted, h: &mut H, engine: &str) {
    let listener = &conn.table.listeners[conn.listener];
    let stats = listener.stats.clone();
    let lc = stats.workers.get(worker.id);
    let _active = GaugeGuard::new(&lc.active);
    let _ = conn.stream.set_nodelay(true);
    let wake: Rc<dyn Wake> = h.route().replies.clone();
    worker.drain.subscribe(Rc::downgrade(&wake));
    drop(wake);
    let pools = (&worker.buffers, &worker.vecs);
    let idle_timeout = listener.config.idle_timeout;
    let end = drive(&conn.stream, pools, h, idle_timeout, lc, &worker.drain).await;
    if let Err(e) = end {
        tracing::debug!(peer = %conn.peer, error = %e, engine, "client connection ended");
    }
}

/// Reply buffers up to this size stay with an idle connection; larger ones go back.
pub const SMALL_BUFFER: usize = 512;

/// A protocol's side of a client connection: its [`Route`] and its parsing.
pub trait Handler {
    type F: Framing;
    fn route(&mut self) -> &mut Route<Self::F>;
    /// Routes the complete requests at the start of `buf` until it runs out of them, the
    /// pipeline limit is reached or the route quits; returns the bytes it consumed.
    fn handle(&mut self, buf: &[u8]) -> usize;
}

/// Byte counters of the client side.
pub trait Traffic {
    fn received(&self, n: usize);
    fn sent(&self, n: usize);
}

async fn drive<H: Handler>(
    stream: &TcpStream,
    pools: (&BufferPool, &VecPool),
    h: &mut H,
    idle_timeout: Duration,
    traffic: &impl Traffic,
    drain: &Drain,
) -> io::Result<()> {
    let (rpool, pool) = pools;
    let replies = h.route().replies.clone();
    let mut rbuf = ReadBuf::default();
    let mut wbuf: Vec<u8> = Vec::new();
    let mut wpos = 0;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut last_active = Instant::now();
    // Complete requests wait in `rbuf` because the pipeline limit was reached.
    let mut held = false;
    let result = loop {
        if drain.started() {
            h.route().quit = true;
        }
        // Write every reply that is complete, in order.
        if replies.take_output(&mut wbuf) {
            while wpos < wbuf.len() {
                match stream.try_write(&wbuf[wpos..]) {
                    Ok(n) => {
                        wpos += n;
                        traffic.sent(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let writing = wpos < wbuf.len();
        if !writing {
            wbuf.clear();
            wpos = 0;
        }
        let in_flight = replies.in_flight();
        if h.route().quit && in_flight == 0 && !writing {
            break Ok(());
        }
        let room = in_flight < h.route().settings.max_pipeline;
        if held && room && !writing && !h.route().quit {
            // Requests that waited for room get deadlines from now, not from their arrival.
            crate::io::clock::tick();
            held = handle(h, &mut rbuf);
            continue;
        }
        if in_flight == 0 && !writing && rbuf.is_empty() {
            // Idle: hold no pool buffer. A small reply buffer is kept (as the reply queue keeps
            // its own), so that one small request after another allocates nothing.
            if wbuf.capacity() > SMALL_BUFFER {
                pool.put(&mut wbuf);
            }
            replies.shrink();
        }
        let can_read = room && !writing && !h.route().quit;
        tokio::select! {
            biased;
            () = replies.ready.notified() => {}
            r = stream.writable(), if writing => r?,
            r = stream.readable(), if can_read => {
                r?;
                match rbuf.read_from(stream, rpool) {
                    Ok(0) => h.route().quit = true,
                    Ok(n) => {
                        traffic.received(n);
                        // Also the time request deadlines are measured from (io::clock).
                        last_active = crate::io::clock::tick();
                        held = handle(h, &mut rbuf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => break Err(e),
                }
                rbuf.release(rpool);
            }
            () = &mut idle => {
                let due = last_active + idle_timeout;
                if due <= Instant::now() && in_flight == 0 {
                    break Ok(());
                }
                idle.as_mut().reset(due.max(Instant::now() + idle_timeout / 8));
            }
        }
    };
    rbuf.consume(usize::MAX);
    rbuf.release(rpool);
    pool.put(&mut wbuf);
    replies.close();
    result
}

/// Lets the handler route what `rbuf` holds and drops the consumed bytes; returns whether
/// complete requests may be left because the pipeline limit was reached.
fn handle<H: Handler>(h: &mut H, rbuf: &mut ReadBuf) -> bool {
    let used = h.handle(rbuf.filled());
    rbuf.consume(used);
    let r = h.route();
    !r.quit && !rbuf.is_empty() && r.replies.in_flight() >= r.settings.max_pipeline
}

impl Traffic for crate::metrics::stats::ListenerCounters {
    fn received(&self, n: usize) {
        self.bytes_in.add(n as u64);
    }
    fn sent(&self, n: usize) {
        self.bytes_out.add(n as u64);
    }
}
