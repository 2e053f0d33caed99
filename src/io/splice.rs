//! Copying between two byte streams of any kind (TLS, upgraded HTTP connections) until both
//! directions end, one fails, or nothing arrives from either side for `idle`.
//!
//! Plain TCP-to-TCP forwarding has its own, leaner path ([`super::pump`]); this one serves
//! the streams `pump` cannot take.
//!
//! Written here rather than with `tokio::io::copy_bidirectional` for the same reason as
//! [`super::buffers`]: that function gives each direction a buffer of its own for the
//! connection's life (16 KiB per connection, idle or not). Here a direction takes a buffer
//! from the worker's pool for each read and gives it back as soon as the bytes are written,
//! or at once when the read finds nothing, so an idle connection holds no buffer: a read that
//! is `Pending` writes nothing into the buffer it was lent.
//!
//! With `park_after`, a splice that has moved nothing for that long, with both directions
//! waiting to read and nothing held or unflushed, returns [`Spliced::Parked`] so that the
//! caller can park the connection (as [`super::pump`] does for plain TCP).
//!
//! Each direction: read, write all of it, repeat; when the read side ends, flush and shut down
//! the write side (a half-close is passed on, and the other direction goes on). Written bytes
//! are flushed whenever the read side has nothing more for now, so a TLS writer does not keep
//! them in its own buffer.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::buffers::BufferPool;
pub use super::pump::Timing;

/// How a splice ended.
#[derive(Debug)]
pub enum Spliced {
    /// Bytes from `a` to `b` and from `b` to `a`.
    Done(u64, u64),
    Idle,
    Failed(io::Error),
    /// Nothing moved for `timing.park_after`, both directions wait to read and nothing is
    /// held or unflushed: the caller may park the connection. Idle since then.
    Parked {
        idle_since: Instant,
    },
}

/// Reads a direction may do in one poll before it lets other tasks run.
const READS_PER_POLL: usize = 16;

/// Copies both ways between `a` and `b` (see the module doc). The idle time counts from
/// `timing.idle_since`; `timing.park_after` (if any) ends the splice with
/// [`Spliced::Parked`] when the connection could be parked.
pub async fn splice<A, B>(a: &mut A, b: &mut B, timing: Timing, pool: &BufferPool) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let Timing {
        idle,
        park_after,
        idle_since,
    } = timing;
    let last = Cell::new(idle_since);
    let mut halves = Halves {
        pool,
        ab: Half::default(),
        ba: Half::default(),
    };
    // Not parked again within `park_after` of (re)starting, whatever the idle clock says: a
    // connection woken from the parking lot reads what woke it first.
    let mut park_at = park_after.map(|p| Instant::now() + p);
    // As the last poll left the directions: both wait to read; one has half-closed.
    let (waiting, half_closed) = (Cell::new(false), Cell::new(false));
    let result = {
        let Halves { ab, ba, .. } = &mut halves;
        let copy = poll_fn(|cx| {
            let to_b = ab.poll(cx, pool, &last, Pin::new(&mut *a), Pin::new(&mut *b))?;
            let to_a = ba.poll(cx, pool, &last, Pin::new(&mut *b), Pin::new(&mut *a))?;
            waiting.set(ab.waits_to_read() && ba.waits_to_read());
            half_closed.set(ab.eof || ba.eof);
            match (to_b, to_a) {
                (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok::<_, io::Error>(())),
                _ => Poll::Pending,
            }
        });
        tokio::pin!(copy);
        loop {
            let idle_at = last.get() + idle;
            let wake_at = park_at.map_or(idle_at, |p| p.min(idle_at));
            tokio::select! {
                // The copy first: bytes already there count before the clock is looked at.
                biased;
                r = &mut copy => break Some(r),
                () = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    if now >= last.get() + idle {
                        break None;
                    }
                    let (Some(p), Some(after)) = (park_at, park_after) else { continue };
                    if now < p {
                        continue;
                    }
                    if last.get() + after > now {
                        // Bytes moved since: look again `park_after` after them.
                        park_at = Some(last.get() + after);
                    } else if waiting.get() {
                        return Spliced::Parked { idle_since: last.get() };
                    } else if half_closed.get() {
                        // Half-closed: not parked (as in `pump`).
                        park_at = None;
                    } else {
                        // A write still waits for its reader: look again in a while.
                        park_at = Some(now + after.max(RECHECK));
                    }
                }
            }
        }
    };
    match result {
        Some(Ok(())) => Spliced::Done(halves.ab.moved, halves.ba.moved),
        Some(Err(e)) => Spliced::Failed(e),
        None => Spliced::Idle,
    }
}

/// Shortest wait before parking is looked at again, when it was due but a write was waiting.
const RECHECK: Duration = Duration::from_millis(100);

/// Both directions, giving back to the pool any buffer still lent when the splice ends (an
/// error, the idle timeout, or the future dropped mid-write).
struct Halves<'p> {
    pool: &'p BufferPool,
    ab: Half,
    ba: Half,
}

impl Drop for Halves<'_> {
    fn drop(&mut self) {
        for half in [&mut self.ab, &mut self.ba] {
            if let Some(buf) = half.buf.take() {
                self.pool.put(buf);
            }
        }
    }
}

/// One direction: the bytes read and not yet written (with the buffer lent for them), and how
/// far it has got.
#[derive(Default)]
struct Half {
    buf: Option<Box<[u8]>>,
    pos: usize,
    len: usize,
    /// The read side ended: what is left is to shut the write side down.
    eof: bool,
    /// Bytes were written since the last flush.
    unflushed: bool,
    done: bool,
    moved: u64,
}

