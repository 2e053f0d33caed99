//! The connection loop shared by the Redis and Memcached engines: read what the client sent,
//! let the protocol's [`Handler`] route every complete request, and write the replies back in
//! request order, in as few syscalls as the replies allow.
//!
//! Flow control: the loop stops reading from a client that has `max_pipeline` requests in
//! flight or is not reading its replies (the kernel buffers are the only queue), and resumes
//! with the requests already buffered when room appears. While the client is idle it holds no
//! pool buffer, only reply buffers of at most [`SMALL_BUFFER`] bytes; once it has sent nothing
//! for the listener's `park_after` with nothing in flight, it is parked (`worker::park`): the
//! task ends, the socket leaves the runtime, and the handler's state waits in a box, reply
//! buffers released, until the client sends again (or the worker drains). The idle timeout is
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
use crate::metrics::counters::OwnedGauge;
use crate::metrics::stats::ListenerStats;
use crate::upstream::pipeline::Framing;
use crate::worker::park::{ResumeClient, Sleeper};
use crate::worker::{Accepted, Drain, Held, Wake, Worker};

/// Serves one client connection of a keyed engine with `h` until it ends.
pub async fn serve<H: Handler>(worker: Rc<Worker>, conn: Accepted, h: H) {
    let listener = &conn.table.listeners[conn.listener];
    let active = OwnedGauge::new(listener.stats.clone(), worker.id, |s, w| {
        &s.workers.get(w).active
    });
    let _ = conn.stream.set_nodelay(true);
    let mut h = h;
    let wake: Rc<dyn Wake> = h.route().replies.clone();
    worker.drain.subscribe(Rc::downgrade(&wake));
    drop(wake);
    let (stream, held) = conn.split();
    let client = Client {
        held,
        _active: active,
        parked: None,
        h,
        idle_since: Instant::now(),
    };
    run(worker, client, stream).await;
}

/// A client connection apart from its socket: what a parked client keeps (`worker::park`).
struct Client<H> {
    held: Held,
    _active: OwnedGauge<ListenerStats>,
    /// Counts the client as parked while it is.
    parked: Option<OwnedGauge<ListenerStats>>,
    h: H,
    /// Nothing has come from the client since (the idle timeout counts from here across
    /// parking).
    idle_since: Instant,
}

impl<H: Handler> ResumeClient for Client<H> {
    fn resume(mut self: Box<Self>, worker: &Rc<Worker>, sock: std::net::TcpStream, woken: bool) {
        self.parked = None;
        if woken {
            self.idle_since = Instant::now();
        }
        match TcpStream::from_std(sock) {
            Ok(stream) => {
                tokio::task::spawn_local(run(worker.clone(), *self, stream));
            }
            Err(e) => {
                tracing::debug!(peer = %self.held.peer, error = %e, "could not resume a parked client");
                self.h.route().replies.close();
            }
        }
    }
}

/// Serves the client until it ends, or parks it when it has been idle for the listener's
/// `park_after` with nothing in flight.
async fn run<H: Handler>(worker: Rc<Worker>, mut c: Client<H>, stream: TcpStream) {
    let table = c.held.table.clone();
    let listener = &table.listeners[c.held.listener];
    let lc = listener.stats.workers.get(worker.id);
    let pools = (&worker.buffers, &worker.vecs);
    let cfg = &listener.config;
    let park_after = cfg
        .park_after
        .filter(|_| !worker.drain.started() && worker.park.open());
    let timing = Timing {
        idle_timeout: cfg.idle_timeout,
        park_after,
        idle_since: c.idle_since,
    };
    let end = drive(&stream, pools, &mut c.h, timing, lc, &worker.drain).await;
    match end {
        Ok(Ended::Closed) => {}
        Ok(Ended::Parked { idle_since }) => match stream.into_std() {
            Ok(sock) => {
                c.idle_since = idle_since;
                c.h.on_park();
                let deadline = idle_since + cfg.idle_timeout;
                c.parked = Some(OwnedGauge::new(
                    listener.stats.clone(),
                    worker.id,
                    |s, w| &s.workers.get(w).parked,
                ));
                let lot = worker.park.clone();
                lot.park(&worker, Sleeper::Client(sock, Box::new(c)), deadline);
            }
            Err(e) => {
                tracing::debug!(peer = %c.held.peer, error = %e, "could not park a client");
                c.h.route().replies.close();
            }
        },
        Err(e) => {
            tracing::debug!(peer = %c.held.peer, error = %e, engine = H::ENGINE, "client connection ended");
        }
    }
}

/// The idle timeout and parking settings of one [`drive`].
struct Timing {
    idle_timeout: Duration,
    park_after: Option<Duration>,
    /// Idle time counts from here (now, for a fresh or woken client).
    idle_since: Instant,
}

