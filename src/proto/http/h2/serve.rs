//! The HTTP/2 driver: one client connection's socket and tasks around its state machine
//! (`super::conn`).
//!
//! The connection's own task reads, writes and keeps the streams; each request runs in a task
//! of its own, on the fast path (`super::fast`) or the generic one (`super::stream::respond`),
//! so one slow upstream never holds up the others. They meet in each stream's state
//! (`super::stream`): the connection writes what a stream has queued as its client's
//! flow-control windows allow, and gives the windows back as the request body is read.
//!
//! Bounds: no more DATA is written into the connection's output past [`OUT_HIGH`] unsent
//! bytes, and no more input is read past [`OUT_PAUSE`] (a client that sends but does not read
//! stops being read). The read buffer and the output buffer are the worker's, borrowed while
//! bytes are in them.
//!
//! Timeouts: the preface, a header block (split over CONTINUATION frames, or a frame of it
//! arriving in pieces) and any frame begun while no request is open have the listener's
//! `header_timeout`; an idle connection (no byte moving, no request waiting for its
//! response) is told GOAWAY and closed at `idle_timeout` by the worker's idle sweep; a
//! draining worker says GOAWAY and lets the open streams finish. With no stream open and
//! nothing buffered for `park_after`, the connection returns its state to be parked
//! ([`End::Park`]): its socket waits in the worker's epoll set, its state (the HPACK table, the
//! windows, the settings) in a box, and no task, buffer or timer is kept.
//!
//! Not here: HTTP semantics (`super::super::handle`), the frame rules (`super::conn`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header,
};
use tokio::io::ReadBuf;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use super::conn::{Connection, Events, Limits};
use super::fields::Fields;
use super::frame::{self, Reason};
use super::stream::{
    Continue, Head, RecvBody, STREAM_QUEUE, Shared, StreamState, respond, with_length,
};
use super::{fast, websocket};
use crate::io::notify::LocalNotify;
use crate::metrics::stats::Refusal;
use crate::proto::http::body::{ClientBody, ResponseBody};
use crate::proto::http::h1::ClientIo;
use crate::proto::http::idle::Idle;
use crate::proto::http::{Conn, DrainSignal, IDLE_GRACE, handle};
use crate::worker::Wake;

/// Unwritten output past which no more DATA is moved into it.
const OUT_HIGH: usize = 64 * 1024;
/// Unwritten output past which the client's input is not read.
const OUT_PAUSE: usize = 256 * 1024;

/// How a connection comes to the driver.
pub(in crate::proto::http) enum Start {
    /// New: the bytes read so far (by the HTTP/1.1 fast path, which found the preface).
    New(Vec<u8>),
    /// Back from the parking lot, with its state.
    Resumed(Box<Connection>),
}

/// How the driver left a connection.
pub(in crate::proto::http) enum End {
    Closed,
    /// Idle for `park_after` with no stream and nothing buffered: park it with this state;
    /// it has been quiet since the instant given.
    Park(Box<Connection>, Instant),
}

/// A stream as the connection keeps it.
struct Slot {
    id: u32,
    state: Rc<RefCell<StreamState>>,
    task: Option<AbortHandle>,
}

impl Slot {
    /// The connection is done with the stream: its task is stopped, and the body bytes it
    /// had not read are returned (given back to the connection's window by the caller).
    fn end(self) -> usize {
        let unread = {
            let mut s = self.state.borrow_mut();
            let unread = s.body.len() + std::mem::take(&mut s.consumed);
            s.body = bytes::BytesMut::new();
            s.close();
            unread
        };
        if let Some(t) = self.task {
            t.abort();
        }
        unread
    }
}

