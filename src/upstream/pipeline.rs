//! A pipelined connection from one worker to one cache server (Redis, Memcached), shared by
//! every client of that worker whose keys live there.
//!
//! Clients append request bytes to the pipeline's output buffer and a [`Waiter`] to its queue;
//! the connection task writes everything queued in one syscall, reads replies, and hands each
//! to the oldest waiter, since a server answers in request order. The task yields once before
//! writing, so one write carries every request of one turn of the event loop, and one read
//! brings their replies: that is where a proxy in front of a cache wins or loses.
//!
//! Failures: a connect error, a reset, a malformed reply or a reply later than `timeout`
//! fails every request in flight with an error reply (ordering is lost, so the connection is
//! closed) and marks the server down for a backoff that doubles up to [`MAX_BACKOFF`]; while
//! down, requests are answered with an error at once. The next request after the backoff
//! reconnects. With `auto_eject_hosts`, `server_failure_limit` failures in a row also eject
//! the server for `server_retry_timeout` (the worker's rings skip it, see `proto::keyed`).
//! While the server's active health check says it is down, requests are answered with an
//! error at once. The protocol's reply framing and error format come from [`Framing`].
//!
//! Not here: which server a key goes to (`shard`), merging split replies (`proto::keyed`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::io::buffers::BufferPool;
use crate::io::notify::LocalNotify;
use crate::io::readbuf::ReadBuf;
use crate::metrics::counters::GaugeGuard;
use crate::metrics::stats::{EndpointCounters, EndpointStats};
use crate::proto::keyed::replies::{Merge, Replies, Tag};
use crate::upstream::health::Health;

/// First wait after a failure before the server is tried again.
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Read buffer headroom: at least this much free space per read.
const READ_CHUNK: usize = 16 * 1024;

/// What a pipeline needs to know of its protocol.
pub trait Framing: 'static {
    /// What reply to expect for a request (memcache: a retrieval or one line).
    type Kind: Copy + std::fmt::Debug;
    /// Resumable reply scanner.
    type Scanner: Default + std::fmt::Debug;
    type Merge: Merge + std::fmt::Debug;
    /// Length of the complete reply at the start of `buf`, `None` if incomplete.
    fn scan(
        scanner: &mut Self::Scanner,
        buf: &[u8],
        kind: Self::Kind,
    ) -> Result<Option<usize>, &'static str>;
    /// Writes the reply a client gets for a request that failed with `msg`.
    fn error_reply(out: &mut Vec<u8>, msg: &str);
    /// Whether a complete reply is an error.
    fn is_error(reply: &[u8]) -> bool;
}

/// Settings that may change on reload without a new connection.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Sent first on every new connection (Redis `AUTH`); its reply is one line, and an error
    /// reply fails the connection.
    pub hello: Option<Vec<u8>>,
    /// `auto_eject_hosts`: after this many failures in a row, the server is ejected for this
    /// long.
    pub eject: Option<(u32, Duration)>,
    /// The endpoint's counters, if the server is an endpoint of the table (replicas are not).
    pub stats: Option<Arc<EndpointStats>>,
    /// The endpoint's health (its active check): while it is down, requests are answered with
    /// an error at once instead of waiting for a dead server.
    pub health: Option<Arc<Health>>,
}

/// One queued request's claim on a reply.
#[derive(Debug)]
pub struct Waiter<F: Framing> {
    pub replies: Rc<Replies<F::Merge>>,
    pub tag: Tag,
    pub kind: F::Kind,
    deadline: Instant,
}

#[derive(Debug)]
struct State<F: Framing> {
    /// Request bytes not yet written, from `written` on.
    out: Vec<u8>,
    written: usize,
    waiters: VecDeque<Waiter<F>>,
    /// A connection task is alive.
    running: bool,
    /// Down until then, for this reason.
    down: Option<(Instant, Rc<str>)>,
    backoff: Duration,
    /// No longer in the routing table: the task ends once nothing is in flight.
    retired: bool,
}