/// How [`drive`] stopped, when it did not fail.
enum Ended {
    Closed,
    /// Nothing has come from the client since `idle_since`, at least `park_after` ago, and
    /// nothing is in flight or waiting to be written: the connection may be parked.
    Parked {
        idle_since: Instant,
    },
}

/// Reply buffers up to this size stay with an idle connection; larger ones go back.
pub const SMALL_BUFFER: usize = 512;

/// A protocol's side of a client connection: its [`Route`] and its parsing.
pub trait Handler: 'static {
    type F: Framing;
    /// The engine's name, for logs.
    const ENGINE: &'static str;
    fn route(&mut self) -> &mut Route<Self::F>;
    /// Routes the complete requests at the start of `buf` until it runs out of them, the
    /// pipeline limit is reached or the route quits; returns the bytes it consumed.
    fn handle(&mut self, buf: &[u8]) -> usize;
    /// The client is being parked: let go of what can be had again (parser scratch space,
    /// the shard map).
    fn on_park(&mut self) {
        self.route().forget_shards();
    }
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
    timing: Timing,
    traffic: &impl Traffic,
    drain: &Drain,
) -> io::Result<Ended> {
    let Timing {
        idle_timeout,
        park_after,
        idle_since,
    } = timing;
    let (rpool, pool) = pools;
    let replies = h.route().replies.clone();
    let mut rbuf = ReadBuf::default();
    let mut wbuf: Vec<u8> = Vec::new();
    let mut wpos = 0;
    // The first of the two deadlines (parking, the idle timeout), from the last request.
    let parking = park_after.filter(|&p| p < idle_timeout);
    let wait = parking.unwrap_or(idle_timeout);
    let idle = tokio::time::sleep_until(idle_since + wait);
    tokio::pin!(idle);
    let mut last_active = idle_since;
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
            break Ok(Ended::Closed);
        }
        let room = in_flight < h.route().settings().max_pipeline;
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
                let now = Instant::now();
                let due = last_active + idle_timeout;
                if due <= now && in_flight == 0 {
                    break Ok(Ended::Closed);
                }
                let park_due = last_active + wait;
                let at_rest = in_flight == 0 && !writing && rbuf.is_empty() && !held;
                if parking.is_some() && park_due <= now && at_rest && !h.route().quit {
                    break Ok(Ended::Parked { idle_since: last_active });
                }
                let next = if park_due > now {
                    park_due
                } else if due > now {
                    due.min(now + wait.max(Duration::from_millis(100)))
                } else {
                    now + idle_timeout / 8
                };
                idle.as_mut().reset(next);
            }
        }
    };
    rbuf.consume(usize::MAX);
    rbuf.release(rpool);
    pool.put(&mut wbuf);
    if let Ok(Ended::Parked { .. }) = result {
        // Nothing is owed to the client; its reply queue goes to sleep with it, emptied, and
        // without this task's waker, which would keep the ended task's memory alive.
        replies.shrink_all();
        replies.ready.forget();
    } else {
        replies.close();
    }
    result
}

/// Lets the handler route what `rbuf` holds and drops the consumed bytes; returns whether
/// complete requests may be left because the pipeline limit was reached.
fn handle<H: Handler>(h: &mut H, rbuf: &mut ReadBuf) -> bool {
    let used = h.handle(rbuf.filled());
    rbuf.consume(used);
    let r = h.route();
    !r.quit && !rbuf.is_empty() && r.replies.in_flight() >= r.settings().max_pipeline
}

impl Traffic for crate::metrics::stats::ListenerCounters {
    fn received(&self, n: usize) {
        self.bytes_in.add(n as u64);
    }
    fn sent(&self, n: usize) {
        self.bytes_out.add(n as u64);
    }
}

/// The engines' size test: everything corelane keeps of a parked client of handler `H` (the
/// lot's slab entry with the socket, the boxed state, and the reply queue, which has no
/// buffers while parked) is at most half a kilobyte, and the box stays in mimalloc's 256-byte
/// size class (the next is 320).
#[cfg(test)]
pub(crate) fn assert_parked_client_is_small<H: Handler>() {
    let entry = crate::worker::park::entry_size();
    let boxed = std::mem::size_of::<Client<H>>();
    // The reply queue lives in an `Rc` (two counts) of its own.
    let queue = 16 + std::mem::size_of::<super::replies::Replies<<H::F as Framing>::Merge>>();
    println!(
        "parked {} client: slab entry {entry}, {boxed} bytes boxed, reply queue {queue}",
        H::ENGINE
    );
    assert!(entry + boxed + queue <= 512, "{entry} + {boxed} + {queue}");
    assert!(boxed <= 256, "{boxed} bytes boxed");
}