/// Serves an HTTP/2 connection until it closes or may be parked.
pub(in crate::proto::http) async fn serve<S: ClientIo>(
    ctx: &Rc<Conn>,
    io: &mut S,
    idle: Idle,
    cfg: &crate::config::http::HttpListener,
    start: Start,
    park_after: Option<Duration>,
) -> End {
    let w = &ctx.worker;
    let stop = Rc::new(DrainSignal(LocalNotify::default()));
    w.drain
        .subscribe(Rc::downgrade(&(stop.clone() as Rc<dyn Wake>)));
    let _watched = w.idle.watch(idle, stop.clone());
    let (conn, prefix) = match start {
        Start::New(prefix) => {
            let limits = Limits {
                max_streams: cfg.http2.max_streams,
                stream_window: cfg.http2.stream_window,
                conn_window: cfg.http2.connection_window,
                max_header_list: cfg.max_header_size,
                max_block: cfg.max_header_size.saturating_mul(2).max(16 * 1024),
            };
            (Box::new(Connection::new(limits)), prefix)
        }
        Start::Resumed(conn) => (conn, Vec::new()),
    };
    let now = Instant::now();
    let mut d = Driver {
        ctx,
        io,
        stop,
        conn,
        shared: Rc::new(Shared::default()),
        slots: Vec::new(),
        blocked_window: Vec::new(),
        blocked_output: Vec::new(),
        ready: Vec::new(),
        rbuf: None,
        start: 0,
        end: 0,
        closing: Closing::Open,
        timer: Box::pin(tokio::time::sleep_until(now + cfg.header_timeout)),
        timer_at: now + cfg.header_timeout,
        header_timeout: cfg.header_timeout,
        began: now,
        block_since: None,
        quiet_since: None,
        park_after,
    };
    if w.drain.started() {
        // Back from the parking lot as the worker drains: GOAWAY, and close.
        d.stopped();
    }
    if !prefix.is_empty() {
        let mut buf = w.buffers.take();
        let n = prefix.len().min(buf.len());
        buf[..n].copy_from_slice(&prefix[..n]);
        d.rbuf = Some(buf);
        d.end = n;
    }
    let end = std::future::poll_fn(|cx| d.poll(cx)).await;
    d.finish();
    match end {
        Outcome::Gone => End::Closed,
        Outcome::Closing => {
            linger(d.io).await;
            End::Closed
        }
        Outcome::Park => {
            let since = d.quiet_since.unwrap_or_else(Instant::now);
            let mut conn = d.conn;
            conn.shrink();
            End::Park(conn, since)
        }
    }
}

/// How [`Driver::poll`] ended.
enum Outcome {
    /// Said goodbye: close, lingering ([`linger`]).
    Closing,
    /// The client closed, or the socket failed: nothing more to say.
    Gone,
    Park,
}

/// Closes the write side (after a TLS `close_notify`), then reads and drops what the client
/// still sends until it closes too, for a moment at most. A socket closed with input unread
/// is reset, and the reset can destroy the last response bytes and the GOAWAY still on
/// their way to the client (nginx's lingering close, for the same reason).
async fn linger<S: ClientIo>(io: &mut S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(IDLE_GRACE, drain).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// GOAWAY said: the open streams finish, then the connection closes.
    Draining,
    /// Closing now: what is written by then goes out, then the connection closes.
    Now(Instant),
}

struct Driver<'a, S> {
    ctx: &'a Rc<Conn>,
    io: &'a mut S,
    stop: Rc<DrainSignal>,
    conn: Box<Connection>,
    shared: Rc<Shared>,
    /// Streams by id (ascending).
    slots: Vec<Slot>,
    /// Streams waiting for a flow-control window, and for the output to drain.
    blocked_window: Vec<u32>,
    blocked_output: Vec<u32>,
    /// Working list of the streams being looked at.
    ready: Vec<u32>,
    /// The read buffer, borrowed from the worker's pool while input is in it.
    rbuf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    closing: Closing,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    header_timeout: Duration,
    /// When the connection came (its preface is due by `header_timeout` after).
    began: Instant,
    /// When what must come within `header_timeout` began: a header block waiting for its
    /// CONTINUATION frames, a partial HEADERS or CONTINUATION frame, or any partial frame
    /// while no request is open.
    block_since: Option<Instant>,
    /// Since when nothing has been open or buffered (set when first seen so).
    quiet_since: Option<Instant>,
    park_after: Option<Duration>,
}