#[derive(Debug)]
pub struct Pipeline<F: Framing> {
    pub addr: SocketAddr,
    settings: RefCell<Settings>,
    state: RefCell<State<F>>,
    wake: LocalNotify,
    /// Replies received and requests failed, for tests and metrics.
    pub served: Cell<u64>,
    /// Failed connections in a row.
    failures: Cell<u32>,
    /// Off the ring until then (`auto_eject_hosts`).
    ejected_until: Cell<Option<Instant>>,
    /// Bumped (worker-wide) when a server is ejected or comes back, so rings get rebuilt.
    epoch: Rc<Cell<u64>>,
    /// This connection's read buffer, kept between reads.
    buffers: BufferPool,
    /// The worker this pipeline belongs to (its counter slot).
    worker: usize,
}

/// Why a connection ended.
enum End {
    /// Nothing in flight and nothing to do (the server closed an idle connection, or the
    /// pipeline was retired).
    Idle,
    Failed(String),
}

impl<F: Framing> Pipeline<F> {
    pub fn new(
        addr: SocketAddr,
        settings: Settings,
        epoch: Rc<Cell<u64>>,
        worker: usize,
    ) -> Rc<Self> {
        Rc::new(Pipeline {
            addr,
            settings: RefCell::new(settings),
            state: RefCell::new(State {
                out: Vec::new(),
                written: 0,
                waiters: VecDeque::new(),
                running: false,
                down: None,
                backoff: MIN_BACKOFF,
                retired: false,
            }),
            wake: LocalNotify::default(),
            served: Cell::new(0),
            failures: Cell::new(0),
            ejected_until: Cell::new(None),
            epoch,
            buffers: BufferPool::new(READ_CHUNK, 1),
            worker,
        })
    }

    /// Runs `f` on this worker's counters of the endpoint, if it is one.
    fn count(&self, f: impl FnOnce(&EndpointCounters)) {
        if let Some(s) = &self.settings.borrow().stats {
            f(s.workers.get(self.worker));
        }
    }

    /// Ejected (by `auto_eject_hosts`) until then, if it is later than `now`.
    pub fn ejected(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.get().filter(|&t| now < t)
    }

    pub fn update(&self, settings: Settings) {
        *self.settings.borrow_mut() = settings;
    }

    /// Stops the connection once its requests are answered (the server left the table).
    pub fn retire(&self) {
        self.state.borrow_mut().retired = true;
        self.wake.notify();
    }

    /// Whether requests would be refused at once (the server is in its backoff).
    pub fn is_down(&self) -> bool {
        let mut st = self.state.borrow_mut();
        match &st.down {
            Some((until, _)) if Instant::now() < *until => true,
            Some(_) => {
                st.down = None;
                false
            }
            None => false,
        }
    }

    /// Queues a request: `write` appends its bytes; its reply goes to `tag` of `replies`.
    pub fn send(
        self: &Rc<Self>,
        replies: &Rc<Replies<F::Merge>>,
        tag: Tag,
        kind: F::Kind,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let now = crate::io::clock::now();
        if let Some(h) = &self.settings.borrow().health {
            if !h.is_up() {
                let msg = format!("server {} is down (health check)", self.addr);
                self.count(|c| c.request_errors.inc());
                let mut e = Vec::new();
                F::error_reply(&mut e, &msg);
                replies.deliver(tag, &e);
                return;
            }
        }
        let mut st = self.state.borrow_mut();
        if let Some((until, why)) = &st.down {
            if now < *until {
                let msg = format!("server {} is unavailable: {why}", self.addr);
                drop(st);
                self.count(|c| c.request_errors.inc());
                let mut e = Vec::new();
                F::error_reply(&mut e, &msg);
                replies.deliver(tag, &e);
                return;
            }
            st.down = None;
        }
        write(&mut st.out);
        self.count(|c| c.requests.inc());
        st.waiters.push_back(Waiter {
            replies: replies.clone(),
            tag,
            kind,
            deadline: now + self.settings.borrow().timeout,
        });
        if !st.running {
            st.running = true;
            tokio::task::spawn_local(self.clone().run());
        }
        drop(st);
        self.wake.notify();
    }

