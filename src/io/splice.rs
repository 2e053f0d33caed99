//! Copying between two byte streams of any kind (TLS, upgraded HTTP connections) until both
//! directions end, one fails, or nothing arrives from either side for `idle`.
//!
//! Plain TCP-to-TCP forwarding has its own, leaner path ([`super::pump`]); this one serves
//! the streams `pump` cannot take.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How a splice ended.
#[derive(Debug)]
pub enum Spliced {
    /// Bytes from `a` to `b` and from `b` to `a`.
    Done(u64, u64),
    Idle,
    Failed(io::Error),
}

pub async fn splice<A, B>(a: A, b: B, idle: Duration) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Rc::new(Cell::new(Instant::now()));
    let mut a = Active {
        io: a,
        last: last.clone(),
    };
    let mut b = Active {
        io: b,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            r = &mut copy => {
                return match r {
                    Ok((ab, ba)) => Spliced::Done(ab, ba),
                    Err(e) => Spliced::Failed(e),
                };
            }
            () = tokio::time::sleep_until(last.get() + idle) => {
                if Instant::now() >= last.get() + idle {
                    return Spliced::Idle;
                }
            }
        }
    }
}

/// One side, noting when it last delivered bytes.
struct Active<T> {
    io: T,
    last: Rc<Cell<Instant>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.set(Instant::now());
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