impl<S: ClientIo> Driver<'_, S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.conn.give_out(|| self.ctx.worker.vecs.take());
        let polled = self.poll_rounds(cx);
        if self.conn.output().is_empty() {
            if let Some(mut out) = self.conn.take_out() {
                self.ctx.worker.vecs.put(&mut out);
            }
        }
        polled
    }

    fn poll_rounds(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        // Rounds before yielding to the worker's other tasks.
        for _ in 0..32 {
            let mut progress = false;
            if Pin::new(&mut self.stop.0.notified()).poll(cx).is_ready() {
                self.stopped();
                progress = true;
            }
            if !matches!(self.closing, Closing::Now(_)) {
                match self.read(cx) {
                    Ok(p) => progress |= p,
                    Err(()) => return Poll::Ready(self.gone()),
                }
            }
            if Pin::new(&mut self.shared.notify.notified())
                .poll(cx)
                .is_ready()
            {
                progress = true;
            }
            self.service();
            match self.write(cx) {
                Ok(p) => progress |= p,
                Err(()) => return Poll::Ready(self.gone()),
            }
            if let Some(end) = self.check_end(cx) {
                return Poll::Ready(end);
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The worker drains (GOAWAY, the open streams finish) or found the connection idle
    /// (GOAWAY, and close).
    fn stopped(&mut self) {
        if self.ctx.worker.drain.started() {
            self.conn.goaway(Reason::NO_ERROR, "shutting down");
            if self.closing == Closing::Open {
                self.closing = Closing::Draining;
            }
        } else {
            tracing::debug!(peer = %self.ctx.peer, "HTTP/2 connection idle; closing");
            self.conn.goaway(Reason::NO_ERROR, "idle");
            self.close_now();
        }
    }

    fn close_now(&mut self) {
        if !matches!(self.closing, Closing::Now(_)) {
            let at = Instant::now() + IDLE_GRACE;
            self.closing = Closing::Now(at);
            self.abort_all();
            self.set_timer(at);
        }
    }

    /// Reads what the client sent and hands it to the state machine. Whether anything
    /// happened; `Err` when the connection is to close at once.
    fn read(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        if self.conn.output().len() >= OUT_PAUSE {
            return Ok(false);
        }
        let mut progress = false;
        if self.rbuf.is_none() {
            match self.io.poll_ready(cx) {
                Poll::Ready(Ok(())) => self.rbuf = Some(self.ctx.worker.buffers.take()),
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => return Ok(false),
            }
        }
        let Some(buf) = self.rbuf.as_mut() else {
            return Ok(false);
        };
        if self.end < buf.len() {
            let mut rb = ReadBuf::new(&mut buf[self.end..]);
            match Pin::new(&mut *self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Err(()),
                Poll::Ready(Ok(())) => {
                    self.end += rb.filled().len();
                    progress = true;
                }
                Poll::Ready(Err(_)) => return Err(()),
                Poll::Pending => {}
            }
        }
        if self.end > self.start {
            let mut intake = Intake {
                ctx: self.ctx,
                shared: &self.shared,
                slots: &mut self.slots,
                unread: 0,
            };
            let recv = self.conn.recv(&buf[self.start..self.end], &mut intake);
            let unread = intake.unread;
            self.conn.release_connection(unread);
            count_resets(&mut self.conn, self.ctx);
            match recv {
                Ok(used) => {
                    progress |= used > 0;
                    self.start += used;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.ctx.peer, reason = %e.reason, why = e.why, "HTTP/2 connection error");
                    counters(self.ctx, |c| {
                        if let Some(n) = c.h2_connection_errors.get(e.reason.0 as usize) {
                            n.inc();
                        }
                    });
                    self.conn.goaway(e.reason, e.why);
                    self.close_now();
                    return Ok(true);
                }
            }
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            if let Some(b) = self.rbuf.take() {
                self.ctx.worker.buffers.put(b);
            }
        } else if self.end == buf.len() {
            if self.start == 0 {
                // One frame larger than the worker's buffers (`buffer_size` under 16 KiB):
                // a buffer of its own, a frame long, which the pool does not keep.
                let mut big = vec![0u8; frame::HEADER_LEN + frame::DEFAULT_MAX_FRAME as usize];
                big[..self.end].copy_from_slice(&buf[..self.end]);
                if let Some(b) = self.rbuf.replace(big.into_boxed_slice()) {
                    self.ctx.worker.buffers.put(b);
                }
                progress = true;
            } else {
                buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
        }
        // A header block, or any frame while no request is open, comes within
        // `header_timeout` once begun (slowloris): a partial frame holds a buffer.
        let partial = self.end > self.start;
        let headers = self.rbuf.as_ref().and_then(|b| b.get(self.start + 3));
        let slow = self.conn.mid_block()
            || (partial && (self.conn.open_streams() == 0 || matches!(headers, Some(1 | 9))));
        if slow {
            self.block_since.get_or_insert_with(Instant::now);
        } else {
            self.block_since = None;
        }
        if progress {
            // Bytes came: the connection has not been quiet since before them.
            self.quiet_since = None;
        }
        Ok(progress)
    }

    /// Writes what the state machine has to send. `Err` when the socket failed.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        let mut progress = false;
        let mut wrote = false;
        while !self.conn.output().is_empty() {
            match Pin::new(&mut *self.io).poll_write(cx, self.conn.output()) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => {
                    self.conn.written(n);
                    progress = true;
                    wrote = true;
                }
                Poll::Pending => break,
            }
        }
        if wrote || self.conn.output().is_empty() {
            // TLS keeps records back until flushed.
            if let Poll::Ready(Err(_)) = Pin::new(&mut *self.io).poll_flush(cx) {
                return Err(());
            }
        }
        if progress && self.conn.output().len() < OUT_HIGH && !self.blocked_output.is_empty() {
            // Streams that waited for the output to drain may write again.
            self.shared.notify.notify();
        }
        Ok(progress)
    }

    /// Whether the connection ends now (or parks); arms the timer it waits on otherwise.
    fn check_end(&mut self, cx: &mut Context<'_>) -> Option<Outcome> {
        let now_quiet = self.conn.is_quiet() && self.slots.is_empty() && self.rbuf.is_none();
        match self.closing {
            Closing::Now(at) => {
                if self.conn.output().is_empty() || Instant::now() >= at {
                    return Some(self.closed());
                }
                self.set_timer(at);
                return self.poll_timer(cx).then(|| self.closed());
            }
            Closing::Draining if self.conn.done() && self.conn.output().is_empty() => {
                return Some(self.closed());
            }
            _ => {}
        }
        if self.conn.done() && self.conn.output().is_empty() && self.slots.is_empty() {
            // The client said GOAWAY and has nothing open.
            return Some(self.closed());
        }
        // The one deadline that applies: the preface, a header block's end, or parking.
        let deadline = if !self.conn.started() {
            Some((self.began + self.header_timeout, false))
        } else if let Some(since) = self.block_since {
            Some((since + self.header_timeout, false))
        } else if now_quiet && self.closing == Closing::Open {
            let since = *self.quiet_since.get_or_insert_with(Instant::now);
            self.park_after.map(|p| (since + p, true))
        } else {
            None
        };
        if !now_quiet {
            self.quiet_since = None;
        }
        let (at, park) = deadline?;
        self.set_timer(at);
        if !self.poll_timer(cx) {
            return None;
        }
        if park && !self.ctx.worker.drain.started() {
            return Some(Outcome::Park);
        }
        if !park {
            tracing::debug!(peer = %self.ctx.peer, "HTTP/2 client too slow with its preface or headers");
            self.conn.goaway(Reason::NO_ERROR, "request header timeout");
            self.close_now();
            cx.waker().wake_by_ref();
        }
        None
    }

    fn set_timer(&mut self, at: Instant) {
        if at != self.timer_at {
            self.timer_at = at;
            self.timer.as_mut().reset(at);
        }
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Looks at every stream with something new, and at the blocked ones when a window or
    /// the output opened.
    fn service(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.append(&mut self.shared.ready.borrow_mut());
        if self.conn.take_window_opened() {
            ready.append(&mut self.blocked_window);
        }
        if self.conn.output().len() < OUT_HIGH {
            ready.append(&mut self.blocked_output);
        }
        if ready.len() > 1 {
            ready.sort_unstable();
            ready.dedup();
        }
        for &id in &ready {
            self.service_one(id);
        }
        ready.clear();
        self.ready = ready;
        self.count_resets();
    }

    fn count_resets(&mut self) {
        count_resets(&mut self.conn, self.ctx);
    }

    fn service_one(&mut self, id: u32) {
        let Ok(i) = self.slots.binary_search_by_key(&id, |s| s.id) else {
            return;
        };
        let st = self.slots[i].state.clone();
        let mut s = st.borrow_mut();
        s.queued = false;
        let conn = &mut self.conn;
        if s.consumed > 0 {
            conn.release(id, std::mem::take(&mut s.consumed));
        }
        if let Some(r) = s.reset.take() {
            conn.reset(id, r);
        }
        if s.expect == Continue::Due && !s.head_sent && s.head.is_none() {
            conn.send_headers(id, 100, std::iter::empty(), false);
            s.expect = Continue::Sent;
        }
        if let Some(head) = s.head.take() {
            if s.tunnel {
                conn.half_close(id);
            }
            let end = s.out_end && s.out.is_empty() && s.trailers.is_none();
            match head {
                Head::Map(status, fields) => {
                    conn.send_headers(id, status.as_u16(), response_fields(&fields), end)
                }
                Head::Encoded(mut block) => {
                    conn.send_encoded(id, &block, end);
                    self.ctx.worker.vecs.put(&mut block);
                }
            }
            s.head_sent = true;
        }
        while s.head_sent {
            let last = s.out_end && s.out.len() == 1 && s.trailers.is_none();
            let Some(front) = s.out.front_mut() else {
                break;
            };
            if conn.output().len() >= OUT_HIGH {
                if !self.blocked_output.contains(&id) {
                    self.blocked_output.push(id);
                }
                break;
            }
            let Some(n) = conn.send_data(id, front, last) else {
                break;
            };
            let whole = n == front.len();
            if whole {
                s.out.pop_front();
            } else {
                let _ = front.split_to(n);
            }
            s.out_bytes -= n;
            if !whole {
                if !self.blocked_window.contains(&id) {
                    self.blocked_window.push(id);
                }
                break;
            }
        }
        if s.head_sent && s.out.is_empty() && conn.is_open(id) {
            if let Some(t) = s.trailers.take() {
                conn.send_trailers(id, response_fields(&t));
            } else if s.out_end {
                conn.send_data(id, &[], true);
            } else if s.failed {
                conn.reset(id, Reason::INTERNAL_ERROR);
            }
        }
        if s.out_bytes < STREAM_QUEUE {
            if let Some(w) = s.writer.take() {
                w.wake();
            }
        }
        if !conn.is_open(id) {
            drop(s);
            let unread = self.slots.remove(i).end();
            self.conn.release_connection(unread);
        }
    }

    /// Every stream ends (the connection closes).
    fn abort_all(&mut self) {
        for slot in self.slots.drain(..) {
            slot.end();
        }
    }

    fn closed(&mut self) -> Outcome {
        self.abort_all();
        Outcome::Closing
    }

    fn gone(&mut self) -> Outcome {
        self.abort_all();
        Outcome::Gone
    }

    /// Gives the read buffer back (the connection closed or parks).
    fn finish(&mut self) {
        self.abort_all();
        if let Some(b) = self.rbuf.take() {
            self.ctx.worker.buffers.put(b);
        }
    }
}

/// What the state machine reports, turned into streams and tasks.
/// Adds the connection's resets since last time to the listener's counters.
fn count_resets(conn: &mut Connection, ctx: &Conn) {
    let (received, sent) = conn.take_resets();
    if received + sent > 0 {
        counters(ctx, |c| {
            c.h2_resets_received.add(u64::from(received));
            c.h2_resets_sent.add(u64::from(sent));
        });
    }
}

/// The listener's counters in this worker (in the table the connection routes by).
fn counters(ctx: &Conn, f: impl FnOnce(&crate::metrics::stats::ListenerCounters)) {
    let table = ctx.table.borrow();
    if let Some(l) = table.listeners.get(ctx.listener.get()) {
        f(l.stats.workers.get(ctx.worker.id));
    }
}

struct Intake<'a> {
    ctx: &'a Rc<Conn>,
    shared: &'a Rc<Shared>,
    slots: &'a mut Vec<Slot>,
    /// Body bytes of streams that ended unread, for the connection's window.
    unread: usize,
}

