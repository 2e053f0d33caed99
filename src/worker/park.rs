//! A worker's parking lot for idle connections: sockets with nothing to do, watched by one
//! epoll instance of the worker's own, with no task, no timer and no runtime registration
//! each.
//!
//! Why: a live connection costs a task (its future) and the runtime's registration of each
//! socket (tokio keeps a cache-padded readiness record per socket), about 1.5 KB for an idle
//! proxied TCP connection even though it holds no buffer. Thousands of idle connections are
//! normal for a proxy, so a connection that has been idle for its listener's `park_after` is
//! taken apart instead: its sockets leave the runtime (`into_std`) and are added to the lot's
//! epoll set, and what the engine needs to carry on (a [`Sleeper`]) is kept in the lot's slab:
//! a 40-byte entry with the sockets and the engine's state in a box (see the size tests), so
//! that every kind of sleeper pays only for its own state. What the task and the registrations used is
//! freed (the allocator gives it back to the system as it sees fit, or reuses it). When a
//! socket becomes readable (data, a close or an error), the connection leaves the lot and its
//! engine gets it back as a new task.
//!
//! Drain (SIGTERM): parked clients of the client engines (HTTP, Redis, Memcached, MySQL) are
//! woken when the drain starts, so that they close as live idle clients do; parked TCP
//! connections stay until `shutdown_timeout`, as live ones do.
//!
//! The lot's epoll instance is itself one socket-like file in the worker's runtime
//! (`AsyncFd`), so a parked connection that wakes is handled in the same event loop as all
//! others. Level-triggered: a socket that is already readable when it is parked (bytes that
//! arrived in between) is reported at once.
//!
//! Idle timeouts go on while parked: each entry has the deadline its engine gives it (the
//! last byte moved, or the last request, plus `idle_timeout`), and a sweep every [`SWEEP`] closes the entries
//! past it (within a second of it). Readiness is handled before the sweep, so bytes that came
//! in time are not dropped with the connection.
//!
//! If the lot itself fails (its epoll instance errors, which the kernel does not do for a
//! valid instance), every parked connection is handed back to its engine and parking stops
//! for the worker's life: connections then stay live, as with `park_after = "0s"`, and their
//! idle time keeps counting from their last byte.
//!
//! Not here: when a connection is idle enough to park (the engine decides) and what it does on
//! waking.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use super::Worker;

/// How often parked connections are checked against their idle deadline.
const SWEEP: Duration = Duration::from_secs(1);
/// Events taken from the lot's epoll per `epoll_wait`.
const BATCH: usize = 64;

/// The two sockets of a parked proxied connection (client and upstream).
pub type Socks = [std::net::TcpStream; 2];

/// What a client engine (http, redis, memcache, mysql) keeps of a parked client connection, and how it
/// carries on. Boxed, as a TCP connection's state is, so that the slab entry stays small.
pub trait ResumeClient {
    /// Serve the connection again: `woken` when its socket has something (bytes, a close or an
    /// error), else it was handed back unparked (the worker drains, the lot failed) and is as
    /// idle as it was.
    fn resume(self: Box<Self>, worker: &Rc<Worker>, sock: std::net::TcpStream, woken: bool);

    /// Its deadline passed while parked: the connection closes, with whatever goodbye its
    /// protocol wants sent first (best effort: the socket is non-blocking). By default none.
    fn expire(self: Box<Self>, sock: std::net::TcpStream) {
        drop((self, sock));
    }
}

/// A parked connection: its sockets and what its engine needs to carry on.
pub enum Sleeper {
    /// A proxied TCP connection: client and upstream sockets, and the TCP engine's state.
    /// Boxed, so that the slab entry, which every kind of sleeper occupies, stays small.
    Pair(Socks, Box<crate::proto::tcp::Parked>),
    /// A client connection of a client engine, with whatever server connections it owns in
    /// its box: woken when the worker drains too, so that it can say goodbye as a live
    /// client does.
    Client(std::net::TcpStream, Box<dyn ResumeClient>),
}

impl Sleeper {
    fn socks(&self) -> &[std::net::TcpStream] {
        match self {
            Sleeper::Pair(socks, _) => socks,
            Sleeper::Client(sock, _) => std::slice::from_ref(sock),
        }
    }

