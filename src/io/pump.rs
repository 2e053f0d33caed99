//! Bidirectional byte forwarding between two connected sockets, with half-close and an idle
//! timeout, holding a buffer only while bytes are in flight.
//!
//! Each direction waits for readiness, then borrows a buffer from the worker's pool, reads
//! what is there, writes all of it to the other side and returns the buffer. EOF on one side
//! becomes a write shutdown (FIN) on the other, and the opposite direction carries on until it
//! ends too: half-closed connections work as they do without a proxy. Any error ends both
//! directions and says which side failed, so the caller can pass a reset on. While a write
//! is blocked its direction reads nothing more (backpressure).
//!
//! Written as one hand-polled future rather than with `tokio::io::copy_bidirectional`, which
//! holds two buffers per connection for its whole life: an idle connection here holds none,
//! and its state is a few dozen bytes per direction plus one timer.
//!
//! Syscalls: a read that returns fewer bytes than asked has emptied the socket's receive
//! queue, so the socket's readiness is cleared right there, as if the next read had returned
//! EAGAIN (nginx's `ngx_unix_recv` does the same; HAProxy likewise stops at a short read).
//! Edge-triggered epoll reports any later arrival as a new event, and tokio never clears the
//! read-closed state, so a FIN that came with the data is still seen. This saves one `recv`
//! per message: a request/response exchange costs one read and one write per direction.
//! Short writes clear write readiness the same way.

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::buffers::BufferPool;

/// The idle timeout and parking settings of one [`pump`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Nothing moved for this long: [`End::Idle`].
    pub idle: Duration,
    /// Nothing moved for this long and both directions wait to read: [`End::Parked`].
    pub park_after: Option<Duration>,
    /// Idle time counts from here (now, for a fresh or woken connection).
    pub idle_since: Instant,
}

/// Shortest wait before parking is looked at again, when it was due but a direction was busy.
const RECHECK: Duration = Duration::from_millis(100);

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
    /// Neither side sent a byte since `idle_since`, at least `park_after` ago, and both
    /// directions are waiting to read with nothing buffered: the caller may hand the sockets to
    /// the worker's parking lot (`worker::park`) and call [`pump`] again when either has
    /// something. The idle timeout runs from `idle_since`.
    Parked { idle_since: Instant },
    /// A read or write failed on `side`.
    Failed { side: Side, error: io::Error },
}

/// Forwards between `a` and `b` until both directions end, one fails, or the [`Timing`] says
/// the connection is idle (or may be parked). `on_a` and `on_b` are told how many bytes were
/// read from `a` and from `b`.
pub async fn pump(
    a: &TcpStream,
    b: &TcpStream,
    pool: &BufferPool,
    timing: Timing,
    on_a: impl Fn(u64),
    on_b: impl Fn(u64),
) -> End {
    let Timing {
        idle,
        park_after,
        idle_since,
    } = timing;
    let mut ab = Half::new(a, b, Side::A, Side::B);
    let mut ba = Half::new(b, a, Side::B, Side::A);
    let mut last = idle_since;
    // The first of the two deadlines, counted from the last byte moved.
    let wait = park_after.map_or(idle, |p| p.min(idle));
    let mut timer = pin!(tokio::time::sleep_until(last + wait));
    poll_fn(|cx| {
        let mut moved = false;
        for (half, on_read) in [(&mut ab, &on_a as &dyn Fn(u64)), (&mut ba, &on_b)] {
            if let Poll::Ready(Err((side, error))) = half.poll(cx, pool, on_read, &mut moved) {
                return Poll::Ready(End::Failed { side, error });
            }
        }
        if ab.done && ba.done {
            return Poll::Ready(End::Closed);
        }
        if moved {
            // The timer is re-armed lazily, only when it fires: no timer work per read.
            last = Instant::now();
        }
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if last + idle <= now {
                return Poll::Ready(End::Idle);
            }
            if last + wait <= now {
                // Parking is due; a direction with a write or a close under way is not idle
                // in the way the lot can watch (it waits for write readiness), so it stays.
                if ab.at_rest() && ba.at_rest() {
                    return Poll::Ready(End::Parked { idle_since: last });
                }
                // Look again a `wait` later (a blocked write may have finished by then).
                timer
                    .as_mut()
                    .reset((last + idle).min(now + wait.max(RECHECK)));
            } else {
                timer.as_mut().reset(last + wait);
            }
        }
        Poll::Pending
    })
    .await
}