impl Intake<'_> {
    fn find(&self, id: u32) -> Option<usize> {
        self.slots.binary_search_by_key(&id, |s| s.id).ok()
    }

    /// Answers a request corelane will not forward, without a task; the body's length.
    fn answer(&mut self, st: &Rc<RefCell<StreamState>>, status: StatusCode, text: &str) -> u64 {
        let (mut parts, body) = handle::error(status, text).into_parts();
        with_length(parts.status, &mut parts.headers, &body);
        let mut s = st.borrow_mut();
        // Nobody reads this request's body: what comes of it goes back to the window.
        s.reader_gone = true;
        s.head = Some(Head::Map(parts.status, parts.headers));
        if let ResponseBody::Full(Some(b)) = &body {
            s.out_bytes = b.len();
            s.out.push_back(b.clone());
        }
        s.out_end = true;
        self.shared.queue(&mut s);
        s.out_bytes as u64
    }
}

/// Counts (and logs) a request refused before routing, with what its fields say of it.
fn refused(ctx: &Conn, why: Refusal, fields: &Fields, bytes: u64) {
    let r = handle::Refused {
        why,
        method: Some(fields.method()).filter(|m| !m.is_empty()),
        host: fields.authority(),
        path: fields.path(),
        started: Instant::now(),
        bytes,
    };
    handle::refused(ctx, &r);
}

