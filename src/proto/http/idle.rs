//! Idle HTTP client connections: each worker sweeps its connections once a second and wakes
//! those on which no byte has moved, and no request has waited for a response, for their
//! listener's `idle_timeout`; the connection then closes gracefully (`super::run`).
//!
//! A sweep per worker rather than a timer per connection: a timer polled by the connection
//! task would be polled on every wake-up of every request, while a sweep costs one check per
//! open connection per second.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use super::DrainSignal;

/// How often a worker sweeps.
pub const SWEEP: Duration = Duration::from_secs(1);

/// A client connection's byte count, and how long it may stay still.
#[derive(Clone)]
pub(crate) struct Idle {
    pub activity: Arc<AtomicU64>,
    pub timeout: Duration,
    /// Requests waiting for their response headers: a connection with one is not idle.
    pub waiting: Rc<Cell<usize>>,
}

struct Entry {
    idle: Idle,
    stop: Rc<DrainSignal>,
    seen: Cell<u64>,
    still_since: Cell<Instant>,
}

/// One worker's watched connections.
#[derive(Default)]
pub struct IdleSweep {
    entries: RefCell<Vec<Weak<Entry>>>,
}

impl std::fmt::Debug for IdleSweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleSweep")
            .field("entries", &self.entries.borrow().len())
            .finish()
    }
}

/// Keeps a connection watched while it lives.
pub(crate) struct Watched {
    _entry: Rc<Entry>,
}

impl IdleSweep {
    /// Watches a connection: `stop` is woken when it has been idle for `idle.timeout`.
    pub(crate) fn watch(&self, idle: Idle, stop: Rc<DrainSignal>) -> Watched {
        let entry = Rc::new(Entry {
            seen: Cell::new(idle.activity.load(Relaxed)),
            still_since: Cell::new(Instant::now()),
            idle,
            stop,
        });
        self.entries.borrow_mut().push(Rc::downgrade(&entry));
        Watched { _entry: entry }
    }

    /// Checks every watched connection once; forgets the closed ones.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut woken = Vec::new();
        self.entries.borrow_mut().retain(|w| {
            let Some(e) = w.upgrade() else {
                return false;
            };
            let moved = e.idle.activity.load(Relaxed);
            if moved != e.seen.get() || e.idle.waiting.get() > 0 {
                e.seen.set(moved);
                e.still_since.set(now);
                true
            } else if now.duration_since(e.still_since.get()) >= e.idle.timeout {
                woken.push(e.stop.clone());
                false
            } else {
                true
            }
        });
        // Woken outside the borrow: a woken connection may register again at once.
        for stop in woken {
            stop.0.notify();
        }
    }
}

/// A worker's sweep loop: idle client connections, and the fast path's pooled upstream
/// connections that expired or that their upstream closed (hyper's pooled connections have
/// tasks of their own that notice).
pub async fn run(sweep: Rc<IdleSweep>, pool: Rc<super::Pool>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep.sweep();
        pool.prune_h1();
    }
}
