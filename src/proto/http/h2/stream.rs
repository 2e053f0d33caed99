//! One HTTP/2 stream between the connection's task and the request's: the state they share
//! ([`StreamState`], a worker-local `RefCell`: no lock), the request body as the request's
//! side reads it ([`RecvBody`]), and the request's task on the generic path ([`respond`]:
//! `super::super::handle`, then the response body, passed on as it comes).
//!
//! The connection puts the request body's DATA in the state as it arrives and takes the
//! response from it; the request's side puts the response there and queues the stream on the
//! connection ([`Shared`]), which then writes what the flow-control windows allow and tells
//! the windows what the body's reader has taken. A stream queues at most [`STREAM_QUEUE`]
//! bytes of response before its body is read no further.
//!
//! A stream can also be a byte pipe ([`Tunnel`]): WebSocket over HTTP/2 (`super::websocket`),
//! its DATA frames read and written as a connection's bytes are.
//!
//! Not here: the connection (`super::serve`), the fast path's requests (`super::fast`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};

use super::frame::Reason;
use crate::io::notify::LocalNotify;
use crate::proto::http::body::{ClientBody, ClientError, ResponseBody};
use crate::proto::http::{Conn, handle};

/// Response bytes one stream may queue before its body is read no further.
pub(super) const STREAM_QUEUE: usize = 64 * 1024;

/// A response head on its way to the connection.
#[derive(Debug)]
pub(super) enum Head {
    /// From the generic path: its status and fields, encoded by the connection.
    Map(StatusCode, HeaderMap),
    /// From the fast path: a header block already encoded (`:status` first), in a buffer of
    /// the worker's (`VecPool`).
    Encoded(Vec<u8>),
}

/// The wake-ups a connection's tasks give it.
#[derive(Default)]
pub(super) struct Shared {
    pub notify: LocalNotify,
    /// Streams with something for the connection (queued once until it looks).
    pub ready: RefCell<Vec<u32>>,
}

impl Shared {
    pub fn queue(&self, s: &mut StreamState) {
        if !s.queued {
            s.queued = true;
            self.ready.borrow_mut().push(s.id);
        }
        self.notify.notify();
    }
}

/// Whether a request's `Expect: 100-continue` was answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    #[default]
    No,
    /// Asked: `100 Continue` goes out when the body is first read.
    Asked,
    Due,
    Sent,
}

/// One stream, between the connection, the request's task and the request body's reader.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    pub id: u32,
    pub queued: bool,
    // The request body, from the connection: DATA frames' bytes, gathered (a client sending
    // one-byte frames costs one allocation per read, not per frame).
    pub body: BytesMut,
    pub body_trailers: Option<HeaderMap>,
    pub body_end: Option<Result<(), Reason>>,
    pub reader: Option<Waker>,
    pub reader_gone: bool,
    /// Body bytes read and not yet given back to the windows.
    pub consumed: usize,
    pub expect: Continue,
    // The response, to the connection.
    pub head: Option<Head>,
    pub head_sent: bool,
    pub out: VecDeque<Bytes>,
    pub out_bytes: usize,
    pub out_end: bool,
    pub trailers: Option<HeaderMap>,
    /// The response body failed: the stream is reset (INTERNAL_ERROR).
    pub failed: bool,
    /// Reset by corelane: before a response (a request it cannot take), or a tunnel that
    /// broke off (`Tunnel`).
    pub reset: Option<Reason>,
    pub writer: Option<Waker>,
    /// The stream is a tunnel's (`Tunnel`): the end of its response leaves it half-closed.
    pub tunnel: bool,
    /// A tunnel waiting to hear that the stream is gone ([`Tunnel::gone`]).
    pub closer: Option<Waker>,
    /// The connection is done with the stream.
    pub gone: bool,
}

impl StreamState {
    /// The connection is done with the stream: its reader and writer stop.
    pub fn close(&mut self) {
        self.gone = true;
        if self.body_end.is_none() {
            self.body_end = Some(Err(Reason::CANCEL));
        }
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
        if let Some(w) = self.closer.take() {
            w.wake();
        }
    }
}