impl Events for Intake<'_> {
    fn request(&mut self, id: u32, fields: &Fields, end: bool) {
        let state = Rc::new(RefCell::new(StreamState {
            id,
            body_end: end.then_some(Ok(())),
            ..StreamState::default()
        }));
        let mut task = None;
        if fields.too_large() {
            let text = "request header fields too large";
            let bytes = self.answer(&state, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, text);
            refused(self.ctx, Refusal::TooLarge, fields, bytes);
        } else if websocket::asks(fields) {
            let body = RecvBody {
                stream: state.clone(),
                shared: self.shared.clone(),
                length: None,
            };
            match websocket::request(fields, body) {
                Ok(req) => {
                    let fut =
                        websocket::serve(self.ctx.clone(), self.shared.clone(), state.clone(), req);
                    task = Some(tokio::task::spawn_local(fut).abort_handle());
                }
                Err(why) => {
                    tracing::debug!(stream = id, why, "malformed WebSocket over HTTP/2 request");
                    refused(self.ctx, Refusal::Malformed, fields, 0);
                    let mut s = state.borrow_mut();
                    s.reset = Some(Reason::PROTOCOL_ERROR);
                    self.shared.queue(&mut s);
                }
            }
        } else if fields.method() == b"CONNECT" {
            let text = "CONNECT is not supported";
            let bytes = self.answer(&state, StatusCode::NOT_IMPLEMENTED, text);
            refused(self.ctx, Refusal::NotImplemented, fields, bytes);
        } else {
            let body = RecvBody {
                stream: state.clone(),
                shared: self.shared.clone(),
                length: if end {
                    Some(0)
                } else {
                    fields.content_length()
                },
            };
            if let Some(f) = fast::plan(self.ctx, fields, end) {
                let body = (!end).then_some(body);
                let fut = fast::forward(
                    self.ctx.clone(),
                    self.shared.clone(),
                    state.clone(),
                    f,
                    body,
                );
                let t = tokio::task::spawn_local(fut);
                task = Some(t.abort_handle());
            } else {
                match request(fields, body) {
                    Ok(req) => {
                        if req
                            .headers()
                            .get(header::EXPECT)
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
                        {
                            state.borrow_mut().expect = Continue::Asked;
                        }
                        let fut =
                            respond(self.ctx.clone(), self.shared.clone(), state.clone(), req);
                        let t = tokio::task::spawn_local(fut);
                        task = Some(t.abort_handle());
                    }
                    Err(why) => {
                        tracing::debug!(stream = id, why, "malformed HTTP/2 request");
                        let mut s = state.borrow_mut();
                        s.reset = Some(Reason::PROTOCOL_ERROR);
                        self.shared.queue(&mut s);
                    }
                }
            }
        }
        self.slots.push(Slot { id, state, task });
    }

    fn data(&mut self, id: u32, data: &[u8], end: bool) {
        let Some(i) = self.find(id) else {
            return;
        };
        let mut s = self.slots[i].state.borrow_mut();
        if s.reader_gone {
            if !data.is_empty() {
                s.consumed += data.len();
                self.shared.queue(&mut s);
            }
        } else {
            s.body.extend_from_slice(data);
        }
        if end {
            s.body_end = Some(Ok(()));
        }
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    fn malformed(&mut self, _: u32, fields: &Fields) {
        refused(self.ctx, Refusal::Malformed, fields, 0);
    }

    fn trailers(&mut self, id: u32, fields: &Fields) {
        let Some(i) = self.find(id) else {
            return;
        };
        let mut map = HeaderMap::with_capacity(fields.len());
        for (n, v) in fields.iter() {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
                map.append(n, v);
            }
        }
        let mut s = self.slots[i].state.borrow_mut();
        s.body_trailers = Some(map);
        s.body_end = Some(Ok(()));
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    fn reset(&mut self, id: u32, reason: Reason) {
        let Some(i) = self.find(id) else {
            return;
        };
        let slot = self.slots.remove(i);
        slot.state.borrow_mut().body_end.get_or_insert(Err(reason));
        self.unread += slot.end();
    }
}