    fn resume(self, worker: &Rc<Worker>, woken: bool) {
        match self {
            Sleeper::Pair(socks, what) => (*what).resume(worker, socks, woken),
            Sleeper::Client(sock, what) => what.resume(worker, sock, woken),
        }
    }

    /// Closes it at its deadline: dropping a pair closes both sockets, as an idle timeout
    /// does; a client engine may say goodbye first.
    fn expire(self) {
        match self {
            Sleeper::Pair(..) => {}
            Sleeper::Client(sock, what) => what.expire(sock),
        }
    }
}

struct Parked {
    /// Closed (dropped) if still parked then: the connection's idle timeout.
    deadline: Instant,
    who: Sleeper,
}

/// The epoll instance, as a file the runtime can wait on.
struct EpollFd(Epoll);

impl AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.0.as_raw_fd()
    }
}

pub struct Lot {
    epoll: AsyncFd<EpollFd>,
    slots: RefCell<Slots>,
}

struct Slots {
    entries: Vec<Option<Parked>>,
    free: Vec<usize>,
    parked: usize,
    /// No parked entry's deadline is earlier (the sweep skips its scan before then).
    earliest: Option<Instant>,
    /// The lot failed: nothing is parked any more.
    dead: bool,
    /// The worker's drain has been seen (client sleepers were woken; no more are parked).
    draining: bool,
}

impl std::fmt::Debug for Lot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lot")
            .field("parked", &self.slots.borrow().parked)
            .finish()
    }
}

impl Lot {
    /// A lot for the current worker thread; must be called inside its runtime.
    pub fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        // Deprecated for types whose `as_raw_fd` could change or close under the runtime; the
        // epoll instance's `OwnedFd` lives in the `AsyncFd` and is never replaced, which is
        // exactly what the (unsafe) replacement, `register_with_interest`, asks to uphold.
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(EpollFd(epoll), tokio::io::Interest::READABLE)?;
        Ok(Lot {
            epoll,
            slots: RefCell::new(Slots {
                entries: Vec::new(),
                free: Vec::new(),
                parked: 0,
                earliest: None,
                dead: false,
                draining: false,
            }),
        })
    }

    /// Connections parked now.
    pub fn parked(&self) -> usize {
        self.slots.borrow().parked
    }

    /// Whether connections may be parked (the lot has not failed).
    pub fn open(&self) -> bool {
        !self.slots.borrow().dead
    }

    /// Parks `who` until one of its sockets is readable or `deadline` passes. On an error (the
    /// kernel refused to watch a socket, or the lot has failed) it is handed straight back to
    /// its engine; so is a client sleeper once the worker drains.
    pub fn park(&self, worker: &Rc<Worker>, who: Sleeper, deadline: Instant) {
        let mut slots = self.slots.borrow_mut();
        if slots.dead || (slots.draining && matches!(who, Sleeper::Client(..))) {
            drop(slots);
            who.resume(worker, false);
            return;
        }
        let index = match slots.free.pop() {
            Some(i) => i,
            None => {
                slots.entries.push(None);
                slots.entries.len() - 1
            }
        };
        let ep = &self.epoll.get_ref().0;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        let mut added = 0;
        let mut failed = None;
        for s in who.socks() {
            match ep.add(s.as_fd(), EpollEvent::new(flags, index as u64)) {
                Ok(()) => added += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for s in &who.socks()[..added] {
                let _ = ep.delete(s.as_fd());
            }
            slots.free.push(index);
            drop(slots);
            tracing::debug!(error = %e, "could not park a connection; it stays live");
            who.resume(worker, false);
            return;
        }
        slots.entries[index] = Some(Parked { deadline, who });
        slots.parked += 1;
        slots.earliest = Some(slots.earliest.map_or(deadline, |e| e.min(deadline)));
    }

    /// Takes slot `index` out of the lot (and its sockets out of the epoll set).
    fn unpark(&self, index: usize) -> Option<Parked> {
        let mut slots = self.slots.borrow_mut();
        let p = slots.entries.get_mut(index)?.take()?;
        slots.free.push(index);
        slots.parked -= 1;
        let ep = &self.epoll.get_ref().0;
        for s in p.who.socks() {
            let _ = ep.delete(s.as_fd());
        }
        Some(p)
    }

    /// Closes the parked connections whose idle deadline has passed. Scans the slab only
    /// when the earliest deadline has come.
    fn sweep(&self, now: Instant) {
        if self.slots.borrow().earliest.is_none_or(|e| now < e) {
            return;
        }
        let mut earliest: Option<Instant> = None;
        let len = self.slots.borrow().entries.len();
        for i in 0..len {
            let deadline = self.slots.borrow().entries[i].as_ref().map(|p| p.deadline);
            match deadline {
                Some(d) if d <= now => {
                    if let Some(p) = self.unpark(i) {
                        p.who.expire();
                    }
                }
                Some(d) => earliest = Some(earliest.map_or(d, |e| e.min(d))),
                None => {}
            }
        }
        self.slots.borrow_mut().earliest = earliest;
    }

    /// The lot failed: hands every parked connection back to its engine and parks no more.
    fn fail(&self, worker: &Rc<Worker>) {
        self.slots.borrow_mut().dead = true;
        let len = self.slots.borrow().entries.len();
        for i in 0..len {
            if let Some(p) = self.unpark(i) {
                p.who.resume(worker, false);
            }
        }
    }

    /// Closes every parked connection (the worker's runtime is ending). This also ends the
    /// reference cycles through parked clients' state, which holds the worker.
    pub fn close_all(&self) {
        let len = self.slots.borrow().entries.len();
        for i in 0..len {
            drop(self.unpark(i));
        }
    }

    /// The worker drains: client sleepers are woken so that they close as live clients do;
    /// proxied TCP connections stay parked (they are waited for, up to `shutdown_timeout`).
    pub fn drain(&self, worker: &Rc<Worker>) {
        if self.slots.borrow().draining {
            return;
        }
        self.slots.borrow_mut().draining = true;
        let len = self.slots.borrow().entries.len();
        for i in 0..len {
            let client = matches!(
                self.slots.borrow().entries[i].as_ref().map(|p| &p.who),
                Some(Sleeper::Client(..))
            );
            if client {
                if let Some(p) = self.unpark(i) {
                    p.who.resume(worker, false);
                }
            }
        }
    }
}