/// A request body arriving on an HTTP/2 stream.
pub struct RecvBody {
    pub(super) stream: Rc<RefCell<StreamState>>,
    pub(super) shared: Rc<Shared>,
    pub(super) length: Option<u64>,
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("length", &self.length)
            .finish()
    }
}

/// A client's stream reset mid-body, as the body's error.
#[derive(Debug)]
struct StreamReset(Reason);

impl std::fmt::Display for StreamReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/2 stream reset ({})", self.0)
    }
}

impl std::error::Error for StreamReset {}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        let this = self.get_mut();
        let mut s = this.stream.borrow_mut();
        if !s.body.is_empty() {
            let b = s.body.split().freeze();
            s.consumed += b.len();
            this.shared.queue(&mut s);
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if let Some(t) = s.body_trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        match s.body_end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(r)) => Poll::Ready(Some(Err(Box::new(StreamReset(r))))),
            None => {
                if s.expect == Continue::Asked {
                    s.expect = Continue::Due;
                    this.shared.queue(&mut s);
                }
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let s = self.stream.borrow();
        s.body.is_empty() && s.body_trailers.is_none() && s.body_end == Some(Ok(()))
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        // What is left unread is given back to the windows, and what comes later too.
        let mut s = self.stream.borrow_mut();
        s.reader_gone = true;
        let left = s.body.len();
        s.body = BytesMut::new();
        s.consumed += left;
        if s.consumed > 0 {
            self.shared.queue(&mut s);
        }
    }
}

/// A stream as the client's side of a tunnel (WebSocket over HTTP/2): reads take its DATA
/// frames' bytes (given back to the windows as they are taken), writes queue DATA frames (at
/// most [`STREAM_QUEUE`] bytes unwritten), shutdown ends the stream. Dropped before the
/// stream ended, after its response head was given, it resets the stream (CANCEL).
pub struct Tunnel {
    body: RecvBody,
}

impl Tunnel {
    pub(in crate::proto::http) fn new(body: RecvBody) -> Tunnel {
        Tunnel { body }
    }

    /// Resolves once the connection is done with the stream (the client reset it, the
    /// connection closed): the tunnel ends then even if neither direction is waiting on the
    /// stream (the client's side already ended, or a write to the upstream is stuck).
    pub fn gone(&self) -> impl std::future::Future<Output = ()> + use<> {
        let st = self.body.stream.clone();
        std::future::poll_fn(move |cx| {
            let mut s = st.borrow_mut();
            if s.gone {
                return Poll::Ready(());
            }
            s.closer = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tunnel")
    }
}

impl tokio::io::AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut s = this.body.stream.borrow_mut();
        if !s.body.is_empty() {
            let n = buf.remaining().min(s.body.len());
            buf.put_slice(&s.body.split_to(n));
            s.consumed += n;
            this.body.shared.queue(&mut s);
            return Poll::Ready(Ok(()));
        }
        match s.body_end {
            // The client ended its side: an end of file.
            Some(Ok(())) => Poll::Ready(Ok(())),
            Some(Err(r)) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                StreamReset(r),
            ))),
            None => {
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl tokio::io::AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut s = this.body.stream.borrow_mut();
        if s.gone || s.out_end {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        if s.out_bytes >= STREAM_QUEUE {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(STREAM_QUEUE - s.out_bytes);
        if n > 0 {
            s.out.push_back(Bytes::copy_from_slice(&data[..n]));
            s.out_bytes += n;
            this.body.shared.queue(&mut s);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut s = this.body.stream.borrow_mut();
        if !s.out_end {
            s.out_end = true;
            this.body.shared.queue(&mut s);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let mut s = self.body.stream.borrow_mut();
        // Before a response head, the request's task still answers (the upstream did not
        // switch); after it, a tunnel that ends without its end (failed, idle) resets.
        if !s.out_end && !s.gone && (s.head.is_some() || s.head_sent) {
            s.reset = Some(Reason::CANCEL);
            self.body.shared.queue(&mut s);
        }
    }
}

/// One request's task: its answer (`super::super::handle`), then its response body, passed
/// to the connection as it comes.
pub(super) async fn respond(
    ctx: Rc<Conn>,
    shared: Rc<Shared>,
    st: Rc<RefCell<StreamState>>,
    req: Request<ClientBody>,
) {
    let _answers = Answers(&st, &shared);
    let to_head = req.method() == Method::HEAD;
    // Boxed: the answer's future is several KB, and a future awaited in place is kept twice
    // over in the task (rustc #62958), which tokio then copies whole at each stage change.
    let resp = Box::pin(handle::handle(&ctx, req)).await;
    let (mut parts, body) = resp.into_parts();
    with_length(parts.status, &mut parts.headers, &body);
    let status = parts.status;
    let body = (!to_head).then_some(body);
    deliver(&st, &shared, Head::Map(status, parts.headers), body).await;
}

/// Makes sure a request's task answers: if it ends (a panic unwinding it) before its
/// response head was given, the stream is reset (INTERNAL_ERROR) rather than left open.
pub(super) struct Answers<'a>(pub &'a RefCell<StreamState>, pub &'a Shared);

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.try_borrow_mut() {
            if !s.gone && !s.head_sent && s.head.is_none() && s.reset.is_none() {
                s.reset = Some(Reason::INTERNAL_ERROR);
                self.1.queue(&mut s);
            }
        }
    }
}

/// As hyper's server does: a response whose body has a known length says so (an HTTP/1.1
/// upstream's length is taken off as the body is framed anew), except where a response has
/// no body by its status.
pub(super) fn with_length(status: StatusCode, headers: &mut HeaderMap, body: &ResponseBody) {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return;
    }
    if let Some(n) = body.size_hint().exact() {
        headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(n));
    }
}