    async fn run(self: Rc<Self>) {
        let end = self.connect_and_serve().await;
        let mut st = self.state.borrow_mut();
        st.running = false;
        match end {
            End::Idle => {
                st.backoff = MIN_BACKOFF;
            }
            End::Failed(why) => {
                tracing::debug!(server = %self.addr, reason = %why, "server connection failed");
                let failures = self.failures.get().saturating_add(1);
                self.failures.set(failures);
                if let Some((limit, retry)) = self.settings.borrow().eject {
                    if failures >= limit {
                        tracing::warn!(server = %self.addr, failures, retry = %humantime::format_duration(retry), "server ejected");
                        self.ejected_until.set(Some(Instant::now() + retry));
                        self.epoch.set(self.epoch.get() + 1);
                    }
                }
                let backoff = st.backoff;
                st.backoff = (backoff * 2).min(MAX_BACKOFF);
                st.down = Some((Instant::now() + backoff, why.as_str().into()));
                st.out.clear();
                st.written = 0;
                let waiters = std::mem::take(&mut st.waiters);
                drop(st);
                let msg = format!("server {} failed: {why}", self.addr);
                let mut e = Vec::new();
                F::error_reply(&mut e, &msg);
                self.count(|c| c.request_errors.add(waiters.len() as u64));
                for w in waiters {
                    w.replies.deliver(w.tag, &e);
                }
            }
        }
    }

