//! A transport that can be taken out from under the session that uses it, and put back.
//!
//! Why: an idle TLS client is parked (`worker::park`) as a bare socket in the worker's epoll
//! set, like a plain one, but its TLS session (keys, sequence numbers, rustls's state) must
//! survive the wait. tokio-rustls's `TlsStream` can be taken apart (`into_inner`) but not put
//! back together, so the session keeps a `Detachable` transport instead: the socket leaves it
//! while the connection is parked and comes back when it wakes, and the `TlsStream` around it
//! is kept whole, boxed, in the meantime.
//!
//! Not here: when to park, or what the session does. A detached transport is never polled
//! (nobody polls a parked connection); if it were, it answers `NotConnected` rather than
//! panicking.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::counted::{ClientSide, Io};

/// A TLS client connection whose socket can leave its session while it is parked.
pub type TlsClient = tokio_rustls::server::TlsStream<Detachable<Io<ClientSide>>>;

/// `T`, or nothing while the connection is parked.
pub struct Detachable<T>(Option<T>);

impl<T> Detachable<T> {
    pub fn new(inner: T) -> Self {
        Detachable(Some(inner))
    }

    /// The transport, unless it is detached.
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }

    /// Takes the transport out (None if it already was).
    pub fn detach(&mut self) -> Option<T> {
        self.0.take()
    }

    /// Puts a transport (back) in.
    pub fn attach(&mut self, inner: T) {
        self.0 = Some(inner);
    }

    fn inner(self: Pin<&mut Self>) -> io::Result<Pin<&mut T>>
    where
        T: Unpin,
    {
        match &mut self.get_mut().0 {
            Some(t) => Ok(Pin::new(t)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Detachable<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner()?.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Detachable<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner()?.poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(T::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Detachable;

    #[tokio::test]
    async fn bytes_pass_while_attached_and_a_detached_transport_refuses() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut d = Detachable::new(a);
        d.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        let a = d.detach().unwrap();
        assert!(d.get().is_none());
        let err = d.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
        let err = d.read(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);

        d.attach(a);
        b.write_all(b"pong").await.unwrap();
        d.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