/// The request a header list describes, as `super::super::handle` takes it: an absolute URI
/// from `:scheme` and `:authority` (origin-form without an authority), HTTP/2, and the
/// fields, cookies joined into one (RFC 9113 8.2.3).
pub(super) fn request(
    fields: &Fields,
    body: RecvBody,
) -> Result<Request<ClientBody>, &'static str> {
    let method = Method::from_bytes(fields.method()).map_err(|_| "bad :method")?;
    let path = fields.path().unwrap_or(b"/");
    let uri = match (fields.authority(), fields.scheme()) {
        (Some(a), Some(s)) => Uri::builder()
            .scheme(s)
            .authority(a)
            .path_and_query(path)
            .build()
            .map_err(|_| "bad :scheme, :authority or :path")?,
        _ => Uri::try_from(path).map_err(|_| "bad :path")?,
    };
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut cookie: Option<Vec<u8>> = None;
    for (n, v) in fields.iter() {
        if n == b"cookie" {
            match &mut cookie {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(v);
                }
                None => cookie = Some(v.to_vec()),
            }
            continue;
        }
        let name = HeaderName::from_bytes(n).map_err(|_| "bad field name")?;
        let value = HeaderValue::from_bytes(v).map_err(|_| "bad field value")?;
        headers.append(name, value);
    }
    if let Some(c) = cookie {
        let value = HeaderValue::from_bytes(&c).map_err(|_| "bad cookie")?;
        headers.append(header::COOKIE, value);
    }
    let mut req = Request::new(ClientBody::H2(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    Ok(req)
}

/// A response's fields as HTTP/2 carries them: lowercase already, without the
/// connection-specific ones (RFC 9113 8.2.2), which a response from an HTTP/1.1 upstream or
/// a header rule might still hold.
fn response_fields(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .iter()
        .filter(|(n, _)| {
            !matches!(
                n.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
            )
        })
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
}