/// One direction: `from` -> `to`.
struct Half<'s> {
    from: &'s TcpStream,
    to: &'s TcpStream,
    from_side: Side,
    to_side: Side,
    /// Bytes read and not yet all written: `buf[pos..len]`.
    buf: Option<Box<[u8]>>,
    pos: usize,
    len: usize,
    done: bool,
}

impl<'s> Half<'s> {
    fn new(from: &'s TcpStream, to: &'s TcpStream, from_side: Side, to_side: Side) -> Self {
        Half {
            from,
            to,
            from_side,
            to_side,
            buf: None,
            pos: 0,
            len: 0,
            done: false,
        }
    }

    /// Waiting to read, with nothing held and nothing ended.
    fn at_rest(&self) -> bool {
        self.buf.is_none() && !self.done
    }

    /// Moves bytes until the direction would block (Pending, with wake-ups registered), ends
    /// (Ready(Ok)), or fails. Sets `moved` when bytes were read.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        pool: &BufferPool,
        on_read: &dyn Fn(u64),
        moved: &mut bool,
    ) -> Poll<Result<(), (Side, io::Error)>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(buf) = &self.buf {
                match write_some(self.to, &buf[self.pos..self.len]) {
                    Ok(n) => {
                        self.pos += n;
                        if self.pos == self.len {
                            if let Some(buf) = self.buf.take() {
                                pool.put(buf);
                            }
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(self.to.poll_write_ready(cx)).map_err(|e| (self.to_side, e))?;
                        continue;
                    }
                    Err(e) => return Poll::Ready(Err((self.to_side, e))),
                }
            }
            ready!(self.from.poll_read_ready(cx)).map_err(|e| (self.from_side, e))?;
            let mut buf = pool.take();
            match read_some(self.from, &mut buf) {
                Ok(0) => {
                    pool.put(buf);
                    // The peer may already be gone; its own direction reports that.
                    let _ = socket2::SockRef::from(self.to).shutdown(Shutdown::Write);
                    self.done = true;
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    on_read(n as u64);
                    *moved = true;
                    self.buf = Some(buf);
                    self.pos = 0;
                    self.len = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => pool.put(buf),
                Err(e) => return Poll::Ready(Err((self.from_side, e))),
            }
        }
    }
}

/// Reads what is queued (at most `buf.len()`); a short read clears read readiness.
pub fn read_some(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    transfer(s, Interest::READABLE, len, |mut sock| sock.read(buf))
}

/// Writes what the send buffer takes; a short write clears write readiness.
pub fn write_some(s: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    match transfer(s, Interest::WRITABLE, buf.len(), |mut sock| sock.write(buf)) {
        Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WriteZero.into()),
        r => r,
    }
}

/// Writes what the send buffer takes from `bufs` (one `sendmsg`); a short write clears write
/// readiness.
pub fn write_vectored_some(s: &TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    match transfer(s, Interest::WRITABLE, len, |mut sock| {
        sock.write_vectored(bufs)
    }) {
        Ok(0) if len > 0 => Err(io::ErrorKind::WriteZero.into()),
        r => r,
    }
}

/// Runs one read or write of up to `len` bytes when `s` is ready for `interest`. A transfer
/// shorter than `len` has drained the socket (or filled its send buffer), so readiness is
/// cleared as if the next call had returned EAGAIN, and the byte count is still returned.
fn transfer(
    s: &TcpStream,
    interest: Interest,
    len: usize,
    op: impl FnOnce(&socket2::Socket) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut short = 0;
    let r = s.try_io(interest, || {
        let n = op(&socket2::SockRef::from(s))?;
        if n > 0 && n < len {
            short = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        r => r,
    }
}
