//! The two body types of the HTTP engine.
//!
//! [`RequestBody`] carries a client's request body to the upstream as it arrives (frames are
//! passed on, never collected), enforcing the listener's `max_body`. [`ResponseBody`] carries
//! an upstream response (or a response corelane makes itself) to the client, and gives the
//! upstream connection back to the worker's pool the moment the response has been read to its
//! end, so the connection can serve the next request. A response dropped before its end takes
//! its connection with it (the rest of the message is still on that connection).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use super::access_log;
use super::h1::bridge::RawBody;
use super::pool::Checkin;

/// Why a request body stopped.
#[derive(Debug)]
pub enum BodyError {
    /// The client's body passed `max_body`.
    TooLarge,
    /// The client's body broke off (a bad chunk, a reset stream, a closed connection).
    Client(ClientError),
}

/// How a client's body broke, as its server reports it.
pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as its server delivers it.
#[derive(Debug)]
pub enum ClientBody {
    Hyper(Incoming),
    H2(super::h2::RecvBody),
    /// None: what a WebSocket over HTTP/2 request keeps once its stream became the client's
    /// side of the tunnel (`super::tunnel::Client::of`).
    Empty,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientError>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(|e| e.into()),
            ClientBody::H2(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge => f.write_str("request body larger than max_body"),
            BodyError::Client(e) => write!(f, "client body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// How a client's body went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    TooLarge,
    /// Broken framing (a bad chunk) or the client went away mid-body.
    Malformed,
    /// The body did not arrive within `request_timeout` (read whole by `super::h1::bridge`).
    Slow,
}

/// What the engine learns of a request body as it streams: how it failed, if it did, and
/// whether it has been sent to its end.
#[derive(Debug, Default)]
pub struct BodyState {
    pub fault: Cell<Option<Fault>>,
    pub done: Cell<bool>,
}

/// A client's request body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    Empty,
    Stream {
        inner: ClientBody,
        /// Bytes still allowed under `max_body`, if set.
        left: Option<u64>,
        /// Set when the client's body failed (too large, malformed), so the engine answers
        /// 413 or 400 rather than blaming the upstream; and when it has ended.
        state: Rc<BodyState>,
        /// Its length is not told to the upstream even if the client gave one: the client
        /// announced trailers (`Trailer`), which an HTTP/1.1 upstream gets only in a chunked
        /// body.
        length_hidden: bool,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Stream {
                inner, left, state, ..
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let (Some(left), Some(data)) = (left.as_mut(), frame.data_ref()) {
                        let n = data.len() as u64;
                        if n > *left {
                            state.fault.set(Some(Fault::TooLarge));
                            return Poll::Ready(Some(Err(BodyError::TooLarge)));
                        }
                        *left -= n;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    state.fault.set(Some(Fault::Malformed));
                    Poll::Ready(Some(Err(BodyError::Client(e))))
                }
                Poll::Ready(None) => {
                    state.done.set(true);
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Stream {
                length_hidden: true,
                ..
            } => SizeHint::default(),
            RequestBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub enum ResponseBody {
    /// Made by corelane (errors, `respond`, redirects).
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        /// The connection it came on, given back to the pool at the end of the body.
        checkin: Option<Checkin>,
        /// `total_timeout`: the body is cut (and its connection closed) if it has not ended
        /// by then. Boxed, and only there when configured.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    /// Read from a pooled upstream socket by the fast path's exchange (`super::h1::bridge`).
    Raw(Box<RawBody>),
    /// Any of the above on a listener that keeps an access log: its line is written when the
    /// body ends, or when it is dropped unfinished.
    Logged(Box<LoggedBody>),
}

/// A response body and the access log line that waits for its end.
#[derive(Debug)]
pub struct LoggedBody {
    inner: ResponseBody,
    line: access_log::Pending,
    written: bool,
}

impl LoggedBody {
    fn write(&mut self) {
        if !std::mem::replace(&mut self.written, true) {
            self.line.write();
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.write();
    }
}

impl ResponseBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        ResponseBody::Full((!b.is_empty()).then_some(b))
    }

    /// This body, with `line` written to the access log when it ends.
    pub fn logged(self, line: access_log::Pending) -> Self {
        ResponseBody::Logged(Box::new(LoggedBody {
            inner: self,
            line,
            written: false,
        }))
    }
}

/// Why a response body stopped.
#[derive(Debug)]
pub enum ResponseError {
    Upstream(hyper::Error),
    /// `total_timeout` passed.
    Cut,
    /// The upstream broke the body's framing or closed early (`ResponseBody::Raw`).
    Broken(&'static str),
}

/// The `total_timeout` cut, as an error value.
struct BodyCut;

impl From<BodyCut> for ResponseError {
    fn from(_: BodyCut) -> Self {
        ResponseError::Cut
    }
}

impl From<hyper::Error> for ResponseError {
    fn from(e: hyper::Error) -> Self {
        ResponseError::Upstream(e)
    }
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::Upstream(e) => write!(f, "upstream body: {e}"),
            ResponseError::Cut => f.write_str("total_timeout passed"),
            ResponseError::Broken(why) => write!(f, "upstream body: {why}"),
        }
    }
}

impl std::error::Error for ResponseError {}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseError>>> {
        match self.get_mut() {
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream {
                inner,
                checkin,
                deadline,
            } => {
                if let Some(d) = deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        checkin.take();
                        return Poll::Ready(Some(Err(BodyCut.into())));
                    }
                }
                let polled = Pin::new(&mut *inner)
                    .poll_frame(cx)
                    .map_err(ResponseError::from);
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(c) = checkin.take() {
                            c.give_back();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        checkin.take();
                    }
                    _ => {}
                }
                polled
            }
            ResponseBody::Raw(raw) => Pin::new(&mut **raw).poll_frame(cx),
            ResponseBody::Logged(l) => {
                let polled = Pin::new(&mut l.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(f))) => {
                        l.line.bytes += f.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    Poll::Ready(_) => l.write(),
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
            ResponseBody::Raw(raw) => raw.is_end_stream(),
            ResponseBody::Logged(l) => l.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
            ResponseBody::Raw(raw) => raw.size_hint(),
            ResponseBody::Logged(l) => l.inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A response with no body (HEAD, 204, 304) may never be polled: its connection is
        // still good.
        if let ResponseBody::Upstream { inner, checkin, .. } = self {
            if inner.is_end_stream() {
                if let Some(c) = checkin.take() {
                    c.give_back();
                }
            }
        }
    }
}