/// Gives a response head to the connection, and its body (none for a `HEAD` request) to be
/// passed on as it comes by the future returned.
pub(super) fn deliver<'a>(
    st: &'a RefCell<StreamState>,
    shared: &'a Shared,
    head: Head,
    body: Option<ResponseBody>,
) -> Pump<'a> {
    let body = body.filter(|b| !b.is_end_stream());
    let mut s = st.borrow_mut();
    s.head = Some(head);
    s.out_end = body.is_none();
    shared.queue(&mut s);
    Pump { st, shared, body }
}

/// A response body on its way to the connection ([`pump`]). A plain future rather than an
/// `async fn`: it is awaited at the end of every request's task, whose size it adds to.
pub(super) struct Pump<'a> {
    st: &'a RefCell<StreamState>,
    shared: &'a Shared,
    body: Option<ResponseBody>,
}

impl std::future::Future for Pump<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &mut this.body {
            Some(b) => pump(this.st, this.shared, Pin::new(b), cx),
            None => Poll::Ready(()),
        }
    }
}

/// Moves response body frames to the stream until it ends, fails, or has queued
/// [`STREAM_QUEUE`] bytes the connection has not written yet.
fn pump(
    st: &RefCell<StreamState>,
    shared: &Shared,
    mut body: Pin<&mut ResponseBody>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        {
            let mut s = st.borrow_mut();
            if s.gone {
                return Poll::Ready(());
            }
            if s.out_bytes >= STREAM_QUEUE {
                s.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        let frame = match body.as_mut().poll_frame(cx) {
            Poll::Ready(f) => f,
            Poll::Pending => return Poll::Pending,
        };
        let mut s = st.borrow_mut();
        match frame {
            None => {
                s.out_end = true;
                shared.queue(&mut s);
                return Poll::Ready(());
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => {
                    if !d.is_empty() {
                        s.out_bytes += d.len();
                        s.out.push_back(d);
                        shared.queue(&mut s);
                    }
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        s.trailers = Some(t);
                        s.out_end = true;
                        shared.queue(&mut s);
                        return Poll::Ready(());
                    }
                }
            },
            Some(Err(e)) => {
                tracing::debug!(stream = s.id, error = %e, "HTTP/2 response body failed");
                s.failed = true;
                shared.queue(&mut s);
                return Poll::Ready(());
            }
        }
    }
}
