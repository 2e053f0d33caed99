//! Upgraded connections (WebSocket and any other `Upgrade`): once the upstream answers 101,
//! the client's and the upstream's connections are joined and bytes are copied both ways
//! until either side closes, or nothing arrives from either side for the listener's
//! `idle_timeout`.
//!
//! The tunnel owns a dedicated upstream connection (it never returns to the pool).

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

pub async fn run(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::debug!(client = ?c.err(), upstream = ?u.err(), "upgrade failed");
            return;
        }
    };
    let last = Rc::new(Cell::new(Instant::now()));
    let mut client = Active::new(client, &last);
    let mut upstream = Active::new(upstream, &last);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            r = &mut copy => {
                match r {
                    Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                    Err(e) => tracing::debug!(error = %e, "tunnel failed"),
                }
                return;
            }
            () = tokio::time::sleep_until(last.get() + idle) => {
                if Instant::now() >= last.get() + idle {
                    tracing::debug!(?idle, "tunnel idle; closing");
                    return;
                }
            }
        }
    }
}

/// One side of a tunnel, noting when it last delivered bytes.
struct Active {
    io: TokioIo<Upgraded>,
    last: Rc<Cell<Instant>>,
}

impl Active {
    fn new(io: Upgraded, last: &Rc<Cell<Instant>>) -> Self {
        Active {
            io: TokioIo::new(io),
            last: last.clone(),
        }
    }
}

impl AsyncRead for Active {
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

impl AsyncWrite for Active {
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