impl Half {
    /// Waiting for its next read with nothing held, unwritten or unflushed.
    fn waits_to_read(&self) -> bool {
        self.buf.is_none() && !self.eof && !self.unflushed
    }

    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        pool: &BufferPool,
        last: &Cell<Instant>,
        mut from: Pin<&mut R>,
        mut to: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        for _ in 0..READS_PER_POLL {
            if let Some(buf) = &self.buf {
                while self.pos < self.len {
                    let n = ready!(to.as_mut().poll_write(cx, &buf[self.pos..self.len]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.pos += n;
                    self.moved += n as u64;
                }
                self.unflushed = true;
                if let Some(buf) = self.buf.take() {
                    pool.put(buf);
                }
            }
            if self.eof {
                ready!(to.as_mut().poll_flush(cx))?;
                ready!(to.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut buf = pool.take();
            let mut read = ReadBuf::new(&mut buf);
            match from.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        pool.put(buf);
                        self.eof = true;
                    } else {
                        last.set(Instant::now());
                        (self.buf, self.pos, self.len) = (Some(buf), 0, n);
                    }
                }
                Poll::Ready(Err(e)) => {
                    pool.put(buf);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    // Nothing to read now: the buffer goes back unused, and what was written
                    // is pushed out before the direction waits.
                    pool.put(buf);
                    if self.unflushed {
                        ready!(to.as_mut().poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
            }
        }
        // Busy: let the other direction and other connections have a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{BufferPool, Spliced, splice};

    /// An idle timeout of `ms`, no parking.
    fn timing(ms: u64) -> super::Timing {
        super::Timing {
            idle: Duration::from_millis(ms),
            park_after: None,
            idle_since: tokio::time::Instant::now(),
        }
    }

    /// A test body that must finish in time: a regression fails rather than hangs.
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("timed out")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_cross_both_ways_half_closes_pass_and_an_idle_splice_holds_no_buffer() {
        within(both_ways()).await;
    }

    async fn both_ways() {
        let pool = BufferPool::new(64, 16);
        let (a, client) = tokio::io::duplex(256);
        let (b, server) = tokio::io::duplex(256);
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let pool = std::rc::Rc::new(pool);
                let p = pool.clone();
                let spliced = tokio::task::spawn_local(async move {
                    let (mut a, mut b) = (a, b);
                    splice(&mut a, &mut b, timing(30_000), &p).await
                });
                // More than a buffer and more than the pipes hold, each way at once.
                let up: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
                let down: Vec<u8> = (0..7000u32).map(|i| (i * 7) as u8).collect();
                let (mut got_up, mut got_down) = (vec![0; up.len()], vec![0; down.len()]);
                let (mut client_r, mut client_w) = tokio::io::split(client);
                let (mut server_r, mut server_w) = tokio::io::split(server);
                tokio::join!(
                    async { client_w.write_all(&up).await.unwrap() },
                    async { server_w.write_all(&down).await.unwrap() },
                    async { server_r.read_exact(&mut got_up).await.unwrap() },
                    async { client_r.read_exact(&mut got_down).await.unwrap() },
                );
                assert_eq!(got_up, up);
                assert_eq!(got_down, down);
                // Idle now: every buffer lent is back in the pool.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let cached = pool.cached();
                assert!(cached >= 1);
                assert_eq!(pool.lent(), 0, "{cached} cached");

                // The client half-closes: the server sees the end, and can still answer.
                client_w.shutdown().await.unwrap();
                let mut rest = Vec::new();
                server_r.read_to_end(&mut rest).await.unwrap();
                assert!(rest.is_empty());
                server_w.write_all(b"bye").await.unwrap();
                server_w.shutdown().await.unwrap();
                let mut bye = Vec::new();
                client_r.read_to_end(&mut bye).await.unwrap();
                assert_eq!(bye, b"bye");
                match spliced.await.unwrap() {
                    Spliced::Done(ab, ba) => assert_eq!((ab, ba), (5000, 7003)),
                    other => panic!("{other:?}"),
                }
                assert_eq!(pool.lent(), 0);
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn written_bytes_are_flushed_while_the_reader_waits() {
        within(async {
            let pool = BufferPool::new(64, 16);
            let (a, mut client) = tokio::io::duplex(256);
            let (b, mut server) = tokio::io::duplex(256);
            // A writer that keeps what it is given until flushed, as a TLS stream may.
            let b = tokio::io::BufWriter::with_capacity(1024, b);
            let (mut a, mut b) = (a, b);
            let copy = splice(&mut a, &mut b, timing(30_000), &pool);
            let check = async {
                client.write_all(b"0123456789").await.unwrap();
                let mut got = [0u8; 10];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"0123456789");
            };
            tokio::select! {
                r = copy => panic!("ended early: {r:?}"),
                () = check => {}
            }
        })
        .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_either_way_for_idle_ends_it_and_gives_a_held_buffer_back() {
        within(idle_ends_it()).await;
    }

    async fn idle_ends_it() {
        let pool = BufferPool::new(64, 16);
        let (a, mut client) = tokio::io::duplex(16);
        let (b, _server) = tokio::io::duplex(16);
        // The server never reads: the write of what the client sent waits, holding its buffer,
        // until the idle timeout ends the splice.
        let (mut a, mut b) = (a, b);
        let (r, ()) = tokio::join!(splice(&mut a, &mut b, timing(300), &pool), async {
            client.write_all(&[1; 40]).await.unwrap()
        });
        assert!(matches!(r, Spliced::Idle), "{r:?}");
        assert_eq!(pool.lent(), 0);
    }
}