/// The lot's task: wakes parked connections whose sockets became readable, and closes those
/// whose idle deadline passed. Runs for the worker's life.
pub async fn run(worker: Rc<Worker>, lot: Rc<Lot>) {
    let mut events = vec![EpollEvent::empty(); BATCH];
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut guard = tokio::select! {
            // Wake-ups first: a connection whose bytes came in time is not swept.
            biased;
            r = lot.epoll.readable() => match r {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(worker = worker.id, error = %e, "parking lot failed; parked connections resume and parking stops");
                    lot.fail(&worker);
                    return;
                }
            },
            _ = sweep.tick() => {
                if worker.drain.started() {
                    lot.drain(&worker);
                }
                if lot.parked() > 0 {
                    lot.sweep(Instant::now());
                }
                continue;
            }
        };
        let got = guard.try_io(
            |fd| match fd.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => Ok(n),
                Err(nix::errno::Errno::EINTR) => Ok(0),
                Err(e) => Err(e.into()),
            },
        );
        let n = match got {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::error!(worker = worker.id, error = %e, "parking lot: epoll_wait failed; parked connections resume and parking stops");
                drop(guard);
                lot.fail(&worker);
                return;
            }
            // Drained: readiness is cleared and the next event wakes the task again.
            Err(_would_block) => continue,
        };
        drop(guard);
        for ev in &events[..n] {
            // Both sockets of a connection may report in one batch: the first takes it.
            if let Some(p) = lot.unpark(ev.data() as usize) {
                p.who.resume(&worker, true);
            }
        }
    }
}

/// The lot's slab entry, which every parked connection occupies, for the engines' size tests.
#[cfg(test)]
pub(crate) fn entry_size() -> usize {
    std::mem::size_of::<Option<Parked>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_tcp_connection_is_a_small_slab_entry_and_a_box() {
        // Everything corelane keeps of a parked TCP connection, sockets included: its slab
        // entry (the size every sleeper occupies) and its engine's boxed state.
        let entry = std::mem::size_of::<Option<Parked>>();
        let boxed = std::mem::size_of::<crate::proto::tcp::Parked>();
        println!("parked TCP connection: {entry}-byte slab entry + {boxed} bytes boxed");
        assert!(entry <= 48, "{entry} bytes");
        assert!(entry + boxed <= 256, "{entry} + {boxed} bytes");
    }
}
