//! Bidirectional byte forwarding between two connected sockets, with half-close and an idle
//! timeout, holding a buffer only while bytes are in flight.
//!
//! Each direction waits for readiness, then borrows a buffer from the worker's pool, reads
//! what is there, writes all of it to the other side and returns the buffer. EOF on one side
//! becomes a write shutdown (FIN) on the other, and the opposite direction carries on until it
//! ends too: half-closed connections work as they do without a proxy. Any error ends both
//! directions and says which side failed, so the caller can pass a reset on.
//!
//! Written here rather than with `tokio::io::copy_bidirectional` because that one allocates
//! two buffers per connection for its whole life; an idle connection must hold none.

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::buffers::BufferPool;

/// Which of the two sockets given to [`pump`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// How forwarding ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached EOF and were passed on.
    Closed,
    /// Neither side sent a byte for the idle timeout.
    Idle,
    /// A read or write failed on `side`.
    Failed { side: Side, error: io::Error },
}

/// Forwards between `a` and `b` until both directions end, one fails, or nothing moves for
/// `idle`. `on_a` and `on_b` are told how many bytes were read from `a` and from `b`.
pub async fn pump(
    a: &TcpStream,
    b: &TcpStream,
    pool: &BufferPool,
    idle: Duration,
    on_a: impl Fn(u64),
    on_b: impl Fn(u64),
) -> End {
    let last = Cell::new(Instant::now());
    let both = async {
        tokio::try_join!(
            one_way(a, b, (Side::A, Side::B), pool, &last, &on_a),
            one_way(b, a, (Side::B, Side::A), pool, &last, &on_b),
        )
    };
    tokio::select! {
        r = both => match r {
            Ok(_) => End::Closed,
            Err((side, error)) => End::Failed { side, error },
        },
        () = idle_watch(&last, idle) => End::Idle,
    }
}

async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    (from_side, to_side): (Side, Side),
    pool: &BufferPool,
    last: &Cell<Instant>,
    on_read: &impl Fn(u64),
) -> Result<(), (Side, io::Error)> {
    loop {
        from.readable().await.map_err(|e| (from_side, e))?;
        let mut buf = pool.take();
        match from.try_read(&mut buf) {
            Ok(0) => {
                pool.put(buf);
                // The peer may already be gone; its own direction reports that.
                let _ = socket2::SockRef::from(to).shutdown(Shutdown::Write);
                return Ok(());
            }
            Ok(n) => {
                last.set(Instant::now());
                on_read(n as u64);
                write_all(to, &buf[..n]).await.map_err(|e| (to_side, e))?;
                pool.put(buf);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => pool.put(buf),
            Err(e) => return Err((from_side, e)),
        }
    }
}

async fn write_all(to: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match to.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Completes once `idle` has passed since the last byte moved.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = last.get() + idle;
        tokio::time::sleep_until(deadline).await;
        if last.get() + idle <= Instant::now() {
            return;
        }
    }
}