    async fn connect_and_serve(&self) -> End {
        let settings = self.settings.borrow().clone();
        let stream =
            match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(self.addr))
                .await
            {
                Err(_) => {
                    self.count(|c| c.connect_errors.inc());
                    return End::Failed("connect timed out".into());
                }
                Ok(Err(e)) => {
                    self.count(|c| c.connect_errors.inc());
                    return End::Failed(format!("connect: {e}"));
                }
                Ok(Ok(s)) => s,
            };
        self.count(|c| c.connections.inc());
        let stats = settings.stats.clone();
        let _active = stats
            .as_ref()
            .map(|s| GaugeGuard::new(&s.workers.get(self.worker).active));
        let _ = stream.set_nodelay(true);
        let mut rbuf = ReadBuf::default();
        let mut scanner = F::Scanner::default();
        if let Some(hello) = &settings.hello {
            if let Err(why) = self.hello(&stream, hello, &mut rbuf, &settings).await {
                return End::Failed(why);
            }
        }
        self.state.borrow_mut().backoff = MIN_BACKOFF;
        self.failures.set(0);
        if self.ejected_until.take().is_some() {
            self.epoch.set(self.epoch.get() + 1);
        }
        let end = match self.serve(&stream, &mut rbuf, &mut scanner).await {
            Ok(()) => End::Idle,
            Err(why) => End::Failed(why),
        };
        rbuf.consume(usize::MAX);
        rbuf.release(&self.buffers);
        end
    }

    /// Sends the greeting (AUTH) and checks its reply, before any queued request.
    async fn hello(
        &self,
        stream: &TcpStream,
        hello: &[u8],
        rbuf: &mut ReadBuf,
        settings: &Settings,
    ) -> Result<(), String> {
        let work = async {
            let mut sent = 0;
            while sent < hello.len() {
                stream.writable().await.map_err(|e| format!("write: {e}"))?;
                match stream.try_write(&hello[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            loop {
                stream.readable().await.map_err(|e| format!("read: {e}"))?;
                match rbuf.read_from(stream, &self.buffers) {
                    Ok(0) => return Err("closed during authentication".to_owned()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(format!("read: {e}")),
                }
                // The greeting's reply is one line in every protocol that has one.
                if let Some(nl) = rbuf.filled().iter().position(|&b| b == b'\n') {
                    let line = rbuf.filled()[..nl].trim_ascii_end().to_vec();
                    rbuf.consume(nl + 1);
                    if F::is_error(&line) {
                        return Err(format!(
                            "authentication refused: {}",
                            String::from_utf8_lossy(&line)
                        ));
                    }
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(settings.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err("authentication timed out".to_owned()),
        }
    }

    async fn serve(
        &self,
        stream: &TcpStream,
        rbuf: &mut ReadBuf,
        scanner: &mut F::Scanner,
    ) -> Result<(), String> {
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut armed = false;
        loop {
            let (pending_write, head_deadline) = {
                let mut st = self.state.borrow_mut();
                let st = &mut *st;
                while st.written < st.out.len() {
                    match stream.try_write(&st.out[st.written..]) {
                        Ok(n) => {
                            st.written += n;
                            self.count(|c| c.bytes_out.add(n as u64));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
                if st.written == st.out.len() {
                    st.out.clear();
                    st.written = 0;
                    if st.out.capacity() > 1 << 20 {
                        st.out = Vec::new();
                    }
                }
                if st.waiters.is_empty() && st.retired {
                    return Ok(());
                }
                (
                    st.written < st.out.len(),
                    st.waiters.front().map(|w| w.deadline),
                )
            };
            if let Some(d) = head_deadline {
                if !armed {
                    sleep.as_mut().reset(d);
                    armed = true;
                }
            } else {
                armed = false;
            }
            tokio::select! {
                biased;
                r = stream.readable() => {
                    r.map_err(|e| format!("read: {e}"))?;
                    match rbuf.read_from(stream, &self.buffers) {
                        Ok(0) => {
                            return if self.state.borrow().waiters.is_empty() {
                                Ok(())
                            } else {
                                Err("server closed the connection".to_owned())
                            };
                        }
                        Ok(n) => {
                            self.count(|c| c.bytes_in.add(n as u64));
                            self.deliver(rbuf, scanner)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
                () = self.wake.notified() => {
                    // Let the other clients woken in this turn of the event loop, and those
                    // whose requests arrive before the next one, add theirs: one write then
                    // carries them all (twemproxy gets the same effect by waiting for EPOLLOUT).
                    tokio::task::yield_now().await;
                }
                r = stream.writable(), if pending_write => {
                    r.map_err(|e| format!("write: {e}"))?;
                }
                () = &mut sleep, if head_deadline.is_some() => {
                    armed = false;
                    if head_deadline.is_some_and(|d| d <= Instant::now()) {
                        let t = self.settings.borrow().timeout;
                        return Err(format!("no reply within {}", humantime::format_duration(t)));
                    }
                }
            }
        }
    }

    /// Hands every complete reply in `rbuf` to its waiter.
    fn deliver(&self, rbuf: &mut ReadBuf, scanner: &mut F::Scanner) -> Result<(), String> {
        let buf = rbuf.filled();
        let mut at = 0;
        let mut served = 0;
        let result = loop {
            if at == buf.len() {
                break Ok(());
            }
            let Some(kind) = self.state.borrow().waiters.front().map(|w| w.kind) else {
                break Err("reply to no request".to_owned());
            };
            match F::scan(scanner, &buf[at..], kind) {
                Ok(Some(len)) => {
                    let w = self.state.borrow_mut().waiters.pop_front();
                    if let Some(w) = w {
                        w.replies.deliver(w.tag, &buf[at..at + len]);
                    }
                    at += len;
                    served += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("malformed reply: {e}")),
            }
        };
        rbuf.consume(at);
        rbuf.release(&self.buffers);
        self.served.set(self.served.get() + served);
        result
    }
}
